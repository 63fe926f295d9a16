//! How the process's heap is backed by memory pages.

/// Turns transparent huge pages off for this process, unless `MIMALLOC_ALLOW_THP` says
/// otherwise (mimalloc's own switch, then left to mimalloc).
///
/// Why: mimalloc asks for huge pages on its arenas (`MADV_HUGEPAGE`), so on a kernel whose
/// THP mode is `madvise` (Debian's default) every 2 MiB of heap that is touched at all
/// becomes resident in full. An idle Herald held 10 MiB (memory channel) to 16 MiB (durable)
/// of heap that way, a third to two fifths of its resident set. Herald's heap is small and
/// churns per event, where huge pages buy little. The setting holds for every later page
/// fault, in every thread, but not for pages already faulted in: the binary calls this
/// before its first allocation, and so this function allocates nothing.
pub fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: getenv reads the environment (no thread runs yet to change it); prctl with
    // PR_SET_THP_DISABLE only sets a flag on this process and takes no pointer.
    unsafe {
        if libc::getenv(c"MIMALLOC_ALLOW_THP".as_ptr()).is_null() {
            libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        }
    }
}
