//! `GET /admin/v1/routes/{namespace}/{triggers|subscriptions}/{name}`: one running route's
//! counters and lag ([`RouteCounters`]), for `herald describe` and for `herald replay` to
//! follow a replay until the route has caught up. `404` for a route that does not run here.

use crate::plane::{DataPlane, RouteCounters};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use herald_core::ResourceKey;
use herald_dispatcher::RouteId;
use std::sync::Arc;

pub const ROUTES_PATH: &str = "/admin/v1/routes";

pub(super) fn router() -> Router<Arc<DataPlane>> {
    Router::new().route(
        &format!("{ROUTES_PATH}/{{namespace}}/{{plural}}/{{name}}"),
        get(counters),
    )
}

async fn counters(
    State(plane): State<Arc<DataPlane>>,
    Path((namespace, plural, name)): Path<(String, String, String)>,
) -> Result<Json<RouteCounters>, (StatusCode, String)> {
    let key = ResourceKey::new(namespace, name);
    let id = match plural.as_str() {
        "triggers" => RouteId::trigger(key),
        "subscriptions" => RouteId::subscription(key),
        other => {
            return Err((
                StatusCode::NOT_FOUND,
                format!("{other} have no routes (triggers and subscriptions do)\n"),
            ))
        }
    };
    plane.route_counters(&id).await.map(Json).ok_or_else(|| {
        (
            StatusCode::NOT_FOUND,
            format!(
                "{} {} does not run here (not applied, or not ready)\n",
                id.kind, id.key
            ),
        )
    })
}
