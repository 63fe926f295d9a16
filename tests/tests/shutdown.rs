//! Graceful shutdown: `RunningServer::shutdown` stops the ingress, delivers every event it had
//! accepted (and the replies those deliveries produce), then stops; the port is closed
//! afterwards; and the drain timeout bounds how long it waits for stuck deliveries.

mod common;

use common::*;
use herald_broker::serve::ServeConfig;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// A Trigger on `ns/b`; `filter` is a line of spec YAML (or empty), `delivery` a flow mapping.
fn trigger_yaml(name: &str, filter: &str, uri: &str, delivery: &str) -> String {
    format!(
        r#"
---
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {{name: {name}, namespace: ns}}
spec:
  broker: b
  {filter}
  subscriber: {{uri: "{uri}"}}
  delivery: {{{delivery}}}
"#
    )
}

const BROKER: &str =
    "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata: {name: b, namespace: ns}\n";

async fn assert_port_closed(addr: std::net::SocketAddr) {
    match tokio::net::TcpStream::connect(addr).await {
        Err(e) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "connecting to {addr} after shutdown: {e}"
        ),
        Ok(_) => panic!("{addr} still accepts connections after shutdown"),
    }
}

#[tokio::test]
async fn shutdown_delivers_every_accepted_event_before_returning() {
    const N: usize = 8;
    let slow_a = Subscriber::start().await;
    let slow_b = Subscriber::start().await;
    for s in [&slow_a, &slow_b] {
        s.respond_with(|_, _| Answer::accepted().delay(Duration::from_millis(200)));
    }
    let yaml = format!(
        "{BROKER}{}{}",
        trigger_yaml("a", "", &slow_a.url(), "retry: 0"),
        trigger_yaml("b", "", &slow_b.url(), "retry: 0")
    );
    let server = start_with(
        &yaml,
        ServeConfig {
            max_in_flight: 2,
            ..config()
        },
    )
    .await;
    let url = server.broker_url("ns", "b");
    let addr = server.addr;
    // One client for every send, so an idle keep-alive connection is open during shutdown.
    let client = reqwest::Client::new();
    let mut sent = BTreeSet::new();
    for i in 0..N {
        let id = format!("e{i}");
        let response = cloudevents::binding::reqwest::RequestBuilderExt::event(
            client.post(url.clone()),
            rich_event(&id, "t", &[("seq", &i.to_string())]),
        )
        .unwrap()
        .send()
        .await
        .unwrap();
        assert_eq!(response.status().as_u16(), 202);
        sent.insert(id);
    }
    // At most two per Trigger are in flight, at 200 ms each: most are still in the channel.
    assert!(
        slow_a.count() < N,
        "the test needs events still queued at shutdown"
    );

    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(8), server.shutdown())
        .await
        .expect("shutdown did not return");
    let took = started.elapsed();

    for (name, s) in [("a", &slow_a), ("b", &slow_b)] {
        let ids: Vec<String> = s.ids();
        let unique: BTreeSet<String> = ids.iter().cloned().collect();
        assert_eq!(unique, sent, "Trigger {name} lost accepted events");
        assert_eq!(ids.len(), N, "Trigger {name}: each event once: {ids:?}");
        for r in s.received() {
            let seq = ext(r.event(), "seq").unwrap();
            assert_eq!(r.id(), format!("e{seq}"), "event intact");
        }
    }
    // N events, two at a time, 200 ms each: shutdown really waited for them.
    assert!(
        took >= Duration::from_millis(200) * (N as u32 / 2 - 1),
        "shutdown returned after {took:?}, too soon to have delivered everything"
    );
    assert_port_closed(addr).await;
    let after = client.post(url).body("x").send().await;
    assert!(
        after.is_err(),
        "ingress still answers after shutdown: {after:?}"
    );
}

#[tokio::test]
async fn replies_produced_while_draining_are_delivered_too() {
    const N: usize = 5;
    let callable = Subscriber::start().await;
    callable.respond_with(|r, _| {
        let reply = event(&format!("reply-{}", r.id()), "reply");
        Answer::reply(reply).delay(Duration::from_millis(100))
    });
    let audit = Subscriber::start().await;
    let yaml = format!(
        "{BROKER}{}{}",
        trigger_yaml(
            "callable",
            "filter: {attributes: {type: request}}",
            &callable.url(),
            "retry: 0"
        ),
        trigger_yaml(
            "audit",
            "filter: {attributes: {type: reply}}",
            &audit.url(),
            "retry: 0"
        )
    );
    let server = start_with(
        &yaml,
        ServeConfig {
            max_in_flight: 1,
            ..config()
        },
    )
    .await;
    let url = server.broker_url("ns", "b");
    for i in 0..N {
        accept(&url, &event(&format!("q{i}"), "request")).await;
    }
    tokio::time::timeout(Duration::from_secs(8), server.shutdown())
        .await
        .expect("shutdown did not return");
    let want: Vec<String> = (0..N).map(|i| format!("q{i}")).collect();
    assert_eq!(callable.ids(), want);
    let replies: Vec<String> = (0..N).map(|i| format!("reply-q{i}")).collect();
    assert_eq!(
        audit.ids(),
        replies,
        "every reply published during the drain was delivered"
    );
}

#[tokio::test]
async fn an_idle_server_shuts_down_promptly_and_closes_its_port() {
    let sub = Subscriber::start().await;
    let yaml = format!("{BROKER}{}", trigger_yaml("t", "", &sub.url(), "retry: 0"));
    let server = start(&yaml).await;
    let url = server.broker_url("ns", "b");
    accept(&url, &event("one", "t")).await;
    sub.wait_for(1, DEADLINE).await;
    let addr = server.addr;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), server.shutdown())
        .await
        .expect("shutdown did not return");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_port_closed(addr).await;
    assert_eq!(sub.ids(), ["one"]);
}

/// A delivery stuck far longer than the drain timeout, with `max_in_flight` deliveries allowed
/// per Trigger; shutdown must still return soon after the drain timeout.
async fn shutdown_with_a_stuck_delivery(max_in_flight: usize) -> Duration {
    let stuck = Subscriber::start().await;
    stuck.respond_with(|_, _| Answer::accepted().delay(Duration::from_secs(6)));
    // The per-attempt timeout is far beyond the drain timeout.
    let yaml = format!(
        "{BROKER}{}",
        trigger_yaml("t", "", &stuck.url(), "retry: 0, timeout: PT10S")
    );
    let server = start_with(
        &yaml,
        ServeConfig {
            max_in_flight,
            drain_timeout: Duration::from_millis(300),
            ..config()
        },
    )
    .await;
    accept(&server.broker_url("ns", "b"), &event("stuck", "t")).await;
    stuck.wait_for(1, DEADLINE).await;
    let started = Instant::now();
    let done = tokio::time::timeout(Duration::from_secs(3), server.shutdown()).await;
    let took = started.elapsed();
    assert!(
        done.is_ok(),
        "shutdown with drain_timeout 300ms and max_in_flight {max_in_flight} had not returned \
         after {took:?}: it waits for the stuck delivery"
    );
    took
}

#[tokio::test]
async fn shutdown_abandons_a_stuck_delivery_after_the_drain_timeout() {
    let took = shutdown_with_a_stuck_delivery(4).await;
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
        "{took:?}"
    );
}

/// Same, when the stuck delivery holds every delivery slot of its Trigger (max_in_flight 1).
#[tokio::test]
async fn shutdown_abandons_a_stuck_delivery_after_the_drain_timeout_even_with_all_slots_busy() {
    let took = shutdown_with_a_stuck_delivery(1).await;
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_millis(1500),
        "{took:?}"
    );
}
