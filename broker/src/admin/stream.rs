//! The live event stream of a Broker (`herald tail`, the UI):
//! `GET /admin/v1/brokers/{namespace}/{name}/events[?filter=CESQL]` answers Server-Sent Events,
//! one per event the Broker accepts from then on (ingress and replies alike), each carrying the
//! event in the CloudEvents JSON format as it is on the channel. The stream is fed by the
//! Broker's tap (a bounded broadcast, so watching never slows ingress): a watcher that falls
//! behind gets a `missed` event saying how many went by unseen. A filter that does not parse
//! is a 400 naming the problem.
//!
//! SSE event names: `watching` (first, once the watch is attached: `{broker, filter}`),
//! `cloudevent` (data: the event), `missed` (data: `{"missed": N}`).

use crate::plane::{DataPlane, Seen, Watch};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use herald_cesql::Expression;
use herald_channels::event::json;
use herald_core::ResourceKey;
use herald_dispatcher::attributes::CesqlEvent;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;

/// Per-Broker admin paths: `{BROKERS_PATH}/{namespace}/{name}/events`.
pub const BROKERS_PATH: &str = "/admin/v1/brokers";

pub(super) fn router() -> Router<Arc<DataPlane>> {
    Router::new().route(
        &format!("{BROKERS_PATH}/{{namespace}}/{{name}}/events"),
        get(watch).post(super::send::send),
    )
}

#[derive(Deserialize)]
pub(super) struct WatchQuery {
    /// A CESQL expression; only events it matches are streamed.
    filter: Option<String>,
}

/// Compiles a stream filter; an empty one is no filter. The error names what is wrong.
pub fn compile_filter(text: &str) -> Result<Option<Expression>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let expression =
        Expression::parse(text).map_err(|e| format!("invalid CESQL expression {text:?}: {e}"))?;
    let missing = expression.missing_functions();
    if !missing.is_empty() {
        return Err(format!(
            "CESQL expression {text:?} calls unknown function(s): {}",
            missing.join(", ")
        ));
    }
    Ok(Some(expression))
}

async fn watch(
    State(plane): State<Arc<DataPlane>>,
    Path((namespace, name)): Path<(String, String)>,
    Query(query): Query<WatchQuery>,
) -> Response {
    let text = query.filter.unwrap_or_default();
    let filter = match compile_filter(&text) {
        Ok(f) => f,
        Err(message) => return (StatusCode::BAD_REQUEST, format!("{message}\n")).into_response(),
    };
    let key = ResourceKey::new(namespace, name);
    let Some(watch) = plane.watch_broker(&key).await else {
        return (StatusCode::NOT_FOUND, format!("broker {key} not found\n")).into_response();
    };
    tracing::debug!(broker = %key, filter = %text, "watching");
    let hello = Event::default()
        .event("watching")
        .json_data(serde_json::json!({"broker": key.to_string(), "filter": text}))
        .expect("a JSON value serializes");
    let events = futures::stream::unfold((watch, filter), |(mut watch, filter)| async move {
        let event = next_event(&mut watch, filter.as_ref()).await?;
        Some((Ok::<_, Infallible>(event), (watch, filter)))
    });
    let stream = futures::StreamExt::chain(
        futures::stream::once(async move { Ok::<_, Infallible>(hello) }),
        events,
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The next SSE event for this watcher: a matching event, or a miss; `None` when the watch ends.
async fn next_event(watch: &mut Watch, filter: Option<&Expression>) -> Option<Event> {
    loop {
        match watch.next().await? {
            Seen::Event(event) => {
                if filter.is_some_and(|f| !f.matches(&CesqlEvent(&event))) {
                    continue;
                }
                return Some(
                    Event::default()
                        .event("cloudevent")
                        .data(json::to_string(&event)),
                );
            }
            Seen::Missed(n) => {
                tracing::debug!(missed = n, "a watcher fell behind");
                return Some(
                    Event::default()
                        .event("missed")
                        .data(format!("{{\"missed\":{n}}}")),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::compile_filter;

    #[test]
    fn a_filter_that_does_not_parse_or_calls_an_unknown_function_is_named() {
        assert!(compile_filter("").unwrap().is_none());
        assert!(compile_filter("type = 'a'").unwrap().is_some());
        let e = compile_filter("type = ").unwrap_err();
        assert!(e.contains("invalid CESQL expression \"type = \""), "{e}");
        let e = compile_filter("NOPE(type)").unwrap_err();
        assert!(e.contains("NOPE/1"), "{e}");
    }
}
