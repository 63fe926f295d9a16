//! The commands README.md's "Using Herald" shows, run as written (only the addresses and
//! directories are the test's own: `--listen 127.0.0.1:0`, a free `--port`, a temporary
//! `--data-dir`, the Broker's namespace unique to the run):
//!
//! - `herald serve --config DIR --channel nats`, `herald display --port PORT` and
//!   `herald send ... --type com.example.order.created --data '{"order": 2}' --ext region=eu`;
//! - `herald serve --config DIR --channel kafka` (on a private tansu);
//! - `herald send --to URL --file event.json`, with one event and with a batch;
//! - `herald serve --config DIR --channels-config channels.yaml`, with
//!   examples/channels.yaml and with a file of the test's own;
//! - `herald delete trigger NAME` (the singular spelling the README uses);
//! - `bash examples/sources/run.sh` and `herald source run FILE`.
//!
//! Covered elsewhere and not repeated here: `herald serve --config examples/quickstart`
//! (tests/cli.rs runs the quickstart script), `herald replay --from <offset>` and
//! `--from <RFC 3339>`, followed until caught up and with `--no-wait` (tests/durability.rs;
//! on NATS and Kafka tests/channel_lag.rs), `herald apply -f FILE_OR_DIR` and
//! `herald get triggers [NAME] [-o yaml|json] [-A]` (tests/admin_cli.rs; every kind in
//! tests/describe.rs), `herald describe broker NAME [-n NS] [-o yaml|json]`
//! (tests/describe.rs), `herald dlq list|show|
//! redrive --broker B --trigger T [ID...]` and `herald dlq delete ... ID... | --all`
//! (tests/dlq.rs), `herald serve --tls-cert ... --tls-key ...` and `herald send --to https://...
//! --ca-file ca.pem` (tests/tls.rs),
//! `herald tail --broker B --filter "type LIKE 'com.example.%'" [-o json]` (tests/live_stream.rs),
//! `herald-conformance --broker URL --adapter herald --admin URL` (tests/conformance.rs), the
//! Authentication section's `herald serve --ingress-tokens`, `--oidc-jwks --oidc-issuer`,
//! `herald send --token` and its EventPolicy (tests/ingress_auth.rs), `herald serve
//! --otlp-endpoint URL --log-format json` and the Logs and traces paragraph's flags and variables
//! (tests/otlp.rs, tests/logs.rs), `herald get eventtypes [-A]`, `herald serve
//! --eventtype-auto-create=false` and the EventType YAML (tests/eventtypes.rs). The
//! Development section's recipes (`herald-bench`, `scripts/bench.sh`, `scripts/fuzz.sh` with
//! its `cargo install cargo-fuzz`) are benchmarks and fuzzing runs of minutes, not tests;
//! `scripts/profile.sh` runs here briefly with each tool.

mod replicas;

use replicas::admin::*;
use replicas::servers::*;
use replicas::*;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const ORDER_CREATED: &str = "com.example.order.created";

/// The namespace of this run's Brokers (NATS streams and Kafka topics never collide with
/// an earlier run's).
fn namespace() -> String {
    format!("readme-{}", std::process::id())
}

/// A Broker `default` in `ns`, and a Trigger selecting order-created events from region eu
/// for `subscriber`.
fn write_orders_config(dir: &Path, ns: &str, subscriber: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("herald.yaml"),
        format!(
            "{}---\n{}",
            broker_yaml(ns, "default", &[]),
            trigger_yaml(
                ns,
                "orders",
                "default",
                subscriber,
                &[("type", ORDER_CREATED), ("region", "eu")]
            )
        ),
    )
    .unwrap();
}

/// `herald send --to URL --type com.example.order.created --data '{"order": N}' --ext
/// region=REGION`, as the README writes it (plus an id to find it by).
async fn send_order(url: &str, id: &str, order: u32, region: &str) {
    let data = format!(r#"{{"order": {order}}}"#);
    let ext = format!("region={region}");
    herald(&[
        "send",
        "--to",
        url,
        "--type",
        ORDER_CREATED,
        "--data",
        &data,
        "--ext",
        &ext,
        "--id",
        id,
    ])
    .await
    .ok();
}

#[test]
fn readme_serve_on_nats_with_display_and_send_ext() {
    const TEST: &str = "readme_serve_on_nats_with_display_and_send_ext";
    if !shared_nats_available(TEST) {
        return;
    }
    run(async {
        let ns = namespace();
        let _cleanup = StreamCleanup::new(NATS_URL, stream_name(&ns, "default"));
        let port = free_port().to_string();
        let mut display = Proc::spawn("display", HERALD, &["display", "--port", &port]);
        display.wait_line("listening on").await;
        let work = tempfile::tempdir().unwrap();
        let config = work.path().join("config");
        write_orders_config(&config, &ns, &format!("http://127.0.0.1:{port}/"));
        // `--nats-url` left at its default, the shared NATS.
        let herald = Replica::start(
            "herald",
            &config,
            &work.path().join("data"),
            (&ns, "default"),
            &["--channel", "nats"],
        )
        .await;
        assert!(
            herald.proc.find_line("channel=nats").is_some(),
            "the Broker is not on NATS:\n{}",
            herald.proc.log_tail()
        );
        // The us order first: once the eu one is displayed, the us one would have been.
        send_order(&herald.broker_url, "order-us", 1, "us").await;
        send_order(&herald.broker_url, "order-eu", 2, "eu").await;
        display.wait_line("id: order-eu").await;
        display.wait_line("region: eu").await;
        display.wait_line(r#""order": 2"#).await;
        assert!(
            display.find_line("order-us").is_none(),
            "the us order was displayed:\n{}",
            display.log_tail()
        );
    });
}

#[cfg(feature = "kafka")]
#[test]
fn readme_serve_on_kafka() {
    const TEST: &str = "readme_serve_on_kafka";
    run(async {
        let Some(mut tansu) = Tansu::start(TEST).await else {
            return;
        };
        let work = tempfile::tempdir().unwrap();
        let sink = Sink::start((0, 0)).await;
        let ns = namespace();
        let config = work.path().join("config");
        write_orders_config(&config, &ns, &sink.url);
        let bootstrap = tansu.bootstrap();
        let herald = Replica::start(
            "herald",
            &config,
            &work.path().join("data"),
            (&ns, "default"),
            &[
                "--channel",
                "kafka",
                "--kafka-bootstrap-servers",
                &bootstrap,
            ],
        )
        .await;
        assert!(
            herald.proc.find_line("channel=kafka").is_some(),
            "the Broker is not on Kafka:\n{}",
            herald.proc.log_tail()
        );
        Admin::new(&herald.admin)
            .wait_ready("triggers", &ns, "orders", WAIT)
            .await;
        send_order(&herald.broker_url, "kafka-order", 2, "eu").await;
        sink.wait_for_or(
            &["kafka-order".to_string()].into(),
            WAIT,
            "the order on Kafka",
            || herald.proc.log_tail(),
        )
        .await;
        tansu.assert_alive();
    });
}

#[test]
fn readme_send_file_with_an_event_and_a_batch() {
    run(async {
        let sink = Sink::start((0, 0)).await;
        let ns = namespace();
        let work = tempfile::tempdir().unwrap();
        let config = work.path().join("config");
        write_orders_config(&config, &ns, &sink.url);
        let server = Replica::start(
            "herald",
            &config,
            &work.path().join("data"),
            (&ns, "default"),
            &[],
        )
        .await;
        let event = |id: &str| {
            serde_json::json!({
                "specversion": "1.0",
                "id": id,
                "source": "/shop",
                "type": ORDER_CREATED,
                "region": "eu",
                "datacontenttype": "application/json",
                "data": {"order": 2},
            })
        };
        let single = work.path().join("event.json");
        std::fs::write(&single, event("file-1").to_string()).unwrap();
        let batch = work.path().join("batch.json");
        std::fs::write(
            &batch,
            serde_json::json!([event("batch-1"), event("batch-2")]).to_string(),
        )
        .unwrap();
        for file in [&single, &batch] {
            herald(&[
                "send",
                "--to",
                &server.broker_url,
                "--file",
                file.to_str().unwrap(),
            ])
            .await
            .ok();
        }
        let want: HashSet<String> = ["file-1", "batch-1", "batch-2"].map(String::from).into();
        sink.wait_for_or(&want, WAIT, "the events from files", || {
            server.proc.log_tail()
        })
        .await;
        assert_eq!(duplicates(&sink.counts()), 0);
    });
}

#[test]
fn readme_serve_with_a_channels_config_file() {
    run(async {
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/channels.yaml");
        let work = tempfile::tempdir().unwrap();
        let own = work.path().join("channels.yaml");
        std::fs::write(&own, "default: memory\n").unwrap();
        for (file, channel) in [(examples, "sled"), (own, "memory")] {
            let sink = Sink::start((0, 0)).await;
            let ns = namespace();
            let config = work.path().join(format!("config-{channel}"));
            write_orders_config(&config, &ns, &sink.url);
            let server = Replica::start(
                "herald",
                &config,
                &work.path().join(format!("data-{channel}")),
                (&ns, "default"),
                &["--channels-config", file.to_str().unwrap()],
            )
            .await;
            assert!(
                server
                    .proc
                    .find_line(&format!("channel={channel}"))
                    .is_some(),
                "{}: the Broker is not on {channel}:\n{}",
                file.display(),
                server.proc.log_tail()
            );
            let id = format!("order-{channel}");
            send_order(&server.broker_url, &id, 2, "eu").await;
            sink.wait_for_or(&[id].into(), WAIT, channel, || server.proc.log_tail())
                .await;
        }
    });
}

#[test]
fn readme_delete_trigger_by_its_singular_kind() {
    run(async {
        let work = tempfile::tempdir().unwrap();
        let config: PathBuf = work.path().join("config");
        std::fs::create_dir_all(&config).unwrap();
        let server = Replica::serve("herald", &config, &work.path().join("data"), &[]).await;
        let ns = namespace();
        let files = work.path().join("files");
        write_orders_config(&files, &ns, "http://127.0.0.1:1/");
        herald(&[
            "apply",
            "-f",
            files.to_str().unwrap(),
            "--server",
            &server.admin,
        ])
        .await
        .ok();
        let run = herald(&[
            "delete",
            "trigger",
            "orders",
            "-n",
            &ns,
            "--server",
            &server.admin,
        ])
        .await
        .ok();
        assert_eq!(
            run.stdout.trim(),
            "trigger.eventing.knative.dev/orders deleted",
            "{run}"
        );
        assert!(Admin::new(&server.admin)
            .get("triggers", &ns, "orders")
            .await
            .is_none());
    });
}

/// `bash examples/sources/run.sh`, in its checking mode: a PingSource's tick, a GitHubSource's
/// signed push and a ContainerSource's `herald send` (with its `ceOverrides` applied) each
/// reach their display through the Broker and a Trigger.
#[test]
fn readme_sources_example_shows_every_source_reaching_its_display() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new("bash")
        .arg(root.join("examples/sources/run.sh"))
        .arg("--check")
        .env("HERALD_BIN", HERALD)
        .env("HERALD_PORT", free_port().to_string())
        .env("HERALD_ADMIN_PORT", free_port().to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "examples/sources/run.sh failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (display, line) in [
        ("[ping display]", "type: dev.knative.sources.ping"),
        ("[github display]", "id: push-1"),
        ("[github display]", "type: dev.knative.source.github.push"),
        ("[container display]", "type: com.example.ticker.tick"),
        ("[container display]", "origin: container"),
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.strip_prefix(display).is_some_and(|l| l.trim() == line)),
            "no line {line:?} from {display}:\n{stdout}"
        );
    }
}

/// `herald source run FILE` (the standalone mode): a PingSource ticking every second into a
/// URI sink the test serves, and a ContainerSource into the same sink; SIGTERM ends it
/// cleanly (exit 0) and stops the ContainerSource's process.
#[test]
fn readme_source_run_emits_into_a_uri_sink_and_stops_on_sigterm() {
    run(async {
        let sink = Sink::start((0, 0)).await;
        let work = tempfile::tempdir().unwrap();
        let pid_file = work.path().join("container.pid");
        let file = work.path().join("sources.yaml");
        std::fs::write(
            &file,
            format!(
                "apiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {{name: beat, namespace: ns}}\n\
                 spec:\n  schedule: \"@every 1s\"\n  sink: {{uri: \"{sink}/ping\"}}\n---\n\
                 apiVersion: sources.knative.dev/v1\nkind: ContainerSource\nmetadata: {{name: c, namespace: ns}}\n\
                 spec:\n  template:\n    spec:\n      containers:\n        - name: c\n          command: [sh, -c]\n\
                 \x20         args: ['echo $$ > \"$PID_FILE\"; exec sleep 600']\n\
                 \x20         env: [{{name: PID_FILE, value: \"{pid}\"}}]\n  sink: {{uri: \"{sink}/container\"}}\n",
                sink = sink.url,
                pid = pid_file.display(),
            ),
        )
        .unwrap();
        // Its own child (not `Proc`): the test needs its exit status.
        let log_path = work.path().join("source-run.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut source = KillOnDrop(
            std::process::Command::new(HERALD)
                .args(["source", "run", file.to_str().unwrap()])
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap(),
        );
        let output = || std::fs::read_to_string(&log_path).unwrap_or_default();
        until(
            WAIT,
            || {
                sink.records()
                    .iter()
                    .filter(|r| r.path == "/events/ping")
                    .count()
                    >= 2
            },
            || format!("two ticks:\n{}", output()),
        )
        .await;
        assert!(output().contains("PingSource ns/beat -> "), "{}", output());
        until(WAIT, || pid_file.exists(), output).await;
        let container_pid: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let term = std::process::Command::new("kill")
            .args(["-TERM", &source.0.id().to_string()])
            .status()
            .unwrap();
        assert!(term.success());
        let mut status = None;
        until(
            WAIT,
            || {
                status = source.0.try_wait().unwrap();
                status.is_some()
            },
            || format!("herald source run did not exit:\n{}", output()),
        )
        .await;
        let status = status.unwrap();
        assert!(status.success(), "{status}:\n{}", output());
        assert!(output().contains("stopping sources"), "{}", output());
        assert!(
            !Path::new(&format!("/proc/{container_pid}")).exists(),
            "the ContainerSource's process outlived herald source run"
        );
    });
}

/// A child process killed (and reaped) if the test ends before it exits.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
/// The Development section's profiling recipe, briefly: `scripts/profile.sh` with each tool
/// (perf sampling, callgrind counting, syscall counting) against this build's `herald`, under
/// wrk load, writes a report that names Herald's own code, or its system calls per event. A
/// missing tool (perf, valgrind, wrk, nginx) fails it.
#[test]
fn the_profile_script_reports_where_the_time_goes_with_each_tool() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for tool in ["perf", "callgrind", "syscalls"] {
        let out = tempfile::tempdir().unwrap();
        let run = std::process::Command::new("bash")
            .arg(repo.join("scripts/profile.sh"))
            .args(["--tool", tool, "--duration", "2s", "--connections", "2"])
            .args(["--herald", HERALD, "--out"])
            .arg(out.path())
            .output()
            .expect("bash runs");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(
            run.status.success(),
            "profile.sh --tool {tool} failed: {stderr}"
        );
        let report = std::fs::read_to_string(out.path().join("report.txt")).unwrap();
        if tool == "syscalls" {
            // Each event is read from a socket: at least one recvfrom per event, counted.
            let per_event = |name: &str| {
                report.lines().find_map(|l| {
                    let (count, call) = l.trim().split_once("  ")?;
                    (call.trim() == name).then(|| count.parse::<f64>().ok())?
                })
            };
            let reads = per_event("recvfrom").unwrap_or(0.0);
            assert!(reads >= 1.0, "recvfrom per event is {reads}:\n{report}");
            assert!(per_event("(all system calls)").is_some(), "{report}");
            continue;
        }
        // Below the `#` header lines: samples or instruction counts in Herald's own binary.
        assert!(
            report
                .lines()
                .any(|l| !l.starts_with('#') && l.contains("herald")),
            "the {tool} report names no Herald code:\n{report}"
        );
    }
}
