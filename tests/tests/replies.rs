//! Replies end to end: a 200 carrying a CloudEvent re-enters the Broker (with the TTL one hop
//! lower) and reaches the Triggers that match it; reply loops end when the TTL runs out; a 202
//! (or any non-200) carrying an event is not a reply.
//!
//! Negative checks use two fences rather than sleeping (servers run with `max_in_flight: 1`, so
//! each Trigger handles events one at a time in log order). When a Trigger's subscriber has
//! fence 1, the delivery before it is complete, so any reply it produced is already in the log;
//! fence 2 is published after that, so once it arrives every such reply has arrived too.

mod common;

use cloudevents::{AttributesReader, Event, EventBuilder, EventBuilderV10};
use common::*;
use url::Url;

fn reply_to(original: &Event, ty: &str) -> Event {
    EventBuilderV10::new()
        .id(format!("reply-{}", original.id()))
        .source("/callable")
        .ty(ty)
        .extension("correlation", original.id())
        .data(
            "application/json",
            serde_json::json!({"processed": original.id()}),
        )
        .build()
        .unwrap()
}

/// Broker `ns/b` with a callable Trigger on orders created and an audit Trigger on orders
/// processed (the callable's replies); both also take fences.
fn callable_and_audit(callable: &Subscriber, audit: &Subscriber) -> String {
    format!(
        r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: b, namespace: ns}}
spec:
  delivery: {{retry: 0}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: callable, namespace: ns}}
spec:
  broker: b
  filters: [{{any: [{{exact: {{type: com.example.order.created}}}}, {{exact: {{type: fence}}}}]}}]
  subscriber: {{uri: "{}"}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: audit, namespace: ns}}
spec:
  broker: b
  filters: [{{any: [{{exact: {{type: com.example.order.processed}}}}, {{exact: {{type: fence}}}}]}}]
  subscriber: {{uri: "{}"}}
"#,
        callable.url(),
        audit.url()
    )
}

/// Sends a fence and waits until every subscriber in `subs` has it.
async fn fence_all(url: &Url, subs: &[&Subscriber], id: &str) {
    accept(url, &event(id, "fence")).await;
    for s in subs {
        s.wait_for_id(id, DEADLINE).await;
    }
}

#[tokio::test]
async fn a_reply_is_published_back_and_delivered_to_the_trigger_on_its_type() {
    let callable = Subscriber::start().await;
    // One reply in binary mode, one in structured mode.
    callable.respond_with(|r, _| {
        let e = r.event();
        if e.ty() == "fence" {
            return Answer::accepted();
        }
        let reply = reply_to(e, "com.example.order.processed");
        if e.id() == "o-structured" {
            Answer::reply_structured(reply)
        } else {
            Answer::reply(reply)
        }
    });
    let audit = Subscriber::start().await;
    let yaml = callable_and_audit(&callable, &audit);
    let server = start_with(&yaml, sequential()).await;
    let url = server.broker_url("ns", "b");
    let binary = rich_event("o-binary", "com.example.order.created", &[("region", "eu")]);
    let structured = rich_event("o-structured", "com.example.order.created", &[]);
    accept(&url, &binary).await;
    accept(&url, &structured).await;

    let got = audit.wait_for(2, DEADLINE).await;
    assert_same_event(
        got[0].event(),
        &reply_to(&binary, "com.example.order.processed"),
    );
    assert_same_event(
        got[1].event(),
        &reply_to(&structured, "com.example.order.processed"),
    );
    for r in &got {
        assert_eq!(
            r.header("ce-knativebrokerttl"),
            None,
            "the TTL stays inside the broker"
        );
    }
    // The callable subscriber asked for replies and got only the originals.
    let c = callable.received();
    assert_eq!(
        describe(&c),
        [
            "o-binary (com.example.order.created)",
            "o-structured (com.example.order.created)"
        ]
    );
    assert!(c.iter().all(|r| r.header("prefer") == Some("reply")));
    assert_same_event(c[0].event(), &binary);

    fence_all(&url, &[&callable, &audit], "fence-1").await;
    fence_all(&url, &[&callable, &audit], "fence-2").await;
    assert_eq!(
        non_fence_ids(&audit),
        ["reply-o-binary", "reply-o-structured"]
    );
    assert_eq!(non_fence_ids(&callable), ["o-binary", "o-structured"]);
}

/// Runs a reply loop: the subscriber answers every `ping` with a new `ping`, optionally
/// claiming its own TTL; returns the ids of the pings it received.
async fn reply_loop(ttl: Option<i64>, reply_claims_ttl: Option<&'static str>) -> Vec<String> {
    let sub = Subscriber::start().await;
    sub.respond_with(move |r, _| {
        let e = r.event();
        if e.ty() != "ping" {
            return Answer::accepted();
        }
        let hop = e
            .id()
            .strip_prefix("hop-")
            .map_or(0, |n| n.parse::<u32>().unwrap());
        let mut reply = event(&format!("hop-{}", hop + 1), "ping");
        if let Some(t) = reply_claims_ttl {
            reply.set_extension("knativebrokerttl", t);
        }
        Answer::reply(reply)
    });
    let yaml = format!(
        r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: b, namespace: ns}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: loop, namespace: ns}}
spec:
  broker: b
  filters: [{{any: [{{exact: {{type: ping}}}}, {{exact: {{type: fence}}}}]}}]
  subscriber: {{uri: "{}"}}
  delivery: {{retry: 0}}
"#,
        sub.url()
    );
    let server = start_with(&yaml, sequential()).await;
    let url = server.broker_url("ns", "b");
    let mut first = event("hop-0", "ping");
    if let Some(t) = ttl {
        first.set_extension("knativebrokerttl", t);
    }
    accept(&url, &first).await;
    let expected = ttl.unwrap_or(255) as usize;
    sub.wait_until(&format!("{expected} pings"), DEADLINE, |r| {
        r.iter().filter(|r| r.event().ty() == "ping").count() >= expected
    })
    .await;
    fence(&url, &sub).await;
    fence(&url, &sub).await;
    for r in sub.received() {
        assert_eq!(
            r.header("ce-knativebrokerttl"),
            None,
            "subscribers never see the TTL"
        );
    }
    non_fence_ids(&sub)
}

#[tokio::test]
async fn a_reply_loop_stops_when_the_ttl_runs_out() {
    // TTL 5: the original and four replies (TTL 4, 3, 2, 1); the fifth reply would have TTL 0.
    assert_eq!(
        reply_loop(Some(5), None).await,
        ["hop-0", "hop-1", "hop-2", "hop-3", "hop-4"]
    );
}

#[tokio::test]
async fn with_ttl_1_the_first_reply_is_dropped() {
    assert_eq!(reply_loop(Some(1), None).await, ["hop-0"]);
}

#[tokio::test]
async fn a_reply_cannot_raise_its_own_ttl() {
    // The subscriber stamps every reply with knativebrokerttl 200; the broker decides.
    assert_eq!(
        reply_loop(Some(3), Some("200")).await,
        ["hop-0", "hop-1", "hop-2"]
    );
}

#[tokio::test]
async fn an_event_in_a_202_or_201_is_not_a_reply() {
    let callable = Subscriber::start().await;
    callable.respond_with(|r, _| {
        let e = r.event();
        let reply = reply_to(e, "com.example.order.processed");
        match e.id() {
            "e202" => Answer::accepted().event(reply),
            "e201" => Answer::status(201).event(reply),
            "e202-structured" => Answer {
                status: 202,
                ..Answer::reply_structured(reply)
            },
            // The control: a 200 is a reply, so this test can see routing when it happens.
            "e200" => Answer::reply(reply),
            _ => Answer::accepted(),
        }
    });
    let audit = Subscriber::start().await;
    let yaml = callable_and_audit(&callable, &audit);
    let server = start_with(&yaml, sequential()).await;
    let url = server.broker_url("ns", "b");
    for id in ["e202", "e201", "e202-structured", "e200"] {
        accept(&url, &event(id, "com.example.order.created")).await;
    }
    callable.wait_for(4, DEADLINE).await;
    fence_all(&url, &[&callable, &audit], "fence-1").await;
    fence_all(&url, &[&callable, &audit], "fence-2").await;
    assert_eq!(non_fence_ids(&audit), ["reply-e200"]);
    assert_eq!(
        non_fence_ids(&callable),
        ["e202", "e201", "e202-structured", "e200"],
        "each delivered once: a 2xx with an event is a success"
    );
}

#[tokio::test]
async fn an_unreadable_reply_counts_as_a_failed_attempt() {
    let callable = Subscriber::start().await;
    // A 200 that claims to be a CloudEvent (ce-specversion) but has no id.
    callable.respond_with(|_, _| {
        Answer::status(200)
            .header("ce-specversion", "1.0")
            .header("ce-type", "com.example.order.processed")
            .header("ce-source", "/callable")
            .body("{}")
    });
    let dls = Subscriber::start().await;
    let yaml = format!(
        r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: b, namespace: ns}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: callable, namespace: ns}}
spec:
  broker: b
  subscriber: {{uri: "{}"}}
  delivery: {{retry: 1, backoffDelay: PT0.01S, deadLetterSink: {{uri: "{}"}}}}
"#,
        callable.url(),
        dls.url()
    );
    let server = start(&yaml).await;
    accept(
        &server.broker_url("ns", "b"),
        &event("x", "com.example.order.created"),
    )
    .await;
    let dead = dls.wait_for(1, DEADLINE).await;
    assert_eq!(
        callable.ids(),
        ["x", "x"],
        "retried like any failed attempt"
    );
    assert_eq!(dead[0].id(), "x");
    assert_eq!(
        ext(dead[0].event(), "knativeerrorcode").as_deref(),
        Some("200")
    );
}
