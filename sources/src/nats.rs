//! NatsSource (Herald's own kind, for the Kubeless/Fission NATS-trigger pattern): messages
//! of a core NATS subject, or of a JetStream stream through a durable pull consumer, as
//! events. A message that is a CloudEvent in the NATS binding (`ce-` headers, or structured
//! `application/cloudevents+json`) is that event; any other message is wrapped as
//! `dev.herald.nats.event` with its subject as the event's subject (see [`crate::decode`]).
//!
//! JetStream messages are acknowledged only after the sink accepted the event (delivered or
//! dead-lettered), one at a time, so a restart resumes at the first unaccepted message.
//! Core NATS has no acknowledgement; a message sent as a request is answered (empty reply)
//! once the sink accepted it, so a publisher can wait for that.

use crate::decode::{wrap, Record};
use crate::error::ConfigError;
use crate::{Source, SourceContext, SourceError};
use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use herald_core::{Check, InitialOffset, NatsSource};
use std::time::Duration;

pub const EVENT_TYPE: &str = "dev.herald.nats.event";

pub struct Nats {
    url: Option<String>,
    subject: String,
    stream: Option<String>,
    consumer: String,
    initial_offset: InitialOffset,
    source: String,
}

pub fn build(n: &NatsSource) -> Result<Nats, ConfigError> {
    Ok(Nats {
        url: n.spec.url.clone(),
        subject: n.spec.subject.clone(),
        stream: n.spec.stream.clone(),
        consumer: n.consumer_name(),
        initial_offset: n.spec.initial_offset.unwrap_or(InitialOffset::Earliest),
        source: format!(
            "/apis/v1alpha1/namespaces/{}/natssources/{}",
            n.metadata.namespace(),
            n.metadata.name
        ),
    })
}

/// How long an event the sink refused waits before it is tried again.
const REFUSED_PAUSE: Duration = Duration::from_secs(1);

impl Nats {
    fn event(
        &self,
        headers: Option<&async_nats::HeaderMap>,
        subject: &str,
        payload: &[u8],
        id: String,
    ) -> herald_channels::WireEvent {
        let pairs: Vec<(String, Vec<u8>)> = headers
            .map(|h| {
                h.iter()
                    .flat_map(|(n, vs)| {
                        let name: &str = n.as_ref();
                        vs.iter()
                            .map(move |v| (name.to_string(), v.as_str().as_bytes().to_vec()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let record = Record {
            headers: pairs
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_slice()))
                .collect(),
            value: Some(payload),
        };
        if record.is_cloudevent("ce-") {
            match record.to_event_ce_dash() {
                Ok(e) => return e,
                Err(e) => {
                    tracing::warn!(%subject, error = %e, "message claims to be a CloudEvent but is not; wrapped")
                }
            }
        }
        wrap(
            id,
            EVENT_TYPE,
            self.source.clone(),
            subject.to_string(),
            record.content_type(),
            (!payload.is_empty()).then_some(payload),
        )
        .into()
    }
}

#[async_trait::async_trait]
impl Source for Nats {
    async fn run(self: Box<Self>, ctx: SourceContext) -> Result<(), SourceError> {
        let Some(url) = self.url.clone().or_else(|| ctx.env.nats_url.clone()) else {
            let why = "spec.url is unset and this Herald has no NATS backend configured";
            ctx.report(Check::failed("ConnectionFailed", why));
            ctx.shutdown.cancelled().await;
            return Ok(());
        };
        let client = tokio::select! {
            c = async_nats::connect(&url) => c,
            _ = ctx.shutdown.cancelled() => return Ok(()),
        };
        let client = match client {
            Ok(c) => c,
            Err(e) => {
                let why = format!("cannot connect to {url}: {e}");
                ctx.report(Check::failed("ConnectionFailed", why.clone()));
                return Err(SourceError::Nats(why));
            }
        };
        match &self.stream {
            None => self.run_core(&ctx, client).await,
            Some(stream) => self.run_jetstream(&ctx, client, stream).await,
        }
    }
}

impl Nats {
    async fn run_core(
        &self,
        ctx: &SourceContext,
        client: async_nats::Client,
    ) -> Result<(), SourceError> {
        let mut sub = client
            .subscribe(self.subject.clone())
            .await
            .map_err(|e| SourceError::Nats(format!("cannot subscribe to {}: {e}", self.subject)))?;
        ctx.report(Check::Ok);
        loop {
            let msg = tokio::select! {
                m = sub.next() => m,
                _ = ctx.shutdown.cancelled() => return Ok(()),
            };
            let Some(msg) = msg else {
                return Err(SourceError::Nats("subscription ended".into()));
            };
            let event = self.event(
                msg.headers.as_ref(),
                msg.subject.as_str(),
                &msg.payload,
                uuid::Uuid::new_v4().to_string(),
            );
            if ctx
                .sink
                .send_until_accepted(event, REFUSED_PAUSE, &ctx.shutdown)
                .await
                .is_none()
            {
                return Ok(());
            }
            if let Some(reply) = msg.reply {
                let _ = client.publish(reply, Default::default()).await;
            }
        }
    }

    async fn run_jetstream(
        &self,
        ctx: &SourceContext,
        client: async_nats::Client,
        stream_name: &str,
    ) -> Result<(), SourceError> {
        let js = jetstream::new(client);
        let nats_err =
            |what: &str, e: &dyn std::fmt::Display| SourceError::Nats(format!("{what}: {e}"));
        let stream = match js.get_stream(stream_name).await {
            Ok(s) => s,
            Err(e) => {
                let why = format!("stream {stream_name}: {e}");
                ctx.report(Check::failed("StreamNotFound", why.clone()));
                return Err(SourceError::Nats(why));
            }
        };
        let deliver_policy = match self.initial_offset {
            InitialOffset::Earliest => consumer::DeliverPolicy::All,
            InitialOffset::Latest => consumer::DeliverPolicy::New,
        };
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(
                &self.consumer,
                consumer::pull::Config {
                    durable_name: Some(self.consumer.clone()),
                    filter_subject: self.subject.clone(),
                    deliver_policy,
                    ack_policy: consumer::AckPolicy::Explicit,
                    // One at a time: a message is acked only after the sink took it, in order.
                    max_ack_pending: 1,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| nats_err("cannot create the consumer", &e))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| nats_err("cannot read the consumer", &e))?;
        ctx.report(Check::Ok);
        loop {
            let next = tokio::select! {
                m = messages.next() => m,
                _ = ctx.shutdown.cancelled() => return Ok(()),
            };
            let msg = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    tracing::warn!(source = %ctx.key, error = %e, "JetStream read failed; retrying");
                    continue;
                }
                None => return Err(SourceError::Nats("consumer ended".into())),
            };
            let id = match msg.info() {
                Ok(info) => format!("{}:{}", info.stream, info.stream_sequence),
                Err(_) => uuid::Uuid::new_v4().to_string(),
            };
            let event = self.event(msg.headers.as_ref(), msg.subject.as_str(), &msg.payload, id);
            // Progress acks keep JetStream from redelivering while the sink retries.
            let accepted = {
                let send = ctx
                    .sink
                    .send_until_accepted(event, REFUSED_PAUSE, &ctx.shutdown);
                tokio::pin!(send);
                let mut beat = tokio::time::interval(Duration::from_secs(10));
                beat.tick().await;
                loop {
                    tokio::select! {
                        r = &mut send => break r,
                        _ = beat.tick() => { let _ = msg.ack_with(jetstream::AckKind::Progress).await; }
                    }
                }
            };
            if accepted.is_none() {
                // Shutting down mid-retry: not acked, so it is redelivered after a restart.
                let _ = msg.ack_with(jetstream::AckKind::Nak(None)).await;
                return Ok(());
            }
            if let Err(e) = msg.double_ack().await {
                tracing::warn!(source = %ctx.key, error = %e, "ack failed; the message will be redelivered");
            }
        }
    }
}
