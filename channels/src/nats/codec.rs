//! CloudEvents NATS protocol binding: the same header names as the HTTP binding, so any
//! CloudEvents-aware NATS client can read Herald's streams. Each event goes in the mode that
//! carries it without loss: binary (attributes as percent-encoded `ce-` headers, the data
//! content type as `content-type`, the data as the payload) when its data came as bytes;
//! structured (`application/cloudevents+json`, the JSON format as Herald writes it) when it
//! came as a JSON `data` or `data_base64` member or has typed extensions, which headers would
//! turn into other forms. W3C trace context travels as `traceparent`/`tracestate` headers.

use crate::binding;
use crate::event::{json, WireEvent};
use async_nats::HeaderMap;
use bytes::Bytes;

pub fn encode(event: &WireEvent) -> (HeaderMap, Bytes) {
    let mut headers = HeaderMap::new();
    for (name, value) in event.trace().headers() {
        headers.insert(name, value);
    }
    if !event.binary_is_lossless() {
        headers.insert("content-type", binding::STRUCTURED_CONTENT_TYPE);
        return (headers, Bytes::from(json::to_vec(event)));
    }
    // Percent-encoded like the HTTP binding: a raw line break would end the header and
    // splice what follows into the header block (attribute injection).
    for (name, value) in binding::attribute_headers(event) {
        if let Ok(value) = value.to_str() {
            headers.insert(name.as_str(), value);
        }
    }
    (headers, event.body_bytes().unwrap_or_default())
}

pub fn decode(headers: Option<&HeaderMap>, payload: &Bytes) -> Result<WireEvent, String> {
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
    if !binding::is_structured(&http_headers) && !http_headers.contains_key("ce-specversion") {
        return Err("neither ce-specversion nor a structured content type".into());
    }
    binding::headers_to_event(&http_headers, payload.clone())
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
            .extension("amount", "7")
            .data("application/json", br#"{"a": 1}"#.to_vec())
            .build()
            .unwrap();
        let event = WireEvent::from(event);
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
        let event = WireEvent::from(event);
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

#[cfg(test)]
mod fidelity {
    use super::*;
    use crate::event::TraceContext;

    #[test]
    fn structured_data_and_typed_extensions_travel_structured_and_come_back_exactly() {
        let sent = br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"2018-04-05T03:56:24Z","n":7,"data":{"b": 1, "a": 123456789012345678901234567890}}"#;
        let mut event = json::from_slice(sent).unwrap();
        event.set_trace(TraceContext {
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            tracestate: Some("k=v".into()),
        });
        let (headers, payload) = encode(&event);
        assert_eq!(
            headers.get("content-type").map(|v| v.as_str()),
            Some(binding::STRUCTURED_CONTENT_TYPE)
        );
        assert_eq!(decode(Some(&headers), &payload).unwrap(), event);
    }

    #[test]
    fn binary_bytes_travel_binary_and_come_back_exactly() {
        let mut h = http::HeaderMap::new();
        for (k, v) in [
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
            ("ce-time", "2018-04-05T03:56:24Z"),
            ("content-type", "application/json"),
        ] {
            h.insert(k, v.parse().unwrap());
        }
        let event = binding::headers_to_event(&h, b"{\"world\": \"hello\"}\n".to_vec()).unwrap();
        let (headers, payload) = encode(&event);
        assert_eq!(
            headers.get("ce-time").map(|v| v.as_str()),
            Some("2018-04-05T03:56:24Z")
        );
        assert_eq!(&payload[..], b"{\"world\": \"hello\"}\n");
        assert_eq!(decode(Some(&headers), &payload).unwrap(), event);
    }
}
