//! The sled channel as one [`SharedLog`]: reads of any range for a Broker's shared reader
//! (decoded once for all its Triggers), and positions moved without a `SledReader`. What
//! is recorded here is persisted like any acknowledgement, by the store's maintenance.

use super::channel::persist;
use super::reader::read_range;
use super::state::{check_name, ChannelShared};
use crate::shared_log::{Mark, Read, SharedLog};
use crate::ChannelError;
use async_trait::async_trait;
use std::sync::Arc;

pub(crate) struct SledSharedLog {
    shared: Arc<ChannelShared>,
}

impl SledSharedLog {
    pub(crate) fn new(shared: Arc<ChannelShared>) -> Self {
        Self { shared }
    }
}

#[async_trait]
impl SharedLog for SledSharedLog {
    async fn open(&self, subscription: &str) -> Result<Mark, ChannelError> {
        check_name(self.shared.name.as_str(), "subscription", subscription)?;
        let created = {
            let mut state = self.shared.lock();
            if state.deleted {
                return Err(self.shared.backend("the channel was deleted"));
            }
            let created = !state.cursors.contains_key(subscription);
            state.add_cursor(subscription);
            created
        };
        if created {
            // Durable before anything is read, so a restart does not move it to a later head.
            persist(&self.shared, true).await?;
        }
        self.mark(subscription).ok_or_else(|| {
            self.shared
                .backend("the subscription was removed while opening")
        })
    }

    fn mark(&self, subscription: &str) -> Option<Mark> {
        let state = self.shared.lock();
        state.cursors.get(subscription).map(|c| Mark {
            committed: c.committed(),
            settled: c.acks.settled_above(),
            epoch: c.epoch,
        })
    }

    fn moves(&self) -> u64 {
        self.shared.lock().moves
    }

    async fn read(
        &self,
        from: u64,
        until: Option<u64>,
        max: usize,
        moves: u64,
    ) -> Result<Read, ChannelError> {
        let (from, to) = loop {
            // Served from the tail when it holds the whole range (see `tail`).
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            // Registered before looking, so events made durable meanwhile are not missed.
            notified.as_mut().enable();
            {
                let mut state = self.shared.lock();
                if state.moves != moves {
                    return Ok(Read::Moved(state.moves));
                }
                // A durable channel ends at once; what was not handled comes after a restart.
                if state.closed {
                    return Ok(Read::End);
                }
                let from = from.max(state.base);
                let end = until.map_or(state.head, |u| u.min(state.head));
                if from < end || until.is_some() {
                    let to = end.min(from + max.max(1) as u64);
                    if let Some(events) = state.tail.range(from, to) {
                        return Ok(Read::Events { events, end: to });
                    }
                    if from < to {
                        state.read_from_disk += to - from;
                    }
                    break (from, to);
                }
            }
            notified.await;
        };
        if from >= to {
            return Ok(Read::Events {
                events: Vec::new(),
                end: from,
            });
        }
        let shared = self.shared.clone();
        let read = tokio::task::spawn_blocking(move || read_range(&shared, from, to))
            .await
            .map_err(|e| self.shared.backend("read task failed").caused_by(e))?
            .map_err(|e| self.shared.unavailable("read failed").caused_by(e))?;
        // Unreadable entries (logged by `read_range`) are left out: nobody is handed them,
        // and positions move past them.
        Ok(Read::Events {
            events: read
                .into_iter()
                .filter_map(|(offset, event)| Some((offset, Arc::new(event?))))
                .collect(),
            end: to,
        })
    }

    fn advance(&self, subscription: &str, epoch: u64, settled: Option<u64>, through: u64) -> bool {
        let mut state = self.shared.lock();
        let Some(cursor) = state.cursors.get_mut(subscription) else {
            return false;
        };
        if cursor.epoch != epoch {
            return false;
        }
        if let Some(offset) = settled {
            cursor.acks.settle(offset);
        }
        cursor.acks.settle_below(through);
        cursor.next = cursor.next.max(through);
        cursor.acked_generation += 1;
        true
    }
}
