//! Which delivered records of a reader's partitions are acknowledged, and so how far the
//! group may commit: one [`AckPrefix`] per partition (a Kafka commit is one offset per
//! partition meaning "everything below is done"), plus what a consumer group adds — which
//! partitions are assigned, epochs across rebalances, and what was committed already.

use crate::ack_prefix::AckPrefix;
use std::collections::{BTreeSet, HashMap};

/// The acknowledgement state of the partitions one reader is assigned.
#[derive(Debug, Default)]
pub struct Acks {
    /// The partitions the group assigned to this reader.
    assigned: BTreeSet<i32>,
    partitions: HashMap<i32, PartitionAcks>,
    /// Tags each partition's state, so an acknowledgement of a delivery made before a
    /// rebalance or seek (when the partition's state was dropped) is not applied to the new
    /// state: the record is redelivered instead.
    next_epoch: u64,
}

#[derive(Debug)]
struct PartitionAcks {
    epoch: u64,
    /// Delivered records; its committed offset is the one the group may commit.
    prefix: AckPrefix,
    /// The offset last committed (or sent to be committed).
    committed: Option<i64>,
}

impl PartitionAcks {
    /// Everything below this offset is handled.
    fn handled_to(&self) -> Option<i64> {
        self.prefix.committed().and_then(|o| i64::try_from(o).ok())
    }
}

/// Kafka record offsets are never negative; a negative one cannot be tracked.
fn offset(o: i64) -> Option<u64> {
    u64::try_from(o).ok()
}

/// Identifies one delivery for its acknowledgement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeliveryTag {
    pub partition: i32,
    pub offset: i64,
    epoch: u64,
}

impl Acks {
    /// Records that the record at `offset` was handed out.
    pub fn delivered(&mut self, partition: i32, offset: i64) -> DeliveryTag {
        let next_epoch = &mut self.next_epoch;
        let state = self.partitions.entry(partition).or_insert_with(|| {
            *next_epoch += 1;
            PartitionAcks {
                epoch: *next_epoch,
                prefix: AckPrefix::sparse(),
                committed: None,
            }
        });
        if let Some(o) = self::offset(offset) {
            state.prefix.delivered(o);
        }
        DeliveryTag {
            partition,
            offset,
            epoch: state.epoch,
        }
    }

    /// Marks a delivery handled. Returns false if its partition was revoked (or reset by a
    /// seek) since: the acknowledgement no longer counts.
    pub fn ack(&mut self, tag: DeliveryTag) -> bool {
        self.settle(tag, true)
    }

    /// Leaves a delivery unhandled: the partition's committable offset stays below it, so
    /// it is delivered again once the partition is next assigned (the subscription is opened
    /// again, a rebalance, a restart). Returns false as [`Acks::ack`] does.
    pub fn release(&mut self, tag: DeliveryTag) -> bool {
        self.settle(tag, false)
    }

    fn settle(&mut self, tag: DeliveryTag, handled: bool) -> bool {
        let Some(state) = self.partitions.get_mut(&tag.partition) else {
            return false;
        };
        if state.epoch != tag.epoch {
            return false;
        }
        if let Some(o) = offset(tag.offset) {
            if handled {
                state.prefix.settle(o);
            } else {
                state.prefix.release(o);
            }
        }
        true
    }

    /// The offsets to commit now, for partitions whose handled prefix moved since the last
    /// commit (all partitions, or only `only`). They count as committed from here on.
    pub fn take_commits(&mut self, only: Option<&[i32]>) -> Vec<(i32, i64)> {
        let mut commits = Vec::new();
        for (partition, state) in &mut self.partitions {
            if only.is_some_and(|only| !only.contains(partition)) {
                continue;
            }
            if let Some(handled) = state.handled_to() {
                if state.committed.is_none_or(|c| c < handled) {
                    state.committed = Some(handled);
                    commits.push((*partition, handled));
                }
            }
        }
        commits.sort_unstable();
        commits
    }

    /// A commit failed: commit that partition again next time.
    pub fn commit_failed(&mut self, partition: i32, offset: i64) {
        if let Some(state) = self.partitions.get_mut(&partition) {
            if state.committed == Some(offset) {
                state.committed = None;
            }
        }
    }

    /// Partitions newly assigned: their state starts afresh from the committed offset.
    pub fn assign(&mut self, partitions: &[i32]) {
        for partition in partitions {
            self.partitions.remove(partition);
            self.assigned.insert(*partition);
        }
    }

    /// Forgets revoked partitions: what was delivered and not committed will be redelivered
    /// to their next owner.
    pub fn revoke(&mut self, partitions: &[i32]) {
        for partition in partitions {
            self.partitions.remove(partition);
            self.assigned.remove(partition);
        }
    }

    /// Forgets everything (the reader's consumer is replaced).
    pub fn clear(&mut self) {
        self.partitions.clear();
        self.assigned.clear();
    }

    pub fn assignment(&self) -> Vec<i32> {
        self.assigned.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_the_contiguous_acknowledged_prefix() {
        let mut acks = Acks::default();
        let tags: Vec<_> = (10..15).map(|o| acks.delivered(0, o)).collect();
        assert!(acks.take_commits(None).is_empty());
        // 11 and 12 done, 10 still owed: nothing is committable.
        assert!(acks.ack(tags[1]));
        assert!(acks.ack(tags[2]));
        assert!(acks.take_commits(None).is_empty());
        acks.ack(tags[0]);
        assert_eq!(acks.take_commits(None), vec![(0, 13)]);
        // Unchanged since: nothing new to commit.
        assert!(acks.take_commits(None).is_empty());
        acks.ack(tags[4]);
        assert!(acks.take_commits(None).is_empty());
        acks.ack(tags[3]);
        assert_eq!(acks.take_commits(None), vec![(0, 15)]);
    }

    #[test]
    fn partitions_are_independent_and_gaps_in_offsets_do_not_block() {
        let mut acks = Acks::default();
        let a = acks.delivered(0, 3);
        // Offsets 4..=6 are transaction markers or compacted away: never delivered.
        let b = acks.delivered(0, 7);
        let c = acks.delivered(1, 0);
        acks.ack(b);
        acks.ack(c);
        assert_eq!(acks.take_commits(None), vec![(1, 1)]);
        acks.ack(a);
        assert_eq!(acks.take_commits(Some(&[0])), vec![(0, 8)]);
    }

    #[test]
    fn a_revoked_partition_ignores_late_acknowledgements() {
        let mut acks = Acks::default();
        let old = acks.delivered(2, 5);
        acks.revoke(&[2]);
        assert!(acks.assignment().is_empty());
        // Reassigned to this reader: the record comes again from the committed offset.
        acks.assign(&[2]);
        assert_eq!(acks.assignment(), vec![2]);
        let again = acks.delivered(2, 5);
        assert!(!acks.ack(old));
        assert!(acks.take_commits(None).is_empty());
        assert!(acks.ack(again));
        assert_eq!(acks.take_commits(None), vec![(2, 6)]);
    }

    #[test]
    fn a_released_delivery_holds_the_commit_back() {
        let mut acks = Acks::default();
        let a = acks.delivered(0, 0);
        let b = acks.delivered(0, 1);
        assert!(acks.release(a));
        acks.ack(b);
        assert!(acks.take_commits(None).is_empty());
    }

    #[test]
    fn a_failed_commit_is_retried() {
        let mut acks = Acks::default();
        let t = acks.delivered(0, 0);
        acks.ack(t);
        assert_eq!(acks.take_commits(None), vec![(0, 1)]);
        acks.commit_failed(0, 1);
        assert_eq!(acks.take_commits(None), vec![(0, 1)]);
    }
}
