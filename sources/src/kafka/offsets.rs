//! How far a KafkaSource may commit each partition it reads. Records are handed to the sink
//! in offset order but may be accepted out of order (unordered delivery), and a Kafka commit
//! means "everything below is done": only the offset of the first record still in flight
//! (or one past the last record read, when none is) may be committed.

use std::collections::{BTreeSet, HashMap};
use tokio_util::sync::CancellationToken;

/// A topic and partition.
pub type Partition = (String, i32);

/// Identifies one record handed out, for its acknowledgement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    pub partition: Partition,
    pub offset: i64,
    epoch: u64,
}

#[derive(Debug)]
struct State {
    epoch: u64,
    /// Read and not yet accepted by the sink.
    in_flight: BTreeSet<i64>,
    /// One past the last record read.
    next: i64,
    /// The offset last committed (or being committed).
    committed: Option<i64>,
    /// Cancelled when the partition is revoked: its records' work stops.
    revoked: CancellationToken,
}

#[derive(Debug)]
pub struct Offsets {
    partitions: HashMap<Partition, State>,
    /// Every partition's work stops with it (the source shuts down).
    parent: CancellationToken,
    /// Tags each partition's state, so an ack of a record read before a rebalance (when its
    /// state was dropped) does not move the new state.
    next_epoch: u64,
}

impl Offsets {
    pub fn new(parent: CancellationToken) -> Self {
        Self {
            partitions: HashMap::new(),
            parent,
            next_epoch: 0,
        }
    }

    /// Records that the record at `offset` was read; its work stops when `revoked` fires.
    pub fn read(&mut self, partition: &Partition, offset: i64) -> (Tag, CancellationToken) {
        let (next_epoch, parent) = (&mut self.next_epoch, &self.parent);
        let state = self.partitions.entry(partition.clone()).or_insert_with(|| {
            *next_epoch += 1;
            State {
                epoch: *next_epoch,
                in_flight: BTreeSet::new(),
                next: offset,
                committed: None,
                revoked: parent.child_token(),
            }
        });
        state.in_flight.insert(offset);
        state.next = state.next.max(offset + 1);
        let tag = Tag {
            partition: partition.clone(),
            offset,
            epoch: state.epoch,
        };
        (tag, state.revoked.clone())
    }

    /// The sink accepted the record. `false` when its partition was revoked since.
    pub fn accepted(&mut self, tag: &Tag) -> bool {
        match self.partitions.get_mut(&tag.partition) {
            Some(s) if s.epoch == tag.epoch => s.in_flight.remove(&tag.offset),
            _ => false,
        }
    }

    /// The offsets to commit now (of `only` these partitions, or all), each beyond what was
    /// committed before; they count as committed until [`commit_failed`](Self::commit_failed).
    pub fn to_commit(&mut self, only: Option<&[Partition]>) -> Vec<(Partition, i64)> {
        let mut out = Vec::new();
        for (p, s) in &mut self.partitions {
            if only.is_some_and(|only| !only.contains(p)) {
                continue;
            }
            let upto = s.in_flight.first().copied().unwrap_or(s.next);
            if s.committed.is_none_or(|c| upto > c) {
                s.committed = Some(upto);
                out.push((p.clone(), upto));
            }
        }
        out.sort();
        out
    }

    /// A commit did not land: it is tried again next time.
    pub fn commit_failed(&mut self, partition: &Partition, offset: i64) {
        if let Some(s) = self.partitions.get_mut(partition) {
            if s.committed == Some(offset) {
                s.committed = None;
            }
        }
    }

    /// The partitions went to another member: their state (and their records' work) ends.
    pub fn revoke(&mut self, partitions: &[Partition]) {
        for p in partitions {
            if let Some(s) = self.partitions.remove(p) {
                s.revoked.cancel();
            }
        }
    }

    /// Every partition ends (the consumer closes).
    pub fn revoke_all(&mut self) {
        let all: Vec<Partition> = self.partitions.keys().cloned().collect();
        self.revoke(&all);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(n: i32) -> Partition {
        ("t".into(), n)
    }

    #[test]
    fn only_the_contiguous_accepted_prefix_is_committed() {
        let mut o = Offsets::new(CancellationToken::new());
        let tags: Vec<Tag> = (10..15).map(|i| o.read(&p(0), i).0).collect();
        assert_eq!(o.to_commit(None), vec![(p(0), 10)]);
        assert!(o.accepted(&tags[1]));
        assert!(o.accepted(&tags[2]));
        // 10 is still in flight: nothing new to commit.
        assert_eq!(o.to_commit(None), vec![]);
        assert!(o.accepted(&tags[0]));
        assert_eq!(o.to_commit(None), vec![(p(0), 13)]);
        assert!(o.accepted(&tags[3]));
        assert!(o.accepted(&tags[4]));
        assert_eq!(o.to_commit(None), vec![(p(0), 15)]);
        assert_eq!(o.to_commit(None), vec![]);
    }

    #[test]
    fn skipped_offsets_do_not_hold_the_prefix_back() {
        let mut o = Offsets::new(CancellationToken::new());
        let a = o.read(&p(1), 3).0;
        let b = o.read(&p(1), 7).0;
        o.accepted(&a);
        o.accepted(&b);
        assert_eq!(o.to_commit(None), vec![(p(1), 8)]);
    }

    #[test]
    fn a_failed_commit_is_tried_again() {
        let mut o = Offsets::new(CancellationToken::new());
        let a = o.read(&p(0), 0).0;
        o.accepted(&a);
        assert_eq!(o.to_commit(None), vec![(p(0), 1)]);
        o.commit_failed(&p(0), 1);
        assert_eq!(o.to_commit(None), vec![(p(0), 1)]);
    }

    #[test]
    fn an_ack_from_before_a_revoke_does_not_count() {
        let mut o = Offsets::new(CancellationToken::new());
        let (old, revoked) = o.read(&p(0), 5);
        o.revoke(&[p(0)]);
        assert!(revoked.is_cancelled());
        let (new, _) = o.read(&p(0), 5);
        assert!(!o.accepted(&old));
        assert_eq!(o.to_commit(None), vec![(p(0), 5)]);
        assert!(o.accepted(&new));
        assert_eq!(o.to_commit(Some(&[p(0)])), vec![(p(0), 6)]);
    }

    #[test]
    fn commits_of_other_partitions_wait() {
        let mut o = Offsets::new(CancellationToken::new());
        let a = o.read(&p(0), 0).0;
        let b = o.read(&p(1), 0).0;
        o.accepted(&a);
        o.accepted(&b);
        assert_eq!(o.to_commit(Some(&[p(1)])), vec![(p(1), 1)]);
        assert_eq!(o.to_commit(None), vec![(p(0), 1)]);
    }
}
