//! One segment file: the framing of its records and the scan that recovers it on open.
//!
//! A segment is named after the offset of its first record (`00000000000000000042.log`) and
//! holds records back to back, each:
//!
//! ```text
//! u32 LE body length | u32 LE CRC-32 of the body | body: u64 LE offset | u64 LE append ms | payload
//! ```
//!
//! Offsets inside a segment are contiguous from its name. A record that is cut short, fails its
//! CRC or breaks the offset sequence ends the segment's valid part: a crash mid-append leaves
//! such a torn tail, and since a record counts as written only after the `fdatasync` that
//! follows it, nothing acknowledged is ever past that point. Zeros past the valid part are
//! space made ready for appends (see `prealloc`), not damage: a zero length is no record.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Bytes of framing before a record's payload.
pub(crate) const HEADER_LEN: usize = 24;
/// Length and CRC.
const PREFIX_LEN: usize = 8;
/// Offset and append time.
const BODY_HEADER_LEN: usize = 16;
/// A body longer than this is garbage in a torn tail, not a record.
const MAX_BODY: usize = 1 << 30;

/// Bytes a record of `payload_len` takes on disk.
pub(crate) fn entry_bytes(payload_len: usize) -> u64 {
    (HEADER_LEN + payload_len) as u64
}

/// Appends one framed record to `out`.
pub(crate) fn encode_into(out: &mut Vec<u8>, offset: u64, append_ms: u64, payload: &[u8]) {
    let body_len = BODY_HEADER_LEN + payload.len();
    out.reserve(PREFIX_LEN + body_len);
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    let crc_at = out.len();
    out.extend_from_slice(&[0; 4]);
    let body_at = out.len();
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&append_ms.to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out[body_at..]);
    out[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
}

/// A record read back.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Record<'a> {
    pub(crate) offset: u64,
    pub(crate) append_ms: u64,
    pub(crate) payload: &'a [u8],
    /// Bytes it takes, framing included.
    pub(crate) len: usize,
}

/// The record at the start of `buf`, or `None` if there is none whole and intact there.
pub(crate) fn parse(buf: &[u8]) -> Option<Record<'_>> {
    let body_len = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(buf.get(4..PREFIX_LEN)?.try_into().ok()?);
    if !(BODY_HEADER_LEN..=MAX_BODY).contains(&body_len) {
        return None;
    }
    let body = buf.get(PREFIX_LEN..PREFIX_LEN + body_len)?;
    if crc32fast::hash(body) != crc {
        return None;
    }
    Some(Record {
        offset: u64::from_le_bytes(body[..8].try_into().ok()?),
        append_ms: u64::from_le_bytes(body[8..16].try_into().ok()?),
        payload: &body[BODY_HEADER_LEN..],
        len: PREFIX_LEN + body_len,
    })
}

/// The append time in a record header read on its own (`HEADER_LEN` bytes), unchecked: the
/// CRC covers the payload too. Used to bisect by time, where a wrong answer only moves a
/// replay's start.
pub(crate) fn header_append_ms(header: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(header.get(16..24)?.try_into().ok()?))
}

pub(crate) fn file_name(base: u64) -> String {
    format!("{base:020}.log")
}

/// The base offset a segment file name stands for.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// What the scan of one segment found.
pub(crate) struct Scanned {
    /// Byte position of each valid record; record `i` has offset `base + i`.
    pub(crate) positions: Vec<u64>,
    /// Bytes of valid records: where the next append goes.
    pub(crate) valid_len: u64,
    /// Bytes in the file past `valid_len` (a torn tail, damage, or zeros made ready).
    pub(crate) torn_bytes: u64,
    /// Whether all of those bytes are zero: space prepared for appends, nothing lost.
    pub(crate) zero_tail: bool,
    /// Append time of the last valid record.
    pub(crate) last_ms: Option<u64>,
}

/// Reads a segment and finds its valid prefix. Blocking.
pub(crate) fn scan(path: &Path, base: u64) -> io::Result<Scanned> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let mut positions = Vec::new();
    let mut at = 0usize;
    let mut last_ms = None;
    while let Some(record) = bytes.get(at..).and_then(parse) {
        if record.offset != base + positions.len() as u64 {
            break;
        }
        positions.push(at as u64);
        last_ms = Some(record.append_ms);
        at += record.len;
    }
    Ok(Scanned {
        positions,
        valid_len: at as u64,
        torn_bytes: (bytes.len() - at) as u64,
        zero_tail: bytes[at..].iter().all(|&b| b == 0),
        last_ms,
    })
}

/// The path of segment `base` in `dir`.
pub(crate) fn path(dir: &Path, base: u64) -> PathBuf {
    dir.join(file_name(base))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_records() -> Vec<u8> {
        let mut buf = Vec::new();
        encode_into(&mut buf, 7, 1000, b"hello");
        encode_into(&mut buf, 8, 1001, b"");
        buf
    }

    #[test]
    fn records_round_trip_back_to_back() {
        let buf = two_records();
        let first = parse(&buf).unwrap();
        assert_eq!(
            (first.offset, first.append_ms, first.payload),
            (7, 1000, &b"hello"[..])
        );
        assert_eq!(first.len as u64, entry_bytes(5));
        let second = parse(&buf[first.len..]).unwrap();
        assert_eq!((second.offset, second.payload), (8, &b""[..]));
        assert_eq!(header_append_ms(&buf[first.len..]), Some(1001));
        assert!(parse(&buf[first.len + second.len..]).is_none());
    }

    #[test]
    fn a_cut_flipped_or_zeroed_record_is_not_one() {
        let buf = two_records();
        let first_len = parse(&buf).unwrap().len;
        for cut in 0..first_len {
            assert!(parse(&buf[..cut]).is_none(), "cut at {cut}");
        }
        for i in 0..first_len {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(
                parse(&bad).is_none_or(|r| r.len != first_len || r.payload != b"hello"),
                "flip at {i}"
            );
        }
        assert!(parse(&[0; 64]).is_none());
    }

    #[test]
    fn the_scan_stops_at_a_torn_tail_and_at_a_wrong_offset() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(file_name(7));
        let mut buf = two_records();
        let whole = buf.len() as u64;
        buf.extend_from_slice(&two_records()[..10]);
        std::fs::write(&file, &buf).unwrap();
        let scanned = scan(&file, 7).unwrap();
        assert_eq!(scanned.positions.len(), 2);
        assert_eq!((scanned.valid_len, scanned.torn_bytes), (whole, 10));
        assert_eq!(scanned.last_ms, Some(1001));
        assert!(!scanned.zero_tail);
        // Zeros after the records: prepared space, not a torn tail.
        buf.truncate(whole as usize);
        buf.extend_from_slice(&[0; 100]);
        std::fs::write(&file, &buf).unwrap();
        let scanned = scan(&file, 7).unwrap();
        assert_eq!(scanned.positions.len(), 2);
        assert_eq!((scanned.valid_len, scanned.torn_bytes), (whole, 100));
        assert!(scanned.zero_tail);
        // Named for another base: the first record's offset does not fit.
        assert!(scan(&file, 3).unwrap().positions.is_empty());
    }

    #[test]
    fn file_names_sort_by_offset_and_parse_back() {
        assert_eq!(parse_file_name(&file_name(42)), Some(42));
        assert_eq!(parse_file_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert!(file_name(9) < file_name(10));
        assert_eq!(parse_file_name("meta"), None);
        assert_eq!(parse_file_name("0042.log"), None);
    }
}
