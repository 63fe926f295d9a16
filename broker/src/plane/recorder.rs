//! The EventType recorder's hot-path side: every log's channel (a Broker's or a Channel's)
//! hands it the events it accepted, and it forwards the (type, source, dataschema) of those
//! not seen before on that log to a bounded queue that [`super::DataPlane::run_event_types`]
//! drains in the background. A publish costs one hash and one set lookup per event; nothing
//! here waits or fails: a full queue drops the recording (counted in
//! `herald_eventtypes_dropped_total{reason="queue_full"}`), never the event, and the type is
//! recorded by a later event of it.

use super::LogId;
use herald_channels::WireEvent;
use herald_core::eventtype::ObservedType;
use herald_core::metrics::{Counter, LabelledFamily, Metrics, ReasonLabels, RouteLabels};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Recordings waiting for the background task; beyond it they are dropped.
pub const QUEUE_CAPACITY: usize = 4096;
/// Seen (log, type, source, dataschema) hashes kept per shard before the shard starts over
/// (a cache: what was forgotten costs one more queued recording, which the plane ignores).
const SEEN_PER_SHARD: usize = 8192;
const SHARDS: usize = 16;

/// One event's type as a log accepted it.
#[derive(Clone, Debug)]
pub struct Observed {
    pub log: LogId,
    pub seen: ObservedType,
    hash: u64,
}

/// Cheap to clone; disabled (`--eventtype-auto-create=false`) it does nothing.
#[derive(Clone, Default)]
pub struct EventTypeRecorder(Option<Arc<Shared>>);

struct Shared {
    /// Of hashes already: hashed again by foldhash, as SipHash twice per event cost more
    /// than the rest of recording.
    seen: Vec<Mutex<foldhash::HashSet<u64>>>,
    /// Seeded per process, so types and sources cannot be chosen to collide.
    hasher: foldhash::quality::RandomState,
    queue: mpsc::Sender<Observed>,
    dropped: LabelledFamily<ReasonLabels, Counter>,
    recorded: LabelledFamily<RouteLabels, Counter>,
}

impl EventTypeRecorder {
    /// A recorder and the queue it fills; registers its drop counter with `metrics`.
    pub fn new(metrics: &Metrics) -> (Self, mpsc::Receiver<Observed>) {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let dropped = LabelledFamily::<ReasonLabels, Counter>::default();
        metrics.register(
            "eventtypes_dropped",
            "EventType recordings dropped (queue_full: the recorder was behind; limit: too many EventTypes on one Broker or Channel)",
            dropped.clone(),
        );
        let recorded = LabelledFamily::<RouteLabels, Counter>::default();
        metrics.register(
            "eventtypes_recorded",
            "EventTypes recorded from the events a Broker or Channel accepted",
            recorded.clone(),
        );
        let shared = Shared {
            seen: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: Default::default(),
            queue,
            dropped,
            recorded,
        };
        (Self(Some(Arc::new(shared))), receiver)
    }

    pub fn disabled() -> Self {
        Self(None)
    }

    /// The events of `log` whose type is not recorded yet, one per distinct type: usually
    /// none, and then nothing is allocated.
    pub fn unseen(&self, log: &LogId, events: &[WireEvent]) -> Vec<Observed> {
        let Some(shared) = &self.0 else {
            return Vec::new();
        };
        let mut new: Vec<Observed> = Vec::new();
        for event in events {
            let hash = shared.hasher.hash_one((
                log,
                event.ty(),
                event.source().as_str(),
                event.dataschema(),
            ));
            if shared.shard(hash).contains(&hash) || new.iter().any(|o| o.hash == hash) {
                continue;
            }
            new.push(Observed {
                log: log.clone(),
                seen: ObservedType {
                    event_type: event.ty().to_string(),
                    source: event.source().to_string(),
                    dataschema: event.dataschema().map(str::to_string),
                    specversion: event
                        .attribute("specversion")
                        .map(|v| v.into_owned())
                        .unwrap_or_default(),
                },
                hash,
            });
        }
        new
    }

    /// Queues what [`unseen`](Self::unseen) found, once the channel holds the events.
    pub fn record(&self, new: Vec<Observed>) {
        let Some(shared) = &self.0 else { return };
        for observed in new {
            let hash = observed.hash;
            {
                let mut seen = shared.shard(hash);
                if seen.len() >= SEEN_PER_SHARD {
                    seen.clear();
                }
                if !seen.insert(hash) {
                    continue;
                }
            }
            if shared.queue.try_send(observed).is_err() {
                // Left unseen, so a later event of the type is recorded.
                shared.shard(hash).remove(&hash);
                shared.count_drop("queue_full");
            }
        }
    }

    /// Forgets what was seen (after EventTypes were removed), so it is recorded again.
    pub fn forget_all(&self) {
        if let Some(shared) = &self.0 {
            for shard in &shared.seen {
                shard.lock().unwrap_or_else(|p| p.into_inner()).clear();
            }
        }
    }

    /// Counts an EventType the plane recorded for `log`.
    pub fn count_recorded(&self, log: &LogId) {
        if let Some(shared) = &self.0 {
            let labels = RouteLabels {
                kind: log.0.to_string(),
                namespace_name: log.1.namespace.clone(),
                name: log.1.name.clone(),
            };
            shared.recorded.get_or_create(&labels).inc();
        }
    }

    /// Counts a recording the plane refused (`limit`).
    pub fn count_drop(&self, reason: &str) {
        if let Some(shared) = &self.0 {
            shared.count_drop(reason);
        }
    }
}

impl Shared {
    fn shard(&self, hash: u64) -> std::sync::MutexGuard<'_, foldhash::HashSet<u64>> {
        // A panic elsewhere while holding it leaves a set that is still a valid cache.
        self.seen[(hash as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn count_drop(&self, reason: &str) {
        self.dropped
            .get_or_create(&ReasonLabels {
                reason: reason.into(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::EventBuilder;
    use herald_core::{Kind, ResourceKey};

    fn event(ty: &str, source: &str) -> WireEvent {
        let sdk = cloudevents::EventBuilderV10::new()
            .id("1")
            .ty(ty)
            .source(source)
            .build()
            .unwrap();
        WireEvent::from(sdk)
    }

    fn log(name: &str) -> LogId {
        (Kind::Broker, ResourceKey::new("default", name))
    }

    #[test]
    fn each_distinct_type_is_queued_once() {
        let metrics = Metrics::new();
        let (recorder, mut queue) = EventTypeRecorder::new(&metrics);
        let events: Vec<_> = (0..9)
            .map(|i| event(&format!("t{}", i % 3), "/s"))
            .collect();
        let new = recorder.unseen(&log("b"), &events);
        assert_eq!(new.len(), 3, "one per type within a batch");
        recorder.record(new);
        assert!(recorder.unseen(&log("b"), &events).is_empty());
        assert_eq!(recorder.unseen(&log("other"), &events).len(), 3, "per log");
        let mut got = Vec::new();
        while let Ok(o) = queue.try_recv() {
            got.push(o.seen.event_type);
        }
        assert_eq!(got, ["t0", "t1", "t2"]);
        recorder.forget_all();
        assert_eq!(recorder.unseen(&log("b"), &events).len(), 3);
    }

    #[test]
    fn a_full_queue_drops_the_recording_and_counts_it() {
        let metrics = Metrics::new();
        let (recorder, mut queue) = EventTypeRecorder::new(&metrics);
        let many: Vec<_> = (0..QUEUE_CAPACITY + 5)
            .map(|i| event(&format!("t{i}"), "/s"))
            .collect();
        recorder.record(recorder.unseen(&log("b"), &many));
        let text = metrics.encode();
        assert!(
            text.contains("herald_eventtypes_dropped_total{reason=\"queue_full\"} 5"),
            "{text}"
        );
        // Dropped ones stay unseen: a later event of theirs is queued once there is room.
        while queue.try_recv().is_ok() {}
        assert_eq!(recorder.unseen(&log("b"), &many).len(), 5);
    }

    #[test]
    fn disabled_records_nothing() {
        let recorder = EventTypeRecorder::disabled();
        assert!(recorder.unseen(&log("b"), &[event("t", "/s")]).is_empty());
    }
}
