//! One delivery attempt over HTTP, in binary or structured mode per the route's
//! `delivery.format`, and the classification of its outcome per the Knative data-plane
//! contract. The event goes out as it was accepted ([`WireEvent`]): attribute strings, data
//! bytes, and the W3C trace context that came with it as `traceparent`/`tracestate` headers.

use crate::redact::{self, Redacted};
use bytes::Bytes;
use herald_channels::event::json;
use herald_channels::{binding, TraceContext, WireEvent};
use herald_core::DeliveryFormat;
use http::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};
use std::time::{Duration, SystemTime};
use url::Url;

/// Content type of a structured-mode (JSON format) CloudEvent.
pub const STRUCTURED_CONTENT_TYPE: &str = binding::STRUCTURED_CONTENT_TYPE;

#[derive(Debug)]
pub enum Outcome {
    /// The recipient accepted the event with `status`; a 200 may carry a reply event.
    Delivered {
        status: u16,
        reply: Option<Box<WireEvent>>,
    },
    Failed(Failure),
}

#[derive(Clone, Debug)]
pub struct Failure {
    /// HTTP status, when the recipient answered at all.
    pub status: Option<u16>,
    pub body: Bytes,
    /// Retry-After of a 429 or 503.
    pub retry_after: Option<Duration>,
    pub retryable: bool,
    pub reason: String,
}

impl Failure {
    fn transport(reason: String) -> Self {
        Self {
            status: None,
            body: Bytes::new(),
            retry_after: None,
            retryable: true,
            reason,
        }
    }
}

/// Which failed statuses are retried: the data-plane table's 404, 409, 429 and 5xx, and
/// 408 (Request Timeout), which Knative's dispatcher retries too; a code outside the table
/// (600 and up) is retried, as the spec says for codes it does not list. Other 4xx, and
/// 1xx/3xx (reserved: errors without retry; redirects are never followed), are not.
pub fn is_retryable(status: u16) -> bool {
    matches!(status, 404 | 408 | 409 | 429) || status >= 500
}

/// One delivery attempt's request.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    pub url: &'a Url,
    pub event: &'a WireEvent,
    pub format: DeliveryFormat,
    pub timeout: Duration,
    /// Ask for a reply (`Prefer: reply`).
    pub want_reply: bool,
    /// The `Authorization` header, when the sender presents credentials.
    pub authorization: Option<&'a str>,
    /// The trace context to send instead of the event's own (the hop's span, when spans are
    /// exported: see [`crate::hop`]).
    pub trace: Option<&'a TraceContext>,
}

/// Sends the event once, in binary or structured mode per `format`. With `want_reply`, the
/// request carries `Prefer: reply` and a 200 response holding a CloudEvent is returned as
/// the reply.
pub async fn send(client: &reqwest::Client, r: &Request<'_>) -> Outcome {
    let Request {
        url,
        event,
        format,
        timeout,
        want_reply,
        authorization,
        trace,
    } = *r;
    let mut request = client.post(url.clone()).timeout(timeout);
    if want_reply {
        request = request.header("Prefer", "reply");
    }
    if let Some(value) = authorization {
        request = request.header(http::header::AUTHORIZATION, value);
    }
    let request = match (format, trace) {
        (DeliveryFormat::Binary, None) => binary_request(request, event),
        (DeliveryFormat::Json, None) => structured_request(request, event),
        (DeliveryFormat::Binary, Some(t)) => binary_body(with_trace(request, t), event),
        (DeliveryFormat::Json, Some(t)) => structured_body(with_trace(request, t), event),
    };
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return Outcome::Failed(Failure::transport(format!(
                "no response from {} within {timeout:?}",
                Redacted(url)
            )))
        }
        Err(e) => {
            return Outcome::Failed(Failure::transport(format!(
                "request to {} failed: {}",
                Redacted(url),
                redact::urls_in(&e.without_url().to_string())
            )))
        }
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = match response.bytes().await {
        Ok(b) => b,
        Err(e) => {
            return Outcome::Failed(Failure::transport(format!(
                "reading the response of {} failed: {}",
                Redacted(url),
                e.without_url()
            )))
        }
    };
    classify(status, &headers, body, want_reply)
}

/// Binary mode with percent-encoded `ce-` headers (the HTTP binding's rule), so attribute
/// values with line breaks or non-ASCII characters arrive exactly as sent and can never add
/// headers of their own (the SDK's request builder writes values verbatim); the body is the
/// data as sent, under its (possibly implied) content type.
pub fn binary_request(
    request: reqwest::RequestBuilder,
    event: &WireEvent,
) -> reqwest::RequestBuilder {
    binary_body(with_trace(request, &trace_of(event)), event)
}

fn binary_body(mut request: reqwest::RequestBuilder, event: &WireEvent) -> reqwest::RequestBuilder {
    for (name, value) in binding::attribute_headers(event) {
        request = request.header(name, value);
    }
    match event.body() {
        Some(body) => request.body(body.into_owned()),
        None => request,
    }
}

/// Structured mode: the JSON format as accepted (see [`json::to_vec`]).
pub fn structured_request(
    request: reqwest::RequestBuilder,
    event: &WireEvent,
) -> reqwest::RequestBuilder {
    structured_body(with_trace(request, &trace_of(event)), event)
}

fn structured_body(request: reqwest::RequestBuilder, event: &WireEvent) -> reqwest::RequestBuilder {
    request
        .header(CONTENT_TYPE, STRUCTURED_CONTENT_TYPE)
        .body(json::to_vec(event))
}

/// The trace context to send: what came with the event, or else its distributed-tracing
/// extension attributes, so a trace started by the sender continues at the subscriber.
pub fn trace_of(event: &WireEvent) -> TraceContext {
    let carried = event.trace();
    if carried.traceparent.is_some() {
        return carried.clone();
    }
    let ext = |name| event.attribute(name).map(|v| v.into_owned());
    TraceContext {
        traceparent: ext(TraceContext::TRACEPARENT),
        tracestate: ext(TraceContext::TRACESTATE),
    }
}

fn with_trace(
    mut request: reqwest::RequestBuilder,
    trace: &TraceContext,
) -> reqwest::RequestBuilder {
    for (name, value) in trace.headers() {
        if let Ok(v) = http::HeaderValue::from_str(value) {
            request = request.header(name, v);
        }
    }
    request
}

fn classify(status: u16, headers: &HeaderMap, body: Bytes, want_reply: bool) -> Outcome {
    if (200..300).contains(&status) {
        // Only a 200 carries a reply; a 202 must never be routed further.
        if status != 200 || !want_reply || !carries_event(headers, &body) {
            return Outcome::Delivered {
                status,
                reply: None,
            };
        }
        return match binding::headers_to_event(headers, body.to_vec()) {
            Ok(reply) => Outcome::Delivered {
                status,
                reply: Some(Box::new(reply)),
            },
            // A reply we cannot read would be silently lost: treat it as a failed attempt.
            Err(e) => Outcome::Failed(Failure {
                status: Some(status),
                body,
                retry_after: None,
                retryable: true,
                reason: format!("malformed reply event: {e}"),
            }),
        };
    }
    let retry_after = if status == 429 || status == 503 {
        headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after)
    } else {
        None
    };
    Outcome::Failed(Failure {
        status: Some(status),
        retryable: is_retryable(status),
        reason: format!("recipient answered {status}"),
        body,
        retry_after,
    })
}

fn carries_event(headers: &HeaderMap, body: &Bytes) -> bool {
    headers.contains_key("ce-specversion")
        || headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/cloudevents"))
        || !body.is_empty() && headers.contains_key("ce-id")
}

/// Retry-After is delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses_follow_the_spec_table() {
        for s in [404, 408, 409, 429, 500, 502, 503, 599, 600] {
            assert!(is_retryable(s), "{s}");
        }
        for s in [100, 301, 302, 307, 308, 400, 401, 403, 405, 413] {
            assert!(!is_retryable(s), "{s}");
        }
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        let future = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(100));
        let d = parse_retry_after(&future).unwrap();
        assert!(
            d > Duration::from_secs(90) && d <= Duration::from_secs(100),
            "{d:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn a_202_is_never_a_reply() {
        let mut h = HeaderMap::new();
        h.insert("ce-specversion", "1.0".parse().unwrap());
        h.insert("ce-id", "1".parse().unwrap());
        h.insert("ce-source", "/s".parse().unwrap());
        h.insert("ce-type", "t".parse().unwrap());
        assert!(matches!(
            classify(202, &h, Bytes::new(), true),
            Outcome::Delivered { reply: None, .. }
        ));
        assert!(matches!(
            classify(200, &h, Bytes::new(), true),
            Outcome::Delivered { reply: Some(_), .. }
        ));
        assert!(matches!(
            classify(200, &h, Bytes::new(), false),
            Outcome::Delivered { reply: None, .. }
        ));
    }
}
