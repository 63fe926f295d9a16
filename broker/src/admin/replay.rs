//! The admin API of a running Herald: `POST /admin/v1/replay` re-delivers retained events to
//! one Trigger (and only that Trigger), like EventBridge's archive replay. `herald replay`
//! is its client.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use herald_channels::{Channel, ChannelError, Position};
use herald_core::{ResourceKey, DEFAULT_NAMESPACE};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

pub const REPLAY_PATH: &str = "/admin/v1/replay";

/// Where a Trigger reads from, for replay.
#[derive(Clone)]
pub struct TriggerHandle {
    pub broker: ResourceKey,
    pub channel: Arc<dyn Channel>,
    pub subscription: String,
}

pub type Triggers = Arc<HashMap<ResourceKey, TriggerHandle>>;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// `namespace/name`, or `name` in the default namespace.
    pub broker: String,
    /// `name` (in the Broker's namespace) or `namespace/name`.
    pub trigger: String,
    /// A log offset, or an RFC 3339 time.
    pub from: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayResponse {
    pub trigger: String,
    /// The offset the Trigger now resumes from.
    pub offset: u64,
}

pub fn router(triggers: Triggers) -> Router {
    Router::new()
        .route(REPLAY_PATH, post(replay))
        .with_state(triggers)
}

/// Parses `namespace/name` or `name` (in `namespace`).
pub fn parse_key(text: &str, namespace: &str) -> ResourceKey {
    match text.split_once('/') {
        Some((ns, name)) => ResourceKey::new(ns, name),
        None => ResourceKey::new(namespace, text),
    }
}

pub fn parse_position(text: &str) -> Result<Position, String> {
    if let Ok(offset) = text.parse::<u64>() {
        return Ok(Position::Offset(offset));
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| Position::Time(t.with_timezone(&chrono::Utc)))
        .map_err(|e| format!("`from` must be a log offset or an RFC 3339 time, got {text:?}: {e}"))
}

async fn replay(
    State(triggers): State<Triggers>,
    Json(request): Json<ReplayRequest>,
) -> Result<Json<ReplayResponse>, (StatusCode, String)> {
    let broker = parse_key(&request.broker, DEFAULT_NAMESPACE);
    let trigger = parse_key(&request.trigger, &broker.namespace);
    let position = parse_position(&request.from).map_err(|m| (StatusCode::BAD_REQUEST, m))?;
    let Some(handle) = triggers.get(&trigger) else {
        return Err((
            StatusCode::NOT_FOUND,
            format!("trigger {trigger} is not served here"),
        ));
    };
    if handle.broker != broker {
        return Err((
            StatusCode::NOT_FOUND,
            format!(
                "trigger {trigger} belongs to broker {}, not {broker}",
                handle.broker
            ),
        ));
    }
    match handle.channel.seek(&handle.subscription, position).await {
        Ok(offset) => {
            tracing::info!(%trigger, offset, "replay started");
            Ok(Json(ReplayResponse {
                trigger: trigger.to_string(),
                offset,
            }))
        }
        Err(e @ ChannelError::NotRetained { .. }) => Err((StatusCode::CONFLICT, e.to_string())),
        Err(e) => Err((StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    }
}

/// The `herald replay` client: asks the server at `server` to replay.
pub async fn request_replay(
    server: &str,
    request: &ReplayRequest,
) -> Result<ReplayResponse, String> {
    let url = format!("{}{REPLAY_PATH}", server.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .json(request)
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(format!("{url} answered {status}: {}", body.trim()));
    }
    response
        .json()
        .await
        .map_err(|e| format!("unexpected answer from {url}: {e}"))
}
