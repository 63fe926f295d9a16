//! ContainerSource with real child processes (`sh`, `curl`): the command gets `K_SINK` and
//! Knative's `K_CE_OVERRIDES` JSON in its environment and what it POSTs there reaches the
//! sink; a command that exits is started again with a growing backoff, counted in
//! `herald_source_restarts_total`; shutdown stops it (and what it started) with SIGTERM; a spec that cannot run
//! names the source and the field.

mod common;

use common::{resource, run, unique, TestSink};
use herald_core::metrics::Metrics;
use herald_core::{load_resource, Check, Kind, ResourceKey};
use herald_sources::{SourceEnv, SourceMetrics};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

/// A ContainerSource `ns/{name}` running `sh -c SCRIPT` with `env` (name, value).
fn container(name: &str, script: &str, env: &[(&str, &str)], overrides: &str) -> String {
    let env: String = env
        .iter()
        .map(|(n, v)| format!("            - {{name: {n}, value: {v:?}}}\n"))
        .collect();
    let script: String = script
        .lines()
        .map(|l| format!("              {l}\n"))
        .collect();
    format!(
        "apiVersion: sources.knative.dev/v1\nkind: ContainerSource\nmetadata: {{name: {name}, namespace: ns}}\n\
         spec:\n  template:\n    spec:\n      containers:\n        - name: c\n          image: ignored.example/c\n\
         \x20         command: [sh, -c]\n          args:\n            - |\n{script}\
         \x20         env:\n            - {{name: UNUSED, value: \"\"}}\n{env}\
         \x20 sink: {{uri: \"http://127.0.0.1:9/\"}}\n{overrides}"
    )
}

fn env_with(metrics: &SourceMetrics, backoff: (Duration, Duration)) -> Arc<SourceEnv> {
    Arc::new(SourceEnv {
        restart_backoff: backoff,
        metrics: metrics.clone(),
        ..Default::default()
    })
}

fn key(name: &str) -> ResourceKey {
    ResourceKey {
        namespace: "ns".into(),
        name: name.into(),
    }
}

/// Waits until `done()`, polling, within `WAIT`.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn the_command_gets_k_sink_and_k_ce_overrides_and_its_events_reach_the_sink() {
    let mut sink = TestSink::start().await;
    let script = r#"curl -sS -X POST "$K_SINK" -H 'ce-specversion: 1.0' -H 'ce-id: env-1' \
  -H 'ce-type: dev.herald.test.container' -H 'ce-source: /container' \
  -H "ce-greeting: $GREETING" -H 'content-type: application/json' --data "$K_CE_OVERRIDES"
exec sleep 600"#;
    let r = resource(&container(
        "env",
        script,
        &[("GREETING", "hello")],
        "  ceOverrides: {extensions: {region: eu, team: blue}}\n",
    ));
    let metrics = SourceMetrics::default();
    let mut running = run(
        r,
        &sink.url,
        env_with(
            &metrics,
            (Duration::from_millis(50), Duration::from_secs(1)),
        ),
    );
    running.until_ok(WAIT).await;
    let got = sink.next(WAIT).await;
    assert_eq!(got.header("ce-id"), Some("env-1"));
    assert_eq!(got.header("ce-greeting"), Some("hello"));
    // Knative's CloudEventOverrides JSON, for the program (or its SDK) to apply.
    let overrides: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(
        overrides,
        serde_json::json!({"extensions": {"region": "eu", "team": "blue"}})
    );
    running.stop().await;
    assert_eq!(
        metrics
            .of(Kind::ContainerSource, &key("env"))
            .restarts
            .get(),
        0
    );
}

#[tokio::test]
async fn without_ce_overrides_there_is_no_k_ce_overrides() {
    let mut sink = TestSink::start().await;
    let script = r#"curl -sS -X POST "$K_SINK" -H 'ce-specversion: 1.0' -H 'ce-id: plain-1' \
  -H 'ce-type: t' -H 'ce-source: /c' -H 'content-type: text/plain' \
  --data "overrides=${K_CE_OVERRIDES-unset}"
exec sleep 600"#;
    let r = resource(&container("plain", script, &[], ""));
    let running = run(r, &sink.url, Arc::new(SourceEnv::default()));
    let got = sink.next(WAIT).await;
    assert_eq!(&got.body[..], b"overrides=unset");
    running.stop().await;
}

#[tokio::test]
async fn a_command_that_exits_is_restarted_with_a_backoff_that_grows_to_its_ceiling() {
    let sink = TestSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let starts = dir.path().join("starts");
    let r = resource(&container(
        "crash",
        r#"date +%s%N >> "$STARTS"; exit 3"#,
        &[("STARTS", starts.to_str().unwrap())],
        "",
    ));
    let (first, ceiling) = (Duration::from_millis(50), Duration::from_millis(200));
    let registry = Metrics::new();
    let metrics = SourceMetrics::register(&registry);
    let mut running = run(r, &sink.url, env_with(&metrics, (first, ceiling)));
    let restarts = metrics.of(Kind::ContainerSource, &key("crash")).restarts;
    // While it waits to start again, its condition says why and for how long.
    tokio::time::timeout(
        WAIT,
        running.health.wait_for(|c| {
            matches!(c, Check::Unknown { reason, message }
                if reason == "Restarting" && message.contains("exit status: 3"))
        }),
    )
    .await
    .expect("no Restarting condition in time")
    .unwrap();
    until("6 starts", || {
        lines(&starts).len() >= 6 && restarts.get() >= 5
    })
    .await;
    running.stop().await;

    let starts: Vec<u128> = lines(&starts).iter().map(|l| l.parse().unwrap()).collect();
    // Each start comes at least its backoff after the one before: 50, 100, 200, then the
    // ceiling (a wait is never shorter than asked; no upper bound is asserted).
    let expected = [50u128, 100, 200, 200, 200];
    for (i, min_ms) in expected.iter().enumerate() {
        let gap_ms = (starts[i + 1] - starts[i]) / 1_000_000;
        assert!(
            gap_ms >= *min_ms,
            "start {} came {gap_ms} ms after the one before, less than its backoff {min_ms} ms",
            i + 1
        );
    }
    // Restarts are counted once each: at most one start more than restarts counted.
    let counted = restarts.get() as usize;
    assert!(
        counted + 1 >= starts.len() && counted <= starts.len(),
        "{counted} restarts counted for {} starts",
        starts.len()
    );
    let text = registry.encode();
    assert!(
        text.contains(&format!(
            r#"herald_source_restarts_total{{kind="ContainerSource",namespace_name="ns",name="crash"}} {counted}"#
        )),
        "{text}"
    );
}

#[tokio::test]
async fn a_program_that_cannot_start_is_reported_and_tried_again() {
    let sink = TestSink::start().await;
    let missing = unique("/nonexistent/program");
    let yaml = container("missing", "true", &[], "")
        .replace("command: [sh, -c]", &format!("command: [{missing:?}]"));
    let metrics = SourceMetrics::default();
    let mut running = run(
        resource(&yaml),
        &sink.url,
        env_with(
            &metrics,
            (Duration::from_millis(20), Duration::from_millis(40)),
        ),
    );
    tokio::time::timeout(
        WAIT,
        running.health.wait_for(|c| {
            matches!(c, Check::Failed { reason, message }
                if reason == "CommandFailed" && message.contains(&missing))
        }),
    )
    .await
    .expect("no CommandFailed condition in time")
    .unwrap();
    let restarts = metrics.of(Kind::ContainerSource, &key("missing")).restarts;
    until("2 restarts", || restarts.get() >= 2).await;
    running.stop().await;
}

#[tokio::test]
async fn shutdown_stops_the_command_with_sigterm() {
    let sink = TestSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (pid_file, out) = (dir.path().join("pid"), dir.path().join("out"));
    let script = r#"trap 'echo terminated >> "$OUT"; exit 0' TERM
echo $$ > "$PID_FILE"
while :; do sleep 0.1; done"#;
    let r = resource(&container(
        "stopped",
        script,
        &[
            ("PID_FILE", pid_file.to_str().unwrap()),
            ("OUT", out.to_str().unwrap()),
        ],
        "",
    ));
    let mut running = run(r, &sink.url, Arc::new(SourceEnv::default()));
    running.until_ok(WAIT).await;
    until("the pid file", || !lines(&pid_file).is_empty()).await;
    let pid: u32 = lines(&pid_file)[0].parse().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    running.stop().await;
    // The task ends after the process exited and was reaped.
    assert_eq!(lines(&out), ["terminated"]);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} outlived its source"
    );
}

/// Shutdown signals the program's process group, so what it started (here a shell's
/// background `sleep`) stops with it rather than outliving the source.
#[tokio::test]
async fn shutdown_stops_what_the_command_started_too() {
    let sink = TestSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let script = r#"sleep 600 &
echo $! > "$PID_FILE"
wait"#;
    let r = resource(&container(
        "parent",
        script,
        &[("PID_FILE", pid_file.to_str().unwrap())],
        "",
    ));
    let mut running = run(r, &sink.url, Arc::new(SourceEnv::default()));
    running.until_ok(WAIT).await;
    until("the pid file", || !lines(&pid_file).is_empty()).await;
    let child: u32 = lines(&pid_file)[0].parse().unwrap();
    assert!(alive(child), "the background sleep runs");
    running.stop().await;
    until(&format!("process {child} ends with its source"), || {
        !alive(child)
    })
    .await;
}

/// Whether process `pid` runs (a zombie, waiting to be reaped, does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().next().map(|state| state != "Z")
        })
        .unwrap_or(false)
}

#[test]
fn a_spec_that_cannot_run_names_the_source_and_the_field() {
    let no_command = "apiVersion: sources.knative.dev/v1\nkind: ContainerSource\nmetadata: {name: bad, namespace: ns}\n\
        spec:\n  template:\n    spec:\n      containers: [{name: c, image: x}]\n  sink: {uri: \"http://127.0.0.1:9/\"}\n";
    let e = load_resource("bad.yaml", no_command)
        .unwrap_err()
        .to_string();
    assert!(e.contains("ContainerSource ns/bad"), "{e}");
    assert!(
        e.contains("spec.template.spec.containers[0].command"),
        "{e}"
    );
    let no_container = no_command.replace("[{name: c, image: x}]", "[]");
    let e = load_resource("bad.yaml", &no_container)
        .unwrap_err()
        .to_string();
    assert!(e.contains("ContainerSource ns/bad"), "{e}");
    assert!(e.contains("spec.template.spec.containers"), "{e}");
}
