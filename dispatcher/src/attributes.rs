//! Reading CloudEvent attributes and extensions by name, as filters and TTL handling need.

use cloudevents::event::ExtensionValue;
use herald_channels::WireEvent;
use std::borrow::Cow;

/// The attribute's value as the event was accepted (time and dataschema as written,
/// extensions as written), or `None` when the event does not carry it. Borrowed where the
/// event holds a string already: filters call this for every event and Trigger.
pub fn attribute<'a>(event: &'a WireEvent, name: &str) -> Option<Cow<'a, str>> {
    event.attribute(name)
}

/// An event as CESQL sees it: context attributes are Strings (as accepted), extensions
/// keep their CloudEvents type where CESQL has one.
pub struct CesqlEvent<'a>(pub &'a WireEvent);

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
    fn every_context_attribute_and_extension_reads_as_iterated() {
        let e: WireEvent = EventBuilderV10::new()
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
            .unwrap()
            .into();
        // The event's own iteration is the reference for names and string forms.
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
