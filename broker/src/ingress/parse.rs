//! Reading CloudEvents out of an ingress request (binary, structured and batch mode) and the
//! checks that decide, before the 202, that every channel can carry an event and every
//! delivery can send it. Events are read as the wire carried them ([`WireEvent`]: attribute
//! strings, data bytes and their form, the request's W3C trace context).

use super::Rejection;
use axum::http::{header, HeaderMap, StatusCode};
use herald_channels::event::json;
use herald_channels::{binding, TraceContext, WireEvent};
use herald_core::is_valid_attribute_name;
use herald_dispatcher::reply::TTL_EXTENSION;
use serde::de::{DeserializeSeed, Error as _, SeqAccess, Visitor};
use std::cell::Cell;
use std::fmt;

pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";

pub fn is_batch(headers: &HeaderMap) -> bool {
    content_type(headers).starts_with(BATCH_CONTENT_TYPE)
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn bad(m: String) -> Rejection {
    Rejection::new(StatusCode::BAD_REQUEST, m)
}

pub fn parse_events(
    headers: &HeaderMap,
    body: bytes::Bytes,
    max_batch_events: usize,
) -> Result<Vec<WireEvent>, Rejection> {
    if is_batch(headers) {
        let mut events = parse_batch(&body, max_batch_events)?;
        let trace = TraceContext::from_headers(headers);
        for event in &mut events {
            event.set_trace(trace.clone());
        }
        return Ok(events);
    }
    let structured = content_type(headers).starts_with("application/cloudevents+json");
    if !structured && !headers.contains_key(binding::names::SPECVERSION) {
        return Err(bad(
            "not a CloudEvent: binary mode needs a ce-specversion header, structured mode the \
             content type application/cloudevents+json"
                .into(),
        ));
    }
    // Binary mode: ce- header values are percent-decoded (HTTP binding 3.1.3.2).
    binding::headers_to_event(headers, body)
        .map(|e| vec![e])
        .map_err(|e| bad(format!("invalid CloudEvent: {e}")))
}

/// A batch, read element by element: one event's JSON tree exists at a time (not one per
/// event of the batch, which cost ~85 bytes of memory per byte of body), and a batch longer
/// than the limit is refused as soon as the limit is passed.
fn parse_batch(body: &[u8], max: usize) -> Result<Vec<WireEvent>, Rejection> {
    let too_long = Cell::new(false);
    let seed = BatchSeed {
        max,
        too_long: &too_long,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = seed.deserialize(&mut de).and_then(|events| {
        de.end()?;
        Ok(events)
    });
    parsed.map_err(|e| {
        if too_long.get() {
            Rejection::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("batch holds more than {max} events, the limit (--max-batch-events)"),
            )
        } else {
            bad(format!("invalid batch: {e}"))
        }
    })
}

struct BatchSeed<'a> {
    max: usize,
    too_long: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for BatchSeed<'_> {
    type Value = Vec<WireEvent>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Vec<WireEvent>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed<'_> {
    type Value = Vec<WireEvent>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON array of CloudEvents")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<WireEvent>, A::Error> {
        let mut events = Vec::new();
        // Each element as its JSON text, so its data is kept exactly as sent.
        while let Some(raw) = seq.next_element::<&serde_json::value::RawValue>()? {
            let i = events.len();
            if i == self.max {
                self.too_long.set(true);
                return Err(A::Error::custom("too many events"));
            }
            let event = json::from_raw(raw)
                .map_err(|e| A::Error::custom(format!("invalid event {i} of the batch: {e}")))?;
            events.push(event);
        }
        Ok(events)
    }
}

/// Checks the SDK leaves to us: non-empty required attributes, valid extension names, and
/// nothing a channel or a delivery could not carry (see [`binding::check_carriable`]).
pub fn validate(event: &WireEvent) -> Result<(), String> {
    for (name, value) in [("id", event.id()), ("type", event.ty())] {
        if value.is_empty() {
            return Err(format!("attribute {name} must not be empty"));
        }
    }
    if event.source().is_empty() {
        return Err("attribute source must not be empty".into());
    }
    for (name, _) in event.iter_extensions() {
        if !is_valid_attribute_name(name) {
            return Err(format!(
                "extension attribute name {name:?} is invalid: only lower-case a-z and 0-9 are allowed"
            ));
        }
    }
    binding::check_carriable(event)?;
    if let Some(ttl) = event.extension(TTL_EXTENSION) {
        let ok = ttl.to_string().parse::<i64>().is_ok_and(|n| n > 0);
        if !ok {
            return Err(format!(
                "extension {TTL_EXTENSION} must be a positive integer, got {ttl}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, BATCH_CONTENT_TYPE.parse().unwrap());
        h
    }

    fn batch(n: usize) -> bytes::Bytes {
        let events: Vec<_> = (0..n)
            .map(|i| serde_json::json!({"specversion": "1.0", "id": i.to_string(), "source": "/s", "type": "t"}))
            .collect();
        serde_json::to_vec(&events).unwrap().into()
    }

    #[test]
    fn a_batch_within_the_limit_is_read_in_order() {
        let events = parse_events(&batch_headers(), batch(3), 3).unwrap();
        let ids: Vec<_> = events.iter().map(|e| e.id().to_string()).collect();
        assert_eq!(ids, ["0", "1", "2"]);
    }

    #[test]
    fn a_batch_over_the_limit_is_413() {
        let r = parse_events(&batch_headers(), batch(4), 3).unwrap_err();
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(r.message.contains("more than 3 events"), "{}", r.message);
    }

    #[test]
    fn a_bad_batch_event_is_named() {
        let body = br#"[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{"specversion":"1.0","id":"2","source":"/s","type":"t","time":"noon"}]"#;
        let r = parse_events(&batch_headers(), bytes::Bytes::from_static(body), 10).unwrap_err();
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.message.contains("event 1 of the batch"), "{}", r.message);
        assert!(r.message.contains("attribute time"), "{}", r.message);
        let r = parse_events(&batch_headers(), bytes::Bytes::from_static(b"{}"), 10).unwrap_err();
        assert!(r.message.contains("JSON array"), "{}", r.message);
        let r = parse_events(&batch_headers(), bytes::Bytes::from_static(b"[] x"), 10).unwrap_err();
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn batch_events_keep_their_data_text_time_and_the_request_trace() {
        let body = br#"[{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"2018-04-05T03:56:24Z","data":{"b": 1, "a": 123456789012345678901234567890}},{"specversion":"1.0","id":"2","source":"/s","type":"t","data_base64":"AAE="}]"#;
        let mut h = batch_headers();
        h.insert(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                .parse()
                .unwrap(),
        );
        let events = parse_events(&h, bytes::Bytes::from_static(body), 10).unwrap();
        assert_eq!(events[0].time(), Some("2018-04-05T03:56:24Z"));
        assert_eq!(
            events[0].body().unwrap().as_ref(),
            br#"{"b": 1, "a": 123456789012345678901234567890}"#
        );
        assert_eq!(events[1].body().unwrap().as_ref(), &[0, 1]);
        for e in &events {
            assert!(e.trace().traceparent.is_some(), "{}", e.id());
        }
    }

    #[test]
    fn binary_values_are_percent_decoded_and_ce_data_is_refused() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
            ("ce-subject", "h%C3%A9llo%0D%0Ace-type:%20x"),
        ] {
            h.insert(k, v.parse().unwrap());
        }
        let events = parse_events(&h, bytes::Bytes::new(), 10).unwrap();
        assert_eq!(events[0].subject(), Some("héllo\r\nce-type: x"));
        assert_eq!(events[0].ty(), "t");
        assert!(validate(&events[0]).is_ok());
        h.insert("ce-data", "{}".parse().unwrap());
        let events = parse_events(&h, bytes::Bytes::new(), 10).unwrap();
        assert!(validate(&events[0]).unwrap_err().contains("\"data\""));
    }
}
