//! `herald_channel_lag` on NATS JetStream and Kafka (memory and sled: tests/metrics.rs): with
//! a subscriber that answers 503 (its retries pending), N accepted events are N events of
//! lag for the Trigger; once it answers, the lag returns to 0. Then `herald replay` from
//! the start follows the replay until the Trigger has caught up: it ends with its summary
//! line, and by then the subscriber has every event a second time.

mod replicas;

use axum::http::{HeaderMap, StatusCode};
use replicas::admin::*;
use replicas::servers::*;
use replicas::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(60);
const N: usize = 5;

/// A subscriber answering 503 until opened, then 200, counting what it took per event id.
struct Gate {
    url: String,
    open: AtomicBool,
    took: Mutex<HashMap<String, usize>>,
}

impl Gate {
    async fn start() -> Arc<Gate> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gate = Arc::new(Gate {
            url: format!("http://{}/", listener.local_addr().unwrap()),
            open: AtomicBool::new(false),
            took: Mutex::default(),
        });
        let state = gate.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap| {
            let gate = state.clone();
            async move {
                if !gate.open.load(Ordering::SeqCst) {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                let id = headers
                    .get("ce-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                *gate.took.lock().unwrap().entry(id).or_insert(0) += 1;
                StatusCode::OK
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        gate
    }

    fn took(&self, id: &str) -> usize {
        self.took.lock().unwrap().get(id).copied().unwrap_or(0)
    }
}

async fn lag(admin: &str, ns: &str) -> Option<f64> {
    let text = reqwest::get(format!("{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!(r#"herald_channel_lag{{kind="Trigger",namespace_name="{ns}",name="t"}} "#);
    text.lines()
        .find_map(|l| l.strip_prefix(&series)?.parse().ok())
}

/// Waits until the Trigger's lag is `want`.
async fn wait_lag(herald: &Replica, ns: &str, want: f64, what: &str) {
    let end = Instant::now() + WAIT;
    loop {
        let now = lag(&herald.admin, ns).await;
        if now == Some(want) {
            return;
        }
        assert!(
            Instant::now() < end,
            "{what}: herald_channel_lag is {now:?}, not {want}, after {WAIT:?}\n{}",
            herald.proc.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The run on one channel; `args` put the Broker on it, `first` is its first offset.
async fn lag_follows_a_stalled_subscriber(ns: &str, args: &[&str], first: &str) {
    let gate = Gate::start().await;
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    // Retries every 0.1 s, a long while: the events stay unacknowledged until the gate opens.
    let trigger = trigger_yaml_with_spec(
        ns,
        "t",
        &format!(
            "  broker: b\n  subscriber:\n    uri: {}\n  delivery:\n    retry: 1000\n    \
             backoffPolicy: linear\n    backoffDelay: PT0.01S\n    retryAfterMax: PT0.1S\n",
            gate.url
        ),
    );
    std::fs::write(
        config.join("herald.yaml"),
        format!("{}---\n{trigger}", broker_yaml(ns, "b", &[])),
    )
    .unwrap();
    let server = Replica::start(
        "herald",
        &config,
        &work.path().join("data"),
        (ns, "b"),
        args,
    )
    .await;
    Admin::new(&server.admin)
        .wait_ready("triggers", ns, "t", WAIT)
        .await;
    wait_lag(&server, ns, 0.0, "before any event").await;
    let ids: Vec<String> = (0..N).map(|i| format!("lag-{i}")).collect();
    for id in &ids {
        herald(&["send", "--to", &server.broker_url, "--id", id])
            .await
            .ok();
    }
    wait_lag(&server, ns, N as f64, "with the subscriber answering 503").await;
    assert!(ids.iter().all(|id| gate.took(id) == 0));

    gate.open.store(true, Ordering::SeqCst);
    wait_lag(&server, ns, 0.0, "once the subscriber answers").await;
    for id in &ids {
        assert_eq!(gate.took(id), 1, "{id}");
    }

    let broker = format!("{ns}/b");
    let run = herald(&[
        "replay",
        "--server",
        &server.admin,
        "--broker",
        &broker,
        "--trigger",
        "t",
        "--from",
        first,
    ])
    .await
    .ok();
    let summary = format!("replayed {N} of {N} event(s) to trigger {ns}/t: caught up");
    assert!(
        run.stdout.lines().any(|l| l == summary),
        "no {summary:?}: {run}"
    );
    // Not a terminal: no progress bar, nothing on stderr.
    assert!(run.stderr.trim().is_empty(), "{run}");
    for id in &ids {
        assert_eq!(gate.took(id), 2, "{id} after the replay: {run}");
    }
}

#[test]
fn channel_lag_on_nats() {
    const TEST: &str = "channel_lag_on_nats";
    if !shared_nats_available(TEST) {
        return;
    }
    run(async {
        let ns = format!("lag-nats-{}", std::process::id());
        let _cleanup = StreamCleanup::new(NATS_URL, stream_name(&ns, "b"));
        lag_follows_a_stalled_subscriber(&ns, &["--channel", "nats"], "1").await;
    });
}

#[cfg(feature = "kafka")]
#[test]
fn channel_lag_on_kafka() {
    const TEST: &str = "channel_lag_on_kafka";
    run(async {
        // A fresh sqlite store per run: offsets and groups of earlier runs cannot leak in.
        let Some(mut tansu) = Tansu::start(TEST).await else {
            return;
        };
        let bootstrap = tansu.bootstrap();
        let ns = format!("lag-kafka-{}", std::process::id());
        lag_follows_a_stalled_subscriber(
            &ns,
            &[
                "--channel",
                "kafka",
                "--kafka-bootstrap-servers",
                &bootstrap,
            ],
            "0",
        )
        .await;
        tansu.assert_alive();
    });
}
