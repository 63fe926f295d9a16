//! Fast refusal while Kafka is unreachable. librdkafka queues a record while no broker
//! answers and fails it only after `message.timeout.ms`, so without this every publish
//! during an outage would hold its HTTP request for the whole publish timeout before the
//! 503. Once a publish fails for want of Kafka, the circuit opens: publishes are refused at
//! once (nothing is queued, so nothing refused is stored later), except one probe per
//! Retry-After interval. Any publish that Kafka acknowledges closes it again. One circuit per
//! Broker's channel, so a topic-level failure does not refuse the other Brokers.

use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) struct Circuit {
    probe_every: Duration,
    /// When the circuit is open: the earliest time the next probe may go through.
    open: Mutex<Option<Instant>>,
}

impl Circuit {
    pub(crate) fn new(probe_every: Duration) -> Self {
        Self {
            probe_every,
            open: Mutex::new(None),
        }
    }

    /// Whether a publish may go to Kafka now: always while closed; while open, only as the
    /// one probe of its interval.
    pub(crate) fn admit(&self) -> bool {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> bool {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        match *open {
            None => true,
            Some(next_probe) if now >= next_probe => {
                *open = Some(now + self.probe_every);
                true
            }
            Some(_) => false,
        }
    }

    /// Kafka stored a record: it is reachable. True if that closed the circuit.
    pub(crate) fn succeeded(&self) -> bool {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .is_some()
    }

    /// A publish failed because Kafka could not be reached. True if that opened the circuit.
    pub(crate) fn failed(&self) -> bool {
        self.failed_at(Instant::now())
    }

    fn failed_at(&self, now: Instant) -> bool {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        // Keep a probe already scheduled; a fresh opening waits one interval.
        let opened = open.is_none();
        open.get_or_insert(now + self.probe_every);
        opened
    }

    #[cfg(test)]
    fn is_open(&self) -> bool {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY: Duration = Duration::from_secs(1);

    #[test]
    fn closed_admits_everything() {
        let c = Circuit::new(EVERY);
        let t = Instant::now();
        assert!((0..10).all(|i| c.admit_at(t + Duration::from_millis(i))));
        assert!(!c.is_open());
    }

    #[test]
    fn open_refuses_until_one_probe_per_interval() {
        let c = Circuit::new(EVERY);
        let t = Instant::now();
        assert!(c.failed_at(t), "the first failure opens it");
        assert!(c.is_open());
        assert!(!c.admit_at(t), "refused right after the failure");
        assert!(!c.admit_at(t + EVERY / 2));
        assert!(c.admit_at(t + EVERY), "the probe goes through");
        assert!(!c.admit_at(t + EVERY), "only one probe per interval");
        // The probe fails too: a second failure does not push the next probe further out.
        assert!(!c.failed_at(t + EVERY + EVERY / 2), "already open");
        assert!(!c.admit_at(t + EVERY + EVERY / 2));
        assert!(c.admit_at(t + EVERY * 2), "the next interval's probe");
    }

    #[test]
    fn a_success_closes_it() {
        let c = Circuit::new(EVERY);
        let t = Instant::now();
        c.failed_at(t);
        assert!(c.admit_at(t + EVERY));
        assert!(c.succeeded(), "the probe's success closes it");
        assert!(!c.is_open());
        assert!(!c.succeeded(), "already closed");
        assert!(c.admit_at(t + EVERY) && c.admit_at(t + EVERY));
    }
}
