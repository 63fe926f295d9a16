//! HTTP ingress, shaped like Knative's multi-tenant broker: `POST /{namespace}/{broker}`
//! accepts CloudEvents in binary, structured and batch mode and answers only once the
//! Broker's channel holds them. With authentication on, a request's bearer token and the
//! EventPolicies of its target are checked before its body is read (see [`crate::auth`]).

use crate::auth::{Allowed, Authorizations, Denied, IngressAuth};
use arc_swap::ArcSwap;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use herald_channels::{Channel, ChannelError};
use herald_core::metrics::Metrics;
use herald_core::{Kind, ResourceKey};
use herald_dispatcher::reply::{DEFAULT_TTL, TTL_EXTENSION};
use herald_dispatcher::trace;
use std::sync::Arc;
use std::time::Duration;

mod parse;
mod refusals;

pub use parse::BATCH_CONTENT_TYPE;
use parse::{is_batch, parse_events, validate};

/// The Brokers this ingress serves, each with its channel; swapped whole by the data plane
/// on every change, so a request reads one consistent map without taking a lock.
pub type Brokers = Arc<ArcSwap<BrokerMap>>;
/// Looked up for every request by a key from its path: foldhash, not SipHash, which cost
/// more than the lookup (a lookup inserts nothing, so a crafted path cannot grow it).
pub type BrokerMap = foldhash::HashMap<ResourceKey, Arc<dyn Channel>>;

#[derive(Clone)]
pub struct IngressState {
    pub brokers: Brokers,
    /// `messaging.knative.dev` Channels (and the channels of Sequences and Parallels),
    /// addressed at `/channels/{namespace}/{name}`.
    pub channels: Brokers,
    pub max_body_bytes: usize,
    /// Events per batch request; longer batches get 413.
    pub max_batch_events: usize,
    /// How long reading one request body may take in all (a client that declares more than it
    /// sends gets 408 rather than holding the connection forever).
    pub body_timeout: Duration,
    /// Where Broker ingress counts what it answered (Knative's `mt_broker_ingress_*`).
    pub metrics: Arc<Metrics>,
    /// Checks bearer tokens and EventPolicies; `None`: anyone may send.
    pub auth: Option<Arc<IngressAuth>>,
    /// The EventPolicies of each Broker and Channel.
    pub authorizations: Authorizations,
}

/// Path prefix of Channel addresses.
pub const CHANNELS_PATH: &str = "/channels";

pub fn router(state: IngressState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/{namespace}/{broker}", post(accept))
        .route("/channels/{namespace}/{name}", post(accept_channel))
        .with_state(state)
}

/// The ingress listener's service: event posts (`POST /{namespace}/{broker}` and
/// `POST /channels/{namespace}/{name}` with plain segments) go straight to their handler;
/// everything else goes through the router of [`router`] merged with `others`. The router's
/// matching, its parameter map, extractors and boxed route cost ~5% of an event's
/// instructions, and an event post needs none of them. A segment with a percent escape
/// (the router decodes it) takes the router's way.
#[derive(Clone)]
pub struct Ingress {
    state: Arc<IngressState>,
    router: Router,
}

impl Ingress {
    pub fn new(state: IngressState, others: Router) -> Self {
        Self {
            router: router(state.clone()).merge(others),
            state: Arc::new(state),
        }
    }
}

/// Where a request's path says an event post goes, if it is one the shortcut takes (the
/// router's routes for them, read the same way).
fn shortcut(method: &axum::http::Method, path: &str) -> Option<(Target, ResourceKey)> {
    if method != axum::http::Method::POST || path.contains('%') {
        return None;
    }
    let mut segments = path.strip_prefix('/')?.split('/');
    let (first, second, third) = (segments.next()?, segments.next()?, segments.next());
    if segments.next().is_some() || first.is_empty() || second.is_empty() {
        return None;
    }
    match third {
        None => Some((Target::Broker, ResourceKey::new(first, second))),
        Some(name) if first == "channels" && !name.is_empty() => {
            Some((Target::Channel, ResourceKey::new(second, name)))
        }
        Some(_) => None,
    }
}

impl tower::Service<Request> for Ingress {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        match shortcut(request.method(), request.uri().path()) {
            Some((target, key)) => {
                let state = self.state.clone();
                Box::pin(async move {
                    Ok(accept_into(&state, target, key, request)
                        .await
                        .into_response())
                })
            }
            None => Box::pin(self.router.call(request)),
        }
    }
}

/// Which kind of address a request was sent to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Broker,
    Channel,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Broker => "broker",
            Target::Channel => "channel",
        }
    }
}

async fn accept_channel(
    State(state): State<IngressState>,
    Path((namespace, name)): Path<(String, String)>,
    request: Request,
) -> Result<StatusCode, Rejection> {
    accept_into(
        &state,
        Target::Channel,
        ResourceKey::new(namespace, name),
        request,
    )
    .await
}

/// An ingress refusal: a status and a message naming the problem.
#[derive(Debug)]
pub struct Rejection {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    retry_after: Option<u64>,
}

impl Rejection {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl From<Denied> for Rejection {
    fn from(d: Denied) -> Self {
        match d {
            Denied::Unauthenticated(m) => Rejection::new(StatusCode::UNAUTHORIZED, m),
            Denied::Forbidden(m) => Rejection::new(StatusCode::FORBIDDEN, m),
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let mut response = (self.status, format!("{}\n", self.message)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

async fn accept(
    State(state): State<IngressState>,
    Path((namespace, name)): Path<(String, String)>,
    request: Request,
) -> Result<StatusCode, Rejection> {
    accept_into(
        &state,
        Target::Broker,
        ResourceKey::new(namespace, name),
        request,
    )
    .await
}

/// What one request brought, for its metrics.
#[derive(Default)]
struct Admitted {
    /// The type of each event read from the request.
    types: Vec<String>,
    /// How long storing them in the channel took, when it was tried.
    publish: Option<Duration>,
}

async fn accept_into(
    state: &IngressState,
    target: Target,
    key: ResourceKey,
    request: Request,
) -> Result<StatusCode, Rejection> {
    // Entered only once the events say which trace it continues (see `admit`).
    let span = trace::ingress_span(target.name(), &key.namespace, &key.name);
    let mut admitted = Admitted::default();
    let metrics = state.metrics.clone();
    let answer = admit(state, target, &key, request, &mut admitted, &span).await;
    let code = match &answer {
        Ok(s) => s.as_u16(),
        Err(r) => r.status.as_u16(),
    };
    trace::record_status(&span, code, false);
    if target == Target::Broker {
        record(&metrics, &key, &answer, admitted);
    }
    answer
}

/// Knative's broker ingress metrics: one count per event (one with an empty type when the
/// request held none that could be read), latency where the channel was tried.
fn record(
    metrics: &Metrics,
    key: &ResourceKey,
    answer: &Result<StatusCode, Rejection>,
    admitted: Admitted,
) {
    let code = match answer {
        Ok(s) => s.as_u16(),
        Err(r) => r.status.as_u16(),
    };
    // Only a missing Broker is answered 404 here.
    let known = code != StatusCode::NOT_FOUND.as_u16();
    let mut types = admitted.types;
    if types.is_empty() {
        types.push(String::new());
    }
    for event_type in types {
        metrics
            .ingress
            .record(key, known, &event_type, code, admitted.publish);
    }
}

async fn admit(
    state: &IngressState,
    target: Target,
    key: &ResourceKey,
    request: Request,
    admitted: &mut Admitted,
    span: &tracing::Span,
) -> Result<StatusCode, Rejection> {
    let (map, what, kind) = match target {
        Target::Broker => (&state.brokers, "broker", Kind::Broker),
        Target::Channel => (&state.channels, "channel", Kind::Channel),
    };
    let Some(channel) = map.load().get(key).cloned() else {
        return Err(Rejection::new(
            StatusCode::NOT_FOUND,
            format!("{what} {key} not found"),
        ));
    };
    let (parts, body) = request.into_parts();
    // Before the body is read: a refused request costs no more than its headers.
    let allowed = match &state.auth {
        Some(auth) => Some(check_access(
            auth,
            &state.authorizations,
            kind,
            key,
            &parts.headers,
        )?),
        None => None,
    };
    let body = read_body(
        body,
        &parts.headers,
        state.max_body_bytes,
        state.body_timeout,
    )
    .await?;
    let mut events = parse_events(&parts.headers, body, state.max_batch_events)?;
    admitted.types = events.iter().map(|e| e.ty().to_string()).collect();
    for (i, event) in events.iter_mut().enumerate() {
        let at = if is_batch(&parts.headers) {
            format!("event {i} of the batch: ")
        } else {
            String::new()
        };
        validate(event).map_err(|m| Rejection::new(StatusCode::BAD_REQUEST, format!("{at}{m}")))?;
        if allowed.as_ref().is_some_and(|a| a.refuses(event)) {
            return Err(Rejection::new(
                StatusCode::FORBIDDEN,
                format!(
                    "{at}event {} of type {:?} does not match the filters of any EventPolicy that allows the sender to send to {kind} {key}",
                    event.id(),
                    event.ty()
                ),
            ));
        }
        // The broker TTL stops reply loops through Brokers; a Channel carries events as sent.
        if target == Target::Broker && event.extension(TTL_EXTENSION).is_none() {
            event.set_extension(TTL_EXTENSION, DEFAULT_TTL);
        }
    }
    if events.is_empty() {
        return Ok(StatusCode::ACCEPTED);
    }
    let count = events.len();
    trace::continue_ingress(span, &mut events);
    let started = std::time::Instant::now();
    let published = tracing::Instrument::instrument(channel.publish(events), span.clone()).await;
    admitted.publish = Some(started.elapsed());
    match published {
        Ok(()) => {
            tracing::debug!(%what, %key, count, "accepted");
            Ok(StatusCode::ACCEPTED)
        }
        Err(e) => Err(channel_rejection(e)),
    }
}

/// Who sent the request (401 without a valid token) and whether they may send to `kind key`
/// (403 if not).
fn check_access(
    auth: &IngressAuth,
    authorizations: &Authorizations,
    kind: Kind,
    key: &ResourceKey,
    headers: &HeaderMap,
) -> Result<Allowed, Rejection> {
    let targets = authorizations.load();
    let target = targets.get(&(kind, key.clone()));
    // A target the plane has not matched yet still has its audience.
    let audience = match target {
        Some(t) => t.audience.clone(),
        None => herald_core::policy::oidc_audience(
            kind.api_version(),
            kind.name(),
            &key.namespace,
            &key.name,
        ),
    };
    let subject = auth.authenticate(headers, &audience)?;
    let what = format!("{kind} {key}");
    let allowed = auth.authorize(&subject, &what, key, target.map(|t| t.as_ref()))?;
    tracing::debug!(%subject, target = %what, "sender allowed");
    Ok(allowed)
}

fn channel_rejection(e: ChannelError) -> Rejection {
    let (status, retry_after) = match &e {
        ChannelError::Full { retry_after, .. } => {
            (StatusCode::TOO_MANY_REQUESTS, Some(*retry_after))
        }
        ChannelError::Unavailable { retry_after, .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, Some(*retry_after))
        }
        ChannelError::Backend { .. }
        | ChannelError::NotRetained { .. }
        | ChannelError::PastHead { .. } => (StatusCode::INTERNAL_SERVER_ERROR, None),
    };
    if retry_after.is_some() {
        refusals::record(status, &e.to_string());
    } else {
        tracing::warn!(error = %e, %status, "event not accepted");
    }
    Rejection {
        status,
        message: e.to_string(),
        // Round up: Retry-After has whole seconds and 0 would invite an immediate retry.
        retry_after: retry_after.map(|d| d.as_secs_f64().ceil().max(1.0) as u64),
    }
}

async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    timeout: Duration,
) -> Result<bytes::Bytes, Rejection> {
    let too_large = || {
        Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds the limit of {limit} bytes (--max-body-bytes)"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit))
        .await
        .map_err(|_| {
            Rejection::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("request body not received within {timeout:?}"),
            )
        })?;
    read.map_err(|e| {
        // to_bytes reports the limit through its error source chain.
        let source = std::error::Error::source(&e);
        // Routes under tower-http's body timeout (the admin API's send) meet its error down
        // the chain.
        let timed_out = std::iter::successors(source, |s| s.source())
            .any(|s| s.is::<tower_http::timeout::TimeoutError>());
        if source.is_some_and(|s| s.is::<http_body_util::LengthLimitError>()) {
            too_large()
        } else if timed_out {
            Rejection::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("request body stalled for longer than {timeout:?}"),
            )
        } else {
            Rejection::new(
                StatusCode::BAD_REQUEST,
                format!("cannot read request body: {e}"),
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn the_shortcut_takes_the_routers_event_posts_and_nothing_else() {
        let took = |method: Method, path: &str| {
            shortcut(&method, path).map(|(t, k)| (t.name(), k.to_string()))
        };
        assert_eq!(took(Method::POST, "/ns/b"), Some(("broker", "ns/b".into())));
        assert_eq!(
            took(Method::POST, "/channels/ns/c"),
            Some(("channel", "ns/c".into()))
        );
        // Two segments are a Broker's, whatever the first is called (as the router reads it).
        assert_eq!(
            took(Method::POST, "/channels/x"),
            Some(("broker", "channels/x".into()))
        );
        for (method, path) in [
            (Method::GET, "/ns/b"),
            (Method::PUT, "/ns/b"),
            (Method::POST, "/ns/b/"),
            (Method::POST, "//b"),
            (Method::POST, "/ns/"),
            (Method::POST, "/healthz"),
            (Method::POST, "/"),
            (Method::POST, "/transforms/ns/t"),
            (Method::POST, "/sources/github/ns/g"),
            (Method::POST, "/channels/ns/"),
            (Method::POST, "/n%73/b"),
        ] {
            assert_eq!(took(method.clone(), path), None, "{method} {path}");
        }
    }
}
