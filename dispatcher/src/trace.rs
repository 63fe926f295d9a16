//! Spans on the data path and the W3C trace context they continue: an `ingress` span per
//! request (and per reply a subscriber sends back), a `dispatch` span per delivery attempt
//! (see [`crate::hop`]). Each takes its parent from the event's `traceparent`, so one trace
//! reads ingress → dispatch → ingress of the reply → dispatch of the reply.
//!
//! Off by default and free then: the spans are `DEBUG` on [`TARGET`], which no default log
//! filter enables, and nothing here parses or formats a trace context unless the binary
//! turned span export on ([`set_exporting`]). When it is on, the `traceparent` Herald stores
//! and sends on names Herald's own span (same trace id, a new span id per hop), as Knative's
//! broker does; the distributed-tracing extension attributes are never touched.

use herald_channels::{TraceContext, WireEvent};
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use std::sync::atomic::{AtomicBool, Ordering};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The target of Herald's data-path spans (what an exporter's filter selects).
pub const TARGET: &str = "herald::trace";

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Turns trace-context continuation on: called once by whoever installs an OpenTelemetry
/// layer (`herald --otlp-endpoint`).
pub fn set_exporting(on: bool) {
    EXPORTING.store(on, Ordering::Relaxed);
}

/// Whether spans are exported (and so continue and rewrite trace contexts).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Whether `span` takes part in an exported trace.
fn active(span: &Span) -> bool {
    exporting() && !span.is_disabled()
}

/// The `ingress` span of one request to `namespace/name`, a Broker (`kind` "broker") or a
/// Channel ("channel"), not entered yet: [`continue_trace`] must come first. Event and answer
/// fields are recorded later ([`record_event`], [`record_status`]; `herald.reply` for a
/// subscriber's reply).
pub fn ingress_span(kind: &'static str, namespace: &str, name: &str) -> Span {
    let span = tracing::debug_span!(
        target: TARGET,
        parent: None,
        "ingress",
        otel.kind = "server",
        herald.namespace = namespace,
        herald.broker = tracing::field::Empty,
        herald.channel = tracing::field::Empty,
        herald.reply = tracing::field::Empty,
        cloudevents.event_id = tracing::field::Empty,
        cloudevents.event_type = tracing::field::Empty,
        herald.events = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    let field = if kind == "broker" {
        "herald.broker"
    } else {
        "herald.channel"
    };
    span.record(field, name);
    span
}

/// Continues, in an `ingress` span not entered yet, the trace `events` came in (the
/// request's `traceparent`, else the first event's extension) and, when spans are exported,
/// stamps them with the span's own context, so their dispatches are its children. A batch
/// is one request: all its events continue one trace.
pub fn continue_ingress(span: &Span, events: &mut [WireEvent]) {
    let Some(first) = events.first() else {
        return;
    };
    record_event(span, first, events.len());
    if !active(span) {
        return;
    }
    let carried = crate::delivery::trace_of(first);
    continue_trace(span, &carried);
    if let Some(own) = next_hop(span, &carried) {
        for event in events {
            event.set_trace(own.clone());
        }
    }
}

/// Records the event a span is about (the first of a batch) and how many the request held.
pub fn record_event(span: &Span, event: &WireEvent, count: usize) {
    if span.is_disabled() {
        return;
    }
    span.record("cloudevents.event_id", event.id());
    span.record("cloudevents.event_type", event.ty());
    span.record("herald.events", count);
}

/// Marks a span failed without an HTTP status (a reply the channel did not take).
pub fn record_error(span: &Span) {
    span.record("otel.status_code", "ERROR");
}

/// Records the HTTP status a span ended with (an error status from 500, and for client
/// spans from 400, per OpenTelemetry's HTTP conventions).
pub fn record_status(span: &Span, status: u16, client: bool) {
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", status);
    if status >= 500 || (client && status >= 400) {
        span.record("otel.status_code", "ERROR");
    }
}

/// Makes `span` (not entered yet) a child of the span `carried`'s `traceparent` names. A
/// missing or invalid one leaves it the root of a new trace.
pub fn continue_trace(span: &Span, carried: &TraceContext) {
    if !active(span) {
        return;
    }
    let Some(parent) = carried
        .traceparent
        .as_deref()
        .and_then(|tp| parse(tp, carried.tracestate.as_deref()))
    else {
        return;
    };
    // Fails only for a span already started, which callers never pass.
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
}

/// The trace context the next hop gets from `span`: its own `traceparent` (same trace, its
/// span id) and the carried `tracestate`. `None` when spans are not exported: the next hop
/// then gets what was carried, unchanged.
pub fn next_hop(span: &Span, carried: &TraceContext) -> Option<TraceContext> {
    if !active(span) {
        return None;
    }
    let cx = span.context();
    let own = cx.span().span_context().clone();
    own.is_valid().then(|| TraceContext {
        traceparent: Some(format(&own)),
        tracestate: carried.tracestate.clone(),
    })
}

/// A W3C `traceparent` (`00-<trace id>-<parent id>-<flags>`; a later version is read by its
/// first four fields, as the spec says), with `tracestate`, as a remote span context.
fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<SpanContext> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace_id, span_id, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !hex(version, 2) || version == "ff" || !hex(trace_id, 32) || !hex(span_id, 16) {
        return None;
    }
    if !hex(flags, 2) || (version == "00" && parts.next().is_some()) {
        return None;
    }
    let context = SpanContext::new(
        TraceId::from_hex(trace_id).ok()?,
        SpanId::from_hex(span_id).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
        true,
        tracestate
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default(),
    );
    context.is_valid().then_some(context)
}

fn format(context: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        context.trace_id(),
        context.span_id(),
        context.trace_flags().to_u8()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_parse_per_the_w3c_rules() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let c = parse(tp, Some("congo=t61rcWkgMzE")).unwrap();
        assert_eq!(format(&c), tp);
        assert!(c.is_remote() && c.is_sampled());
        assert_eq!(c.trace_state().get("congo"), Some("t61rcWkgMzE"));
        // A later version may add fields; version 00 may not.
        assert!(parse(&format!("01-{}-extra", &tp[3..]), None).is_some());
        for bad in [
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "00-+af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "",
        ] {
            assert!(parse(bad, None).is_none(), "{bad}");
        }
    }

    #[test]
    fn nothing_changes_while_spans_are_not_exported() {
        let carried = TraceContext {
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
            tracestate: None,
        };
        let span = ingress_span("broker", "ns", "b");
        continue_trace(&span, &carried);
        assert_eq!(next_hop(&span, &carried), None);
    }
}
