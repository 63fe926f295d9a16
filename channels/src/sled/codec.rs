//! The one place an event becomes the opaque bytes of a log record and back. The log itself
//! (segments, CRCs, offsets) never looks inside; a new representation changes only this file.
//!
//! Payload: a tag byte naming the encoding, then the encoded event. Tag 2:
//! [`crate::event::record`], the event as the wire carried it. Tag 1, the SDK's JSON format
//! (which lost time and data forms), is still read.

use crate::event::{record, EventError};
use crate::WireEvent;

const WIRE_RECORD: u8 = 2;
const LEGACY_SDK_JSON: u8 = 1;

/// The record payload of `event`.
pub(crate) fn encode_event(event: &WireEvent) -> Result<Vec<u8>, EventError> {
    let mut out = Vec::with_capacity(256);
    out.push(WIRE_RECORD);
    record::encode_into(event, &mut out)?;
    Ok(out)
}

/// The event in a record payload written by [`encode_event`] (this or an earlier version).
pub(crate) fn decode_event(payload: &[u8]) -> Result<WireEvent, String> {
    match payload.split_first() {
        Some((&WIRE_RECORD, body)) => record::decode(body).map_err(|e| e.to_string()),
        Some((&LEGACY_SDK_JSON, body)) => serde_json::from_slice::<cloudevents::Event>(body)
            .map(WireEvent::from)
            .map_err(|e| e.to_string()),
        Some((tag, _)) => Err(format!("unknown event encoding {tag}")),
        None => Err("empty record".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV10};

    #[test]
    fn an_event_survives_encoding() {
        let event: WireEvent = EventBuilderV10::new()
            .id("e1")
            .source("/s")
            .ty("t")
            .data("application/json", serde_json::json!({"k": 1}))
            .build()
            .unwrap()
            .into();
        let back = decode_event(&encode_event(&event).unwrap()).unwrap();
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
        assert_eq!(decode_event(&encode_event(&event).unwrap()).unwrap(), event);
    }

    #[test]
    fn a_record_of_the_legacy_sdk_format_is_still_read() {
        let mut payload = vec![LEGACY_SDK_JSON];
        payload.extend_from_slice(
            br#"{"specversion":"1.0","id":"old","source":"/s","type":"t","data":{"k":1}}"#,
        );
        let back = decode_event(&payload).unwrap();
        assert_eq!(back.id(), "old");
        assert_eq!(back.body().unwrap().as_ref(), br#"{"k":1}"#);
    }

    #[test]
    fn a_truncated_or_foreign_payload_is_an_error_not_a_panic() {
        assert!(decode_event(&[]).is_err());
        assert!(decode_event(&[1, b'{']).is_err());
        assert!(decode_event(&[2]).is_err());
        assert!(decode_event(&[9, b'{', b'}']).is_err());
    }
}
