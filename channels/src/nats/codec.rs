//! CloudEvents NATS protocol binding, binary mode: attributes travel as `ce-` headers, the
//! data content type as `content-type`, the data as the payload — the same header names as
//! the HTTP binding, so any CloudEvents-aware NATS client can read Herald's streams.

use async_nats::HeaderMap;
use bytes::Bytes;
use cloudevents::{AttributesReader, Data, Event};

pub fn encode(event: &Event) -> (HeaderMap, Bytes) {
    let mut headers = HeaderMap::new();
    for (name, value) in event.iter() {
        if name == "datacontenttype" {
            headers.insert("content-type", value.to_string().as_str());
        } else {
            headers.insert(format!("ce-{name}").as_str(), value.to_string().as_str());
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
                if let Ok(v) = http::HeaderValue::from_str(value.as_str()) {
                    http_headers.append(name.clone(), v);
                }
            }
        }
    }
    cloudevents::binding::http::to_event(&http_headers, payload.to_vec()).map_err(|e| e.to_string())
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
}
