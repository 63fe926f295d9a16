//! `herald serve --otlp-endpoint` exports the data path's spans over OTLP/HTTP (protobuf) to
//! a receiver in this test, and they read as one trace continuing the sender's: the ingress
//! span's parent is the sender's span, each delivery attempt is a `dispatch` span under it,
//! the subscriber's reply has an ingress span under the dispatch that got it, and the
//! reply's dispatch is under that. Each hop's `traceparent` names the span that sent it.
//! The spans are still batched when Herald gets SIGTERM: they arrive because shutdown
//! flushes them.

mod replicas;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use herald_test_support::otlp::{receiver, Exported as Got};
use replicas::admin::*;
use replicas::*;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
const NS: &str = "otlp";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SENDER_SPAN: &str = "00f067aa0ba902b7";
const TRACESTATE: &str = "rojo=00f067aa0ba902b7";

/// One request's path, `traceparent` and `tracestate`.
type Call = (String, Option<String>, Option<String>);

/// What a subscriber path received: the `traceparent` and `tracestate` of each request.
#[derive(Default)]
struct Calls {
    by_path: Mutex<Vec<Call>>,
    flaky_failed: Mutex<bool>,
}

impl Calls {
    fn of(&self, path: &str) -> Vec<(Option<String>, Option<String>)> {
        let calls = self.by_path.lock().unwrap();
        calls
            .iter()
            .filter(|(p, _, _)| p == path)
            .map(|(_, tp, ts)| (tp.clone(), ts.clone()))
            .collect()
    }
}

/// `/fn` replies with an event of type `reply` (and no trace context of its own), `/flaky`
/// answers 503 once and then 202, `/replies` takes the replies.
async fn subscriber() -> (String, Arc<Calls>) {
    async fn call(
        State(calls): State<Arc<Calls>>,
        axum::extract::Path(path): axum::extract::Path<String>,
        headers: HeaderMap,
    ) -> axum::response::Response {
        let header = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_string());
        calls.by_path.lock().unwrap().push((
            path.clone(),
            header("traceparent"),
            header("tracestate"),
        ));
        match path.as_str() {
            "fn" => (
                StatusCode::OK,
                [
                    ("ce-specversion", "1.0"),
                    ("ce-id", "r1"),
                    ("ce-source", "/fn"),
                    ("ce-type", "reply"),
                    ("content-type", "text/plain"),
                ],
                "done",
            )
                .into_response(),
            "flaky" => {
                let mut failed = calls.flaky_failed.lock().unwrap();
                if *failed {
                    StatusCode::ACCEPTED.into_response()
                } else {
                    *failed = true;
                    StatusCode::SERVICE_UNAVAILABLE.into_response()
                }
            }
            _ => StatusCode::ACCEPTED.into_response(),
        }
    }
    let calls = Arc::new(Calls::default());
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/{path}", axum::routing::post(call))
        .with_state(calls.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, calls)
}

fn traceparent(span_id: &str) -> String {
    format!("00-{TRACE_ID}-{span_id}-01")
}

#[test]
fn spans_continue_the_senders_trace_through_dispatch_and_reply() {
    run(async {
        let (otlp, spans) = receiver().await;
        let (sub, calls) = subscriber().await;
        let work = tempfile::tempdir().unwrap();
        let config = work.path().join("config");
        std::fs::create_dir_all(&config).unwrap();
        let function = trigger_yaml(
            NS,
            "fn",
            "default",
            &format!("{sub}/fn"),
            &[("type", "order")],
        );
        let flaky = trigger_yaml_with_spec(
            NS,
            "flaky",
            &format!(
                "  broker: default\n  filter:\n    attributes:\n      type: order\n  subscriber:\n    uri: {sub}/flaky\n  delivery:\n    retry: 1\n    backoffDelay: PT0.05S\n"
            ),
        );
        let replies = trigger_yaml(
            NS,
            "replies",
            "default",
            &format!("{sub}/replies"),
            &[("type", "reply")],
        );
        std::fs::write(
            config.join("herald.yaml"),
            format!(
                "{}---\n{function}---\n{flaky}---\n{replies}",
                broker_yaml(NS, "default", &[])
            ),
        )
        .unwrap();
        let mut server = Replica::start(
            "herald",
            &config,
            &work.path().join("data"),
            (NS, "default"),
            &["--otlp-endpoint", &otlp],
        )
        .await;

        let sent = reqwest::Client::new()
            .post(&server.broker_url)
            .header("ce-specversion", "1.0")
            .header("ce-id", "e1")
            .header("ce-source", "/test")
            .header("ce-type", "order")
            .header("traceparent", traceparent(SENDER_SPAN))
            .header("tracestate", TRACESTATE)
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status(), 202);
        until(
            WAIT,
            || !calls.of("replies").is_empty() && calls.of("flaky").len() == 2,
            || format!("no reply delivered:\n{}", server.proc.log_tail()),
        )
        .await;
        // The default batch delay is 5 s: what arrives now was flushed on shutdown.
        let pid = server.proc.pid().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        until(
            WAIT,
            || !server.proc.alive(),
            || "herald did not exit".into(),
        )
        .await;
        let spans = spans.lock().unwrap().clone();
        let show = || {
            spans
                .iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join("\n")
        };

        let mut findings = Findings::default();
        for s in &spans {
            findings.check(s.trace_id == TRACE_ID, || {
                format!("{} in another trace: {s:?}", s.name)
            });
            findings.check(s.service.as_deref() == Some("herald"), || {
                format!("service.name: {s:?}")
            });
        }
        let find = |name: &str, key: &str, value: &str| -> Vec<Got> {
            spans
                .iter()
                .filter(|s| s.name == name && s.attr(key) == Some(value))
                .cloned()
                .collect()
        };
        let one = |found: Vec<Got>, what: &str| -> Got {
            assert_eq!(
                found.len(),
                1,
                "{what}: want one span, got {found:?}; all:\n{}",
                show()
            );
            found.into_iter().next().unwrap()
        };
        // OTLP's SpanKind: 2 server, 3 client.
        let ingress = one(
            find("ingress", "cloudevents.event_id", "e1"),
            "ingress of e1",
        );
        findings.check(ingress.parent == SENDER_SPAN, || {
            format!("ingress parent: {ingress:?}")
        });
        findings.check(ingress.kind == 2, || format!("ingress kind: {ingress:?}"));
        for (key, want) in [
            ("herald.namespace", NS),
            ("herald.broker", "default"),
            ("cloudevents.event_type", "order"),
            ("http.response.status_code", "202"),
        ] {
            findings.check(ingress.attr(key) == Some(want), || {
                format!("ingress {key}: {ingress:?}")
            });
        }

        let dispatch = one(find("dispatch", "herald.trigger", "fn"), "dispatch to fn");
        findings.check(dispatch.parent == ingress.span_id, || {
            format!("dispatch parent: {dispatch:?}")
        });
        findings.check(dispatch.kind == 3, || {
            format!("dispatch kind: {dispatch:?}")
        });
        for (key, want) in [
            ("herald.broker", "default"),
            ("herald.destination", "subscriber"),
            ("herald.attempt", "1"),
            ("cloudevents.event_id", "e1"),
            ("http.response.status_code", "200"),
        ] {
            findings.check(dispatch.attr(key) == Some(want), || {
                format!("dispatch {key}: {dispatch:?}")
            });
        }
        findings.check(
            dispatch.attr("url.full") == Some(&format!("{sub}/fn")),
            || format!("dispatch url.full: {dispatch:?}"),
        );
        // The subscriber got the dispatch span as its parent, and the sender's tracestate.
        let got_fn = calls.of("fn");
        findings.check(
            got_fn
                == vec![(
                    Some(traceparent(&dispatch.span_id)),
                    Some(TRACESTATE.to_string()),
                )],
            || format!("/fn got {got_fn:?}, dispatch span {}", dispatch.span_id),
        );

        // Two attempts to the flaky subscriber, both children of the ingress span.
        let mut flaky = find("dispatch", "herald.trigger", "flaky");
        flaky.sort_by(|a, b| a.attr("herald.attempt").cmp(&b.attr("herald.attempt")));
        let statuses: Vec<_> = flaky
            .iter()
            .map(|s| {
                (
                    s.attr("herald.attempt"),
                    s.attr("http.response.status_code"),
                    s.parent == ingress.span_id,
                )
            })
            .collect();
        findings.check(
            statuses
                == vec![
                    (Some("1"), Some("503"), true),
                    (Some("2"), Some("202"), true),
                ],
            || format!("flaky attempts: {flaky:?}"),
        );
        let errors: Vec<_> = flaky.iter().map(|s| s.status == 2).collect();
        findings.check(errors == [true, false], || {
            format!("only the 503 is an error: {flaky:?}")
        });
        let got_flaky: Vec<_> = calls.of("flaky").into_iter().map(|(tp, _)| tp).collect();
        let want_flaky: Vec<_> = flaky
            .iter()
            .map(|s| Some(traceparent(&s.span_id)))
            .collect();
        findings.check(got_flaky == want_flaky, || {
            format!("/flaky got {got_flaky:?}, spans {want_flaky:?}")
        });

        // The reply enters the Broker under the dispatch that got it, and goes on from there.
        let reply_ingress = one(
            find("ingress", "cloudevents.event_id", "r1"),
            "ingress of the reply",
        );
        findings.check(reply_ingress.parent == dispatch.span_id, || {
            format!("reply ingress parent: {reply_ingress:?}")
        });
        findings.check(reply_ingress.attr("herald.reply") == Some("true"), || {
            format!("herald.reply: {reply_ingress:?}")
        });
        findings.check(
            reply_ingress.attr("herald.broker") == Some("default"),
            || format!("reply broker: {reply_ingress:?}"),
        );
        let reply_dispatch = one(
            find("dispatch", "herald.trigger", "replies"),
            "dispatch of the reply",
        );
        findings.check(reply_dispatch.parent == reply_ingress.span_id, || {
            format!("reply dispatch parent: {reply_dispatch:?}")
        });
        findings.check(
            reply_dispatch.attr("http.response.status_code") == Some("202"),
            || format!("reply dispatch status: {reply_dispatch:?}"),
        );
        let got_replies = calls.of("replies");
        findings.check(
            got_replies
                == vec![(
                    Some(traceparent(&reply_dispatch.span_id)),
                    Some(TRACESTATE.to_string()),
                )],
            || {
                format!(
                    "/replies got {got_replies:?}, reply dispatch {}",
                    reply_dispatch.span_id
                )
            },
        );
        findings.assert_none();
    });
}

/// Without `--otlp-endpoint` nothing is rewritten: each hop gets the `traceparent` the
/// sender sent.
#[test]
fn without_an_endpoint_the_senders_traceparent_goes_through_unchanged() {
    run(async {
        let (sub, calls) = subscriber().await;
        let work = tempfile::tempdir().unwrap();
        let config = work.path().join("config");
        std::fs::create_dir_all(&config).unwrap();
        let function = trigger_yaml(
            NS,
            "fn",
            "default",
            &format!("{sub}/fn"),
            &[("type", "order")],
        );
        let replies = trigger_yaml(
            NS,
            "replies",
            "default",
            &format!("{sub}/replies"),
            &[("type", "reply")],
        );
        std::fs::write(
            config.join("herald.yaml"),
            format!(
                "{}---\n{function}---\n{replies}",
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
        let sent = reqwest::Client::new()
            .post(&server.broker_url)
            .header("ce-specversion", "1.0")
            .header("ce-id", "e1")
            .header("ce-source", "/test")
            .header("ce-type", "order")
            .header("traceparent", traceparent(SENDER_SPAN))
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status(), 202);
        until(
            WAIT,
            || !calls.of("replies").is_empty(),
            || server.proc.log_tail(),
        )
        .await;
        let want = vec![(Some(traceparent(SENDER_SPAN)), None)];
        assert_eq!(calls.of("fn"), want);
        assert_eq!(calls.of("replies"), want);
    });
}

/// The README's `herald serve --config DIR --otlp-endpoint URL --log-format json`, with the
/// endpoint from the standard `OTEL_EXPORTER_OTLP_ENDPOINT` instead: the ingress span
/// arrives, and the Broker's address is read from the JSON log's `url` field.
#[test]
fn the_standard_environment_variable_turns_export_on() {
    run(async {
        let (otlp, spans) = receiver().await;
        exports_the_ingress_span(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp)], spans).await;
    });
}

/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is the traces URL itself (no `/v1/traces` added)
/// and wins over `OTEL_EXPORTER_OTLP_ENDPOINT`, as the OpenTelemetry specification says.
#[test]
fn the_traces_endpoint_variable_is_used_as_it_is_and_wins() {
    run(async {
        let (otlp, spans) = receiver().await;
        let traces = format!("{}/v1/traces", otlp.trim_end_matches('/'));
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces.as_str()),
        ];
        exports_the_ingress_span(&env, spans).await;
    });
}

/// Herald started with `env` exports the span of an event it accepts (flushed on SIGTERM).
async fn exports_the_ingress_span(
    env: &[(&str, &str)],
    spans: herald_test_support::otlp::Received,
) {
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("herald.yaml"), broker_yaml(NS, "default", &[])).unwrap();
    let mut command = Command::new(HERALD);
    command
        .args(["serve", "--config"])
        .arg(&config)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(work.path().join("data"))
        .args(["--log-format", "json"])
        .envs(env.iter().copied())
        .env_remove("RUST_LOG");
    let mut proc = Proc::spawn_command("herald", command);
    let line = proc.wait_line(&format!("Broker {NS}/default:")).await;
    let log: serde_json::Value = serde_json::from_str(&line).unwrap();
    let broker_url = log["fields"]["url"].as_str().unwrap().to_string();
    let sent = reqwest::Client::new()
        .post(&broker_url)
        .header("ce-specversion", "1.0")
        .header("ce-id", "env1")
        .header("ce-source", "/test")
        .header("ce-type", "order")
        .header("traceparent", traceparent(SENDER_SPAN))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 202);
    let pid = proc.pid().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    until(WAIT, || !proc.alive(), || "herald did not exit".into()).await;
    let spans = spans.lock().unwrap().clone();
    let ingress: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "ingress" && s.attr("cloudevents.event_id") == Some("env1"))
        .collect();
    assert_eq!(ingress.len(), 1, "{spans:?}");
    assert_eq!(
        (ingress[0].trace_id.as_str(), ingress[0].parent.as_str()),
        (TRACE_ID, SENDER_SPAN)
    );
}
