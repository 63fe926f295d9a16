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
