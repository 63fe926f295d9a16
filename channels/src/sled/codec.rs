//! The one place an event becomes the opaque bytes of a log record and back. The log itself
//! (segments, CRCs, offsets) never looks inside; a new representation changes only this file.
//!
//! Payload: a tag byte naming the encoding, then the encoded event. Tag 1: the event in the
//! CloudEvents JSON format.

use cloudevents::Event;

/// Tag of the CloudEvents JSON encoding.
const JSON: u8 = 1;

/// The record payload of `event`.
pub(crate) fn encode_event(event: &Event) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(256);
    out.push(JSON);
    serde_json::to_writer(&mut out, event)?;
    Ok(out)
}

/// The event in a record payload written by [`encode_event`] (this or an earlier version).
pub(crate) fn decode_event(payload: &[u8]) -> Result<Event, String> {
    match payload.split_first() {
        Some((&JSON, body)) => serde_json::from_slice(body).map_err(|e| e.to_string()),
        Some((tag, _)) => Err(format!("unknown event encoding {tag}")),
        None => Err("empty record".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{AttributesReader, EventBuilder, EventBuilderV10};

    #[test]
    fn an_event_survives_encoding() {
        let event = EventBuilderV10::new()
            .id("e1")
            .source("/s")
            .ty("t")
            .data("application/json", serde_json::json!({"k": 1}))
            .build()
            .unwrap();
        let back = decode_event(&encode_event(&event).unwrap()).unwrap();
        assert_eq!(back.id(), "e1");
        assert_eq!(back, event);
    }

    #[test]
    fn control_characters_and_non_ascii_survive_the_record() {
        let event = EventBuilderV10::new()
            .id("e1")
            .source("/s")
            .ty("t")
            .subject("x\r\nce-type: admin.command")
            .extension("note", "héllo 😀\0\x7f")
            .build()
            .unwrap();
        assert_eq!(decode_event(&encode_event(&event).unwrap()).unwrap(), event);
    }

    #[test]
    fn a_truncated_or_foreign_payload_is_an_error_not_a_panic() {
        assert!(decode_event(&[]).is_err());
        assert!(decode_event(&[1, b'{']).is_err());
        assert!(decode_event(&[9, b'{', b'}']).is_err());
    }
}
