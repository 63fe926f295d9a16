//! Byte layout of what the store writes: log keys and values, and the keys of the meta tree.
//! See the parent module for the layout as a whole.

use crate::event::{record, EventError};
use crate::WireEvent;

/// Version byte at the start of every log value: 2 is [`crate::event::record`] (the event
/// as the wire carried it); 1, the SDK's JSON format that lost time and data forms, is
/// still read, so a store written before keeps its events.
const RECORD_VERSION: u8 = 2;
const LEGACY_SDK_JSON: u8 = 1;
/// Version byte + append time in ms since the Unix epoch (u64 big-endian).
pub(crate) const HEADER_LEN: usize = 9;
/// A key in the meta tree naming the layout version of the whole store.
pub(crate) const FORMAT_KEY: &[u8] = b"format";
pub(crate) const FORMAT_VERSION: u64 = 1;

pub(crate) fn offset_key(offset: u64) -> [u8; 8] {
    offset.to_be_bytes()
}

pub(crate) fn decode_u64(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?))
}

/// Meta key of a subscription's committed offset: `c\0<broker>\0<subscription>`.
pub(crate) fn committed_key(broker: &str, subscription: &str) -> Vec<u8> {
    [committed_prefix(broker).as_slice(), subscription.as_bytes()].concat()
}

pub(crate) fn committed_prefix(broker: &str) -> Vec<u8> {
    [b"c\0", broker.as_bytes(), b"\0"].concat()
}

/// Meta key of a subscription's acknowledged offsets above its committed one (acks that
/// arrived out of order): `a\0<broker>\0<subscription>` -> ranges, see [`encode_ranges`].
pub(crate) fn acked_key(broker: &str, subscription: &str) -> Vec<u8> {
    [acked_prefix(broker).as_slice(), subscription.as_bytes()].concat()
}

pub(crate) fn acked_prefix(broker: &str) -> Vec<u8> {
    [b"a\0", broker.as_bytes(), b"\0"].concat()
}

/// A sorted set of offsets as half-open ranges, each `start` ++ `end` (u64 BE): out-of-order
/// acks are mostly contiguous runs behind one slow event, so this stays small.
pub(crate) fn encode_ranges(offsets: &std::collections::BTreeSet<u64>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut run: Option<(u64, u64)> = None;
    for &o in offsets {
        run = match run {
            Some((start, end)) if end == o => Some((start, o + 1)),
            Some((start, end)) => {
                out.extend_from_slice(&start.to_be_bytes());
                out.extend_from_slice(&end.to_be_bytes());
                Some((o, o + 1))
            }
            None => Some((o, o + 1)),
        };
    }
    if let Some((start, end)) = run {
        out.extend_from_slice(&start.to_be_bytes());
        out.extend_from_slice(&end.to_be_bytes());
    }
    out
}

/// The ranges written by [`encode_ranges`]; `None` if the value is malformed.
pub(crate) fn decode_ranges(value: &[u8]) -> Option<Vec<std::ops::Range<u64>>> {
    if !value.len().is_multiple_of(16) {
        return None;
    }
    value
        .chunks_exact(16)
        .map(|c| {
            let start = decode_u64(&c[..8])?;
            let end = decode_u64(&c[8..])?;
            (start <= end).then_some(start..end)
        })
        .collect()
}

/// Meta key of a broker's oldest retained offset and the append time of the newest event
/// removed before it: `b\0<broker>` -> base (u64 BE) ++ removed_ms (u64 BE).
pub(crate) fn base_key(broker: &str) -> Vec<u8> {
    [b"b\0", broker.as_bytes()].concat()
}

pub(crate) fn encode_base(base: u64, last_removed_ms: u64) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&base.to_be_bytes());
    out[8..].copy_from_slice(&last_removed_ms.to_be_bytes());
    out
}

pub(crate) fn decode_base(bytes: &[u8]) -> Option<(u64, u64)> {
    Some((decode_u64(bytes)?, decode_u64(bytes.get(8..)?)?))
}

/// A log value with room for the header, which the writer fills in once it knows the time.
pub(crate) fn encode_event(event: &WireEvent) -> Result<Vec<u8>, EventError> {
    let mut out = vec![0; HEADER_LEN];
    record::encode_into(event, &mut out)?;
    Ok(out)
}

pub(crate) fn set_header(value: &mut [u8], append_ms: u64) {
    if value.len() >= HEADER_LEN {
        value[0] = RECORD_VERSION;
        value[1..HEADER_LEN].copy_from_slice(&append_ms.to_be_bytes());
    }
}

/// Append time of a log value, if it has a header this version understands.
pub(crate) fn append_ms(value: &[u8]) -> Option<u64> {
    if !matches!(value.first(), Some(&RECORD_VERSION | &LEGACY_SDK_JSON)) {
        return None;
    }
    decode_u64(value.get(1..)?)
}

pub(crate) fn decode_event(value: &[u8]) -> Result<WireEvent, String> {
    let body = value
        .get(HEADER_LEN..)
        .ok_or("record shorter than its header")?;
    match value.first() {
        Some(&RECORD_VERSION) => record::decode(body).map_err(|e| e.to_string()),
        Some(&LEGACY_SDK_JSON) => serde_json::from_slice::<cloudevents::Event>(body)
            .map(WireEvent::from)
            .map_err(|e| e.to_string()),
        other => Err(format!("unknown record version {other:?}")),
    }
}

/// Bytes a log entry accounts for: its value and its key.
pub(crate) fn entry_bytes(value_len: usize) -> u64 {
    value_len as u64 + 8
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub(crate) fn ms_to_rfc3339(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| format!("{ms} ms since the epoch"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn acknowledged_offsets_round_trip_as_ranges() {
        let set: std::collections::BTreeSet<u64> = [4, 5, 6, 9, 11, 12].into();
        let encoded = encode_ranges(&set);
        assert_eq!(encoded.len(), 3 * 16, "three runs");
        let back: std::collections::BTreeSet<u64> = decode_ranges(&encoded)
            .unwrap()
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(back, set);
        assert!(encode_ranges(&Default::default()).is_empty());
        assert_eq!(decode_ranges(&[1, 2, 3]), None);
    }

    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV10};

    #[test]
    fn an_event_survives_encoding_with_its_append_time() {
        let event: WireEvent = EventBuilderV10::new()
            .id("e1")
            .source("/s")
            .ty("t")
            .data("application/json", serde_json::json!({"k": 1}))
            .build()
            .unwrap()
            .into();
        let mut value = encode_event(&event).unwrap();
        set_header(&mut value, 1234);
        assert_eq!(append_ms(&value), Some(1234));
        let back = decode_event(&value).unwrap();
        assert_eq!(back.id(), "e1");
        assert_eq!(back, event);
    }

    #[test]
    fn control_characters_and_non_ascii_survive_the_record() {
        let event: WireEvent = EventBuilderV10::new()
            .id("e1")
            .source("/s")
            .ty("t")
            .subject("x\r\nce-type: admin.command")
            .extension("note", "héllo 😀\0\x7f")
            .build()
            .unwrap()
            .into();
        let mut value = encode_event(&event).unwrap();
        set_header(&mut value, 1);
        assert_eq!(decode_event(&value).unwrap(), event);
    }

    #[test]
    fn a_record_of_the_legacy_sdk_format_is_still_read() {
        let mut value = vec![LEGACY_SDK_JSON, 0, 0, 0, 0, 0, 0, 0, 5];
        value.extend_from_slice(
            br#"{"specversion":"1.0","id":"old","source":"/s","type":"t","data":{"k":1}}"#,
        );
        assert_eq!(append_ms(&value), Some(5));
        let back = decode_event(&value).unwrap();
        assert_eq!(back.id(), "old");
        assert_eq!(back.body().unwrap().as_ref(), br#"{"k":1}"#);
    }

    #[test]
    fn a_truncated_record_is_an_error_not_a_panic() {
        assert!(decode_event(&[]).is_err());
        assert!(decode_event(&[1, 0, 0]).is_err());
        assert_eq!(append_ms(&[1, 0]), None);
        assert_eq!(decode_base(&[0; 9]), None);
    }
}
