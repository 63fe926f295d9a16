//! The newest durable events of one broker's log, kept decoded in memory as they were
//! published, so a reader at the head (the usual case) is served without a read from disk,
//! a blocking-pool hop and a decode per event. Bounded by events and bytes; a reader further
//! behind reads from the segments as before. It holds only what the writer has made
//! durable (per the sync policy), so it never shows a reader more than the log would.

use crate::WireEvent;
use std::collections::VecDeque;
use std::sync::Arc;

/// At most this many events are kept...
const MAX_EVENTS: usize = 4096;
/// ... and at most this many bytes of them (their size in the log).
const MAX_BYTES: u64 = 8 << 20;

#[derive(Default)]
pub(crate) struct Tail {
    /// Offset of the first entry in `events`.
    first: u64,
    events: VecDeque<(Arc<WireEvent>, u64)>,
    bytes: u64,
}

impl Tail {
    /// Adds the events the writer appended at `start..` (each with its size in the log). A
    /// gap after what is kept (never expected: offsets are assigned in order) starts afresh.
    pub(crate) fn extend(
        &mut self,
        start: u64,
        events: impl IntoIterator<Item = (Arc<WireEvent>, u64)>,
    ) {
        if self.first + self.events.len() as u64 != start {
            self.events.clear();
            self.bytes = 0;
            self.first = start;
        }
        for (event, bytes) in events {
            self.bytes += bytes;
            self.events.push_back((event, bytes));
        }
        while self.events.len() > MAX_EVENTS || (self.bytes > MAX_BYTES && self.events.len() > 1) {
            if let Some((_, bytes)) = self.events.pop_front() {
                self.bytes -= bytes;
                self.first += 1;
            }
        }
    }

    /// The events at `from..to`, when all of them are kept.
    pub(crate) fn range(&self, from: u64, to: u64) -> Option<Vec<(u64, Arc<WireEvent>)>> {
        let end = self.first + self.events.len() as u64;
        if from < self.first || to > end || from >= to {
            return None;
        }
        let skip = (from - self.first) as usize;
        Some(
            self.events
                .range(skip..skip + (to - from) as usize)
                .zip(from..)
                .map(|((event, _), offset)| (offset, event.clone()))
                .collect(),
        )
    }

    /// Forgets everything (the channel was deleted).
    pub(crate) fn clear(&mut self) {
        self.events.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV10};

    fn event(id: &str) -> Arc<WireEvent> {
        let event = EventBuilderV10::new()
            .id(id)
            .ty("t")
            .source("/s")
            .build()
            .unwrap();
        Arc::new(WireEvent::from(event))
    }

    fn ids(got: Option<Vec<(u64, Arc<WireEvent>)>>) -> Option<Vec<(u64, String)>> {
        got.map(|v| {
            v.into_iter()
                .map(|(o, e)| (o, e.id().to_string()))
                .collect()
        })
    }

    #[test]
    fn serves_what_it_holds_and_nothing_else() {
        let mut tail = Tail::default();
        tail.extend(10, [(event("a"), 1), (event("b"), 1)]);
        tail.extend(12, [(event("c"), 1)]);
        assert_eq!(
            ids(tail.range(11, 13)),
            Some(vec![(11, "b".into()), (12, "c".into())])
        );
        assert!(tail.range(9, 11).is_none(), "below what it holds");
        assert!(tail.range(12, 14).is_none(), "past the head");
        // A gap starts afresh.
        tail.extend(20, [(event("x"), 1)]);
        assert!(tail.range(12, 13).is_none());
        assert_eq!(ids(tail.range(20, 21)), Some(vec![(20, "x".into())]));
    }

    #[test]
    fn keeps_the_newest_within_its_bounds() {
        let mut tail = Tail::default();
        tail.extend(0, (0..MAX_EVENTS + 10).map(|i| (event(&i.to_string()), 1)));
        assert!(tail.range(9, 10).is_none());
        let last = (MAX_EVENTS + 9) as u64;
        assert_eq!(
            ids(tail.range(last, last + 1)),
            Some(vec![(last, last.to_string())])
        );
        let mut tail = Tail::default();
        tail.extend(0, [(event("big"), MAX_BYTES), (event("next"), 1)]);
        assert!(tail.range(0, 1).is_none(), "over the byte bound");
        assert!(tail.range(1, 2).is_some());
    }
}
