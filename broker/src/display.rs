//! `herald display`: an event-display subscriber (like Knative's) that prints every event it
//! receives, readably, and acknowledges it with 202. For demos of callable subscribers it can
//! also act as a tiny function: reply to each event with a copy of another type, and fail
//! (500) on events of given types.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use herald_channels::event::json;
use herald_channels::{WireData, WireEvent};
use std::fmt::Write;
use std::sync::Arc;

/// Where formatted events go (stdout for the CLI, a channel in tests).
pub type Printer = Arc<dyn Fn(String) + Send + Sync>;

/// What the display answers besides printing.
#[derive(Clone, Debug, Default)]
pub struct Behaviour {
    /// Reply to each event with a copy of this type (id suffixed `-reply`).
    pub reply_type: Option<String>,
    /// Answer 500 to events of these types (after printing them).
    pub fail_types: Vec<String>,
}

pub fn router(printer: Printer) -> Router {
    router_with(printer, Behaviour::default())
}

pub fn router_with(printer: Printer, behaviour: Behaviour) -> Router {
    Router::new()
        .route("/", post(receive))
        .route("/{*path}", post(receive))
        .with_state((printer, Arc::new(behaviour)))
}

async fn receive(
    State((printer, behaviour)): State<(Printer, Arc<Behaviour>)>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, 64 * 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("cannot read body: {e}\n")).into_response()
        }
    };
    let event = match herald_channels::binding::headers_to_event(&parts.headers, body.to_vec()) {
        Ok(event) => event,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("not a CloudEvent: {e}\n")).into_response()
        }
    };
    printer(format_event(&event));
    if behaviour.fail_types.iter().any(|t| t == event.ty()) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("function failed on {} events\n", event.ty()),
        )
            .into_response();
    }
    match &behaviour.reply_type {
        Some(ty) => {
            let mut reply = event.clone();
            reply.set_string_attribute("type", ty.clone());
            reply.set_string_attribute("id", format!("{}-reply", event.id()));
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/cloudevents+json")],
                json::to_vec(&reply),
            )
                .into_response()
        }
        None => StatusCode::ACCEPTED.into_response(),
    }
}

/// Formats an event the way Knative's event-display does: attributes, extensions, data.
pub fn format_event(event: &WireEvent) -> String {
    let mut out = String::from("☁️  cloudevents.Event\nContext Attributes,\n");
    let extension_names: Vec<&str> = event.iter_extensions().map(|(n, _)| n).collect();
    for (name, value) in event.iter() {
        if !extension_names.contains(&name) {
            let _ = writeln!(out, "  {name}: {value}");
        }
    }
    let mut extensions: Vec<_> = event.iter_extensions().collect();
    extensions.sort_by_key(|(n, _)| *n);
    if !extensions.is_empty() {
        out.push_str("Extensions,\n");
        for (name, value) in extensions {
            let _ = writeln!(out, "  {name}: {value}");
        }
    }
    if let Some(data) = event.data() {
        out.push_str("Data,\n");
        let body = event.body().unwrap_or_default();
        let text = match (data, std::str::from_utf8(&body)) {
            (WireData::Json(_), Ok(s)) => pretty_if_json(s, event.content_type()),
            (_, Ok(s)) => pretty_if_json(s, event.datacontenttype()),
            (_, Err(_)) => format!("<{} bytes of binary data>", body.len()),
        };
        for line in text.lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

fn pretty_if_json(s: &str, content_type: Option<&str>) -> String {
    if content_type.is_some_and(|ct| ct.contains("json")) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(s) {
            return serde_json::to_string_pretty(&v).unwrap_or_else(|_| s.to_string());
        }
    }
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV10};

    #[test]
    fn formats_attributes_extensions_and_json_data() {
        let e = EventBuilderV10::new()
            .id("42")
            .source("/s")
            .ty("com.example")
            .extension("region", "eu")
            .data("application/json", serde_json::json!({"a": 1}))
            .build()
            .unwrap();
        let text = format_event(&e.into());
        for needle in [
            "id: 42",
            "type: com.example",
            "Extensions,",
            "region: eu",
            "Data,",
            "\"a\": 1",
        ] {
            assert!(text.contains(needle), "{needle:?} missing in\n{text}");
        }
    }
}
