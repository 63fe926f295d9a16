//! Shared helpers for the end-to-end tests: a scriptable CloudEvents subscriber (an axum server
//! on 127.0.0.1:0 that records every request and answers from a script), a Herald started
//! from inline YAML, and senders for the three ingress content modes.
//!
//! Synchronisation is always "wait for a condition with a deadline" (watch channels, never a
//! bare sleep); the only sleeps are the short quiet periods of negative checks, which state why.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::Bytes;
use cloudevents::binding::reqwest::RequestBuilderExt;
use cloudevents::{AttributesReader, Data, Event, EventBuilder, EventBuilderV10};
use herald_broker::serve::{self, RunningServer, ServeConfig};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use url::Url;

pub mod tansu;

pub use herald_test_support::in_ci;

/// Channels on the durable (sled) backend, its store in `dir`.
pub fn sled_channels(dir: &Path) -> herald_broker::backends::BackendsConfig {
    let mut channels = herald_broker::backends::BackendsConfig::default();
    channels.sled.data_dir = dir.join("data");
    channels
}

/// Channels on NATS JetStream at 127.0.0.1:4222, streams named `{prefix}{pid}`; `None` (the
/// test skips) when nothing listens there, which fails under CI=true.
pub async fn nats_channels(prefix: &str) -> Option<herald_broker::backends::BackendsConfig> {
    let url = "127.0.0.1:4222";
    if tokio::net::TcpStream::connect(url).await.is_err() {
        assert!(!in_ci(), "NATS JetStream is required in CI at {url}");
        eprintln!("skipping: no NATS at {url} (nats-server -js -a 127.0.0.1 -p 4222)");
        return None;
    }
    Some(herald_broker::backends::BackendsConfig {
        nats: herald_channels::NatsConfig {
            url: format!("nats://{url}"),
            stream_prefix: format!("{prefix}{}", std::process::id()),
            ..Default::default()
        },
        ..Default::default()
    })
}

/// How long any positive wait may take before the test fails. Generous: the machine is shared.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// Content types of the three ingress modes.
pub const STRUCTURED: &str = "application/cloudevents+json";
pub const BATCH: &str = "application/cloudevents-batch+json";

// ---------------------------------------------------------------------------------------------
// The test subscriber
// ---------------------------------------------------------------------------------------------

/// One request as the subscriber saw it.
#[derive(Clone, Debug)]
pub struct Received {
    /// The request parsed with `cloudevents::binding::http::to_event`, or why it failed.
    pub event: Result<Event, String>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub path: String,
    /// When the request (headers and body) had fully arrived.
    pub at: Instant,
}

impl Received {
    pub fn event(&self) -> &Event {
        match &self.event {
            Ok(e) => e,
            Err(e) => panic!("the subscriber received something that is not a CloudEvent: {e}"),
        }
    }

    pub fn id(&self) -> String {
        self.event().id().to_string()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What the subscriber answers to one request.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: AnswerBody,
    /// Wait this long before answering.
    pub delay: Duration,
}

#[derive(Clone, Debug)]
pub enum AnswerBody {
    Empty,
    Bytes(Vec<u8>),
    /// An event in binary mode (ce-* headers, data as the body).
    Binary(Event),
    /// An event in structured mode (application/cloudevents+json).
    Structured(Event),
}

impl Answer {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: AnswerBody::Empty,
            delay: Duration::ZERO,
        }
    }

    pub fn accepted() -> Self {
        Self::status(202)
    }

    /// A 200 carrying `event` in binary mode: a reply.
    pub fn reply(event: Event) -> Self {
        Self::status(200).event(event)
    }

    /// A 200 carrying `event` in structured mode: a reply.
    pub fn reply_structured(event: Event) -> Self {
        Self {
            body: AnswerBody::Structured(event),
            ..Self::status(200)
        }
    }

    /// Carries `event` in binary mode with whatever status this answer has.
    pub fn event(mut self, event: Event) -> Self {
        self.body = AnswerBody::Binary(event);
        self
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = AnswerBody::Bytes(body.into());
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).expect("valid status");
        let mut response = match self.body {
            AnswerBody::Empty => Response::new(Body::empty()),
            AnswerBody::Bytes(b) => Response::new(Body::from(b)),
            AnswerBody::Binary(e) => e.into_response(),
            AnswerBody::Structured(e) => {
                let mut r = Response::new(Body::from(serde_json::to_vec(&e).unwrap()));
                r.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static(STRUCTURED),
                );
                r
            }
        };
        *response.status_mut() = status;
        for (k, v) in self.headers {
            response.headers_mut().insert(
                HeaderName::try_from(k).expect("valid header name"),
                HeaderValue::try_from(v).expect("valid header value"),
            );
        }
        response
    }
}

/// Answers a request; the second argument is its attempt number: 1 + the number of earlier
/// requests carrying the same event id.
type Responder = Arc<dyn Fn(&Received, usize) -> Answer + Send + Sync>;

struct Inner {
    received: Mutex<Vec<Received>>,
    /// Number of requests received; waiters watch it.
    count: watch::Sender<usize>,
    /// Answers used in order, one per request, before the responder.
    script: Mutex<VecDeque<Answer>>,
    responder: Mutex<Responder>,
    /// While true, requests wait (after being recorded) before they are answered.
    held: watch::Sender<bool>,
}

/// A CloudEvents subscriber on 127.0.0.1:0 that records every request and answers from a
/// script: first the queued answers, then the responder (202 unless told otherwise).
pub struct Subscriber {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Subscriber {
    pub async fn start() -> Self {
        let inner = Arc::new(Inner {
            received: Mutex::new(Vec::new()),
            count: watch::channel(0).0,
            script: Mutex::new(VecDeque::new()),
            responder: Mutex::new(Arc::new(|_: &Received, _| Answer::accepted())),
            held: watch::channel(false).0,
        });
        let app = Router::new().fallback(receive).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            addr,
            inner,
            server,
        }
    }

    /// The subscriber's URL (any path is accepted and recorded).
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn url_path(&self, path: &str) -> String {
        format!("http://{}/{}", self.addr, path.trim_start_matches('/'))
    }

    /// Queues answers, used one per request in order before the responder.
    pub fn script(&self, answers: impl IntoIterator<Item = Answer>) {
        self.inner.script.lock().unwrap().extend(answers);
    }

    /// How requests are answered once the script is used up; `f` gets the request and its
    /// attempt number (1 for the first request with this event id).
    pub fn respond_with(&self, f: impl Fn(&Received, usize) -> Answer + Send + Sync + 'static) {
        *self.inner.responder.lock().unwrap() = Arc::new(f);
    }

    /// Requests arriving from now on are recorded, then wait until [`Subscriber::release`].
    pub fn hold(&self) {
        self.inner.held.send_replace(true);
    }

    pub fn release(&self) {
        self.inner.held.send_replace(false);
    }

    pub fn received(&self) -> Vec<Received> {
        self.inner.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.inner.received.lock().unwrap().len()
    }

    pub fn events(&self) -> Vec<Event> {
        self.received().iter().map(|r| r.event().clone()).collect()
    }

    pub fn ids(&self) -> Vec<String> {
        self.received().iter().map(Received::id).collect()
    }

    /// The requests carrying event `id`, in arrival order.
    pub fn attempts(&self, id: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.event.as_ref().is_ok_and(|e| e.id() == id))
            .collect()
    }

    /// Waits until `pred` holds for the requests received so far; panics with `what` and
    /// what did arrive when `deadline` passes first.
    pub async fn wait_until(
        &self,
        what: &str,
        deadline: Duration,
        pred: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let mut rx = self.inner.count.subscribe();
        let wait = async {
            loop {
                // Mark the current value seen before looking, so a request recorded between
                // the look and the await still wakes us.
                rx.borrow_and_update();
                let snapshot = self.received();
                if pred(&snapshot) {
                    return snapshot;
                }
                rx.changed().await.expect("subscriber alive");
            }
        };
        match tokio::time::timeout(deadline, wait).await {
            Ok(r) => r,
            Err(_) => panic!(
                "subscriber {}: timed out after {deadline:?} waiting for {what}; received {} \
                 request(s): {:?}",
                self.addr,
                self.count(),
                describe(&self.received())
            ),
        }
    }

    /// Waits for at least `count` requests.
    pub async fn wait_for(&self, count: usize, deadline: Duration) -> Vec<Received> {
        self.wait_until(&format!("{count} request(s)"), deadline, |r| {
            r.len() >= count
        })
        .await
    }

    /// Waits for an event with this id; returns everything received up to now.
    pub async fn wait_for_id(&self, id: &str, deadline: Duration) -> Vec<Received> {
        self.wait_until(&format!("event id {id:?}"), deadline, |r| {
            r.iter()
                .any(|r| r.event.as_ref().is_ok_and(|e| e.id() == id))
        })
        .await
    }

    /// Negative check: after `quiet`, still exactly `expected` requests. Only for proving that
    /// nothing *more* arrives; `reason` says why waiting `quiet` is long enough.
    pub async fn assert_no_more(&self, expected: usize, quiet: Duration, reason: &str) {
        tokio::time::sleep(quiet).await;
        let got = self.received();
        assert_eq!(
            got.len(),
            expected,
            "expected exactly {expected} request(s) after a quiet period of {quiet:?} ({reason}); \
             got {:?}",
            describe(&got)
        );
    }
}

/// `id (type)` of each request, for failure messages.
pub fn describe(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| match &r.event {
            Ok(e) => format!("{} ({})", e.id(), e.ty()),
            Err(e) => format!("<not an event: {e}>"),
        })
        .collect()
}

async fn receive(State(inner): State<Arc<Inner>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let received = Received {
        event: cloudevents::binding::http::to_event(&parts.headers, body.to_vec())
            .map_err(|e| e.to_string()),
        headers: parts.headers,
        body,
        path: parts.uri.path().to_string(),
        at: Instant::now(),
    };
    let answer = {
        let mut all = inner.received.lock().unwrap();
        let id = received.event.as_ref().ok().map(|e| e.id().to_string());
        let attempt = 1 + all
            .iter()
            .filter(|r| r.event.as_ref().ok().map(|e| e.id().to_string()) == id)
            .count();
        let scripted = inner.script.lock().unwrap().pop_front();
        let answer = match scripted {
            Some(a) => a,
            None => {
                let responder = inner.responder.lock().unwrap().clone();
                responder(&received, attempt)
            }
        };
        all.push(received);
        answer
    };
    inner.count.send_modify(|n| *n += 1);
    let mut held = inner.held.subscribe();
    let _ = held.wait_for(|h| !*h).await;
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    answer.into_response()
}

// ---------------------------------------------------------------------------------------------
// Herald
// ---------------------------------------------------------------------------------------------

/// ServeConfig for tests: an ephemeral port, otherwise the defaults.
pub fn config() -> ServeConfig {
    ServeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    }
}

/// One delivery in flight per Trigger, so arrival order and "nothing more arrived" checks
/// are deterministic.
pub fn sequential() -> ServeConfig {
    ServeConfig {
        max_in_flight: 1,
        ..config()
    }
}

/// Loads `yaml` and starts Herald with `config`; every Trigger must be ready.
pub async fn start_with(yaml: &str, config: ServeConfig) -> RunningServer {
    let resources = herald_core::load_str(Path::new("test.yaml"), yaml)
        .unwrap_or_else(|e| panic!("test YAML does not load: {e}\n{yaml}"));
    let server = serve::start(&resources, config)
        .await
        .unwrap_or_else(|e| panic!("Herald does not start: {e}"));
    assert!(
        server.warnings.is_empty(),
        "Triggers not ready: {:?}",
        server.warnings
    );
    server
}

pub async fn start(yaml: &str) -> RunningServer {
    start_with(yaml, config()).await
}

/// A Broker manifest; `spec` is YAML indented by four spaces under `spec:` (or empty).
pub fn broker(namespace: &str, name: &str, spec: &str) -> String {
    let spec = if spec.trim().is_empty() {
        "spec: {}".to_string()
    } else {
        format!("spec:\n{spec}")
    };
    format!(
        "---\napiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: {name}\n  \
         namespace: {namespace}\n{spec}\n"
    )
}

/// Broker `ns/b` with Trigger `t` to `sub` and the given delivery (YAML flow-mapping content).
pub fn one_trigger(sub: &Subscriber, delivery: &str) -> String {
    format!(
        r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: b, namespace: ns}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: t, namespace: ns}}
spec:
  broker: b
  subscriber: {{uri: "{}"}}
  delivery: {{{delivery}}}
"#,
        sub.url()
    )
}

// ---------------------------------------------------------------------------------------------
// Events and senders
// ---------------------------------------------------------------------------------------------

pub const SOURCE: &str = "/herald/tests";

/// A minimal valid event.
pub fn event(id: &str, ty: &str) -> Event {
    EventBuilderV10::new()
        .id(id)
        .source(SOURCE)
        .ty(ty)
        .build()
        .unwrap()
}

/// An event with JSON data and extensions.
pub fn rich_event(id: &str, ty: &str, extensions: &[(&str, &str)]) -> Event {
    let mut b = EventBuilderV10::new()
        .id(id)
        .source("/shop/checkout")
        .ty(ty)
        .subject("order-42")
        .data(
            "application/json",
            serde_json::json!({"order": 42, "items": ["a", "b"], "note": "ünïcødé"}),
        );
    for (k, v) in extensions {
        b = b.extension(k, *v);
    }
    b.build().unwrap()
}

/// The event's data as bytes, whichever form the SDK holds it in.
pub fn data_bytes(event: &Event) -> Option<Vec<u8>> {
    event.data().map(|d| match d {
        Data::Binary(b) => b.clone(),
        Data::String(s) => s.clone().into_bytes(),
        Data::Json(v) => serde_json::to_vec(v).unwrap(),
    })
}

/// The event's data parsed as JSON.
pub fn data_json(event: &Event) -> Option<serde_json::Value> {
    data_bytes(event).map(|b| serde_json::from_slice(&b).expect("data is JSON"))
}

/// An extension's value as a string (binary mode carries every extension as a string).
pub fn ext(event: &Event, name: &str) -> Option<String> {
    event.extension(name).map(|v| v.to_string())
}

/// Asserts `got` is `want` as a subscriber sees it: same core attributes, data and extensions
/// (compared as strings), and no knativebrokerttl.
pub fn assert_same_event(got: &Event, want: &Event) {
    assert_eq!(got.id(), want.id(), "id");
    assert_eq!(got.ty(), want.ty(), "type of {}", want.id());
    assert_eq!(got.source(), want.source(), "source of {}", want.id());
    assert_eq!(got.subject(), want.subject(), "subject of {}", want.id());
    assert_eq!(got.time(), want.time(), "time of {}", want.id());
    assert_eq!(
        got.datacontenttype(),
        want.datacontenttype(),
        "datacontenttype of {}",
        want.id()
    );
    assert_eq!(data_bytes(got).is_some(), data_bytes(want).is_some());
    if want.datacontenttype().is_some_and(|ct| ct.contains("json")) {
        assert_eq!(data_json(got), data_json(want), "data of {}", want.id());
    } else {
        assert_eq!(data_bytes(got), data_bytes(want), "data of {}", want.id());
    }
    let mut got_ext: Vec<(String, String)> = got
        .iter_extensions()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut want_ext: Vec<(String, String)> = want
        .iter_extensions()
        .filter(|(k, _)| *k != "knativebrokerttl")
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    got_ext.sort();
    want_ext.sort();
    assert_eq!(got_ext, want_ext, "extensions of {}", want.id());
}

/// An ingress response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn retry_after(&self) -> Option<&str> {
        self.headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn finish(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.expect("the ingress answers");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.unwrap_or_default();
    Reply {
        status,
        headers,
        body,
    }
}

/// POSTs `event` in binary mode.
pub async fn send_binary(url: &Url, event: &Event) -> Reply {
    finish(client().post(url.clone()).event(event.clone()).unwrap()).await
}

/// POSTs `event` in structured mode.
pub async fn send_structured(url: &Url, event: &Event) -> Reply {
    post(url, STRUCTURED, serde_json::to_vec(event).unwrap()).await
}

/// POSTs `events` as a batch.
pub async fn send_batch(url: &Url, events: &[Event]) -> Reply {
    post(url, BATCH, serde_json::to_vec(events).unwrap()).await
}

/// POSTs a body with a content type.
pub async fn post(url: &Url, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
    finish(
        client()
            .post(url.clone())
            .header(http::header::CONTENT_TYPE, content_type)
            .body(body.into()),
    )
    .await
}

/// POSTs with arbitrary headers (binary mode written by hand).
pub async fn post_with_headers(url: &Url, headers: &[(&str, &str)], body: Vec<u8>) -> Reply {
    let mut request = client().post(url.clone()).body(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    finish(request).await
}

/// Sends `event` in binary mode and asserts it was accepted.
pub async fn accept(url: &Url, event: &Event) {
    let r = send_binary(url, event).await;
    assert_eq!(r.status, 202, "event {} not accepted: {r:?}", event.id());
}

/// Sends a raw HTTP/1.1 request over TCP and returns the status code and the response text.
/// Used for chunked bodies (no Content-Length), which reqwest cannot send without its
/// `stream` feature.
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    // The request says `Connection: close`, so the server closes after its answer; a server
    // that answers early may reset the rest, hence reading until EOF or error.
    let _ = tokio::time::timeout(DEADLINE, async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"));
    (status, text)
}

/// A chunked POST of `body` to `path` with extra header lines (each ending in \r\n).
pub fn chunked_request(addr: SocketAddr, path: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n{headers}\r\n"
    )
    .into_bytes();
    for chunk in body.chunks(100) {
        req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend_from_slice(chunk);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    req
}

static FENCES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Sends a `fence` event (binary mode) and waits until `sub` has received it. With
/// `max_in_flight: 1` a Trigger delivers strictly in log order, one at a time, so once the
/// fence arrives every matching event published before it has arrived too. Returns the fence's
/// id.
pub async fn fence(url: &Url, sub: &Subscriber) -> String {
    let n = FENCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = format!("fence-{n}");
    accept(url, &event(&id, "fence")).await;
    sub.wait_for_id(&id, DEADLINE).await;
    id
}

/// Ids of the requests that are not fences.
pub fn non_fence_ids(sub: &Subscriber) -> Vec<String> {
    sub.events()
        .iter()
        .filter(|e| e.ty() != "fence")
        .map(|e| e.id().to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The live plane
// ---------------------------------------------------------------------------------------------

/// Applies one resource written as YAML through the data plane's apply path (as the admin
/// API does).
pub async fn apply_yaml(
    server: &RunningServer,
    yaml: &str,
) -> Result<herald_broker::plane::Applied, herald_broker::plane::ApplyError> {
    let resource =
        herald_core::load_resource("test", yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    server
        .plane()
        .apply(resource, herald_broker::plane::Owner::Api)
        .await
}

/// Condition `kind` (e.g. `Ready`) of resource `ns/name`, as its status shows it (`null`
/// when absent).
pub async fn condition_of(
    server: &RunningServer,
    resource: herald_core::Kind,
    name: &str,
    kind: &str,
) -> serde_json::Value {
    let view = server
        .plane()
        .get(resource, &herald_core::ResourceKey::new("ns", name))
        .await
        .unwrap_or_else(|| panic!("{resource} {name} is not there"));
    view.object["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind).cloned())
        .unwrap_or_default()
}
