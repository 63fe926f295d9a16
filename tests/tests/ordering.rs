//! Ordered delivery (`kafka.eventing.knative.dev/delivery.order: ordered`): per
//! `partitionkey` in order, different keys in parallel; unknown values refuse to start.

mod common;

use common::*;
use herald_broker::serve::ServeError;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

fn yaml(sub: &Subscriber, order: &str) -> String {
    format!(
        "{}---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: t\n  namespace: ns\n  \
         annotations:\n    kafka.eventing.knative.dev/delivery.order: {order}\n\
         spec:\n  broker: b\n  subscriber:\n    uri: {}\n",
        broker("ns", "b", ""),
        sub.url()
    )
}

#[tokio::test]
async fn ordered_trigger_keeps_each_keys_order_while_keys_run_in_parallel() {
    let sub = Subscriber::start().await;
    // Later events of a key answer faster, so any reordering within a key would show.
    sub.respond_with(|r, _| {
        let seq: u64 = ext(r.event(), "seq")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Answer::accepted().delay(Duration::from_millis(20u64.saturating_sub(seq)))
    });
    let server = start(&yaml(&sub, "ordered")).await;
    let url = server.broker_url("ns", "b");
    let (keys, per_key) = (6, 20);
    let mut sends = Vec::new();
    for seq in 0..per_key {
        for key in 0..keys {
            let e = rich_event(
                &format!("k{key}-{seq}"),
                "t",
                &[
                    ("partitionkey", &format!("k{key}")),
                    ("seq", &seq.to_string()),
                ],
            );
            sends.push(async move { e });
        }
    }
    for e in futures::future::join_all(sends).await {
        assert_eq!(send_binary(&url, &e).await.status, 202);
    }
    let received = sub.wait_for(keys * per_key, Duration::from_secs(20)).await;
    let mut by_key: HashMap<String, Vec<u64>> = HashMap::new();
    for r in &received {
        let key = ext(r.event(), "partitionkey").unwrap();
        by_key
            .entry(key)
            .or_default()
            .push(ext(r.event(), "seq").unwrap().parse().unwrap());
    }
    for (key, seqs) in &by_key {
        let sorted: Vec<u64> = (0..per_key as u64).collect();
        assert_eq!(seqs, &sorted, "key {key} arrived out of order");
    }
    // Keys interleave: the first key did not finish before another started.
    let first_key_done = received
        .iter()
        .rposition(|r| ext(r.event(), "partitionkey").as_deref() == Some("k0"))
        .unwrap();
    let other_started = received
        .iter()
        .position(|r| ext(r.event(), "partitionkey").as_deref() != Some("k0"))
        .unwrap();
    assert!(
        other_started < first_key_done,
        "keys were delivered one after another, not in parallel"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn an_unknown_delivery_order_refuses_to_start() {
    let sub = Subscriber::start().await;
    let resources = herald_core::load_str(Path::new("t.yaml"), &yaml(&sub, "sorted")).unwrap();
    match herald_broker::serve::start(&resources, config()).await {
        Err(e @ ServeError::Config(_)) => assert!(e.to_string().contains("\"sorted\""), "{e}"),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("started with an invalid delivery order"),
    }
}
