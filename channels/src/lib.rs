//! Channels: where a Broker keeps accepted events until every Trigger has handled them.
//!
//! One trait, [`Channel`], with one module per backend. Callers (ingress, dispatcher, later
//! Channel/Subscription fan-out) know channels only through this trait, and backends only
//! through [`Backend`] and the [`BackendRegistry`] that connects them on first use, each
//! configured by its section of [`ChannelsConfig`].

mod ack_prefix;
pub mod backlog;
pub mod binding;
pub mod config;
pub mod error;
pub mod event;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod kafka_config;
pub mod memory;
pub mod name;
pub mod nats;
pub mod parking;
pub mod registry;
pub mod shared_log;
pub mod sled;

/// What the wire codecs' round-trip tests check of a decoded event.
#[cfg(test)]
mod codec_tests {
    use crate::event::WireEvent;

    /// `back` (decoded) carries the id "1", subject "sub", extension region=eu and JSON data
    /// {"a": 1} of `sent`, and its time.
    pub(crate) fn assert_round_tripped(back: &WireEvent, sent: &WireEvent) {
        assert_eq!(back.id(), "1");
        assert_eq!(back.subject(), Some("sub"));
        assert_eq!(back.time(), sent.time());
        assert_eq!(
            back.extension("region").map(|v| v.to_string()).as_deref(),
            Some("eu")
        );
        assert_eq!(back.data(), sent.data());
        let data: serde_json::Value = serde_json::from_slice(&back.body().unwrap()).unwrap();
        assert_eq!(data, serde_json::json!({"a": 1}));
    }
}

use async_trait::async_trait;
use std::sync::Arc;

pub use self::sled::{
    Retention, SledBackend, SledChannel, SledChannelStats, SledConfig, SledStats, SledStore,
    SyncPolicy,
};
pub use config::{ChannelsConfig, SledSection};
pub use error::{Cause, ChannelError};
pub use event::{TraceContext, WireData, WireEvent};
#[cfg(feature = "kafka")]
pub use kafka::{KafkaBackend, KafkaChannel};
pub use kafka_config::KafkaConfig;
pub use memory::{MemoryBackend, MemoryChannel, MemoryChannelConfig};
pub use name::ChannelName;
pub use nats::{NatsBackend, NatsChannel, NatsConfig, NatsStorage};
pub use parking::{MemoryParkingLot, ParkedEvent, ParkedWhy, Parking, ParkingLot};
pub use registry::{Backend, BackendHealth, BackendKind, BackendRegistry, ChannelOptions};
pub use shared_log::{Mark, Read, SharedLog};

/// An ordered log of events with independent, acknowledged subscriptions.
#[async_trait]
pub trait Channel: Send + Sync + 'static {
    fn name(&self) -> &str;

    /// Appends the events as one unit. Returns only once the channel holds all of them (for
    /// durable backends: durable per their sync policy), so the caller may acknowledge them.
    async fn publish(&self, events: Vec<WireEvent>) -> Result<(), ChannelError>;

    /// Opens the named subscription, resuming from its committed position if it has one.
    /// Each subscription sees every event; deliveries within one are shared by its readers.
    async fn subscribe(&self, subscription: &str) -> Result<Box<dyn Subscription>, ChannelError>;

    /// The channel's own durable parking area for undeliverable events, if it has one (sled,
    /// NATS, Kafka); `None`: the data plane keeps them in a [`MemoryParkingLot`] (lost on
    /// restart).
    fn parking(&self) -> Option<Arc<dyn ParkingLot>> {
        None
    }

    /// The channel as one offset-addressed log, when it is one (memory, sled), so a
    /// Broker's Triggers can share one reader; `None`: each subscription reads for itself.
    fn shared_log(&self) -> Option<Arc<dyn SharedLog>> {
        None
    }

    /// Events `subscription` has accepted and not committed yet (its lag): memory and sled
    /// from their cursors, NATS as its consumer's pending plus unacknowledged messages,
    /// Kafka as its group's high watermarks minus committed offsets (one round trip each).
    /// `None` where it cannot be read now.
    async fn lag(&self, _subscription: &str) -> Option<u64> {
        None
    }

    /// Moves a subscription back (or forward) so its readers resume at `position`; the
    /// events from there on are delivered to this subscription only, again. Returns the
    /// offset the subscription now resumes from.
    async fn seek(&self, subscription: &str, position: Position) -> Result<u64, ChannelError>;

    /// Removes a subscription from the backend (its Trigger was deleted): its committed
    /// position is forgotten, it no longer holds back retention nor counts as lag (NATS: the
    /// durable consumer is deleted; Kafka: the consumer group; sled: its state; memory: its
    /// cursor). Idempotent; readers still open end. Opening it again later starts afresh,
    /// at the head.
    async fn delete_subscription(&self, subscription: &str) -> Result<(), ChannelError>;

    /// Deletes the channel and everything it holds from the backend (its Broker was
    /// deleted), after `close`. NATS: the stream and its parking stream; Kafka: the topic,
    /// its parking topic and the groups of its subscriptions; sled: the log and its subscriptions' state; memory: everything.
    /// Idempotent.
    async fn delete(&self) -> Result<(), ChannelError>;

    /// Starts shutdown: subscriptions end once it is safe. A volatile channel first hands out
    /// and waits for acknowledgement of everything it holds (nothing survives it otherwise); a
    /// durable one ends them at once, since unacknowledged events are redelivered on restart.
    async fn close(&self);
}

/// Where a replay starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Position {
    /// The first event at or after this log offset.
    Offset(u64),
    /// The first event the channel accepted at or after this time.
    Time(chrono::DateTime<chrono::Utc>),
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Position::Offset(o) => write!(f, "offset {o}"),
            Position::Time(t) => write!(f, "{}", t.to_rfc3339()),
        }
    }
}

/// One reader of a subscription.
#[async_trait]
pub trait Subscription: Send {
    /// The next event, or `None` once the channel is closed and this subscription is done.
    async fn next(&mut self) -> Result<Option<Delivery>, ChannelError>;
}

/// An event handed to a subscriber; it stays owed until acknowledged.
pub struct Delivery {
    /// Shared, so a backend that hands one stored event to many subscriptions (memory) copies
    /// it only for the Triggers whose filter matches.
    pub event: Arc<WireEvent>,
    /// Position in the channel's log, where the backend has one (for logs and replay).
    pub offset: Option<u64>,
    ack: Box<dyn Acknowledge>,
}

impl Delivery {
    pub fn new(event: WireEvent, offset: Option<u64>, ack: Box<dyn Acknowledge>) -> Self {
        Self::shared(Arc::new(event), offset, ack)
    }

    pub fn shared(event: Arc<WireEvent>, offset: Option<u64>, ack: Box<dyn Acknowledge>) -> Self {
        Self { event, offset, ack }
    }

    /// Tells the backend how the delivery ended (see [`Settlement`]).
    pub async fn settle(self, how: Settlement) -> Result<(), ChannelError> {
        self.ack.settle(how).await
    }

    /// Marks the event delivered for this subscription: `settle(Settlement::Delivered)`.
    pub async fn ack(self) -> Result<(), ChannelError> {
        self.settle(Settlement::Delivered).await
    }

    /// Separates the event (still shared) from its acknowledgement.
    pub fn into_parts(self) -> (Arc<WireEvent>, Box<dyn Acknowledge>) {
        (self.event, self.ack)
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &cloudevents::AttributesReader::id(&**self.event))
            .field("offset", &self.offset)
            .finish()
    }
}

/// How one delivery ended, for the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settlement {
    Delivered,
    DeadLettered,
    /// The filter rejected it, or there was nothing to do.
    Dropped,
    /// Not handled (shutdown abandoned it, the route was removed mid-flight): redeliver it,
    /// to this subscription, soon. NATS redelivers it at once (a nak); memory, sled and
    /// Kafka leave it unacknowledged, so it comes again when the subscription is next opened
    /// (or the process restarts), and the committed position does not move past it.
    Released,
}

impl Settlement {
    /// Whether the subscription is done with the event.
    pub fn is_handled(self) -> bool {
        !matches!(self, Settlement::Released)
    }
}

/// Backend-specific settlement of one delivery.
#[async_trait]
pub trait Acknowledge: Send {
    async fn settle(self: Box<Self>, how: Settlement) -> Result<(), ChannelError>;
}
