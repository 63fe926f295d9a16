//! What the source tests share: a real HTTP sink on 127.0.0.1 that records what it receives,
//! and sources run the way the data plane runs them.

#![allow(dead_code)]

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use herald_core::{load_resource, Check, Resource};
use herald_dispatcher::{DeliveryEngine, EngineConfig};
use herald_sources::{Sink, SourceEnv};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use url::Url;

/// One request the sink received.
#[derive(Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Answered 503.
    pub refused: bool,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub struct TestSink {
    pub url: Url,
    pub rx: mpsc::UnboundedReceiver<Received>,
    refusing: Arc<Mutex<Refusing>>,
}

/// Which requests a [`TestSink`] answers 503 (it records every request either way).
#[derive(Clone, Debug, Default)]
pub enum Refusing {
    #[default]
    Nothing,
    Everything,
    /// Events with these `ce-id`s.
    Ids(HashSet<String>),
}

impl Refusing {
    fn refuses(&self, headers: &HeaderMap) -> bool {
        match self {
            Refusing::Nothing => false,
            Refusing::Everything => true,
            Refusing::Ids(ids) => headers
                .get("ce-id")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|id| ids.contains(id)),
        }
    }
}

type SinkState = (mpsc::UnboundedSender<Received>, Arc<Mutex<Refusing>>);

impl TestSink {
    pub async fn start() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let refusing = Arc::new(Mutex::new(Refusing::Nothing));
        let app =
            axum::Router::new()
                .route(
                    "/",
                    post(
                        |State((tx, refusing)): State<SinkState>,
                         headers: HeaderMap,
                         body: Bytes| async move {
                            let refused = refusing.lock().unwrap().refuses(&headers);
                            let _ = tx.send(Received {
                                headers,
                                body,
                                refused,
                            });
                            if refused {
                                StatusCode::SERVICE_UNAVAILABLE
                            } else {
                                StatusCode::ACCEPTED
                            }
                        },
                    ),
                )
                .with_state((tx, refusing.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, rx, refusing }
    }

    /// From now on answers these requests 503.
    pub fn refuse(&self, what: Refusing) {
        *self.refusing.lock().unwrap() = what;
    }

    /// The next request, within `deadline`.
    pub async fn next(&mut self, deadline: Duration) -> Received {
        tokio::time::timeout(deadline, self.rx.recv())
            .await
            .expect("the sink received nothing in time")
            .expect("sink open")
    }

    pub fn try_next(&mut self) -> Option<Received> {
        self.rx.try_recv().ok()
    }
}

/// A source running under `supervise`, as the data plane runs it.
pub struct Running {
    pub stop: CancellationToken,
    /// What its sink did with its events.
    pub counts: Arc<herald_sources::SinkCounts>,
    pub health: watch::Receiver<Check>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }

    pub async fn until_ok(&mut self, deadline: Duration) {
        tokio::time::timeout(deadline, self.health.wait_for(|c| c.is_ok()))
            .await
            .expect("the source did not become ready in time")
            .unwrap();
    }
}

pub fn resource(yaml: &str) -> Resource {
    load_resource("test.yaml", yaml).unwrap_or_else(|e| panic!("{e}"))
}

pub fn run(resource: Resource, sink: &Url, env: Arc<SourceEnv>) -> Running {
    let engine = DeliveryEngine::new(EngineConfig::default()).unwrap();
    let sink = Sink::to_url(engine, resource.kind(), resource.key(), sink.clone());
    supervised(resource, sink, env)
}

/// Runs `resource` as `run` does, under its own `spec.delivery` (its dead-letter sink must be
/// a `uri`).
pub fn run_with_delivery(resource: Resource, sink: &Url, env: Arc<SourceEnv>) -> Running {
    let engine = DeliveryEngine::new(EngineConfig::default()).unwrap();
    let (_, delivery, _) = herald_sources::sink_parts(&resource).expect("a source");
    let delivery = delivery.cloned().unwrap_or_default();
    let dls = delivery
        .dead_letter_sink
        .as_ref()
        .map(|d| Url::parse(d.uri.as_deref().expect("a uri dead-letter sink")).unwrap());
    let sink = Sink::new(
        engine,
        resource.kind(),
        resource.key(),
        sink.clone(),
        &delivery,
        dls,
        Default::default(),
    );
    supervised(resource, sink, env)
}

fn supervised(resource: Resource, sink: Sink, env: Arc<SourceEnv>) -> Running {
    let counts = sink.counts();
    let stop = CancellationToken::new();
    let (health_tx, health) = watch::channel(Check::unknown("Starting", ""));
    let task = tokio::spawn(herald_sources::supervise(
        resource,
        env,
        sink,
        stop.clone(),
        health_tx,
    ));
    Running {
        stop,
        counts,
        health,
        task,
    }
}

pub use herald_test_support::in_ci;

/// Whether NATS listens on 127.0.0.1:4222; in CI its absence fails the test.
pub async fn nats_up() -> bool {
    let up = tokio::net::TcpStream::connect("127.0.0.1:4222")
        .await
        .is_ok();
    assert!(
        up || !in_ci(),
        "NATS is not running on 127.0.0.1:4222 (scripts/test-deps.sh)"
    );
    if !up {
        eprintln!("skipped: no NATS on 127.0.0.1:4222");
    }
    up
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}
