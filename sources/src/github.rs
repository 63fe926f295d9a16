//! GitHubSource: GitHub webhook deliveries as events, the way Knative's GitHub source maps
//! them: type `dev.knative.source.github.<X-GitHub-Event>`, source
//! `https://github.com/<ownerAndRepository>`, id `X-GitHub-Delivery`, subject where GitHub
//! gives one (a pull request's or issue's number, a push's compare range, a ping's hook id),
//! and the extensions `owner`, `repository`, `sender` and `action`. The body is the data,
//! byte for byte.
//!
//! Each running GitHubSource registers a [`Receiver`] in [`Webhooks`]; [`router`] serves them
//! at `POST /sources/github/{namespace}/{name}`. A delivery must carry a valid
//! `X-Hub-Signature-256` (HMAC-SHA256 of the body under the secret, compared in constant
//! time) or it gets 401. A delivery id already accepted is answered 202 and not sent again
//! (GitHub redelivers on request and on timeouts).

use crate::error::ConfigError;
use crate::{Sink, Source, SourceContext, SourceError};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use cloudevents::{Event, EventBuilder, EventBuilderV10};
use herald_core::{Check, GitHubSource, ResourceKey, SecretValueFromSource};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use subtle::ConstantTimeEq;

pub const EVENT_TYPE_PREFIX: &str = "dev.knative.source.github";
pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";
pub const EVENT_HEADER: &str = "x-github-event";
pub const DELIVERY_HEADER: &str = "x-github-delivery";
/// Delivery ids remembered per source for de-duplication.
const REMEMBERED: usize = 10_000;

/// The GitHubSources currently receiving, by namespace/name.
#[derive(Clone, Default)]
pub struct Webhooks(Arc<RwLock<HashMap<ResourceKey, Arc<Receiver>>>>);

impl Webhooks {
    fn get(&self, key: &ResourceKey) -> Option<Arc<Receiver>> {
        self.0.read().expect("not poisoned").get(key).cloned()
    }

    fn insert(&self, key: ResourceKey, r: Arc<Receiver>) {
        self.0.write().expect("not poisoned").insert(key, r);
    }

    /// Removes `key` only if it is still `r` (a replacement may have registered already).
    fn remove(&self, key: &ResourceKey, r: &Arc<Receiver>) {
        let mut map = self.0.write().expect("not poisoned");
        if map.get(key).is_some_and(|cur| Arc::ptr_eq(cur, r)) {
            map.remove(key);
        }
    }
}

pub struct GitHub {
    source: String,
    event_types: Vec<String>,
    secret: SecretValueFromSource,
}

pub fn build(g: &GitHubSource) -> Result<GitHub, ConfigError> {
    let repo = g.spec.owner_and_repository.trim();
    Ok(GitHub {
        source: format!("https://github.com/{repo}"),
        event_types: g.spec.event_types.clone(),
        secret: g.spec.secret_token.clone(),
    })
}

/// Reads a secret given by value, file or environment variable.
pub fn resolve_secret(s: &SecretValueFromSource) -> Result<Vec<u8>, String> {
    if let Some(v) = &s.value {
        return Ok(v.as_bytes().to_vec());
    }
    if let Some(path) = &s.file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read secret file {path}: {e}"))?;
        // A trailing newline from `echo secret > file` is not part of the secret.
        return Ok(text.trim_end_matches(['\n', '\r']).as_bytes().to_vec());
    }
    if let Some(var) = &s.env {
        return std::env::var(var)
            .map(String::into_bytes)
            .map_err(|_| format!("environment variable {var} is not set"));
    }
    if let Some(r) = &s.secret_key_ref {
        return Err(format!(
            "secretKeyRef {}/{} needs Kubernetes; outside it give the secret as value, file or env",
            r.name, r.key
        ));
    }
    Err("no secret given".into())
}

pub struct Receiver {
    secret: Vec<u8>,
    source: String,
    event_types: Vec<String>,
    sink: Sink,
    deliveries: Mutex<Deliveries>,
}

#[derive(Default)]
struct Deliveries {
    accepted: HashSet<String>,
    order: VecDeque<String>,
    in_flight: HashSet<String>,
}

#[async_trait::async_trait]
impl Source for GitHub {
    async fn run(self: Box<Self>, ctx: SourceContext) -> Result<(), SourceError> {
        let secret = match resolve_secret(&self.secret) {
            Ok(s) if !s.is_empty() => s,
            Ok(_) => {
                ctx.report(Check::failed(
                    "SecretsNotProvided",
                    "spec.secretToken is empty",
                ));
                ctx.shutdown.cancelled().await;
                return Ok(());
            }
            Err(e) => {
                ctx.report(Check::failed(
                    "SecretsNotProvided",
                    format!("spec.secretToken: {e}"),
                ));
                ctx.shutdown.cancelled().await;
                return Ok(());
            }
        };
        let receiver = Arc::new(Receiver {
            secret,
            source: self.source,
            event_types: self.event_types,
            sink: ctx.sink.clone(),
            deliveries: Mutex::new(Deliveries::default()),
        });
        ctx.env.webhooks.insert(ctx.key.clone(), receiver.clone());
        ctx.report(Check::Ok);
        ctx.shutdown.cancelled().await;
        ctx.env.webhooks.remove(&ctx.key, &receiver);
        Ok(())
    }
}

/// `POST /sources/github/{namespace}/{name}`.
pub fn router<S: Clone + Send + Sync + 'static>(webhooks: Webhooks) -> Router<S> {
    Router::new()
        .route("/sources/github/{namespace}/{name}", post(receive))
        .with_state(webhooks)
}

fn answer(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

async fn receive(
    State(webhooks): State<Webhooks>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let key = ResourceKey::new(namespace, name);
    let Some(receiver) = webhooks.get(&key) else {
        return answer(
            StatusCode::NOT_FOUND,
            format!("GitHubSource {key} not found (or not ready)"),
        );
    };
    receiver.handle(&headers, body).await
}

/// Verifies `sha256=<hex>` against the body, in constant time.
pub fn verify_signature(secret: &[u8], header: Option<&str>, body: &[u8]) -> Result<(), String> {
    let Some(header) = header else {
        return Err(format!("missing {SIGNATURE_HEADER} header: the webhook must be signed with the GitHubSource's secretToken"));
    };
    let Some(hex_sig) = header.trim().strip_prefix("sha256=") else {
        return Err(format!("{SIGNATURE_HEADER} must be sha256=<hex digest>"));
    };
    let Ok(given) = hex::decode(hex_sig) else {
        return Err(format!("{SIGNATURE_HEADER} is not hexadecimal"));
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    if expected.len() == given.len() && bool::from(expected.as_slice().ct_eq(&given)) {
        Ok(())
    } else {
        Err(format!(
            "{SIGNATURE_HEADER} does not match the body and secretToken"
        ))
    }
}

/// `sha256=<hex>` of `body` under `secret`, as GitHub signs (for tests and tools).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Receiver {
    async fn handle(&self, headers: &HeaderMap, body: Bytes) -> Response {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        if let Err(why) = verify_signature(&self.secret, text(SIGNATURE_HEADER), &body) {
            return answer(StatusCode::UNAUTHORIZED, why);
        }
        let Some(event_type) = text(EVENT_HEADER).filter(|t| !t.is_empty()) else {
            return answer(
                StatusCode::BAD_REQUEST,
                format!("missing {EVENT_HEADER} header"),
            );
        };
        let Some(delivery) = text(DELIVERY_HEADER).filter(|t| !t.is_empty()) else {
            return answer(
                StatusCode::BAD_REQUEST,
                format!("missing {DELIVERY_HEADER} header"),
            );
        };
        let wanted = self.event_types.iter().any(|t| t == event_type);
        if event_type == "ping" && !wanted {
            return answer(StatusCode::OK, "pong");
        }
        if !wanted {
            return answer(
                StatusCode::OK,
                format!("event type {event_type:?} is not in spec.eventTypes; ignored"),
            );
        }
        let content_type = text("content-type").unwrap_or_default();
        if !content_type.starts_with("application/json") {
            return answer(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("content type {content_type:?}: set the webhook's content type to application/json"),
            );
        }
        let payload: serde_json::Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return answer(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")),
        };
        {
            let mut d = self.deliveries.lock().expect("not poisoned");
            if d.accepted.contains(delivery) {
                return answer(
                    StatusCode::ACCEPTED,
                    format!("delivery {delivery} was already accepted"),
                );
            }
            if !d.in_flight.insert(delivery.to_string()) {
                return answer(
                    StatusCode::CONFLICT,
                    format!("delivery {delivery} is being handled"),
                );
            }
        }
        let event = self.event(event_type, delivery, &payload, body);
        let span = tracing::info_span!("github", delivery, event_type);
        let sent = tracing::Instrument::instrument(self.sink.send(event), span).await;
        let mut d = self.deliveries.lock().expect("not poisoned");
        d.in_flight.remove(delivery);
        match sent {
            Ok(_) => {
                d.accepted.insert(delivery.to_string());
                d.order.push_back(delivery.to_string());
                if d.order.len() > REMEMBERED {
                    if let Some(old) = d.order.pop_front() {
                        d.accepted.remove(&old);
                    }
                }
                answer(StatusCode::ACCEPTED, "accepted")
            }
            Err(e) => answer(StatusCode::BAD_GATEWAY, e.to_string()),
        }
    }

    fn event(
        &self,
        event_type: &str,
        delivery: &str,
        payload: &serde_json::Value,
        body: Bytes,
    ) -> Event {
        let mut b = EventBuilderV10::new()
            .id(delivery)
            .ty(format!("{EVENT_TYPE_PREFIX}.{event_type}"))
            .source(self.source.clone())
            .data("application/json", body.to_vec());
        if let Some(s) = subject(event_type, payload) {
            b = b.subject(s);
        }
        let str_at = |ptr: &str| {
            payload
                .pointer(ptr)
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        for (ext, ptr) in [
            ("owner", "/repository/owner/login"),
            ("repository", "/repository/name"),
            ("sender", "/sender/login"),
            ("action", "/action"),
        ] {
            if let Some(v) = str_at(ptr) {
                b = b.extension(ext, v);
            }
        }
        b.build().expect("id, type and source are set")
    }
}

/// Knative's subject per event: the number of a pull request or issue, the last part of a
/// push's compare URL, a ping's hook id, a comment's anchor.
fn subject(event_type: &str, p: &serde_json::Value) -> Option<String> {
    let num = |ptr: &str| {
        p.pointer(ptr)
            .and_then(|v| v.as_i64())
            .map(|n| n.to_string())
    };
    let last_part = |ptr: &str| {
        p.pointer(ptr)
            .and_then(|v| v.as_str())
            .and_then(|u| u.rsplit_once('/'))
            .map(|(_, last)| last.to_string())
    };
    match event_type {
        "pull_request" | "pull_request_review" | "pull_request_review_comment" => {
            num("/pull_request/number").or_else(|| num("/number"))
        }
        "issues" => num("/issue/number"),
        "issue_comment" | "commit_comment" => last_part("/comment/html_url"),
        "push" => last_part("/compare"),
        "ping" => num("/hook_id"),
        "create" | "delete" => p
            .pointer("/ref_type")
            .and_then(|v| v.as_str())
            .map(str::to_string),
        "release" => num("/release/id"),
        "check_run" => num("/check_run/id"),
        "check_suite" => num("/check_suite/id"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_in_constant_time_and_name_the_problem() {
        let body = br#"{"zen":"Keep it logically awesome."}"#;
        let good = sign(b"s3cret", body);
        assert!(verify_signature(b"s3cret", Some(&good), body).is_ok());
        let e = verify_signature(b"other", Some(&good), body).unwrap_err();
        assert!(e.contains("does not match"), "{e}");
        let e = verify_signature(b"s3cret", None, body).unwrap_err();
        assert!(e.contains("missing"), "{e}");
        let e = verify_signature(b"s3cret", Some("sha1=abc"), body).unwrap_err();
        assert!(e.contains("sha256="), "{e}");
        let e = verify_signature(b"s3cret", Some("sha256=zz"), body).unwrap_err();
        assert!(e.contains("hexadecimal"), "{e}");
    }
}
