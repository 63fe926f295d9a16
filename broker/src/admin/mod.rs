//! The admin API of a running Herald, shaped like the Kubernetes API so kubectl's habits
//! carry over: resources under `/apis/{group}/{version}/...` (GET list and get, PUT apply,
//! DELETE), `/readyz`, `POST /admin/v1/replay`, the dead-letter lists under
//! `/admin/v1/dlq` ([`dlq`]) and each route's counters under `/admin/v1/routes`
//! ([`routes`]). [`client`] is the CLI's side of it.

mod bearer;
pub mod client;
mod dlq;
mod metrics;
mod replay;
mod resources;
mod routes;
mod send;
mod stream;
mod ui;

pub use dlq::DLQ_PATH;
pub use replay::{parse_key, parse_position, ReplayRequest, ReplayResponse, REPLAY_PATH};
pub use routes::ROUTES_PATH;
pub use stream::{compile_filter, BROKERS_PATH};

use crate::plane::DataPlane;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;

/// The admin routes; with `token`, every one but `/readyz` requires it as a bearer token.
pub fn router(plane: Arc<DataPlane>, token: Option<String>) -> Router {
    let mut protected = Router::new()
        .route(REPLAY_PATH, post(replay::replay))
        .merge(dlq::router())
        .merge(metrics::router())
        .merge(resources::router())
        .merge(routes::router())
        .merge(stream::router());
    if let Some(token) = token {
        let token = Arc::new(token);
        protected = protected.layer(axum::middleware::from_fn(move |request, next| {
            let token = token.clone();
            async move { bearer::require(&token, request, next).await }
        }));
    }
    Router::new()
        .route("/readyz", get(readyz))
        .merge(ui::router())
        .merge(protected)
        .with_state(plane)
}

/// `/readyz` alone, for the ingress listener: Kubernetes probes reach the pod's address, not
/// the admin API's loopback one.
pub fn probes(plane: Arc<DataPlane>) -> Router {
    Router::new()
        .route("/readyz", get(readyz))
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
