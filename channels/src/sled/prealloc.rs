//! Zeros written ahead of the active segment's end, so a group commit overwrites blocks the
//! file already has instead of growing it.
//!
//! Growing a file makes each `fdatasync` commit the file system's journal (the new size and
//! blocks) besides flushing the data; overwriting written blocks leaves only the data flush.
//! On this project's ext4 VMs a 6.6 kB append plus `fdatasync` took a mean 0.2–2.4 ms (p99
//! 1.3–10 ms) growing the file and 0.11–0.2 ms (p99 0.2–3.5 ms) into zeros written
//! beforehand; `fallocate` alone helps less, as its unwritten extents still need a journal
//! commit on first write. PostgreSQL zero-fills its WAL segments for the same reason.
//!
//! The zeros are written in the writer's append, before the records, and made durable by
//! that append's own `fdatasync`: one journal commit per prepared stretch rather than per
//! group. A stretch grows with the segment (a small Broker's log stays small) up to `MAX`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The least prepared at once.
const MIN: u64 = 64 << 10;
/// The most prepared at once.
const MAX: u64 = 1 << 20;

static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// Where the prepared space should end for an append that ends at `needed` in a segment whose
/// records take `len` bytes, or `None` when `prepared` already reaches `needed`. Never past
/// `segment_bytes` plus the append itself (the segment rotates there).
pub(crate) fn target(len: u64, needed: u64, prepared: u64, segment_bytes: u64) -> Option<u64> {
    if prepared >= needed {
        return None;
    }
    let ahead = len.clamp(MIN, MAX);
    Some((needed + ahead).min(segment_bytes.max(needed)))
}

/// Writes zeros over `from..to` of `file` (not synced: the append's `fdatasync` covers them).
pub(crate) fn zero_fill(file: &File, from: u64, to: u64) -> io::Result<()> {
    let mut at = from;
    while at < to {
        let n = (to - at).min(ZEROS.len() as u64) as usize;
        file.write_all_at(&ZEROS[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prepared_stretch_grows_with_the_segment_and_stops_at_its_size() {
        let seg = 16 << 20;
        assert_eq!(target(0, 100, 100, seg), None);
        assert_eq!(target(0, 100, 0, seg), Some(100 + MIN));
        assert_eq!(
            target(300 << 10, (300 << 10) + 100, 0, seg),
            Some((600 << 10) + 100)
        );
        assert_eq!(
            target(8 << 20, (8 << 20) + 1, 8 << 20, seg),
            Some((9 << 20) + 1)
        );
        // Near the end of the segment: up to its size, or the append's end past it.
        assert_eq!(target(seg - 10, seg - 5, seg - 10, seg), Some(seg));
        assert_eq!(target(seg - 10, seg + 5, seg - 10, seg), Some(seg + 5));
        // A tiny segment size (tests) prepares no more than it.
        assert_eq!(target(0, 50, 0, 100), Some(100));
    }

    #[test]
    fn zero_fill_writes_zeros_over_the_range_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, [7u8; 10]).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        zero_fill(&file, 5, 200_000).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 200_000);
        assert_eq!(&bytes[..5], &[7u8; 5]);
        assert!(bytes[5..].iter().all(|&b| b == 0));
    }
}
