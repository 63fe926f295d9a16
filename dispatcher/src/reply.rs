//! Reply events and the broker TTL that stops reply loops (Knative's `knativebrokerttl`).

use herald_channels::WireEvent;

pub const TTL_EXTENSION: &str = "knativebrokerttl";
pub const DEFAULT_TTL: i64 = 255;

/// The TTL of an event about to be delivered (which leaves it out: subscribers never see
/// it); a missing or unreadable TTL counts as the default.
pub fn ttl_of(event: &WireEvent) -> i64 {
    use cloudevents::event::ExtensionValue;
    // An integer read as it is, not printed and parsed again.
    match event.extension(TTL_EXTENSION) {
        Some(ExtensionValue::Integer(n)) => *n,
        Some(ExtensionValue::String(s)) => s.parse().unwrap_or(DEFAULT_TTL),
        _ => DEFAULT_TTL,
    }
}

/// Stamps a reply with the TTL one hop lower than the event it answers, or returns `None`
/// when the TTL is used up and the reply must not re-enter the broker.
pub fn prepare_reply(mut reply: WireEvent, incoming_ttl: i64) -> Option<WireEvent> {
    let ttl = incoming_ttl - 1;
    if ttl <= 0 {
        return None;
    }
    reply.set_extension(TTL_EXTENSION, ttl);
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attributes::attribute;
    use cloudevents::{EventBuilder, EventBuilderV10};

    #[test]
    fn ttl_is_read_decremented_and_exhausted() {
        let mut e: WireEvent = EventBuilderV10::new()
            .id("1")
            .source("/s")
            .ty("t")
            .extension(TTL_EXTENSION, 2i64)
            .build()
            .unwrap()
            .into();
        assert_eq!(ttl_of(&e), 2);
        let reply = prepare_reply(e.clone(), 2).unwrap();
        assert_eq!(attribute(&reply, TTL_EXTENSION).as_deref(), Some("1"));
        assert!(prepare_reply(e.clone(), 1).is_none());
        e.set_extension(TTL_EXTENSION, "7");
        assert_eq!(ttl_of(&e), 7, "a string TTL (binary mode) reads too");
        e.set_extension(TTL_EXTENSION, "many");
        assert_eq!(ttl_of(&e), DEFAULT_TTL);
        e.remove_extension(TTL_EXTENSION);
        assert_eq!(ttl_of(&e), DEFAULT_TTL);
    }
}
