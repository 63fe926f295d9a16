//! One delivery attempt over HTTP (CloudEvents binary mode) and the classification of its
//! outcome per the Knative data-plane contract.

use crate::redact::{self, Redacted};
use bytes::Bytes;
use cloudevents::{Data, Event};
use herald_channels::binding;
use herald_core::DeliveryFormat;
use http::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};
use std::time::{Duration, SystemTime};
use url::Url;

/// Content type of a structured-mode (JSON format) CloudEvent.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";

#[derive(Debug)]
pub enum Outcome {
    /// The recipient accepted the event; a 200 may carry a reply event.
    Delivered {
        reply: Option<Box<Event>>,
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

/// Which statuses are retried, per the data-plane spec's table: 404, 409, 429 and 5xx.
/// Other 4xx, and 1xx/3xx (reserved), are failures without retry.
pub fn is_retryable(status: u16) -> bool {
    matches!(status, 404 | 409 | 429) || (500..600).contains(&status)
}

/// Sends `event` to `url` once, in binary or structured mode per `format`. With
/// `want_reply`, the request carries `Prefer: reply` and a 200 response holding a CloudEvent
/// is returned as the reply.
pub async fn send(
    client: &reqwest::Client,
    url: &Url,
    event: &Event,
    format: DeliveryFormat,
    timeout: Duration,
    want_reply: bool,
) -> Outcome {
    let mut request = client.post(url.clone()).timeout(timeout);
    if want_reply {
        request = request.header("Prefer", "reply");
    }
    let encoded = match format {
        DeliveryFormat::Binary => binary_request(request, event),
        DeliveryFormat::Json => serde_json::to_vec(event).map(|body| {
            request
                .header(CONTENT_TYPE, STRUCTURED_CONTENT_TYPE)
                .body(body)
        }),
    };
    let request = match encoded {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Failed(Failure {
                retryable: false,
                ..Failure::transport(format!("cannot encode event: {e}"))
            })
        }
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
/// headers of their own. The SDK's request builder writes values verbatim.
pub fn binary_request(
    mut request: reqwest::RequestBuilder,
    event: &Event,
) -> Result<reqwest::RequestBuilder, serde_json::Error> {
    for (name, value) in binding::attribute_headers(event) {
        request = request.header(name, value);
    }
    let body = match event.data() {
        Some(Data::Binary(b)) => b.clone(),
        Some(Data::String(s)) => s.clone().into_bytes(),
        Some(Data::Json(v)) => serde_json::to_vec(v)?,
        None => return Ok(request),
    };
    Ok(request.body(body))
}

fn classify(status: u16, headers: &HeaderMap, body: Bytes, want_reply: bool) -> Outcome {
    if (200..300).contains(&status) {
        // Only a 200 carries a reply; a 202 must never be routed further.
        if status != 200 || !want_reply || !carries_event(headers, &body) {
            return Outcome::Delivered { reply: None };
        }
        return match binding::headers_to_event(headers, body.to_vec()) {
            Ok(reply) => Outcome::Delivered {
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
        for s in [404, 409, 429, 500, 502, 503, 599] {
            assert!(is_retryable(s), "{s}");
        }
        for s in [100, 301, 400, 401, 403, 405, 413] {
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
            Outcome::Delivered { reply: None }
        ));
        assert!(matches!(
            classify(200, &h, Bytes::new(), true),
            Outcome::Delivered { reply: Some(_) }
        ));
        assert!(matches!(
            classify(200, &h, Bytes::new(), false),
            Outcome::Delivered { reply: None }
        ));
    }
}
