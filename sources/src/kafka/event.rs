//! A Kafka record that is not a CloudEvent, as Knative's KafkaSource wraps it: type
//! `dev.knative.kafka.event`, source `/apis/v1/namespaces/<ns>/kafkasources/<name>#<topic>`,
//! subject `partition:<N>#<offset>`, id `partition:<N>/offset:<offset>`, time the record's
//! timestamp, the key as the `key` extension and each header as a `kafkaheader<name>`
//! extension. The value is the data, byte for byte, typed by the record's `content-type`
//! header when it has one (and untyped otherwise, as Knative leaves it).

use bytes::Bytes;
use cloudevents::event::Data;
use cloudevents::{Event, EventBuilder, EventBuilderV10};
use herald_channels::WireEvent;

pub const EVENT_TYPE: &str = "dev.knative.kafka.event";

/// What the wrapping reads of a record, whichever client read it.
pub struct KafkaRecord<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    /// Milliseconds since the epoch, when the record has a timestamp.
    pub timestamp_ms: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub headers: Vec<(&'a str, Option<&'a [u8]>)>,
    pub value: Option<&'a [u8]>,
}

/// `source_base` is `/apis/v1/namespaces/<ns>/kafkasources/<name>`.
pub fn wrap(source_base: &str, r: &KafkaRecord<'_>) -> WireEvent {
    let mut b = EventBuilderV10::new()
        .id(format!("partition:{}/offset:{}", r.partition, r.offset))
        .ty(EVENT_TYPE)
        .source(format!("{source_base}#{}", r.topic))
        .subject(format!("partition:{}#{}", r.partition, r.offset));
    if let Some(t) = r
        .timestamp_ms
        .and_then(chrono::DateTime::<chrono::Utc>::from_timestamp_millis)
    {
        b = b.time(t);
    }
    if let Some(key) = r.key {
        // Knative reads keys as strings; a key that is not UTF-8 is read the same lossy way.
        b = b.extension("key", String::from_utf8_lossy(key).into_owned());
    }
    let mut content_type = None;
    for (name, value) in &r.headers {
        let Some(value) = value else { continue };
        let value = String::from_utf8_lossy(value).into_owned();
        if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.clone());
        }
        let ext = header_extension(name);
        if ext.len() > "kafkaheader".len() {
            b = b.extension(&ext, value);
        }
    }
    let mut event: Event = b.build().expect("id, type and source are set");
    if let Some(v) = r.value {
        let data = Data::Binary(Bytes::copy_from_slice(v).to_vec());
        match content_type {
            Some(ct) => {
                event.set_data(ct, data);
            }
            None => {
                event.set_data_unchecked(data);
            }
        }
    }
    event.into()
}

/// `kafkaheader` and the header's name lower-cased, without what an attribute name cannot
/// hold (`Content-Type` is `kafkaheadercontenttype`).
fn header_extension(name: &str) -> String {
    let mut ext = String::from("kafkaheader");
    ext.extend(
        name.chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase()),
    );
    ext
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(headers: Vec<(&'a str, Option<&'a [u8]>)>) -> KafkaRecord<'a> {
        KafkaRecord {
            topic: "orders",
            partition: 2,
            offset: 41,
            timestamp_ms: Some(1_700_000_000_123),
            key: Some(b"cust-7"),
            headers,
            value: Some(b"{\"n\":1}"),
        }
    }

    #[test]
    fn a_plain_record_is_wrapped_as_knative_does() {
        let e = wrap(
            "/apis/v1/namespaces/shop/kafkasources/orders",
            &record(vec![
                ("Content-Type", Some(b"application/json")),
                ("X-Trace_Id", Some(b"abc")),
                ("empty", None),
            ]),
        );
        assert_eq!(e.ty(), EVENT_TYPE);
        assert_eq!(
            e.source().to_string(),
            "/apis/v1/namespaces/shop/kafkasources/orders#orders"
        );
        assert_eq!(e.id(), "partition:2/offset:41");
        assert_eq!(e.subject(), Some("partition:2#41"));
        assert_eq!(e.time(), Some("2023-11-14T22:13:20.123Z"));
        assert_eq!(e.attribute("key").as_deref(), Some("cust-7"));
        assert_eq!(
            e.attribute("kafkaheadercontenttype").as_deref(),
            Some("application/json")
        );
        assert_eq!(e.attribute("kafkaheaderxtraceid").as_deref(), Some("abc"));
        assert_eq!(e.attribute("kafkaheaderempty"), None);
        assert_eq!(e.content_type(), Some("application/json"));
        assert_eq!(e.body().as_deref(), Some(&b"{\"n\":1}"[..]));
    }

    #[test]
    fn without_a_content_type_the_data_is_untyped_and_unchanged() {
        let mut r = record(vec![]);
        r.key = None;
        r.value = Some(&[0xff, 0x00, 0x01]);
        let e = wrap("/s", &r);
        assert_eq!(e.content_type(), None);
        assert_eq!(e.attribute("key"), None);
        assert_eq!(e.body().as_deref(), Some(&[0xff, 0x00, 0x01][..]));
    }

    #[test]
    fn a_tombstone_has_no_data() {
        let mut r = record(vec![]);
        r.value = None;
        assert!(wrap("/s", &r).data().is_none());
    }
}
