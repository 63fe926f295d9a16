//! CloudEvents read straight off the wire, without an SDK in between: every attribute as the
//! string the HTTP binding carried (binary-mode headers unquoted and percent-decoded, JSON
//! members in their canonical string form) and the data as the bytes or JSON text that
//! carried it. The checks compare what a broker delivered with what was sent at this level,
//! so a re-serialisation anywhere in between shows.

use base64::Engine;
use http::HeaderMap;
use serde_json::value::RawValue;
use std::collections::BTreeMap;

/// Content type of the JSON event format (structured mode).
pub const STRUCTURED: &str = "application/cloudevents+json";
/// Content type of the JSON batch format.
pub const BATCH: &str = "application/cloudevents-batch+json";

/// How an event was carried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Binary,
    Structured,
}

/// An event's data as it travelled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WireData {
    /// A binary-mode body, or a structured `data_base64` decoded.
    Bytes(Vec<u8>),
    /// A structured `data` member holding JSON, as its raw text.
    Json(String),
    /// A structured `data` string member for a non-JSON content type, unescaped.
    Text(String),
}

impl WireData {
    /// The bytes a binary-mode delivery of this data would carry.
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            WireData::Bytes(b) => b.clone(),
            WireData::Json(s) | WireData::Text(s) => s.clone().into_bytes(),
        }
    }
}

/// One event as the wire carried it.
#[derive(Clone, Debug)]
pub struct WireEvent {
    pub mode: Mode,
    /// Every context attribute and extension (`datacontenttype` included), by name.
    pub attributes: BTreeMap<String, String>,
    pub data: Option<WireData>,
}

impl WireEvent {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).map(String::as_str)
    }

    pub fn id(&self) -> Option<&str> {
        self.attr("id")
    }
}

/// Reads a request or response as a CloudEvent in binary or structured mode; `Ok(None)` when
/// it is neither (no `ce-specversion` header, no CloudEvents content type).
pub fn decode(headers: &HeaderMap, body: &[u8]) -> Result<Option<WireEvent>, String> {
    let content_type = header_str(headers, http::header::CONTENT_TYPE.as_str());
    let lower = content_type.map(str::to_ascii_lowercase);
    if lower.as_deref().is_some_and(|ct| ct.starts_with(BATCH)) {
        return Err("a batch where one event was expected".into());
    }
    if lower
        .as_deref()
        .is_some_and(|ct| ct.starts_with("application/cloudevents"))
    {
        return decode_structured(body).map(Some);
    }
    if !headers.contains_key("ce-specversion") {
        return Ok(None);
    }
    decode_binary(headers, body).map(Some)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn decode_binary(headers: &HeaderMap, body: &[u8]) -> Result<WireEvent, String> {
    let mut attributes = BTreeMap::new();
    for (name, value) in headers {
        let Some(attr) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        let decoded =
            decode_header_value(value.as_bytes()).map_err(|e| format!("header {name}: {e}"))?;
        attributes.insert(attr.to_string(), decoded);
    }
    if let Some(ct) = headers.get(http::header::CONTENT_TYPE) {
        let ct = ct
            .to_str()
            .map_err(|_| "Content-Type is not ASCII".to_string())?;
        attributes.insert("datacontenttype".into(), ct.to_string());
    }
    let data = (!body.is_empty()).then(|| WireData::Bytes(body.to_vec()));
    Ok(WireEvent {
        mode: Mode::Binary,
        attributes,
        data,
    })
}

/// A binary-mode header value as HTTP binding 3.1.3.2 decodes it: a double-quoted string
/// unescaped first, then one round of percent-decoding that must yield UTF-8.
pub fn decode_header_value(raw: &[u8]) -> Result<String, String> {
    let unquoted;
    let raw = if raw.len() >= 2 && raw[0] == b'"' && raw[raw.len() - 1] == b'"' {
        let mut out = Vec::with_capacity(raw.len());
        let mut escaped = false;
        for &b in &raw[1..raw.len() - 1] {
            if escaped || b != b'\\' {
                out.push(b);
                escaped = false;
            } else {
                escaped = true;
            }
        }
        unquoted = out;
        &unquoted[..]
    } else {
        raw
    };
    percent_encoding::percent_decode(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "percent-decodes to bytes that are not UTF-8".into())
}

/// Encodes a string attribute for a binary-mode header (HTTP binding 3.1.3.2): space, `"`,
/// `%` and everything outside printable ASCII as upper-case `%XY`.
pub fn encode_header_value(value: &str) -> String {
    const SET: &percent_encoding::AsciiSet =
        &percent_encoding::CONTROLS.add(b' ').add(b'"').add(b'%');
    percent_encoding::utf8_percent_encode(value, SET).to_string()
}

/// One structured-mode JSON event, reading each member as the raw text that carried it.
pub fn decode_structured(body: &[u8]) -> Result<WireEvent, String> {
    let members: BTreeMap<String, Box<RawValue>> =
        serde_json::from_slice(body).map_err(|e| format!("not a JSON event: {e}"))?;
    let mut attributes = BTreeMap::new();
    let mut data = None;
    let mut data_raw = None;
    for (name, raw) in members {
        match name.as_str() {
            "data" => data_raw = Some(raw),
            "data_base64" => {
                let text: String = serde_json::from_str(raw.get())
                    .map_err(|_| "data_base64 is not a string".to_string())?;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(text.as_bytes())
                    .map_err(|e| format!("data_base64 is not base64: {e}"))?;
                data = Some(WireData::Bytes(bytes));
            }
            _ => {
                let value: serde_json::Value =
                    serde_json::from_str(raw.get()).map_err(|e| format!("member {name}: {e}"))?;
                let text = match value {
                    serde_json::Value::Null => continue,
                    serde_json::Value::String(s) => s,
                    // Integers and booleans: their canonical string is the JSON text.
                    serde_json::Value::Number(_) | serde_json::Value::Bool(_) => {
                        raw.get().to_string()
                    }
                    other => return Err(format!("attribute {name} is not a scalar: {other}")),
                };
                attributes.insert(name, text);
            }
        }
    }
    if let Some(raw) = data_raw {
        let json = attributes
            .get("datacontenttype")
            .is_none_or(|ct| is_json_content_type(ct));
        data = Some(if json {
            WireData::Json(raw.get().to_string())
        } else {
            match serde_json::from_str::<serde_json::Value>(raw.get()) {
                Ok(serde_json::Value::String(s)) => WireData::Text(s),
                _ => WireData::Json(raw.get().to_string()),
            }
        });
    }
    Ok(WireEvent {
        mode: Mode::Structured,
        attributes,
        data,
    })
}

/// JSON format 3.1.1: `*/json` or `*/*+json`, parameters aside.
pub fn is_json_content_type(ct: &str) -> bool {
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence
        .split_once('/')
        .is_some_and(|(_, sub)| sub == "json" || sub.ends_with("+json"))
}

/// JSON text with the whitespace between tokens removed (strings kept as written): two texts
/// are the same JSON *as written* (numbers, escapes, key order) exactly when these agree.
pub fn json_tokens(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut in_string = false;
    let mut escaped = false;
    for &b in text {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            if b == b'"' {
                in_string = true;
            }
            out.push(b);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_unquoted_then_percent_decoded() {
        assert_eq!(
            decode_header_value(b"Euro%20%E2%82%AC%20%F0%9F%98%80").unwrap(),
            "Euro \u{20ac} \u{1f600}"
        );
        assert_eq!(decode_header_value(b"caf%c3%a9").unwrap(), "caf\u{e9}");
        assert_eq!(decode_header_value(br#""a \"b\"""#).unwrap(), r#"a "b""#);
        assert!(decode_header_value(b"%C0%A0").is_err());
    }

    #[test]
    fn encoding_round_trips_and_stays_printable_ascii() {
        let value = "Euro \u{20ac} \"100%\"";
        let encoded = encode_header_value(value);
        assert_eq!(encoded, "Euro%20%E2%82%AC%20%22100%25%22");
        assert_eq!(decode_header_value(encoded.as_bytes()).unwrap(), value);
    }

    #[test]
    fn structured_members_keep_their_text() {
        let body = br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","exint":42,
            "exbool":true,"datacontenttype":"application/json","data":{"b": 1, "a": 1e400}}"#;
        let e = decode_structured(body).unwrap();
        assert_eq!(e.attr("exint"), Some("42"));
        assert_eq!(e.attr("exbool"), Some("true"));
        assert_eq!(
            e.data,
            Some(WireData::Json(r#"{"b": 1, "a": 1e400}"#.into()))
        );
        let b64 =
            br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"AAE="}"#;
        assert_eq!(
            decode_structured(b64).unwrap().data,
            Some(WireData::Bytes(vec![0, 1]))
        );
    }

    #[test]
    fn json_tokens_ignore_only_whitespace_between_tokens() {
        assert_eq!(json_tokens(b"{\"a b\": [1, 2]}\n"), b"{\"a b\":[1,2]}");
        assert_ne!(json_tokens(b"{\"a\":1.0}"), json_tokens(b"{\"a\":1}"));
        assert_eq!(json_tokens(br#"{"q":"\"x y"}"#), br#"{"q":"\"x y"}"#);
    }
}
