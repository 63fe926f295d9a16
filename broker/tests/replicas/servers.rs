//! The backend servers the process tests need: the shared NATS JetStream (and its streams),
//! and private tansu (Kafka API) brokers (herald-test-support's). A missing server fails a test under CI=true and
//! skips it with a notice otherwise.

use super::in_ci;
use std::time::Duration;

pub const NATS_URL: &str = "nats://127.0.0.1:4222";
pub const NATS_ADDR: &str = "127.0.0.1:4222";

/// Whether `what` is usable; when it is not, fails under CI=true and otherwise prints a
/// skip notice.
pub fn available(test: &str, what: &str, ok: bool) -> bool {
    if !ok {
        assert!(
            !in_ci(),
            "{test}: {what} is not available and CI=true: failing instead of skipping"
        );
        eprintln!("SKIPPED {test}: {what} is not available (set CI=true to make this a failure)");
    }
    ok
}

/// Whether the shared NATS at [`NATS_URL`] listens (see [`available`]).
pub fn shared_nats_available(test: &str) -> bool {
    let ok =
        std::net::TcpStream::connect_timeout(&NATS_ADDR.parse().unwrap(), Duration::from_secs(2))
            .is_ok();
    available(test, &format!("NATS at {NATS_URL}"), ok)
}

/// The JetStream stream Herald keeps a Broker's events in.
pub fn stream_name(namespace: &str, broker: &str) -> String {
    format!("HERALD_{namespace}_{broker}")
}

/// Deletes a test's stream when created (a leftover of an earlier run with the same pid) and
/// when dropped, also after a failure.
pub struct StreamCleanup {
    url: String,
    stream: String,
}

impl StreamCleanup {
    pub fn new(url: &str, stream: String) -> Self {
        let cleanup = Self {
            url: url.to_string(),
            stream,
        };
        cleanup.delete();
        cleanup
    }

    fn delete(&self) {
        let (url, stream) = (self.url.clone(), self.stream.clone());
        // Its own thread and runtime: this runs from Drop, possibly inside a runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let connect = async_nats::ConnectOptions::new()
                    .connection_timeout(Duration::from_secs(3))
                    .connect(url.as_str());
                if let Ok(Ok(client)) = tokio::time::timeout(Duration::from_secs(5), connect).await
                {
                    let js = async_nats::jetstream::new(client);
                    let _ = tokio::time::timeout(Duration::from_secs(5), js.delete_stream(&stream))
                        .await;
                    // The Broker's parking stream beside it.
                    if let Some(rest) = stream.strip_prefix("HERALD_") {
                        let parked = format!("HERALD_PARKED_{rest}");
                        let _ =
                            tokio::time::timeout(Duration::from_secs(5), js.delete_stream(parked))
                                .await;
                    }
                }
            })
        })
        .join();
    }
}

impl Drop for StreamCleanup {
    fn drop(&mut self) {
        self.delete();
    }
}

/// Private tansu (Kafka API) brokers: one per test, on a fresh store.
// Each test binary uses a part of this module.
#[allow(unused_imports)]
pub use herald_test_support::tansu::{self, Tansu};

/// Messages in the stream, and per consumer (pending, ack-pending).
pub async fn stream_state(
    url: &str,
    stream: &str,
) -> (u64, std::collections::BTreeMap<String, (u64, usize)>) {
    use futures::StreamExt;
    let client = async_nats::connect(url).await.expect("NATS connects");
    let js = async_nats::jetstream::new(client);
    let mut s = js
        .get_stream(stream)
        .await
        .unwrap_or_else(|e| panic!("stream {stream} exists: {e}"));
    let messages = s.info().await.unwrap().state.messages;
    let mut consumers = std::collections::BTreeMap::new();
    let mut list = s.consumers();
    while let Some(info) = list.next().await {
        let info = info.unwrap();
        consumers.insert(info.name.clone(), (info.num_pending, info.num_ack_pending));
    }
    (messages, consumers)
}

/// Whether JetStream at `url` holds `stream`.
pub async fn stream_exists(url: &str, stream: &str) -> bool {
    let client = async_nats::connect(url).await.expect("NATS connects");
    async_nats::jetstream::new(client)
        .get_stream(stream)
        .await
        .is_ok()
}
