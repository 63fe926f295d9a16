//! Readers of a subscription and their acknowledgements. The readers of one subscription share
//! its cursor and a small buffer of events read ahead from disk (at most `read_chunk`), filled
//! by one reader at a time off the runtime; acknowledgements only touch memory and are written
//! to disk in batches by the store's maintenance thread.

use super::codec;
use super::state::ChannelShared;
use crate::WireEvent;
use crate::{Acknowledge, ChannelError, Delivery, Settlement, Subscription};
use async_trait::async_trait;
use std::sync::Arc;

pub(crate) struct SledReader {
    shared: Arc<ChannelShared>,
    subscription: String,
}

enum Step {
    Deliver(Box<Delivery>),
    Fetch { from: u64, to: u64, token: u64 },
    Wait,
    End,
}

impl SledReader {
    pub(crate) fn new(shared: Arc<ChannelShared>, subscription: String) -> Self {
        Self {
            shared,
            subscription,
        }
    }

    fn step(&self) -> Step {
        let chunk = self.shared.core.config.read_chunk.max(1) as u64;
        let mut state = self.shared.lock();
        if state.closed {
            return Step::End;
        }
        let (base, head) = (state.base, state.head);
        let token = state.next_id();
        let Some(cursor) = state.cursors.get_mut(&self.subscription) else {
            // Removed while we were reading.
            return Step::End;
        };
        if cursor.next < base {
            cursor.next = base;
            cursor.buffer.clear();
        }
        while let Some((offset, event)) = cursor.buffer.pop_front() {
            cursor.next = offset + 1;
            // Settled (before a restart, above a gap that held the committed offset back) or
            // in flight with another reader (after a rewind to a released offset).
            if !cursor.acks.is_due(offset) {
                continue;
            }
            match event {
                Some(event) => {
                    cursor.delivered(offset);
                    let ack = SledAck {
                        shared: self.shared.clone(),
                        subscription: self.subscription.clone(),
                        offset,
                        epoch: cursor.epoch,
                    };
                    let delivery = Delivery::new(event, Some(offset), Box::new(ack));
                    return Step::Deliver(Box::new(delivery));
                }
                // Unreadable (already logged): skipped so the subscription is not stuck on it.
                None => {
                    cursor.delivered(offset);
                    cursor.settle(offset);
                }
            }
        }
        if cursor.next < head && cursor.fetching.is_none() {
            cursor.fetching = Some(token);
            return Step::Fetch {
                from: cursor.next,
                to: head.min(cursor.next + chunk),
                token,
            };
        }
        Step::Wait
    }

    async fn fetch(&self, from: u64, to: u64, token: u64) -> Result<(), ChannelError> {
        // Clears the fetch flag even if this future is dropped mid-read.
        let _guard = FetchGuard {
            shared: &self.shared,
            subscription: &self.subscription,
            token,
        };
        let shared = self.shared.clone();
        let read = tokio::task::spawn_blocking(move || read_range(&shared, from, to))
            .await
            .map_err(|e| self.shared.backend("read task failed").caused_by(e))?
            .map_err(|e| self.shared.unavailable("read failed").caused_by(e))?;
        let mut state = self.shared.lock();
        if let Some(cursor) = state.cursors.get_mut(&self.subscription) {
            // Only if no seek moved the subscription while we read.
            if cursor.fetching == Some(token) && cursor.next == from && cursor.buffer.is_empty() {
                cursor.buffer = read.into();
            }
        }
        Ok(())
    }
}

struct FetchGuard<'a> {
    shared: &'a ChannelShared,
    subscription: &'a str,
    token: u64,
}

impl Drop for FetchGuard<'_> {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            if let Some(cursor) = state.cursors.get_mut(self.subscription) {
                if cursor.fetching == Some(self.token) {
                    cursor.fetching = None;
                }
            }
        }
        // Other readers of the subscription wait for this chunk (or to read it themselves).
        self.shared.changed.notify_waiters();
    }
}

/// Reads `from..to` from the log and decodes it. Blocking. Entries that are missing or
/// cannot be decoded come back as `None` and are logged.
pub(crate) fn read_range(
    shared: &ChannelShared,
    from: u64,
    to: u64,
) -> std::io::Result<Vec<(u64, Option<WireEvent>)>> {
    let broker = shared.name.as_str();
    shared.log.read(from, to, |offset, payload| {
        let Some(payload) = payload else {
            tracing::error!(
                broker,
                offset,
                "event missing from the log or damaged, skipping it"
            );
            return (offset, None);
        };
        match codec::decode_event(payload) {
            Ok(event) => (offset, Some(event)),
            Err(e) => {
                tracing::error!(broker, offset, error = %e, "unreadable event, skipping it");
                (offset, None)
            }
        }
    })
}

#[async_trait]
impl Subscription for SledReader {
    async fn next(&mut self) -> Result<Option<Delivery>, ChannelError> {
        loop {
            let notified = self.shared.changed.notified();
            tokio::pin!(notified);
            // Register for wake-ups before looking, so a wake-up between the look and the
            // await is not missed.
            notified.as_mut().enable();
            match self.step() {
                Step::Deliver(delivery) => return Ok(Some(*delivery)),
                Step::End => return Ok(None),
                Step::Fetch { from, to, token } => self.fetch(from, to, token).await?,
                Step::Wait => notified.await,
            }
        }
    }
}

struct SledAck {
    shared: Arc<ChannelShared>,
    subscription: String,
    offset: u64,
    epoch: u64,
}

#[async_trait]
impl Acknowledge for SledAck {
    async fn settle(self: Box<Self>, how: Settlement) -> Result<(), ChannelError> {
        let mut state = self.shared.lock();
        if let Some(cursor) = state.cursors.get_mut(&self.subscription) {
            // After a seek, settlements of earlier deliveries no longer describe this position.
            if cursor.epoch == self.epoch {
                if how.is_handled() {
                    cursor.settle(self.offset);
                } else {
                    cursor.release(self.offset);
                }
            }
        }
        Ok(())
    }
}
