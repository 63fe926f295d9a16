//! The producer shared by a backend's channels, and what a failed publish means for the
//! publisher.

use super::blocking::{drop_off_runtime, OffRuntime};
use super::KafkaConfig;
use crate::ChannelError;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// The shared producer, replaced if librdkafka declares it unusable (a fatal idempotence
/// error after a long outage), so publishing recovers without a restart.
pub(crate) struct ProducerSlot {
    config: Arc<KafkaConfig>,
    producer: RwLock<OffRuntime<FutureProducer>>,
}

impl ProducerSlot {
    pub(crate) fn new(config: &Arc<KafkaConfig>) -> Result<Self, KafkaError> {
        Ok(Self {
            config: config.clone(),
            producer: RwLock::new(OffRuntime::new(config.producer_config().create()?)),
        })
    }

    pub(crate) fn current(&self) -> FutureProducer {
        FutureProducer::clone(&self.producer.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// A handle on the current producer for one publish.
    pub(crate) fn get(&self) -> ProducerHandle<'_> {
        ProducerHandle {
            slot: self,
            producer: Some(self.current()),
        }
    }

    /// Done with a handle: if its producer failed fatally it is replaced. A handle on a
    /// replaced producer may be the last one, and dropping a producer flushes and joins its
    /// thread, so it is dropped off the runtime.
    fn release(&self, used: FutureProducer) {
        if let Some((code, reason)) = used.client().fatal_error() {
            tracing::error!(%code, %reason, "the Kafka producer failed fatally; replacing it");
            match self.config.producer_config().create() {
                Ok(fresh) => {
                    let old = std::mem::replace(
                        &mut *self.producer.write().unwrap_or_else(|p| p.into_inner()),
                        OffRuntime::new(fresh),
                    );
                    drop(old);
                }
                Err(e) => tracing::error!(error = %e, "cannot recreate the Kafka producer"),
            }
        }
        if used.client().native_ptr() != self.current().client().native_ptr() {
            drop_off_runtime(used);
        }
    }
}

pub(crate) struct ProducerHandle<'a> {
    slot: &'a ProducerSlot,
    producer: Option<FutureProducer>,
}

impl std::ops::Deref for ProducerHandle<'_> {
    type Target = FutureProducer;

    fn deref(&self) -> &FutureProducer {
        self.producer.as_ref().expect("present until dropped")
    }
}

impl Drop for ProducerHandle<'_> {
    fn drop(&mut self) {
        if let Some(producer) = self.producer.take() {
            self.slot.release(producer);
        }
    }
}

/// Maps a failed publish: a full local queue asks the publisher to back off; what a retry
/// cannot fix is a backend error; anything else (unreachable brokers, timeouts, leader
/// changes) is transient.
pub(crate) fn publish_error(
    channel: &str,
    topic: &str,
    e: KafkaError,
    retry_after: Duration,
) -> ChannelError {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::QueueFull) => {
            ChannelError::full(channel, "the producer queue is full", retry_after).caused_by(e)
        }
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::TopicAuthorizationFailed,
        ) => ChannelError::backend(channel, format!("Kafka refused the record for {topic}"))
            .caused_by(e),
        _ => ChannelError::unavailable(channel, format!("publish to {topic} failed"), retry_after)
            .caused_by(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(code: RDKafkaErrorCode) -> ChannelError {
        publish_error(
            "ns/b",
            "herald.ns.b",
            KafkaError::MessageProduction(code),
            Duration::from_secs(2),
        )
    }

    #[test]
    fn a_full_queue_is_full_and_an_outage_is_unavailable() {
        let full = mapped(RDKafkaErrorCode::QueueFull);
        assert!(matches!(full, ChannelError::Full { .. }), "{full}");
        assert_eq!(full.retry_after(), Some(Duration::from_secs(2)));
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::NotLeaderForPartition,
            RDKafkaErrorCode::RequestTimedOut,
        ] {
            let e = mapped(code);
            assert!(
                matches!(e, ChannelError::Unavailable { .. }),
                "{code:?}: {e}"
            );
        }
        let too_large = mapped(RDKafkaErrorCode::MessageSizeTooLarge);
        assert!(
            matches!(too_large, ChannelError::Backend { .. }),
            "{too_large}"
        );
        assert_eq!(too_large.retry_after(), None);
    }
}
