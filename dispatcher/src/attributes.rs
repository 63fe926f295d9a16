//! Reading CloudEvent attributes and extensions by name, as filters and TTL handling need.

use cloudevents::Event;

/// The attribute's value in its canonical string form (time as RFC 3339, extensions as
/// written), or `None` when the event does not carry it.
pub fn attribute(event: &Event, name: &str) -> Option<String> {
    event
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
}

/// An event as CESQL sees it: context attributes are Strings (time in RFC 3339), extensions
/// keep their CloudEvents type where CESQL has one.
pub struct CesqlEvent<'a>(pub &'a Event);

impl herald_cesql::EventAttributes for CesqlEvent<'_> {
    fn attribute(&self, name: &str) -> Option<herald_cesql::Value> {
        use cloudevents::event::ExtensionValue;
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
        self.0
            .iter_attributes()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| Value::String(v.to_string()))
    }
}
