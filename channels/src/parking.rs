//! The parking area of a channel: events a route could neither deliver nor hand to a
//! dead-letter sink (both down), kept per subscription until an operator redrives or
//! discards them, instead of being acknowledged and lost. Optionally also a copy of each
//! event that did reach the dead-letter sink.
//!
//! One trait, [`ParkingLot`]; [`MemoryParkingLot`] keeps entries in the process (for the
//! volatile channels and any backend without a durable one: lost on restart, bounded), the
//! sled backend keeps them on disk next to the log (`SledChannel::parking`), NATS in a
//! JetStream stream and Kafka in a compacted topic beside the Broker's (`nats::parking`,
//! `kafka::parking`).

use crate::event::{json, WireEvent};
use crate::ChannelError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Why an event is parked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParkedWhy {
    /// Every attempt failed and the dead-letter sink (if any) failed too: the only copy.
    Undeliverable,
    /// It reached the dead-letter sink; this is a copy kept for inspection and redrive.
    DeadLettered,
}

impl std::fmt::Display for ParkedWhy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ParkedWhy::Undeliverable => "Undeliverable",
            ParkedWhy::DeadLettered => "DeadLettered",
        })
    }
}

/// What is parked: the event as it was to be delivered, and how delivery failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Parking {
    pub why: ParkedWhy,
    /// The last failure, in words (status, timeout, refused connection).
    pub reason: String,
    /// The last HTTP status, when the recipient answered at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// In the CloudEvents JSON format, as the wire carried it (data byte for byte).
    #[serde(with = "json_format")]
    pub event: WireEvent,
}

/// A [`WireEvent`] as a member holding its JSON format, without loss.
mod json_format {
    use super::{json, WireEvent};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::value::RawValue;

    pub fn serialize<S: Serializer>(event: &WireEvent, s: S) -> Result<S::Ok, S::Error> {
        let raw =
            RawValue::from_string(json::to_string(event)).map_err(serde::ser::Error::custom)?;
        raw.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<WireEvent, D::Error> {
        let raw = Box::<RawValue>::deserialize(d)?;
        json::from_raw(&raw).map_err(serde::de::Error::custom)
    }
}

/// One parked event, under the id its parking lot gave it (the fields of [`Parking`] beside
/// its own: not `flatten`ed, which cannot carry the event's raw JSON).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParkedEvent {
    /// Unique within the lot, increasing in parking order (across restarts when durable).
    pub id: u64,
    pub subscription: String,
    /// RFC 3339.
    pub parked_at: String,
    pub why: ParkedWhy,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(with = "json_format")]
    pub event: WireEvent,
}

impl ParkedEvent {
    pub fn new(id: u64, subscription: &str, parking: Parking) -> Self {
        let Parking {
            why,
            reason,
            status,
            event,
        } = parking;
        Self {
            id,
            subscription: subscription.to_string(),
            parked_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            why,
            reason,
            status,
            event,
        }
    }

    /// What was parked.
    pub fn parking(&self) -> Parking {
        Parking {
            why: self.why,
            reason: self.reason.clone(),
            status: self.status,
            event: self.event.clone(),
        }
    }
}

/// Where one channel's routes park what they cannot deliver.
#[async_trait]
pub trait ParkingLot: Send + Sync + 'static {
    /// Whether parked events survive a restart.
    fn durable(&self) -> bool;

    /// Keeps `parking` for `subscription`; returns its id. Only once this returns may the
    /// event be acknowledged on the channel.
    async fn park(&self, subscription: &str, parking: Parking) -> Result<u64, ChannelError>;

    /// The subscription's parked events, oldest first.
    async fn list(&self, subscription: &str) -> Result<Vec<ParkedEvent>, ChannelError>;

    async fn get(&self, subscription: &str, id: u64) -> Result<Option<ParkedEvent>, ChannelError>;

    /// Forgets one entry (redriven or discarded); returns whether it was there.
    async fn remove(&self, subscription: &str, id: u64) -> Result<bool, ChannelError>;
}

/// Entries kept per subscription by a volatile lot before the oldest make room.
pub const MEMORY_PARKING_CAPACITY: usize = 10_000;

/// A parking lot in process memory: what a volatile channel (or a backend without a durable
/// lot) keeps. Lost on restart; at [`MEMORY_PARKING_CAPACITY`] entries per subscription the
/// oldest is dropped, logged at ERROR.
#[derive(Default)]
pub struct MemoryParkingLot {
    next: AtomicU64,
    entries: Mutex<BTreeMap<String, BTreeMap<u64, ParkedEvent>>>,
}

impl MemoryParkingLot {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, BTreeMap<u64, ParkedEvent>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl ParkingLot for MemoryParkingLot {
    fn durable(&self) -> bool {
        false
    }

    async fn park(&self, subscription: &str, parking: Parking) -> Result<u64, ChannelError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let mut entries = self.lock();
        let lot = entries.entry(subscription.to_string()).or_default();
        if lot.len() >= MEMORY_PARKING_CAPACITY {
            if let Some((dropped, old)) = lot.pop_first() {
                tracing::error!(
                    subscription, parked = dropped, event.id = old.event.id(),
                    "parking area full ({MEMORY_PARKING_CAPACITY} events): the oldest parked event is dropped"
                );
            }
        }
        lot.insert(id, ParkedEvent::new(id, subscription, parking));
        Ok(id)
    }

    async fn list(&self, subscription: &str) -> Result<Vec<ParkedEvent>, ChannelError> {
        Ok(self
            .lock()
            .get(subscription)
            .map(|l| l.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn get(&self, subscription: &str, id: u64) -> Result<Option<ParkedEvent>, ChannelError> {
        Ok(self
            .lock()
            .get(subscription)
            .and_then(|l| l.get(&id).cloned()))
    }

    async fn remove(&self, subscription: &str, id: u64) -> Result<bool, ChannelError> {
        Ok(self
            .lock()
            .get_mut(subscription)
            .is_some_and(|l| l.remove(&id).is_some()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV10};

    pub(crate) fn parking(id: &str) -> Parking {
        Parking {
            why: ParkedWhy::Undeliverable,
            reason: "recipient answered 503".into(),
            status: Some(503),
            event: EventBuilderV10::new()
                .id(id)
                .source("/s")
                .ty("t")
                .data("application/octet-stream", vec![0u8, 159, 146, 150])
                .build()
                .unwrap()
                .into(),
        }
    }

    #[tokio::test]
    async fn memory_lot_keeps_lists_and_removes_per_subscription() {
        let lot = MemoryParkingLot::default();
        let a = lot.park("trigger.ns.a", parking("1")).await.unwrap();
        let b = lot.park("trigger.ns.a", parking("2")).await.unwrap();
        lot.park("trigger.ns.b", parking("3")).await.unwrap();
        let listed = lot.list("trigger.ns.a").await.unwrap();
        assert_eq!(listed.iter().map(|p| p.id).collect::<Vec<_>>(), vec![a, b]);
        assert_same(&listed[0], &parking("1"));
        assert!(lot.remove("trigger.ns.a", a).await.unwrap());
        assert!(!lot.remove("trigger.ns.a", a).await.unwrap());
        assert!(lot.get("trigger.ns.a", a).await.unwrap().is_none());
        assert_eq!(lot.list("trigger.ns.a").await.unwrap().len(), 1);
        assert_eq!(lot.list("trigger.ns.b").await.unwrap().len(), 1);
    }

    /// The form of binary data (bytes or base64) may change; the bytes may not.
    pub(crate) fn assert_same(back: &ParkedEvent, sent: &Parking) {
        assert_eq!(
            (back.why, &back.reason, back.status, back.event.id()),
            (sent.why, &sent.reason, sent.status, sent.event.id())
        );
        assert_eq!(back.event.body(), sent.event.body());
        assert_eq!(back.event.datacontenttype(), sent.event.datacontenttype());
    }

    #[test]
    fn a_parked_event_round_trips_through_json_with_its_bytes() {
        let p = ParkedEvent::new(7, "trigger.ns.a", parking("1"));
        let back: ParkedEvent = serde_json::from_slice(&serde_json::to_vec(&p).unwrap()).unwrap();
        assert_eq!((back.id, &back.parked_at), (7, &p.parked_at));
        assert_same(&back, &parking("1"));
    }
}
