//! One delivery attempt over HTTP, in binary or structured mode per the route's
//! `delivery.format`, and the classification of its outcome per the Knative data-plane
//! contract. The event goes out as it was accepted ([`WireEvent`]): attribute strings, data
//! bytes, and the W3C trace context that came with it as `traceparent`/`tracestate` headers.

use crate::client::{HttpClient, SendError};
use crate::redact::{self, Redacted};
use bytes::Bytes;
use herald_channels::event::json;
use herald_channels::{binding, TraceContext, WireEvent};
use herald_core::DeliveryFormat;
use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use std::time::{Duration, SystemTime};
use url::Url;

/// Content type of a structured-mode (JSON format) CloudEvent.
pub const STRUCTURED_CONTENT_TYPE: &str = binding::STRUCTURED_CONTENT_TYPE;

/// `Prefer`, which asks for a reply (not among `http`'s constants).
const PREFER: HeaderName = HeaderName::from_static("prefer");

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
    /// An extension the event keeps but the request leaves out (the broker TTL, which
    /// subscribers never see).
    pub omit: Option<&'a str>,
}

/// Sends the event once, in binary or structured mode per `format`. With `want_reply`, the
/// request carries `Prefer: reply` and a 200 response holding a CloudEvent is returned as
/// the reply.
pub async fn send(client: &HttpClient, r: &Request<'_>) -> Outcome {
    let Request {
        url,
        event,
        format,
        timeout,
        want_reply,
        authorization,
        trace,
        omit,
    } = *r;
    let body = match format {
        DeliveryFormat::Binary => event.body_bytes().unwrap_or_default(),
        DeliveryFormat::Json => Bytes::from(json::to_vec_without(event, omit)),
    };
    let mut request = match client.request_to(url, body) {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Failed(Failure::transport(format!(
                "cannot send to {}: {e}",
                Redacted(url)
            )))
        }
    };
    let headers = request.headers_mut();
    if want_reply {
        headers.insert(PREFER, HeaderValue::from_static("reply"));
    }
    if let Some(value) = authorization {
        match HeaderValue::from_str(value) {
            Ok(v) => {
                headers.insert(AUTHORIZATION, v);
            }
            Err(_) => {
                return Outcome::Failed(Failure::transport(format!(
                    "the credentials for {} are not a valid Authorization header",
                    Redacted(url)
                )))
            }
        }
    }
    match trace {
        Some(t) => write_trace(t, headers),
        None => trace_headers(event, headers),
    }
    match format {
        DeliveryFormat::Binary => attribute_headers(event, omit, headers),
        DeliveryFormat::Json => structured_content_type(headers),
    }
    match client.send(request, timeout).await {
        None => Outcome::Failed(Failure::transport(format!(
            "no response from {} within {timeout:?}",
            Redacted(url)
        ))),
        Some(Err(e @ SendError::Request(_))) => Outcome::Failed(Failure::transport(format!(
            "request to {} failed: {}",
            Redacted(url),
            redact::urls_in(&e.to_string())
        ))),
        Some(Err(e @ SendError::Body(_))) => Outcome::Failed(Failure::transport(format!(
            "reading the response of {} failed: {}",
            Redacted(url),
            redact::urls_in(&e.to_string())
        ))),
        Some(Ok(response)) => classify(
            response.status,
            &response.headers,
            response.body,
            want_reply,
        ),
    }
}

/// The headers of a binary-mode message: the trace context, then the percent-encoded `ce-`
/// headers (the HTTP binding's rule), so attribute values with line breaks or non-ASCII
/// characters arrive exactly as sent and can never add headers of their own; the body goes
/// with it as [`WireEvent::body_bytes`], under its (possibly implied) content type.
pub fn binary_headers(event: &WireEvent, headers: &mut HeaderMap) {
    trace_headers(event, headers);
    attribute_headers(event, None, headers);
}

fn attribute_headers(event: &WireEvent, omit: Option<&str>, headers: &mut HeaderMap) {
    binding::for_each_attribute_header(event, omit, |name, value| {
        headers.append(name, value);
    });
}

/// The headers of a structured-mode message (the JSON format as accepted, see
/// [`json::to_vec`]): the trace context and the content type.
pub fn structured_headers(event: &WireEvent, headers: &mut HeaderMap) {
    trace_headers(event, headers);
    structured_content_type(headers);
}

fn structured_content_type(headers: &mut HeaderMap) {
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(STRUCTURED_CONTENT_TYPE),
    );
}

/// Binary mode on a reqwest request (`herald send`, the transform endpoint): the headers of
/// [`binary_headers`] and the data as sent.
pub fn binary_request(
    request: reqwest::RequestBuilder,
    event: &WireEvent,
) -> reqwest::RequestBuilder {
    let mut headers = HeaderMap::new();
    binary_headers(event, &mut headers);
    let request = request.headers(headers);
    match event.body_bytes() {
        Some(body) => request.body(body),
        None => request,
    }
}

/// Structured mode on a reqwest request: the JSON format as accepted (see [`json::to_vec`]).
pub fn structured_request(
    request: reqwest::RequestBuilder,
    event: &WireEvent,
) -> reqwest::RequestBuilder {
    let mut headers = HeaderMap::new();
    structured_headers(event, &mut headers);
    request.headers(headers).body(json::to_vec(event))
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

fn trace_headers(event: &WireEvent, headers: &mut HeaderMap) {
    let carried = event.trace();
    // Borrowed when the event carries its context (the common case): no copy per delivery.
    let owned;
    let trace = if carried.traceparent.is_some() {
        carried
    } else {
        owned = trace_of(event);
        &owned
    };
    write_trace(trace, headers);
}

fn write_trace(trace: &TraceContext, headers: &mut HeaderMap) {
    for (name, value) in trace.headers() {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.append(HeaderName::from_static(name), v);
        }
    }
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
        return match binding::headers_to_event(headers, body.clone()) {
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
