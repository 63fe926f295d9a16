//! CloudEvents NATS protocol binding, binary mode: attributes travel as `ce-` headers, the
//! data content type as `content-type`, the data as the payload — the same header names as
//! the HTTP binding, so any CloudEvents-aware NATS client can read Herald's streams.

use crate::binding;
use async_nats::HeaderMap;
use bytes::Bytes;
use cloudevents::{AttributesReader, Data, Event};

pub fn encode(event: &Event) -> (HeaderMap, Bytes) {
    let mut headers = HeaderMap::new();
    // Percent-encoded like the HTTP binding: a raw line break would end the header and
    // splice what follows into the header block (attribute injection).
    for (name, value) in binding::attribute_headers(event) {
        if let Ok(value) = value.to_str() {
            headers.insert(name.as_str(), value);
        }
    }
    let payload = match event.data() {
        Some(Data::Binary(b)) => Bytes::from(b.clone()),
        Some(Data::String(s)) => Bytes::from(s.clone()),
        Some(Data::Json(v)) => Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
        None => Bytes::new(),
    };
    if event.datacontenttype().is_none() && !payload.is_empty() {
        headers.insert("content-type", "application/json");
    }
    (headers, payload)
}

pub fn decode(headers: Option<&HeaderMap>, payload: &Bytes) -> Result<Event, String> {
    let mut http_headers = http::HeaderMap::new();
    if let Some(headers) = headers {
        for (name, values) in headers.iter() {
            let Ok(name) = http::HeaderName::from_bytes(AsRef::<[u8]>::as_ref(name)) else {
                continue;
            };
            for value in values {
                // from_bytes keeps raw UTF-8 (obs-text), which the decoder accepts.
                match http::HeaderValue::from_bytes(value.as_str().as_bytes()) {
                    Ok(v) => http_headers.append(name.clone(), v),
                    Err(_) => return Err(format!("header {name} has an invalid value")),
                };
            }
        }
    }
    binding::headers_to_event(&http_headers, payload.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV10};

    #[test]
    fn round_trips_attributes_extensions_and_data() {
        let event = EventBuilderV10::new()
            .id("1")
            .source("/s")
            .ty("t")
            .subject("sub")
            .time(chrono::Utc::now())
            .extension("region", "eu")
            .extension("amount", 7i64)
            .data("application/json", serde_json::json!({"a": 1}))
            .build()
            .unwrap();
        let (headers, payload) = encode(&event);
        assert_eq!(headers.get("ce-region").map(|v| v.as_str()), Some("eu"));
        let back = decode(Some(&headers), &payload).unwrap();
        crate::codec_tests::assert_round_tripped(&back, &event);
    }

    #[test]
    fn line_breaks_and_non_ascii_round_trip_without_splicing() {
        let event = EventBuilderV10::new()
            .id("1")
            .source("/s")
            .ty("t")
            .subject("x\r\nce-type: admin.command")
            .extension("note", "héllo 😀\n")
            .build()
            .unwrap();
        let (headers, payload) = encode(&event);
        for (_, values) in headers.iter() {
            for v in values {
                assert!(!v.as_str().contains(['\r', '\n']), "{v:?}");
            }
        }
        assert_eq!(headers.get("ce-type").map(|v| v.as_str()), Some("t"));
        let back = decode(Some(&headers), &payload).unwrap();
        assert_eq!(back.ty(), "t");
        assert_eq!(back.subject(), Some("x\r\nce-type: admin.command"));
        assert_eq!(
            back.extension("note").map(|v| v.to_string()).as_deref(),
            Some("héllo 😀\n")
        );
    }
}
