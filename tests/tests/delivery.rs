//! Delivery end to end: which statuses are retried, backoff spacing (linear and exponential),
//! Retry-After on 429/503 and its cap, per-attempt timeouts, the dead-letter sink and the event
//! it receives, and that a hopeless event does not wedge its Trigger.
//!
//! Timing assertions measure gaps between arrivals at the subscriber. The lower bound is strict
//! (the dispatcher must wait at least that long); the upper bound is generous, for a shared
//! machine, yet tight enough to tell the policies apart.

mod common;

use base64::Engine;
use cloudevents::{AttributesReader, EventBuilder, EventBuilderV10};
use common::*;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Slack allowed above an expected gap.
const TOLERANCE: Duration = Duration::from_millis(300);

/// Gaps between consecutive requests.
fn gaps(attempts: &[Received]) -> Vec<Duration> {
    attempts.windows(2).map(|w| w[1].at - w[0].at).collect()
}

fn assert_gap(gap: Duration, at_least: Duration, at_most: Duration, what: &str) {
    assert!(
        gap >= at_least && gap <= at_most,
        "{what}: gap {gap:?} outside [{at_least:?}, {at_most:?}]"
    );
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn decode_b64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap_or_else(|e| panic!("knativeerrordata {text:?} is not base64: {e}"))
}

/// Every attempt fails with 500; returns the gaps between the attempts once the dead-letter
/// sink has the event.
async fn failing_attempt_gaps(policy: &str, retry: usize) -> Vec<Duration> {
    let sub = Subscriber::start().await;
    sub.respond_with(|_, _| Answer::status(500));
    let dls = Subscriber::start().await;
    let server = start(&one_trigger(
        &sub,
        &format!(
            "retry: {retry}, backoffPolicy: {policy}, backoffDelay: PT0.1S, \
             deadLetterSink: {{uri: \"{}\"}}",
            dls.url()
        ),
    ))
    .await;
    accept(&server.broker_url("ns", "b"), &event("e", "t")).await;
    // The dead-letter sink is used only after the last attempt.
    let dead = dls.wait_for(1, DEADLINE).await;
    assert_eq!(
        ext(dead[0].event(), "knativeerrorcode").as_deref(),
        Some("500")
    );
    assert_eq!(
        dead[0].header("ce-knativebrokerttl"),
        None,
        "a dead letter goes without the broker TTL, as the delivery did"
    );
    let attempts = sub.attempts("e");
    assert_eq!(attempts.len(), 1 + retry, "1 attempt + {retry} retries");
    assert_eq!(sub.count(), 1 + retry);
    gaps(&attempts)
}

#[tokio::test]
async fn linear_backoff_waits_delay_times_n_before_retry_n() {
    let gaps = failing_attempt_gaps("linear", 4).await;
    for (i, gap) in gaps.iter().enumerate() {
        let expected = Duration::from_millis(100) * (i as u32 + 1);
        assert_gap(
            *gap,
            expected,
            expected + TOLERANCE,
            &format!("retry {}", i + 1),
        );
    }
}

#[tokio::test]
async fn exponential_backoff_waits_delay_times_2_pow_n_minus_1_before_retry_n() {
    let gaps = failing_attempt_gaps("exponential", 4).await;
    for (i, gap) in gaps.iter().enumerate() {
        let expected = Duration::from_millis(100) * 2u32.pow(i as u32);
        assert_gap(
            *gap,
            expected,
            expected + TOLERANCE,
            &format!("retry {}", i + 1),
        );
    }
}

#[tokio::test]
async fn retryable_statuses_are_retried_and_others_are_not() {
    let sub = Subscriber::start().await;
    // Each event names the status the subscriber answers it with.
    sub.respond_with(|r, _| {
        let status = ext(r.event(), "status").unwrap().parse().unwrap();
        Answer::status(status).body(format!("answered {status}"))
    });
    let dls = Subscriber::start().await;
    let server = start_with(
        &one_trigger(
            &sub,
            &format!(
                "retry: 2, backoffPolicy: linear, backoffDelay: PT0.01S, \
                 deadLetterSink: {{uri: \"{}\"}}",
                dls.url()
            ),
        ),
        sequential(),
    )
    .await;
    let url = server.broker_url("ns", "b");
    let delivered = [200u16, 201, 202, 204];
    let not_retried = [400u16, 401, 403, 405, 410, 413, 422];
    let retried = [404u16, 409, 429, 500, 501, 502, 503, 504];
    let all: Vec<u16> = delivered
        .iter()
        .chain(&not_retried)
        .chain(&retried)
        .copied()
        .collect();
    for status in &all {
        let mut e = event(&format!("s{status}"), "t");
        e.set_extension("status", status.to_string());
        accept(&url, &e).await;
    }
    // Handled one at a time in order: once the last is dead-lettered, all are done.
    dls.wait_for_id("s504", DEADLINE).await;

    let mut failures = Vec::new();
    for status in &all {
        let want = if retried.contains(status) { 3 } else { 1 };
        let got = sub.attempts(&format!("s{status}")).len();
        if got != want {
            failures.push(format!("{status}: {got} attempt(s), want {want}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let failed: Vec<String> = not_retried
        .iter()
        .chain(&retried)
        .map(|s| format!("s{s}"))
        .collect();
    assert_eq!(
        dls.ids(),
        failed,
        "exactly the failed events are dead-lettered, once each"
    );
    for r in dls.received() {
        let status = ext(r.event(), "status").unwrap();
        assert_eq!(
            ext(r.event(), "knativeerrorcode").as_deref(),
            Some(status.as_str())
        );
        assert_eq!(
            decode_b64(&ext(r.event(), "knativeerrordata").unwrap()),
            format!("answered {status}").into_bytes()
        );
    }
}

/// An HTTP date at least `secs` seconds from now (rounded up to whole seconds).
fn http_date_in(secs: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(now + secs + 1))
}

#[tokio::test]
async fn retry_after_is_honoured_on_429_and_503_only() {
    let sub = Subscriber::start().await;
    sub.respond_with(|r, attempt| {
        if attempt > 1 {
            return Answer::accepted();
        }
        match r.id().as_str() {
            "r429" => Answer::status(429).header("retry-after", "1"),
            "r503" => Answer::status(503).header("retry-after", "1"),
            "date" => Answer::status(503).header("retry-after", http_date_in(1)),
            // Retry-After means nothing on other statuses, and garbage means nothing at all.
            "r500" => Answer::status(500).header("retry-after", "1"),
            "garbage" => Answer::status(429).header("retry-after", "soon"),
            other => panic!("unexpected event {other}"),
        }
    });
    let dls = Subscriber::start().await;
    // Concurrent deliveries, so the waits overlap and the test takes about a second.
    let server = start(&one_trigger(
        &sub,
        &format!(
            "retry: 1, backoffPolicy: linear, backoffDelay: PT0.01S, \
             deadLetterSink: {{uri: \"{}\"}}",
            dls.url()
        ),
    ))
    .await;
    let url = server.broker_url("ns", "b");
    let ids = ["r429", "r503", "date", "r500", "garbage"];
    for id in ids {
        accept(&url, &event(id, "t")).await;
    }
    sub.wait_until("two attempts of each event", DEADLINE, |r| {
        ids.iter().all(|id| {
            r.iter()
                .filter(|r| r.event.as_ref().is_ok_and(|e| e.id() == *id))
                .count()
                >= 2
        })
    })
    .await;
    let second = Duration::from_secs(1);
    let gap = |id: &str| {
        let a = sub.attempts(id);
        assert_eq!(a.len(), 2, "{id}: {:?}", describe(&a));
        a[1].at - a[0].at
    };
    assert_gap(
        gap("r429"),
        second,
        second + TOLERANCE * 2,
        "429 Retry-After: 1",
    );
    assert_gap(
        gap("r503"),
        second,
        second + TOLERANCE * 2,
        "503 Retry-After: 1",
    );
    // The date is 1-2 s ahead when the subscriber writes it.
    assert_gap(
        gap("date"),
        second,
        2 * second + TOLERANCE * 2,
        "503 Retry-After: <date>",
    );
    let backoff = Duration::from_millis(10);
    assert_gap(
        gap("r500"),
        backoff,
        backoff + TOLERANCE,
        "500 with Retry-After",
    );
    assert_gap(
        gap("garbage"),
        backoff,
        backoff + TOLERANCE,
        "429 Retry-After: soon",
    );
    assert_eq!(dls.count(), 0, "every event was delivered on its retry");
}

#[tokio::test]
async fn retry_after_max_caps_retry_after_pt0s_opts_out_and_backoff_stays_a_floor() {
    // Three Triggers, each with its own delivery, on one Broker.
    let capped = Subscriber::start().await;
    capped.respond_with(|_, attempt| match attempt {
        1 => Answer::status(429).header("retry-after", "30"),
        _ => Answer::accepted(),
    });
    let floored = Subscriber::start().await;
    floored.respond_with(|_, attempt| match attempt {
        1 => Answer::status(503).header("retry-after", "0"),
        _ => Answer::accepted(),
    });
    let opted_out = Subscriber::start().await;
    opted_out.respond_with(|_, attempt| match attempt {
        1 => Answer::status(429).header("retry-after", "30"),
        _ => Answer::accepted(),
    });
    let yaml = format!(
        r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: b, namespace: ns}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: opted-out, namespace: ns}}
spec:
  broker: b
  filter: {{attributes: {{type: opted-out}}}}
  subscriber: {{uri: "{}"}}
  delivery: {{retry: 1, backoffDelay: PT0.01S, retryAfterMax: PT0S}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: capped, namespace: ns}}
spec:
  broker: b
  filter: {{attributes: {{type: capped}}}}
  subscriber: {{uri: "{}"}}
  delivery: {{retry: 1, backoffDelay: PT0.01S, retryAfterMax: PT0.5S}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: floored, namespace: ns}}
spec:
  broker: b
  filter: {{attributes: {{type: floored}}}}
  subscriber: {{uri: "{}"}}
  delivery: {{retry: 1, backoffDelay: PT0.3S, retryAfterMax: PT0.5S}}
"#,
        opted_out.url(),
        capped.url(),
        floored.url()
    );
    let server = start(&yaml).await;
    let url = server.broker_url("ns", "b");
    accept(&url, &event("c", "capped")).await;
    accept(&url, &event("f", "floored")).await;
    accept(&url, &event("o", "opted-out")).await;
    let c = capped.wait_for(2, DEADLINE).await;
    let f = floored.wait_for(2, DEADLINE).await;
    let o = opted_out.wait_for(2, DEADLINE).await;
    // retryAfterMax PT0S opts out of Retry-After altogether (Knative's DeliverySpec).
    let tiny = Duration::from_millis(10);
    assert_gap(
        o[1].at - o[0].at,
        tiny,
        tiny + TOLERANCE,
        "retryAfterMax PT0S ignores Retry-After",
    );
    assert_eq!(opted_out.ids(), ["o", "o"]);
    let half = Duration::from_millis(500);
    assert_gap(
        c[1].at - c[0].at,
        half,
        half + TOLERANCE * 2,
        "Retry-After 30 capped at 0.5s",
    );
    let backoff = Duration::from_millis(300);
    assert_gap(
        f[1].at - f[0].at,
        backoff,
        backoff + TOLERANCE,
        "Retry-After 0 under a 0.3s backoff",
    );
    assert_eq!(capped.ids(), ["c", "c"]);
    assert_eq!(floored.ids(), ["f", "f"]);
}

#[tokio::test]
async fn an_attempt_that_exceeds_the_timeout_fails_and_is_retried() {
    let sub = Subscriber::start().await;
    // Two attempts answer far too late; the third in time.
    sub.respond_with(|r, attempt| {
        if r.event().ty() == "fence" || attempt >= 3 {
            Answer::accepted()
        } else {
            Answer::accepted().delay(Duration::from_secs(2))
        }
    });
    let dls = Subscriber::start().await;
    let server = start_with(
        &one_trigger(
            &sub,
            &format!(
                "retry: 3, backoffPolicy: linear, backoffDelay: PT0.05S, timeout: PT0.2S, \
                 deadLetterSink: {{uri: \"{}\"}}",
                dls.url()
            ),
        ),
        sequential(),
    )
    .await;
    let url = server.broker_url("ns", "b");
    accept(&url, &event("slow", "t")).await;
    sub.wait_for(3, DEADLINE).await;
    // The fence is handled after "slow" is done, so its attempts are all in.
    let f = fence(&url, &sub).await;
    assert_eq!(sub.ids(), ["slow", "slow", "slow", f.as_str()]);
    let g = gaps(&sub.attempts("slow"));
    let timeout = Duration::from_millis(200);
    // The timeout runs from when the attempt is sent, a little before it arrives, so the gap
    // between arrivals may fall short of timeout + backoff by that request latency.
    let latency = Duration::from_millis(50);
    for (i, gap) in g.iter().enumerate() {
        let expected = timeout + Duration::from_millis(50) * (i as u32 + 1);
        assert_gap(
            *gap,
            expected - latency,
            expected + TOLERANCE,
            &format!("retry {}", i + 1),
        );
    }
    assert_eq!(dls.count(), 0, "delivered on the third attempt");
}

#[tokio::test]
async fn timeouts_on_every_attempt_dead_letter_without_a_status() {
    let sub = Subscriber::start().await;
    sub.respond_with(|_, _| Answer::accepted().delay(Duration::from_secs(2)));
    let dls = Subscriber::start().await;
    let server = start(&one_trigger(
        &sub,
        &format!(
            "retry: 1, backoffDelay: PT0.01S, timeout: PT0.2S, deadLetterSink: {{uri: \"{}\"}}",
            dls.url()
        ),
    ))
    .await;
    let started = std::time::Instant::now();
    accept(&server.broker_url("ns", "b"), &event("hang", "t")).await;
    let dead = dls.wait_for(1, DEADLINE).await;
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "attempts were not cut at the 0.2s timeout: {:?}",
        started.elapsed()
    );
    assert_eq!(sub.attempts("hang").len(), 2);
    let e = dead[0].event();
    assert_eq!(e.id(), "hang");
    assert_eq!(ext(e, "knativeerrordest"), Some(sub.url()));
    assert_eq!(ext(e, "knativeerrorcode"), None, "no response, no status");
    let data = String::from_utf8(decode_b64(&ext(e, "knativeerrordata").unwrap())).unwrap();
    assert!(!data.is_empty(), "knativeerrordata explains the failure");
}

#[tokio::test]
async fn dead_letter_event_carries_error_extensions_and_the_original_intact() {
    let sub = Subscriber::start().await;
    // A long, non-UTF-8 body: knativeerrordata carries its first 1024 bytes.
    let body: Vec<u8> = (0..2000u32).map(|i| (i % 256) as u8).collect();
    let answer = Answer::status(422).body(body.clone());
    sub.respond_with(move |_, _| answer.clone());
    let dls = Subscriber::start().await;
    let subscriber_url = sub.url_path("/orders/intake?tenant=t1");
    let yaml = format!(
        r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: b, namespace: ns}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: t, namespace: ns}}
spec:
  broker: b
  subscriber: {{uri: "{subscriber_url}"}}
  delivery:
    retry: 3
    backoffDelay: PT0.01S
    deadLetterSink: {{uri: "{}"}}
"#,
        dls.url_path("/dead")
    );
    let server = start(&yaml).await;
    let original = EventBuilderV10::new()
        .id("doomed")
        .source("/shop/checkout")
        .ty("com.example.order.created")
        .subject("order-42")
        .time("2024-05-01T12:30:00Z")
        .extension("region", "eu")
        .extension("tenant", "t1")
        .data(
            "application/json",
            serde_json::json!({"order": 42, "total": 99.5}),
        )
        .build()
        .unwrap();
    accept(&server.broker_url("ns", "b"), &original).await;
    let dead = dls.wait_for(1, DEADLINE).await;
    assert_eq!(sub.attempts("doomed").len(), 1, "422 is not retried");
    assert_eq!(sub.received()[0].path, "/orders/intake");
    assert_eq!(dead[0].path, "/dead");
    let e = dead[0].event();

    assert_eq!(ext(e, "knativeerrordest"), Some(subscriber_url));
    assert_eq!(ext(e, "knativeerrorcode").as_deref(), Some("422"));
    let data = ext(e, "knativeerrordata").unwrap();
    assert_eq!(data, b64(&body[..1024]));

    // Everything else is the original event, unchanged.
    let mut stripped = e.clone();
    for x in ["knativeerrordest", "knativeerrorcode", "knativeerrordata"] {
        stripped.remove_extension(x);
    }
    assert_same_event(&stripped, &original);
    assert_eq!(
        e.iter_extensions().count(),
        5,
        "region, tenant and the three error extensions"
    );
    assert_eq!(dls.count(), 1);
}

#[tokio::test]
async fn an_event_whose_subscriber_and_dead_letter_sink_both_fail_does_not_wedge_the_trigger() {
    let sub = Subscriber::start().await;
    sub.respond_with(|r, _| match r.id().as_str() {
        "poison" => Answer::status(500),
        _ => Answer::accepted(),
    });
    let dls = Subscriber::start().await;
    dls.respond_with(|_, _| Answer::status(500));
    // One delivery at a time: a wedged event would block everything behind it.
    let server = start_with(
        &one_trigger(
            &sub,
            &format!(
                "retry: 1, backoffDelay: PT0.01S, deadLetterSink: {{uri: \"{}\"}}",
                dls.url()
            ),
        ),
        sequential(),
    )
    .await;
    let url = server.broker_url("ns", "b");
    accept(&url, &event("poison", "t")).await;
    accept(&url, &event("ok-1", "t")).await;
    accept(&url, &event("ok-2", "t")).await;
    sub.wait_for_id("ok-2", DEADLINE).await;
    assert_eq!(sub.ids(), ["poison", "poison", "ok-1", "ok-2"]);
    // The dead-letter sink got the same retries, before the Trigger moved on.
    assert_eq!(dls.ids(), ["poison", "poison"]);
    // And the Trigger keeps flowing afterwards.
    accept(&url, &event("ok-3", "t")).await;
    sub.wait_for_id("ok-3", DEADLINE).await;
    assert_eq!(sub.ids(), ["poison", "poison", "ok-1", "ok-2", "ok-3"]);
    assert_eq!(dls.count(), 2);
}

#[tokio::test]
async fn trigger_delivery_replaces_the_broker_delivery() {
    let own = Subscriber::start().await;
    own.respond_with(|_, _| Answer::status(500));
    let inherited = Subscriber::start().await;
    inherited.respond_with(|_, _| Answer::status(500));
    let broker_dls = Subscriber::start().await;
    let trigger_dls = Subscriber::start().await;
    let yaml = format!(
        r#"
apiVersion: eventing.knative.dev/v1
kind: Broker
metadata: {{name: b, namespace: ns}}
spec:
  delivery:
    retry: 0
    deadLetterSink: {{uri: "{}"}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: own, namespace: ns}}
spec:
  broker: b
  filter: {{attributes: {{type: own}}}}
  subscriber: {{uri: "{}"}}
  delivery:
    retry: 2
    backoffDelay: PT0.01S
    deadLetterSink: {{uri: "{}"}}
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: inherited, namespace: ns}}
spec:
  broker: b
  filter: {{attributes: {{type: inherited}}}}
  subscriber: {{uri: "{}"}}
"#,
        broker_dls.url(),
        own.url(),
        trigger_dls.url(),
        inherited.url()
    );
    let server = start(&yaml).await;
    let url = server.broker_url("ns", "b");
    accept(&url, &event("o", "own")).await;
    accept(&url, &event("i", "inherited")).await;
    trigger_dls.wait_for_id("o", DEADLINE).await;
    broker_dls.wait_for_id("i", DEADLINE).await;
    // Each event is dead-lettered once, to its own delivery's sink, after its own retries.
    assert_eq!(own.ids(), ["o", "o", "o"]);
    assert_eq!(inherited.ids(), ["i"]);
    assert_eq!(trigger_dls.ids(), ["o"]);
    assert_eq!(broker_dls.ids(), ["i"]);
}
