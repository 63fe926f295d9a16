//! Records read from a broker (Kafka, NATS) as events: a record that is a CloudEvent in the
//! broker's protocol binding (binary `ce-`/`ce_` headers, or structured
//! `application/cloudevents+json`) is that event, attributes and data as written; any other
//! record is wrapped in a new event whose data is the record's bytes, unchanged.

use bytes::Bytes;
use cloudevents::{Event, EventBuilder, EventBuilderV10};
use herald_channels::{binding, WireEvent};

/// A record's headers and value, whichever broker it came from.
pub struct Record<'a> {
    pub headers: Vec<(&'a str, &'a [u8])>,
    pub value: Option<&'a [u8]>,
}

impl Record<'_> {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    pub fn content_type(&self) -> Option<String> {
        self.header("content-type")
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_string)
    }

    /// Whether the record says it is a CloudEvent (`prefix` is `ce-` for NATS, `ce_` for
    /// Kafka).
    pub fn is_cloudevent(&self, prefix: &str) -> bool {
        self.header(&format!("{prefix}specversion")).is_some()
            || self
                .content_type()
                .is_some_and(|ct| ct.starts_with("application/cloudevents"))
    }

    /// Decodes a NATS-binding record (the HTTP binding's header names).
    pub fn to_event_ce_dash(&self) -> Result<WireEvent, String> {
        let mut headers = http::HeaderMap::new();
        for (name, value) in &self.headers {
            let name = http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                .map_err(|e| format!("header {name:?}: {e}"))?;
            let value = http::HeaderValue::from_bytes(value)
                .map_err(|_| format!("header {name} has an invalid value"))?;
            headers.append(name, value);
        }
        binding::headers_to_event(&headers, self.value.unwrap_or_default().to_vec())
    }
}

/// A new event around a record that is not a CloudEvent: its bytes become the data, with the
/// record's content type when it has one.
pub fn wrap(
    id: String,
    ty: &str,
    source: String,
    subject: String,
    content_type: Option<String>,
    value: Option<&[u8]>,
) -> Event {
    let mut b = EventBuilderV10::new()
        .id(id)
        .ty(ty)
        .source(source)
        .subject(subject);
    if let Some(v) = value {
        let ct = content_type.unwrap_or_else(|| guess_content_type(v).into());
        b = b.data(ct, Bytes::copy_from_slice(v).to_vec());
    }
    b.build().expect("id, type and source are set")
}

/// JSON when the bytes parse as JSON, else opaque bytes.
fn guess_content_type(v: &[u8]) -> &'static str {
    if serde_json::from_slice::<serde::de::IgnoredAny>(v).is_ok() {
        "application/json"
    } else {
        "application/octet-stream"
    }
}
