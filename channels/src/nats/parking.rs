//! The parking lot of a NATS channel, in JetStream itself: a stream of its own per Broker
//! (`<PREFIX>_PARKED_<namespace>_<broker>`, same storage and replicas as the Broker's), one
//! subject per subscription (`<prefix>-parked.<namespace>.<broker>.<subscription, hex>`,
//! never overlapping a Broker's subjects), one message per parked event
//! holding the [`ParkedEvent`] as JSON. The message's stream sequence is the entry's id:
//! unique and increasing across restarts and across the replicas sharing the Broker, without
//! any coordination. Listing walks the subscription's subject; removing deletes the message.
//!
//! A stream rather than a KV bucket: a bucket would need ids of its own, and its history
//! and tombstones add nothing here. It is separate from the Broker's stream so that the
//! Broker's retention (`max_age`, `max_bytes`) never drops a parked event, and parked events
//! neither count against the Broker's limits nor reach its consumers.

use crate::parking::{ParkedEvent, Parking, ParkingLot};
use crate::{Cause, ChannelError, ChannelName};
use async_nats::jetstream::stream::{self, LastRawMessageErrorKind};
use async_nats::jetstream::{self};
use async_trait::async_trait;
use std::time::Duration;

pub struct NatsParkingLot {
    js: jetstream::Context,
    stream: stream::Stream,
    /// `<prefix>-parked.<namespace>.<broker>`, followed by `.<subscription, hex>`.
    subject_prefix: String,
    durable: bool,
    channel: String,
    retry_after: Duration,
}

fn hex(text: &str) -> String {
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

impl NatsParkingLot {
    /// Opens (creating) the lot of `channel`.
    pub(super) async fn open(
        js: &jetstream::Context,
        channel: &ChannelName,
        prefix: &str,
        storage: stream::StorageType,
        replicas: usize,
        retry_after: Duration,
    ) -> Result<Self, ChannelError> {
        let name = lot_stream(channel, prefix);
        let subject_prefix = channel.nats_subject(&format!("{prefix}-parked"));
        let channel = channel.as_str();
        let stream = js
            .get_or_create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![format!("{subject_prefix}.>")],
                retention: stream::RetentionPolicy::Limits,
                // Kept until redriven, discarded or expired by Herald, never by JetStream.
                discard: stream::DiscardPolicy::New,
                storage,
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                ChannelError::unavailable(
                    channel,
                    format!("cannot create the parking stream {name}"),
                    retry_after,
                )
                .caused_by(e)
            })?;
        Ok(Self {
            js: js.clone(),
            stream,
            subject_prefix,
            durable: storage == stream::StorageType::File,
            channel: channel.to_string(),
            retry_after,
        })
    }

    fn subject(&self, subscription: &str) -> String {
        format!("{}.{}", self.subject_prefix, hex(subscription))
    }

    fn unavailable(&self, what: &str, cause: impl Into<async_nats::Error>) -> ChannelError {
        ChannelError::unavailable(
            self.channel.as_str(),
            format!("parking area: {what}"),
            self.retry_after,
        )
        .caused_by(Cause::nats(cause))
    }

    /// The entry stored as message `sequence` of `subject`, if it is one.
    fn entry(
        &self,
        sequence: u64,
        payload: &[u8],
        subscription: &str,
    ) -> Result<ParkedEvent, ChannelError> {
        let mut entry: ParkedEvent = serde_json::from_slice(payload).map_err(|e| {
            ChannelError::backend(
                self.channel.as_str(),
                format!("parking area: entry {sequence} cannot be read"),
            )
            .caused_by(e)
        })?;
        // Stored before JetStream gave it a sequence: the sequence is its id.
        entry.id = sequence;
        entry.subscription = subscription.to_string();
        Ok(entry)
    }

    /// The next message of `subject` at or after `from`, if any.
    async fn next_from(
        &self,
        subject: &str,
        from: u64,
    ) -> Result<Option<jetstream::message::StreamMessage>, ChannelError> {
        match self
            .stream
            .get_first_raw_message_by_subject(subject, from)
            .await
        {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(self.unavailable("cannot read", e)),
        }
    }
}

/// The name of the lot's stream beside the Broker's (uppercase `PARKED`: Kubernetes
/// namespaces are lowercase, so no Broker's stream has this name).
pub(super) fn lot_stream(channel: &ChannelName, prefix: &str) -> String {
    channel.nats_stream(&format!("{prefix}_PARKED"))
}

#[async_trait]
impl ParkingLot for NatsParkingLot {
    fn durable(&self) -> bool {
        self.durable
    }

    async fn park(&self, subscription: &str, parking: Parking) -> Result<u64, ChannelError> {
        let entry = ParkedEvent::new(0, subscription, parking);
        let payload = serde_json::to_vec(&entry).map_err(|e| {
            ChannelError::backend(self.channel.as_str(), "parking area: cannot encode").caused_by(e)
        })?;
        let ack = self
            .js
            .publish(self.subject(subscription), payload.into())
            .await
            .map_err(|e| self.unavailable("cannot park", e))?;
        // Only once JetStream has stored it may the event be acknowledged on the channel.
        let stored = ack
            .await
            .map_err(|e| self.unavailable("park not confirmed", e))?;
        Ok(stored.sequence)
    }

    async fn list(&self, subscription: &str) -> Result<Vec<ParkedEvent>, ChannelError> {
        let subject = self.subject(subscription);
        let mut entries = Vec::new();
        let mut from = 1;
        while let Some(m) = self.next_from(&subject, from).await? {
            from = m.sequence + 1;
            match self.entry(m.sequence, &m.payload, subscription) {
                Ok(e) => entries.push(e),
                Err(e) => {
                    tracing::error!(channel = %self.channel, sequence = m.sequence, error = %e, "parking area: an entry cannot be read");
                }
            }
        }
        Ok(entries)
    }

    async fn get(&self, subscription: &str, id: u64) -> Result<Option<ParkedEvent>, ChannelError> {
        let subject = self.subject(subscription);
        // The first message of the subject at or after `id` is `id` itself only if it is the
        // subscription's: another subscription's entry is not found under this one.
        match self.next_from(&subject, id.max(1)).await? {
            Some(m) if m.sequence == id => self.entry(id, &m.payload, subscription).map(Some),
            _ => Ok(None),
        }
    }

    async fn remove(&self, subscription: &str, id: u64) -> Result<bool, ChannelError> {
        if self.get(subscription, id).await?.is_none() {
            return Ok(false);
        }
        match self.stream.delete_message(id).await {
            Ok(deleted) => Ok(deleted),
            Err(e) => {
                // Removed meanwhile (another replica's redrive): not there any more.
                if self.get(subscription, id).await?.is_none() {
                    return Ok(false);
                }
                Err(self.unavailable("cannot remove", e))
            }
        }
    }
}
