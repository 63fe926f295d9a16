//! One channel's log on disk: its segment files in one directory, appended by the writer
//! thread, read by subscriptions, and trimmed by retention dropping whole segments.
//!
//! The newest segment is the active one; the writer starts a new one when it passes
//! `segment_bytes`, or when retention finds everything in it consumed (so a drained log
//! shrinks to almost nothing). The active segment is never removed before its successor
//! exists, so the head recovered from the file names never goes back.

use super::{prealloc, segment};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// A consumed active segment smaller than this is kept (rather than replaced by a new file on
/// every retention pass under a light load).
const ROTATE_CONSUMED_MIN: u64 = 64 << 10;

pub(crate) struct Log {
    dir: PathBuf,
    segment_bytes: u64,
    /// The index: what readers look up, briefly.
    segments: Mutex<VecDeque<Segment>>,
    /// Held by whoever changes files (the writer appending, retention rotating and dropping,
    /// delete), never by readers.
    files: Mutex<Files>,
}

struct Files {
    deleted: bool,
    /// A failed append may have left bytes past the active segment's valid end, and cutting
    /// them failed too: cut them before the next append.
    dirty_tail: bool,
    /// Preparing space failed (a full disk): appends grow the file until the next segment.
    no_prealloc: bool,
}

struct Segment {
    base: u64,
    file: Arc<File>,
    /// Byte position of each record; record `i` has offset `base + i`.
    positions: Vec<u64>,
    /// Bytes of valid records.
    len: u64,
    /// The file's length: zeros past `len` are prepared space (see `prealloc`).
    prepared: u64,
}

impl Segment {
    fn end(&self) -> u64 {
        self.base + self.positions.len() as u64
    }

    /// Byte position of `offset` in this segment (its end for `end()`).
    fn position(&self, offset: u64) -> u64 {
        self.positions
            .get((offset - self.base) as usize)
            .copied()
            .unwrap_or(self.len)
    }
}

/// What opening a log found on disk.
#[derive(Debug)]
pub(crate) struct Recovered {
    /// Oldest offset still on disk.
    pub(crate) first: u64,
    /// One past the newest record on disk.
    pub(crate) end: u64,
    /// Append time of the newest record, if any.
    pub(crate) last_ms: Option<u64>,
    /// Bytes of torn tail cut off.
    pub(crate) truncated: u64,
}

/// Why an append failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AppendError {
    #[error("the channel was deleted")]
    Deleted,
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
}

impl AppendError {
    fn io(what: &'static str, path: &Path, source: io::Error) -> Self {
        AppendError::Io {
            what,
            path: path.display().to_string(),
            source,
        }
    }

    /// The disk (or the file system's inodes) is full.
    pub(crate) fn is_disk_full(&self) -> bool {
        matches!(self, AppendError::Io { source, .. } if is_disk_full(source))
    }
}

pub(crate) fn is_disk_full(e: &io::Error) -> bool {
    // ENOSPC, EDQUOT.
    e.kind() == io::ErrorKind::StorageFull || matches!(e.raw_os_error(), Some(28 | 122))
}

impl Log {
    /// Opens the log in `dir`, creating it empty at `floor` if it holds no segment, and cuts
    /// torn tails. Blocking.
    pub(crate) fn open(dir: &Path, segment_bytes: u64, floor: u64) -> io::Result<(Log, Recovered)> {
        std::fs::create_dir_all(dir)?;
        let mut bases: Vec<u64> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let name = entry?.file_name();
            if let Some(base) = name.to_str().and_then(segment::parse_file_name) {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        let mut segments: VecDeque<Segment> = VecDeque::new();
        let mut truncated = 0;
        let mut last_ms = None;
        let count = bases.len();
        for (i, base) in bases.into_iter().enumerate() {
            let path = segment::path(dir, base);
            let is_last = i + 1 == count;
            if let Some(prev) = segments.back() {
                if base < prev.end() {
                    tracing::error!(path = %path.display(), previous_end = prev.end(), "segment overlaps the one before it; ignoring it");
                    continue;
                }
            }
            let scanned = segment::scan(&path, base)?;
            if scanned.positions.is_empty() && !is_last {
                // Created by a rotation that crashed before its first record was durable.
                std::fs::remove_file(&path)?;
                continue;
            }
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            let mut prepared = scanned.valid_len;
            if scanned.zero_tail && is_last {
                // Space prepared for appends: kept for them.
                prepared += scanned.torn_bytes;
            } else if scanned.zero_tail {
                // Prepared but never used (a crash while sealing it): nothing lost.
                if scanned.torn_bytes > 0 {
                    file.set_len(scanned.valid_len)?;
                    file.sync_all()?;
                }
            } else if scanned.torn_bytes > 0 {
                if is_last {
                    tracing::warn!(path = %path.display(), bytes = scanned.torn_bytes, valid = scanned.valid_len, "cutting the torn tail of the log (a crash mid-append; none of it was acknowledged)");
                } else {
                    tracing::error!(path = %path.display(), bytes = scanned.torn_bytes, valid = scanned.valid_len, "a sealed segment is damaged: the records past its valid part are unreadable and skipped");
                }
                file.set_len(scanned.valid_len)?;
                file.sync_all()?;
                truncated += scanned.torn_bytes;
            }
            last_ms = scanned.last_ms.or(last_ms);
            segments.push_back(Segment {
                base,
                file: Arc::new(file),
                positions: scanned.positions,
                len: scanned.valid_len,
                prepared,
            });
        }
        if segments.is_empty() {
            segments.push_back(create_segment(dir, floor)?);
        }
        let recovered = Recovered {
            first: segments.front().map_or(floor, |s| s.base),
            end: segments.back().map_or(floor, Segment::end),
            last_ms,
            truncated,
        };
        let log = Log {
            dir: dir.to_path_buf(),
            segment_bytes: segment_bytes.max(1),
            segments: Mutex::new(segments),
            files: Mutex::new(Files {
                deleted: false,
                dirty_tail: false,
                no_prealloc: false,
            }),
        };
        Ok((log, recovered))
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn segments(&self) -> MutexGuard<'_, VecDeque<Segment>> {
        self.segments.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn files(&self) -> MutexGuard<'_, Files> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `payloads` as offsets `start..`, each stamped `append_ms`, in one write; with
    /// `sync`, durable (one `fdatasync`) before it returns. On failure nothing of it stays.
    /// Returns the bytes added. Blocking; only the writer thread calls it.
    pub(crate) fn append(
        &self,
        start: u64,
        append_ms: u64,
        payloads: &[Vec<u8>],
        sync: bool,
    ) -> Result<u64, AppendError> {
        let mut files = self.files();
        if files.deleted {
            return Err(AppendError::Deleted);
        }
        let (mut base, mut file, mut len, mut prepared, end, records) = {
            let segments = self.segments();
            let active = segments.back().expect("a log always has a segment");
            (
                active.base,
                active.file.clone(),
                active.len,
                active.prepared,
                active.end(),
                active.positions.len(),
            )
        };
        let path = segment::path(&self.dir, base);
        if files.dirty_tail {
            file.set_len(len)
                .map_err(|e| AppendError::io("cannot cut a failed append from", &path, e))?;
            files.dirty_tail = false;
            prepared = len;
        }
        // Offsets continue the active segment; a gap (a head recovered from metadata past the
        // last record) needs a segment of its own.
        if end != start || (records > 0 && len >= self.segment_bytes) {
            match self.rotate(&mut files, start) {
                Ok(()) => {
                    let segments = self.segments();
                    let active = segments.back().expect("a log always has a segment");
                    (base, file, len, prepared) = (
                        active.base,
                        active.file.clone(),
                        active.len,
                        active.prepared,
                    );
                }
                Err(e) if end != start => {
                    return Err(AppendError::io("cannot create a segment in", &self.dir, e))
                }
                Err(e) => {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "cannot start a new segment; the active one grows on");
                }
            }
        }
        let path = segment::path(&self.dir, base);
        let mut buf = Vec::with_capacity(
            payloads
                .iter()
                .map(|p| segment::entry_bytes(p.len()) as usize)
                .sum(),
        );
        let mut positions = Vec::with_capacity(payloads.len());
        for (i, payload) in payloads.iter().enumerate() {
            positions.push(len + buf.len() as u64);
            segment::encode_into(&mut buf, start + i as u64, append_ms, payload);
        }
        let needed = len + buf.len() as u64;
        if !files.no_prealloc {
            if let Some(to) = prealloc::target(len, needed, prepared, self.segment_bytes) {
                match prealloc::zero_fill(&file, prepared, to) {
                    Ok(()) => prepared = to,
                    Err(e) => {
                        // Only a speed-up: without it appends grow the file as they go.
                        tracing::debug!(path = %path.display(), error = %e, "cannot prepare space ahead of appends");
                        files.no_prealloc = true;
                        prepared = file.set_len(len).map_or(prepared, |()| len);
                    }
                }
            }
        }
        let written =
            file.write_all_at(&buf, len).and_then(
                |()| {
                    if sync {
                        file.sync_data()
                    } else {
                        Ok(())
                    }
                },
            );
        if let Err(e) = written {
            // Not durable, so not published: cut it, so the offsets are reused and a restart
            // cannot surface events publishers saw fail.
            match file.set_len(len) {
                Ok(()) => prepared = len,
                Err(cut) => {
                    tracing::warn!(path = %path.display(), error = %cut, "cannot cut a failed append; retrying before the next append or rotation");
                    files.dirty_tail = true;
                }
            }
            self.segments()
                .back_mut()
                .expect("a log always has a segment")
                .prepared = prepared;
            return Err(AppendError::io("cannot write", &path, e));
        }
        let mut segments = self.segments();
        let active = segments.back_mut().expect("a log always has a segment");
        active.positions.extend(positions);
        active.len = needed;
        active.prepared = prepared.max(needed);
        Ok(buf.len() as u64)
    }

    /// Makes everything appended durable (under a sync interval). Blocking.
    pub(crate) fn sync(&self) -> io::Result<()> {
        let files = self.files();
        if files.deleted {
            return Ok(());
        }
        let file = self.segments().back().map(|s| s.file.clone());
        match file {
            Some(file) => file.sync_data(),
            None => Ok(()),
        }
    }

    /// Starts a new active segment at `base`, under the caller's hold of `files`.
    fn rotate(&self, files: &mut Files, base: u64) -> io::Result<()> {
        let old = self
            .segments()
            .back()
            .map(|s| (s.file.clone(), s.len, s.prepared));
        if let Some((old, len, prepared)) = old {
            if prepared > len || files.dirty_tail {
                // A sealed segment keeps no prepared space, nor what a failed append left.
                old.set_len(len)?;
                files.dirty_tail = false;
                if let Some(active) = self.segments().back_mut() {
                    active.prepared = len;
                }
            }
            // Sealed segments are durable whatever the sync policy.
            old.sync_data()?;
        }
        let segment = create_segment(&self.dir, base)?;
        self.segments().push_back(segment);
        // A new segment: worth preparing space for again.
        files.no_prealloc = false;
        Ok(())
    }

    /// Reads `from..to`, handing `each` every offset with its payload, or `None` where the
    /// record is missing (removed) or damaged. Blocking.
    pub(crate) fn read<T>(
        &self,
        from: u64,
        to: u64,
        mut each: impl FnMut(u64, Option<&[u8]>) -> T,
    ) -> io::Result<Vec<T>> {
        // Byte ranges to read, found under the lock and read outside it.
        let spans: Vec<(Arc<File>, u64, u64, u64, u64)> = self
            .segments()
            .iter()
            .filter(|s| s.base < to && s.end() > from)
            .map(|s| {
                let (lo, hi) = (from.max(s.base), to.min(s.end()));
                (s.file.clone(), lo, hi, s.position(lo), s.position(hi))
            })
            .collect();
        let mut out = Vec::with_capacity((to - from) as usize);
        let mut expected = from;
        for (file, lo, hi, start, stop) in spans {
            while expected < lo {
                out.push(each(expected, None));
                expected += 1;
            }
            let mut buf = vec![0; (stop - start) as usize];
            file.read_exact_at(&mut buf, start)?;
            let mut at = 0;
            while expected < hi {
                match buf.get(at..).and_then(segment::parse) {
                    Some(record) if record.offset == expected => {
                        out.push(each(expected, Some(record.payload)));
                        at += record.len;
                    }
                    // Damaged since it was written: the rest of the span cannot be framed.
                    _ => {
                        while expected < hi {
                            out.push(each(expected, None));
                            expected += 1;
                        }
                        break;
                    }
                }
                expected += 1;
            }
        }
        while expected < to {
            out.push(each(expected, None));
            expected += 1;
        }
        Ok(out)
    }

    /// Append time of the record at `offset`, if it is on disk. Blocking.
    pub(crate) fn append_ms(&self, offset: u64) -> io::Result<Option<u64>> {
        let found = self
            .segments()
            .iter()
            .find(|s| s.base <= offset && offset < s.end())
            .map(|s| (s.file.clone(), s.position(offset)));
        let Some((file, at)) = found else {
            return Ok(None);
        };
        let mut header = [0; segment::HEADER_LEN];
        file.read_exact_at(&mut header, at)?;
        Ok(segment::header_append_ms(&header))
    }

    /// Bytes the records `from..to` take on disk.
    pub(crate) fn bytes_between(&self, from: u64, to: u64) -> u64 {
        self.segments()
            .iter()
            .filter(|s| s.base < to && s.end() > from)
            .map(|s| s.position(to.min(s.end())) - s.position(from.max(s.base)))
            .sum()
    }

    /// The first offset `o` in `from..=to` with `bytes_between(o, to) <= max`.
    pub(crate) fn first_within_bytes(&self, from: u64, to: u64, max: u64) -> u64 {
        let (mut lo, mut hi) = (from, to);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.bytes_between(mid, to) <= max {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }

    /// Removes the segments wholly below `base`, first replacing the active segment if all
    /// of it is below `base` (and it is worth a file). Returns the bytes freed. Blocking.
    pub(crate) fn drop_below(&self, base: u64) -> io::Result<u64> {
        let mut files = self.files();
        if files.deleted {
            return Ok(0);
        }
        let (end, len) = {
            let segments = self.segments();
            let active = segments.back().expect("a log always has a segment");
            (active.end(), active.len)
        };
        if end <= base && len >= ROTATE_CONSUMED_MIN.min(self.segment_bytes) {
            self.rotate(&mut files, end)?;
        }
        let gone: Vec<(u64, u64)> = {
            let mut segments = self.segments();
            let mut gone = Vec::new();
            while segments.len() > 1 && segments.front().is_some_and(|s| s.end() <= base) {
                if let Some(s) = segments.pop_front() {
                    gone.push((s.base, s.len));
                }
            }
            gone
        };
        if gone.is_empty() {
            return Ok(0);
        }
        let mut freed = 0;
        for (base, len) in gone {
            std::fs::remove_file(segment::path(&self.dir, base))?;
            freed += len;
        }
        sync_dir(&self.dir)?;
        drop(files);
        Ok(freed)
    }

    /// Removes the log's directory and everything in it; appends fail from now on. Blocking.
    pub(crate) fn delete(&self, trash: &Path) -> io::Result<()> {
        let mut files = self.files();
        files.deleted = true;
        self.segments().clear();
        // Renamed first, so a crash mid-removal leaves no half log under the channel's name.
        match std::fs::rename(&self.dir, trash) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        if let Some(parent) = self.dir.parent() {
            sync_dir(parent)?;
        }
        std::fs::remove_dir_all(trash)
    }
}

fn create_segment(dir: &Path, base: u64) -> io::Result<Segment> {
    let path = segment::path(dir, base);
    // Only a leftover of a crashed rotation can have this name: everything below `base` is in
    // older segments, and nothing at or past it exists yet.
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)?;
    // The name carries the head across a restart once everything older is dropped.
    sync_dir(dir)?;
    Ok(Segment {
        base,
        file: Arc::new(file),
        positions: Vec::new(),
        len: 0,
        prepared: 0,
    })
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(n: usize, size: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| vec![i as u8; size]).collect()
    }

    fn read_all(log: &Log, from: u64, to: u64) -> Vec<Option<Vec<u8>>> {
        log.read(from, to, |_, p| p.map(<[u8]>::to_vec)).unwrap()
    }

    #[test]
    fn appends_rotate_read_back_across_segments_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (log, rec) = Log::open(dir.path(), 100, 0).unwrap();
        assert_eq!((rec.first, rec.end), (0, 0));
        for i in 0..6 {
            log.append(i * 2, 1000 + i, &payloads(2, 30), true).unwrap();
        }
        assert!(log.segments().len() > 1, "rotated past segment_bytes");
        let all = read_all(&log, 0, 12);
        assert_eq!(all.len(), 12);
        assert!(all
            .iter()
            .all(|p| p.as_ref().is_some_and(|p| p.len() == 30)));
        assert_eq!(log.append_ms(5).unwrap(), Some(1002));
        assert_eq!(log.bytes_between(0, 12), 12 * segment::entry_bytes(30));
        drop(log);
        let (log, rec) = Log::open(dir.path(), 100, 0).unwrap();
        assert_eq!((rec.first, rec.end, rec.truncated), (0, 12, 0));
        assert_eq!(rec.last_ms, Some(1005));
        assert_eq!(read_all(&log, 3, 9).len(), 6);
        // Dropping below 7 removes only whole segments; 7.. stays readable.
        log.drop_below(7).unwrap();
        assert!(log.segments().front().unwrap().base <= 7);
        assert!(read_all(&log, 7, 12).iter().all(Option::is_some));
    }

    #[test]
    fn a_torn_tail_is_cut_on_open_and_the_next_append_reuses_its_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(dir.path(), 1 << 20, 0).unwrap();
        log.append(0, 1, &payloads(3, 10), true).unwrap();
        drop(log);
        let path = segment::path(dir.path(), 0);
        let full = std::fs::read(&path).unwrap();
        let one = segment::entry_bytes(10) as usize;
        // A crash mid-way through the third record.
        std::fs::write(&path, &full[..2 * one + 5]).unwrap();
        let (log, rec) = Log::open(dir.path(), 1 << 20, 0).unwrap();
        assert_eq!((rec.end, rec.truncated), (2, 5));
        log.append(2, 2, &payloads(1, 7), true).unwrap();
        let all = read_all(&log, 0, 3);
        assert_eq!(all[2].as_deref().map(<[u8]>::len), Some(7));
    }

    #[test]
    fn a_drained_log_shrinks_to_an_empty_segment_and_keeps_its_head() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(dir.path(), 1 << 20, 0).unwrap();
        log.append(0, 1, &payloads(100, 1000), true).unwrap();
        log.drop_below(100).unwrap();
        let segments = log.segments();
        assert_eq!(segments.len(), 1);
        assert_eq!((segments[0].base, segments[0].len), (100, 0));
        drop(segments);
        drop(log);
        let (_, rec) = Log::open(dir.path(), 1 << 20, 0).unwrap();
        assert_eq!((rec.first, rec.end), (100, 100));
    }

    #[test]
    fn appends_go_into_prepared_zeros_which_a_reopen_keeps_and_a_seal_cuts() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(dir.path(), 1 << 20, 0).unwrap();
        log.append(0, 1, &payloads(3, 100), true).unwrap();
        let path = segment::path(dir.path(), 0);
        let records = 3 * segment::entry_bytes(100);
        let on_disk = std::fs::metadata(&path).unwrap().len();
        assert!(
            on_disk > records,
            "{on_disk} bytes on disk for {records} of records: nothing prepared"
        );
        // A second append lands in the prepared space: the file does not grow.
        log.append(3, 2, &payloads(2, 100), true).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), on_disk);
        drop(log);
        // Reopened: the zeros are prepared space, not a torn tail, and stay.
        let (log, rec) = Log::open(dir.path(), 1 << 20, 0).unwrap();
        assert_eq!((rec.end, rec.truncated, rec.last_ms), (5, 0, Some(2)));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), on_disk);
        log.append(5, 3, &payloads(1, 100), true).unwrap();
        assert!(read_all(&log, 0, 6).iter().all(Option::is_some));
        // Sealed by a rotation: cut to its records.
        log.rotate(&mut log.files(), 6).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            6 * segment::entry_bytes(100)
        );
        log.append(6, 4, &payloads(1, 100), true).unwrap();
        drop(log);
        let (log, rec) = Log::open(dir.path(), 1 << 20, 0).unwrap();
        assert_eq!((rec.first, rec.end, rec.truncated), (0, 7, 0));
        assert!(read_all(&log, 0, 7).iter().all(Option::is_some));
    }

    #[test]
    fn a_torn_record_inside_prepared_space_is_cut_and_its_offsets_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(dir.path(), 1 << 20, 0).unwrap();
        log.append(0, 1, &payloads(2, 10), true).unwrap();
        drop(log);
        let path = segment::path(dir.path(), 0);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = 2 * segment::entry_bytes(10) as usize;
        assert!(bytes.len() > at + 40, "space prepared past the records");
        // Half of a third record, then the zeros it was written into.
        let mut third = Vec::new();
        segment::encode_into(&mut third, 2, 1, &[9; 40]);
        bytes[at..at + 30].copy_from_slice(&third[..30]);
        std::fs::write(&path, &bytes).unwrap();
        let (log, rec) = Log::open(dir.path(), 1 << 20, 0).unwrap();
        assert_eq!(rec.end, 2);
        assert_eq!(rec.truncated, (bytes.len() - at) as u64);
        log.append(2, 2, &payloads(1, 7), true).unwrap();
        assert_eq!(read_all(&log, 2, 3)[0].as_deref(), Some(&[0u8; 7][..]));
    }

    #[test]
    fn a_seal_cuts_what_a_failed_append_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(dir.path(), 1 << 20, 0).unwrap();
        log.append(0, 1, &payloads(10, 100), true).unwrap();
        // A failed append whose cut failed too: its record is still in the file.
        let path = segment::path(dir.path(), 0);
        let mut left = Vec::new();
        segment::encode_into(&mut left, 10, 2, &[7; 50]);
        let len = log.segments().back().unwrap().len;
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&left, len).unwrap();
        log.files().dirty_tail = true;
        log.segments().back_mut().unwrap().prepared = len;
        // Sealed (as retention or a full segment does) before any append cut it.
        log.rotate(&mut log.files(), 10).unwrap();
        log.append(10, 3, &payloads(1, 9), true).unwrap();
        drop(log);
        let (log, rec) = Log::open(dir.path(), 1 << 20, 0).unwrap();
        assert_eq!((rec.first, rec.end), (0, 11));
        assert_eq!(read_all(&log, 10, 11)[0].as_deref(), Some(&[0u8; 9][..]));
    }

    #[test]
    fn a_gap_before_the_next_offset_starts_a_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (log, _) = Log::open(dir.path(), 1 << 20, 0).unwrap();
        log.append(0, 1, &payloads(2, 4), true).unwrap();
        log.append(10, 1, &payloads(1, 4), true).unwrap();
        let all = read_all(&log, 0, 11);
        assert_eq!(all.iter().filter(|p| p.is_some()).count(), 3);
        assert!(all[2..10].iter().all(Option::is_none));
    }
}
