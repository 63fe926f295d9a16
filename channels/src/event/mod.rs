//! [`WireEvent`]: a CloudEvent as the wire carried it, the one event type of Herald's data path
//! (ingress, every channel, filters, delivery, replies, dead letters, transforms).
//!
//! Why not `cloudevents::Event` alone: the SDK (0.9) loses what Knative says must be kept. It
//! stores `time` as a `DateTime` (`2018-04-05T03:56:24Z` comes back as `...+00:00`) and
//! `dataschema` as a normalised `Url`, and it parses structured-mode `data` into a
//! `serde_json::Value` (key order gone, big integers turned into floats, whitespace gone).
//! It has no slot for the form the data came in either.
//!
//! So a `WireEvent` is the SDK's event *without data*, which validates and types what the SDK
//! keeps losslessly (id, source, type, subject, datacontenttype, specversion, extensions with
//! their types), plus what it would lose, kept as received: the `time` and `dataschema` strings,
//! the data bytes with the form they came in ([`WireData`]), and the W3C trace context that
//! came with the event ([`TraceContext`]). Readers go through `Deref` to the SDK event; the
//! accessors that would be lossy there (`time`, `dataschema`, `data`, `iter`) are shadowed by
//! lossless ones here, so a caller cannot pick the lossy form by accident.
//!
//! Wire forms: [`json`] (the JSON event format, structured mode and batches), [`crate::binding`]
//! (binary-mode headers) and [`record`] (what stores write).

use bytes::Bytes;
use cloudevents::event::ExtensionValue;
use cloudevents::{AttributesReader, Data, Event};
use std::borrow::Cow;

pub mod json;
pub(crate) mod parts;
pub mod record;

/// A CloudEvent with its attributes as accepted and its data as sent. See the module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct WireEvent {
    /// Attributes and extensions; its data is always `None` (the data lives in `data`).
    sdk: Event,
    time: Option<String>,
    dataschema: Option<String>,
    data: Option<WireData>,
    trace: TraceContext,
}

/// Event data and the form it came in, which decides how it is written in the other mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireData {
    /// A binary-mode body (or bytes from an SDK-built event): opaque bytes.
    Binary(Bytes),
    /// The JSON format's `data` member: its JSON text exactly as sent (key order, numbers,
    /// whitespace inside the value).
    Json(String),
    /// The JSON format's `data_base64` member (0.3: `data` with `datacontentencoding:
    /// base64`), decoded.
    Base64(Bytes),
}

/// W3C trace context that travelled beside the event (HTTP `traceparent`/`tracestate`
/// headers), carried through every channel to the delivery. The distributed-tracing
/// extension attributes of the same names, when an event has them, are ordinary extensions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceContext {
    pub traceparent: Option<String>,
    pub tracestate: Option<String>,
}

impl TraceContext {
    pub const TRACEPARENT: &'static str = "traceparent";
    pub const TRACESTATE: &'static str = "tracestate";

    pub fn is_empty(&self) -> bool {
        self.traceparent.is_none() && self.tracestate.is_none()
    }

    /// The trace context of an HTTP request or response; values that are not visible ASCII
    /// (which no valid trace context is) are ignored.
    pub fn from_headers(headers: &http::HeaderMap) -> Self {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        Self {
            traceparent: get(Self::TRACEPARENT),
            tracestate: get(Self::TRACESTATE),
        }
    }

    /// `(header name, value)` pairs to send.
    pub fn headers(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            (Self::TRACEPARENT, self.traceparent.as_deref()),
            (Self::TRACESTATE, self.tracestate.as_deref()),
        ]
        .into_iter()
        .filter_map(|(n, v)| Some((n, v?)))
    }
}

/// Whether a media type is JSON (`application/json`, `text/json`, `*/*+json`, with parameters).
pub fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence == "text/json" || essence.ends_with("+json")
}

/// The media type the JSON format implies for `data` when `datacontenttype` is absent.
pub const IMPLIED_JSON: &str = "application/json";

/// Up to this many extensions, [`WireEvent::extension`] compares names instead of hashing.
const FEW_EXTENSIONS: usize = 8;

/// An error building a [`WireEvent`]: names the attribute or member at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EventError(pub String);

impl std::ops::Deref for WireEvent {
    type Target = Event;

    fn deref(&self) -> &Event {
        &self.sdk
    }
}

impl From<Event> for WireEvent {
    /// An event built with the SDK (sources, tests): its time as RFC 3339 with `Z`, its data
    /// as bytes (a JSON value as its JSON text), as a binary-mode body would carry it; a JSON
    /// value without a content type as a JSON `data` member, whose type is implied.
    fn from(mut sdk: Event) -> Self {
        let time = sdk
            .time()
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
        let dataschema = sdk.dataschema().map(|u| u.to_string());
        let typed = sdk.datacontenttype().is_some();
        let data = take_data_only(&mut sdk).map(|d| match d {
            Data::Binary(b) => WireData::Binary(b.into()),
            Data::String(s) => WireData::Binary(s.into_bytes().into()),
            Data::Json(v) if typed => WireData::Binary(v.to_string().into_bytes().into()),
            Data::Json(v) => WireData::Json(v.to_string()),
        });
        Self::assemble(sdk, time, dataschema, data)
    }
}

/// Takes the data out of an SDK event, leaving its other attributes (the SDK's `take_data`
/// also clears `datacontenttype` and `dataschema`).
fn take_data_only(sdk: &mut Event) -> Option<Data> {
    use cloudevents::AttributesWriter;
    let (ct, schema, data) = sdk.take_data();
    sdk.set_datacontenttype(ct);
    sdk.set_dataschema(schema);
    data
}

impl WireEvent {
    /// Puts an SDK event (already validated, its data removed) together with what the wire
    /// carried. `time` and `dataschema` are the strings the SDK parsed its values from.
    pub(crate) fn assemble(
        mut sdk: Event,
        time: Option<String>,
        dataschema: Option<String>,
        data: Option<WireData>,
    ) -> Self {
        take_data_only(&mut sdk);
        Self {
            sdk,
            time,
            dataschema,
            data,
            trace: TraceContext::default(),
        }
    }

    /// The SDK's view of the event, data included (JSON data parsed): for code that needs the
    /// SDK's types. Lossy in exactly the ways the module docs name.
    pub fn to_sdk(&self) -> Event {
        let mut sdk = self.sdk.clone();
        match &self.data {
            Some(WireData::Binary(b)) | Some(WireData::Base64(b)) => {
                sdk.set_data_unchecked(Data::Binary(b.to_vec()));
            }
            Some(WireData::Json(text)) => {
                let data = serde_json::from_str::<serde_json::Value>(text)
                    .map(Data::Json)
                    .unwrap_or_else(|_| Data::String(text.clone()));
                sdk.set_data_unchecked(data);
            }
            None => {}
        }
        sdk
    }

    pub fn id(&self) -> &str {
        self.sdk.id()
    }

    pub fn source(&self) -> &cloudevents::event::UriReference {
        self.sdk.source()
    }

    pub fn ty(&self) -> &str {
        self.sdk.ty()
    }

    pub fn subject(&self) -> Option<&str> {
        self.sdk.subject()
    }

    pub fn datacontenttype(&self) -> Option<&str> {
        self.sdk.datacontenttype()
    }

    /// `time` as accepted.
    pub fn time(&self) -> Option<&str> {
        self.time.as_deref()
    }

    /// `dataschema` (0.3: `schemaurl`) as accepted.
    pub fn dataschema(&self) -> Option<&str> {
        self.dataschema.as_deref()
    }

    /// The data and the form it came in.
    pub fn data(&self) -> Option<&WireData> {
        self.data.as_ref()
    }

    pub fn trace(&self) -> &TraceContext {
        &self.trace
    }

    pub fn set_trace(&mut self, trace: TraceContext) {
        self.trace = trace;
    }

    pub fn set_extension(&mut self, name: &str, value: impl Into<ExtensionValue>) {
        self.sdk.set_extension(name, value);
    }

    pub fn remove_extension(&mut self, name: &str) -> Option<ExtensionValue> {
        self.sdk.remove_extension(name)
    }

    /// Sets a string context attribute (id, source, type, subject) or a string extension.
    pub fn set_string_attribute(&mut self, name: &str, value: String) {
        use cloudevents::AttributesWriter;
        match name {
            "id" => {
                self.sdk.set_id(value);
            }
            "source" => {
                self.sdk.set_source(value);
            }
            "type" => {
                self.sdk.set_type(value);
            }
            "subject" => {
                self.sdk.set_subject(Some(value));
            }
            _ => {
                self.sdk.set_extension(name, ExtensionValue::String(value));
            }
        }
    }

    /// Every attribute with its value as accepted, context attributes first (the SDK's
    /// order), then extensions. `datacontenttype` is included.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Cow<'_, str>)> {
        self.sdk.iter().map(move |(name, value)| {
            let text = match name {
                "time" => self.time.as_deref().map(Cow::Borrowed),
                "dataschema" | "schemaurl" => self.dataschema.as_deref().map(Cow::Borrowed),
                _ => None,
            };
            (name, text.unwrap_or_else(|| Cow::Owned(value.to_string())))
        })
    }

    /// One attribute's value as accepted (extensions: strings as written, booleans and
    /// integers in their canonical form), or `None` when the event does not carry it.
    pub fn attribute(&self, name: &str) -> Option<Cow<'_, str>> {
        match name {
            "id" => Some(Cow::Borrowed(self.sdk.id())),
            "source" => Some(Cow::Borrowed(self.sdk.source())),
            "type" => Some(Cow::Borrowed(self.sdk.ty())),
            "specversion" => Some(Cow::Owned(self.sdk.specversion().to_string())),
            "datacontenttype" => self.sdk.datacontenttype().map(Cow::Borrowed),
            "subject" => self.sdk.subject().map(Cow::Borrowed),
            "time" => self.time.as_deref().map(Cow::Borrowed),
            "dataschema" | "schemaurl" => self.dataschema.as_deref().map(Cow::Borrowed),
            _ => self.extension(name).map(|v| match v {
                ExtensionValue::String(s) => Cow::Borrowed(s.as_str()),
                other => Cow::Owned(other.to_string()),
            }),
        }
    }

    /// The extension attribute `name`. Shadows the SDK's lookup, which SipHashes the name
    /// (~200 instructions for the broker TTL's): events carry few extensions, and comparing
    /// their names costs a fraction of that.
    pub fn extension(&self, name: &str) -> Option<&ExtensionValue> {
        let mut extensions = self.sdk.iter_extensions();
        // Exact for the SDK's map; only the cost depends on it.
        if extensions.size_hint().0 > FEW_EXTENSIONS {
            return self.sdk.extension(name);
        }
        extensions.find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// The content type data travels under in binary mode: `datacontenttype`, or the JSON
    /// format's implied `application/json` for a `data` member.
    pub fn content_type(&self) -> Option<&str> {
        match (self.sdk.datacontenttype(), &self.data) {
            (Some(ct), _) => Some(ct),
            (None, Some(WireData::Json(_))) => Some(IMPLIED_JSON),
            (None, _) => None,
        }
    }

    /// Whether the data is JSON by its (possibly implied) content type.
    pub fn has_json_data(&self) -> bool {
        self.content_type().is_some_and(is_json_media_type)
    }

    /// The data as a binary-mode body: bytes as sent; a JSON `data` member as its JSON text,
    /// except a JSON string under a non-JSON content type (`text/plain`), which is the
    /// string itself (JSON format, section 3.1).
    pub fn body(&self) -> Option<Cow<'_, [u8]>> {
        Some(match self.data.as_ref()? {
            WireData::Binary(b) | WireData::Base64(b) => Cow::Borrowed(&b[..]),
            WireData::Json(text) => {
                if !self.has_json_data() {
                    if let Ok(s) = serde_json::from_str::<String>(text) {
                        return Some(Cow::Owned(s.into_bytes()));
                    }
                }
                Cow::Borrowed(text.as_bytes())
            }
        })
    }

    /// [`Self::body`] as `Bytes`: the data's own buffer (shared, not copied) when it is bytes.
    pub fn body_bytes(&self) -> Option<Bytes> {
        match self.data.as_ref()? {
            WireData::Binary(b) | WireData::Base64(b) => Some(b.clone()),
            WireData::Json(_) => self.body().map(|b| Bytes::from(b.into_owned())),
        }
    }

    /// Whether binary mode (headers + body) carries this event without loss: its data is not
    /// a structured-mode member, and no extension has a type headers cannot say.
    pub fn binary_is_lossless(&self) -> bool {
        let typed = self
            .sdk
            .iter_extensions()
            .any(|(_, v)| !matches!(v, ExtensionValue::String(_)));
        match &self.data {
            Some(WireData::Binary(_)) => true,
            None => !typed,
            Some(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV10};

    #[test]
    fn an_extension_is_found_by_name_among_few_or_many() {
        for count in [1, FEW_EXTENSIONS, FEW_EXTENSIONS + 5] {
            let mut b = EventBuilderV10::new().id("1").source("/s").ty("t");
            for i in 0..count {
                b = b.extension(&format!("ext{i}"), i as i64);
            }
            let e = WireEvent::from(b.build().unwrap());
            for i in 0..count {
                assert_eq!(
                    e.extension(&format!("ext{i}")),
                    Some(&ExtensionValue::Integer(i as i64)),
                    "{count} extensions"
                );
            }
            assert_eq!(e.extension("ext"), None);
            assert_eq!(e.extension(&format!("ext{count}")), None);
            assert_eq!(e.attribute("ext0").as_deref(), Some("0"));
        }
    }

    #[test]
    fn an_sdk_event_keeps_its_content_type_and_schema_without_data() {
        let e = EventBuilderV10::new()
            .id("1")
            .source("/s")
            .ty("t")
            .data_with_schema("text/plain", "http://schema/1", "hi")
            .build()
            .unwrap();
        let w = WireEvent::from(e);
        assert_eq!(w.datacontenttype(), Some("text/plain"));
        assert_eq!(w.dataschema(), Some("http://schema/1"));
        assert_eq!(
            w.attribute("dataschema").as_deref(),
            Some("http://schema/1")
        );
        assert!(w.sdk.data().is_none());
        assert_eq!(w.data(), Some(&WireData::Binary(Bytes::from_static(b"hi"))));
        assert_eq!(
            cloudevents::AttributesReader::dataschema(&*w).map(|u| u.as_str()),
            Some("http://schema/1")
        );
    }

    #[test]
    fn json_media_types() {
        for ct in [
            "application/json",
            "application/json; charset=utf-8",
            "text/json",
            "application/cloudevents+json",
            "Application/JSON",
        ] {
            assert!(is_json_media_type(ct), "{ct}");
        }
        for ct in [
            "text/plain",
            "application/octet-stream",
            "application/jsonx",
        ] {
            assert!(!is_json_media_type(ct), "{ct}");
        }
    }
}
