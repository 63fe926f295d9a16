//! The NATS JetStream channel: one stream per Broker, one durable pull consumer per
//! Trigger. Every Herald replica that opens the same subscription binds to the same durable
//! consumer, so replicas share a Trigger's deliveries; a message is acknowledged only after
//! delivery or dead-lettering, and JetStream redelivers it (after `ack_wait`) if the replica
//! holding it dies.

mod codec;
mod parking;

use crate::backlog::BacklogGate;
use crate::name::nats_durable;
use crate::registry::{Backend, BackendHealth, BackendKind, ChannelOptions};
use crate::WireEvent;
use crate::{
    Acknowledge, Cause, Channel, ChannelError, ChannelName, Delivery, ParkingLot, Position,
    Settlement, Subscription,
};
use async_nats::jetstream::context::{DeleteStreamErrorKind, PublishError, PublishErrorKind};
use async_nats::jetstream::stream::ConsumerErrorKind;
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::{self, consumer, stream, AckKind};
use async_trait::async_trait;
use futures::StreamExt;
use parking::NatsParkingLot;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use codec::{decode, encode};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NatsStorage {
    #[default]
    File,
    Memory,
}

#[derive(Clone, Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct NatsConfig {
    pub url: String,
    /// Prefix of stream names (`HERALD_<namespace>_<broker>`) and subjects.
    pub stream_prefix: String,
    pub replicas: usize,
    pub storage: NatsStorage,
    /// How long acknowledged events stay in the stream (for replay).
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub max_age: Duration,
    /// Stream size limit; when reached, publishing fails (429) rather than discarding events.
    pub max_bytes: Option<i64>,
    /// How long JetStream waits for an acknowledgement before redelivering; deliveries that
    /// take longer are kept alive with progress acks.
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub ack_wait: Duration,
    /// Unacknowledged messages per Trigger across all replicas (bounds in-flight work).
    pub max_ack_pending: i64,
    /// Most events the slowest Trigger may lag (pending plus unacknowledged, as JetStream
    /// counts them for its consumer) before publishes answer 429; 0 turns the check off.
    pub max_lag_events: u64,
    /// Longest wait for JetStream to confirm a publish.
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
    pub publish_timeout: Duration,
    /// Retry-After suggested to publishers while NATS is unreachable.
    #[serde(deserialize_with = "crate::config::duration::deserialize")]
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
            max_lag_events: 1_000_000,
            publish_timeout: Duration::from_secs(5),
            retry_after: Duration::from_secs(1),
        }
    }
}

/// The NATS backend's constructor.
pub async fn connect(config: NatsConfig) -> Result<Arc<dyn Backend>, ChannelError> {
    Ok(Arc::new(NatsBackend::connect(config).await?))
}

#[async_trait]
impl Backend for NatsBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Nats
    }

    async fn open(
        &self,
        channel: &ChannelName,
        _options: &ChannelOptions,
    ) -> Result<Arc<dyn Channel>, ChannelError> {
        Ok(self.channel(channel).await?)
    }

    async fn health(&self) -> BackendHealth {
        if self.connected() {
            BackendHealth::Up
        } else {
            BackendHealth::Down(format!("not connected to NATS at {}", self.config.url))
        }
    }

    /// Sends what is buffered; the client reconnects no more.
    async fn close(&self) {
        if let Err(e) = self.client.drain().await {
            tracing::debug!(error = %e, "draining the NATS connection failed");
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
            .map_err(|e| {
                ChannelError::unavailable(
                    config.url.clone(),
                    "cannot connect to NATS",
                    config.retry_after,
                )
                .caused_by(e)
            })?;
        Ok(Self {
            js: jetstream::new(client.clone()),
            client,
            config,
        })
    }

    /// Whether the client is connected now (it reconnects by itself in the background).
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    pub fn url(&self) -> &str {
        &self.config.url
    }

    /// Opens (creating if needed) the stream of the channel `name` (e.g. `ns/broker`).
    pub async fn channel(
        &self,
        name: impl Into<ChannelName>,
    ) -> Result<Arc<NatsChannel>, ChannelError> {
        let name = name.into();
        let stream_name = name.nats_stream(&self.config.stream_prefix);
        let subject = name.nats_subject(&self.config.stream_prefix);
        let storage = match self.config.storage {
            NatsStorage::File => stream::StorageType::File,
            NatsStorage::Memory => stream::StorageType::Memory,
        };
        let stream_config = stream::Config {
            name: stream_name.clone(),
            subjects: vec![subject.clone()],
            retention: stream::RetentionPolicy::Limits,
            max_age: self.config.max_age,
            max_bytes: self.config.max_bytes.unwrap_or(-1),
            // Never discard unconsumed events to make room: refuse new ones instead.
            discard: stream::DiscardPolicy::New,
            storage,
            num_replicas: self.config.replicas,
            ..Default::default()
        };
        let stream = self
            .js
            .get_or_create_stream(stream_config)
            .await
            .map_err(|e| {
                ChannelError::unavailable(
                    name.as_str(),
                    format!("cannot create stream {stream_name}"),
                    self.config.retry_after,
                )
                .caused_by(e)
            })?;
        let parking = NatsParkingLot::open(
            &self.js,
            &name,
            &self.config.stream_prefix,
            storage,
            self.config.replicas,
            self.config.retry_after,
        )
        .await?;
        let closed = CancellationToken::new();
        let backlog = BacklogGate::new(
            name.as_str(),
            self.config.max_lag_events,
            self.config.retry_after,
        );
        let watched = stream.clone();
        backlog.watch(LAG_REFRESH, closed.clone(), move || {
            slowest_lag(watched.clone())
        });
        Ok(Arc::new(NatsChannel {
            client: self.client.clone(),
            name,
            subject,
            js: self.js.clone(),
            stream,
            parking: Arc::new(parking),
            config: self.config.clone(),
            closed,
            backlog,
            subscriptions: Mutex::new(HashMap::new()),
        }))
    }
}

pub struct NatsChannel {
    client: async_nats::Client,
    name: ChannelName,
    subject: String,
    js: jetstream::Context,
    stream: stream::Stream,
    /// Undeliverable events, in a stream of their own (see [`parking`]).
    parking: Arc<NatsParkingLot>,
    config: NatsConfig,
    closed: CancellationToken,
    backlog: Arc<BacklogGate>,
    /// Per subscription, cancelled when it is deleted so its readers end.
    subscriptions: Mutex<HashMap<String, CancellationToken>>,
}

/// How often the slowest consumer's lag is read for admission (one JetStream API request).
const LAG_REFRESH: Duration = Duration::from_millis(250);

/// The largest lag among the stream's consumers (one per Trigger), as JetStream counts it:
/// messages not yet delivered plus those delivered and not acknowledged.
async fn slowest_lag(stream: stream::Stream) -> Result<u64, ChannelError> {
    let mut consumers = stream.consumers();
    let mut slowest = 0;
    while let Some(info) = consumers.next().await {
        let info = info.map_err(|e| {
            ChannelError::unavailable(
                stream.cached_info().config.name.as_str(),
                "cannot list consumers",
                Duration::from_secs(1),
            )
            .caused_by(Cause::nats(e))
        })?;
        slowest = slowest.max(info.num_pending + info.num_ack_pending as u64);
    }
    Ok(slowest)
}

/// Whether JetStream refused a publish because the stream is at a limit (`max_bytes`,
/// `max_msgs`; DiscardPolicy::New): error 10077, "stream store failed", carries those.
fn stream_full(e: &PublishError) -> bool {
    e.kind() == PublishErrorKind::Other
        && std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<jetstream::Error>())
            .is_some_and(|api| api.error_code() == ErrorCode::STREAM_STORE_FAILED)
}

impl NatsChannel {
    fn unavailable(&self, detail: impl Into<String>) -> ChannelError {
        ChannelError::unavailable(self.name.as_str(), detail, self.config.retry_after)
    }

    /// The stream holding this channel's events.
    pub fn stream_name(&self) -> &str {
        self.stream.cached_info().config.name.as_str()
    }

    /// The cancellation of one subscription's readers: fresh after a delete.
    fn subscription_token(&self, subscription: &str) -> CancellationToken {
        let mut subscriptions = self.subscriptions.lock().unwrap_or_else(|p| p.into_inner());
        let token = subscriptions
            .entry(subscription.to_string())
            .or_insert_with(|| self.closed.child_token());
        if token.is_cancelled() && !self.closed.is_cancelled() {
            *token = self.closed.child_token();
        }
        token.clone()
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
}

#[async_trait]
impl Channel for NatsChannel {
    fn name(&self) -> &str {
        self.name.as_str()
    }

    async fn publish(&self, events: Vec<WireEvent>) -> Result<(), ChannelError> {
        // While disconnected the client would queue the publish and send it on reconnect: the
        // caller would get a 503 for an event that is stored later. Refuse at once instead.
        if self.client.connection_state() != async_nats::connection::State::Connected {
            return Err(self.unavailable("not connected to NATS"));
        }
        self.backlog.admit()?;
        let mut acks = Vec::with_capacity(events.len());
        for event in &events {
            let (headers, payload) = encode(event);
            let ack = self
                .js
                .publish_with_headers(self.subject.clone(), headers, payload)
                .await
                .map_err(|e| self.unavailable("publish failed").caused_by(e))?;
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
            Ok(Err(e)) if stream_full(&e) => Err(ChannelError::full(
                self.name.as_str(),
                "the stream is at its limit",
                self.config.retry_after,
            )
            .caused_by(e)),
            Ok(Err(e)) => Err(self.unavailable("publish not confirmed").caused_by(e)),
            Err(_) => Err(self.unavailable(format!(
                "publish not confirmed within {:?}",
                self.config.publish_timeout
            ))),
        }
    }

    fn parking(&self) -> Option<Arc<dyn ParkingLot>> {
        Some(self.parking.clone())
    }

    /// The durable consumer's lag as JetStream counts it, the same figure admission by
    /// backlog uses: not yet delivered plus delivered and not acknowledged. One API request,
    /// bounded by the publish timeout; `None` when it fails (no such consumer, no server).
    async fn lag(&self, subscription: &str) -> Option<u64> {
        let durable = nats_durable(subscription);
        let info = tokio::time::timeout(
            self.config.publish_timeout,
            self.stream.consumer_info(&durable),
        )
        .await;
        match info {
            Ok(Ok(info)) => Some(info.num_pending + info.num_ack_pending as u64),
            Ok(Err(e)) => {
                tracing::debug!(channel = %self.name, %durable, error = %e, "cannot read the lag");
                None
            }
            Err(_) => None,
        }
    }

    async fn subscribe(&self, subscription: &str) -> Result<Box<dyn Subscription>, ChannelError> {
        let durable = nats_durable(subscription);
        let closed = self.subscription_token(subscription);
        // A new Trigger starts at the head, as on the other channels; an existing durable
        // consumer resumes at its acknowledged position.
        let consumer: consumer::PullConsumer = self
            .stream
            .get_or_create_consumer(
                &durable,
                self.consumer_config(&durable, consumer::DeliverPolicy::New),
            )
            .await
            .map_err(|e| {
                self.unavailable(format!("cannot create consumer {durable}"))
                    .caused_by(e)
            })?;
        // Bound now, so every event published after this call returns is delivered to it.
        let messages = consumer.messages().await.map_err(|e| {
            self.unavailable(format!("consumer {durable}"))
                .caused_by(Cause::nats(e))
        })?;
        Ok(Box::new(NatsReader {
            channel: self.name.to_string(),
            stream: self.stream.clone(),
            durable,
            messages: Some(messages),
            in_progress: InProgress::start(self.config.ack_wait),
            retry_after: self.config.retry_after,
            closed,
        }))
    }

    /// JetStream consumers cannot rewind: the durable consumer is replaced by one that starts
    /// at the position; readers re-bind to it by name on their next read.
    async fn seek(&self, subscription: &str, position: Position) -> Result<u64, ChannelError> {
        let durable = nats_durable(subscription);
        let mut stream = self.stream.clone();
        let state = stream
            .info()
            .await
            .map_err(|e| {
                self.unavailable("cannot read stream state")
                    .caused_by(Cause::nats(e))
            })?
            .state
            .clone();
        let policy = match &position {
            // A consumer started past the last sequence would skip the events published next.
            Position::Offset(o) if *o > state.last_sequence + 1 => {
                return Err(ChannelError::PastHead {
                    channel: self.name.to_string(),
                    position: position.to_string(),
                    detail: format!(
                        "the next event will be sequence {}",
                        state.last_sequence + 1
                    ),
                })
            }
            Position::Offset(o) if *o >= state.first_sequence.max(1) => {
                consumer::DeliverPolicy::ByStartSequence { start_sequence: *o }
            }
            Position::Time(t)
                if state.messages > 0
                    && t.timestamp() >= state.first_timestamp.unix_timestamp() =>
            {
                let nanos = t.timestamp_nanos_opt().unwrap_or(i64::MAX) as i128;
                consumer::DeliverPolicy::ByStartTime {
                    start_time: time::OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(
                        |e| ChannelError::backend(self.name.as_str(), format!("bad time {t}: {e}")),
                    )?,
                }
            }
            _ => {
                return Err(ChannelError::NotRetained {
                    channel: self.name.to_string(),
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
            .map_err(|e| {
                self.unavailable(format!("cannot recreate consumer {durable}"))
                    .caused_by(e)
            })?;
        let pending = consumer
            .info()
            .await
            .map_err(|e| {
                self.unavailable(format!("cannot read consumer {durable}"))
                    .caused_by(Cause::nats(e))
            })?
            .num_pending;
        Ok((state.last_sequence + 1).saturating_sub(pending))
    }

    async fn delete_subscription(&self, subscription: &str) -> Result<(), ChannelError> {
        let durable = nats_durable(subscription);
        if let Some(token) = self
            .subscriptions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(subscription)
        {
            token.cancel();
        }
        match self.stream.delete_consumer(&durable).await {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(e.kind(), ConsumerErrorKind::JetStream(api)
                if api.error_code() == ErrorCode::CONSUMER_NOT_FOUND) =>
            {
                Ok(())
            }
            Err(e) => Err(self
                .unavailable(format!("cannot delete consumer {durable}"))
                .caused_by(e)),
        }
    }

    /// Deletes the Broker's stream and its parking stream.
    async fn delete(&self) -> Result<(), ChannelError> {
        self.closed.cancel();
        let parked = parking::lot_stream(&self.name, &self.config.stream_prefix);
        for stream in [self.stream_name(), parked.as_str()] {
            match self.js.delete_stream(stream).await {
                Ok(_) => {}
                Err(e)
                    if matches!(e.kind(), DeleteStreamErrorKind::JetStream(api)
                    if api.error_code() == ErrorCode::STREAM_NOT_FOUND) => {}
                Err(e) => {
                    return Err(self
                        .unavailable(format!("cannot delete stream {stream}"))
                        .caused_by(e))
                }
            }
        }
        Ok(())
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
    in_progress: Arc<InProgress>,
    retry_after: Duration,
    closed: CancellationToken,
}

impl NatsReader {
    fn unavailable(&self, detail: String, cause: impl Into<async_nats::Error>) -> ChannelError {
        ChannelError::unavailable(self.channel.as_str(), detail, self.retry_after)
            .caused_by(Cause::nats(cause))
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
                    .map_err(|e| self.unavailable(format!("consumer {}", self.durable), e))?;
                let messages = consumer
                    .messages()
                    .await
                    .map_err(|e| self.unavailable(format!("consumer {}", self.durable), e))?;
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
                    return Err(self.unavailable(format!("reading consumer {}", self.durable), e));
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
                    let ack = NatsAck::start(acker, &self.in_progress);
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

/// The deliveries of one reader that are not settled yet. One task tells JetStream every
/// `ack_wait / 2` that they are still in progress, so a long delivery (retries with backoff)
/// is not redelivered to another replica meanwhile; a timer task per delivery cost more
/// than the delivery itself.
struct InProgress {
    pending: std::sync::Mutex<HashMap<u64, Arc<jetstream::message::Acker>>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl InProgress {
    /// A registry whose heartbeat task ends once the reader and all its deliveries are gone.
    fn start(ack_wait: Duration) -> Arc<Self> {
        let this = Arc::new(Self {
            pending: Default::default(),
            next_id: Default::default(),
        });
        let weak = Arc::downgrade(&this);
        let period = (ack_wait / 2).max(Duration::from_millis(100));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(this) = weak.upgrade() else { return };
                let ackers: Vec<_> = this.lock().values().cloned().collect();
                drop(this);
                for acker in ackers {
                    let _ = acker.ack_with(AckKind::Progress).await;
                }
            }
        });
        this
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<jetstream::message::Acker>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Acknowledges one message; in progress (see [`InProgress`]) until then.
struct NatsAck {
    acker: Arc<jetstream::message::Acker>,
    id: u64,
    in_progress: Arc<InProgress>,
}

impl NatsAck {
    fn start(acker: jetstream::message::Acker, in_progress: &Arc<InProgress>) -> Self {
        let acker = Arc::new(acker);
        let id = in_progress
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        in_progress.lock().insert(id, acker.clone());
        Self {
            acker,
            id,
            in_progress: in_progress.clone(),
        }
    }
}

impl Drop for NatsAck {
    fn drop(&mut self) {
        // An unacknowledged, dropped delivery is redelivered by JetStream after ack_wait.
        self.in_progress.lock().remove(&self.id);
    }
}

#[async_trait]
impl Acknowledge for NatsAck {
    /// Released is a nak: JetStream redelivers it at once rather than after `ack_wait`.
    async fn settle(self: Box<Self>, how: Settlement) -> Result<(), ChannelError> {
        self.in_progress.lock().remove(&self.id);
        let kind = match how {
            Settlement::Released => AckKind::Nak(None),
            Settlement::Delivered | Settlement::DeadLettered | Settlement::Dropped => AckKind::Ack,
        };
        self.acker.ack_with(kind).await.map_err(|e| {
            ChannelError::unavailable("nats", format!("{kind:?} failed"), Duration::from_secs(1))
                .caused_by(Cause::Nats(e))
        })
    }
}
