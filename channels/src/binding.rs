//! CloudEvents binary-mode header values, shared by every header-based binding Herald speaks
//! (HTTP ingress and delivery, the NATS codec): attribute values are percent-encoded on the
//! way out and percent-decoded on the way in (HTTP protocol binding, section 3.1.3.2), so any
//! string (line breaks, NUL, non-ASCII) travels losslessly and can never be spliced into a
//! header block. Also the one place that says what no binding can carry, which ingress
//! refuses before it accepts an event.
//!
//! Reading keeps what the wire carried ([`WireEvent`]): each decoded value is the attribute's
//! string as it is, checked and typed as the SDK would (`crate::event::parts`), and the body
//! bytes and the trace context headers are what the event holds.

use crate::event::parts::EventParts;
use crate::event::{json, TraceContext, WireData, WireEvent};
use cloudevents::event::SpecVersion;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::borrow::Cow;

/// Header prefix of CloudEvents attributes in the HTTP and NATS bindings.
pub const HEADER_PREFIX: &str = "ce-";

/// Content type of a structured-mode (JSON format) CloudEvent.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";

/// The context attributes' header names, made once (`from_static` checks its input each
/// time it runs outside a constant).
pub mod names {
    use http::HeaderName;
    pub const SPECVERSION: HeaderName = HeaderName::from_static("ce-specversion");
    pub const ID: HeaderName = HeaderName::from_static("ce-id");
    pub const TYPE: HeaderName = HeaderName::from_static("ce-type");
    pub const SOURCE: HeaderName = HeaderName::from_static("ce-source");
    pub const DATASCHEMA: HeaderName = HeaderName::from_static("ce-dataschema");
    pub const SCHEMAURL: HeaderName = HeaderName::from_static("ce-schemaurl");
    pub const SUBJECT: HeaderName = HeaderName::from_static("ce-subject");
    pub const TIME: HeaderName = HeaderName::from_static("ce-time");
}

/// Percent-encodes an attribute value for a header: space, `"`, `%` and everything outside
/// printable ASCII (U+0021..U+007E), byte by byte of its UTF-8 form.
pub fn encode_header_value(value: &str) -> Cow<'_, str> {
    let needs = |b: u8| !(0x21..=0x7e).contains(&b) || b == b'"' || b == b'%';
    if !value.bytes().any(needs) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 16);
    for b in value.bytes() {
        if needs(b) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    Cow::Owned(out)
}

/// Why a header value cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("header {name}: {reason}")]
pub struct HeaderValueError {
    pub name: String,
    pub reason: String,
}

/// Decodes a header value: a double-quoted string is unquoted (older senders), then one round
/// of percent-decoding; the result must be UTF-8. Raw UTF-8 (obs-text) is accepted as is. A
/// `%` not followed by two hex digits is kept literally, so values written before Herald
/// encoded them still read back.
pub fn decode_header_value(raw: &[u8]) -> Result<String, String> {
    let unquoted;
    let raw = if raw.len() >= 2 && raw[0] == b'"' && raw[raw.len() - 1] == b'"' {
        unquoted = unquote(&raw[1..raw.len() - 1]);
        &unquoted[..]
    } else {
        raw
    };
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' && i + 2 < raw.len() {
            if let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| "percent-decodes to invalid UTF-8".to_string())
}

fn unquote(inner: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(inner.len());
    let mut escaped = false;
    for &b in inner {
        if escaped || b != b'\\' {
            out.push(b);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// A header value is written unencoded (content-type): visible ASCII, space and tab only.
fn is_plain_header_text(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
}

/// What no binding can carry, named for a 400 at ingress: an extension named `data` (the JSON
/// format reserves the member, so a stored event could not be read back) and a
/// `datacontenttype` that is not plain header text (it travels as `Content-Type`, which has
/// no encoding).
pub fn check_carriable(event: &WireEvent) -> Result<(), String> {
    if event.extension("data").is_some() {
        return Err(
            "extension attribute \"data\" is reserved for the event data (binary mode: a \
             ce-data header); send the data as the body"
                .into(),
        );
    }
    if let Some(ct) = event.datacontenttype() {
        if !is_plain_header_text(ct) {
            return Err(format!(
                "attribute datacontenttype must be printable ASCII, got {ct:?}"
            ));
        }
    }
    Ok(())
}

/// The attribute headers of `event` in binary mode: `ce-<name>` with percent-encoded values,
/// and `content-type` for `datacontenttype` (not encoded; [`check_carriable`] keeps it plain),
/// or the JSON format's implied `application/json` for a structured `data` member. Values
/// that still are not valid header text (a `datacontenttype` from elsewhere) are left out
/// rather than failing the whole message.
pub fn attribute_headers(event: &WireEvent) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::with_capacity(8);
    for_each_attribute_header(event, None, |n, v| out.push((n, v)));
    out
}

/// The headers of [`attribute_headers`], handed to `put` one by one (no list in between),
/// without the extension `omit` (a delivery leaves the broker TTL out). Names of context
/// attributes are static (no allocation per delivery); the SDK's attribute iterator, which
/// formats every value into a new `String`, is used for none of them.
pub fn for_each_attribute_header(
    event: &WireEvent,
    omit: Option<&str>,
    mut put: impl FnMut(HeaderName, HeaderValue),
) {
    use cloudevents::event::ExtensionValue;
    use cloudevents::AttributesReader as _;
    if let Some(ct) = event.content_type() {
        match HeaderValue::from_str(ct) {
            Ok(v) => put(http::header::CONTENT_TYPE, v),
            Err(_) => tracing::warn!(
                event.id = event.id(),
                "datacontenttype cannot travel as a header; left out"
            ),
        }
    }
    let v03 = matches!(event.specversion(), SpecVersion::V03);
    put(
        names::SPECVERSION,
        HeaderValue::from_static(if v03 { "0.3" } else { "1.0" }),
    );
    let schema = if v03 {
        names::SCHEMAURL
    } else {
        names::DATASCHEMA
    };
    let context = [
        (names::ID, Some(event.id())),
        (names::TYPE, Some(event.ty())),
        (names::SOURCE, Some(event.source().as_str())),
        (schema, event.dataschema()),
        (names::SUBJECT, event.subject()),
        (names::TIME, event.time()),
    ];
    for (name, value) in context {
        if let Some(value) = value {
            match HeaderValue::from_str(&encode_header_value(value)) {
                Ok(v) => put(name, v),
                Err(_) => left_out(event, name.as_str()),
            }
        }
    }
    let mut name_buf = String::with_capacity(32);
    for (attr, value) in event.iter_extensions() {
        if omit == Some(attr) {
            continue;
        }
        let text = match value {
            ExtensionValue::String(s) => Cow::Borrowed(s.as_str()),
            other => Cow::Owned(other.to_string()),
        };
        name_buf.clear();
        name_buf.push_str(HEADER_PREFIX);
        name_buf.push_str(attr);
        match (
            HeaderName::from_bytes(name_buf.as_bytes()),
            HeaderValue::from_str(&encode_header_value(&text)),
        ) {
            (Ok(n), Ok(v)) => put(n, v),
            _ => left_out(event, attr),
        }
    }
}

fn left_out(event: &WireEvent, attribute: &str) {
    tracing::warn!(
        event.id = event.id(),
        attribute,
        "attribute cannot travel as a header; left out"
    );
}

/// Whether the headers say structured mode (the JSON format).
pub fn is_structured(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/cloudevents"))
}

/// Decodes a binary-mode or structured-mode message from its headers and body, undoing the
/// percent-encoding of `ce-` headers, and takes the W3C trace context headers along. A
/// binary-mode body becomes the event's data as it is (`Bytes` are shared, not copied).
pub fn headers_to_event(
    headers: &HeaderMap,
    body: impl Into<bytes::Bytes>,
) -> Result<WireEvent, String> {
    let body = body.into();
    let mut event = if is_structured(headers) || !headers.contains_key(names::SPECVERSION) {
        json::from_slice(&body).map_err(|e| e.to_string())?
    } else {
        binary_to_event(headers, body)?
    };
    event.set_trace(TraceContext::from_headers(headers));
    Ok(event)
}

/// One pass over the headers: each `ce-` value is decoded once and becomes the attribute's
/// string as it is ([`EventParts`] checks and types them as the SDK would), so any decoded
/// value, line breaks and all, is the attribute exactly.
fn binary_to_event(headers: &HeaderMap, body: bytes::Bytes) -> Result<WireEvent, String> {
    let decode = |name: &HeaderName, value: &HeaderValue| {
        decode_header_value(value.as_bytes()).map_err(|reason| {
            HeaderValueError {
                name: name.to_string(),
                reason,
            }
            .to_string()
        })
    };
    let spec = match headers.get(names::SPECVERSION) {
        Some(v) => decode(&names::SPECVERSION, v)?,
        None => String::new(),
    };
    let spec = SpecVersion::try_from(spec.as_str()).map_err(|_| {
        format!("attribute specversion {spec:?} is not one Herald reads (0.3 or 1.0)")
    })?;
    let mut parts = EventParts::new(spec);
    let mut previous: Option<&HeaderName> = None;
    for (name, value) in headers {
        // A name's values come one after the other: a repeat is the same name again.
        let repeated = previous == Some(name);
        previous = Some(name);
        let Some(attr) = name.as_str().strip_prefix(HEADER_PREFIX) else {
            continue;
        };
        if repeated {
            return Err(format!("header {name} appears more than once"));
        }
        if attr == "specversion" {
            continue;
        }
        let text = decode(name, value)?;
        let typed = attr == "time" || attr == "dataschema" || attr == "schemaurl";
        if typed && (text.contains('\t') || !is_plain_header_text(&text)) {
            return Err(format!(
                "attribute {attr} must be printable ASCII, got {text:?}"
            ));
        }
        parts.set(Cow::Borrowed(attr), text);
    }
    if let Some(ct) = headers.get(http::header::CONTENT_TYPE) {
        let ct = ct
            .to_str()
            .map_err(|_| format!("header content-type is not visible ASCII: {ct:?}"))?;
        parts.set(Cow::Borrowed("datacontenttype"), ct.to_string());
    }
    // A copy of its own: a body read off a connection is a slice of that connection's read
    // buffer, and an event a channel keeps (a backlog, a log's tail) would keep the whole
    // buffer alive with it.
    let data = (!body.is_empty()).then(|| WireData::Binary(bytes::Bytes::copy_from_slice(&body)));
    parts.into_event(data).map_err(|e| e.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV10};

    #[test]
    fn a_binary_body_is_copied_out_of_the_buffer_it_was_read_from() {
        // As a connection reads it: the body a slice of a larger buffer.
        let buffer = bytes::Bytes::from(vec![b'x'; 64 * 1024]);
        let body = buffer.slice(100..1124);
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("ce-specversion", "1.0"),
            ("ce-id", "1"),
            ("ce-source", "/s"),
            ("ce-type", "t"),
        ] {
            headers.insert(name, value.parse().unwrap());
        }
        let event = headers_to_event(&headers, body.clone()).unwrap();
        let data = event.body_bytes().unwrap();
        assert_eq!(data, body);
        let within = buffer.as_ptr_range();
        assert!(
            !within.contains(&data.as_ptr()),
            "the event's data still points into the read buffer"
        );
    }

    #[test]
    fn encoding_follows_the_http_binding_example() {
        assert_eq!(
            encode_header_value("Euro € 😀"),
            "Euro%20%E2%82%AC%20%F0%9F%98%80"
        );
        assert_eq!(encode_header_value("plain/ascii-1.0"), "plain/ascii-1.0");
        assert_eq!(
            encode_header_value("x\r\nce-type: a\"%\0\x7f"),
            "x%0D%0Ace-type:%20a%22%25%00%7F"
        );
    }

    #[test]
    fn decoding_undoes_encoding_and_tolerates_legacy_values() {
        for s in [
            "Euro € 😀",
            "x\r\nce-type: admin",
            "100%",
            "a%zz",
            "\0\t\x7f",
            "",
        ] {
            assert_eq!(
                decode_header_value(encode_header_value(s).as_bytes()).unwrap(),
                s
            );
        }
        assert_eq!(decode_header_value(b"100%").unwrap(), "100%");
        assert_eq!(decode_header_value(b"a%2").unwrap(), "a%2");
        assert_eq!(decode_header_value(b"%41%62").unwrap(), "Ab");
        assert_eq!(decode_header_value(b"\"a \\\"b\\\"\"").unwrap(), "a \"b\"");
        assert_eq!(decode_header_value("héllo".as_bytes()).unwrap(), "héllo");
        assert!(decode_header_value(b"%C0%A0").is_err(), "overlong UTF-8");
    }

    #[test]
    fn hostile_attributes_round_trip_through_headers() {
        let event = EventBuilderV10::new()
            .id("i d")
            .source("/s%20")
            .ty("t")
            .subject("x\r\nce-type: admin.command")
            .extension("note", "line\nbreak héllo 😀")
            .extension("n", 3i64)
            .data("application/json", serde_json::json!({"a": 1}))
            .build()
            .unwrap();
        let event = WireEvent::from(event);
        let mut headers = HeaderMap::new();
        for (n, v) in attribute_headers(&event) {
            assert!(
                v.as_bytes().iter().all(|b| (0x21..0x7f).contains(b)),
                "{v:?}"
            );
            headers.insert(n, v);
        }
        assert_eq!(headers["ce-type"], "t");
        let back = headers_to_event(&headers, br#"{"a":1}"#.to_vec()).unwrap();
        assert_eq!(back.id(), "i d");
        assert_eq!(back.source(), "/s%20");
        assert_eq!(back.ty(), "t");
        assert_eq!(back.subject(), Some("x\r\nce-type: admin.command"));
        assert_eq!(
            back.extension("note").map(|v| v.to_string()).as_deref(),
            Some("line\nbreak héllo 😀")
        );
        assert_eq!(
            back.extension("n").map(|v| v.to_string()).as_deref(),
            Some("3")
        );
    }

    #[test]
    fn what_no_binding_carries_is_named() {
        let event = EventBuilderV10::new()
            .id("1")
            .source("/s")
            .ty("t")
            .build()
            .unwrap();
        let mut event = WireEvent::from(event);
        assert!(check_carriable(&event).is_ok());
        event.set_extension("data", "x");
        assert!(check_carriable(&event).unwrap_err().contains("\"data\""));
    }
}
