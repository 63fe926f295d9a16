//! The baseline: a bare HTTP forwarder that POSTs each request it receives to the sink with
//! the same pooled client settings Herald's dispatcher uses, and answers with the sink's
//! status. It is the least any HTTP broker must do per event: one hop in, one hop out.

use super::BenchError;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use tokio_util::sync::CancellationToken;

pub struct Forwarder {
    pub url: String,
    stop: CancellationToken,
}

impl Forwarder {
    pub async fn stop(self) {
        self.stop.cancel();
    }
}

#[derive(Clone)]
struct Target {
    client: reqwest::Client,
    sink: String,
}

pub async fn start(sink: String) -> Result<Forwarder, BenchError> {
    let defaults = herald_dispatcher::EngineConfig::default();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(defaults.pool_max_idle_per_host)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| BenchError::Start("forwarder".into(), e.to_string()))?;
    let app = Router::new()
        .route("/", post(forward))
        .with_state(Target { client, sink });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| BenchError::Start("forwarder".into(), e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| BenchError::Start("forwarder".into(), e.to_string()))?;
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(token.cancelled_owned())
            .await
    });
    Ok(Forwarder {
        url: format!("http://{addr}/"),
        stop,
    })
}

async fn forward(State(t): State<Target>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut request = t.client.post(&t.sink).body(body);
    for (name, value) in headers
        .iter()
        .filter(|(n, _)| n.as_str().starts_with("ce-") || *n == "content-type")
    {
        request = request.header(name, value);
    }
    match request.send().await {
        Ok(r) => StatusCode::from_u16(r.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY),
        Err(_) => StatusCode::BAD_GATEWAY,
    }
}
