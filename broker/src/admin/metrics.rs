//! `GET /metrics`: every metric of this server in the OpenMetrics text format, for
//! Prometheus. Gauges (lag, parked events, backends, store size) are read at scrape time.

use crate::plane::DataPlane;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use herald_core::metrics::CONTENT_TYPE;
use std::sync::Arc;

pub const METRICS_PATH: &str = "/metrics";

pub(super) fn router() -> Router<Arc<DataPlane>> {
    Router::new().route(METRICS_PATH, get(scrape))
}

async fn scrape(State(plane): State<Arc<DataPlane>>) -> impl IntoResponse {
    plane.refresh_metrics().await;
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        plane.metrics().encode(),
    )
}
