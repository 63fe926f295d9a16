//! A channel's metadata beside its log: the oldest retained offset, and each subscription's
//! committed offset and the acknowledgements above it. One small file, `meta`, replaced
//! whole: written to `meta.tmp`, then renamed over it, so it always holds one complete
//! snapshot, checked by a CRC.
//!
//! Losing it costs redelivery, never events: a damaged or missing snapshot leaves the base at
//! the oldest segment on disk, and subscriptions it no longer names start there instead of at
//! the head (see [`Snapshot::unknown_start`]).
//!
//! ```text
//! "HLM1" | u32 LE CRC-32 of the body | u32 LE body length | body
//! body: str name | u64 base | u64 last_removed_ms | u8 has_unknown_start | u64 unknown_start
//!       | u32 n | n x (str subscription | u64 committed | u32 m | m x (u64 start | u64 end))
//! str: u32 LE length | UTF-8 bytes; integers little-endian
//! ```

use super::log::sync_dir;
use std::collections::BTreeSet;
use std::io::{self, Write};
use std::ops::Range;
use std::path::Path;

const MAGIC: &[u8; 4] = b"HLM1";
const FILE: &str = "meta";
const TMP: &str = "meta.tmp";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// The channel's name, to recognise a directory that belongs to another.
    pub(crate) name: String,
    /// Oldest retained offset; everything below it is removed (or about to be).
    pub(crate) base: u64,
    /// Append time of the newest removed event.
    pub(crate) last_removed_ms: u64,
    /// Set once metadata was lost: a subscription this snapshot does not name starts here
    /// (or at the base, if later) rather than at the head, since it may be one whose state
    /// was lost and still owed these events.
    pub(crate) unknown_start: Option<u64>,
    pub(crate) subscriptions: Vec<SubscriptionState>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SubscriptionState {
    pub(crate) name: String,
    /// Everything below it is settled.
    pub(crate) committed: u64,
    /// Offsets settled out of order above `committed`, as half-open ranges.
    pub(crate) acked: Vec<Range<u64>>,
}

/// What was found on open.
#[derive(Debug)]
pub(crate) enum Loaded {
    Missing,
    Damaged(String),
    Found(Snapshot),
}

/// Reads the snapshot in `dir`. Blocking.
pub(crate) fn load(dir: &Path) -> Loaded {
    match std::fs::read(dir.join(FILE)) {
        Ok(bytes) => match decode(&bytes) {
            Some(snapshot) => Loaded::Found(snapshot),
            None => Loaded::Damaged(format!(
                "{} ({} bytes) fails its length or CRC check",
                dir.join(FILE).display(),
                bytes.len()
            )),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Loaded::Missing,
        Err(e) => Loaded::Damaged(format!("cannot read {}: {e}", dir.join(FILE).display())),
    }
}

/// Replaces the snapshot in `dir`; with `durable`, synced (file and directory) before it
/// returns, otherwise a crash of the process still keeps it (the kernel has it) but a power
/// loss may not. Blocking.
pub(crate) fn store(dir: &Path, snapshot: &Snapshot, durable: bool) -> io::Result<()> {
    let tmp = dir.join(TMP);
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&encode(snapshot))?;
        if durable {
            file.sync_data()?;
        }
        std::fs::rename(&tmp, dir.join(FILE))?;
        if durable {
            sync_dir(dir)?;
        }
        Ok(())
    })();
    if written.is_err() {
        // A half-written temporary file is only in the way (and holds space on a full disk).
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Sorted offsets as half-open ranges: out-of-order acks are mostly runs behind one slow
/// event, so this stays small.
pub(crate) fn ranges(offsets: &BTreeSet<u64>) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    for &o in offsets {
        match out.last_mut() {
            Some(run) if run.end == o => run.end = o + 1,
            _ => out.push(o..o + 1),
        }
    }
    out
}

fn encode(s: &Snapshot) -> Vec<u8> {
    let mut body = Vec::with_capacity(64 + s.subscriptions.len() * 48);
    put_str(&mut body, &s.name);
    body.extend_from_slice(&s.base.to_le_bytes());
    body.extend_from_slice(&s.last_removed_ms.to_le_bytes());
    body.push(u8::from(s.unknown_start.is_some()));
    body.extend_from_slice(&s.unknown_start.unwrap_or(0).to_le_bytes());
    body.extend_from_slice(&(s.subscriptions.len() as u32).to_le_bytes());
    for sub in &s.subscriptions {
        put_str(&mut body, &sub.name);
        body.extend_from_slice(&sub.committed.to_le_bytes());
        body.extend_from_slice(&(sub.acked.len() as u32).to_le_bytes());
        for r in &sub.acked {
            body.extend_from_slice(&r.start.to_le_bytes());
            body.extend_from_slice(&r.end.to_le_bytes());
        }
    }
    let mut out = Vec::with_capacity(12 + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn decode(bytes: &[u8]) -> Option<Snapshot> {
    if bytes.get(..4)? != MAGIC {
        return None;
    }
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    let len = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?) as usize;
    let body = bytes.get(12..12 + len)?;
    if bytes.len() != 12 + len || crc32fast::hash(body) != crc {
        return None;
    }
    let mut r = Reader(body);
    let name = r.str()?;
    let base = r.u64()?;
    let last_removed_ms = r.u64()?;
    let has_unknown = r.u8()?;
    let unknown = r.u64()?;
    let n = r.u32()?;
    let mut subscriptions = Vec::new();
    for _ in 0..n {
        let name = r.str()?;
        let committed = r.u64()?;
        let m = r.u32()?;
        let mut acked = Vec::new();
        for _ in 0..m {
            let (start, end) = (r.u64()?, r.u64()?);
            if start > end {
                return None;
            }
            acked.push(start..end);
        }
        subscriptions.push(SubscriptionState {
            name,
            committed,
            acked,
        });
    }
    r.0.is_empty().then_some(Snapshot {
        name,
        base,
        last_removed_ms,
        unknown_start: (has_unknown == 1).then_some(unknown),
        subscriptions,
    })
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Snapshot {
        Snapshot {
            name: "ns/b".into(),
            base: 5,
            last_removed_ms: 1234,
            unknown_start: Some(3),
            subscriptions: vec![
                SubscriptionState {
                    name: "t1".into(),
                    committed: 7,
                    acked: vec![9..11, 12..13],
                },
                SubscriptionState {
                    name: "t2 é".into(),
                    committed: 5,
                    acked: vec![],
                },
            ],
        }
    }

    #[test]
    fn a_snapshot_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(load(dir.path()), Loaded::Missing));
        store(dir.path(), &sample(), true).unwrap();
        match load(dir.path()) {
            Loaded::Found(s) => assert_eq!(s, sample()),
            other => panic!("{other:?}"),
        }
        assert!(!dir.path().join(TMP).exists());
    }

    #[test]
    fn any_damage_is_detected() {
        let good = encode(&sample());
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert_eq!(decode(&bad), None, "flip at {i}");
        }
        for cut in 0..good.len() {
            assert_eq!(decode(&good[..cut]), None, "cut at {cut}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert_eq!(decode(&longer), None);
    }

    #[test]
    fn offsets_become_runs() {
        let set: BTreeSet<u64> = [4, 5, 6, 9, 11, 12].into();
        assert_eq!(ranges(&set), vec![4..7, 9..10, 11..13]);
        assert!(ranges(&BTreeSet::new()).is_empty());
    }
}
