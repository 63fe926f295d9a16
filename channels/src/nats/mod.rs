//! The NATS JetStream channel: one stream per Broker, one durable pull consumer per
//! Trigger. Every Herald replica that opens the same subscription binds to the same durable
//! consumer, so replicas share a Trigger's deliveries; a message is acknowledged only after
//! delivery or dead-lettering, and JetStream redelivers it (after `ack_wait`) if the replica
//! holding it dies.

mod codec;

use crate::{Acknowledge, Channel, ChannelError, Delivery, Position, Subscription};
use async_nats::jetstream::{self, consumer, stream, AckKind};
use async_trait::async_trait;
use cloudevents::Event;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use codec::{decode, encode};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NatsStorage {
    #[default]
    File,
    Memory,
}

#[derive(Clone, Debug)]
pub struct NatsConfig {
    pub url: String,
    /// Prefix of stream names (`HERALD_<namespace>_<broker>`) and subjects.
    pub stream_prefix: String,
    pub replicas: usize,
    pub storage: NatsStorage,
    /// How long acknowledged events stay in the stream (for replay).
    pub max_age: Duration,
    /// Stream size limit; when reached, publishing fails (429) rather than discarding events.
    pub max_bytes: Option<i64>,
    /// How long JetStream waits for an acknowledgement before redelivering; deliveries that
    /// take longer are kept alive with progress acks.
    pub ack_wait: Duration,
    /// Unacknowledged messages per Trigger across all replicas (bounds in-flight work).
    pub max_ack_pending: i64,
    /// Longest wait for JetStream to confirm a publish.
    pub publish_timeout: Duration,
    /// Retry-After suggested to publishers while NATS is unreachable.
    pub retry_after: Duration,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            stream_prefix: "HERALD".into(),
            replicas: 1,
            storage: NatsStorage::File,
            max_age: Duration::from_secs(24 * 3600),
            max_bytes: None,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 1000,
            publish_timeout: Duration::from_secs(5),
            retry_after: Duration::from_secs(1),
        }
    }
}

/// A connection to NATS, from which each Broker's channel is opened.
#[derive(Clone)]
pub struct NatsBackend {
    client: async_nats::Client,
    js: jetstream::Context,
    config: NatsConfig,
}

impl NatsBackend {
    /// Connects; later connection losses are retried by the client in the background.
    pub async fn connect(config: NatsConfig) -> Result<Self, ChannelError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(config.url.as_str())
            .await
            .map_err(|e| ChannelError::Unavailable {
                channel: config.url.clone(),
                detail: format!("cannot connect to NATS: {e}"),
                retry_after: config.retry_after,
            })?;
        Ok(Self {
            js: jetstream::new(client.clone()),
            client,
            config,
        })
    }

    /// Opens (creating if needed) the stream of the channel `name` (e.g. `ns/broker`).
    pub async fn channel(&self, name: &str) -> Result<Arc<NatsChannel>, ChannelError> {
        let stream_name = format!("{}_{}", self.config.stream_prefix, sanitize(name, '_'));
        let subject = format!(
            "{}.{}",
            self.config.stream_prefix.to_lowercase(),
            sanitize(name, '.')
        );
        let stream_config = stream::Config {
            name: stream_name.clone(),
            subjects: vec![subject.clone()],
            retention: stream::RetentionPolicy::Limits,
            max_age: self.config.max_age,
            max_bytes: self.config.max_bytes.unwrap_or(-1),
            // Never discard unconsumed events to make room: refuse new ones instead.
            discard: stream::DiscardPolicy::New,
            storage: match self.config.storage {
                NatsStorage::File => stream::StorageType::File,
                NatsStorage::Memory => stream::StorageType::Memory,
            },
            num_replicas: self.config.replicas,
            ..Default::default()
        };
        let stream = self
            .js
            .get_or_create_stream(stream_config)
            .await
            .map_err(|e| ChannelError::Unavailable {
                channel: name.to_string(),
                detail: format!("cannot create stream {stream_name}: {e}"),
                retry_after: self.config.retry_after,
            })?;
        Ok(Arc::new(NatsChannel {
            client: self.client.clone(),
            name: name.to_string(),
            subject,
            js: self.js.clone(),
            stream,
            config: self.config.clone(),
            closed: CancellationToken::new(),
        }))
    }
}

/// Stream, subject and consumer names allow only a safe subset of characters.
fn sanitize(name: &str, separator: char) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                separator
            }
        })
        .collect()
}

pub struct NatsChannel {
    client: async_nats::Client,
    name: String,
    subject: String,
    js: jetstream::Context,
    stream: stream::Stream,
    config: NatsConfig,
    closed: CancellationToken,
}

impl NatsChannel {
    fn unavailable(&self, detail: String) -> ChannelError {
        ChannelError::Unavailable {
            channel: self.name.clone(),
            detail,
            retry_after: self.config.retry_after,
        }
    }

    fn consumer_config(
        &self,
        durable: &str,
        deliver_policy: consumer::DeliverPolicy,
    ) -> consumer::pull::Config {
        consumer::pull::Config {
            durable_name: Some(durable.to_string()),
            ack_policy: consumer::AckPolicy::Explicit,
            deliver_policy,
            ack_wait: self.config.ack_wait,
            max_ack_pending: self.config.max_ack_pending,
            max_deliver: -1,
            ..Default::default()
        }
    }

    /// Deletes a stream and everything in it (tests and tooling).
    pub async fn delete(&self) -> Result<(), ChannelError> {
        self.js
            .delete_stream(self.stream.cached_info().config.name.as_str())
            .await
            .map(|_| ())
            .map_err(|e| self.unavailable(format!("cannot delete stream: {e}")))
    }
}

#[async_trait]
impl Channel for NatsChannel {
    fn name(&self) -> &str {
        &self.name
    }

    async fn publish(&self, events: Vec<Event>) -> Result<(), ChannelError> {
        // While disconnected the client would queue the publish and send it on reconnect: the
        // caller would get a 503 for an event that is stored later. Refuse at once instead.
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err(self.unavailable("not connected to NATS".into()));
        }
        let mut acks = Vec::with_capacity(events.len());
        for event in &events {
            let (headers, payload) = encode(event);
            let ack = self
                .js
                .publish_with_headers(self.subject.clone(), headers, payload)
                .await
                .map_err(|e| self.unavailable(format!("publish failed: {e}")))?;
            acks.push(ack);
        }
        // Wait for JetStream to confirm every event is stored before the caller answers 202.
        let confirmed = tokio::time::timeout(
            self.config.publish_timeout,
            futures::future::try_join_all(
                acks.into_iter().map(std::future::IntoFuture::into_future),
            ),
        )
        .await;
        match confirmed {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.to_string().contains("maximum bytes") => Err(ChannelError::Full {
                channel: self.name.clone(),
                detail: e.to_string(),
                retry_after: self.config.retry_after,
            }),
            Ok(Err(e)) => Err(self.unavailable(format!("publish not confirmed: {e}"))),
            Err(_) => Err(self.unavailable(format!(
                "publish not confirmed within {:?}",
                self.config.publish_timeout
            ))),
        }
    }

    async fn subscribe(&self, subscription: &str) -> Result<Box<dyn Subscription>, ChannelError> {
        let durable = sanitize(subscription, '_');
        // A new Trigger starts at the head, as on the other channels.
        self.stream
            .get_or_create_consumer::<consumer::pull::Config>(
                &durable,
                self.consumer_config(&durable, consumer::DeliverPolicy::New),
            )
            .await
            .map_err(|e| self.unavailable(format!("cannot create consumer {durable}: {e}")))?;
        Ok(Box::new(NatsReader {
            channel: self.name.clone(),
            stream: self.stream.clone(),
            durable,
            messages: None,
            ack_wait: self.config.ack_wait,
            retry_after: self.config.retry_after,
            closed: self.closed.clone(),
        }))
    }

    /// JetStream consumers cannot rewind: the durable consumer is replaced by one that starts
    /// at the position; readers re-bind to it by name on their next read.
    async fn seek(&self, subscription: &str, position: Position) -> Result<u64, ChannelError> {
        let durable = sanitize(subscription, '_');
        let mut stream = self.stream.clone();
        let state = stream
            .info()
            .await
            .map_err(|e| self.unavailable(format!("cannot read stream state: {e}")))?
            .state
            .clone();
        let policy = match &position {
            Position::Offset(o) if *o >= state.first_sequence.max(1) => {
                consumer::DeliverPolicy::ByStartSequence { start_sequence: *o }
            }
            Position::Time(t)
                if state.messages > 0
                    && t.timestamp() >= state.first_timestamp.unix_timestamp() =>
            {
                let nanos = t.timestamp_nanos_opt().unwrap_or(i64::MAX) as i128;
                consumer::DeliverPolicy::ByStartTime {
                    start_time: time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
                        .map_err(|e| self.unavailable(format!("bad time {t}: {e}")))?,
                }
            }
            _ => {
                return Err(ChannelError::NotRetained {
                    channel: self.name.clone(),
                    position: position.to_string(),
                    detail: format!(
                        "the stream holds sequences {}..={} (from {})",
                        state.first_sequence, state.last_sequence, state.first_timestamp
                    ),
                })
            }
        };
        let _ = self.stream.delete_consumer(&durable).await;
        let mut consumer: consumer::PullConsumer = self
            .stream
            .create_consumer(self.consumer_config(&durable, policy))
            .await
            .map_err(|e| self.unavailable(format!("cannot recreate consumer {durable}: {e}")))?;
        let pending = consumer
            .info()
            .await
            .map_err(|e| self.unavailable(format!("cannot read consumer {durable}: {e}")))?
            .num_pending;
        Ok((state.last_sequence + 1).saturating_sub(pending))
    }

    async fn close(&self) {
        self.closed.cancel();
    }
}

struct NatsReader {
    channel: String,
    stream: stream::Stream,
    durable: String,
    messages: Option<consumer::pull::Stream>,
    ack_wait: Duration,
    retry_after: Duration,
    closed: CancellationToken,
}

impl NatsReader {
    fn unavailable(&self, detail: String) -> ChannelError {
        ChannelError::Unavailable {
            channel: self.channel.clone(),
            detail,
            retry_after: self.retry_after,
        }
    }
}

#[async_trait]
impl Subscription for NatsReader {
    async fn next(&mut self) -> Result<Option<Delivery>, ChannelError> {
        loop {
            if self.closed.is_cancelled() {
                return Ok(None);
            }
            if self.messages.is_none() {
                let consumer: consumer::PullConsumer = self
                    .stream
                    .get_consumer(&self.durable)
                    .await
                    .map_err(|e| self.unavailable(format!("consumer {}: {e}", self.durable)))?;
                let messages = consumer
                    .messages()
                    .await
                    .map_err(|e| self.unavailable(format!("consumer {}: {e}", self.durable)))?;
                self.messages = Some(messages);
            }
            let messages = self.messages.as_mut().expect("set above");
            let next = tokio::select! {
                m = messages.next() => m,
                _ = self.closed.cancelled() => return Ok(None),
            };
            let message = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    // Re-bind on the next call: the consumer may have been replaced (seek) or
                    // the connection dropped.
                    self.messages = None;
                    return Err(self.unavailable(format!("reading consumer {}: {e}", self.durable)));
                }
                None => {
                    self.messages = None;
                    continue;
                }
            };
            let offset = message.info().ok().map(|i| i.stream_sequence);
            let (message, acker) = message.split();
            match decode(message.headers.as_ref(), &message.payload) {
                Ok(event) => {
                    let ack = NatsAck::start(acker, self.ack_wait);
                    return Ok(Some(Delivery::new(event, offset, Box::new(ack))));
                }
                Err(e) => {
                    // Not a CloudEvent (someone else published on our subject): terminate it
                    // rather than redeliver it forever.
                    tracing::error!(channel = %self.channel, ?offset, error = %e, "dropping a message that is not a CloudEvent");
                    let _ = acker.ack_with(AckKind::Term).await;
                }
            }
        }
    }
}

/// Acknowledges one message; until then, tells JetStream the work is in progress so a long
/// delivery (retries with backoff) is not redelivered to another replica meanwhile.
struct NatsAck {
    acker: Arc<jetstream::message::Acker>,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl NatsAck {
    fn start(acker: jetstream::message::Acker, ack_wait: Duration) -> Self {
        let acker = Arc::new(acker);
        let beat = acker.clone();
        let period = (ack_wait / 2).max(Duration::from_millis(100));
        let heartbeat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let _ = beat.ack_with(AckKind::Progress).await;
            }
        });
        Self { acker, heartbeat }
    }
}

impl Drop for NatsAck {
    fn drop(&mut self) {
        // An unacknowledged, dropped delivery is redelivered by JetStream after ack_wait.
        self.heartbeat.abort();
    }
}

#[async_trait]
impl Acknowledge for NatsAck {
    async fn ack(self: Box<Self>) -> Result<(), ChannelError> {
        self.heartbeat.abort();
        self.acker
            .ack()
            .await
            .map_err(|e| ChannelError::Unavailable {
                channel: "nats".into(),
                detail: format!("ack failed: {e}"),
                retry_after: Duration::from_secs(1),
            })
    }
}
