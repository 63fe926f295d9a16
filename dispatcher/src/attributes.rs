//! Reading CloudEvent attributes and extensions by name, as filters and TTL handling need.

use cloudevents::event::ExtensionValue;
use cloudevents::{AttributesReader, Event};
use std::borrow::Cow;

/// The attribute's value in its canonical string form (time as RFC 3339, extensions as
/// written), or `None` when the event does not carry it. Borrowed where the event holds a
/// string already: filters call this for every event and Trigger.
pub fn attribute<'a>(event: &'a Event, name: &str) -> Option<Cow<'a, str>> {
    match name {
        "id" => Some(Cow::Borrowed(event.id())),
        "source" => Some(Cow::Borrowed(event.source().as_str())),
        "type" => Some(Cow::Borrowed(event.ty())),
        "specversion" => Some(Cow::Owned(event.specversion().to_string())),
        "datacontenttype" => event.datacontenttype().map(Cow::Borrowed),
        "dataschema" => event.dataschema().map(|u| Cow::Borrowed(u.as_str())),
        "subject" => event.subject().map(Cow::Borrowed),
        "time" => event.time().map(|t| Cow::Owned(t.to_rfc3339())),
        _ => event.extension(name).map(|v| match v {
            ExtensionValue::String(s) => Cow::Borrowed(s.as_str()),
            other => Cow::Owned(other.to_string()),
        }),
    }
}

/// An event as CESQL sees it: context attributes are Strings (time in RFC 3339), extensions
/// keep their CloudEvents type where CESQL has one.
pub struct CesqlEvent<'a>(pub &'a Event);

impl herald_cesql::EventAttributes for CesqlEvent<'_> {
    fn attribute(&self, name: &str) -> Option<herald_cesql::Value> {
        use herald_cesql::Value;
        if let Some(ext) = self.0.extension(name) {
            return Some(match ext {
                ExtensionValue::String(s) => Value::String(s.clone()),
                ExtensionValue::Boolean(b) => Value::Boolean(*b),
                // CESQL integers are 32-bit; a wider value is only representable as text.
                ExtensionValue::Integer(i) => match i32::try_from(*i) {
                    Ok(i) => Value::Integer(i),
                    Err(_) => Value::String(i.to_string()),
                },
            });
        }
        attribute(self.0, name).map(|v| Value::String(v.into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV10};

    #[test]
    fn every_context_attribute_and_extension_reads_as_the_sdk_prints_it() {
        let e = EventBuilderV10::new()
            .id("1")
            .source("/s")
            .ty("t")
            .subject("sub")
            .time(chrono::Utc::now())
            .extension("flag", true)
            .extension("n", 7i64)
            .extension("s", "x")
            .data_with_schema("application/json", "http://schema/1", serde_json::json!({}))
            .build()
            .unwrap();
        // The SDK's own iteration is the reference for names and string forms.
        for (name, value) in e.iter() {
            assert_eq!(
                attribute(&e, name).as_deref(),
                Some(value.to_string().as_str()),
                "{name}"
            );
        }
        assert_eq!(attribute(&e, "missing"), None);
    }
}
