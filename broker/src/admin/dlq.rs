//! The dead-letter list of each Trigger (`herald dlq`): events parked because neither the
//! subscriber nor the dead-letter sink took them.
//!
//! - `GET  /admin/v1/dlq/{namespace}/{broker}[?trigger=NAME]`: the parked events of the
//!   Broker's Triggers (or of one);
//! - `GET  /admin/v1/dlq/{namespace}/{broker}/{trigger}/{id}`: one, with the whole event;
//! - `POST /admin/v1/dlq/{namespace}/{broker}/{trigger}/{id}/redrive`: delivers it to that
//!   Trigger again and, once delivered or dead-lettered, removes it from the list;
//! - `DELETE /admin/v1/dlq/{namespace}/{broker}/{trigger}/{id}`: discards it (`404` for an
//!   unknown id);
//! - `DELETE /admin/v1/dlq/{namespace}/{broker}/{trigger}`: discards all of the Trigger's.

use crate::plane::{DataPlane, Discarded, ParkedError, ParkedList, Redriven};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use herald_channels::ParkedEvent;
use herald_core::ResourceKey;
use serde::Deserialize;
use std::sync::Arc;

pub const DLQ_PATH: &str = "/admin/v1/dlq";

pub(super) fn router() -> Router<Arc<DataPlane>> {
    Router::new()
        .route(&format!("{DLQ_PATH}/{{namespace}}/{{broker}}"), get(list))
        .route(
            &format!("{DLQ_PATH}/{{namespace}}/{{broker}}/{{trigger}}"),
            delete(discard_all),
        )
        .route(
            &format!("{DLQ_PATH}/{{namespace}}/{{broker}}/{{trigger}}/{{id}}"),
            get(show).delete(discard),
        )
        .route(
            &format!("{DLQ_PATH}/{{namespace}}/{{broker}}/{{trigger}}/{{id}}/redrive"),
            post(redrive),
        )
}

pub(super) struct Refused(ParkedError);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            ParkedError::NoTrigger(_)
            | ParkedError::OtherBroker { .. }
            | ParkedError::NoChannel(_)
            | ParkedError::NoEvent { .. } => StatusCode::NOT_FOUND,
            ParkedError::NotRunning(_) => StatusCode::CONFLICT,
            ParkedError::StillUndeliverable { .. } => StatusCode::BAD_GATEWAY,
            ParkedError::Channel(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, format!("{}\n", self.0)).into_response()
    }
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    trigger: Option<String>,
}

async fn list(
    State(plane): State<Arc<DataPlane>>,
    Path((namespace, broker)): Path<(String, String)>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<ParkedList>>, Refused> {
    let broker = ResourceKey::new(&namespace, broker);
    let trigger = query
        .trigger
        .map(|t| crate::admin::parse_key(&t, &namespace));
    plane
        .parked(&broker, trigger.as_ref())
        .await
        .map(Json)
        .map_err(Refused)
}

type OnePath = Path<(String, String, String, u64)>;

async fn show(
    State(plane): State<Arc<DataPlane>>,
    Path((namespace, broker, trigger, id)): OnePath,
) -> Result<Json<ParkedEvent>, Refused> {
    let (broker, trigger) = (
        ResourceKey::new(&namespace, broker),
        ResourceKey::new(&namespace, trigger),
    );
    plane
        .parked_event(&broker, &trigger, id)
        .await
        .map(Json)
        .map_err(Refused)
}

async fn discard(
    State(plane): State<Arc<DataPlane>>,
    Path((namespace, broker, trigger, id)): OnePath,
) -> Result<Json<Discarded>, Refused> {
    let (broker, trigger) = (
        ResourceKey::new(&namespace, broker),
        ResourceKey::new(&namespace, trigger),
    );
    plane
        .discard(&broker, &trigger, id)
        .await
        .map(Json)
        .map_err(Refused)
}

async fn discard_all(
    State(plane): State<Arc<DataPlane>>,
    Path((namespace, broker, trigger)): Path<(String, String, String)>,
) -> Result<Json<Discarded>, Refused> {
    let (broker, trigger) = (
        ResourceKey::new(&namespace, broker),
        ResourceKey::new(&namespace, trigger),
    );
    plane
        .discard_all(&broker, &trigger)
        .await
        .map(Json)
        .map_err(Refused)
}

async fn redrive(
    State(plane): State<Arc<DataPlane>>,
    Path((namespace, broker, trigger, id)): OnePath,
) -> Result<Json<Redriven>, Refused> {
    let (broker, trigger) = (
        ResourceKey::new(&namespace, broker),
        ResourceKey::new(&namespace, trigger),
    );
    plane
        .redrive(&broker, &trigger, id)
        .await
        .map(Json)
        .map_err(Refused)
}
