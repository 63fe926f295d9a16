//! CloudEvents Kafka protocol binding: attributes and extensions as `ce_<name>` headers
//! (raw UTF-8: Kafka headers are length-prefixed bytes, nothing needs encoding), the data
//! content type as `content-type`, the data as the record value, so any CloudEvents-aware
//! Kafka consumer (Knative's KafkaSource, kcat with headers) reads Herald's topics. Like the
//! NATS codec, an event goes binary when its data came as bytes and structured
//! (`application/cloudevents+json`) when it came as a JSON member or has typed extensions,
//! so it comes back exactly as accepted. W3C trace context travels as `traceparent` and
//! `tracestate` headers. The record key is the event's `partitionkey` extension (Knative's
//! partitioning extension), so one key keeps one partition and therefore its order.

use crate::binding;
use crate::event::{json, WireEvent};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;

/// The extension whose value becomes the record key.
pub const PARTITION_KEY: &str = "partitionkey";

/// Header prefix of CloudEvents attributes in the Kafka binding.
const KAFKA_PREFIX: &str = "ce_";

/// An event ready to be produced: headers and value, and the key when the event has one.
pub struct EncodedEvent {
    headers: OwnedHeaders,
    payload: Option<Vec<u8>>,
    pub key: Option<String>,
}

impl EncodedEvent {
    /// The record to produce; librdkafka copies it, so it may be dropped once enqueued.
    pub fn to_record<'a>(&'a self, topic: &'a str) -> FutureRecord<'a, str, Vec<u8>> {
        let mut record = FutureRecord::to(topic).headers(self.headers.clone());
        if let Some(payload) = &self.payload {
            record = record.payload(payload);
        }
        match &self.key {
            Some(key) => record.key(key.as_str()),
            None => record,
        }
    }
}

pub fn encode(event: &WireEvent) -> Result<EncodedEvent, String> {
    let key = event.attribute(PARTITION_KEY).map(|v| v.into_owned());
    let mut headers = OwnedHeaders::new();
    for (name, value) in event.trace().headers() {
        headers = headers.insert(Header {
            key: name,
            value: Some(value),
        });
    }
    let payload = if event.binary_is_lossless() {
        if let Some(ct) = event.content_type() {
            headers = headers.insert(Header {
                key: "content-type",
                value: Some(ct),
            });
        }
        for (name, value) in event.iter() {
            if name == "datacontenttype" {
                continue;
            }
            headers = headers.insert(Header {
                key: &format!("{KAFKA_PREFIX}{name}"),
                value: Some(value.as_ref()),
            });
        }
        event.body().map(|b| b.into_owned())
    } else {
        headers = headers.insert(Header {
            key: "content-type",
            value: Some(binding::STRUCTURED_CONTENT_TYPE),
        });
        Some(json::to_vec(event))
    };
    Ok(EncodedEvent {
        headers,
        payload,
        key,
    })
}

/// Decodes a record in binary or structured mode. Records written by other tools may be
/// anything, so anything malformed (a header without a value, a structured record without
/// a value, a value that is not UTF-8) is an error, never a panic.
pub fn decode(message: &impl Message) -> Result<WireEvent, String> {
    let Some(headers) = message.headers() else {
        return Err("no headers: not a CloudEvent in binary mode".into());
    };
    // The HTTP form of the same message: `ce-` headers with percent-encoded values, which the
    // shared decoder validates and decodes back to exactly these strings.
    let mut http_headers = http::HeaderMap::new();
    for header in headers.iter() {
        let Some(value) = header.value else {
            return Err(format!("header {:?} has no value", header.key));
        };
        let text = std::str::from_utf8(value)
            .map_err(|_| format!("header {:?} is not UTF-8", header.key))?;
        let key = header.key.to_ascii_lowercase();
        let (name, value) = match key.strip_prefix(KAFKA_PREFIX) {
            Some(attr) => (
                format!("{}{attr}", binding::HEADER_PREFIX),
                binding::encode_header_value(text).into_owned(),
            ),
            None if matches!(key.as_str(), "content-type" | "traceparent" | "tracestate") => {
                (key.clone(), text.to_string())
            }
            None => continue,
        };
        let name = http::HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("header {:?} is not a valid name", header.key))?;
        let value = http::HeaderValue::from_str(&value)
            .map_err(|_| format!("header {:?} has an invalid value", header.key))?;
        http_headers.append(name, value);
    }
    let structured = binding::is_structured(&http_headers);
    if structured && message.payload().is_none() {
        return Err("structured-mode record without a value".into());
    }
    if !structured && !http_headers.contains_key("ce-specversion") {
        return Err("no ce_specversion header: not a CloudEvent in binary mode".into());
    }
    let body = message.payload().map(<[u8]>::to_vec).unwrap_or_default();
    binding::headers_to_event(&http_headers, body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV10};
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};

    fn as_record(encoded: &EncodedEvent) -> OwnedMessage {
        let record = encoded.to_record("t");
        OwnedMessage::new(
            record.payload.cloned(),
            record.key.map(|k| k.as_bytes().to_vec()),
            "t".into(),
            Timestamp::NotAvailable,
            0,
            7,
            record.headers.clone(),
        )
    }

    #[test]
    fn round_trips_attributes_extensions_data_and_key() {
        let event = EventBuilderV10::new()
            .id("1")
            .source("/s")
            .ty("t")
            .subject("sub")
            .time(chrono::Utc::now())
            .extension("region", "eu")
            .extension(PARTITION_KEY, "order-42")
            .data("application/json", br#"{"a": 1}"#.to_vec())
            .build()
            .unwrap();
        let event = WireEvent::from(event);
        let encoded = encode(&event).unwrap();
        assert_eq!(encoded.key.as_deref(), Some("order-42"));
        let record = as_record(&encoded);
        assert_eq!(record.key(), Some(&b"order-42"[..]));
        let names: Vec<&str> = record.headers().unwrap().iter().map(|h| h.key).collect();
        assert!(
            names.contains(&"ce_id") && names.contains(&"content-type"),
            "{names:?}"
        );
        let back = decode(&record).unwrap();
        crate::codec_tests::assert_round_tripped(&back, &event);
    }

    /// Kafka headers are length-prefixed bytes and the binding carries values as raw UTF-8,
    /// so nothing needs encoding: line breaks and non-ASCII come back exactly.
    #[test]
    fn line_breaks_and_non_ascii_round_trip() {
        let event = EventBuilderV10::new()
            .id("1")
            .source("/s")
            .ty("t")
            .subject("x\r\nce_type: admin.command")
            .extension("note", "héllo 😀\n\0")
            .build()
            .unwrap();
        let back = decode(&as_record(&encode(&event.into()).unwrap())).unwrap();
        assert_eq!(back.ty(), "t");
        assert_eq!(back.subject(), Some("x\r\nce_type: admin.command"));
        assert_eq!(
            back.extension("note").map(|v| v.to_string()).as_deref(),
            Some("héllo 😀\n\0")
        );
    }

    #[test]
    fn foreign_records_are_refused_without_panicking() {
        let plain = OwnedMessage::new(
            Some(b"hello".to_vec()),
            None,
            "t".into(),
            Timestamp::NotAvailable,
            0,
            0,
            None,
        );
        assert!(decode(&plain).is_err());
        let null_header = OwnedMessage::new(
            None,
            None,
            "t".into(),
            Timestamp::NotAvailable,
            0,
            0,
            Some(OwnedHeaders::new().insert(Header::<&str> {
                key: "ce_specversion",
                value: None,
            })),
        );
        assert!(decode(&null_header).is_err());
        let structured_without_value = OwnedMessage::new(
            None,
            None,
            "t".into(),
            Timestamp::NotAvailable,
            0,
            0,
            Some(OwnedHeaders::new().insert(Header {
                key: "content-type",
                value: Some("application/cloudevents+json"),
            })),
        );
        assert!(decode(&structured_without_value).is_err());
    }
}
