//! `POST /admin/v1/brokers/{namespace}/{name}/events`: sends a test event to a Broker from the
//! admin listener, so the UI needs only one origin (and the admin token) to send one. The
//! request goes through ingress's own handler in-process, so it is read, checked and answered
//! exactly as `POST /{namespace}/{name}` on ingress would be.

use crate::ingress::{self, IngressState};
use crate::plane::DataPlane;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

/// A test event is small; a megabyte is plenty and keeps the admin listener cheap.
const MAX_BODY_BYTES: usize = 1024 * 1024;

pub(super) async fn send(
    State(plane): State<Arc<DataPlane>>,
    Path((namespace, name)): Path<(String, String)>,
    request: Request,
) -> Response {
    let ingress = ingress::router(IngressState {
        brokers: plane.ingress(),
        channels: plane.channel_ingress(),
        max_body_bytes: MAX_BODY_BYTES,
        max_batch_events: 100,
        body_timeout: Duration::from_secs(30),
        metrics: plane.metrics().clone(),
        // The admin API authenticated the request already (its own token).
        auth: None,
        authorizations: plane.authorizations(),
    });
    let (mut parts, body) = request.into_parts();
    // Path segments came percent-decoded; they are re-encoded for the inner route.
    let path = format!(
        "/{}/{}",
        url::form_urlencoded::byte_serialize(namespace.as_bytes()).collect::<String>(),
        url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>()
    );
    // The admin route's own path parameters would confuse the inner route's.
    parts.extensions = Default::default();
    parts.uri = match path.parse() {
        Ok(uri) => uri,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    match ingress.oneshot(Request::from_parts(parts, body)).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}
