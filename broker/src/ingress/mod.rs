//! HTTP ingress, shaped like Knative's multi-tenant broker: `POST /{namespace}/{broker}`
//! accepts CloudEvents in binary, structured and batch mode and answers only once the
//! Broker's channel holds them.

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use cloudevents::{AttributesReader, Event};
use herald_channels::{Channel, ChannelError};
use herald_core::{is_valid_attribute_name, ResourceKey};
use herald_dispatcher::reply::{DEFAULT_TTL, TTL_EXTENSION};
use std::collections::HashMap;
use std::sync::Arc;

pub const BATCH_CONTENT_TYPE: &str = "application/cloudevents-batch+json";

/// The Brokers this ingress serves, each with its channel; swapped whole by the data plane
/// on every change, so a request reads one consistent map without taking a lock.
pub type Brokers = Arc<ArcSwap<HashMap<ResourceKey, Arc<dyn Channel>>>>;

#[derive(Clone)]
pub struct IngressState {
    pub brokers: Brokers,
    /// `messaging.knative.dev` Channels (and the channels of Sequences and Parallels),
    /// addressed at `/channels/{namespace}/{name}`.
    pub channels: Brokers,
    pub max_body_bytes: usize,
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

/// Which kind of address a request was sent to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Broker,
    Channel,
}

async fn accept_channel(
    State(state): State<IngressState>,
    Path((namespace, name)): Path<(String, String)>,
    request: Request,
) -> Result<StatusCode, Rejection> {
    accept_into(
        state,
        Target::Channel,
        ResourceKey::new(namespace, name),
        request,
    )
    .await
}

/// An ingress refusal: a status and a message naming the problem.
#[derive(Debug)]
pub struct Rejection {
    status: StatusCode,
    message: String,
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

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let mut response = (self.status, format!("{}\n", self.message)).into_response();
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
        state,
        Target::Broker,
        ResourceKey::new(namespace, name),
        request,
    )
    .await
}

async fn accept_into(
    state: IngressState,
    target: Target,
    key: ResourceKey,
    request: Request,
) -> Result<StatusCode, Rejection> {
    let (map, what) = match target {
        Target::Broker => (&state.brokers, "broker"),
        Target::Channel => (&state.channels, "channel"),
    };
    let Some(channel) = map.load().get(&key).cloned() else {
        return Err(Rejection::new(
            StatusCode::NOT_FOUND,
            format!("{what} {key} not found"),
        ));
    };
    let (parts, body) = request.into_parts();
    let body = read_body(body, &parts.headers, state.max_body_bytes).await?;
    let mut events = parse_events(&parts.headers, body)?;
    for (i, event) in events.iter_mut().enumerate() {
        let at = if is_batch(&parts.headers) {
            format!("event {i} of the batch: ")
        } else {
            String::new()
        };
        validate(event).map_err(|m| Rejection::new(StatusCode::BAD_REQUEST, format!("{at}{m}")))?;
        // The broker TTL stops reply loops through Brokers; a Channel carries events as sent.
        if target == Target::Broker && event.extension(TTL_EXTENSION).is_none() {
            event.set_extension(TTL_EXTENSION, DEFAULT_TTL);
        }
    }
    if events.is_empty() {
        return Ok(StatusCode::ACCEPTED);
    }
    let count = events.len();
    match channel.publish(events).await {
        Ok(()) => {
            tracing::debug!(%what, %key, count, "accepted");
            Ok(StatusCode::ACCEPTED)
        }
        Err(e) => Err(channel_rejection(e)),
    }
}

fn channel_rejection(e: ChannelError) -> Rejection {
    let (status, retry_after) = match &e {
        ChannelError::Full { retry_after, .. } => {
            (StatusCode::TOO_MANY_REQUESTS, Some(*retry_after))
        }
        ChannelError::Unavailable { retry_after, .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, Some(*retry_after))
        }
        ChannelError::Backend { .. } | ChannelError::NotRetained { .. } => {
            (StatusCode::INTERNAL_SERVER_ERROR, None)
        }
    };
    tracing::warn!(error = %e, %status, "event not accepted");
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
) -> Result<bytes::Bytes, Rejection> {
    let too_large = || {
        Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body exceeds the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // to_bytes reports the limit through its error source chain.
        if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
        {
            too_large()
        } else {
            Rejection::new(
                StatusCode::BAD_REQUEST,
                format!("cannot read request body: {e}"),
            )
        }
    })
}

fn is_batch(headers: &HeaderMap) -> bool {
    content_type(headers).starts_with(BATCH_CONTENT_TYPE)
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn parse_events(headers: &HeaderMap, body: bytes::Bytes) -> Result<Vec<Event>, Rejection> {
    let bad = |m: String| Rejection::new(StatusCode::BAD_REQUEST, m);
    if is_batch(headers) {
        let values: Vec<serde_json::Value> = serde_json::from_slice(&body).map_err(|e| {
            bad(format!(
                "invalid batch: expected a JSON array of CloudEvents: {e}"
            ))
        })?;
        return values
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                check_json_time(&v)
                    .map_err(|m| bad(format!("invalid event {i} of the batch: {m}")))?;
                serde_json::from_value::<Event>(v)
                    .map_err(|e| bad(format!("invalid event {i} of the batch: {e}")))
            })
            .collect();
    }
    let structured = content_type(headers).starts_with("application/cloudevents+json");
    if !structured && !headers.contains_key("ce-specversion") {
        return Err(bad(
            "not a CloudEvent: binary mode needs a ce-specversion header, structured mode the \
             content type application/cloudevents+json"
                .into(),
        ));
    }
    if structured {
        // The SDK's JSON parser reports a bad time without naming the attribute.
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
            check_json_time(&v).map_err(|m| bad(format!("invalid CloudEvent: {m}")))?;
        }
    }
    cloudevents::binding::http::to_event(headers, body.to_vec())
        .map(|e| vec![e])
        .map_err(|e| bad(format!("invalid CloudEvent: {e}")))
}

/// A structured event's `time`, if present, must be an RFC 3339 timestamp.
fn check_json_time(event: &serde_json::Value) -> Result<(), String> {
    match event.get("time") {
        None | Some(serde_json::Value::Null) => Ok(()),
        Some(serde_json::Value::String(t)) if chrono::DateTime::parse_from_rfc3339(t).is_ok() => {
            Ok(())
        }
        Some(other) => Err(format!(
            "attribute time must be an RFC 3339 timestamp, got {other}"
        )),
    }
}

/// Checks the SDK leaves to us: non-empty required attributes and valid extension names.
fn validate(event: &Event) -> Result<(), String> {
    for (name, value) in [("id", event.id()), ("type", event.ty())] {
        if value.is_empty() {
            return Err(format!("attribute {name} must not be empty"));
        }
    }
    if event.source().is_empty() {
        return Err("attribute source must not be empty".into());
    }
    for (name, _) in event.iter_extensions() {
        if !is_valid_attribute_name(name) {
            return Err(format!(
                "extension attribute name {name:?} is invalid: only lower-case a-z and 0-9 are allowed"
            ));
        }
    }
    if let Some(ttl) = event.extension(TTL_EXTENSION) {
        let ok = ttl.to_string().parse::<i64>().is_ok_and(|n| n > 0);
        if !ok {
            return Err(format!(
                "extension {TTL_EXTENSION} must be a positive integer, got {ttl}"
            ));
        }
    }
    Ok(())
}
