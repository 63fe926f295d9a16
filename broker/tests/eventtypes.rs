//! The EventType registry over a real `herald serve`: a Broker and a Channel each record
//! exactly one EventType per (type, source) they accept, named as Knative's auto-creation
//! names it, referencing them, with Knative's attributes; a declared EventType (YAML) is
//! listed and Ready, and replaces a recorded one describing the same events; recorded ones
//! survive a restart on the durable default; a bad EventType is refused naming its field;
//! `--eventtype-auto-create=false` (and its variable) records none; `herald get eventtypes`
//! prints them as a table and `herald get eventtype NAME -o yaml` one as YAML.

mod replicas;

use herald_core::eventtype::generated_name;
use replicas::admin::*;
use replicas::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const API: &str = "/apis/eventing.knative.dev/v1beta3";
const SCHEMA: &str = "https://example.com/schemas/order-shipped.json";

fn namespace(test: &str) -> String {
    format!("et-{test}-{}", std::process::id())
}

/// A Broker `default` and an InMemoryChannel `orders` in `ns`.
fn write_config(dir: &Path, ns: &str, extra: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let channel = format!(
        "apiVersion: messaging.knative.dev/v1\nkind: InMemoryChannel\nmetadata:\n  name: orders\n  namespace: {ns}\n"
    );
    write_atomically(
        &dir.join("herald.yaml"),
        &format!("{}---\n{channel}{extra}", broker_yaml(ns, "default", &[])),
    );
}

fn declared_yaml(ns: &str, name: &str, event_type: &str, source: &str) -> String {
    format!(
        r#"---
apiVersion: eventing.knative.dev/v1beta3
kind: EventType
metadata:
  name: {name}
  namespace: {ns}
spec:
  reference: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: default}}
  description: Orders placed in the shop
  attributes:
  - {{name: type, required: true, value: {event_type}}}
  - {{name: source, required: true, value: {source}}}
  - {{name: specversion, required: true, value: "1.0"}}
  - {{name: id, required: true}}
"#
    )
}

/// Sends one binary-mode event; the answer must be 202.
async fn send(http: &reqwest::Client, url: &str, ty: &str, source: &str, schema: Option<&str>) {
    let mut request = http
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", uuid::Uuid::new_v4().to_string())
        .header("ce-type", ty)
        .header("ce-source", source)
        .header("content-type", "application/json")
        .body(r#"{"n": 1}"#);
    if let Some(s) = schema {
        request = request.header("ce-dataschema", s);
    }
    let answer = request.send().await.unwrap();
    assert_eq!(
        answer.status(),
        202,
        "{url}: {}",
        answer.text().await.unwrap()
    );
}

/// The pattern every test sends: 3 types (one from two sources, one with a dataschema),
/// each event 4 times.
async fn send_pattern(http: &reqwest::Client, url: &str) {
    for _ in 0..4 {
        send(http, url, "com.example.order.created", "/shop", None).await;
        send(http, url, "com.example.order.created", "/app", None).await;
        send(http, url, "com.example.order.paid", "/shop", None).await;
        send(
            http,
            url,
            "com.example.order.shipped",
            "/warehouse",
            Some(SCHEMA),
        )
        .await;
    }
}

/// The distinct (type, source) pairs of [`send_pattern`].
const PATTERN: [(&str, &str); 4] = [
    ("com.example.order.created", "/shop"),
    ("com.example.order.created", "/app"),
    ("com.example.order.paid", "/shop"),
    ("com.example.order.shipped", "/warehouse"),
];

fn attribute<'a>(et: &'a Value, name: &str) -> Option<&'a Value> {
    et["spec"]["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["name"] == name)
}

fn value_of(et: &Value, name: &str) -> String {
    attribute(et, name)
        .and_then(|a| a["value"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// Polls the EventTypes of `ns` until `done` holds; returns them.
async fn wait_types(
    admin: &Admin,
    ns: &str,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let end = std::time::Instant::now() + WAIT;
    loop {
        let items = admin.list("eventtypes", Some(ns)).await;
        if done(&items) {
            return items;
        }
        let names: Vec<_> = items
            .iter()
            .map(|e| {
                format!(
                    "{} {} {}",
                    e["metadata"]["name"],
                    value_of(e, "type"),
                    value_of(e, "source")
                )
            })
            .collect();
        assert!(
            std::time::Instant::now() < end,
            "not {what} within {WAIT:?}: {names:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `herald describe KIND NAME`, and the rows of its EventTypes table (header first).
async fn described_event_types(
    admin: &str,
    kind: &str,
    name: &str,
    ns: &str,
) -> (CliRun, Vec<Vec<String>>) {
    let described = herald(&["describe", kind, name, "-n", ns, "--server", admin])
        .await
        .ok();
    let section = described
        .stdout
        .split("EventTypes:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no EventTypes section:\n{described}"));
    let rows = table_rows(section);
    (described, rows)
}

fn has(items: &[Value], name: &str) -> bool {
    items.iter().any(|e| e["metadata"]["name"] == name)
}

/// Sends a type never sent before and waits until it is recorded: recordings are handled in
/// order, so everything sent before it has been looked at by then.
async fn settle(http: &reqwest::Client, admin: &Admin, url: &str, ns: &str, target: &str) {
    let sentinel = format!("dev.herald.sentinel.{}", uuid::Uuid::new_v4().simple());
    send(http, url, &sentinel, "/sentinel", None).await;
    let name = generated_name(target, ns, &sentinel, "/sentinel");
    wait_types(admin, ns, "the sentinel recorded", |items| {
        has(items, &name)
    })
    .await;
}

#[test]
fn brokers_and_channels_record_one_event_type_per_type_and_source() {
    run(async {
        let ns = namespace("record");
        let work = tempfile::tempdir().unwrap();
        let config = work.path().join("config");
        let declared = declared_yaml(&ns, "orders-placed", "com.example.declared", "/declared");
        write_config(&config, &ns, &declared);
        let server = Replica::start(
            "herald",
            &config,
            &work.path().join("data"),
            (&ns, "default"),
            &["--channel", "memory", "--eventtype-auto-create"],
        )
        .await;
        let admin = Admin::for_api(&server.admin, API);
        let http = reqwest::Client::new();
        let channel_url = format!("{}/channels/{ns}/orders", server.base);

        // The declared one is listed and Ready at once: its Broker exists.
        let et = admin
            .wait_ready("eventtypes", &ns, "orders-placed", WAIT)
            .await;
        assert_eq!(
            condition_state(&et, "ReferenceExists").0,
            "True",
            "{}",
            brief(&et)
        );

        send_pattern(&http, &server.broker_url).await;
        send_pattern(&http, &channel_url).await;
        // Events the declared EventType describes record nothing more.
        send(
            &http,
            &server.broker_url,
            "com.example.declared",
            "/declared",
            None,
        )
        .await;
        settle(&http, &admin, &server.broker_url, &ns, "default").await;
        settle(&http, &admin, &channel_url, &ns, "orders").await;
        // Sent again: still nothing new.
        send_pattern(&http, &server.broker_url).await;
        send_pattern(&http, &channel_url).await;
        settle(&http, &admin, &server.broker_url, &ns, "default").await;
        settle(&http, &admin, &channel_url, &ns, "orders").await;

        let items = admin.list("eventtypes", Some(&ns)).await;
        let mut findings = Findings::default();
        let recorded: Vec<&Value> = items
            .iter()
            .filter(|e| !value_of(e, "type").starts_with("dev.herald.sentinel."))
            .filter(|e| e["metadata"]["name"] != "orders-placed")
            .collect();
        findings.check(recorded.len() == 2 * PATTERN.len(), || {
            format!(
                "{} recorded, want {}: {recorded:#?}",
                recorded.len(),
                2 * PATTERN.len()
            )
        });
        for (target, kind, api_version) in [
            ("default", "Broker", "eventing.knative.dev/v1"),
            ("orders", "InMemoryChannel", "messaging.knative.dev/v1"),
        ] {
            for (ty, source) in PATTERN {
                let name = generated_name(target, &ns, ty, source);
                let found: Vec<_> = recorded
                    .iter()
                    .filter(|e| value_of(e, "type") == ty && value_of(e, "source") == source)
                    .filter(|e| e["spec"]["reference"]["name"] == target)
                    .collect();
                findings.check(found.len() == 1, || {
                    format!(
                        "{kind} {target}: {} EventTypes for ({ty}, {source})",
                        found.len()
                    )
                });
                let Some(et) = found.first() else { continue };
                findings.check(et["metadata"]["name"] == name.as_str(), || {
                    format!("name {} is not Knative's {name}", et["metadata"]["name"])
                });
                let r = &et["spec"]["reference"];
                findings.check(
                    r["kind"] == kind
                        && r["apiVersion"] == api_version
                        && r["namespace"] == ns.as_str(),
                    || format!("{name}: reference {r}"),
                );
                findings.check(is_ready(et), || format!("{name} not Ready: {}", brief(et)));
                for (attr, required) in [
                    ("type", true),
                    ("source", true),
                    ("specversion", true),
                    ("id", true),
                ] {
                    findings.check(
                        attribute(et, attr).is_some_and(|a| a["required"] == required),
                        || {
                            format!(
                                "{name}: attribute {attr} (required {required}) missing: {}",
                                et["spec"]
                            )
                        },
                    );
                }
                findings.check(value_of(et, "specversion") == "1.0", || {
                    format!("{name}: specversion")
                });
                let schema = if ty == "com.example.order.shipped" {
                    SCHEMA
                } else {
                    ""
                };
                findings.check(value_of(et, "dataschema") == schema, || {
                    format!(
                        "{name}: dataschema {:?}, want {schema:?}",
                        value_of(et, "dataschema")
                    )
                });
                findings.check(
                    et["spec"]["description"] == "Event Type auto-created by controller",
                    || format!("{name}: description {}", et["spec"]["description"]),
                );
            }
        }
        findings.assert_none();

        // The CLI: a kubectl-like table, one row per EventType, and one as YAML.
        let table = herald(&["get", "eventtypes", "-n", &ns, "--server", &server.admin])
            .await
            .ok();
        let rows = table_rows(&table.stdout);
        assert_eq!(
            rows[0],
            [
                "NAME",
                "TYPE",
                "SOURCE",
                "SCHEMA",
                "REFERENCE",
                "AGE",
                "READY",
                "REASON"
            ],
            "{table}"
        );
        assert_eq!(rows.len(), 1 + items.len(), "{table}");
        let shipped = generated_name("default", &ns, "com.example.order.shipped", "/warehouse");
        let row = rows
            .iter()
            .find(|r| r[0] == shipped)
            .unwrap_or_else(|| panic!("{table}"));
        assert_eq!(
            row[1..5],
            [
                "com.example.order.shipped",
                "/warehouse",
                SCHEMA,
                "Broker/default"
            ],
            "{table}"
        );
        assert_eq!(row[6], "True", "{table}");
        let paid = generated_name("orders", &ns, "com.example.order.paid", "/shop");
        let row = rows
            .iter()
            .find(|r| r[0] == paid)
            .unwrap_or_else(|| panic!("{table}"));
        // No schema: the column is empty, so the row has one cell less.
        assert_eq!(
            row[1..4],
            ["com.example.order.paid", "/shop", "InMemoryChannel/orders"],
            "{table}"
        );
        let all = herald(&["get", "eventtypes", "-A", "--server", &server.admin])
            .await
            .ok();
        let all_rows = table_rows(&all.stdout);
        assert_eq!(all_rows[0][..2], ["NAMESPACE", "NAME"], "{all}");
        assert!(
            all_rows.iter().any(|r| r[0] == ns && r[1] == shipped),
            "{all}"
        );
        let yaml = herald(&[
            "get",
            "eventtype",
            &shipped,
            "-n",
            &ns,
            "-o",
            "yaml",
            "--server",
            &server.admin,
        ])
        .await
        .ok();
        let doc: Value = serde_yaml::from_str(&yaml.stdout).unwrap();
        assert_eq!(doc["apiVersion"], "eventing.knative.dev/v1beta3", "{yaml}");
        assert_eq!(doc["kind"], "EventType", "{yaml}");
        assert_eq!(value_of(&doc, "dataschema"), SCHEMA, "{yaml}");

        // `herald describe` lists a Broker's EventTypes (and only its own, not the Channel's).
        let (described, rows) =
            described_event_types(&server.admin, "broker", "default", &ns).await;
        assert_eq!(rows[0], ["TYPE", "SOURCE", "SCHEMA", "NAME"], "{described}");
        let shipped_row = rows
            .iter()
            .find(|r| r.last().map(String::as_str) == Some(shipped.as_str()))
            .unwrap_or_else(|| panic!("{shipped} not described:\n{described}"));
        assert_eq!(
            shipped_row[..3],
            ["com.example.order.shipped", "/warehouse", SCHEMA],
            "{described}"
        );
        assert!(!described.stdout.contains(&paid), "{described}");
        let broker_types = items
            .iter()
            .filter(|e| e["spec"]["reference"]["kind"] == "Broker")
            .count();
        assert_eq!(rows.len(), 1 + broker_types, "{described}");
        // A Channel's are those referencing it as the kind it was written as.
        let (described, rows) =
            described_event_types(&server.admin, "channel", "orders", &ns).await;
        let recorded = rows[1..]
            .iter()
            .filter(|r| !r[0].starts_with("dev.herald.sentinel."))
            .count();
        assert_eq!(recorded, PATTERN.len(), "{described}");
        assert!(described.stdout.contains(&paid), "{described}");

        // Counted per Broker and Channel.
        let metrics = metrics_text(&server.admin).await;
        let line = format!(
            "herald_eventtypes_recorded_total{{kind=\"Broker\",namespace_name=\"{ns}\",name=\"default\"}} 6"
        );
        assert!(metrics.contains(&line), "{line} not in\n{metrics}");

        // A recorded EventType deleted is recorded again by the next event of its type.
        let created = generated_name("default", &ns, "com.example.order.created", "/shop");
        herald(&[
            "delete",
            "eventtype",
            &created,
            "-n",
            &ns,
            "--server",
            &server.admin,
        ])
        .await
        .ok();
        send(
            &http,
            &server.broker_url,
            "com.example.order.created",
            "/shop",
            None,
        )
        .await;
        wait_types(&admin, &ns, "recorded again", |items| has(items, &created)).await;
    });
}

#[test]
fn a_declared_event_type_replaces_the_recorded_one_and_recorded_ones_survive_a_restart() {
    run(async {
        let ns = namespace("restart");
        let work = tempfile::tempdir().unwrap();
        let config = work.path().join("config");
        let data = work.path().join("data");
        write_config(&config, &ns, "");
        // The durable default (sled): recorded EventTypes are kept in the data directory.
        let mut server = Replica::start("herald", &config, &data, (&ns, "default"), &[]).await;
        let admin = Admin::for_api(&server.admin, API);
        let http = reqwest::Client::new();
        send_pattern(&http, &server.broker_url).await;
        let names: BTreeSet<String> = PATTERN
            .iter()
            .map(|(t, s)| generated_name("default", &ns, t, s))
            .collect();
        wait_types(&admin, &ns, "recorded", |items| {
            names.iter().all(|n| has(items, n))
        })
        .await;
        let stored = data.join("eventtypes.json");
        until(
            WAIT,
            || {
                std::fs::read_to_string(&stored)
                    .is_ok_and(|t| names.iter().all(|n| t.contains(n.as_str())))
            },
            || format!("{} does not list {names:?}", stored.display()),
        )
        .await;
        server.proc.kill();

        let server = Replica::start("herald-again", &config, &data, (&ns, "default"), &[]).await;
        let admin = Admin::for_api(&server.admin, API);
        // Restored before any event is sent.
        let items = wait_types(&admin, &ns, "restored", |items| {
            names.iter().all(|n| has(items, n))
        })
        .await;
        assert_eq!(items.len(), names.len(), "{items:#?}");
        for name in &names {
            admin.wait_ready("eventtypes", &ns, name, WAIT).await;
        }

        // Declared with the same type and source as a recorded one: the declared one wins.
        let recorded = generated_name("default", &ns, "com.example.order.paid", "/shop");
        write_config(
            &config,
            &ns,
            &declared_yaml(&ns, "payments", "com.example.order.paid", "/shop"),
        );
        let items = wait_types(
            &admin,
            &ns,
            "the declared one in place of the recorded one",
            |items| has(items, "payments") && !has(items, &recorded),
        )
        .await;
        assert_eq!(items.len(), names.len(), "{items:#?}");
        // Its events record nothing again.
        let http = reqwest::Client::new();
        send(
            &http,
            &server.broker_url,
            "com.example.order.paid",
            "/shop",
            None,
        )
        .await;
        settle(&http, &admin, &server.broker_url, &ns, "default").await;
        assert!(!has(&admin.list("eventtypes", Some(&ns)).await, &recorded));

        // Recorded EventTypes go with their Broker.
        write_atomically(
            &config.join("herald.yaml"),
            &format!(
                "apiVersion: messaging.knative.dev/v1\nkind: InMemoryChannel\nmetadata:\n  name: orders\n  namespace: {ns}\n"
            ),
        );
        wait_types(&admin, &ns, "gone with the Broker", |items| {
            items.is_empty()
        })
        .await;
    });
}

#[test]
fn a_bad_event_type_is_refused_naming_its_field() {
    run(async {
        let ns = namespace("bad");
        let work = tempfile::tempdir().unwrap();
        let config = work.path().join("config");
        write_config(&config, &ns, "");
        let server = Replica::start(
            "herald",
            &config,
            &work.path().join("data"),
            (&ns, "default"),
            &["--channel", "memory"],
        )
        .await;
        let bad = declared_yaml(&ns, "broken", "a.b", "/s")
            .replace("  - {name: id, required: true}\n", "");
        let file = work.path().join("bad.yaml");
        std::fs::write(&file, &bad).unwrap();
        let applied = herald(&[
            "apply",
            "-f",
            file.to_str().unwrap(),
            "--server",
            &server.admin,
        ])
        .await
        .failed();
        let said = format!("{}{}", applied.stdout, applied.stderr);
        assert!(
            said.contains(&format!("EventType {ns}/broken")),
            "{applied}"
        );
        assert!(
            said.contains("spec.attributes: missing attribute(s) \"id\""),
            "{applied}"
        );

        // Through the admin API: 422 naming the field.
        let admin = Admin::for_api(&server.admin, API);
        let answer = admin
            .put(
                "eventtypes",
                &ns,
                "broken",
                "application/yaml",
                &bad.replace("name: type,", "name: Type,"),
            )
            .await;
        assert_eq!(answer.status, 422, "{}", answer.body);
        let fields: Vec<_> = answer.body["details"]["causes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["field"].as_str().unwrap_or_default().to_string())
            .collect();
        assert!(
            fields.contains(&"spec.attributes[0].name".to_string()),
            "{}",
            answer.body
        );

        // A reference to nothing: applied, not Ready, saying why.
        let dangling =
            declared_yaml(&ns, "dangling", "a.b", "/s").replace("name: default}", "name: nowhere}");
        let answer = admin
            .put("eventtypes", &ns, "dangling", "application/yaml", &dangling)
            .await;
        assert_eq!(answer.status, 201, "{}", answer.body);
        let et = admin.get("eventtypes", &ns, "dangling").await.unwrap();
        let (status, reason) = condition_state(&et, "Ready");
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "ResourceDoesNotExist"),
            "{}",
            brief(&et)
        );
    });
}

#[test]
fn with_auto_create_off_nothing_is_recorded() {
    run(async {
        for (label, args, env) in [
            (
                "flag",
                &["--channel", "memory", "--eventtype-auto-create=false"][..],
                None,
            ),
            ("env", &["--channel", "memory"][..], Some("false")),
        ] {
            let ns = namespace(&format!("off-{label}"));
            let work = tempfile::tempdir().unwrap();
            let config = work.path().join("config");
            write_config(&config, &ns, &declared_yaml(&ns, "declared", "a.b", "/s"));
            // The variable is read by `herald serve`; Replica inherits this process's environment.
            if let Some(v) = env {
                std::env::set_var("HERALD_EVENTTYPE_AUTO_CREATE", v);
            }
            let server = Replica::start(
                "herald",
                &config,
                &work.path().join("data"),
                (&ns, "default"),
                args,
            )
            .await;
            std::env::remove_var("HERALD_EVENTTYPE_AUTO_CREATE");
            let admin = Admin::for_api(&server.admin, API);
            let http = reqwest::Client::new();
            send_pattern(&http, &server.broker_url).await;
            send_pattern(&http, &format!("{}/channels/{ns}/orders", server.base)).await;
            // Nothing to wait for when nothing happens: give a recorder the time it takes with it on.
            let end = std::time::Instant::now() + Duration::from_secs(2);
            while std::time::Instant::now() < end {
                let items = admin.list("eventtypes", Some(&ns)).await;
                let names: Vec<_> = items
                    .iter()
                    .map(|e| e["metadata"]["name"].clone())
                    .collect();
                assert_eq!(
                    names,
                    ["declared"],
                    "{label}: recorded with auto-create off"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let metrics = metrics_text(&server.admin).await;
            assert!(
                !metrics.contains("herald_eventtypes_recorded"),
                "{label}: {metrics}"
            );
        }
    });
}

/// A Broker holds at most 1,000 EventTypes, declared ones counted: past that, new types are
/// not recorded and each is counted as dropped for `limit`.
#[test]
fn a_broker_records_no_more_than_its_limit() {
    run(async {
        const LIMIT: usize = 1_000;
        const EXTRA: usize = 6;
        let ns = namespace("limit");
        let work = tempfile::tempdir().unwrap();
        let config = work.path().join("config");
        write_config(&config, &ns, &declared_yaml(&ns, "declared", "a.b", "/s"));
        let server = Replica::start(
            "herald",
            &config,
            &work.path().join("data"),
            (&ns, "default"),
            &["--channel", "memory"],
        )
        .await;
        let admin = Admin::for_api(&server.admin, API);
        let http = reqwest::Client::new();
        // One declared, so LIMIT - 1 recorded fill the Broker and EXTRA are dropped.
        let types: Vec<String> = (0..LIMIT - 1 + EXTRA)
            .map(|i| format!("com.example.limit.{i}"))
            .collect();
        for chunk in types.chunks(50) {
            futures::future::join_all(
                chunk
                    .iter()
                    .map(|ty| send(&http, &server.broker_url, ty, "/limit", None)),
            )
            .await;
        }
        let line = format!("herald_eventtypes_dropped_total{{reason=\"limit\"}} {EXTRA}");
        let end = std::time::Instant::now() + WAIT;
        loop {
            let metrics = metrics_text(&server.admin).await;
            if metrics.contains(&line) {
                break;
            }
            assert!(
                std::time::Instant::now() < end,
                "{line} not in\n{}",
                metrics
                    .lines()
                    .filter(|l| l.contains("eventtypes"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let on_broker = admin
            .list("eventtypes", Some(&ns))
            .await
            .into_iter()
            .filter(|e| e["spec"]["reference"]["kind"] == "Broker")
            .count();
        assert_eq!(on_broker, LIMIT);
    });
}
