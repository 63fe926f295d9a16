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
