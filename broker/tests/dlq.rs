//! The parking area of undeliverable events (`herald dlq list|show|redrive`), over real
//! `herald serve` processes: with the subscriber and the dead-letter sink both down an event
//! is parked, not lost; on the durable channel (sled) the list survives a restart; a redrive
//! delivers the event byte for byte once the subscriber is back and removes it from the
//! list; a Trigger asking for copies of dead-lettered events gets them listed too. On NATS
//! and Kafka (a private tansu) the list is kept in the backend: it survives a restart, `herald
//! dlq delete` discards entries, a redrive delivers exactly once, and entries past the
//! retention (`--dlq-retention`, or the Trigger's `herald.dev/dlq-retention`) expire, counted
//! in `herald_parked_expired_total`.

mod replicas;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use replicas::admin::*;
use replicas::servers::*;
use replicas::*;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);
const NS: &str = "dlq";

/// `(ce-id, body)` of one delivery.
type Delivered = (String, Vec<u8>);

/// A subscriber on a given port recording each delivery.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Delivered>>>);

impl Recorder {
    async fn start(port: u16) -> Recorder {
        let recorder = Recorder::default();
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .unwrap_or_else(|e| panic!("cannot listen on port {port}: {e}"));
        let app = axum::Router::new()
            .fallback(record)
            .with_state(recorder.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        recorder
    }

    fn received(&self) -> Vec<Delivered> {
        self.0.lock().unwrap().clone()
    }
}

async fn record(State(r): State<Recorder>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let id = headers
        .get("ce-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    r.0.lock().unwrap().push((id, body.to_vec()));
    StatusCode::ACCEPTED
}

/// Broker `default` and Trigger `orders` to `subscriber`, one retry, dead-letter sink `dls`.
fn write_config(dir: &Path, subscriber: &str, dls: &str, annotations: &str) {
    write_config_in(dir, NS, subscriber, dls, annotations)
}

/// Like `write_config`, in namespace `ns`.
fn write_config_in(dir: &Path, ns: &str, subscriber: &str, dls: &str, annotations: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let trigger = trigger_yaml_with_spec(
        ns,
        "orders",
        &format!(
            "  broker: default\n  subscriber:\n    uri: {subscriber}\n  delivery:\n    retry: 1\n    backoffDelay: PT0.05S\n    deadLetterSink:\n      uri: {dls}\n"
        ),
    )
    .replace(
        &format!("  namespace: {ns}\n"),
        &format!("  namespace: {ns}\n{annotations}"),
    );
    std::fs::write(
        dir.join("herald.yaml"),
        format!("{}---\n{trigger}", broker_yaml(ns, "default", &[])),
    )
    .unwrap();
}

async fn send(url: &str, id: &str, data: &str) {
    herald(&[
        "send",
        "--to",
        url,
        "--id",
        id,
        "--type",
        "com.example.order",
        "--data",
        data,
    ])
    .await
    .ok();
}

/// `herald dlq list` rows (header first) once it shows `rows` parked events.
async fn wait_listed(admin: &str, rows: usize) -> Vec<Vec<String>> {
    wait_listed_in(admin, &format!("{NS}/default"), rows).await
}

/// Like `wait_listed`, for Broker `broker` (namespace/name).
async fn wait_listed_in(admin: &str, broker: &str, rows: usize) -> Vec<Vec<String>> {
    let end = Instant::now() + WAIT;
    loop {
        let run = herald(&["dlq", "list", "--broker", broker, "--server", admin])
            .await
            .ok();
        let table = table_rows(&run.stdout);
        if table.len().saturating_sub(1) == rows {
            return table;
        }
        assert!(Instant::now() < end, "not {rows} parked events: {run}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// SIGTERM, and wait for the process to exit (it persists what it holds on the way).
async fn stop(server: &mut Replica) {
    std::process::Command::new("kill")
        .args(["-TERM", &server.proc.pid().to_string()])
        .status()
        .unwrap();
    let end = Instant::now() + WAIT;
    while server.proc.alive() {
        assert!(Instant::now() < end, "herald did not stop on SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn undeliverable_events_are_parked_survive_a_restart_and_are_redriven() {
    run(async {
        let work = tempfile::tempdir().unwrap();
        let config = work.path().join("config");
        let data = work.path().join("data");
        let (subscriber_port, dls_port) = (free_port(), free_port());
        write_config(
            &config,
            &format!("http://127.0.0.1:{subscriber_port}/"),
            &format!("http://127.0.0.1:{dls_port}/"),
            "",
        );
        let mut server = Replica::start("herald", &config, &data, (NS, "default"), &[]).await;
        send(&server.broker_url, "order-1", r#"{"order": 1}"#).await;
        send(&server.broker_url, "order-2", "plain text, not JSON").await;
        let table = wait_listed(&server.admin, 2).await;
        assert_eq!(
            table[0][..5],
            ["TRIGGER", "ID", "PARKED", "WHY", "EVENT_ID"].map(String::from)
        );
        let mut ids: Vec<&str> = table[1..].iter().map(|r| r[4].as_str()).collect();
        ids.sort_unstable();
        assert_eq!(ids, ["order-1", "order-2"]);
        assert!(table[1..]
            .iter()
            .all(|r| r[0] == "orders" && r[3] == "Undeliverable"));

        // The durable channel keeps the list across a restart.
        stop(&mut server).await;
        let server = Replica::start("herald", &config, &data, (NS, "default"), &[]).await;
        let table = wait_listed(&server.admin, 2).await;
        let parked_id = table[1][1].clone();
        let shown = herald(&[
            "dlq",
            "show",
            "--broker",
            "dlq/default",
            "--trigger",
            "orders",
            &parked_id,
            "--server",
            &server.admin,
        ])
        .await
        .ok();
        assert!(
            shown.stdout.contains(&format!("id: {}", table[1][4]))
                && shown.stdout.contains("reason:"),
            "{shown}"
        );
        // Parked as it arrived, the broker TTL too (its delivery left it out), so a redrive
        // is the same delivery again.
        assert!(shown.stdout.contains("knativebrokerttl"), "{shown}");

        // Back up: a redrive delivers both, as they were sent, and empties the list.
        let subscriber = Recorder::start(subscriber_port).await;
        let redriven = herald(&[
            "dlq",
            "redrive",
            "--broker",
            "dlq/default",
            "--trigger",
            "orders",
            "--server",
            &server.admin,
        ])
        .await
        .ok();
        assert!(
            redriven
                .stdout
                .contains("redrove 2 of 2 parked event(s): 2 delivered"),
            "{redriven}"
        );
        let mut got = subscriber.received();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("order-1".to_string(), br#"{"order": 1}"#.to_vec()),
                ("order-2".to_string(), b"plain text, not JSON".to_vec()),
            ]
        );
        let empty = herald(&[
            "dlq",
            "list",
            "--broker",
            "dlq/default",
            "--server",
            &server.admin,
        ])
        .await
        .ok();
        assert!(empty.stderr.contains("No parked events"), "{empty}");
        // Nothing was redelivered from the log besides the redrive.
        assert_eq!(subscriber.received().len(), 2);
    });
}

#[test]
fn a_volatile_channel_parks_in_memory_and_says_so() {
    run(async {
        let work = tempfile::tempdir().unwrap();
        let config = work.path().join("config");
        let subscriber_port = free_port();
        write_config(
            &config,
            &format!("http://127.0.0.1:{subscriber_port}/"),
            &format!("http://127.0.0.1:{}/", free_port()),
            "",
        );
        let server = Replica::start(
            "herald",
            &config,
            &work.path().join("data"),
            (NS, "default"),
            &["--channel", "memory"],
        )
        .await;
        send(&server.broker_url, "mem-1", r#"{"n": 1}"#).await;
        wait_listed(&server.admin, 1).await;
        let run = herald(&[
            "dlq",
            "list",
            "--broker",
            "dlq/default",
            "--server",
            &server.admin,
        ])
        .await
        .ok();
        assert!(run.stderr.contains("kept in memory"), "{run}");
        // A redrive while the subscriber is still down fails and keeps the event.
        let failed = herald(&[
            "dlq",
            "redrive",
            "--broker",
            "dlq/default",
            "--trigger",
            "orders",
            "--server",
            &server.admin,
        ])
        .await
        .failed();
        assert!(failed.stderr.contains("still undeliverable"), "{failed}");
        let table = wait_listed(&server.admin, 1).await;
        let subscriber = Recorder::start(subscriber_port).await;
        // By id, as `herald dlq list` shows it.
        herald(&[
            "dlq",
            "redrive",
            "--broker",
            "dlq/default",
            "--trigger",
            "orders",
            &table[1][1],
            "--server",
            &server.admin,
        ])
        .await
        .ok();
        assert_eq!(
            subscriber.received(),
            vec![("mem-1".to_string(), br#"{"n": 1}"#.to_vec())]
        );
        wait_listed(&server.admin, 0).await;
    });
}

#[test]
fn dead_lettered_events_are_copied_when_the_trigger_asks() {
    run(async {
        let work = tempfile::tempdir().unwrap();
        let config = work.path().join("config");
        let dls_port = free_port();
        let dls = Recorder::start(dls_port).await;
        write_config(
            &config,
            &format!("http://127.0.0.1:{}/", free_port()),
            &format!("http://127.0.0.1:{dls_port}/"),
            "  annotations:\n    herald.dev/dead-letter-copies: \"true\"\n",
        );
        let server = Replica::start(
            "herald",
            &config,
            &work.path().join("data"),
            (NS, "default"),
            &[],
        )
        .await;
        send(&server.broker_url, "dead-1", r#"{"n": 1}"#).await;
        let table = wait_listed(&server.admin, 1).await;
        assert_eq!(
            (table[1][3].as_str(), table[1][4].as_str()),
            ("DeadLettered", "dead-1")
        );
        assert_eq!(dls.received().len(), 1, "the sink got the event itself");
    });
}

/// On `backend` (the `herald serve` flags choosing it), in namespace `ns`: parked events
/// survive a restart in the backend itself, `herald dlq delete` discards one (404 for an id
/// that is not there), a redrive delivers the other exactly once and empties the list, and an
/// entry past the retention expires and is counted.
async fn parks_in_the_backend(ns: &str, backend: &[&str]) {
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("config");
    let data = work.path().join("data");
    let broker = format!("{ns}/default");
    let (subscriber_port, dls) = (free_port(), format!("http://127.0.0.1:{}/", free_port()));
    write_config_in(
        &config,
        ns,
        &format!("http://127.0.0.1:{subscriber_port}/"),
        &dls,
        "",
    );
    let mut args = backend.to_vec();
    args.extend(["--dlq-retention", "PT1H"]);
    let mut server = Replica::start("herald", &config, &data, (ns, "default"), &args).await;
    send(&server.broker_url, "keep-1", r#"{"order": 1}"#).await;
    send(&server.broker_url, "drop-1", r#"{"order": 2}"#).await;
    wait_listed_in(&server.admin, &broker, 2).await;

    // A restart keeps them: they are in the backend, not in the process.
    stop(&mut server).await;
    let mut server = Replica::start("herald", &config, &data, (ns, "default"), &args).await;
    let table = wait_listed_in(&server.admin, &broker, 2).await;
    let listed = herald(&[
        "dlq",
        "list",
        "--broker",
        &broker,
        "--server",
        &server.admin,
    ])
    .await
    .ok();
    assert!(!listed.stderr.contains("kept in memory"), "{listed}");
    let id_of = |event: &str| {
        table[1..]
            .iter()
            .find(|r| r[4] == event)
            .unwrap_or_else(|| panic!("{event} not listed: {table:?}"))[1]
            .clone()
    };
    let (keep, drop) = (id_of("keep-1"), id_of("drop-1"));

    // Discarded: gone from the list, never delivered; an id not there is 404.
    let deleted = herald(&[
        "dlq",
        "delete",
        "--broker",
        &broker,
        "--trigger",
        "orders",
        &drop,
        "--server",
        &server.admin,
    ])
    .await
    .ok();
    assert!(
        deleted.stdout.contains("deleted 1 parked event"),
        "{deleted}"
    );
    let again = herald(&[
        "dlq",
        "delete",
        "--broker",
        &broker,
        "--trigger",
        "orders",
        &drop,
        "--server",
        &server.admin,
    ])
    .await
    .failed();
    assert!(again.stderr.contains("404"), "{again}");
    wait_listed_in(&server.admin, &broker, 1).await;

    // Redriven once the subscriber is up: delivered exactly once, then unlisted.
    let subscriber = Recorder::start(subscriber_port).await;
    let redriven = herald(&[
        "dlq",
        "redrive",
        "--broker",
        &broker,
        "--trigger",
        "orders",
        &keep,
        "--server",
        &server.admin,
    ])
    .await
    .ok();
    assert!(redriven.stdout.contains("1 delivered"), "{redriven}");
    wait_listed_in(&server.admin, &broker, 0).await;
    // A restart redelivers nothing: the parked event was settled on the channel.
    stop(&mut server).await;
    write_config_in(
        &config,
        ns,
        &format!("http://127.0.0.1:{}/", free_port()),
        &dls,
        "",
    );
    let mut short = backend.to_vec();
    short.extend(["--dlq-retention", "PT2S"]);
    let mut server = Replica::start("herald", &config, &data, (ns, "default"), &short).await;
    assert_eq!(
        subscriber.received(),
        vec![("keep-1".to_string(), br#"{"order": 1}"#.to_vec())],
        "delivered exactly once"
    );

    // Past the retention (PT2S here), an entry expires: removed, counted, logged once.
    send(&server.broker_url, "expire-1", r#"{"order": 3}"#).await;
    wait_listed_in(&server.admin, &broker, 1).await;
    wait_listed_in(&server.admin, &broker, 0).await;
    let line = server.proc.wait_line("parked events expired").await;
    assert!(line.contains(&format!("Trigger {ns}/orders: 1")), "{line}");
    let metrics = metrics_text(&server.admin).await;
    let series = format!(
        "herald_parked_expired_total{{kind=\"Trigger\",namespace_name=\"{ns}\",name=\"orders\"}} 1"
    );
    assert!(metrics.contains(&series), "no {series} in:\n{metrics}");
    stop(&mut server).await;
}

#[test]
fn on_nats_parked_events_are_kept_in_jetstream_deleted_redriven_and_expired() {
    const TEST: &str = "on_nats_parked_events_are_kept_in_jetstream_deleted_redriven_and_expired";
    if !shared_nats_available(TEST) {
        return;
    }
    run(async {
        let ns = format!("dlq-nats-{}", std::process::id());
        let _cleanup = StreamCleanup::new(NATS_URL, stream_name(&ns, "default"));
        parks_in_the_backend(&ns, &["--channel", "nats", "--nats-url", NATS_URL]).await;
    });
}

#[test]
fn on_kafka_parked_events_are_kept_in_a_topic_deleted_redriven_and_expired() {
    const TEST: &str = "on_kafka_parked_events_are_kept_in_a_topic_deleted_redriven_and_expired";
    run(async {
        let Some(mut tansu) = Tansu::start(TEST).await else {
            return;
        };
        let bootstrap = tansu.bootstrap();
        parks_in_the_backend(
            "dlq-kafka",
            &[
                "--channel",
                "kafka",
                "--kafka-bootstrap-servers",
                &bootstrap,
            ],
        )
        .await;
        tansu.assert_alive();
    });
}

#[test]
fn a_trigger_annotation_sets_its_retention_and_delete_all_empties_the_list() {
    run(async {
        let work = tempfile::tempdir().unwrap();
        let config = work.path().join("config");
        let subscriber = format!("http://127.0.0.1:{}/", free_port());
        let dls = format!("http://127.0.0.1:{}/", free_port());
        write_config(&config, &subscriber, &dls, "");
        let server = Replica::start(
            "herald",
            &config,
            &work.path().join("data"),
            (NS, "default"),
            &[],
        )
        .await;
        send(&server.broker_url, "all-1", "{}").await;
        send(&server.broker_url, "all-2", "{}").await;
        wait_listed(&server.admin, 2).await;
        let deleted = herald(&[
            "dlq",
            "delete",
            "--broker",
            "dlq/default",
            "--trigger",
            "orders",
            "--all",
            "--server",
            &server.admin,
        ])
        .await
        .ok();
        assert!(
            deleted.stdout.contains("deleted 2 parked event"),
            "{deleted}"
        );
        wait_listed(&server.admin, 0).await;
        // Without ids nor --all, nothing is deleted: the command refuses.
        herald(&[
            "dlq",
            "delete",
            "--broker",
            "dlq/default",
            "--trigger",
            "orders",
            "--server",
            &server.admin,
        ])
        .await
        .failed();

        // The annotation is checked on apply: an invalid one is refused, naming it.
        let invalid = work.path().join("invalid.yaml");
        std::fs::write(
            &invalid,
            trigger_yaml(NS, "orders", "default", "http://127.0.0.1:1/", &[]).replace(
                "  namespace: dlq\n",
                "  namespace: dlq\n  annotations:\n    herald.dev/dlq-retention: \"soon\"\n",
            ),
        )
        .unwrap();
        let refused = herald(&[
            "apply",
            "-f",
            invalid.to_str().unwrap(),
            "--server",
            &server.admin,
        ])
        .await
        .failed();
        assert!(
            refused.stderr.contains("herald.dev/dlq-retention"),
            "{refused}"
        );

        // A short retention on the Trigger expires its entries (the server's is 7 days).
        write_config(
            &config,
            &subscriber,
            &dls,
            "  annotations:\n    herald.dev/dlq-retention: PT1S\n",
        );
        Admin::new(&server.admin)
            .wait("triggers", NS, "orders", WAIT, "annotated and Ready", |t| {
                t.is_some_and(|t| {
                    t["metadata"]["annotations"]["herald.dev/dlq-retention"] == "PT1S"
                        && is_ready(t)
                })
            })
            .await;
        send(&server.broker_url, "short-1", "{}").await;
        wait_listed(&server.admin, 1).await;
        wait_listed(&server.admin, 0).await;
    });
}
