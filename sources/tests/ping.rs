//! PingSource runs with an injected clock (ticks, payloads, catch-up after a restart), one
//! wall-clock run bounded by a deadline, and two replicas on real NATS emitting each tick
//! once.

mod common;

use chrono::{DateTime, Utc};
use common::{nats_up, resource, run, unique, TestSink};
use herald_sources::{ManualClock, SourceEnv};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn time(r: &common::Received) -> DateTime<Utc> {
    utc(r.header("ce-time").expect("a time"))
}

fn ping(name: &str, schedule: &str, payload: &str) -> herald_core::Resource {
    resource(&format!(
        "apiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {{name: {name}, namespace: ns}}\n\
         spec:\n  schedule: \"{schedule}\"\n{payload}  sink: {{uri: \"http://127.0.0.1:9/\"}}\n"
    ))
}

fn env(clock: Arc<ManualClock>) -> SourceEnv {
    SourceEnv {
        clock,
        ..Default::default()
    }
}

#[tokio::test]
async fn ticks_on_schedule_with_text_and_base64_payloads() {
    let mut sink = TestSink::start().await;
    let clock = Arc::new(ManualClock::new(utc("2026-01-01T00:01:00Z")));
    let text = ping(
        "text",
        "*/10 * * * *",
        "  contentType: application/json\n  data: '{\"message\": \"Hello world!\"}'\n",
    );
    let bytes = ping("bytes", "*/10 * * * *", "  dataBase64: AAEC/w==\n");
    let env = Arc::new(env(clock.clone()));
    let a = run(text, &sink.url, env.clone());
    let b = run(bytes, &sink.url, env);
    clock.sleepers(2).await;
    clock.set(utc("2026-01-01T00:10:00Z"));
    let mut got = [sink.next(WAIT).await, sink.next(WAIT).await];
    got.sort_by_key(|r| r.header("ce-source").unwrap_or_default().to_string());
    let (bytes_ev, text_ev) = (&got[0], &got[1]);
    assert_eq!(text_ev.header("ce-type"), Some("dev.knative.sources.ping"));
    assert_eq!(
        text_ev.header("ce-source"),
        Some("/apis/v1/namespaces/ns/pingsources/text")
    );
    assert_eq!(time(text_ev), utc("2026-01-01T00:10:00Z"));
    assert_eq!(text_ev.header("content-type"), Some("application/json"));
    assert_eq!(&text_ev.body[..], br#"{"message": "Hello world!"}"#);
    assert_eq!(&bytes_ev.body[..], &[0u8, 1, 2, 255]);
    assert_eq!(
        bytes_ev.header("content-type"),
        Some("application/octet-stream")
    );
    // Nothing more until the next tick.
    clock.sleepers(2).await;
    assert!(sink.try_next().is_none());
    clock.set(utc("2026-01-01T00:20:00Z"));
    sink.next(WAIT).await;
    sink.next(WAIT).await;
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_tick_missed_while_stopped_is_emitted_once_on_start_within_the_window() {
    let mut sink = TestSink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(utc("2026-01-01T00:05:00Z")));
    let env = Arc::new(SourceEnv {
        state_dir: Some(dir.path().to_path_buf()),
        ping_catch_up: Duration::from_secs(3600),
        ..env(clock.clone())
    });
    let source = ping("beat", "*/10 * * * *", "");
    let r = run(source.clone(), &sink.url, env.clone());
    clock.sleepers(1).await;
    clock.set(utc("2026-01-01T00:10:00Z"));
    assert_eq!(time(&sink.next(WAIT).await), utc("2026-01-01T00:10:00Z"));
    clock.sleepers(1).await;
    r.stop().await;
    // Down across 00:20 and 00:30: only the latest missed tick, 00:30, is emitted, once.
    clock.set(utc("2026-01-01T00:34:00Z"));
    let r = run(source.clone(), &sink.url, env.clone());
    assert_eq!(time(&sink.next(WAIT).await), utc("2026-01-01T00:30:00Z"));
    clock.sleepers(1).await;
    r.stop().await;
    // A restart with nothing missed emits nothing.
    let r = run(source.clone(), &sink.url, env.clone());
    clock.sleepers(1).await;
    r.stop().await;
    assert!(sink.try_next().is_none());
    // Down longer than the window: the missed tick is too old and skipped.
    clock.set(utc("2026-01-01T02:45:00Z"));
    let short = Arc::new(SourceEnv {
        ping_catch_up: Duration::from_secs(60),
        ..(*env).clone()
    });
    let r = run(source, &sink.url, short);
    clock.sleepers(1).await;
    assert!(sink.try_next().is_none());
    clock.set(utc("2026-01-01T02:50:00Z"));
    assert_eq!(time(&sink.next(WAIT).await), utc("2026-01-01T02:50:00Z"));
    r.stop().await;
}

#[tokio::test]
async fn ticks_in_berlin_across_spring_forward_are_neither_missed_nor_doubled() {
    let mut sink = TestSink::start().await;
    // 2026-03-29 02:00 CET becomes 03:00 CEST: 02:30 does not exist that day.
    let clock = Arc::new(ManualClock::new(utc("2026-03-28T12:00:00Z")));
    let source = resource(
        "apiVersion: sources.knative.dev/v1\nkind: PingSource\nmetadata: {name: nightly, namespace: ns}\n\
         spec:\n  schedule: \"30 2 * * *\"\n  timezone: Europe/Berlin\n  sink: {uri: \"http://127.0.0.1:9/\"}\n",
    );
    let r = run(source, &sink.url, Arc::new(env(clock.clone())));
    let mut times = Vec::new();
    for day_end in ["2026-03-29T12:00:00Z", "2026-03-30T12:00:00Z"] {
        clock.sleepers(1).await;
        clock.set(utc(day_end));
        times.push(time(&sink.next(WAIT).await));
        clock.sleepers(1).await;
        assert!(
            sink.try_next().is_none(),
            "a second tick the same day: {times:?}"
        );
    }
    // The 29th's tick came once, after the change (03:00 CEST is 01:00Z) and before the 30th's.
    assert!(
        times[0] >= utc("2026-03-29T01:00:00Z") && times[0] < utc("2026-03-29T02:00:00Z"),
        "{times:?}"
    );
    assert_eq!(times[1], utc("2026-03-30T00:30:00Z"));
    r.stop().await;
}

#[tokio::test]
async fn a_real_clock_every_second_ticks_within_a_deadline() {
    let mut sink = TestSink::start().await;
    let r = run(
        ping("wall", "@every 1s", "  data: tick\n"),
        &sink.url,
        Arc::new(SourceEnv::default()),
    );
    let a = sink.next(WAIT).await;
    let b = sink.next(WAIT).await;
    assert_ne!(a.header("ce-time"), b.header("ce-time"));
    assert_eq!(&a.body[..], b"tick");
    r.stop().await;
}

/// Two replicas share NATS: JetStream's de-duplication by Nats-Msg-Id lets exactly one of
/// them emit each tick.
#[tokio::test]
async fn two_replicas_on_nats_emit_each_tick_once() {
    if !nats_up().await {
        return;
    }
    let mut sink = TestSink::start().await;
    let clock = Arc::new(ManualClock::new(utc("2026-01-01T00:01:00Z")));
    let env = Arc::new(SourceEnv {
        nats_url: Some("nats://127.0.0.1:4222".into()),
        shared_ticks: true,
        ..env(clock.clone())
    });
    let source = ping(&unique("replicated"), "*/10 * * * *", "");
    let mut a = run(source.clone(), &sink.url, env.clone());
    let mut b = run(source, &sink.url, env);
    a.until_ok(WAIT).await;
    b.until_ok(WAIT).await;
    for tick in [
        "2026-01-01T00:10:00Z",
        "2026-01-01T00:20:00Z",
        "2026-01-01T00:30:00Z",
    ] {
        clock.sleepers(2).await;
        clock.set(utc(tick));
        assert_eq!(time(&sink.next(WAIT).await), utc(tick));
        // Both replicas are waiting for the next tick again: each has handled this one.
        tokio::task::yield_now().await;
        clock.sleepers(2).await;
        assert!(sink.try_next().is_none(), "tick {tick} emitted twice");
    }
    a.stop().await;
    b.stop().await;
}
