//! `POST /transforms/{namespace}/{name}`: an EventTransform as a subscriber. The event is
//! transformed; without a sink the result is the reply (200, structured mode); with one it is
//! sent there once (structured mode), and the sink's reply (transformed by `reply.jsonata` when given, dropped
//! with `reply.discard`) is this endpoint's reply. A sink that fails answers 502 with its
//! status, so the caller's delivery retries and dead-letters as usual.

use crate::plane::{CompiledTransform, Transforms};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use herald_channels::event::json;
use herald_channels::WireEvent;
use herald_core::ResourceKey;
use std::time::Duration;

#[derive(Clone)]
struct EndpointState {
    transforms: Transforms,
    client: reqwest::Client,
}

/// How long the sink of a transform may take to answer.
const SINK_TIMEOUT: Duration = Duration::from_secs(30);

pub fn router(transforms: Transforms) -> Router {
    Router::new()
        .route("/transforms/{namespace}/{name}", post(transform))
        .with_state(EndpointState {
            transforms,
            client: reqwest::Client::new(),
        })
}

fn answer(status: StatusCode, message: impl Into<String>) -> Response {
    (status, format!("{}\n", message.into())).into_response()
}

fn reply(event: &WireEvent) -> Response {
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/cloudevents+json")],
        json::to_vec(event),
    )
        .into_response();
    for (name, value) in event.trace().headers() {
        if let Ok(v) = header::HeaderValue::from_str(value) {
            response.headers_mut().insert(name, v);
        }
    }
    response
}

async fn transform(
    State(state): State<EndpointState>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = ResourceKey::new(namespace, name);
    let Some(t) = state.transforms.load().get(&key).cloned() else {
        return answer(
            StatusCode::NOT_FOUND,
            format!("EventTransform {key} not found (or not ready)"),
        );
    };
    let event = match herald_channels::binding::headers_to_event(&headers, body.to_vec()) {
        Ok(e) => e,
        Err(e) => return answer(StatusCode::BAD_REQUEST, format!("not a CloudEvent: {e}")),
    };
    let out = match t.transform.apply(&event) {
        Ok(out) => out,
        // The same event would fail the same way again: not retryable.
        Err(e) => return answer(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    };
    match &t.sink {
        None => reply(&out),
        Some(_) => to_sink(&state.client, &t, out).await,
    }
}

async fn to_sink(client: &reqwest::Client, t: &CompiledTransform, event: WireEvent) -> Response {
    let sink = t.sink.as_ref().expect("checked by the caller");
    // Structured mode: the JSON format carries any attribute value as it is.
    let request = herald_dispatcher::delivery::structured_request(
        client
            .post(sink.clone())
            .timeout(SINK_TIMEOUT)
            .header("Prefer", "reply"),
        &event,
    );
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => {
            return answer(
                StatusCode::BAD_GATEWAY,
                format!("sink {} failed: {e}", herald_dispatcher::redact::url(sink)),
            )
        }
    };
    let status = response.status();
    if !status.is_success() {
        return answer(
            StatusCode::BAD_GATEWAY,
            format!(
                "sink {} answered {status}",
                herald_dispatcher::redact::url(sink)
            ),
        );
    }
    let headers = response.headers().clone();
    let body = response.bytes().await.unwrap_or_default();
    if t.discard_reply || status != StatusCode::OK || body.is_empty() {
        return StatusCode::ACCEPTED.into_response();
    }
    let Ok(sink_reply) = herald_channels::binding::headers_to_event(&headers, body.to_vec()) else {
        return StatusCode::ACCEPTED.into_response();
    };
    match &t.reply {
        Some(r) => match r.apply(&sink_reply) {
            Ok(e) => reply(&e),
            Err(e) => answer(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        },
        None => reply(&sink_reply),
    }
}
