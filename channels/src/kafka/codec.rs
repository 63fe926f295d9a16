//! CloudEvents Kafka protocol binding, binary mode (the SDK's `rdkafka` binding): attributes
//! and extensions travel as `ce_<name>` headers, the data content type as `content-type`,
//! the data as the record value — so any CloudEvents-aware Kafka consumer (Knative's
//! KafkaSource, kcat with headers) reads Herald's topics. The record key is the event's
//! `partitionkey` extension (Knative's partitioning extension), so one key keeps one
//! partition and therefore its order.

use cloudevents::binding::rdkafka::{record_to_event, FutureRecordExt, MessageRecord};
use cloudevents::Event;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::FutureRecord;

/// The extension whose value becomes the record key.
pub const PARTITION_KEY: &str = "partitionkey";

/// An event ready to be produced: headers and value, and the key when the event has one.
pub struct EncodedEvent {
    pub record: MessageRecord,
    pub key: Option<String>,
}

impl EncodedEvent {
    /// The record to produce; librdkafka copies it, so it may be dropped once enqueued.
    pub fn to_record<'a>(&'a self, topic: &'a str) -> FutureRecord<'a, str, Vec<u8>> {
        let record = FutureRecord::to(topic).message_record(&self.record);
        match &self.key {
            Some(key) => record.key(key.as_str()),
            None => record,
        }
    }
}

pub fn encode(event: Event) -> Result<EncodedEvent, String> {
    let key = event.extension(PARTITION_KEY).map(|v| v.to_string());
    let record = MessageRecord::from_event(event).map_err(|e| e.to_string())?;
    Ok(EncodedEvent { record, key })
}

/// Decodes a record in binary or structured mode. Records written by other tools may be
/// anything, so what the SDK's decoder would panic on (a header without a value, a
/// structured record without a value) is refused here first.
pub fn decode(message: &impl Message) -> Result<Event, String> {
    let Some(headers) = message.headers() else {
        return Err("no headers: not a CloudEvent in binary mode".into());
    };
    let mut structured = false;
    for header in headers.iter() {
        let Some(value) = header.value else {
            return Err(format!("header {:?} has no value", header.key));
        };
        if header.key.eq_ignore_ascii_case("content-type")
            && value.starts_with(b"application/cloudevents+json")
        {
            structured = true;
        }
    }
    if structured && message.payload().is_none() {
        return Err("structured-mode record without a value".into());
    }
    record_to_event(message).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{AttributesReader, EventBuilder, EventBuilderV10};
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
            record.headers,
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
            .data("application/json", serde_json::json!({"a": 1}))
            .build()
            .unwrap();
        let encoded = encode(event.clone()).unwrap();
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
        let back = decode(&as_record(&encode(event).unwrap())).unwrap();
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
