//! `herald describe` and `herald get` against a running `herald serve`: a Broker with a
//! ready Trigger and one that is not (its subscriber does not resolve) shows both with their
//! readiness; the ready Trigger shows its filter, subscriber, delivery, conditions and exact
//! counters; the failing one its failing condition with reason and message; an unknown name
//! or kind fails naming what was not found; `get` answers for every kind.

mod replicas;

use replicas::admin::*;
use replicas::*;
use serde_json::Value;
use std::collections::HashSet;
use std::time::{Duration, Instant};

const NS: &str = "describe";
const WAIT: Duration = Duration::from_secs(30);

/// Lines with runs of spaces collapsed and ages (`5s`, `3m`, ...) replaced by `AGE`: what
/// a description says, independent of when it is taken (the unit tests check alignment).
fn normalized(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| {
            l.split_whitespace()
                .map(|w| {
                    let is_age = w.len() > 1
                        && w[..w.len() - 1].chars().all(|c| c.is_ascii_digit())
                        && w.ends_with(['s', 'm', 'h', 'd']);
                    if is_age {
                        "AGE"
                    } else {
                        w
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

fn assert_described(run: &CliRun, expected: &str) {
    let got = normalized(&run.stdout);
    let want = normalized(expected);
    assert_eq!(
        got,
        want,
        "description differs:\n--- got\n{}\n--- want\n{}\n{run}",
        got.join("\n"),
        want.join("\n")
    );
}

#[test]
fn describe_shows_a_broker_its_triggers_and_their_conditions_and_counters() {
    run(async {
        let work = tempfile::tempdir().unwrap();
        let config = work.path().join("config");
        std::fs::create_dir_all(&config).unwrap();
        let sink = Sink::start((0, 0)).await;
        let ready = trigger_yaml_with_spec(
            NS,
            "orders",
            &format!(
                "  broker: default\n  filter:\n    attributes:\n      type: com.example.order\n  \
                 subscriber:\n    uri: {}\n  delivery:\n    retry: 2\n    backoffPolicy: linear\n    \
                 backoffDelay: PT0.1S\n    deadLetterSink:\n      uri: http://127.0.0.1:9/dls\n",
                sink.url
            ),
        );
        let unresolved = trigger_yaml_with_spec(
            NS,
            "lost",
            "  broker: default\n  subscriber:\n    ref:\n      apiVersion: v1\n      kind: Service\n      name: nowhere\n",
        );
        std::fs::write(
            config.join("herald.yaml"),
            format!(
                "{}---\n{ready}---\n{unresolved}",
                broker_yaml(NS, "default", &[])
            ),
        )
        .unwrap();
        let server = Replica::start(
            "herald",
            &config,
            &work.path().join("data"),
            (NS, "default"),
            &[],
        )
        .await;
        let admin = Admin::new(&server.admin);
        admin.wait_ready("triggers", NS, "orders", WAIT).await;
        let describe = |args: &[&str]| {
            let mut all = vec!["describe"];
            all.extend_from_slice(args);
            all.extend(["-n", NS, "--server", &server.admin]);
            let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
            async move {
                let refs: Vec<&str> = all.iter().map(String::as_str).collect();
                herald(&refs).await
            }
        };

        let ids: HashSet<String> = (0..3).map(|i| format!("order-{i}")).collect();
        for id in &ids {
            herald(&[
                "send",
                "--to",
                &server.broker_url,
                "--type",
                "com.example.order",
                "--id",
                id,
            ])
            .await
            .ok();
        }
        sink.wait_for(&ids, WAIT, "the orders").await;

        // The Trigger's counters settle once its position is committed.
        let end = Instant::now() + WAIT;
        let run = loop {
            let run = describe(&["trigger", "orders"]).await.ok();
            let lines = normalized(&run.stdout);
            let settled = ["Delivered: 3", "Lag: 0"]
                .iter()
                .all(|want| lines.iter().any(|l| l == want));
            if settled {
                break run;
            }
            assert!(Instant::now() < end, "the counters never settled: {run}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let subscriber = &sink.url;
        assert_described(
            &run,
            &format!(
                "\
Name: orders
Namespace: {NS}
Kind: Trigger (eventing.knative.dev/v1)
Age: 1s
Generation: 1 (observed 1)
Broker: default
Filter: type=com.example.order
Subscriber: {subscriber}
Subscriber URI: {subscriber}
Dead-letter sink URI: http://127.0.0.1:9/dls
Delivery:
  Retry: 2
  Backoff: linear, delay PT0.1S
  Dead-letter sink: http://127.0.0.1:9/dls
Conditions:
  TYPE STATUS AGE REASON MESSAGE
  Ready True 1s
  BrokerReady True 1s
  FilterReady True 1s
  SubscriberResolved True 1s
  DeadLetterSinkResolved True 1s
  SubscriptionReady True 1s
Counters:
  Delivered: 3
  Retried: 0
  Dead-lettered: 0
  Parked: 0
  Lag: 0
"
            ),
        );

        // The Trigger that waits: its failing condition, with reason and message.
        let run = describe(&["trigger", "lost"]).await.ok();
        let lost = admin.get("triggers", NS, "lost").await.unwrap();
        let failing = condition(&lost, "SubscriberResolved").unwrap();
        let message = failing["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "{}", brief(&lost));
        let lines = normalized(&run.stdout);
        let want = normalized(&format!(
            "  SubscriberResolved False 1s ResolveFailed {message}"
        ));
        assert!(lines.contains(&want[0]), "no {:?} in: {run}", want[0]);
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("Ready False AGE ResolveFailed")),
            "{run}"
        );
        assert!(
            lines.contains(&"Counters: <none: not running>".to_string()),
            "{run}"
        );

        // The Broker with both, and the EventType its events recorded (once it is there).
        let event_types = Admin::for_api(&server.admin, "/apis/eventing.knative.dev/v1beta3");
        let end = Instant::now() + WAIT;
        while event_types.list("eventtypes", Some(NS)).await.is_empty() {
            assert!(Instant::now() < end, "no EventType recorded");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let event_type = herald_core::eventtype::generated_name(
            "default",
            NS,
            "com.example.order",
            "herald-cli",
        );
        let run = describe(&["broker", "default"]).await.ok();
        let address = &server.broker_url;
        assert_described(
            &run,
            &format!(
                "\
Name: default
Namespace: {NS}
Kind: Broker (eventing.knative.dev/v1)
Age: 1s
Generation: 1 (observed 1)
Address: {address}
Conditions:
  TYPE STATUS AGE REASON MESSAGE
  Ready True 1s
  Addressable True 1s
  IngressReady True 1s
  TriggerChannelReady True 1s
  EventPoliciesReady True 1s AuthenticationDisabled ingress authentication is off: anyone may send
Triggers:
  NAME SUBSCRIBER_URI READY REASON
  lost False ResolveFailed
  orders {subscriber} True
EventTypes:
  TYPE SOURCE SCHEMA NAME
  com.example.order herald-cli {event_type}
"
            ),
        );

        // The same facts as JSON, for scripts.
        let run = describe(&["trigger", "orders", "-o", "json"]).await.ok();
        let v: Value = serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run}"));
        assert_eq!(v["kind"], "Trigger", "{run}");
        assert_eq!(v["related"]["counters"]["delivered"], 3, "{run}");
        assert_eq!(v["related"]["counters"]["lag"], 0, "{run}");
        let run = describe(&["broker", "default", "-o", "yaml"]).await.ok();
        let v: Value = serde_yaml::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {run}"));
        let names: Vec<&str> = v["related"]["triggers"]
            .as_array()
            .unwrap_or_else(|| panic!("no related.triggers: {run}"))
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert_eq!(names, ["lost", "orders"], "{run}");

        // What is not there.
        let run = describe(&["trigger", "nope"]).await.failed();
        assert!(
            run.stderr
                .contains(&format!("Trigger \"nope\" not found in namespace \"{NS}\"")),
            "{run}"
        );
        assert!(run.stdout.is_empty(), "{run}");
        let run = describe(&["frobnicators", "x"]).await.failed();
        assert!(
            run.stderr.contains("unknown kind \"frobnicators\"")
                && run.stderr.contains("brokers")
                && run.stderr.contains("pingsources"),
            "{run}"
        );
    });
}

/// `herald get` answers with a table (or says there is none) for every kind the admin API
/// serves, and `describe` finds what `get` lists.
#[test]
fn get_and_describe_cover_every_kind() {
    run(async {
        let work = tempfile::tempdir().unwrap();
        let config = work.path().join("config");
        std::fs::create_dir_all(&config).unwrap();
        std::fs::write(
            config.join("herald.yaml"),
            format!(
                "{}---\napiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata:\n  name: tick\n  namespace: {NS}\nspec:\n  schedule: \"0 0 1 1 *\"\n  sink:\n    ref:\n      apiVersion: eventing.knative.dev/v1\n      kind: Broker\n      name: default\n",
                broker_yaml(NS, "default", &[])
            ),
        )
        .unwrap();
        let server = Replica::start(
            "herald",
            &config,
            &work.path().join("data"),
            (NS, "default"),
            &[],
        )
        .await;
        let kinds = herald_kinds(&server.admin).await;
        assert!(kinds.len() >= 14, "{kinds:?}");
        for kind in &kinds {
            let run = herald(&["get", kind, "-n", NS, "--server", &server.admin])
                .await
                .ok();
            let rows = table_rows(&run.stdout);
            match rows.first() {
                Some(header) => {
                    assert_eq!(header[0], "NAME", "{kind}: {run}");
                    assert_eq!(
                        header[header.len() - 3..],
                        ["AGE", "READY", "REASON"],
                        "{kind}: {run}"
                    );
                    for row in &rows[1..] {
                        let d = herald(&[
                            "describe",
                            kind,
                            &row[0],
                            "-n",
                            NS,
                            "--server",
                            &server.admin,
                        ])
                        .await
                        .ok();
                        assert!(d.stdout.starts_with("Name:"), "{kind}: {d}");
                        assert!(d.stdout.contains("Conditions:"), "{kind}: {d}");
                    }
                }
                None => assert!(
                    run.stderr.contains(&format!("No {kind} found")),
                    "{kind}: {run}"
                ),
            }
        }
        let run = herald(&["get", "pingsources", "-n", NS, "--server", &server.admin])
            .await
            .ok();
        let rows = table_rows(&run.stdout);
        assert_eq!(rows[0], ["NAME", "SINK", "AGE", "READY", "REASON"], "{run}");
        assert_eq!(
            rows[1][..2],
            ["tick".to_string(), server.broker_url.clone()],
            "{run}"
        );
        let run = herald(&[
            "describe",
            "pingsource",
            "tick",
            "-n",
            NS,
            "--server",
            &server.admin,
        ])
        .await
        .ok();
        let lines = normalized(&run.stdout);
        for want in [
            "Spec:",
            "schedule: 0 0 1 1 *",
            &format!("Sink URI: {}", server.broker_url),
        ] {
            assert!(lines.iter().any(|l| l == want), "no {want:?} in: {run}");
        }
    });
}

/// The plurals of every kind, as `herald get` names them when given an unknown one.
async fn herald_kinds(admin: &str) -> Vec<String> {
    let run = herald(&["get", "nothing-like-this", "--server", admin])
        .await
        .failed();
    let list = run
        .stderr
        .split("expected one of ")
        .nth(1)
        .unwrap_or_else(|| panic!("no kind list: {run}"));
    list.split(')')
        .next()
        .unwrap()
        .split(", ")
        .map(|k| k.trim().to_string())
        .collect()
}
