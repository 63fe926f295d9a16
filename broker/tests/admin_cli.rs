//! `herald apply|get|delete` and the admin API against a running `herald serve`, as kubectl
//! users expect them: apply answers created / unchanged / configured (bumping the
//! generation), get shows tables, YAML and JSON with status, delete removes; an invalid
//! resource (through the CLI, the API or a watched file) is refused naming the field and the
//! running one keeps its spec; status conditions say why a Trigger is not ready and turn
//! Ready by themselves once what it waits for is applied; `/readyz` lists what is not ready.

mod replicas;

use replicas::admin::*;
use replicas::*;
use reqwest::StatusCode;
use serde_json::Value;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

const SOURCE: &str = "/herald/tests/admin-cli";
const WAIT: Duration = Duration::from_secs(30);

/// A running `herald serve` on an (empty, watched) config directory, and a directory for the
/// files the test applies with the CLI.
struct Server {
    herald: Replica,
    admin: Admin,
    files: PathBuf,
    _work: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        let work = tempfile::tempdir().unwrap();
        let config = work.path().join("config");
        let files = work.path().join("files");
        std::fs::create_dir_all(&config).unwrap();
        std::fs::create_dir_all(&files).unwrap();
        let herald = Replica::serve("herald", &config, &work.path().join("data"), &[]).await;
        let admin = Admin::new(&herald.admin);
        Server {
            herald,
            admin,
            files,
            _work: work,
        }
    }

    /// Writes `text` to `name` in the files directory; returns its path.
    fn file(&self, name: &str, text: &str) -> String {
        let path = self.files.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    }

    /// `herald args... --server BASE`.
    async fn cli(&self, args: &[&str]) -> CliRun {
        let mut all = args.to_vec();
        all.extend(["--server", &self.herald.admin]);
        herald(&all).await
    }

    fn log(&self) -> String {
        format!("herald log:\n{}", self.herald.proc.log_tail())
    }
}

/// A line `kind.eventing.knative.dev/name how` in the CLI's output.
fn has_line(run: &CliRun, line: &str) -> bool {
    run.stdout.lines().any(|l| l.trim() == line)
}

fn assert_lines(run: &CliRun, lines: &[&str]) {
    for line in lines {
        assert!(has_line(run, line), "{line:?} missing: {run}");
    }
}

fn json_of(run: &CliRun) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {run}"))
}

/// Posts the event `id` with extension `kind` to `url`; it must be accepted.
async fn post(url: &str, id: &str, kind: &str) {
    let r = Publisher::new(SOURCE)
        .post(url, id, &[("kind", kind.into())])
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED, "{id} to {url}");
}

/// Posts `reject` (which the Trigger must not deliver) and then `accept` (which it must):
/// once `accept` arrived, `reject` would have too.
async fn delivers_only(sink: &Sink, url: &str, accept: (&str, &str), reject: (&str, &str)) {
    post(url, reject.0, reject.1).await;
    post(url, accept.0, accept.1).await;
    let want: HashSet<String> = [accept.0.to_string()].into();
    sink.wait_for(&want, WAIT, accept.0).await;
    assert!(
        !sink.counts().contains_key(reject.0),
        "{} (kind {}) was delivered",
        reject.0,
        reject.1
    );
}

fn rfc3339(value: &Value, what: &str) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {value}"));
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{what} {text:?} is not RFC 3339: {e}"));
}

// ---------------------------------------------------------------------------------------
// 1. apply, get, delete

#[test]
fn apply_get_delete_round_trip() {
    run(async {
        let server = Server::start().await;
        let sink = Sink::start((0, 0)).await;
        let broker = server.file("broker.yaml", &broker_yaml("cli", "rt", &[]));
        // No namespace in the Trigger: `-n cli` gives it one.
        let trigger_text = |kind: &str| {
            trigger_yaml(
                "cli",
                "t",
                "rt",
                &sink.url,
                &[("type", EVENT_TYPE), ("kind", kind)],
            )
            .replace("  namespace: cli\n", "")
        };
        let trigger = server.file("trigger.yaml", &trigger_text("a"));
        let dir = server.files.to_str().unwrap().to_string();
        assert!(server.admin.list("brokers", None).await.is_empty());

        let run = server.cli(&["apply", "-f", &broker]).await.ok();
        assert_eq!(
            run.stdout.trim(),
            "broker.eventing.knative.dev/rt created",
            "{run}"
        );
        let run = server.cli(&["apply", "-f", &dir, "-n", "cli"]).await.ok();
        assert_lines(
            &run,
            &[
                "broker.eventing.knative.dev/rt unchanged",
                "trigger.eventing.knative.dev/t created",
            ],
        );
        let run = server.cli(&["apply", "-f", &dir, "-n", "cli"]).await.ok();
        assert_lines(
            &run,
            &[
                "broker.eventing.knative.dev/rt unchanged",
                "trigger.eventing.knative.dev/t unchanged",
            ],
        );
        let first = server.admin.wait_ready("triggers", "cli", "t", WAIT).await;
        assert_eq!(generation(&first), 1, "{}", brief(&first));

        // Edit: configured, generation bumped, delivering under the new filter.
        std::fs::write(&trigger, trigger_text("b")).unwrap();
        let run = server
            .cli(&["apply", "-f", &trigger, "-n", "cli"])
            .await
            .ok();
        assert_eq!(
            run.stdout.trim(),
            "trigger.eventing.knative.dev/t configured",
            "{run}"
        );
        let run = server
            .cli(&["get", "triggers", "t", "-n", "cli", "-o", "json"])
            .await
            .ok();
        let t = json_of(&run);
        assert_eq!(t["kind"], "Trigger", "{run}");
        assert_eq!(generation(&t), 2, "{}", brief(&t));
        assert_eq!(observed_generation(&t), 2, "{}", brief(&t));
        assert!(is_ready(&t), "{}", brief(&t));
        assert_eq!(t["spec"]["filter"]["attributes"]["kind"], "b", "{run}");
        let mut findings = Findings::default();
        findings.check(t["status"]["subscriberUri"] == sink.url.as_str(), || {
            format!("status.subscriberUri is not the subscriber's URI: {run}")
        });
        rfc3339(&t["metadata"]["creationTimestamp"], "creationTimestamp");
        assert_eq!(
            t["metadata"]["creationTimestamp"], first["metadata"]["creationTimestamp"],
            "an edit keeps the creation time"
        );
        for c in t["status"]["conditions"].as_array().unwrap() {
            rfc3339(&c["lastTransitionTime"], "lastTransitionTime");
        }
        let broker_url = server.herald.url_of("cli", "rt");
        delivers_only(&sink, &broker_url, ("rt-b", "b"), ("rt-a", "a")).await;

        // Tables (the broker one through HERALD_SERVER rather than --server).
        let run = server.cli(&["get", "triggers", "-n", "cli"]).await.ok();
        let rows = table_rows(&run.stdout);
        assert_eq!(
            rows[0],
            ["NAME", "BROKER", "SUBSCRIBER_URI", "AGE", "READY", "REASON"],
            "{run}"
        );
        assert_eq!(rows.len(), 2, "{run}");
        findings.check(
            rows[1].len() == 5 && rows[1][..3] == ["t", "rt", sink.url.as_str()],
            || format!("the table's row is not NAME BROKER SUBSCRIBER_URI AGE READY: {run}"),
        );
        assert_eq!(rows[1][0], "t", "{run}");
        assert_eq!(rows[1].last().map(String::as_str), Some("True"), "{run}");
        let run = herald_with_env(
            &["get", "brokers", "-n", "cli"],
            &[("HERALD_SERVER", server.herald.admin.as_str())],
        )
        .await
        .ok();
        let rows = table_rows(&run.stdout);
        assert_eq!(rows[0], ["NAME", "URL", "AGE", "READY", "REASON"], "{run}");
        assert_eq!(rows.len(), 2, "{run}");
        assert_eq!(rows[1][..2], ["rt", broker_url.as_str()], "{run}");
        assert_eq!(rows[1][3], "True", "{run}");

        // YAML of one, JSON of all namespaces.
        let run = server
            .cli(&["get", "brokers", "rt", "-n", "cli", "-o", "yaml"])
            .await
            .ok();
        let b: Value =
            serde_yaml::from_str(&run.stdout).unwrap_or_else(|e| panic!("not YAML ({e}): {run}"));
        assert_eq!(b["kind"], "Broker", "{run}");
        assert_eq!(b["status"]["address"]["url"], broker_url.as_str(), "{run}");
        for c in [
            "Ready",
            "Addressable",
            "IngressReady",
            "TriggerChannelReady",
        ] {
            assert_eq!(condition_state(&b, c).0, "True", "{c}: {run}");
        }
        let run = server
            .cli(&["get", "triggers", "-A", "-o", "json"])
            .await
            .ok();
        let list = json_of(&run);
        let names: Vec<String> = list["items"]
            .as_array()
            .unwrap_or_else(|| panic!("no items: {run}"))
            .iter()
            .map(|i| {
                format!(
                    "{}/{}",
                    i["metadata"]["namespace"].as_str().unwrap_or("?"),
                    i["metadata"]["name"].as_str().unwrap_or("?")
                )
            })
            .collect();
        assert_eq!(names, ["cli/t"], "{run}");

        // Delete two by name in one command, and one by file; then get fails.
        let second = server.file(
            "second.yaml",
            &trigger_yaml("cli", "u", "rt", &sink.url, &[("kind", "u")]),
        );
        server.cli(&["apply", "-f", &second]).await.ok();
        let run = server
            .cli(&["delete", "triggers", "t", "u", "-n", "cli"])
            .await
            .ok();
        assert_lines(
            &run,
            &[
                "trigger.eventing.knative.dev/t deleted",
                "trigger.eventing.knative.dev/u deleted",
            ],
        );
        assert!(server.admin.list("triggers", Some("cli")).await.is_empty());
        let run = server
            .cli(&["get", "triggers", "t", "-n", "cli"])
            .await
            .failed();
        assert!(
            run.stderr.contains("404") || run.stderr.contains("not found"),
            "{run}"
        );
        let run = server.cli(&["delete", "-f", &broker]).await.ok();
        assert_eq!(
            run.stdout.trim(),
            "broker.eventing.knative.dev/rt deleted",
            "{run}"
        );
        server
            .cli(&["get", "brokers", "rt", "-n", "cli"])
            .await
            .failed();
        let run = server
            .cli(&["delete", "brokers", "rt", "-n", "cli"])
            .await
            .failed();
        assert!(run.stderr.contains("not found"), "{run}");
        let gone = Publisher::new(SOURCE)
            .post(&broker_url, "after-delete", &[])
            .await
            .unwrap();
        assert_eq!(
            gone.status(),
            StatusCode::NOT_FOUND,
            "ingress of a deleted Broker"
        );
        findings.assert_none();
    });
}

/// The admin API itself: PUT answers 201/200 with `herald-applied`, takes YAML and JSON;
/// DELETE answers 200, then 404.
#[test]
fn admin_api_put_and_delete() {
    run(async {
        let server = Server::start().await;
        let admin = &server.admin;
        let yaml = broker_yaml("api", "b", &[]);
        let a = admin
            .put("brokers", "api", "b", "application/yaml", &yaml)
            .await;
        assert_eq!(
            (a.status, a.applied.as_deref()),
            (StatusCode::CREATED, Some("created")),
            "{:?}",
            a.body
        );
        assert_eq!(a.body["metadata"]["generation"], 1, "{:?}", a.body);
        let a = admin
            .put("brokers", "api", "b", "application/yaml", &yaml)
            .await;
        assert_eq!(
            (a.status, a.applied.as_deref()),
            (StatusCode::OK, Some("unchanged")),
            "{:?}",
            a.body
        );
        let json = serde_json::json!({
            "apiVersion": "eventing.knative.dev/v1",
            "kind": "Broker",
            "metadata": {"name": "b", "namespace": "api",
                         "annotations": {"herald.dev/channel": "sled"}},
        });
        let a = admin
            .put("brokers", "api", "b", "application/json", &json.to_string())
            .await;
        assert_eq!(
            (a.status, a.applied.as_deref()),
            (StatusCode::OK, Some("configured")),
            "{:?}",
            a.body
        );
        assert_eq!(a.body["metadata"]["generation"], 2, "{:?}", a.body);
        let listed = admin.list("brokers", None).await;
        assert_eq!(listed.len(), 1, "{listed:?}");
        let a = admin.delete("brokers", "api", "b").await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        let a = admin.delete("brokers", "api", "b").await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{:?}", a.body);
        assert!(admin.get("brokers", "api", "b").await.is_none());
    });
}

// ---------------------------------------------------------------------------------------
// 2. Invalid resources are refused; the running one keeps its spec

/// The invalid Trigger documents the tests try, each with the field the refusal must name.
fn invalid_triggers(subscriber: &str) -> Vec<(&'static str, String, &'static str)> {
    vec![
        (
            "invalid CESQL",
            trigger_yaml_with_spec(
                "inv",
                "t",
                &format!(
                    "  broker: b\n  filters:\n    - cesql: \"type = \"\n  subscriber:\n    \
                     uri: {subscriber}\n"
                ),
            ),
            "spec.filters",
        ),
        (
            "an unknown field",
            trigger_yaml_with_spec(
                "inv",
                "t",
                &format!("  broker: b\n  subscribr:\n    uri: {subscriber}\n"),
            ),
            "subscribr",
        ),
    ]
}

#[test]
fn an_invalid_apply_is_refused_and_the_running_trigger_keeps_its_spec() {
    run(async {
        let server = Server::start().await;
        let sink = Sink::start((0, 0)).await;
        let good = server.file(
            "good.yaml",
            &format!(
                "{}---\n{}",
                broker_yaml("inv", "b", &[]),
                trigger_yaml("inv", "t", "b", &sink.url, &[("kind", "a")])
            ),
        );
        server.cli(&["apply", "-f", &good]).await.ok();
        let before = server.admin.wait_ready("triggers", "inv", "t", WAIT).await;
        let url = server.herald.url_of("inv", "b");
        delivers_only(&sink, &url, ("inv-a-0", "a"), ("inv-b-0", "b")).await;

        for (i, (what, yaml, field)) in invalid_triggers(&sink.url).into_iter().enumerate() {
            let path = server.file(&format!("bad-{i}.yaml"), &yaml);
            let run = server.cli(&["apply", "-f", &path]).await.failed();
            assert!(
                run.stderr.contains(field),
                "{what}: stderr does not name {field:?}: {run}"
            );
            // The API's answer: 422, a Kubernetes Status naming the field.
            let a = server
                .admin
                .put("triggers", "inv", "t", "application/yaml", &yaml)
                .await;
            assert_eq!(
                a.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{what}: {:?}",
                a.body
            );
            assert_eq!(a.body["kind"], "Status", "{what}: {:?}", a.body);
            let message = a.body["message"].as_str().unwrap_or_default();
            assert!(message.contains(field), "{what}: message {message:?}");
            let causes: Vec<String> = a.body["details"]["causes"]
                .as_array()
                .map(|cs| {
                    cs.iter()
                        .filter_map(|c| c["field"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            assert!(
                causes.iter().any(|c| c.starts_with("spec")),
                "{what}: details.causes[].field does not name the field: {:?}",
                a.body
            );

            let now = server
                .admin
                .get("triggers", "inv", "t")
                .await
                .expect("the Trigger stays");
            assert_eq!(
                generation(&now),
                generation(&before),
                "{what}: {}",
                brief(&now)
            );
            assert_eq!(now["spec"], before["spec"], "{what}: the spec changed");
            assert!(is_ready(&now), "{what}: {}", brief(&now));
            delivers_only(
                &sink,
                &url,
                (&format!("inv-a-{}", i + 1), "a"),
                (&format!("inv-b-{}", i + 1), "b"),
            )
            .await;
        }
        assert!(
            server.herald.proc.find_line("panicked").is_none(),
            "{}",
            server.log()
        );
    });
}

/// A change of the watched directory that does not load (invalid CESQL in one of its
/// resources, YAML that does not parse) is refused whole and logged; the running resources
/// stay; the next valid change applies.
#[test]
fn an_invalid_config_file_change_is_refused_whole() {
    run(async {
        let work = tempfile::tempdir().unwrap();
        let config = work.path().join("config");
        std::fs::create_dir_all(&config).unwrap();
        let sink = Sink::start((0, 0)).await;
        let file = config.join("herald.yaml");
        let broker = broker_yaml("cfg", "b", &[]);
        let t1 = |kind: &str| trigger_yaml("cfg", "t1", "b", &sink.url, &[("kind", kind)]);
        write_atomically(&file, &format!("{broker}---\n{}", t1("a")));
        let mut herald = Replica::start(
            "herald",
            &config,
            &work.path().join("data"),
            ("cfg", "b"),
            &[],
        )
        .await;
        let admin = Admin::new(&herald.admin);
        let before = admin.wait_ready("triggers", "cfg", "t1", WAIT).await;
        let url = herald.broker_url.clone();
        delivers_only(&sink, &url, ("cfg-a-0", "a"), ("cfg-b-0", "b")).await;

        // T1 changed validly, next to a Trigger T2 with invalid CESQL, in one write.
        let bad_t2 = trigger_yaml_with_spec(
            "cfg",
            "t2",
            &format!(
                "  broker: b\n  filters:\n    - cesql: \"type = \"\n  subscriber:\n    uri: {}\n",
                sink.url
            ),
        );
        const REFUSED: &str = "configuration change not applied";
        write_atomically(&file, &format!("{broker}---\n{}---\n{bad_t2}", t1("b")));
        herald.proc.wait_line(REFUSED).await;
        let log = herald.proc.log_tail();
        assert!(
            log.contains("spec.filters"),
            "the refusal names no field:\n{log}"
        );
        // YAML that does not parse, in a file of its own.
        let broken = config.join("broken.yaml");
        write_atomically(
            &broken,
            "apiVersion: eventing.knative.dev/v1\nkind: [Trigger\n",
        );
        let end = std::time::Instant::now() + WAIT;
        while herald.proc.count_lines(REFUSED) < 2 {
            assert!(
                std::time::Instant::now() < end,
                "the broken YAML was not reported:\n{}",
                herald.proc.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let now = admin.get("triggers", "cfg", "t1").await.expect("T1 stays");
        assert_eq!(generation(&now), generation(&before), "{}", brief(&now));
        assert!(
            admin.get("triggers", "cfg", "t2").await.is_none(),
            "T2 was applied"
        );
        delivers_only(&sink, &url, ("cfg-a-1", "a"), ("cfg-b-1", "b")).await;

        // Fixed: the whole change applies.
        std::fs::remove_file(&broken).unwrap();
        write_atomically(&file, &format!("{broker}---\n{}", t1("b")));
        let changed = admin
            .wait("triggers", "cfg", "t1", WAIT, "changed", |o| {
                o.is_some_and(|o| {
                    generation(o) == generation(&before) + 1
                        && observed_generation(o) == generation(o)
                })
            })
            .await
            .unwrap();
        assert!(is_ready(&changed), "{}", brief(&changed));
        delivers_only(&sink, &url, ("cfg-b-2", "b"), ("cfg-a-2", "a")).await;
        assert!(
            herald.proc.alive(),
            "herald died:\n{}",
            herald.proc.log_tail()
        );
    });
}

// ---------------------------------------------------------------------------------------
// 3. Status conditions

/// Whether `/readyz` lists `name` (namespace/name) as not ready with `reason`; checks that
/// the answer's code agrees with its `ready`.
async fn readyz_lists(admin: &Admin, name: &str, reason: &str) -> bool {
    let (status, body) = admin.readyz().await;
    let ready = body["ready"]
        .as_bool()
        .unwrap_or_else(|| panic!("/readyz without `ready`: {body}"));
    assert_eq!(
        status,
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        "/readyz: {body}"
    );
    assert!(
        body["backends"].is_array(),
        "/readyz without backends: {body}"
    );
    body["notReady"].as_array().is_some_and(|items| {
        items.iter().any(|i| {
            i["kind"] == "Trigger"
                && i["name"] == name
                && i["reason"] == reason
                && i["message"].as_str().is_some_and(|m| !m.is_empty())
        })
    })
}

async fn wait_condition(admin: &Admin, name: &str, condition: &str, state: (&str, &str)) -> Value {
    admin
        .wait(
            "triggers",
            "st",
            name,
            WAIT,
            &format!("{condition}={state:?}"),
            |o| {
                o.is_some_and(|o| {
                    let (s, r) = condition_state(o, condition);
                    (s.as_str(), r.as_str()) == state
                })
            },
        )
        .await
        .expect("present")
}

#[test]
fn trigger_status_says_what_it_waits_for_and_turns_ready_by_itself() {
    run(async {
        let server = Server::start().await;
        let admin = &server.admin;
        let early_sink = Sink::start((0, 0)).await;
        let final_sink = Sink::start((0, 0)).await;

        // A Trigger applied before its Broker.
        let early = server.file(
            "early.yaml",
            &trigger_yaml(
                "st",
                "early",
                "late",
                &early_sink.url,
                &[("type", EVENT_TYPE)],
            ),
        );
        let run = server.cli(&["apply", "-f", &early]).await.ok();
        assert_lines(&run, &["trigger.eventing.knative.dev/early created"]);
        let t = wait_condition(
            admin,
            "early",
            "BrokerReady",
            ("False", "BrokerDoesNotExist"),
        )
        .await;
        assert_eq!(
            condition_state(&t, "Ready"),
            ("False".to_string(), "BrokerDoesNotExist".to_string()),
            "{}",
            brief(&t)
        );
        let run = server
            .cli(&["get", "triggers", "early", "-n", "st"])
            .await
            .ok();
        let rows = table_rows(&run.stdout);
        assert_eq!(
            rows.get(1).map(|r| r[r.len() - 2..].to_vec()),
            Some(vec!["False".to_string(), "BrokerDoesNotExist".to_string()]),
            "{run}"
        );
        assert!(
            readyz_lists(admin, "st/early", "BrokerDoesNotExist").await,
            "/readyz does not list st/early: {:?}",
            admin.readyz().await
        );

        // Its Broker applied: Ready by itself, and delivering.
        let late = server.file("late.yaml", &broker_yaml("st", "late", &[]));
        server.cli(&["apply", "-f", &late]).await.ok();
        admin.wait_ready("triggers", "st", "early", WAIT).await;
        let late_url = server.herald.url_of("st", "late");
        post(&late_url, "st-0", "x").await;
        early_sink
            .wait_for(&["st-0".to_string()].into(), WAIT, "early")
            .await;

        // A subscriber ref to a Broker that does not exist, and one to a kind Herald
        // cannot resolve.
        let refs = server.file(
            "refs.yaml",
            &format!(
                "{}---\n{}",
                trigger_yaml_with_spec(
                    "st",
                    "forward",
                    "  broker: late\n  filter:\n    attributes:\n      kind: fwd\n  \
                     subscriber:\n    ref:\n      apiVersion: eventing.knative.dev/v1\n      \
                     kind: Broker\n      name: target\n",
                ),
                trigger_yaml_with_spec(
                    "st",
                    "svc",
                    "  broker: late\n  subscriber:\n    ref:\n      apiVersion: \
                     serving.knative.dev/v1\n      kind: Service\n      name: display\n",
                ),
            ),
        );
        server.cli(&["apply", "-f", &refs]).await.ok();
        for name in ["forward", "svc"] {
            let t = wait_condition(
                admin,
                name,
                "SubscriberResolved",
                ("False", "ResolveFailed"),
            )
            .await;
            assert_eq!(
                condition_state(&t, "Ready"),
                ("False".to_string(), "ResolveFailed".to_string()),
                "{}",
                brief(&t)
            );
            assert_eq!(
                condition_state(&t, "BrokerReady").0,
                "True",
                "{}",
                brief(&t)
            );
            assert!(
                readyz_lists(admin, &format!("st/{name}"), "ResolveFailed").await,
                "/readyz does not list st/{name}: {:?}",
                admin.readyz().await
            );
        }

        // The referenced Broker appears (with a Trigger of its own): `forward` turns Ready
        // and events flow late -> forward -> target -> final.
        let target = server.file(
            "target.yaml",
            &format!(
                "{}---\n{}",
                broker_yaml("st", "target", &[]),
                trigger_yaml("st", "final", "target", &final_sink.url, &[])
            ),
        );
        server.cli(&["apply", "-f", &target]).await.ok();
        let forward = admin.wait_ready("triggers", "st", "forward", WAIT).await;
        let mut findings = Findings::default();
        let target_url = server.herald.url_of("st", "target");
        findings.check(
            forward["status"]["subscriberUri"] == target_url.as_str(),
            || {
                format!(
                    "status.subscriberUri of a Trigger with a Broker ref is not {target_url}: {}",
                    forward["status"]
                )
            },
        );
        post(&late_url, "st-fwd", "fwd").await;
        final_sink
            .wait_for(&["st-fwd".to_string()].into(), WAIT, "through the ref")
            .await;
        assert!(!readyz_lists(admin, "st/forward", "ResolveFailed").await);
        let svc = admin.get("triggers", "st", "svc").await.unwrap();
        assert_eq!(
            condition_state(&svc, "SubscriberResolved"),
            ("False".to_string(), "ResolveFailed".to_string()),
            "{}",
            brief(&svc)
        );
        assert!(readyz_lists(admin, "st/svc", "ResolveFailed").await);
        server
            .cli(&["delete", "triggers", "svc", "-n", "st"])
            .await
            .ok();
        let (_, body) = admin.readyz().await;
        assert!(
            body["notReady"].as_array().is_some_and(|a| a.is_empty()),
            "everything is ready now: {body}"
        );
        findings.assert_none();
    });
}

/// The two feeds meet: a Trigger from a watched file (`.yml` counts as YAML) waits for its
/// Broker, which comes through the API, goes away through the API, and comes back in a file;
/// the Trigger follows by itself each time. A file that is not YAML never counts, however
/// broken.
#[test]
fn a_trigger_from_a_file_follows_its_broker_from_either_feed() {
    run(async {
        let work = tempfile::tempdir().unwrap();
        let config = work.path().join("config");
        std::fs::create_dir_all(&config).unwrap();
        let sink = Sink::start((0, 0)).await;
        std::fs::write(config.join("notes.txt"), "kind: [not yaml\n").unwrap();
        write_atomically(
            &config.join("t.yml"),
            &trigger_yaml("mix", "t", "b", &sink.url, &[("type", EVENT_TYPE)]),
        );
        let mut herald = Replica::serve("herald", &config, &work.path().join("data"), &[]).await;
        let admin = Admin::new(&herald.admin);
        let not_ready = |o: Option<&Value>| {
            o.is_some_and(|o| condition_state(o, "BrokerReady").1 == "BrokerDoesNotExist")
        };
        admin
            .wait(
                "triggers",
                "mix",
                "t",
                WAIT,
                "BrokerDoesNotExist",
                not_ready,
            )
            .await;

        let broker = broker_yaml("mix", "b", &[]);
        let a = admin
            .put("brokers", "mix", "b", "application/yaml", &broker)
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
        admin.wait_ready("triggers", "mix", "t", WAIT).await;
        let url = herald.url_of("mix", "b");
        post(&url, "mix-0", "x").await;
        sink.wait_for(&["mix-0".to_string()].into(), WAIT, "mix-0")
            .await;

        let a = admin.delete("brokers", "mix", "b").await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        admin
            .wait(
                "triggers",
                "mix",
                "t",
                WAIT,
                "BrokerDoesNotExist",
                not_ready,
            )
            .await;

        // Another non-YAML file changes nothing; the Broker's file does.
        std::fs::write(config.join("notes.txt"), "still: [not yaml\n").unwrap();
        write_atomically(&config.join("b.yaml"), &broker);
        admin.wait_ready("brokers", "mix", "b", WAIT).await;
        admin.wait_ready("triggers", "mix", "t", WAIT).await;
        post(&url, "mix-1", "x").await;
        sink.wait_for(&["mix-1".to_string()].into(), WAIT, "mix-1")
            .await;
        assert_eq!(
            herald.proc.count_lines("configuration change not applied"),
            0,
            "a change was refused:\n{}",
            herald.proc.log_tail()
        );
        assert!(
            herald.proc.alive(),
            "herald died:\n{}",
            herald.proc.log_tail()
        );
    });
}
