//! `GET /metrics` of a real `herald serve` after a known traffic pattern: 5 events accepted
//! (3 of type a, 2 of type b) and 1 sent to a Broker that does not exist; Trigger `a`
//! (filter type a) delivers its 3, Trigger `b` (filter type b) gets 500 twice per event and
//! dead-letters its 2. Every counter has exactly those values per label set, with Knative's
//! names (`mt_broker_ingress_*`, `mt_broker_filter_*`) and Herald's own (`herald_*`).

mod replicas;

use axum::http::StatusCode;
use replicas::admin::*;
use replicas::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(30);
const NS: &str = "metrics";

/// A subscriber answering 202 on `/ok` and `/dls`, 500 on `/fail`.
async fn subscriber() -> String {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route(
            "/ok",
            axum::routing::post(|| async { StatusCode::ACCEPTED }),
        )
        .route(
            "/dls",
            axum::routing::post(|| async { StatusCode::ACCEPTED }),
        )
        .route(
            "/fail",
            axum::routing::post(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn scrape(admin: &str) -> String {
    let response = reqwest::get(format!("{admin}/metrics")).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(content_type.starts_with("application/openmetrics-text"));
    response.text().await.unwrap()
}

/// The value of the sample `series` (name and labels exactly as encoded).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_count_a_known_traffic_pattern_exactly() {
    run(async {
        let work = tempfile::tempdir().unwrap();
        let config = work.path().join("config");
        std::fs::create_dir_all(&config).unwrap();
        let sub = subscriber().await;
        let a = trigger_yaml(NS, "a", "default", &format!("{sub}/ok"), &[("type", "a")]);
        let b = trigger_yaml_with_spec(
            NS,
            "b",
            &format!(
                "  broker: default\n  filter:\n    attributes:\n      type: b\n  subscriber:\n    uri: {sub}/fail\n  delivery:\n    retry: 1\n    backoffDelay: PT0.05S\n    deadLetterSink:\n      uri: {sub}/dls\n"
            ),
        );
        std::fs::write(
            config.join("herald.yaml"),
            format!("{}---\n{a}---\n{b}", broker_yaml(NS, "default", &[])),
        )
        .unwrap();
        let server = Replica::serve("herald", &config, &work.path().join("data"), &[]).await;
        let broker = server.url_of(NS, "default");
        for (i, ty) in ["a", "a", "b", "a", "b"].iter().enumerate() {
            herald(&[
                "send",
                "--to",
                &broker,
                "--id",
                &format!("e{i}"),
                "--type",
                ty,
            ])
            .await
            .ok();
        }
        herald(&["send", "--to", &server.url_of(NS, "nope"), "--type", "a"])
            .await
            .failed();

        let filter = |trigger: &str, ty: &str, code: &str| {
            format!(
                r#"mt_broker_filter_event_count_total{{namespace_name="{NS}",broker_name="default",trigger_name="{trigger}",filter_type="{ty}",response_code="{code}",response_code_class="{}xx"}}"#,
                &code[..1]
            )
        };
        let route = |metric: &str, name: &str| {
            format!(r#"{metric}{{kind="Trigger",namespace_name="{NS}",name="{name}"}}"#)
        };
        let end = Instant::now() + WAIT;
        let text = loop {
            let text = scrape(&server.admin).await;
            let settled = value(&text, &route("herald_channel_lag", "a")) == Some(0.0)
                && value(&text, &route("herald_channel_lag", "b")) == Some(0.0)
                && value(&text, &route("herald_dead_letters_total", "b")) == Some(2.0);
            if settled {
                break text;
            }
            assert!(Instant::now() < end, "not settled:\n{text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let ingress = |broker: &str, ty: &str, code: &str| {
            format!(
                r#"mt_broker_ingress_event_count_total{{namespace_name="{NS}",broker_name="{broker}",event_type="{ty}",response_code="{code}",response_code_class="{}xx"}}"#,
                &code[..1]
            )
        };
        let expected = [
            (ingress("default", "a", "202"), 3.0),
            (ingress("default", "b", "202"), 2.0),
            (ingress("nope", "", "404"), 1.0),
            (filter("a", "a", "202"), 3.0),
            (filter("b", "b", "500"), 2.0),
            (route("herald_delivered_total", "a"), 3.0),
            (route("herald_delivery_retries_total", "b"), 2.0),
            (route("herald_dead_letters_total", "b"), 2.0),
            // Only the 3 events of type a reach a's filter: the Broker's shared reader rules
            // the others out by its index, without handing them to the Trigger.
            (
                format!(
                    r#"mt_broker_filter_event_processing_latencies_count{{namespace_name="{NS}",broker_name="default",trigger_name="a",filter_type="a"}}"#
                ),
                3.0,
            ),
            (
                format!(
                    r#"mt_broker_filter_event_dispatch_latencies_count{{namespace_name="{NS}",broker_name="default",trigger_name="b",filter_type="b",response_code="500",response_code_class="5xx"}}"#
                ),
                2.0,
            ),
            (
                format!(
                    r#"mt_broker_ingress_event_dispatch_latencies_count{{namespace_name="{NS}",broker_name="default",event_type="a",response_code="202",response_code_class="2xx"}}"#
                ),
                3.0,
            ),
            (r#"herald_backend_up{backend="sled"}"#.to_string(), 1.0),
        ];
        for (series, want) in &expected {
            assert_eq!(value(&text, series), Some(*want), "{series}:\n{text}");
        }
        // Nothing else was counted: no other answers, no retries or dead letters for `a`.
        let samples = |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
        assert_eq!(samples("mt_broker_ingress_event_count_total{"), 3, "{text}");
        assert_eq!(samples("mt_broker_filter_event_count_total{"), 2, "{text}");
        assert_eq!(
            value(&text, &route("herald_delivery_retries_total", "a")),
            None
        );
        assert_eq!(samples("herald_parked_total{"), 0, "{text}");
        let store = r#"herald_store_size_bytes{backend="sled"}"#;
        assert!(value(&text, store).is_some_and(|v| v > 0.0), "{text}");
    });
}

const SOURCES_NS: &str = "source-metrics";
const SECRET: &str = "metrics-secret";

fn github_source(name: &str, sink: &str) -> String {
    format!(
        "apiVersion: sources.knative.dev/v1alpha1\nkind: GitHubSource\nmetadata: {{name: {name}, namespace: {SOURCES_NS}}}\n\
         spec:\n  eventTypes: [push]\n  ownerAndRepository: Codertocat/Hello-World\n\
         \x20 secretToken: {{value: {SECRET}}}\n  sink: {{uri: \"{sink}\"}}\n  delivery: {{retry: 0}}\n"
    )
}

/// A push webhook with delivery id `id`, signed; the HTTP status.
async fn push(hook: &str, id: &str) -> u16 {
    let body = br#"{"ref":"refs/heads/main","repository":{"full_name":"Codertocat/Hello-World"}}"#;
    reqwest::Client::new()
        .post(hook)
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", id)
        .header(
            "x-hub-signature-256",
            herald_sources::github::sign(SECRET.as_bytes(), body),
        )
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Per-source counters on `/metrics` after a known pattern: GitHubSource `ok` emits 2 events
/// its sink takes, GitHubSource `bad` sends 1 its sink refuses (500, no retries, no
/// dead-letter sink), and ContainerSource `flaky`'s command exits twice before it stays up
/// (2 restarts, 3 starts), its status Ready once it runs.
#[test]
fn source_metrics_count_events_sink_failures_and_restarts_exactly() {
    run(async {
        let work = tempfile::tempdir().unwrap();
        let config = work.path().join("config");
        std::fs::create_dir_all(&config).unwrap();
        let sub = subscriber().await;
        let starts = work.path().join("starts");
        let flaky = format!(
            "apiVersion: sources.knative.dev/v1\nkind: ContainerSource\nmetadata: {{name: flaky, namespace: {SOURCES_NS}}}\n\
             spec:\n  template:\n    spec:\n      containers:\n        - name: c\n          command: [sh, -c]\n\
             \x20         args: ['n=$(cat \"$STARTS\" 2>/dev/null || echo 0); n=$((n + 1)); echo $n > \"$STARTS\"; [ $n -ge 3 ] && exec sleep 600; exit 1']\n\
             \x20         env: [{{name: STARTS, value: \"{}\"}}]\n  sink: {{uri: \"{sub}/ok\"}}\n",
            starts.display()
        );
        std::fs::write(
            config.join("sources.yaml"),
            format!(
                "{}---\n{}---\n{flaky}",
                github_source("ok", &format!("{sub}/ok")),
                github_source("bad", &format!("{sub}/fail")),
            ),
        )
        .unwrap();
        let server = Replica::serve("herald", &config, &work.path().join("data"), &[]).await;
        let admin = Admin::for_api(&server.admin, "/apis/sources.knative.dev/v1alpha1");
        admin
            .wait_ready("githubsources", SOURCES_NS, "ok", WAIT)
            .await;
        admin
            .wait_ready("githubsources", SOURCES_NS, "bad", WAIT)
            .await;
        let hook = |name: &str| format!("{}/sources/github/{SOURCES_NS}/{name}", server.base);
        assert_eq!(push(&hook("ok"), "d-1").await, 202);
        assert_eq!(push(&hook("ok"), "d-2").await, 202);
        assert_eq!(push(&hook("bad"), "d-3").await, 502);

        let series = |metric: &str, kind: &str, name: &str| {
            format!(r#"{metric}{{kind="{kind}",namespace_name="{SOURCES_NS}",name="{name}"}}"#)
        };
        let restarts = series("herald_source_restarts_total", "ContainerSource", "flaky");
        let end = Instant::now() + WAIT;
        let text = loop {
            let text = scrape(&server.admin).await;
            if value(&text, &restarts) == Some(2.0)
                && std::fs::read_to_string(&starts).is_ok_and(|s| s.trim() == "3")
            {
                break text;
            }
            assert!(Instant::now() < end, "not 2 restarts:\n{text}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let expected = [
            (
                series("herald_source_events_total", "GitHubSource", "ok"),
                2.0,
            ),
            (
                series("herald_source_sink_failures_total", "GitHubSource", "ok"),
                0.0,
            ),
            (
                series("herald_source_events_total", "GitHubSource", "bad"),
                0.0,
            ),
            (
                series("herald_source_sink_failures_total", "GitHubSource", "bad"),
                1.0,
            ),
            (restarts.clone(), 2.0),
            (
                series("herald_source_restarts_total", "GitHubSource", "ok"),
                0.0,
            ),
        ];
        for (series, want) in &expected {
            assert_eq!(value(&text, series), Some(*want), "{series}:\n{text}");
        }
        // Its third start stays up: Ready, and no more restarts.
        let containers = Admin::for_api(&server.admin, "/apis/sources.knative.dev/v1");
        containers
            .wait_ready("containersources", SOURCES_NS, "flaky", WAIT)
            .await;
        let text = scrape(&server.admin).await;
        assert_eq!(value(&text, &restarts), Some(2.0), "{text}");
    });
}
