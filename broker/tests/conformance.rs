//! `herald-conformance` against a real `herald serve` on every channel: memory, the durable
//! default (sled), NATS JetStream on 127.0.0.1:4222 and Kafka on a private tansu. The tool
//! runs in this process with the arguments README shows (`--broker URL --adapter herald --admin URL`),
//! through the same entry point as its binary.
//!
//! A test passes when exactly the checks listed for its channel in
//! `conformance/expected-failures/herald.yaml` fail: a listed check that starts to pass fails
//! the test too, so the list shrinks as fixes land.

mod replicas;

use clap::Parser;
use herald_conformance::check::Verdict;
use herald_conformance::cli::{self, Args};
use replicas::servers::*;
use replicas::*;
use std::collections::BTreeSet;
use std::path::Path;

/// The body limit Herald is started with and the tool is told.
const MAX_BODY: &str = "1048576";

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Expected {
    check: String,
    channels: Vec<String>,
    reason: String,
}

fn expected_failures(channel: &str) -> BTreeSet<String> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/expected-failures/herald.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let list: Vec<Expected> =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for e in &list {
        assert!(
            !e.reason.trim().is_empty(),
            "{}: {} has no reason",
            path.display(),
            e.check
        );
    }
    list.into_iter()
        .filter(|e| e.channels.iter().any(|c| c == channel))
        .map(|e| e.check)
        .collect()
}

/// Starts `herald serve` with `args`, runs the tool against a Broker of its own, and compares
/// what failed with the expected list for `channel`.
async fn conform(channel: &str, args: &[&str]) {
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    let mut serve_args = vec!["--max-body-bytes", MAX_BODY];
    serve_args.extend_from_slice(args);
    let herald = Replica::serve("herald", &config, &work.path().join("data"), &serve_args).await;
    // Unique per run: NATS streams and Kafka topics of an earlier run never collide.
    let namespace = format!("conformance-{}-{channel}", std::process::id());
    let broker = herald.url_of(&namespace, "default");
    let _cleanup = (channel == "nats")
        .then(|| StreamCleanup::new(NATS_URL, stream_name(&namespace, "default")));
    let args = Args::parse_from([
        "herald-conformance",
        "--broker",
        &broker,
        "--adapter",
        "herald",
        "--admin",
        &herald.admin,
        "--max-body-bytes",
        MAX_BODY,
        "--timeout",
        "20",
    ]);
    let (code, outcomes) = cli::run(args).await;
    assert!(
        !outcomes.is_empty(),
        "the tool did not run (exit {code}):\n{}",
        herald.proc.log_tail()
    );
    let failed: BTreeSet<String> = outcomes
        .iter()
        .filter(|o| o.verdict == Verdict::Fail)
        .map(|o| o.check.id.to_string())
        .collect();
    let expected = expected_failures(channel);
    let must_failed = outcomes.iter().any(|o| {
        o.verdict == Verdict::Fail && o.check.level == herald_conformance::check::Level::Must
    });
    assert_eq!(code, u8::from(must_failed), "exit code vs failed MUSTs");
    let unexpected: Vec<_> = failed.difference(&expected).collect();
    let fixed: Vec<_> = expected.difference(&failed).collect();
    assert!(
        unexpected.is_empty() && fixed.is_empty(),
        "{channel}: failing but not listed in conformance/expected-failures/herald.yaml: \
         {unexpected:?}; listed but passing now (remove them from the list): {fixed:?}\n{}",
        herald_conformance::report::table(&outcomes)
    );
}

#[test]
fn herald_conforms_on_memory() {
    run(conform("memory", &["--channel", "memory"]));
}

#[test]
fn herald_conforms_on_sled() {
    run(conform("sled", &["--channel", "sled"]));
}

#[test]
fn herald_conforms_on_nats() {
    if !shared_nats_available("herald_conforms_on_nats") {
        return;
    }
    run(conform(
        "nats",
        &["--channel", "nats", "--nats-url", NATS_URL],
    ));
}

#[cfg(feature = "kafka")]
#[test]
fn herald_conforms_on_kafka() {
    run(async {
        let Some(mut tansu) = Tansu::start("herald_conforms_on_kafka").await else {
            return;
        };
        let bootstrap = tansu.bootstrap();
        conform(
            "kafka",
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
