//! The tool's own receiving sink: an HTTP server on a local port that records every request
//! (method, path, raw headers and body, arrival time) and answers each from a script kept per
//! event id, so one check can make a subscriber fail twice and then accept while another
//! replies with an event. Every Trigger the suite sets up points at a path of this sink.

use crate::wire::{self, WireEvent};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use url::Url;

/// One request as the sink saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
    /// The request read as a CloudEvent (`None`: not one), or why it could not be.
    pub event: Result<Option<WireEvent>, String>,
    /// 1 for the first request carrying this event id at this path, 2 for the next, ...
    pub attempt: usize,
}

impl Recorded {
    pub fn event(&self) -> Option<&WireEvent> {
        self.event.as_ref().ok().and_then(Option::as_ref)
    }

    pub fn id(&self) -> Option<&str> {
        self.event().and_then(WireEvent::id)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What the sink answers.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        for (k, v) in self.headers {
            if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
                response.headers_mut().append(k, v);
            }
        }
        response
    }
}

#[derive(Default)]
struct Inner {
    received: Vec<Recorded>,
    /// Answers per (path, event id), one per attempt; the last repeats.
    scripts: HashMap<(String, String), Vec<Answer>>,
}

/// The sink; dropping it stops the server.
pub struct Sink {
    pub addr: SocketAddr,
    /// The base URL Triggers are given (what the broker can reach).
    pub base: Url,
    inner: Arc<Mutex<Inner>>,
    count: watch::Sender<usize>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[derive(Clone)]
struct AppState {
    inner: Arc<Mutex<Inner>>,
    count: watch::Sender<usize>,
}

impl Sink {
    /// Listens on `listen`; `advertise` is the base URL brokers are told (default: the
    /// address it listens on).
    pub async fn start(listen: SocketAddr, advertise: Option<Url>) -> std::io::Result<Sink> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let base = advertise.unwrap_or_else(|| {
            Url::parse(&format!("http://{addr}/")).expect("a socket address makes a URL")
        });
        let inner = Arc::new(Mutex::new(Inner::default()));
        let count = watch::channel(0).0;
        let state = AppState {
            inner: inner.clone(),
            count: count.clone(),
        };
        let app = Router::new().fallback(receive).with_state(state);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Sink {
            addr,
            base,
            inner,
            count,
            server,
        })
    }

    /// The URL of `path` on this sink.
    pub fn url(&self, path: &str) -> Url {
        self.base
            .join(path.trim_start_matches('/'))
            .expect("a relative path joins")
    }

    /// Answers the requests at `path` carrying event `id` from `answers`, one per attempt,
    /// the last repeating; requests without a script get 202.
    pub fn script(&self, path: &str, id: &str, answers: Vec<Answer>) {
        self.lock()
            .scripts
            .insert((path.to_string(), id.to_string()), answers);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn received(&self) -> Vec<Recorded> {
        self.lock().received.clone()
    }

    /// The requests at `path` carrying event `id`, in arrival order.
    pub fn attempts(&self, path: &str, id: &str) -> Vec<Recorded> {
        self.lock()
            .received
            .iter()
            .filter(|r| r.path == path && r.id() == Some(id))
            .cloned()
            .collect()
    }

    /// Waits until `pick` finds something in what arrived so far, or `deadline` passes.
    pub async fn wait<T>(
        &self,
        deadline: Duration,
        pick: impl Fn(&[Recorded]) -> Option<T>,
    ) -> Option<T> {
        let mut rx = self.count.subscribe();
        let look = async {
            loop {
                // Seen before looking, so a request recorded meanwhile still wakes us.
                rx.borrow_and_update();
                if let Some(found) = pick(&self.lock().received) {
                    return found;
                }
                if rx.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(deadline, look).await.ok()
    }

    /// Waits for the `n`th request carrying `id` at `path`.
    pub async fn wait_attempt(
        &self,
        path: impl Into<String>,
        id: impl Into<String>,
        n: usize,
        deadline: Duration,
    ) -> Option<Recorded> {
        let (path, id) = (path.into(), id.into());
        self.wait(deadline, |all| {
            all.iter()
                .filter(|r| r.path == path && r.id() == Some(id.as_str()))
                .nth(n - 1)
                .cloned()
        })
        .await
    }

    /// Waits for the first request carrying `id` at `path`.
    pub async fn wait_event(
        &self,
        path: impl Into<String>,
        id: impl Into<String>,
        deadline: Duration,
    ) -> Option<Recorded> {
        self.wait_attempt(path, id, 1, deadline).await
    }
}

async fn receive(State(state): State<AppState>, request: Request) -> Response {
    let at = Instant::now();
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(_) => return Answer::status(400).into_response(),
    };
    let event = wire::decode(&parts.headers, &body);
    let path = parts.uri.path().to_string();
    let answer = {
        let mut inner = state.inner.lock().unwrap_or_else(|p| p.into_inner());
        let id = event
            .as_ref()
            .ok()
            .and_then(Option::as_ref)
            .and_then(|e| e.id())
            .map(str::to_string);
        let attempt = 1 + inner
            .received
            .iter()
            .filter(|r| r.path == path && id.is_some() && r.id() == id.as_deref())
            .count();
        let answer = id
            .as_ref()
            .and_then(|id| inner.scripts.get(&(path.clone(), id.clone())))
            .and_then(|s| s.get(attempt - 1).or(s.last()))
            .cloned()
            .unwrap_or_else(|| Answer::status(202));
        inner.received.push(Recorded {
            method: parts.method,
            path,
            headers: parts.headers,
            body,
            at,
            event,
            attempt,
        });
        answer
    };
    state.count.send_modify(|n| *n += 1);
    answer.into_response()
}
