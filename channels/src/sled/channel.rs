//! `SledChannel`: one broker's durable log as a [`Channel`]. Publishing hands the events to the
//! writer thread and waits for durability; everything else is in-memory bookkeeping plus log
//! reads and metadata writes off the runtime.

use super::codec;
use super::parking::SledParkingLot;
use super::reader::SledReader;
use super::seek;
use super::segment;
use super::state::{check_name, ChannelShared};
use super::store::MaintenanceSignal;
use super::writer::{AppendRequest, WriterMessage};
use crate::WireEvent;
use crate::{Channel, ChannelError, ParkingLot, Position, Subscription};
use async_trait::async_trait;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::mpsc::TrySendError;
use std::sync::Arc;
use tokio::sync::oneshot;

pub struct SledChannel {
    shared: Arc<ChannelShared>,
    parking: Arc<SledParkingLot>,
}

/// A broker's log at one moment, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SledChannelStats {
    /// Oldest retained offset.
    pub base: u64,
    /// Offset the next event will get.
    pub head: u64,
    pub retained_events: u64,
    pub retained_bytes: u64,
    /// Events the slowest subscription has not acknowledged (including ones being written).
    pub lag: u64,
    pub subscriptions: usize,
    /// Events a Broker's shared reader read back from the segments: those it was behind the
    /// in-memory tail of newest events for (after a restart, or far behind).
    pub events_read_from_disk: u64,
}

impl SledChannel {
    pub(crate) fn new(shared: Arc<ChannelShared>, parking: SledParkingLot) -> Self {
        Self {
            shared,
            parking: Arc::new(parking),
        }
    }

    pub(crate) fn shared(&self) -> &Arc<ChannelShared> {
        &self.shared
    }

    /// `publish`, returning the offsets the events were given.
    pub async fn append(&self, events: Vec<WireEvent>) -> Result<Range<u64>, ChannelError> {
        let shared = &self.shared;
        if events.is_empty() {
            let head = shared.lock().head;
            return Ok(head..head);
        }
        if shared.core.closed.load(Ordering::Acquire) {
            return Err(shared.unavailable("the store is closed"));
        }
        if shared.lock().deleted {
            return Err(shared.backend("the channel was deleted"));
        }
        let values = events
            .iter()
            .map(codec::encode_event)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| shared.backend("cannot encode an event").caused_by(e))?;
        let count = values.len() as u64;
        // Each event with its size in the log, for the tail readers at the head are served from.
        let events: Vec<(Arc<WireEvent>, u64)> = events
            .into_iter()
            .zip(&values)
            .map(|(e, v)| (Arc::new(e), segment::entry_bytes(v.len())))
            .collect();
        let bytes: u64 = events.iter().map(|(_, b)| b).sum();
        let config = &shared.core.config;
        {
            let mut state = shared.lock();
            let lag = state.lag();
            if lag + count > config.max_lag_events {
                return Err(self.full(format!(
                    "{lag} events not yet acknowledged by the slowest subscription, \
                     {count} more would pass max_lag_events {}",
                    config.max_lag_events
                )));
            }
            let held = state.retained_bytes + state.pending_bytes;
            if held + bytes > config.max_log_bytes {
                drop(state);
                // Consumed events kept for replay can make room: ask for a pass now.
                let _ = shared.core.maintenance.try_send(MaintenanceSignal::Compact);
                return Err(self.full(format!(
                    "the log holds {held} bytes, {bytes} more would pass max_log_bytes {}",
                    config.max_log_bytes
                )));
            }
            state.pending_events += count;
            state.pending_bytes += bytes;
        }
        let (reply, answer) = oneshot::channel();
        let request = AppendRequest {
            channel: shared.clone(),
            values,
            events,
            count,
            bytes,
            reply,
        };
        match shared.core.writer.try_send(WriterMessage::Append(request)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                shared.release(count, bytes);
                return Err(self.full(format!(
                    "{} publish requests already wait for the writer",
                    config.writer_queue
                )));
            }
            Err(TrySendError::Disconnected(_)) => {
                shared.release(count, bytes);
                return Err(shared.unavailable("the writer has stopped (store closed)"));
            }
        }
        answer
            .await
            .map_err(|_| shared.unavailable("the writer stopped before answering"))?
    }

    /// Forgets a subscription (a deleted Trigger), so it no longer holds back retention or
    /// counts towards lag. Its readers end. Returns whether it existed.
    pub async fn remove_subscription(&self, subscription: &str) -> Result<bool, ChannelError> {
        let shared = self.shared.clone();
        let sub = subscription.to_string();
        tokio::task::spawn_blocking(move || shared.remove_cursor(&sub))
            .await
            .map_err(|e| self.shared.backend("task failed").caused_by(e))?
            .map_err(|e| {
                self.shared
                    .unavailable("cannot remove the subscription")
                    .caused_by(e)
            })
    }

    pub fn stats(&self) -> SledChannelStats {
        let state = self.shared.lock();
        SledChannelStats {
            base: state.base,
            head: state.head,
            retained_events: state.head - state.base,
            retained_bytes: state.retained_bytes,
            lag: state.lag(),
            subscriptions: state.cursors.len(),
            events_read_from_disk: state.read_from_disk,
        }
    }

    /// Every subscription this broker knows, including ones persisted by an earlier run that
    /// have not subscribed again; compare with the configured Triggers and remove the rest.
    pub fn subscriptions(&self) -> Vec<String> {
        let mut names: Vec<_> = self.shared.lock().cursors.keys().cloned().collect();
        names.sort_unstable();
        names
    }

    /// A subscription's committed offset in memory (what a restart would resume from once
    /// persisted), if the subscription is known.
    pub fn committed(&self, subscription: &str) -> Option<u64> {
        self.shared
            .lock()
            .cursors
            .get(subscription)
            .map(|c| c.committed())
    }

    fn full(&self, detail: String) -> ChannelError {
        ChannelError::full(
            self.shared.name.as_str(),
            detail,
            self.shared.core.config.retry_after,
        )
    }

    async fn persist(&self, flush: bool) -> Result<(), ChannelError> {
        persist(&self.shared, flush).await
    }
}

/// Persists committed offsets off the runtime.
pub(crate) async fn persist(shared: &Arc<ChannelShared>, flush: bool) -> Result<(), ChannelError> {
    let task = shared.clone();
    tokio::task::spawn_blocking(move || task.persist(flush))
        .await
        .map_err(|e| shared.backend("task failed").caused_by(e))?
        .map_err(|e| {
            shared
                .unavailable("cannot persist committed offsets")
                .caused_by(e)
        })
}

#[async_trait]
impl Channel for SledChannel {
    fn name(&self) -> &str {
        self.shared.name.as_str()
    }

    async fn publish(&self, events: Vec<WireEvent>) -> Result<(), ChannelError> {
        self.append(events).await.map(|_| ())
    }

    /// Durable: parked events are flushed to the store before their delivery is acked.
    async fn lag(&self, subscription: &str) -> Option<u64> {
        let state = self.shared.lock();
        let committed = state.cursors.get(subscription)?.committed();
        Some(state.head.saturating_sub(committed))
    }

    fn parking(&self) -> Option<Arc<dyn ParkingLot>> {
        Some(self.parking.clone())
    }

    fn shared_log(&self) -> Option<Arc<dyn crate::SharedLog>> {
        Some(Arc::new(super::shared::SledSharedLog::new(
            self.shared.clone(),
        )))
    }

    async fn subscribe(&self, subscription: &str) -> Result<Box<dyn Subscription>, ChannelError> {
        check_name(self.shared.name.as_str(), "subscription", subscription)?;
        let created = {
            let mut state = self.shared.lock();
            if state.deleted {
                return Err(self.shared.backend("the channel was deleted"));
            }
            let created = !state.cursors.contains_key(subscription);
            state.add_cursor(subscription);
            if let Some(cursor) = state.cursors.get_mut(subscription) {
                // Opened again: what its readers released is handed out again.
                cursor.requeue_released();
            }
            created
        };
        self.shared.changed.notify_waiters();
        if created {
            // Durable before any reader runs, so a restart does not move it to a later head.
            self.persist(true).await?;
        }
        Ok(Box::new(SledReader::new(
            self.shared.clone(),
            subscription.to_string(),
        )))
    }

    /// Moves only this subscription to the first retained event at or after `position`,
    /// persists that, and wakes its readers.
    async fn seek(&self, subscription: &str, position: Position) -> Result<u64, ChannelError> {
        let shared = self.shared.clone();
        let sub = subscription.to_string();
        tokio::task::spawn_blocking(move || seek::seek(&shared, &sub, &position))
            .await
            .map_err(|e| self.shared.backend("task failed").caused_by(e))?
    }

    async fn delete_subscription(&self, subscription: &str) -> Result<(), ChannelError> {
        self.remove_subscription(subscription).await.map(|_| ())
    }

    async fn delete(&self) -> Result<(), ChannelError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.delete())
            .await
            .map_err(|e| self.shared.backend("task failed").caused_by(e))?
            .map_err(|e| {
                self.shared
                    .unavailable("cannot delete the log")
                    .caused_by(e)
            })?;
        // Its parked events go with it.
        let dir = super::parking::lot_dir(&self.shared.core.dir, &self.shared.name);
        match tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Ok(Err(e)) => Err(self
                .shared
                .unavailable("cannot delete the parking area")
                .caused_by(e)),
            Err(e) => Err(self.shared.backend("task failed").caused_by(e)),
        }
    }

    /// Ends this broker's subscriptions at once (unacknowledged events are redelivered after a
    /// restart), then persists committed offsets and flushes. Acknowledgements that arrive
    /// later are still recorded and persisted while the store is open.
    async fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.changed.notify_waiters();
        if let Err(e) = self.persist(true).await {
            tracing::error!(broker = %self.shared.name, error = %e, "persisting on close failed");
        }
    }
}
