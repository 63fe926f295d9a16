//! The bytes a store keeps for one event (the durable channel's log records): everything a
//! [`WireEvent`] holds, exactly — attributes as accepted, data bytes and their form, trace
//! context. Stores treat the result as opaque; this is the one place that reads and writes it.
//!
//! Layout (integers big-endian):
//! `kind: u8` (0 no data, 1 binary, 2 JSON text, 3 base64) ++
//! `attributes_len: u32` ++ attributes (the JSON format without data, see [`super::json`]) ++
//! `traceparent_len: u16` ++ traceparent ++ `tracestate_len: u16` ++ tracestate ++ data.
//! The data goes last and raw, so a large payload is copied once and never escaped.

use super::{json, EventError, TraceContext, WireData, WireEvent};
use bytes::Bytes;

const NO_DATA: u8 = 0;
const BINARY: u8 = 1;
const JSON: u8 = 2;
const BASE64: u8 = 3;

/// Appends the record of `event` to `out`.
pub fn encode_into(event: &WireEvent, out: &mut Vec<u8>) -> Result<(), EventError> {
    let (kind, data): (u8, &[u8]) = match event.data() {
        None => (NO_DATA, &[]),
        Some(WireData::Binary(b)) => (BINARY, b),
        Some(WireData::Json(t)) => (JSON, t.as_bytes()),
        Some(WireData::Base64(b)) => (BASE64, b),
    };
    out.push(kind);
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    out.push(b'{');
    json::write_attributes(out, event, None);
    out.push(b'}');
    let len = u32::try_from(out.len() - at - 4)
        .map_err(|_| EventError("attributes longer than 4 GiB".into()))?;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    let trace = event.trace();
    for part in [&trace.traceparent, &trace.tracestate] {
        let part = part.as_deref().unwrap_or("");
        let len = u16::try_from(part.len())
            .map_err(|_| EventError("trace context longer than 64 KiB".into()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out.extend_from_slice(data);
    Ok(())
}

/// The record of `event`.
pub fn encode(event: &WireEvent) -> Result<Vec<u8>, EventError> {
    let mut out = Vec::new();
    encode_into(event, &mut out)?;
    Ok(out)
}

/// Reads a record written by [`encode`]; malformed bytes are an error, never a panic.
pub fn decode(record: &[u8]) -> Result<WireEvent, EventError> {
    let short = || EventError("record truncated".into());
    let (&kind, rest) = record.split_first().ok_or_else(short)?;
    let (len, rest) = split_len::<4>(rest).ok_or_else(short)?;
    let attributes = rest.get(..len).ok_or_else(short)?;
    let mut rest = &rest[len..];
    let mut trace = [None, None];
    for part in &mut trace {
        let (len, after) = split_len::<2>(rest).ok_or_else(short)?;
        let text = after.get(..len).ok_or_else(short)?;
        let text = std::str::from_utf8(text)
            .map_err(|_| EventError("trace context is not UTF-8".into()))?;
        *part = (!text.is_empty()).then(|| text.to_string());
        rest = &after[len..];
    }
    let mut event = json::from_slice(attributes)?;
    let data = Bytes::copy_from_slice(rest);
    event.data = match kind {
        NO_DATA => None,
        BINARY => Some(WireData::Binary(data)),
        BASE64 => Some(WireData::Base64(data)),
        JSON => Some(WireData::Json(
            String::from_utf8(data.to_vec())
                .map_err(|_| EventError("JSON data is not UTF-8".into()))?,
        )),
        other => return Err(EventError(format!("unknown data kind {other}"))),
    };
    let [traceparent, tracestate] = trace;
    event.trace = TraceContext {
        traceparent,
        tracestate,
    };
    Ok(event)
}

fn split_len<const N: usize>(bytes: &[u8]) -> Option<(usize, &[u8])> {
    let head: [u8; N] = bytes.get(..N)?.try_into().ok()?;
    let mut len = 0usize;
    for b in head {
        len = len << 8 | b as usize;
    }
    Some((len, &bytes[N..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_round_trips_exactly() {
        let base = r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"2018-04-05T03:56:24Z","subject":"x\r\nce-type: y","n":7"#;
        for body in [
            format!("{base}}}"),
            format!(r#"{base},"data":{{"b": 1, "a": 123456789012345678901234567890}}}}"#),
            format!(r#"{base},"data_base64":"AAEC"}}"#),
        ] {
            let mut e = json::from_slice(body.as_bytes()).unwrap();
            e.set_trace(TraceContext {
                traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
                tracestate: None,
            });
            let back = decode(&encode(&e).unwrap()).unwrap();
            assert_eq!(back, e, "{body}");
        }
        let mut binary = json::from_slice(format!("{base}}}").as_bytes()).unwrap();
        binary.data = Some(WireData::Binary(Bytes::from_static(
            b"{\"world\": \"hello\"}\n",
        )));
        assert_eq!(decode(&encode(&binary).unwrap()).unwrap(), binary);
    }

    #[test]
    fn malformed_records_are_errors() {
        let e = json::from_slice(br#"{"specversion":"1.0","id":"1","source":"/s","type":"t"}"#)
            .unwrap();
        let good = encode(&e).unwrap();
        for cut in 0..good.len() {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = good.clone();
        bad[0] = 9;
        assert!(decode(&bad).is_err());
    }
}
