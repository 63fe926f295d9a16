//! The ingress accept/reject matrix: every content mode (binary, structured, batch) and every
//! status the ingress answers (202, 400, 404, 405, 413, 429), checked end to end against a
//! real subscriber.

mod common;

use cloudevents::{AttributesReader, AttributesWriter, EventBuilder, EventBuilderV10};
use common::*;
use herald_broker::backends::BackendsConfig;
use herald_broker::serve::{RunningServer, ServeConfig};
use herald_channels::MemoryChannelConfig;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use url::Url;

async fn setup() -> (Subscriber, RunningServer, Url) {
    let sub = Subscriber::start().await;
    let server = start_with(&one_trigger(&sub, "retry: 0"), sequential()).await;
    let url = server.broker_url("ns", "b");
    (sub, server, url)
}

// ---------------------------------------------------------------------------------------------
// 202: accepted and delivered intact
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn binary_event_is_accepted_and_delivered_intact() {
    let (sub, _server, url) = setup().await;
    let sent = EventBuilderV10::new()
        .id("bin-1")
        .source("/shop/checkout")
        .ty("com.example.order.created")
        .subject("order-42")
        .time("2024-05-01T12:30:00Z")
        .extension("region", "eu")
        .extension(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .data("application/json", json!({"order": 42, "note": "ünïcødé"}))
        .build()
        .unwrap();
    let r = send_binary(&url, &sent).await;
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.body, "", "a 202 has no body");

    let got = sub.wait_for(1, DEADLINE).await;
    assert_same_event(got[0].event(), &sent);
    // Binary mode, and the broker's own TTL stays inside the broker.
    assert_eq!(got[0].header("ce-id"), Some("bin-1"));
    assert_eq!(got[0].header("ce-knativebrokerttl"), None);
    assert_eq!(got[0].header("prefer"), Some("reply"));
    let f = fence(&url, &sub).await;
    assert_eq!(sub.ids(), ["bin-1".to_string(), f]);
}

#[tokio::test]
async fn structured_event_is_accepted_and_delivered_intact() {
    let (sub, _server, url) = setup().await;
    let body = json!({
        "specversion": "1.0",
        "id": "st-1",
        "source": "/shop/checkout",
        "type": "com.example.order.created",
        "subject": "order-42",
        "time": "2024-05-01T12:30:00Z",
        "datacontenttype": "application/json",
        "region": "eu",
        "amount": 1500,
        "express": true,
        "data": {"order": 42, "items": ["a", "b"]}
    });
    let r = post(&url, STRUCTURED, body.to_string()).await;
    assert_eq!(r.status, 202, "{r:?}");

    let got = sub.wait_for(1, DEADLINE).await;
    let e = got[0].event();
    assert_eq!(e.id(), "st-1");
    assert_eq!(e.ty(), "com.example.order.created");
    assert_eq!(e.source(), "/shop/checkout");
    assert_eq!(e.subject(), Some("order-42"));
    assert_eq!(
        e.time().map(|t| t.to_rfc3339()),
        Some("2024-05-01T12:30:00+00:00".to_string())
    );
    assert_eq!(e.datacontenttype(), Some("application/json"));
    assert_eq!(
        data_json(e),
        Some(json!({"order": 42, "items": ["a", "b"]}))
    );
    assert_eq!(ext(e, "region").as_deref(), Some("eu"));
    assert_eq!(ext(e, "amount").as_deref(), Some("1500"));
    assert_eq!(ext(e, "express").as_deref(), Some("true"));
    assert_eq!(ext(e, "knativebrokerttl"), None);
    assert_eq!(e.iter_extensions().count(), 3, "{e}");
}

#[tokio::test]
async fn structured_base64_data_arrives_byte_for_byte() {
    let (sub, _server, url) = setup().await;
    let bytes: Vec<u8> = vec![0, 159, 146, 150, 255, 1, 2, 3];
    let sent = EventBuilderV10::new()
        .id("b64")
        .source(SOURCE)
        .ty("blob")
        .data("application/octet-stream", bytes.clone())
        .build()
        .unwrap();
    let text = serde_json::to_string(&sent).unwrap();
    assert!(text.contains("data_base64"), "{text}");
    assert_eq!(send_structured(&url, &sent).await.status, 202);
    // And the same bytes in binary mode.
    let mut bin = sent.clone();
    bin.set_id("bin-blob");
    assert_eq!(send_binary(&url, &bin).await.status, 202);

    let got = sub.wait_for(2, DEADLINE).await;
    for (r, id) in got.iter().zip(["b64", "bin-blob"]) {
        assert_eq!(r.id(), id);
        assert_eq!(data_bytes(r.event()), Some(bytes.clone()), "{id}");
        assert_eq!(r.body.as_ref(), bytes.as_slice(), "{id}: raw body");
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    }
}

#[tokio::test]
async fn batch_is_accepted_and_every_event_delivered_intact_in_order() {
    let (sub, _server, url) = setup().await;
    let sent = vec![
        rich_event("batch-1", "com.example.a", &[("region", "eu")]),
        rich_event(
            "batch-2",
            "com.example.b",
            &[("region", "us"), ("tenant", "t1")],
        ),
        event("batch-3", "com.example.c"),
    ];
    let r = send_batch(&url, &sent).await;
    assert_eq!(r.status, 202, "{r:?}");

    let got = sub.wait_for(3, DEADLINE).await;
    for (r, want) in got.iter().zip(&sent) {
        assert_same_event(r.event(), want);
    }
    let f = fence(&url, &sub).await;
    assert_eq!(
        sub.ids(),
        ["batch-1", "batch-2", "batch-3", f.as_str()],
        "each batch event exactly once, in order"
    );
}

#[tokio::test]
async fn an_empty_batch_is_accepted_and_delivers_nothing() {
    let (sub, _server, url) = setup().await;
    let r = post(&url, BATCH, "[]").await;
    assert_eq!(r.status, 202, "{r:?}");
    let f = fence(&url, &sub).await;
    assert_eq!(sub.ids(), [f]);
}

// ---------------------------------------------------------------------------------------------
// 400: invalid events, per mode
// ---------------------------------------------------------------------------------------------

/// A valid binary-mode request, as header pairs.
fn binary_headers(id: &str) -> Vec<(String, String)> {
    [
        ("ce-specversion", "1.0"),
        ("ce-id", id),
        ("ce-source", "/shop"),
        ("ce-type", "com.example"),
        ("content-type", "application/json"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A valid structured-mode event, as JSON.
fn structured(id: &str) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": "/shop",
        "type": "com.example",
        "datacontenttype": "application/json",
        "data": {"ok": true}
    })
}

/// One way to break an event, in each mode, and what the 400's body must mention.
struct Breakage {
    name: &'static str,
    /// Header edits: `(name, None)` removes, `(name, Some(v))` sets.
    binary: Vec<(&'static str, Option<&'static str>)>,
    /// JSON edits for structured and batch mode: `(key, None)` removes, `(key, Some(v))` sets.
    json: Vec<(&'static str, Option<Value>)>,
    /// The 400's body must contain this (binary mode).
    binary_says: &'static str,
    /// ... and this (structured and batch mode).
    json_says: &'static str,
}

fn breakages() -> Vec<Breakage> {
    vec![
        Breakage {
            name: "missing id",
            binary: vec![("ce-id", None)],
            json: vec![("id", None)],
            binary_says: "attribute id",
            json_says: "missing required attribute id",
        },
        Breakage {
            name: "empty id",
            binary: vec![("ce-id", Some(""))],
            json: vec![("id", Some(json!("")))],
            binary_says: "attribute id must not be empty",
            json_says: "attribute id must not be empty",
        },
        Breakage {
            name: "missing source",
            binary: vec![("ce-source", None)],
            json: vec![("source", None)],
            binary_says: "attribute source",
            json_says: "missing required attribute source",
        },
        Breakage {
            name: "missing type",
            binary: vec![("ce-type", None)],
            json: vec![("type", None)],
            binary_says: "attribute type",
            json_says: "missing required attribute type",
        },
        Breakage {
            name: "missing specversion",
            binary: vec![("ce-specversion", None)],
            json: vec![("specversion", None)],
            binary_says: "ce-specversion",
            json_says: "missing required attribute specversion",
        },
        Breakage {
            name: "unknown specversion",
            binary: vec![("ce-specversion", Some("2.0"))],
            json: vec![("specversion", Some(json!("2.0")))],
            binary_says: "2.0",
            json_says: "2.0",
        },
        Breakage {
            name: "extension name with upper case and underscore",
            // Header names are case-insensitive, so binary mode sees `bad_name`.
            binary: vec![("ce-Bad_Name", Some("x"))],
            json: vec![("Bad_Name", Some(json!("x")))],
            binary_says: "\"bad_name\" is invalid",
            json_says: "\"Bad_Name\" is invalid",
        },
        Breakage {
            name: "extension name with a dash",
            binary: vec![("ce-my-ext", Some("x"))],
            json: vec![("my-ext", Some(json!("x")))],
            binary_says: "\"my-ext\" is invalid",
            json_says: "\"my-ext\" is invalid",
        },
        Breakage {
            name: "knativebrokerttl zero",
            binary: vec![("ce-knativebrokerttl", Some("0"))],
            json: vec![("knativebrokerttl", Some(json!(0)))],
            binary_says: "knativebrokerttl must be a positive integer",
            json_says: "knativebrokerttl must be a positive integer",
        },
        Breakage {
            name: "knativebrokerttl negative",
            binary: vec![("ce-knativebrokerttl", Some("-3"))],
            json: vec![("knativebrokerttl", Some(json!(-3)))],
            binary_says: "knativebrokerttl must be a positive integer",
            json_says: "knativebrokerttl must be a positive integer",
        },
        Breakage {
            name: "knativebrokerttl not a number",
            binary: vec![("ce-knativebrokerttl", Some("many"))],
            json: vec![("knativebrokerttl", Some(json!("many")))],
            binary_says: "knativebrokerttl must be a positive integer",
            json_says: "knativebrokerttl must be a positive integer",
        },
        Breakage {
            name: "knativebrokerttl not an integer",
            binary: vec![("ce-knativebrokerttl", Some("1.5"))],
            json: vec![("knativebrokerttl", Some(json!("1.5")))],
            binary_says: "knativebrokerttl must be a positive integer",
            json_says: "knativebrokerttl must be a positive integer",
        },
    ]
}

fn broken_binary(b: &Breakage, id: &str) -> Vec<(String, String)> {
    let mut headers = binary_headers(id);
    for (name, value) in &b.binary {
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        if let Some(v) = value {
            headers.push((name.to_string(), v.to_string()));
        }
    }
    headers
}

fn broken_json(b: &Breakage, id: &str) -> Value {
    let mut v = structured(id);
    let map = v.as_object_mut().unwrap();
    for (key, value) in &b.json {
        match value {
            Some(value) => map.insert(key.to_string(), value.clone()),
            None => map.remove(*key),
        };
    }
    v
}

/// Sends the breakage in all three modes; returns what went wrong.
async fn check(url: &Url, b: &Breakage) -> Vec<String> {
    let mut failures = Vec::new();
    {
        // Binary mode.
        let headers = broken_binary(b, "bad-bin");
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let r = post_with_headers(url, &pairs, br#"{"ok":true}"#.to_vec()).await;
        if r.status != 400 || !r.body.contains(b.binary_says) {
            failures.push(format!(
                "binary, {}: want 400 mentioning {:?}, got {} {:?}",
                b.name, b.binary_says, r.status, r.body
            ));
        }
        // Structured mode.
        let r = post(url, STRUCTURED, broken_json(b, "bad-st").to_string()).await;
        if r.status != 400 || !r.body.contains(b.json_says) {
            failures.push(format!(
                "structured, {}: want 400 mentioning {:?}, got {} {:?}",
                b.name, b.json_says, r.status, r.body
            ));
        }
        // Batch mode: a valid event, then the broken one. All or nothing.
        let batch = json!([structured("batch-ok"), broken_json(b, "bad-batch")]);
        let r = post(url, BATCH, batch.to_string()).await;
        if r.status != 400 || !r.body.contains(b.json_says) || !r.body.contains("event 1") {
            failures.push(format!(
                "batch, {}: want 400 mentioning {:?} and \"event 1\", got {} {:?}",
                b.name, b.json_says, r.status, r.body
            ));
        }
    }
    failures
}

#[tokio::test]
async fn invalid_events_are_rejected_with_400_naming_the_problem_in_every_mode() {
    let (sub, _server, url) = setup().await;
    let mut failures = Vec::new();
    for b in breakages() {
        failures.extend(check(&url, &b).await);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // None of the rejected requests, nor the valid half of a rejected batch, got in.
    let f = fence(&url, &sub).await;
    assert_eq!(sub.ids(), [f]);
}

/// An invalid `time` is refused in every mode, and the answer says it is the `time` attribute
/// that is wrong (a client cannot fix "premature end of input" without guessing).
#[tokio::test]
async fn invalid_time_is_rejected_with_400_naming_time_in_every_mode() {
    let (sub, _server, url) = setup().await;
    let mut failures = Vec::new();
    for bad in ["yesterday at noon", "2024-13-01T00:00:00Z", "2024-05-01"] {
        let b = Breakage {
            name: "invalid time",
            binary: vec![("ce-time", Some(bad))],
            json: vec![("time", Some(json!(bad)))],
            binary_says: "time",
            json_says: "time",
        };
        failures.extend(
            check(&url, &b)
                .await
                .into_iter()
                .map(|f| format!("{f} (time {bad:?})")),
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let f = fence(&url, &sub).await;
    assert_eq!(sub.ids(), [f]);
}

#[tokio::test]
async fn a_valid_ttl_is_accepted_and_never_reaches_the_subscriber() {
    let (sub, _server, url) = setup().await;
    let mut headers = binary_headers("ttl-bin");
    headers.push(("ce-knativebrokerttl".into(), "7".into()));
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = post_with_headers(&url, &pairs, b"{}".to_vec()).await;
    assert_eq!(r.status, 202, "{r:?}");
    let mut st = structured("ttl-st");
    st["knativebrokerttl"] = json!(1);
    assert_eq!(post(&url, STRUCTURED, st.to_string()).await.status, 202);
    let got = sub.wait_for(2, DEADLINE).await;
    for r in &got {
        assert_eq!(ext(r.event(), "knativebrokerttl"), None, "{}", r.id());
        assert_eq!(r.header("ce-knativebrokerttl"), None);
    }
}

#[tokio::test]
async fn requests_that_are_not_cloudevents_are_rejected_with_400() {
    let (sub, _server, url) = setup().await;
    let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "plain JSON without ce- headers",
            "application/json",
            br#"{"id":"1"}"#.to_vec(),
            "ce-specversion",
        ),
        (
            "no content type at all",
            "",
            b"hello".to_vec(),
            "specversion",
        ),
        (
            "structured, not JSON",
            STRUCTURED,
            b"{oops".to_vec(),
            "invalid CloudEvent",
        ),
        (
            "structured, a JSON array",
            STRUCTURED,
            b"[]".to_vec(),
            "invalid CloudEvent",
        ),
        (
            "structured, empty body",
            STRUCTURED,
            Vec::new(),
            "invalid CloudEvent",
        ),
        (
            "structured, bad data_base64",
            STRUCTURED,
            json!({"specversion":"1.0","id":"1","source":"/s","type":"t",
                   "datacontenttype":"application/octet-stream","data_base64":"!!not base64!!"})
            .to_string()
            .into_bytes(),
            "data_base64 is not valid base64",
        ),
        ("batch, not JSON", BATCH, b"[{".to_vec(), "invalid batch"),
        (
            "batch, an object",
            BATCH,
            structured("x").to_string().into_bytes(),
            "JSON array",
        ),
        (
            "batch, a number inside",
            BATCH,
            b"[1]".to_vec(),
            "event 0 of the batch",
        ),
    ];
    let mut failures = Vec::new();
    for (name, ct, body, says) in cases {
        let r = if ct.is_empty() {
            post_with_headers(&url, &[], body).await
        } else {
            post(&url, ct, body).await
        };
        if r.status != 400 || !r.body.contains(says) {
            failures.push(format!(
                "{name}: want 400 mentioning {says:?}, got {} {:?}",
                r.status, r.body
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let f = fence(&url, &sub).await;
    assert_eq!(sub.ids(), [f]);
}

// ---------------------------------------------------------------------------------------------
// 404 and 405
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn unknown_broker_or_namespace_is_404() {
    let (sub, server, url) = setup().await;
    let base = server.url();
    let e = event("lost", "t");
    for (path, says) in [
        ("/ns/nope", "ns/nope"),
        ("/other/b", "other/b"),
        ("/default/b", "default/b"),
    ] {
        let u = base.join(path).unwrap();
        let r = send_binary(&u, &e).await;
        assert_eq!(r.status, 404, "binary {path}: {r:?}");
        assert!(r.body.contains(says), "binary {path}: {r:?}");
        let r = send_structured(&u, &e).await;
        assert_eq!(r.status, 404, "structured {path}: {r:?}");
        let r = send_batch(&u, std::slice::from_ref(&e)).await;
        assert_eq!(r.status, 404, "batch {path}: {r:?}");
    }
    for path in ["/ns", "/ns/b/extra", "/"] {
        let r = send_binary(&base.join(path).unwrap(), &e).await;
        assert_eq!(r.status, 404, "{path}: {r:?}");
    }
    let f = fence(&url, &sub).await;
    assert_eq!(sub.ids(), [f]);
}

#[tokio::test]
async fn a_percent_escaped_path_names_the_same_broker() {
    // Event posts with plain segments skip the router; an escaped one goes through it, which
    // decodes it: both reach the same Broker.
    let (sub, server, url) = setup().await;
    let escaped = server.url().join("/n%73/%62").unwrap();
    let r = send_binary(&escaped, &event("escaped", "t")).await;
    assert_eq!(r.status, 202, "{r:?}");
    let f = fence(&url, &sub).await;
    assert_eq!(sub.ids(), ["escaped".to_string(), f]);
}

#[tokio::test]
async fn methods_other_than_post_are_405() {
    let (sub, _server, url) = setup().await;
    let c = client();
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
        reqwest::Method::PATCH,
    ] {
        let r = c
            .request(method.clone(), url.clone())
            .header("ce-specversion", "1.0")
            .header("ce-id", "m")
            .header("ce-source", "/s")
            .header("ce-type", "t")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 405, "{method}");
        let allow = r.headers().get("allow").and_then(|v| v.to_str().ok());
        assert!(
            allow.is_some_and(|a| a.contains("POST")),
            "{method}: Allow {allow:?}"
        );
    }
    let f = fence(&url, &sub).await;
    assert_eq!(sub.ids(), [f]);
}

// ---------------------------------------------------------------------------------------------
// 413
// ---------------------------------------------------------------------------------------------

const LIMIT: usize = 400;

/// A structured event whose JSON is exactly `len` bytes.
fn structured_of_len(id: &str, len: usize) -> Vec<u8> {
    let mut v = structured(id);
    v["data"] = json!({"pad": ""});
    let base = v.to_string().len();
    assert!(base <= len);
    v["data"] = json!({"pad": "x".repeat(len - base)});
    let bytes = v.to_string().into_bytes();
    assert_eq!(bytes.len(), len);
    bytes
}

/// A batch of one event whose JSON is exactly `len` bytes.
fn batch_of_len(id: &str, len: usize) -> Vec<u8> {
    let mut one = structured_of_len(id, len - 2);
    one.insert(0, b'[');
    one.push(b']');
    one
}

#[tokio::test]
async fn bodies_over_max_body_bytes_are_413_in_every_mode() {
    let sub = Subscriber::start().await;
    let server = start_with(
        &one_trigger(&sub, "retry: 0"),
        ServeConfig {
            max_body_bytes: LIMIT,
            ..sequential()
        },
    )
    .await;
    let url = server.broker_url("ns", "b");
    let headers = binary_headers("big-bin");
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let big_data = |len: usize| format!("\"{}\"", "x".repeat(len - 2)).into_bytes();

    // With Content-Length.
    let r = post_with_headers(&url, &pairs, big_data(LIMIT + 1)).await;
    assert_eq!(r.status, 413, "binary: {r:?}");
    assert!(r.body.contains(&LIMIT.to_string()), "{r:?}");
    let r = post(&url, STRUCTURED, structured_of_len("big-st", LIMIT + 1)).await;
    assert_eq!(r.status, 413, "structured: {r:?}");
    let r = post(&url, BATCH, batch_of_len("big-batch", LIMIT + 1)).await;
    assert_eq!(r.status, 413, "batch: {r:?}");

    // Chunked, so only the streaming limit can catch it.
    let addr = server.addr;
    let bin_headers = "ce-specversion: 1.0\r\nce-id: big-chunked\r\nce-source: /s\r\n\
                       ce-type: t\r\ncontent-type: application/json\r\n";
    let (status, text) = raw_http(
        addr,
        &chunked_request(addr, "/ns/b", bin_headers, &big_data(LIMIT + 1)),
    )
    .await;
    assert_eq!(status, 413, "binary chunked: {text}");
    let st_headers = format!("content-type: {STRUCTURED}\r\n");
    let (status, text) = raw_http(
        addr,
        &chunked_request(
            addr,
            "/ns/b",
            &st_headers,
            &structured_of_len("c-st", LIMIT + 1),
        ),
    )
    .await;
    assert_eq!(status, 413, "structured chunked: {text}");
    let batch_headers = format!("content-type: {BATCH}\r\n");
    let (status, text) = raw_http(
        addr,
        &chunked_request(
            addr,
            "/ns/b",
            &batch_headers,
            &batch_of_len("c-b", LIMIT + 1),
        ),
    )
    .await;
    assert_eq!(status, 413, "batch chunked: {text}");

    // Exactly at the limit is fine, in every mode and both framings.
    let at_limit_bin = big_data(LIMIT);
    let mut ok_headers = binary_headers("ok-bin");
    ok_headers.retain(|(k, _)| k != "ce-id");
    ok_headers.push(("ce-id".into(), "ok-bin".into()));
    let ok_pairs: Vec<(&str, &str)> = ok_headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let r = post_with_headers(&url, &ok_pairs, at_limit_bin.clone()).await;
    assert_eq!(r.status, 202, "binary at the limit: {r:?}");
    let r = post(&url, STRUCTURED, structured_of_len("ok-st", LIMIT)).await;
    assert_eq!(r.status, 202, "structured at the limit: {r:?}");
    let r = post(&url, BATCH, batch_of_len("ok-batch", LIMIT)).await;
    assert_eq!(r.status, 202, "batch at the limit: {r:?}");
    let chunked_ok = "ce-specversion: 1.0\r\nce-id: ok-chunked\r\nce-source: /s\r\n\
                      ce-type: t\r\ncontent-type: application/json\r\n";
    let (status, text) = raw_http(
        addr,
        &chunked_request(addr, "/ns/b", chunked_ok, &at_limit_bin),
    )
    .await;
    assert_eq!(status, 202, "binary chunked at the limit: {text}");

    let f = fence(&url, &sub).await;
    assert_eq!(
        sub.ids(),
        ["ok-bin", "ok-st", "ok-batch", "ok-chunked", f.as_str()],
        "only the requests within the limit got in"
    );
    let got = sub.received();
    assert_eq!(got[0].body.len(), LIMIT, "binary data arrives whole");
}

// ---------------------------------------------------------------------------------------------
// 429
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_full_channel_answers_429_with_retry_after_in_every_mode() {
    let sub = Subscriber::start().await;
    // Nothing is acknowledged while the subscriber holds its requests.
    sub.hold();
    let server = start_with(
        &one_trigger(&sub, "retry: 0"),
        ServeConfig {
            channels: BackendsConfig {
                memory: MemoryChannelConfig {
                    capacity: 2,
                    // Whole seconds on the wire, rounded up.
                    retry_after: Duration::from_millis(1500),
                },
                ..Default::default()
            },
            ..sequential()
        },
    )
    .await;
    let url = server.broker_url("ns", "b");
    accept(&url, &event("held-1", "t")).await;
    sub.wait_for(1, DEADLINE).await;

    // One slot left: a batch of two does not fit and is refused whole.
    let r = send_batch(&url, &[event("b-1", "t"), event("b-2", "t")]).await;
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(r.retry_after(), Some("2"), "{r:?}");
    assert!(r.body.contains("full"), "{r:?}");
    accept(&url, &event("held-2", "t")).await;

    // Full now, in every mode.
    let r = send_binary(&url, &event("over-bin", "t")).await;
    assert_eq!(r.status, 429, "binary: {r:?}");
    assert_eq!(r.retry_after(), Some("2"), "binary: {r:?}");
    let r = send_structured(&url, &event("over-st", "t")).await;
    assert_eq!(r.status, 429, "structured: {r:?}");
    assert_eq!(r.retry_after(), Some("2"), "structured: {r:?}");
    let r = send_batch(&url, &[event("over-batch", "t")]).await;
    assert_eq!(r.status, 429, "batch: {r:?}");
    assert_eq!(r.retry_after(), Some("2"), "batch: {r:?}");
    // Only the first event is with the subscriber (one in flight); the other waits in the log.
    assert_eq!(sub.ids(), ["held-1"]);

    // Once the subscriber answers, the channel drains and accepts again.
    sub.release();
    sub.wait_for(2, DEADLINE).await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let r = send_binary(&url, &event("after", "t")).await;
        if r.status == 202 {
            break;
        }
        assert_eq!(r.status, 429, "{r:?}");
        assert!(
            Instant::now() < deadline,
            "still full after the subscriber drained it"
        );
        // Polling a condition with a deadline: acknowledgements land just after the answers.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let f = fence(&url, &sub).await;
    assert_eq!(
        sub.ids(),
        ["held-1", "held-2", "after", f.as_str()],
        "refused events were not stored"
    );
}

// ---------------------------------------------------------------------------------------------
// Isolation and robustness
// ---------------------------------------------------------------------------------------------

/// Raw header pairs; values may be any bytes.
type Headers = Vec<(&'static str, &'static [u8])>;

#[tokio::test]
async fn garbage_never_affects_another_broker_nor_brings_the_server_down() {
    let sub_a = Subscriber::start().await;
    let sub_b = Subscriber::start().await;
    let yaml = format!(
        r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: a, namespace: ns}}
---
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: b, namespace: ns}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: to-a, namespace: ns}}
spec:
  broker: a
  subscriber: {{uri: "{}"}}
  delivery: {{retry: 0}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: to-b, namespace: ns}}
spec:
  broker: b
  subscriber: {{uri: "{}"}}
  delivery: {{retry: 0}}
"#,
        sub_a.url(),
        sub_b.url()
    );
    let server = start_with(
        &yaml,
        ServeConfig {
            max_body_bytes: 64 * 1024,
            ..sequential()
        },
    )
    .await;
    let a = server.broker_url("ns", "a");
    let b = server.broker_url("ns", "b");

    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let garbage: Vec<(&str, Headers, Vec<u8>)> = vec![
        (
            "binary, non-UTF-8 id",
            vec![
                ("ce-specversion", b"1.0"),
                ("ce-id", b"\xff\xfe"),
                ("ce-source", b"/s"),
                ("ce-type", b"t"),
            ],
            Vec::new(),
        ),
        (
            "binary, non-UTF-8 content type",
            vec![
                ("ce-specversion", b"1.0"),
                ("ce-id", b"1"),
                ("ce-source", b"/s"),
                ("ce-type", b"t"),
                ("content-type", b"\xc3\x28"),
            ],
            b"x".to_vec(),
        ),
        (
            "binary, TTL overflowing i64",
            vec![
                ("ce-specversion", b"1.0"),
                ("ce-id", b"1"),
                ("ce-source", b"/s"),
                ("ce-type", b"t"),
                ("ce-knativebrokerttl", b"99999999999999999999999"),
            ],
            Vec::new(),
        ),
        (
            "structured, binary junk",
            vec![("content-type", STRUCTURED.as_bytes())],
            vec![0, 1, 2, 0xff, 0xfe],
        ),
        (
            "structured, null",
            vec![("content-type", STRUCTURED.as_bytes())],
            b"null".to_vec(),
        ),
        (
            "structured, nested too deep",
            vec![("content-type", STRUCTURED.as_bytes())],
            deep.clone().into_bytes(),
        ),
        (
            "structured, object extension",
            vec![("content-type", STRUCTURED.as_bytes())],
            br#"{"specversion":"1.0","id":"1","source":"/s","type":"t","nested":{"a":1}}"#.to_vec(),
        ),
        (
            "batch, nested too deep",
            vec![("content-type", BATCH.as_bytes())],
            deep.into_bytes(),
        ),
        (
            "batch, nulls",
            vec![("content-type", BATCH.as_bytes())],
            b"[null, null]".to_vec(),
        ),
        (
            "batch, truncated",
            vec![("content-type", BATCH.as_bytes())],
            br#"[{"specversion":"1.0","id":"#.to_vec(),
        ),
    ];
    let c = client();
    for (name, headers, body) in garbage {
        let mut request = c.post(a.clone()).body(body);
        for (k, v) in headers {
            request = request.header(k, reqwest::header::HeaderValue::from_bytes(v).unwrap());
        }
        // A panic in the handler would drop the connection instead of answering.
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{name}: no answer: {e}"));
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(status, 400, "{name}: {text}");
        assert!(!text.trim().is_empty(), "{name}: a 400 says why");
    }

    // Broker b is untouched, and broker a and the server still work.
    accept(&b, &rich_event("to-b", "t", &[("region", "eu")])).await;
    accept(&a, &event("to-a", "t")).await;
    let got_b = sub_b.wait_for_id("to-b", DEADLINE).await;
    assert_same_event(
        got_b[0].event(),
        &rich_event("to-b", "t", &[("region", "eu")]),
    );
    sub_a.wait_for_id("to-a", DEADLINE).await;
    let health = c
        .get(server.url().join("/healthz").unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let fa = fence(&a, &sub_a).await;
    let fb = fence(&b, &sub_b).await;
    assert_eq!(sub_a.ids(), ["to-a".to_string(), fa]);
    assert_eq!(sub_b.ids(), ["to-b".to_string(), fb]);
}
