//! The admin API of a running Herald, shaped like the Kubernetes API so kubectl's habits
//! carry over: resources under `/apis/{group}/{version}/...` (GET list and get, PUT apply,
//! DELETE), `/readyz`, and `POST /admin/v1/replay`. [`client`] is the CLI's side of it.

pub mod client;
mod replay;
mod resources;

pub use replay::{parse_key, parse_position, ReplayRequest, ReplayResponse, REPLAY_PATH};

use crate::plane::DataPlane;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;

pub fn router(plane: Arc<DataPlane>) -> Router {
    Router::new()
        .route(REPLAY_PATH, post(replay::replay))
        .route("/readyz", get(readyz))
        .merge(resources::router())
        .with_state(plane)
}

/// 200 while every backend in use is reachable, else 503; the body names the backends and
/// every resource that is not ready, with why.
async fn readyz(State(plane): State<Arc<DataPlane>>) -> impl IntoResponse {
    let health = plane.health().await;
    let status = if health.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(health))
}
