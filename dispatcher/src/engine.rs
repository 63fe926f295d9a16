//! The delivery engine: takes one event for one Trigger through attempts, backoff, reply
//! publishing and, when all attempts fail, the dead-letter sink. One engine (and one pooled
//! HTTP client) serves every Trigger.

use crate::dead_letter::dead_letter_event;
use crate::delivery::{send, Failure, Outcome};
use crate::reply::{prepare_reply, take_ttl};
use crate::retry::RetryPolicy;
use crate::route::TriggerRoute;
use cloudevents::{AttributesReader, Event};
use herald_channels::Channel;
use std::time::Duration;
use url::Url;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Per-attempt timeout when a DeliverySpec sets none.
    pub default_timeout: Duration,
    /// Idle keep-alive connections kept per subscriber host.
    pub pool_max_idle_per_host: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            default_timeout: Duration::from_secs(30),
            pool_max_idle_per_host: 256,
        }
    }
}

/// How the handling of one event ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disposition {
    Delivered,
    DeadLettered,
    /// Every attempt and the dead-letter sink (if any) failed; the event was logged in full.
    Undeliverable,
}

#[derive(Clone)]
pub struct DeliveryEngine {
    client: reqwest::Client,
    config: EngineConfig,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct EngineError(#[from] reqwest::Error);

impl DeliveryEngine {
    pub fn new(config: EngineConfig) -> Result<Self, EngineError> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .tcp_nodelay(true)
            .build()?;
        Ok(Self { client, config })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Delivers `event` for `route`, publishing any reply into `broker`. Returns only when the
    /// event is delivered, dead-lettered or logged as undeliverable, so the caller may ack.
    pub async fn dispatch(
        &self,
        route: &TriggerRoute,
        mut event: Event,
        broker: &dyn Channel,
    ) -> Disposition {
        let ttl = take_ttl(&mut event);
        let failure = match self
            .with_retries(
                &route.policy,
                &route.subscriber,
                &event,
                Some((ttl, broker)),
            )
            .await
        {
            Ok(()) => return Disposition::Delivered,
            Err(f) => f,
        };
        tracing::warn!(
            trigger = %route.trigger, event.id = event.id(), status = ?failure.status,
            reason = %failure.reason, "delivery failed after all attempts"
        );
        let Some(dls) = &route.dead_letter_sink else {
            log_undeliverable(route, &event, &failure, "no deadLetterSink is configured");
            return Disposition::Undeliverable;
        };
        let dead = dead_letter_event(&event, &route.subscriber, &failure);
        match self.with_retries(&route.policy, dls, &dead, None).await {
            Ok(()) => Disposition::DeadLettered,
            Err(dls_failure) => {
                let why = format!(
                    "the deadLetterSink {dls} failed too: {}",
                    dls_failure.reason
                );
                log_undeliverable(route, &event, &failure, &why);
                Disposition::Undeliverable
            }
        }
    }

    /// Attempts delivery up to `1 + policy.retry` times. With `reply_to`, a reply is published
    /// into that broker before the attempt counts as successful.
    async fn with_retries(
        &self,
        policy: &RetryPolicy,
        url: &Url,
        event: &Event,
        reply_to: Option<(i64, &dyn Channel)>,
    ) -> Result<(), Failure> {
        let mut retry = 0;
        loop {
            let failure =
                match send(&self.client, url, event, policy.timeout, reply_to.is_some()).await {
                    Outcome::Delivered { reply } => match (reply, reply_to) {
                        (Some(reply), Some((ttl, broker))) => {
                            match publish_reply(*reply, ttl, event, broker).await {
                                Ok(()) => return Ok(()),
                                Err(f) => f,
                            }
                        }
                        _ => return Ok(()),
                    },
                    Outcome::Failed(f) => f,
                };
            if !failure.retryable || retry >= policy.retry {
                return Err(failure);
            }
            retry += 1;
            let wait = policy.delay(retry, failure.retry_after);
            tracing::debug!(%url, retry, ?wait, reason = %failure.reason, "retrying delivery");
            tokio::time::sleep(wait).await;
        }
    }
}

async fn publish_reply(
    reply: Event,
    ttl: i64,
    original: &Event,
    broker: &dyn Channel,
) -> Result<(), Failure> {
    let Some(reply) = prepare_reply(reply, ttl) else {
        tracing::warn!(
            event.id = original.id(),
            broker = broker.name(),
            "reply dropped: knativebrokerttl exhausted (reply loop?)"
        );
        return Ok(());
    };
    broker.publish(vec![reply]).await.map_err(|e| Failure {
        status: None,
        body: Default::default(),
        retry_after: e.retry_after(),
        retryable: true,
        reason: format!("cannot store the reply event: {e}"),
    })
}

/// The last resort: the event is written to the log in full so an operator can recover it.
fn log_undeliverable(route: &TriggerRoute, event: &Event, failure: &Failure, why: &str) {
    let json = serde_json::to_string(event).unwrap_or_else(|e| format!("<unserializable: {e}>"));
    tracing::error!(
        trigger = %route.trigger, event.id = event.id(), status = ?failure.status,
        reason = %failure.reason, event = %json,
        "UNDELIVERABLE EVENT: {why}; the full event is in this log line"
    );
}
