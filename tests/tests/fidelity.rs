//! Event fidelity on every channel (memory, sled, NATS, Kafka), over Herald's HTTP ingress
//! and delivery: what was accepted is what is delivered.
//!
//! - data byte for byte (binary body with whitespace and a trailing newline; structured JSON
//!   data with key order, spacing and a big integer; `data_base64`);
//! - attributes string for string (`time` ending in `Z`, percent-encoded non-ASCII `subject`
//!   decoded on ingress, so a filter on it matches, and encoded again on delivery);
//! - the JSON format's implied `application/json` for a `data` member without
//!   `datacontenttype`, and none for `data_base64`;
//! - binary delivery by default, structured delivery with `delivery.format: json`;
//! - W3C trace context (`traceparent`, `tracestate`) from ingress headers to the subscriber,
//!   and on to a reply event's delivery; from the distributed-tracing extension alone, too;
//! - the retry table: 408 is retried; a 307 is a failure without retry, never followed.
//!
//! `fidelity_holds_with_otlp_export_on` runs each of these again in a child process of this
//! test binary with span export on (to a receiver in the parent): everything holds the same,
//! except that each hop's `traceparent` header names Herald's span (same trace id, a new span
//! id); the extension attribute stays as sent. The parent checks the spans arrived in the
//! trace.
//!
//! NATS needs JetStream on 127.0.0.1:4222, Kafka a tansu binary (`~/.cargo/bin/tansu`); with
//! CI=true a missing server fails the test, otherwise it is skipped with a notice.

mod common;

use cloudevents::{EventBuilder, EventBuilderV10};
use common::tansu::{kafka_channels, Tansu};
use common::*;
use herald_broker::backends::BackendsConfig;
use herald_broker::serve::ServeConfig;
use herald_channels::binding::decode_header_value;
use std::time::Duration;

const TIME: &str = "2018-04-05T03:56:24Z";
const SUBJECT: &str = "héllo wörld";
const SUBJECT_ENCODED: &str = "h%C3%A9llo%20w%C3%B6rld";
const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const TRACESTATE: &str = "congo=t61rcWkgMzE";
const BINARY_BODY: &[u8] = b"{\"world\": \"hello\"}\n";
const JSON_DATA: &str = r#"{"z": 1,  "a": 123456789012345678901234567890, "f": 1.50}"#;
const SRC: &str = "/fidelity";

/// Records a failed check and goes on, so one run names every item that fails.
macro_rules! soft_eq {
    ($failures:ident, $got:expr, $want:expr, $($what:tt)+) => {{
        let (got, want) = (&$got, &$want);
        if got != want {
            $failures.push(format!(
                "{}: got {:?}, want {:?}",
                format!($($what)+),
                got,
                want
            ));
        }
    }};
}

/// What `sub` received once it holds `count` requests, or, when the deadline passes first,
/// what it did receive with the shortfall recorded.
async fn arrived(
    failures: &mut Vec<String>,
    what: &str,
    sub: &Subscriber,
    count: usize,
) -> Vec<Received> {
    use futures::FutureExt;
    let wait = std::panic::AssertUnwindSafe(sub.wait_for(count, Duration::from_secs(20)));
    match wait.catch_unwind().await {
        Ok(got) => got,
        Err(_) => {
            let got = sub.received();
            failures.push(format!(
                "{what}: {} of {count} deliveries arrived: {:?}",
                got.len(),
                describe(&got)
            ));
            got
        }
    }
}

macro_rules! soft {
    ($failures:ident, $cond:expr, $($what:tt)+) => {{
        if !$cond {
            $failures.push(format!($($what)+));
        }
    }};
}

struct Subscribers {
    binary: Subscriber,
    json: Subscriber,
    filtered: Subscriber,
    replies: Subscriber,
    retried: Subscriber,
    redirecting: Subscriber,
    redirect_target: Subscriber,
    dead_letters: Subscriber,
}

fn yaml(channel: &str, s: &Subscribers) -> String {
    let trigger = |name: &str, filter: &str, sub: &Subscriber, delivery: &str| {
        format!(
            "---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: {name}, \
             namespace: ns}}\nspec:\n  broker: b\n  filter: {{attributes: {{{filter}}}}}\n  \
             subscriber: {{uri: \"{}\"}}\n  delivery: {{{delivery}}}\n",
            sub.url()
        )
    };
    let quick = "retry: 2, backoffPolicy: linear, backoffDelay: PT0.05S";
    [
        format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: b\n  \
             namespace: ns\n  annotations: {{herald.dev/channel: {channel}}}\n"
        ),
        trigger("binary", &format!("source: {SRC}"), &s.binary, quick),
        trigger(
            "json",
            &format!("source: {SRC}"),
            &s.json,
            &format!("{quick}, format: json"),
        ),
        trigger(
            "filtered",
            &format!("source: {SRC}, time: \"{TIME}\", subject: \"{SUBJECT}\""),
            &s.filtered,
            quick,
        ),
        trigger("replies", "source: /reply", &s.replies, quick),
        trigger("retried", "source: /retry", &s.retried, quick),
        trigger(
            "redirecting",
            "source: /redirect",
            &s.redirecting,
            &format!(
                "{quick}, deadLetterSink: {{uri: \"{}\"}}",
                s.dead_letters.url()
            ),
        ),
    ]
    .concat()
}

async fn post_raw(url: &url::Url, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    let mut request = reqwest::Client::new().post(url.clone()).body(body.to_vec());
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.text().await.unwrap_or_default(),
    }
}

fn structured(id: &str, data: &str) -> Vec<u8> {
    format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"{SRC}","type":"t","time":"{TIME}","subject":"{SUBJECT}",{data}}}"#
    )
    .into_bytes()
}

/// The delivered request of event `id`, by its percent-decoded `ce-id` or structured `id`.
fn by_id<'a>(received: &'a [Received], id: &str) -> &'a Received {
    received
        .iter()
        .find(|r| match r.headers.get("ce-id") {
            Some(v) => decode_header_value(v.as_bytes()).unwrap() == id,
            None => serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["id"] == id,
        })
        .unwrap_or_else(|| panic!("{id} not delivered: {}", describe(received).join("; ")))
}

/// With span export on (the child processes of `fidelity_holds_with_otlp_export_on`), a hop's
/// `traceparent` continues the trace sent under a span of Herald's; otherwise it is the one
/// sent, unchanged.
fn same_trace(failures: &mut Vec<String>, got: Option<&str>, what: String) {
    if !otlp::exporting() {
        soft_eq!(failures, got, Some(TRACEPARENT), "{what}");
        return;
    }
    let parts = |tp: &str| tp.split('-').map(str::to_string).collect::<Vec<_>>();
    let sent = parts(TRACEPARENT);
    match got.map(parts) {
        Some(p)
            if p.len() == 4
                && p[0] == "00"
                && p[1] == sent[1]
                && p[2] != sent[2]
                && p[3] == sent[3] => {}
        other => failures.push(format!(
            "{what}: traceparent {other:?} does not continue {TRACEPARENT} under a span of its own"
        )),
    }
}

async fn check_channel(channel: &str, channels: BackendsConfig) {
    let telemetry = otlp::start();
    let s = Subscribers {
        binary: Subscriber::start().await,
        json: Subscriber::start().await,
        filtered: Subscriber::start().await,
        replies: Subscriber::start().await,
        retried: Subscriber::start().await,
        redirecting: Subscriber::start().await,
        redirect_target: Subscriber::start().await,
        dead_letters: Subscriber::start().await,
    };
    // The binary subscriber answers b1 with a reply that names no trace context of its own.
    s.binary.respond_with(|r, _| {
        let is_b1 = r
            .headers
            .get("ce-id")
            .is_some_and(|v| v.as_bytes() == b"b1");
        if !is_b1 {
            return Answer::accepted();
        }
        Answer::reply(
            EventBuilderV10::new()
                .id("r1")
                .source("/reply")
                .ty("reply")
                .build()
                .unwrap(),
        )
    });
    s.retried.script([Answer::status(408)]);
    s.redirecting.respond_with({
        let target = s.redirect_target.url();
        move |_, _| Answer::status(307).header("location", target.clone())
    });
    let config = ServeConfig {
        channels,
        ..config()
    };
    let server = start_with(&yaml(channel, &s), config).await;
    let url = server.broker_url("ns", "b");
    let trace = [("traceparent", TRACEPARENT), ("tracestate", TRACESTATE)];

    // b1: binary mode, percent-encoded subject, JSON body with whitespace and a newline.
    let mut headers = vec![
        ("ce-specversion", "1.0"),
        ("ce-id", "b1"),
        ("ce-source", SRC),
        ("ce-type", "t"),
        ("ce-time", TIME),
        ("ce-subject", SUBJECT_ENCODED),
        ("content-type", "application/json"),
    ];
    headers.extend(trace);
    let reply = post_raw(&url, &headers, BINARY_BODY).await;
    assert_eq!(reply.status, 202, "{channel}: b1: {}", reply.body);
    // s1: structured, JSON data without datacontenttype; s2: data_base64 without one.
    let structured_headers = [("content-type", STRUCTURED), trace[0], trace[1]];
    let s1 = structured("s1", &format!(r#""data":{JSON_DATA}"#));
    let reply = post_raw(&url, &structured_headers, &s1).await;
    assert_eq!(reply.status, 202, "{channel}: s1: {}", reply.body);
    let s2 = structured("s2", r#""data_base64":"AAEC/w==""#);
    let reply = post_raw(&url, &structured_headers, &s2).await;
    assert_eq!(reply.status, 202, "{channel}: s2: {}", reply.body);
    // These two carry their trace context as the distributed-tracing extension only.
    for source in ["/retry", "/redirect"] {
        let e = EventBuilderV10::new()
            .id(source.trim_start_matches('/'))
            .source(source)
            .ty("t")
            .extension("traceparent", TRACEPARENT)
            .build()
            .unwrap();
        assert_eq!(
            send_binary(&url, &e).await.status,
            202,
            "{channel}: {source}"
        );
    }

    let mut failures: Vec<String> = Vec::new();
    // Binary delivery: bytes, attribute strings, content types and trace context as accepted.
    let got = arrived(&mut failures, &format!("{channel}: binary"), &s.binary, 3).await;
    for id in ["b1", "s1", "s2"] {
        let r = by_id(&got, id);
        soft_eq!(failures, r.header("ce-time"), Some(TIME), "{channel}: {id}");
        soft_eq!(
            failures,
            r.header("ce-subject"),
            Some(SUBJECT_ENCODED),
            "{channel}: {id}"
        );
        same_trace(
            &mut failures,
            r.header("traceparent"),
            format!("{channel}: {id}"),
        );
        soft_eq!(
            failures,
            r.header("tracestate"),
            Some(TRACESTATE),
            "{channel}: {id}"
        );
        soft_eq!(
            failures,
            r.header("ce-datacontenttype"),
            None,
            "{channel}: {id}"
        );
    }
    let b1 = by_id(&got, "b1");
    soft_eq!(failures, &b1.body[..], BINARY_BODY, "{channel}: b1 data");
    soft_eq!(
        failures,
        b1.header("content-type"),
        Some("application/json"),
        "{channel}: b1"
    );
    let r = by_id(&got, "s1");
    soft_eq!(
        failures,
        &r.body[..],
        JSON_DATA.as_bytes(),
        "{channel}: s1 data"
    );
    soft_eq!(
        failures,
        r.header("content-type"),
        Some("application/json"),
        "{channel}: s1: the JSON format's implied content type"
    );
    let r = by_id(&got, "s2");
    soft_eq!(failures, &r.body[..], &[0, 1, 2, 255], "{channel}: s2 data");
    soft_eq!(
        failures,
        r.header("content-type"),
        None,
        "{channel}: s2: nothing implied"
    );

    // Structured delivery (format: json): the JSON format, data members as accepted.
    let got = arrived(&mut failures, &format!("{channel}: json"), &s.json, 3).await;
    for (id, data) in [
        ("b1", "\"data\":{\"world\": \"hello\"}\n".to_string()),
        ("s1", format!("\"data\":{JSON_DATA}")),
        ("s2", r#""data_base64":"AAEC/w==""#.to_string()),
    ] {
        let r = by_id(&got, id);
        soft_eq!(
            failures,
            r.header("content-type"),
            Some(STRUCTURED),
            "{channel}: {id}"
        );
        same_trace(
            &mut failures,
            r.header("traceparent"),
            format!("{channel}: {id}"),
        );
        let text = std::str::from_utf8(&r.body).unwrap();
        soft!(
            failures,
            text.contains(&data),
            "{channel}: {id}: {data} not in {text}"
        );
        soft!(
            failures,
            text.contains(&format!(r#""time":"{TIME}""#)),
            "{channel}: {id}: {text}"
        );
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        soft_eq!(failures, v["subject"], SUBJECT, "{channel}: {id}");
        soft!(
            failures,
            v.get("knativebrokerttl").is_none(),
            "{channel}: {id}: the TTL stays inside the broker: {text}"
        );
        soft!(
            failures,
            v.get("datacontenttype").is_none() || id == "b1",
            "{channel}: {id}"
        );
    }

    // A filter on the accepted time and the percent-decoded subject matches all three.
    let got = arrived(
        &mut failures,
        &format!("{channel}: filtered"),
        &s.filtered,
        3,
    )
    .await;
    for id in ["b1", "s1", "s2"] {
        soft!(
            failures,
            std::panic::catch_unwind(|| by_id(&got, id)).is_ok(),
            "{channel}: the time/subject filter did not pass {id}"
        );
    }

    // The reply to b1 is delivered in the trace of b1.
    let got = arrived(&mut failures, &format!("{channel}: reply"), &s.replies, 1).await;
    soft_eq!(
        failures,
        got.first().and_then(|r| r.header("ce-id")),
        Some("r1"),
        "{channel}"
    );
    same_trace(
        &mut failures,
        got.first().and_then(|r| r.header("traceparent")),
        format!("{channel}: reply"),
    );

    // 408 is retried: a second attempt arrives and succeeds.
    let got = arrived(
        &mut failures,
        &format!("{channel}: 408 retry"),
        &s.retried,
        2,
    )
    .await;
    soft_eq!(failures, got.len(), 2, "{channel}: 408 then 202");
    for r in &got {
        same_trace(
            &mut failures,
            r.header("traceparent"),
            format!("{channel}: from the extension"),
        );
        soft_eq!(
            failures,
            r.header("ce-traceparent"),
            Some(TRACEPARENT),
            "{channel}: extension kept"
        );
    }
    // 307 is a failed delivery: not followed, not retried, dead-lettered with its code.
    let dead = arrived(
        &mut failures,
        &format!("{channel}: 307 dead letter"),
        &s.dead_letters,
        1,
    )
    .await;
    soft_eq!(
        failures,
        dead.first().and_then(|r| r.header("ce-knativeerrorcode")),
        Some("307"),
        "{channel}"
    );
    soft_eq!(
        failures,
        s.redirecting.count(),
        1,
        "{channel}: a 3xx is not retried"
    );
    soft_eq!(
        failures,
        s.redirect_target.count(),
        0,
        "{channel}: a 3xx is not followed"
    );

    assert!(
        failures.is_empty(),
        "{channel}: {} fidelity failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    server.shutdown().await;
    if let Some(t) = telemetry {
        t.shutdown().await;
    }
    println!(
        "{channel}: 3 events (binary, structured JSON, data_base64) delivered byte- and \
         string-exact in binary and structured mode, trace context carried to deliveries and \
         a reply, 408 retried, 307 dead-lettered after 1 attempt"
    );
}

#[tokio::test]
async fn fidelity_on_the_memory_channel() {
    check_channel("memory", BackendsConfig::default()).await;
}

#[tokio::test]
async fn fidelity_on_the_sled_channel() {
    let dir = tempfile::tempdir().unwrap();
    check_channel("sled", sled_channels(dir.path())).await;
}

#[tokio::test]
async fn fidelity_on_the_nats_channel() {
    // Its own streams when it runs beside the parent's test of the same name.
    let prefix = if otlp::exporting() {
        "FIDELITY_OTLP"
    } else {
        "FIDELITY"
    };
    let Some(channels) = nats_channels(prefix).await else {
        return;
    };
    check_channel("nats", channels).await;
}

#[tokio::test]
async fn fidelity_on_the_kafka_channel() {
    let Some(tansu) = Tansu::start(module_path!()).await else {
        return;
    };
    check_channel("kafka", kafka_channels(&tansu)).await;
}

/// Span export for the child runs: `HERALD_TEST_OTLP` holds the parent's receiver.
mod otlp {
    use herald_broker::telemetry::{LogFormat, Telemetry, TelemetryConfig};

    pub const ENV: &str = "HERALD_TEST_OTLP";

    pub fn exporting() -> bool {
        herald_dispatcher::trace::exporting()
    }

    /// Installs export once, in a child run (one test per process).
    pub fn start() -> Option<Telemetry> {
        let endpoint = std::env::var(ENV).ok()?;
        let config = TelemetryConfig {
            log_format: LogFormat::Text,
            default_level: "warn",
            otlp_traces: Some(format!("{}/v1/traces", endpoint.trim_end_matches('/'))),
        };
        Some(Telemetry::init(&config).expect("export starts"))
    }
}

/// Every test above again, each in a child process of this binary with span export on to a
/// receiver here; a child fails as its test would, and the spans of the event `b1` (its
/// ingress, its dispatches, its reply's ingress) must arrive in its trace.
#[tokio::test]
async fn fidelity_holds_with_otlp_export_on() {
    let (endpoint, spans) = herald_test_support::otlp::receiver().await;
    let trace_id = TRACEPARENT.split('-').nth(1).unwrap();
    for test in [
        "fidelity_on_the_memory_channel",
        "fidelity_on_the_sled_channel",
        "fidelity_on_the_nats_channel",
        "fidelity_on_the_kafka_channel",
    ] {
        spans.lock().unwrap().clear();
        let out = tokio::process::Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--nocapture", "--test-threads", "1"])
            .env(otlp::ENV, &endpoint)
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{test} with export on:\n{stdout}\n{stderr}"
        );
        // A skipped run (no NATS, no tansu, outside CI) prints no summary and exports nothing.
        if !stdout.contains("delivered byte- and string-exact") {
            eprintln!("{test}: skipped in the child:\n{stderr}");
            continue;
        }
        let spans = spans.lock().unwrap().clone();
        let b1 = |name: &str| {
            spans
                .iter()
                .filter(|s| s.name == name && s.trace_id == trace_id)
                .filter(|s| s.attr("cloudevents.event_id") == Some("b1"))
                .count()
        };
        // b1's ingress; its dispatches to the binary, json and filtered Triggers.
        assert_eq!(b1("ingress"), 1, "{test}: {spans:?}");
        assert_eq!(b1("dispatch"), 3, "{test}: {spans:?}");
        let reply = spans.iter().any(|s| {
            s.name == "ingress" && s.trace_id == trace_id && s.attr("herald.reply") == Some("true")
        });
        assert!(
            reply,
            "{test}: no ingress span of b1's reply in its trace: {spans:?}"
        );
        println!(
            "{test}: fidelity holds with OTLP export on; {} spans in the trace",
            spans.len()
        );
    }
}
