//! Reply events and the broker TTL that stops reply loops (Knative's `knativebrokerttl`).

use herald_channels::WireEvent;

pub const TTL_EXTENSION: &str = "knativebrokerttl";
pub const DEFAULT_TTL: i64 = 255;

/// Removes the TTL from an event about to be delivered (subscribers never see it) and returns
/// it; a missing or unreadable TTL counts as the default.
pub fn take_ttl(event: &mut WireEvent) -> i64 {
    use cloudevents::event::ExtensionValue;
    // One lookup, and an integer read as it is (not printed and parsed again).
    match event.remove_extension(TTL_EXTENSION) {
        Some(ExtensionValue::Integer(n)) => n,
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
    fn ttl_is_stripped_decremented_and_exhausted() {
        let mut e: WireEvent = EventBuilderV10::new()
            .id("1")
            .source("/s")
            .ty("t")
            .extension(TTL_EXTENSION, 2i64)
            .build()
            .unwrap()
            .into();
        assert_eq!(take_ttl(&mut e), 2);
        assert!(e.extension(TTL_EXTENSION).is_none());
        let reply = prepare_reply(e.clone(), 2).unwrap();
        assert_eq!(attribute(&reply, TTL_EXTENSION).as_deref(), Some("1"));
        assert!(prepare_reply(e.clone(), 1).is_none());
        assert_eq!(take_ttl(&mut e), DEFAULT_TTL);
    }
}
