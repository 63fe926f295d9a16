//! `POST /admin/v1/replay` re-delivers retained events to one Trigger (and only that
//! Trigger), like EventBridge's archive replay. `herald replay` is its client. A position past
//! the head (a later offset, a future time) is refused with 400: it would skip events.

use crate::plane::DataPlane;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use herald_channels::{ChannelError, Position};
use herald_core::{ResourceKey, DEFAULT_NAMESPACE};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub const REPLAY_PATH: &str = "/admin/v1/replay";

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
    /// Events the Trigger has to (re)deliver to catch up, right after the seek; `None` where
    /// the backend cannot tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
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

pub(super) async fn replay(
    State(plane): State<Arc<DataPlane>>,
    Json(request): Json<ReplayRequest>,
) -> Result<Json<ReplayResponse>, (StatusCode, String)> {
    let broker = parse_key(&request.broker, DEFAULT_NAMESPACE);
    let trigger = parse_key(&request.trigger, &broker.namespace);
    let position = parse_position(&request.from).map_err(|m| (StatusCode::BAD_REQUEST, m))?;
    // No channel holds an event appended after now: seeking there would skip the backlog and
    // whatever arrives until then.
    if let Position::Time(t) = &position {
        let now = chrono::Utc::now();
        if *t > now {
            return Err((
                StatusCode::BAD_REQUEST,
                format!(
                    "cannot replay from {}: it is past the head of the log (now is {})",
                    t.to_rfc3339(),
                    now.to_rfc3339()
                ),
            ));
        }
    }
    let Some(handle) = plane.trigger(&trigger).await else {
        return Err((
            StatusCode::NOT_FOUND,
            format!("trigger {trigger} is not served here (or not ready)"),
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
    // Deliveries between the seek and the lag read below (the route resumes at once) would
    // be missing from the count: they are added back from the route's counters.
    let route = herald_dispatcher::RouteId::trigger(trigger.clone());
    let settled_before = plane.route_settled(&route);
    match handle.channel.seek(&handle.subscription, position).await {
        Ok(offset) => {
            let lag = handle
                .channel
                .lag(&handle.subscription)
                .await
                .map(|lag| lag + plane.route_settled(&route).saturating_sub(settled_before));
            tracing::info!(%trigger, offset, ?lag, "replay started");
            Ok(Json(ReplayResponse {
                trigger: trigger.to_string(),
                offset,
                lag,
            }))
        }
        Err(e @ ChannelError::NotRetained { .. }) => Err((StatusCode::CONFLICT, e.to_string())),
        Err(e @ ChannelError::PastHead { .. }) => Err((StatusCode::BAD_REQUEST, e.to_string())),
        Err(e) => Err((StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    }
}
