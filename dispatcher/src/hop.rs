//! One hop: a single delivery attempt (to a subscriber, a dead-letter sink or a reply's
//! address) inside its `dispatch` span, which records the route, destination, attempt and
//! answer, and whose context the request carries on as its `traceparent` when spans are
//! exported (see [`crate::trace`]). Sending itself is [`crate::delivery`]'s.

use crate::delivery::{send, trace_of, Outcome, Request};
use crate::redact::Redacted;
use crate::route::Route;
use crate::trace;
use herald_channels::TraceContext;
use tracing::field::Empty;
use tracing::Instrument;

/// Where a hop goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    Subscriber,
    DeadLetterSink,
    /// A reply, to the route's reply address.
    Reply,
}

impl Destination {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subscriber => "subscriber",
            Self::DeadLetterSink => "deadLetterSink",
            Self::Reply => "reply",
        }
    }
}

/// One attempt's outcome, and the trace context it sent when that was its own span's (a
/// reply to it continues from there).
pub struct Attempt {
    pub outcome: Outcome,
    pub sent: Option<TraceContext>,
}

/// Sends `request` once for `route`, as attempt `attempt` (1 for the first) to `to`.
pub async fn attempt(
    client: &crate::client::HttpClient,
    request: &Request<'_>,
    route: &Route,
    to: Destination,
    attempt: u32,
) -> Attempt {
    let span = tracing::debug_span!(
        target: trace::TARGET,
        parent: None,
        "dispatch",
        otel.kind = "client",
        herald.namespace = route.id.key.namespace.as_str(),
        herald.broker = Empty,
        herald.trigger = Empty,
        herald.subscription = Empty,
        // A source's deliveries to its sink: `herald.source`, of kind `herald.kind`.
        herald.source = Empty,
        herald.kind = route.id.kind,
        herald.destination = to.as_str(),
        herald.attempt = attempt,
        cloudevents.event_id = request.event.id(),
        http.request.method = "POST",
        url.full = %Redacted(request.url),
        http.response.status_code = Empty,
        error.type = Empty,
        otel.status_code = Empty,
    );
    // The common case, spans off: exactly the bare send.
    if span.is_disabled() {
        return Attempt {
            outcome: send(client, request).await,
            sent: None,
        };
    }
    let name_field = match route.id.kind {
        "Trigger" => "herald.trigger",
        "Subscription" => "herald.subscription",
        _ => "herald.source",
    };
    span.record(name_field, route.id.key.name.as_str());
    if let Some(broker) = &route.broker {
        span.record("herald.broker", broker.name.as_str());
    }
    let carried = trace_of(request.event);
    trace::continue_trace(&span, &carried);
    let sent = trace::next_hop(&span, &carried);
    let request = Request {
        trace: sent.as_ref(),
        ..*request
    };
    let outcome = send(client, &request).instrument(span.clone()).await;
    match &outcome {
        Outcome::Delivered { status, .. } => trace::record_status(&span, *status, true),
        Outcome::Failed(f) => match f.status {
            Some(status) => trace::record_status(&span, status, true),
            None => {
                span.record("error.type", "transport");
                span.record("otel.status_code", "ERROR");
            }
        },
    }
    Attempt { outcome, sent }
}
