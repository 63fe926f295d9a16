//! Fuzz target: Herald's ingress (`POST /{namespace}/{broker}`) on a memory channel, with
//! headers and body from the input in every mode (binary, structured, batch, other content
//! types). Every request must get an answer that is not a 5xx, and never panic.
//!
//! Input: byte 0 picks the content type, then header lines `name: value` up to an empty line,
//! then the body.
#![no_main]

use arc_swap::ArcSwap;
use axum::body::Body;
use herald_broker::ingress::{self, IngressState};
use herald_channels::{Channel, MemoryChannel, MemoryChannelConfig};
use herald_core::ResourceKey;
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tower::ServiceExt;

const CONTENT_TYPES: &[&str] = &[
    "",
    "application/json",
    "application/cloudevents+json",
    "application/cloudevents-batch+json",
    "application/cloudevents+json; charset=utf-8",
    "text/plain",
    "APPLICATION/CLOUDEVENTS+JSON",
];

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

fn router() -> axum::Router {
    let key = ResourceKey::new("ns", "b");
    let channel: Arc<dyn Channel> = Arc::new(MemoryChannel::new(
        &key,
        MemoryChannelConfig {
            capacity: 1_000_000,
            ..Default::default()
        },
    ));
    let brokers = Arc::new(ArcSwap::from_pointee(HashMap::from([(key, channel)])));
    ingress::router(IngressState {
        brokers,
        channels: Arc::new(ArcSwap::from_pointee(HashMap::new())),
        max_body_bytes: 1 << 20,
        max_batch_events: 100,
        body_timeout: Duration::from_secs(5),
        metrics: herald_core::metrics::Metrics::new(),
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (head, body) = match rest.windows(2).position(|w| w == b"\n\n") {
        Some(i) => (&rest[..i], &rest[i + 2..]),
        None => (rest, &[][..]),
    };
    let mut request = http::Request::builder().method("POST").uri("/ns/b");
    let ct = CONTENT_TYPES[pick as usize % CONTENT_TYPES.len()];
    if !ct.is_empty() {
        request = request.header("content-type", ct);
    }
    for line in head.split(|b| *b == b'\n') {
        let Some(i) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(&line[..i]),
            http::HeaderValue::from_bytes(line[i + 1..].trim_ascii()),
        ) else {
            continue;
        };
        request = request.header(name, value);
    }
    let Ok(request) = request.body(Body::from(body.to_vec())) else {
        return;
    };
    let status = runtime().block_on(async { router().oneshot(request).await.unwrap().status() });
    assert!(!status.is_server_error(), "ingress answered {status}");
});
