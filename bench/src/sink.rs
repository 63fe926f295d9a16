//! The benchmark's subscriber: answers 202 at once and records, per event, the latency from
//! the sender's timestamp (the `benchts` extension) to arrival.

use super::BenchError;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;
use tokio::sync::Notify;

/// The clock every timestamp is measured against (one process, so one clock).
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

pub fn now_micros() -> u64 {
    epoch().elapsed().as_micros() as u64
}

pub struct Sink {
    url: String,
    pub state: Arc<SinkState>,
}

pub struct SinkState {
    pub received: AtomicU64,
    pub last_arrival_micros: AtomicU64,
    pub latencies: Mutex<Histogram<u64>>,
    pub arrived: Notify,
}

impl SinkState {
    /// Starts a new measurement window.
    pub fn reset(&self) {
        self.received.store(0, Ordering::SeqCst);
        self.latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reset();
    }
}

/// Latencies in µs, from 1 µs to 10 minutes, to 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid bounds")
}

impl Sink {
    pub async fn start() -> Result<Sink, BenchError> {
        let state = Arc::new(SinkState {
            received: AtomicU64::new(0),
            last_arrival_micros: AtomicU64::new(0),
            latencies: Mutex::new(latency_histogram()),
            arrived: Notify::new(),
        });
        let app = Router::new()
            .route("/", post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| BenchError::Start("sink".into(), e.to_string()))?;
        let url = format!(
            "http://{}/",
            listener
                .local_addr()
                .map_err(|e| BenchError::Start("sink".into(), e.to_string()))?
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Sink { url, state })
    }

    pub fn url(&self) -> String {
        self.url.clone()
    }
}

async fn receive(State(state): State<Arc<SinkState>>, headers: HeaderMap) -> StatusCode {
    let now = now_micros();
    if let Some(sent) = headers
        .get("ce-benchts")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        let _ = state
            .latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(now.saturating_sub(sent).max(1));
    }
    state.last_arrival_micros.fetch_max(now, Ordering::SeqCst);
    state.received.fetch_add(1, Ordering::SeqCst);
    state.arrived.notify_waiters();
    StatusCode::ACCEPTED
}
