//! `/apis/{group}/{version}/[namespaces/{ns}/]{plural}[/{name}]`: Herald's resources the
//! Kubernetes way. GET lists or gets (with status), PUT applies a YAML or JSON body (201 when
//! created, 200 otherwise; the `Herald-Applied` header says created, configured or
//! unchanged), DELETE removes. Errors are Kubernetes `Status` objects naming the field.

use crate::plane::{Applied, ApplyError, DataPlane, Owner};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use herald_core::{load_resource, Kind, LoadError, ResourceKey};
use serde_json::json;
use std::sync::Arc;

/// Response header carrying what an apply did.
pub const APPLIED_HEADER: &str = "herald-applied";

pub(super) fn router() -> Router<Arc<DataPlane>> {
    Router::new()
        .route("/apis/{group}/{version}/{plural}", get(list_all))
        .route(
            "/apis/{group}/{version}/namespaces/{namespace}/{plural}",
            get(list_namespace),
        )
        .route(
            "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}",
            get(get_one).put(apply).delete(delete),
        )
}

/// A Kubernetes `Status` answer.
pub(super) struct Failure {
    code: StatusCode,
    reason: &'static str,
    message: String,
    causes: Vec<serde_json::Value>,
}

impl Failure {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            causes: Vec::new(),
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = json!({
            "apiVersion": "v1",
            "kind": "Status",
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "details": { "causes": self.causes },
            "code": self.code.as_u16(),
        });
        (self.code, Json(body)).into_response()
    }
}

fn kind_of(group: &str, version: &str, plural: &str) -> Result<Kind, Failure> {
    Kind::ALL
        .into_iter()
        .find(|k| k.plural() == plural && k.api_version() == format!("{group}/{version}"))
        .ok_or_else(|| {
            Failure::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("the server does not serve {plural} in {group}/{version}"),
            )
        })
}

fn list_body(kind: Kind, items: Vec<crate::plane::ResourceView>) -> Json<serde_json::Value> {
    Json(json!({
        "apiVersion": kind.api_version(),
        "kind": format!("{}List", kind.name()),
        "items": items,
    }))
}

async fn list_all(
    State(plane): State<Arc<DataPlane>>,
    Path((group, version, plural)): Path<(String, String, String)>,
) -> Result<Json<serde_json::Value>, Failure> {
    let kind = kind_of(&group, &version, &plural)?;
    Ok(list_body(kind, plane.list(kind, None).await))
}

async fn list_namespace(
    State(plane): State<Arc<DataPlane>>,
    Path((group, version, namespace, plural)): Path<(String, String, String, String)>,
) -> Result<Json<serde_json::Value>, Failure> {
    let kind = kind_of(&group, &version, &plural)?;
    Ok(list_body(kind, plane.list(kind, Some(&namespace)).await))
}

type OnePath = Path<(String, String, String, String, String)>;

fn not_found(kind: Kind, key: &ResourceKey) -> Failure {
    Failure::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{} {key} not found", kind.name()),
    )
}

async fn get_one(
    State(plane): State<Arc<DataPlane>>,
    Path((group, version, namespace, plural, name)): OnePath,
) -> Result<Json<crate::plane::ResourceView>, Failure> {
    let kind = kind_of(&group, &version, &plural)?;
    let key = ResourceKey::new(namespace, name);
    plane
        .get(kind, &key)
        .await
        .map(Json)
        .ok_or_else(|| not_found(kind, &key))
}

fn load_failure(e: LoadError) -> Failure {
    // A document that is not YAML at all is a bad request; a field in error is invalid.
    let has_field = e.problems.iter().any(|p| p.field.is_some());
    let causes = e
        .problems
        .iter()
        .map(|p| json!({ "field": p.field, "message": p.message }))
        .collect();
    let message = e
        .problems
        .iter()
        .map(|p| p.to_string())
        .collect::<Vec<_>>()
        .join("; ");
    Failure {
        causes,
        ..if has_field {
            Failure::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", message)
        } else {
            Failure::new(StatusCode::BAD_REQUEST, "BadRequest", message)
        }
    }
}

fn apply_failure(e: ApplyError) -> Failure {
    match e {
        ApplyError::Invalid { ref field, .. } => Failure {
            causes: vec![json!({ "field": field, "message": e.to_string() })],
            ..Failure::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", e.to_string())
        },
        ApplyError::NotFound { .. } => {
            Failure::new(StatusCode::NOT_FOUND, "NotFound", e.to_string())
        }
        ApplyError::ShuttingDown => Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            e.to_string(),
        ),
    }
}

async fn apply(
    State(plane): State<Arc<DataPlane>>,
    Path((group, version, namespace, plural, name)): OnePath,
    body: Bytes,
) -> Result<Response, Failure> {
    let kind = kind_of(&group, &version, &plural)?;
    let text = std::str::from_utf8(&body).map_err(|e| {
        Failure::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("body is not UTF-8: {e}"),
        )
    })?;
    let mut resource = load_resource("request body", text).map_err(load_failure)?;
    if resource.kind() != kind {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "the body is a {}, the path names {}",
                resource.kind(),
                kind.plural()
            ),
        ));
    }
    // As the Kubernetes API: the path names the object; a body may leave namespace out.
    let meta = resource.metadata_mut();
    if meta.namespace.is_none() {
        meta.namespace = Some(namespace.clone());
    }
    let key = ResourceKey::new(namespace, name);
    if resource.key() != key {
        return Err(Failure::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!(
                "the body names {} {}, the path {key}",
                kind.name(),
                resource.key()
            ),
        ));
    }
    let applied = plane
        .apply(resource, Owner::Api)
        .await
        .map_err(apply_failure)?;
    tracing::info!(%kind, %key, %applied, "applied through the admin API");
    let view = plane
        .get(kind, &key)
        .await
        .ok_or_else(|| not_found(kind, &key))?;
    let code = if applied == Applied::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = (code, Json(view)).into_response();
    response.headers_mut().insert(
        APPLIED_HEADER,
        HeaderValue::from_static(match applied {
            Applied::Created => "created",
            Applied::Configured => "configured",
            Applied::Unchanged => "unchanged",
        }),
    );
    Ok(response)
}

async fn delete(
    State(plane): State<Arc<DataPlane>>,
    Path((group, version, namespace, plural, name)): OnePath,
) -> Result<Json<serde_json::Value>, Failure> {
    let kind = kind_of(&group, &version, &plural)?;
    let key = ResourceKey::new(namespace, name);
    plane.delete(kind, &key).await.map_err(apply_failure)?;
    Ok(Json(json!({
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Success",
        "details": { "name": key.name, "kind": kind.plural() },
    })))
}
