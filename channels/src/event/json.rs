//! The CloudEvents JSON event format (structured mode, batch elements), read and written
//! without loss: `data` is kept as its JSON text (serde_json's `RawValue`), `time` and
//! `dataschema` as their strings. The SDK still validates every context attribute and reads
//! the extensions' types, from the members other than the data.

use super::{is_json_media_type, EventError, WireData, WireEvent};
use base64::Engine;
use bytes::Bytes;
use cloudevents::event::{ExtensionValue, SpecVersion};
use cloudevents::{AttributesReader, Event};
use serde_json::value::RawValue;
use std::collections::HashMap;

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Reads one event in the JSON format.
pub fn from_slice(body: &[u8]) -> Result<WireEvent, EventError> {
    let members: HashMap<String, &RawValue> =
        serde_json::from_slice(body).map_err(|e| EventError(format!("not a JSON object: {e}")))?;
    from_members(members)
}

/// Reads one event from a JSON text already split out of a batch.
pub fn from_raw(raw: &RawValue) -> Result<WireEvent, EventError> {
    from_slice(raw.get().as_bytes())
}

fn string_member(
    members: &HashMap<String, &RawValue>,
    name: &str,
) -> Result<Option<String>, EventError> {
    match members.get(name) {
        None => Ok(None),
        Some(raw) => match serde_json::from_str::<Option<String>>(raw.get()) {
            Ok(s) => Ok(s),
            Err(_) => Err(EventError(format!(
                "attribute {name} must be a string, got {}",
                raw.get()
            ))),
        },
    }
}

fn from_members(members: HashMap<String, &RawValue>) -> Result<WireEvent, EventError> {
    let time = string_member(&members, "time")?;
    if let Some(t) = &time {
        if chrono::DateTime::parse_from_rfc3339(t).is_err() {
            return Err(EventError(format!(
                "attribute time must be an RFC 3339 timestamp, got {t:?}"
            )));
        }
    }
    let spec03 = string_member(&members, "specversion")?.as_deref() == Some("0.3");
    let dataschema = string_member(&members, if spec03 { "schemaurl" } else { "dataschema" })?;
    let base64_03 = spec03
        && string_member(&members, "datacontentencoding")?
            .is_some_and(|e| e.eq_ignore_ascii_case("base64"));
    let decode = |name: &str, raw: &RawValue| -> Result<Bytes, EventError> {
        let text: String = serde_json::from_str(raw.get())
            .map_err(|_| EventError(format!("{name} must be a base64 string")))?;
        BASE64
            .decode(text.trim())
            .map(Bytes::from)
            .map_err(|e| EventError(format!("{name} is not valid base64: {e}")))
    };
    let data = match (members.get("data"), members.get("data_base64")) {
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
    // The SDK validates and types everything but the data, which it would parse lossily.
    let mut rest = serde_json::Map::new();
    for (name, raw) in &members {
        if name == "data" || name == "data_base64" {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(raw.get())
            .map_err(|e| EventError(format!("member {name}: {e}")))?;
        rest.insert(name.clone(), value);
    }
    let sdk: Event = serde_json::from_value(serde_json::Value::Object(rest))
        .map_err(|e| EventError(e.to_string()))?;
    Ok(WireEvent::assemble(sdk, time, dataschema, data))
}

/// Writes the event in the JSON format: attributes as accepted, then the data in the form it
/// came in (bytes from binary mode: inline when their content type is JSON and they are
/// JSON, a string under a `text/*` type, `data_base64` otherwise).
pub fn to_vec(event: &WireEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + event.body().map_or(0, |b| b.len()));
    out.push(b'{');
    write_attributes(&mut out, event);
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

/// `"name":value` for every attribute, comma-separated (no leading comma), and
/// `datacontentencoding` never (it belongs to the data member).
pub(crate) fn write_attributes(out: &mut Vec<u8>, event: &WireEvent) {
    let mut first = true;
    for (name, text) in event.iter() {
        if !first {
            out.push(b',');
        }
        first = false;
        write_json_string(out, name);
        out.push(b':');
        match event.extension(name) {
            Some(ExtensionValue::Boolean(b)) => out.extend_from_slice(b.to_string().as_bytes()),
            Some(ExtensionValue::Integer(i)) => out.extend_from_slice(i.to_string().as_bytes()),
            _ => write_json_string(out, &text),
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
