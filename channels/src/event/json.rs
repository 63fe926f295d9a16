//! The CloudEvents JSON event format (structured mode, batch elements), read and written
//! without loss: `data` is kept as its JSON text (serde_json's `RawValue`), `time` and
//! `dataschema` as their strings. Members are read once, as their JSON text, and checked and
//! typed as the SDK would ([`EventParts`]).

use super::parts::EventParts;
use super::{is_json_media_type, EventError, WireData, WireEvent};
use base64::Engine;
use bytes::Bytes;
use cloudevents::event::{ExtensionValue, SpecVersion};
use cloudevents::AttributesReader;
use serde::de::{MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Reads one event in the JSON format.
pub fn from_slice(body: &[u8]) -> Result<WireEvent, EventError> {
    let Members(members) =
        serde_json::from_slice(body).map_err(|e| EventError(format!("not a JSON object: {e}")))?;
    from_members(members)
}

/// Reads one event from a JSON text already split out of a batch.
pub fn from_raw(raw: &RawValue) -> Result<WireEvent, EventError> {
    from_slice(raw.get().as_bytes())
}

/// An object's members in order, names unescaped (borrowed when they need no unescaping),
/// values as their JSON text.
struct Members<'de>(Vec<(Cow<'de, str>, &'de RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Object;
        impl<'de> Visitor<'de> for Object {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(Name(name)) = map.next_key()? {
                    members.push((name, map.next_value()?));
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(Object)
    }
}

struct Name<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;
        impl<'de> Visitor<'de> for Text {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Name<'de>, E> {
                Ok(Name(Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_str(Text)
    }
}

/// A member's string value, or `None` for `null`.
fn string_value(name: &str, raw: &RawValue) -> Result<Option<String>, EventError> {
    let text = raw.get();
    // A JSON string without escapes is its own text between the quotes (the parser that
    // split the members has checked it).
    if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        if !inner.contains('\\') {
            return Ok(Some(inner.to_string()));
        }
    }
    serde_json::from_str::<Option<String>>(text)
        .map_err(|_| EventError(format!("attribute {name} must be a string, got {text}")))
}

/// An extension member's value: a string, a boolean or an integer (the types the SDK keeps),
/// or `None` for `null`.
fn extension_value(name: &str, raw: &RawValue) -> Result<Option<ExtensionValue>, EventError> {
    let text = raw.get();
    let bad = || {
        EventError(format!(
            "extension {name} must be a string, a boolean or a 64-bit integer, got {text}"
        ))
    };
    Ok(Some(match text.as_bytes().first() {
        Some(b'"') => ExtensionValue::String(string_value(name, raw)?.unwrap_or_default()),
        Some(b't' | b'f') => ExtensionValue::Boolean(text == "true"),
        Some(b'n') => return Ok(None),
        Some(b'-' | b'0'..=b'9') => {
            ExtensionValue::Integer(serde_json::from_str::<i64>(text).map_err(|_| bad())?)
        }
        _ => return Err(bad()),
    }))
}

fn from_members(members: Vec<(Cow<'_, str>, &RawValue)>) -> Result<WireEvent, EventError> {
    let last = |name: &str| {
        members
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    };
    let spec = match last("specversion") {
        Some(raw) => string_value("specversion", raw)?,
        None => None,
    };
    let spec = match spec.as_deref() {
        None => return Err(EventError("missing required attribute specversion".into())),
        Some("1.0") => SpecVersion::V10,
        Some("0.3") => SpecVersion::V03,
        Some(other) => {
            return Err(EventError(format!(
                "attribute specversion {other:?} is not one Herald reads (0.3 or 1.0)"
            )))
        }
    };
    let spec03 = spec == SpecVersion::V03;
    let base64_03 = spec03
        && match last("datacontentencoding") {
            Some(raw) => string_value("datacontentencoding", raw)?
                .is_some_and(|e| e.eq_ignore_ascii_case("base64")),
            None => false,
        };
    let decode = |name: &str, raw: &RawValue| -> Result<Bytes, EventError> {
        let text: String = serde_json::from_str(raw.get())
            .map_err(|_| EventError(format!("{name} must be a base64 string")))?;
        BASE64
            .decode(text.trim())
            .map(Bytes::from)
            .map_err(|e| EventError(format!("{name} is not valid base64: {e}")))
    };
    let data = match (last("data"), last("data_base64")) {
        (Some(_), Some(_)) => {
            return Err(EventError(
                "data and data_base64 are mutually exclusive".into(),
            ))
        }
        (Some(raw), None) if base64_03 => Some(WireData::Base64(decode("data", raw)?)),
        (Some(raw), None) => Some(WireData::Json(raw.get().to_string())),
        (None, Some(raw)) if !spec03 => Some(WireData::Base64(decode("data_base64", raw)?)),
        _ => None,
    };
    let mut parts = EventParts::new(spec);
    for (name, raw) in members {
        match &*name {
            "specversion" | "data" | "data_base64" => continue,
            // 0.3: how the data member is encoded, not an attribute (as the SDK reads it).
            "datacontentencoding" if spec03 => continue,
            n if parts.is_context_attribute(n) => match string_value(n, raw)? {
                Some(value) => parts.set(name, value),
                None => parts.clear(name),
            },
            n => match extension_value(n, raw)? {
                Some(value) => parts.set_extension(name, value),
                None => parts.clear(name),
            },
        }
    }
    parts.into_event(data)
}

/// Writes the event in the JSON format: attributes as accepted, then the data in the form it
/// came in (bytes from binary mode: inline when their content type is JSON and they are
/// JSON, a string under a `text/*` type, `data_base64` otherwise).
pub fn to_vec(event: &WireEvent) -> Vec<u8> {
    to_vec_without(event, None)
}

/// [`to_vec`] without the extension `omit` (a delivery leaves the broker TTL out).
pub fn to_vec_without(event: &WireEvent, omit: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + event.body().map_or(0, |b| b.len()));
    out.push(b'{');
    write_attributes(&mut out, event, omit);
    let spec03 = event.specversion() == SpecVersion::V03;
    let base64_member = |out: &mut Vec<u8>, bytes: &[u8]| {
        if spec03 {
            out.extend_from_slice(br#","datacontentencoding":"base64","data":""#);
        } else {
            out.extend_from_slice(br#","data_base64":""#);
        }
        out.extend_from_slice(BASE64.encode(bytes).as_bytes());
        out.push(b'"');
    };
    match event.data() {
        None => {}
        Some(WireData::Json(text)) => {
            out.extend_from_slice(b",\"data\":");
            out.extend_from_slice(text.as_bytes());
        }
        Some(WireData::Base64(bytes)) => base64_member(&mut out, bytes),
        Some(WireData::Binary(bytes)) => {
            let ct = event.datacontenttype().unwrap_or("");
            let text = std::str::from_utf8(bytes).ok();
            if is_json_media_type(ct)
                && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
            {
                out.extend_from_slice(b",\"data\":");
                out.extend_from_slice(bytes);
            } else if let (true, Some(text)) = (ct.starts_with("text/"), text) {
                out.extend_from_slice(b",\"data\":");
                write_json_string(&mut out, text);
            } else {
                base64_member(&mut out, bytes);
            }
        }
    }
    out.push(b'}');
    out
}

/// The event in the JSON format as a string.
pub fn to_string(event: &WireEvent) -> String {
    // to_vec writes only UTF-8: JSON strings from serde_json, JSON text that was read as str.
    String::from_utf8(to_vec(event)).unwrap_or_default()
}

/// `"name":value` for every attribute but `omit`, comma-separated (no leading comma), in the SDK's
/// order (context attributes, then extensions), and `datacontentencoding` never (it belongs
/// to the data member).
pub(crate) fn write_attributes(out: &mut Vec<u8>, event: &WireEvent, omit: Option<&str>) {
    let spec = event.specversion();
    let schema = match spec {
        SpecVersion::V03 => "schemaurl",
        SpecVersion::V10 => "dataschema",
    };
    // specversion goes first, so every other member follows a comma.
    let member = |out: &mut Vec<u8>, name: &str| {
        out.push(b',');
        write_json_string(out, name);
        out.push(b':');
    };
    let context = [
        ("id", Some(event.id())),
        ("type", Some(event.ty())),
        ("source", Some(event.source().as_str())),
        ("datacontenttype", event.datacontenttype()),
        (schema, event.dataschema()),
        ("subject", event.subject()),
        ("time", event.time()),
    ];
    out.extend_from_slice(br#""specversion":""#);
    out.extend_from_slice(spec.as_str().as_bytes());
    out.push(b'"');
    for (name, value) in context {
        if let Some(value) = value {
            member(out, name);
            write_json_string(out, value);
        }
    }
    for (name, value) in event.iter_extensions() {
        if omit == Some(name) {
            continue;
        }
        member(out, name);
        match value {
            ExtensionValue::String(s) => write_json_string(out, s),
            ExtensionValue::Boolean(b) => {
                out.extend_from_slice(if *b { b"true" } else { b"false" })
            }
            ExtensionValue::Integer(i) => out.extend_from_slice(i.to_string().as_bytes()),
        }
    }
}

fn write_json_string(out: &mut Vec<u8>, s: &str) {
    // serde_json never fails writing a str into a Vec.
    let _ = serde_json::to_writer(&mut *out, s);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(s: &str) -> WireEvent {
        from_slice(s.as_bytes()).unwrap()
    }

    #[test]
    fn data_and_attributes_come_back_as_sent() {
        let sent = r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"2018-04-05T03:56:24Z","dataschema":"HTTP://Example.com/a/../b","n":7,"flag":true,"data":{"z": 1,  "a": 123456789012345678901234567890, "f": 1.50}}"#;
        let e = read(sent);
        assert_eq!(e.time(), Some("2018-04-05T03:56:24Z"));
        assert_eq!(e.dataschema(), Some("HTTP://Example.com/a/../b"));
        assert_eq!(
            e.data(),
            Some(&WireData::Json(
                r#"{"z": 1,  "a": 123456789012345678901234567890, "f": 1.50}"#.into()
            ))
        );
        assert_eq!(e.content_type(), Some("application/json"), "implied");
        let back = read(&to_string(&e));
        assert_eq!(back, e);
        let text = to_string(&e);
        assert!(text.contains(r#""time":"2018-04-05T03:56:24Z""#), "{text}");
        assert!(
            text.contains(r#""n":7"#) && text.contains(r#""flag":true"#),
            "{text}"
        );
        assert!(
            text.ends_with(r#""data":{"z": 1,  "a": 123456789012345678901234567890, "f": 1.50}}"#),
            "{text}"
        );
    }

    #[test]
    fn data_base64_stays_base64_and_a_text_string_is_its_body() {
        let e =
            read(r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"AAEC"}"#);
        assert_eq!(
            e.data(),
            Some(&WireData::Base64(Bytes::from_static(&[0, 1, 2])))
        );
        assert_eq!(e.content_type(), None, "nothing implied for data_base64");
        assert!(to_string(&e).ends_with(r#""data_base64":"AAEC"}"#));
        let e = read(
            r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"text/plain","data":"h\u00e9 \"x\""}"#,
        );
        assert_eq!(e.body().unwrap().as_ref(), "hé \"x\"".as_bytes());
        let e = read(r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":"hello"}"#);
        assert_eq!(
            e.body().unwrap().as_ref(),
            br#""hello""#,
            "JSON string under JSON"
        );
    }

    #[test]
    fn spec_0_3_base64_data_round_trips() {
        let e = read(
            r#"{"specversion":"0.3","id":"1","source":"/s","type":"t","schemaurl":"http://s/1","datacontentencoding":"base64","data":"aGk="}"#,
        );
        assert_eq!(e.data(), Some(&WireData::Base64(Bytes::from_static(b"hi"))));
        assert_eq!(e.dataschema(), Some("http://s/1"));
        assert!(e.extension("datacontentencoding").is_none());
        assert_eq!(read(&to_string(&e)), e);
    }

    #[test]
    fn bad_members_are_named() {
        for (body, needle) in [
            (
                r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"noon"}"#,
                "attribute time",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"%%"}"#,
                "data_base64",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","data":1,"data_base64":""}"#,
                "mutually exclusive",
            ),
            (r#"[1]"#, "JSON object"),
            (r#"{"specversion":"1.0","source":"/s","type":"t"}"#, "id"),
        ] {
            let e = from_slice(body.as_bytes()).unwrap_err();
            assert!(e.0.contains(needle), "{body}: {e}");
        }
    }

    #[test]
    fn members_read_as_the_sdk_reads_them() {
        // Escaped names and values, a repeat (the last wins), a null (absent), typed
        // extensions.
        let e = read(
            r#"{"specversion":"1.0","i\u0064":"1","source":"/s","type":"a","type":"t\n","subject":null,"x":"1","x":"2","gone":"x","gone":null,"n":-7,"b":false}"#,
        );
        assert_eq!((e.id(), e.ty()), ("1", "t\n"));
        assert_eq!(e.subject(), None);
        assert_eq!(e.extension("x"), Some(&ExtensionValue::String("2".into())));
        assert_eq!(e.extension("gone"), None);
        assert_eq!(e.extension("n"), Some(&ExtensionValue::Integer(-7)));
        assert_eq!(e.extension("b"), Some(&ExtensionValue::Boolean(false)));
        for (body, needle) in [
            (
                r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","f":1.5}"#,
                "extension f",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","o":{}}"#,
                "extension o",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"/s","type":"t","big":9223372036854775808}"#,
                "64-bit integer",
            ),
            (
                r#"{"specversion":"1.0","id":1,"source":"/s","type":"t"}"#,
                "attribute id must be a string",
            ),
            (
                r#"{"specversion":"2.0","id":"1","source":"/s","type":"t"}"#,
                "\"2.0\"",
            ),
            (
                r#"{"id":"1","source":"/s","type":"t"}"#,
                "missing required attribute specversion",
            ),
            (
                r#"{"specversion":"1.0","id":"1","source":"/s","type":null}"#,
                "missing required attribute type",
            ),
        ] {
            let e = from_slice(body.as_bytes()).unwrap_err();
            assert!(e.0.contains(needle), "{body}: {e}");
        }
    }

    #[test]
    fn attributes_are_written_in_the_sdks_order() {
        let e = read(
            r#"{"n":7,"time":"2018-04-05T03:56:24Z","subject":"s","dataschema":"http://s/1","datacontenttype":"text/plain","source":"/s","type":"t","id":"1","specversion":"1.0"}"#,
        );
        assert_eq!(
            to_string(&e),
            r#"{"specversion":"1.0","id":"1","type":"t","source":"/s","datacontenttype":"text/plain","dataschema":"http://s/1","subject":"s","time":"2018-04-05T03:56:24Z","n":7}"#
        );
    }

    #[test]
    fn binary_bytes_are_inlined_only_when_they_are_json() {
        use cloudevents::{EventBuilder, EventBuilderV10};
        let with = |ct: &str, data: &[u8]| {
            WireEvent::from(
                EventBuilderV10::new()
                    .id("1")
                    .source("/s")
                    .ty("t")
                    .data(ct, data.to_vec())
                    .build()
                    .unwrap(),
            )
        };
        let json = with("application/json", b"{\"world\": \"hello\"}\n");
        assert!(to_string(&json).ends_with("\"data\":{\"world\": \"hello\"}\n}"));
        let not_json = with("application/json", b"{nope");
        assert!(to_string(&not_json).contains("data_base64"));
        let text = with("text/plain", "héllo".as_bytes());
        assert!(to_string(&text).ends_with(r#""data":"héllo"}"#));
        let back = read(&to_string(&text));
        assert_eq!(back.body().unwrap().as_ref(), "héllo".as_bytes());
    }
}
