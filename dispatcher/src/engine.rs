//! The delivery engine: takes one event for one [`Route`] through attempts, backoff, reply
//! handling and, when all attempts fail, the dead-letter sink. One engine (and one pooled
//! HTTP client) serves every route, whatever kind of subscription it came from.

use crate::client::{ClientError, HttpClient};
use crate::dead_letter::dead_letter_event;
use crate::delivery::{Failure, Outcome, Request};
use crate::hop::{self, Destination};
use crate::redact::{self, Redacted};
use crate::reply::{prepare_reply, ttl_of, TTL_EXTENSION};
use crate::route::{ReplyTarget, Route, RouteId, TtlHandling};
use crate::trace;
use herald_channels::{Channel, ParkedWhy, Parking, TraceContext, WireEvent};
use herald_core::metrics::Metrics;
use rustls::pki_types::CertificateDer;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::Instrument;
use url::Url;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Per-attempt timeout when a DeliverySpec sets none.
    pub default_timeout: Duration,
    /// Idle keep-alive connections kept per subscriber host.
    pub pool_max_idle_per_host: usize,
    /// CAs trusted for https subscribers and sinks besides the public roots (a private CA,
    /// `herald serve --ca-file`).
    pub root_certificates: Vec<CertificateDer<'static>>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            default_timeout: Duration::from_secs(30),
            pool_max_idle_per_host: 256,
            root_certificates: Vec::new(),
        }
    }
}

/// How the handling of one event ended.
#[derive(Debug)]
pub enum Disposition {
    Delivered,
    /// It reached the dead-letter sink; with the route's `keep_dead_letters`, a copy to park.
    DeadLettered(Option<Box<Parking>>),
    /// Every attempt and the dead-letter sink (if any) failed: the event and why, for the
    /// consumer to park (see [`herald_channels::parking`]).
    Undeliverable(Box<Parking>),
}

impl Disposition {
    /// `Delivered`, `DeadLettered` or `Undeliverable`, for logs and answers.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Delivered => "Delivered",
            Self::DeadLettered(_) => "DeadLettered",
            Self::Undeliverable(_) => "Undeliverable",
        }
    }
}

/// Where a reply goes, and at which TTL, during one dispatch.
#[derive(Clone, Copy)]
struct ReplyTo<'a> {
    target: &'a ReplyTarget,
    ttl: Option<i64>,
}

#[derive(Clone)]
pub struct DeliveryEngine {
    client: HttpClient,
    config: EngineConfig,
    metrics: Arc<Metrics>,
    credentials: Option<Arc<dyn Credentials>>,
}

/// What a sender presents where it delivers (Herald's own ingress tokens, so its senders
/// get through when its ingress requires authentication).
pub trait Credentials: Send + Sync {
    /// The `Authorization` header `sender` sends to `url`, if any.
    fn authorization(&self, sender: &RouteId, url: &Url) -> Option<String>;
}

#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct EngineError(#[from] ClientError);

impl DeliveryEngine {
    pub fn new(config: EngineConfig) -> Result<Self, EngineError> {
        // A 3xx is a failed delivery (the data-plane table): the client never follows one.
        let client = HttpClient::new(&config.root_certificates, config.pool_max_idle_per_host)?;
        Ok(Self {
            client,
            config,
            metrics: Metrics::new(),
            credentials: None,
        })
    }

    /// Presents `credentials` on every delivery.
    pub fn with_credentials(mut self, credentials: Arc<dyn Credentials>) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Records into `metrics` (a server's) rather than a registry of its own.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Delivers `event` for `route`, handing any reply to the route's reply target. Returns
    /// only when the event is delivered, dead-lettered or found undeliverable (then with the
    /// event as it arrived, to park), so the caller may settle it. The event is shared with
    /// the channel's log (memory) and the other Triggers it matched: nothing here changes
    /// it, the broker TTL is only left out of what is sent.
    pub async fn dispatch(&self, route: &Route, event: Arc<WireEvent>) -> Disposition {
        let (ttl, omit) = match route.ttl {
            TtlHandling::Broker => (Some(ttl_of(&event)), Some(TTL_EXTENSION)),
            TtlHandling::PassThrough => (None, None),
        };
        let reply = ReplyTo {
            target: &route.reply,
            ttl,
        };
        let started = Instant::now();
        let delivered = self
            .with_retries(
                route,
                Destination::Subscriber,
                &route.subscriber,
                &event,
                Some(reply),
                omit,
            )
            .await;
        let status = match &delivered {
            Ok(status) => Some(*status),
            Err(f) => f.status,
        };
        route.dispatch_metrics.record(
            route,
            &self.metrics,
            status.unwrap_or(0),
            started.elapsed(),
            delivered.is_ok(),
        );
        let failure = match delivered {
            Ok(_) => return Disposition::Delivered,
            Err(f) => f,
        };
        // Boxed: the failure path (another round of attempts, to the dead-letter sink) would
        // otherwise size the future of every delivery, which tokio copies as it goes.
        Box::pin(self.after_failure(route, event, failure, omit)).await
    }

    /// What becomes of an event its subscriber did not take: dead-lettered, or parked as
    /// undeliverable. What is parked is the event as it arrived (its TTL too), so a redrive
    /// is the same delivery again; the dead letter goes without `omit`, as the delivery did.
    async fn after_failure(
        &self,
        route: &Route,
        event: Arc<WireEvent>,
        failure: Failure,
        omit: Option<&str>,
    ) -> Disposition {
        tracing::warn!(
            route = %route.id, event.id = event.id(), status = ?failure.status,
            reason = %failure.reason, "delivery failed after all attempts"
        );
        let parked = |event: Arc<WireEvent>, why: ParkedWhy, failure: &Failure| {
            Box::new(Parking {
                why,
                reason: failure.reason.clone(),
                status: failure.status,
                event: Arc::unwrap_or_clone(event),
            })
        };
        let Some(dls) = &route.dead_letter_sink else {
            log_undeliverable(route, &event, &failure, "no deadLetterSink is configured");
            return Disposition::Undeliverable(parked(event, ParkedWhy::Undeliverable, &failure));
        };
        let mut dead = dead_letter_event(&event, &route.subscriber, &failure);
        if let Some(name) = omit {
            dead.remove_extension(name);
        }
        match self
            .with_retries(route, Destination::DeadLetterSink, dls, &dead, None, None)
            .await
        {
            Ok(_) => {
                self.metrics
                    .herald
                    .dead_letters
                    .get_or_create(&route.metric_labels())
                    .inc();
                Disposition::DeadLettered(
                    route
                        .keep_dead_letters
                        .then(|| parked(event, ParkedWhy::DeadLettered, &failure)),
                )
            }
            Err(dls_failure) => {
                let why = format!(
                    "the deadLetterSink {} failed too: {}",
                    Redacted(dls),
                    dls_failure.reason
                );
                log_undeliverable(route, &event, &failure, &why);
                let failure = Failure {
                    reason: format!("{}; {why}", failure.reason),
                    ..failure
                };
                Disposition::Undeliverable(parked(event, ParkedWhy::Undeliverable, &failure))
            }
        }
    }

    /// Attempts delivery to `url` up to `1 + policy.retry` times under the route's policy
    /// and format; the status the recipient accepted with. With `reply`, the request asks
    /// for a reply, and a reply is handed on before the attempt counts as successful. The
    /// extension `omit` is left out of the request.
    async fn with_retries(
        &self,
        route: &Route,
        to: Destination,
        url: &Url,
        event: &WireEvent,
        reply: Option<ReplyTo<'_>>,
        omit: Option<&str>,
    ) -> Result<u16, Failure> {
        let policy = &route.policy;
        let want_reply = reply.is_some_and(|r| !matches!(r.target, ReplyTarget::Discard));
        let authorization = self
            .credentials
            .as_ref()
            .and_then(|c| c.authorization(&route.id, url));
        let request = Request {
            url,
            event,
            format: route.format,
            timeout: policy.timeout,
            want_reply,
            authorization: authorization.as_deref(),
            trace: None,
            omit,
        };
        let mut retry = 0;
        loop {
            let attempt = hop::attempt(&self.client, &request, route, to, retry + 1).await;
            let failure = match attempt.outcome {
                Outcome::Delivered {
                    status,
                    reply: Some(answer),
                } if want_reply => {
                    let answered = Answered {
                        event: *answer,
                        original: event,
                        sent: attempt.sent,
                    };
                    // Boxed, as the retry wait below: neither sizes every delivery's future.
                    match Box::pin(self.hand_on_reply(route, answered, reply.expect("wanted")))
                        .await
                    {
                        Ok(()) => return Ok(status),
                        Err(f) => f,
                    }
                }
                Outcome::Delivered { status, .. } => return Ok(status),
                Outcome::Failed(f) => f,
            };
            if !failure.retryable || retry >= policy.retry {
                return Err(failure);
            }
            retry += 1;
            let labels = route.metric_labels();
            self.metrics.herald.retries.get_or_create(&labels).inc();
            let wait = policy.delay(retry, failure.retry_after);
            tracing::debug!(url = %Redacted(url), retry, ?wait, reason = %failure.reason, "retrying delivery");
            Box::pin(tokio::time::sleep(wait)).await;
        }
    }

    async fn hand_on_reply(
        &self,
        route: &Route,
        answered: Answered<'_>,
        reply: ReplyTo<'_>,
    ) -> Result<(), Failure> {
        let Answered {
            event: mut answer,
            original,
            sent,
        } = answered;
        // A reply belongs to the trace of the event it answers (of the hop that got it, when
        // spans are exported), unless it names its own.
        if answer.trace().traceparent.is_none() {
            answer.set_trace(sent.unwrap_or_else(|| crate::delivery::trace_of(original)));
        }
        let answer = match reply.ttl {
            Some(ttl) => match prepare_reply(answer, ttl) {
                Some(a) => a,
                None => {
                    tracing::warn!(
                        route = %route.id, event.id = original.id(),
                        "reply dropped: knativebrokerttl exhausted (reply loop?)"
                    );
                    return Ok(());
                }
            },
            None => answer,
        };
        match reply.target {
            ReplyTarget::Channel(channel) => publish_reply(route, answer, channel.as_ref()).await,
            // The reply is a delivery of its own: retried under the same policy, and its own
            // answer is not routed further.
            ReplyTarget::Url(url) => {
                Box::pin(self.with_retries(route, Destination::Reply, url, &answer, None, None))
                    .await
                    .map(|_| ())
            }
            ReplyTarget::Discard => Ok(()),
        }
    }
}

/// A reply a subscriber sent, with the event it answers and the trace context of the hop
/// that got it (when spans are exported).
struct Answered<'a> {
    event: WireEvent,
    original: &'a WireEvent,
    sent: Option<TraceContext>,
}

/// Stores a reply in `channel` (the route's Broker's, or a Subscription's reply channel):
/// the reply's ingress, with an `ingress` span of its own as if it had been posted there.
async fn publish_reply(
    route: &Route,
    reply: WireEvent,
    channel: &dyn Channel,
) -> Result<(), Failure> {
    let span = match &route.broker {
        Some(broker) => trace::ingress_span("broker", &broker.namespace, &broker.name),
        None => trace::ingress_span("channel", &route.id.key.namespace, channel.name()),
    };
    span.record("herald.reply", true);
    let mut replies = vec![reply];
    trace::continue_ingress(&span, &mut replies);
    let published = channel.publish(replies).instrument(span.clone()).await;
    match &published {
        Ok(()) => trace::record_status(&span, 202, false),
        Err(_) => trace::record_error(&span),
    }
    published.map_err(|e| Failure {
        status: None,
        body: Default::default(),
        retry_after: e.retry_after(),
        retryable: true,
        reason: format!("cannot store the reply event: {e}"),
    })
}

/// Logged for an operator before it is parked — its id and attributes by default, the whole
/// event (capped) only with `HERALD_LOG_PAYLOADS=1`, since payloads may hold personal data
/// and can be megabytes.
fn log_undeliverable(route: &Route, event: &WireEvent, failure: &Failure, why: &str) {
    if redact::log_payloads() {
        tracing::error!(
            route = %route.id, event.id = event.id(), event.source = event.source(),
            event.type = event.ty(), status = ?failure.status, reason = %failure.reason,
            event = %redact::capped_json(event),
            "UNDELIVERABLE EVENT: {why}"
        );
    } else {
        tracing::error!(
            route = %route.id, event.id = event.id(), event.source = event.source(),
            event.type = event.ty(), status = ?failure.status, reason = %failure.reason,
            "UNDELIVERABLE EVENT: {why} (payload not logged; HERALD_LOG_PAYLOADS=1 logs it)"
        );
    }
}
