//! What every check works with: the broker's ingress URL, the sink, the run's unique ids and
//! event types, the deadlines, and a sender that writes requests exactly as given (no
//! redirects followed, no SDK re-encoding).

use crate::adapter::{DeliverySpec, TriggerSpec};
use crate::sink::Sink;
use crate::wire;
use http::{HeaderMap, Method};
use std::collections::BTreeMap;
use std::time::Duration;
use url::Url;

/// `source` of every event the tool sends.
pub const SOURCE: &str = "/herald-conformance";

pub struct Ctx {
    pub broker: Url,
    pub sink: Sink,
    /// Unique to this run: every event id starts with it.
    pub run: String,
    pub client: reqwest::Client,
    /// How long a positive wait (a delivery, a retry) may take.
    pub timeout: Duration,
    /// How long a negative check waits for something that must not arrive.
    pub quiet: Duration,
    /// The broker's body limit, when known: a body above it must get 413.
    pub max_body_bytes: Option<usize>,
}

/// A request to send.
#[derive(Clone, Debug)]
pub struct Message {
    pub method: Method,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The broker's answer.
#[derive(Clone, Debug)]
pub struct Answered {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answered {
    pub fn accepted(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

impl std::fmt::Display for Answered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = self.body.trim();
        if body.is_empty() {
            write!(f, "{}", self.status)
        } else {
            let short: String = body.chars().take(120).collect();
            write!(f, "{} ({short})", self.status)
        }
    }
}

impl Message {
    /// A binary-mode CloudEvents 1.0 POST without data.
    pub fn binary(id: &str, ty: &str) -> Self {
        Self {
            method: Method::POST,
            headers: vec![
                ("ce-specversion".into(), "1.0".into()),
                ("ce-id".into(), id.into()),
                ("ce-source".into(), SOURCE.into()),
                ("ce-type".into(), ty.into()),
            ],
            body: Vec::new(),
        }
    }

    /// A structured-mode POST of this JSON text.
    pub fn structured(json: impl Into<String>) -> Self {
        Self::raw(wire::STRUCTURED, json.into().into_bytes())
    }

    /// A POST with this content type and body and no other header.
    pub fn raw(content_type: &str, body: Vec<u8>) -> Self {
        Self {
            method: Method::POST,
            headers: vec![("content-type".into(), content_type.into())],
            body,
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self
    }

    /// Binary-mode data: the body and its Content-Type.
    pub fn data(self, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        let mut m = self.header("content-type", content_type);
        m.body = body.into();
        m
    }

    pub fn method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }
}

impl Ctx {
    /// The event type of a topic; each topic's Trigger filters on it.
    pub fn ty(&self, topic: &str) -> String {
        format!("dev.herald.conformance.{topic}")
    }

    /// An event id unique to this run.
    pub fn id(&self, name: &str) -> String {
        format!("{}-{name}", self.run)
    }

    /// A Trigger `cf-{name}` for the events of `topic`, delivering to sink path `path`.
    pub fn trigger(
        &self,
        name: &str,
        topic: &str,
        path: &str,
        delivery: Option<DeliverySpec>,
    ) -> TriggerSpec {
        TriggerSpec {
            name: format!("cf-{name}"),
            filter: BTreeMap::from([("type".to_string(), self.ty(topic))]),
            subscriber: self.sink.url(path),
            delivery,
        }
    }

    /// Sends `m` to the broker.
    pub async fn send(&self, m: &Message) -> Result<Answered, String> {
        self.send_to(&self.broker, m).await
    }

    pub async fn send_to(&self, url: &Url, m: &Message) -> Result<Answered, String> {
        let mut request = self
            .client
            .request(m.method.clone(), url.clone())
            .body(m.body.clone());
        for (k, v) in &m.headers {
            request = request.header(k, v);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("no answer from {url}: {e}"))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap_or_default();
        Ok(Answered {
            status,
            headers,
            body,
        })
    }
}

/// "202" or why sending failed, for details.
pub fn describe(answer: &Result<Answered, String>) -> String {
    match answer {
        Ok(a) => a.to_string(),
        Err(e) => e.clone(),
    }
}
