//! Which handed-out offsets of one subscription (memory, sled) or one Kafka partition are
//! settled, and so how far its committed position may move. Deliveries are settled out of
//! order (concurrent deliveries), but a committed position means "everything below is done":
//! only the contiguous settled prefix counts. A released delivery (see
//! [`Settlement::Released`](crate::Settlement)) stays owed, holding the prefix back, until it
//! is handed out again.

use std::collections::{BTreeMap, BTreeSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Owed {
    /// Handed out, not settled yet.
    Pending,
    Settled,
    /// Handed back unhandled: to be handed out again.
    Released,
}

#[derive(Clone, Debug)]
pub(crate) struct AckPrefix {
    /// Everything below is settled. `None` until known (a Kafka partition before its first
    /// record is settled).
    committed: Option<u64>,
    /// Offsets at or above `committed` that were handed out (or settled before a restart).
    owed: BTreeMap<u64, Owed>,
    /// Offsets may skip (Kafka: transaction markers, compacted records), so a handed-out
    /// offset implies nothing below it is still to come. Otherwise every offset exists and an
    /// offset never handed out holds the prefix back.
    sparse: bool,
}

impl AckPrefix {
    /// A log whose every offset exists, with everything below `committed` settled.
    pub(crate) fn at(committed: u64) -> Self {
        Self {
            committed: Some(committed),
            owed: BTreeMap::new(),
            sparse: false,
        }
    }

    /// A Kafka partition: offsets may skip, the starting position is the first one handed out.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn sparse() -> Self {
        Self {
            committed: None,
            owed: BTreeMap::new(),
            sparse: true,
        }
    }

    /// Everything below this offset is settled.
    pub(crate) fn committed(&self) -> Option<u64> {
        self.committed
    }

    fn below_committed(&self, offset: u64) -> bool {
        self.committed.is_some_and(|c| offset < c)
    }

    /// Records that `offset` was handed out (again, if it had been released).
    pub(crate) fn delivered(&mut self, offset: u64) {
        if !self.below_committed(offset) {
            self.owed.insert(offset, Owed::Pending);
        }
    }

    /// Settles `offset` (handed out now, or settled before a restart and loaded from disk).
    /// Returns whether the committed position moved.
    pub(crate) fn settle(&mut self, offset: u64) -> bool {
        if self.below_committed(offset) {
            return false;
        }
        self.owed.insert(offset, Owed::Settled);
        self.advance()
    }

    /// Everything below `through` is settled (a shared reader found nothing owed there);
    /// never moves the committed position back. Returns whether it moved.
    pub(crate) fn settle_below(&mut self, through: u64) -> bool {
        if self.committed.is_some_and(|c| c >= through) {
            return false;
        }
        self.owed = self.owed.split_off(&through);
        self.committed = Some(through);
        self.advance();
        true
    }

    /// Hands `offset` back unhandled: it stays owed and will be handed out again.
    pub(crate) fn release(&mut self, offset: u64) {
        if let Some(state) = self.owed.get_mut(&offset) {
            if *state == Owed::Pending {
                *state = Owed::Released;
            }
        }
    }

    /// Whether `offset` is to be handed out: never handed out (or released), not settled.
    pub(crate) fn is_due(&self, offset: u64) -> bool {
        !self.below_committed(offset)
            && matches!(self.owed.get(&offset), None | Some(Owed::Released))
    }

    /// The lowest released offset, where a reader resumes to hand released events out again.
    pub(crate) fn first_released(&self) -> Option<u64> {
        self.owed
            .iter()
            .find(|(_, s)| **s == Owed::Released)
            .map(|(o, _)| *o)
    }

    /// Offsets settled above the committed position (settled out of order), for persisting.
    pub(crate) fn settled_above(&self) -> BTreeSet<u64> {
        self.owed
            .iter()
            .filter(|(_, s)| **s == Owed::Settled)
            .map(|(o, _)| *o)
            .collect()
    }

    fn advance(&mut self) -> bool {
        let mut moved = false;
        while let Some(entry) = self.owed.first_entry() {
            let offset = *entry.key();
            let contiguous = self.sparse || self.committed.is_none_or(|c| c == offset);
            if *entry.get() != Owed::Settled || !contiguous {
                break;
            }
            entry.remove();
            self.committed = Some(offset + 1);
            moved = true;
        }
        moved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_contiguous_settled_prefix_is_committed() {
        let mut p = AckPrefix::at(10);
        for o in 10..15 {
            p.delivered(o);
        }
        assert!(!p.settle(11));
        assert!(!p.settle(12));
        assert_eq!(p.committed(), Some(10));
        assert!(p.settle(10));
        assert_eq!(p.committed(), Some(13));
        p.settle(14);
        assert_eq!(p.committed(), Some(13));
        p.settle(13);
        assert_eq!(p.committed(), Some(15));
        assert!(p.settled_above().is_empty());
    }

    #[test]
    fn settling_below_an_offset_keeps_what_is_owed_above_it_and_never_goes_back() {
        let mut p = AckPrefix::at(3);
        p.delivered(4);
        p.delivered(9);
        p.settle(10);
        assert!(p.settle_below(9));
        // 9 is still owed; 10 settled above it stays recorded.
        assert_eq!(p.committed(), Some(9));
        assert_eq!(p.settled_above(), [10].into());
        assert!(!p.settle_below(5));
        assert_eq!(p.committed(), Some(9));
        p.settle(9);
        assert_eq!(p.committed(), Some(11));
    }

    #[test]
    fn an_offset_never_handed_out_holds_a_dense_log_back() {
        // 5 and 6 were settled before a restart; 4 was not.
        let mut p = AckPrefix::at(3);
        p.settle(5);
        p.settle(6);
        assert!(!p.is_due(5) && p.is_due(3) && p.is_due(4));
        p.delivered(3);
        p.settle(3);
        assert_eq!(p.committed(), Some(4));
        assert_eq!(p.settled_above(), BTreeSet::from([5, 6]));
        p.delivered(4);
        p.settle(4);
        assert_eq!(p.committed(), Some(7));
    }

    #[test]
    fn a_sparse_log_skips_gaps_and_starts_where_it_is_first_read() {
        let mut p = AckPrefix::sparse();
        p.delivered(3);
        // 4..=6 are transaction markers: never handed out.
        p.delivered(7);
        p.settle(7);
        assert_eq!(p.committed(), None);
        p.settle(3);
        assert_eq!(p.committed(), Some(8));
    }

    #[test]
    fn a_released_offset_holds_the_prefix_and_is_due_again() {
        let mut p = AckPrefix::at(0);
        for o in 0..3 {
            p.delivered(o);
        }
        p.release(1);
        p.settle(0);
        p.settle(2);
        assert_eq!(p.committed(), Some(1));
        assert_eq!(p.first_released(), Some(1));
        assert!(p.is_due(1) && !p.is_due(2) && !p.is_due(0));
        p.delivered(1);
        assert_eq!(p.first_released(), None);
        assert!(!p.is_due(1));
        p.settle(1);
        assert_eq!(p.committed(), Some(3));
    }
}
