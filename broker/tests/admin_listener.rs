//! The admin API on its own listener, over `herald serve` processes on every channel (memory,
//! sled, NATS, Kafka on a private tansu): ingress answers 404 for admin paths (so whoever reaches
//! ingress cannot replay or reconfigure), `herald replay` reaches the admin address, and a replay
//! past the head of the log (a later offset, a future time) is refused with 400 and moves
//! nothing: events sent afterwards are all delivered, exactly once.
//!
//! Needs NATS on 127.0.0.1:4222 and tansu for those two channels (a failure under CI=true, a
//! printed skip otherwise).

mod replicas;

use replicas::admin::*;
use replicas::servers::*;
use replicas::*;
use std::collections::HashSet;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn namespace(channel: &str) -> String {
    format!("al-{channel}-{}", std::process::id())
}

/// Sends `prefix-0..n`, each answered 202, and waits for all of them at the sink.
async fn send_and_see(
    herald: &Replica,
    sink: &Sink,
    publisher: &Publisher,
    prefix: &str,
    n: usize,
) -> HashSet<String> {
    let ids: HashSet<String> = publisher
        .post_accepted(&herald.broker_url, prefix, n, "to the running broker")
        .await
        .into_iter()
        .collect();
    sink.wait_for_or(&ids, WAIT, prefix, || herald.proc.log_tail())
        .await;
    ids
}

/// One channel's run: `args` put the Broker on it.
async fn admin_is_apart_and_replay_refuses_past_the_head(channel: &str, args: &[&str]) {
    let ns = namespace(channel);
    let _stream = (channel == "nats").then(|| StreamCleanup::new(NATS_URL, stream_name(&ns, "b")));
    let sink = Sink::start((0, 0)).await;
    let work = tempfile::tempdir().unwrap();
    let config = one_trigger_config(work.path(), &ns, &sink.url);
    let mut all = vec!["--channel", channel];
    all.extend_from_slice(args);
    let server = Replica::start(
        "herald",
        &config,
        &work.path().join("data"),
        (&ns, "b"),
        &all,
    )
    .await;
    assert_ne!(
        server.admin, server.base,
        "admin API and ingress share a listener"
    );
    Admin::new(&server.admin)
        .wait_ready("triggers", &ns, "t", WAIT)
        .await;
    let publisher = Publisher::new("/herald/tests/admin-listener");
    let mut sent = send_and_see(&server, &sink, &publisher, "before", 5).await;

    // Admin paths on the ingress port: not there.
    let http = reqwest::Client::new();
    let replay_on_ingress = http
        .post(format!("{}/admin/v1/replay", server.base))
        .json(&serde_json::json!({"broker": format!("{ns}/b"), "trigger": "t", "from": "0"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        replay_on_ingress.status(),
        404,
        "{channel}: replay on ingress"
    );
    let list_on_ingress = http
        .get(format!("{}{API}/brokers", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(list_on_ingress.status(), 404, "{channel}: list on ingress");

    // Past the head: refused, naming why.
    let broker = format!("{ns}/b");
    for from in ["1000000", "2999-01-01T00:00:00Z"] {
        let run = herald(&[
            "replay",
            "--server",
            &server.admin,
            "--broker",
            &broker,
            "--trigger",
            "t",
            "--from",
            from,
        ])
        .await
        .failed();
        eprintln!(
            "{channel}: herald replay --from {from}: {}",
            run.stderr.trim()
        );
        assert!(
            run.stderr.contains("400") && run.stderr.contains("past the head"),
            "{channel}: {run}"
        );
    }

    // Nothing moved: what is sent now is delivered, and nothing twice.
    sent.extend(send_and_see(&server, &sink, &publisher, "after", 5).await);
    let counts = sink.counts();
    let unexpected: Vec<&String> = counts.keys().filter(|id| !sent.contains(*id)).collect();
    eprintln!(
        "SUMMARY admin_listener {channel}: sent={} delivered={} duplicates={}",
        sent.len(),
        counts.len(),
        duplicates(&counts)
    );
    assert!(unexpected.is_empty(), "{channel}: {unexpected:?}");
    assert_eq!(
        duplicates(&counts),
        0,
        "{channel}: a refused replay redelivered"
    );
}

#[test]
fn admin_is_apart_and_replay_refuses_past_the_head_on_memory() {
    run(admin_is_apart_and_replay_refuses_past_the_head(
        "memory",
        &[],
    ));
}

#[test]
fn admin_is_apart_and_replay_refuses_past_the_head_on_sled() {
    run(admin_is_apart_and_replay_refuses_past_the_head("sled", &[]));
}

#[test]
fn admin_is_apart_and_replay_refuses_past_the_head_on_nats() {
    const TEST: &str = "admin_is_apart_and_replay_refuses_past_the_head_on_nats";
    if !shared_nats_available(TEST) {
        return;
    }
    run(admin_is_apart_and_replay_refuses_past_the_head(
        "nats",
        &["--nats-url", NATS_URL],
    ));
}

#[test]
fn admin_is_apart_and_replay_refuses_past_the_head_on_kafka() {
    const TEST: &str = "admin_is_apart_and_replay_refuses_past_the_head_on_kafka";
    run(async {
        let Some(tansu) = Tansu::start(TEST).await else {
            return;
        };
        admin_is_apart_and_replay_refuses_past_the_head(
            "kafka",
            &["--kafka-bootstrap-servers", &tansu.bootstrap()],
        )
        .await;
    });
}
