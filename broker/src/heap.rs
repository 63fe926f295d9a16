//! The process's heap: mimalloc as the global allocator, and how its memory is backed by pages.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// mimalloc, asked for plain allocations wherever a plain one is aligned enough.
///
/// Why not `mimalloc::MiMalloc`: it hands every request to `mi_malloc_aligned`, and mimalloc 3
/// takes that call's fast path only for blocks up to 1 KiB whose free block happens to be
/// aligned; the rest (every event body, every HTTP buffer) goes through the generic aligned
/// path, which over-allocates (a bigger size class) unless the block size is a power of two
/// (purpleprotocol/mimalloc_rust#170). A plain `mi_malloc` block is aligned to 16 bytes for
/// sizes that are multiples of 16, and to 8 otherwise (its size classes are multiples of 8,
/// 16 above 16, starting 16-aligned), so an alignment up to 16 that divides the size is met.
pub struct Heap;

/// The largest alignment a plain mimalloc block always has (`MI_MAX_ALIGN_SIZE`).
const PLAIN_ALIGN: usize = 16;

fn plain(align: usize, size: usize) -> bool {
    align <= PLAIN_ALIGN && size.is_multiple_of(align)
}

// SAFETY: every pointer handed out comes from mimalloc with the layout's size and (see `plain`)
// alignment, and is given back to mimalloc only (mi_free and mi_realloc take blocks from either
// kind of call).
unsafe impl GlobalAlloc for Heap {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        use libmimalloc_sys::{mi_malloc, mi_malloc_aligned};
        if plain(layout.align(), layout.size()) {
            mi_malloc(layout.size()).cast()
        } else {
            mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        use libmimalloc_sys::{mi_zalloc, mi_zalloc_aligned};
        if plain(layout.align(), layout.size()) {
            mi_zalloc(layout.size()).cast()
        } else {
            mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        libmimalloc_sys::mi_free(ptr.cast::<c_void>());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        use libmimalloc_sys::{mi_realloc, mi_realloc_aligned};
        if plain(layout.align(), new_size) {
            mi_realloc(ptr.cast::<c_void>(), new_size).cast()
        } else {
            mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size up to 4 KiB and a few large ones, at every alignment up to 16 and two above:
    /// each block is aligned as asked, writable in full, and survives growing and shrinking.
    #[test]
    fn every_block_is_aligned_as_its_layout_asks() {
        let sizes = (1..=4096).chain([8191, 65_536, 1 << 20, (4 << 20) + 8]);
        for size in sizes {
            for align in [1, 2, 4, 8, 16, 32, 4096] {
                let Ok(layout) = Layout::from_size_align(size, align) else {
                    continue;
                };
                // SAFETY: non-zero sizes; each block is freed with the layout it was made with.
                unsafe {
                    for zeroed in [false, true] {
                        let p = if zeroed {
                            Heap.alloc_zeroed(layout)
                        } else {
                            Heap.alloc(layout)
                        };
                        assert!(!p.is_null());
                        assert_eq!(p as usize % align, 0, "size {size} align {align}");
                        if zeroed {
                            assert!(std::slice::from_raw_parts(p, size).iter().all(|&b| b == 0));
                        }
                        p.write_bytes(0xa5, size);
                        let grown = size * 3;
                        let q = Heap.realloc(p, layout, grown);
                        assert_eq!(q as usize % align, 0, "grown {grown} align {align}");
                        assert_eq!(*q.add(size - 1), 0xa5);
                        let shrunk = (size / 2).max(1);
                        let r =
                            Heap.realloc(q, Layout::from_size_align(grown, align).unwrap(), shrunk);
                        assert_eq!(r as usize % align, 0, "shrunk {shrunk} align {align}");
                        assert_eq!(*r, 0xa5);
                        Heap.dealloc(r, Layout::from_size_align(shrunk, align).unwrap());
                    }
                }
            }
        }
    }
}
