//! The live routing plane in one process (memory channel): resources applied, changed and
//! deleted while events flow, and the status each resource reports on the way.

mod common;

use common::*;
use herald_broker::plane::{Applied, ApplyError};
use herald_core::{Kind, ResourceKey};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(20);

fn trigger(name: &str, broker: &str, filter_type: &str, subscriber: &str) -> String {
    format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: {name}, namespace: ns}}\n\
         spec:\n  broker: {broker}\n  filter: {{attributes: {{type: {filter_type}}}}}\n  subscriber: {{uri: \"{subscriber}\"}}\n"
    )
}

async fn apply(server: &herald_broker::RunningServer, yaml: &str) -> Result<Applied, ApplyError> {
    apply_yaml(server, yaml).await
}

/// The Ready condition of a resource: (status, reason).
async fn ready(server: &herald_broker::RunningServer, kind: Kind, name: &str) -> (String, String) {
    let ready = condition_of(server, kind, name, "Ready").await;
    (
        ready["status"].as_str().unwrap_or("").to_string(),
        ready["reason"].as_str().unwrap_or("").to_string(),
    )
}

async fn condition(
    server: &herald_broker::RunningServer,
    name: &str,
    kind: &str,
) -> serde_json::Value {
    condition_of(server, Kind::Trigger, name, kind).await
}

#[tokio::test]
async fn a_trigger_waits_for_its_broker_and_its_subscriber_ref_then_becomes_ready() {
    let sub = Subscriber::start().await;
    let server = start_with("", sequential()).await;

    // The Trigger first: its Broker does not exist.
    assert_eq!(
        apply(&server, &trigger("t", "b", "x", &sub.url()))
            .await
            .unwrap(),
        Applied::Created
    );
    assert_eq!(
        ready(&server, Kind::Trigger, "t").await,
        ("False".into(), "BrokerDoesNotExist".into())
    );
    let health = server.plane().health().await;
    assert!(
        health
            .not_ready
            .iter()
            .any(|n| n.name == "ns/t" && n.reason == "BrokerDoesNotExist"),
        "{health:?}"
    );
    apply(&server, &broker("ns", "b", "")).await.unwrap();
    assert_eq!(ready(&server, Kind::Trigger, "t").await.0, "True");
    assert_eq!(ready(&server, Kind::Broker, "b").await.0, "True");
    let url = server.broker_url("ns", "b");
    accept(&url, &event("1", "x")).await;
    sub.wait_for_id("1", DEADLINE).await;

    // A subscriber ref to a Broker that does not exist yet.
    let by_ref = "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: fwd, namespace: ns}\n\
                  spec:\n  broker: b\n  filter: {attributes: {type: fwd}}\n  subscriber:\n    ref: {apiVersion: eventing.knative.dev/v1, kind: Broker, name: later}\n";
    apply(&server, by_ref).await.unwrap();
    let resolved = condition(&server, "fwd", "SubscriberResolved").await;
    assert_eq!(resolved["status"], "False", "{resolved}");
    assert_eq!(resolved["reason"], "ResolveFailed", "{resolved}");
    assert!(
        resolved["message"].as_str().unwrap().contains("ns/later"),
        "{resolved}"
    );
    apply(&server, &broker("ns", "later", "")).await.unwrap();
    assert_eq!(ready(&server, Kind::Trigger, "fwd").await.0, "True");
    server.shutdown().await;
}

#[tokio::test]
async fn triggers_added_changed_and_removed_at_runtime_deliver_exactly_what_they_should() {
    let one = Subscriber::start().await;
    let two = Subscriber::start().await;
    let server = start_with(&broker("ns", "b", ""), sequential()).await;
    let url = server.broker_url("ns", "b");
    apply(&server, &trigger("t1", "b", "a", &one.url()))
        .await
        .unwrap();

    // Accepted before T2 exists: T2 never sees it (a new Trigger starts at the head).
    accept(&url, &event("before-t2", "a")).await;
    one.wait_for_id("before-t2", DEADLINE).await;
    apply(&server, &trigger("t2", "b", "a", &two.url()))
        .await
        .unwrap();
    accept(&url, &event("after-t2", "a")).await;
    two.wait_for_id("after-t2", DEADLINE).await;
    one.wait_for_id("after-t2", DEADLINE).await;
    assert_eq!(two.ids(), vec!["after-t2"]);

    // Change T1's filter: the generation moves, nothing already delivered comes again.
    assert_eq!(
        apply(&server, &trigger("t1", "b", "b", &one.url()))
            .await
            .unwrap(),
        Applied::Configured
    );
    assert_eq!(
        apply(&server, &trigger("t1", "b", "b", &one.url()))
            .await
            .unwrap(),
        Applied::Unchanged
    );
    let view = server
        .plane()
        .get(Kind::Trigger, &ResourceKey::new("ns", "t1"))
        .await
        .unwrap();
    assert_eq!(view.object["metadata"]["generation"], 2);
    assert_eq!(view.object["status"]["observedGeneration"], 2);
    accept(&url, &event("type-a", "a")).await;
    accept(&url, &event("type-b", "b")).await;
    one.wait_for_id("type-b", DEADLINE).await;
    two.wait_for_id("type-a", DEADLINE).await;
    assert_eq!(one.ids(), vec!["before-t2", "after-t2", "type-b"]);

    // Remove T2: nothing reaches it afterwards.
    server
        .plane()
        .delete(Kind::Trigger, &ResourceKey::new("ns", "t2"))
        .await
        .unwrap();
    assert!(matches!(
        server
            .plane()
            .delete(Kind::Trigger, &ResourceKey::new("ns", "t2"))
            .await,
        Err(ApplyError::NotFound { .. })
    ));
    accept(&url, &event("after-removal", "a")).await;
    accept(&url, &event("after-removal-b", "b")).await;
    one.wait_for_id("after-removal-b", DEADLINE).await;
    assert_eq!(two.ids(), vec!["after-t2", "type-a"]);
    server.shutdown().await;
}

#[tokio::test]
async fn an_invalid_apply_is_refused_with_its_field_and_the_running_trigger_stays() {
    let sub = Subscriber::start().await;
    let server = start_with(&broker("ns", "b", ""), sequential()).await;
    let url = server.broker_url("ns", "b");
    apply(&server, &trigger("t", "b", "a", &sub.url()))
        .await
        .unwrap();
    let bad = format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: t, namespace: ns}}\n\
         spec:\n  broker: b\n  filters: [{{cesql: \"type = \"}}]\n  subscriber: {{uri: \"{}\"}}\n",
        sub.url()
    );
    match apply(&server, &bad).await {
        Err(e @ ApplyError::Invalid { .. }) => {
            assert!(e.to_string().contains("spec.filters"), "{e}")
        }
        other => panic!("invalid CESQL applied: {other:?}"),
    }
    let view = server
        .plane()
        .get(Kind::Trigger, &ResourceKey::new("ns", "t"))
        .await
        .unwrap();
    assert_eq!(view.object["metadata"]["generation"], 1);
    accept(&url, &event("still-a", "a")).await;
    sub.wait_for_id("still-a", DEADLINE).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_deleted_broker_refuses_at_once_its_trigger_drains_and_it_comes_back_whole() {
    let sub = Subscriber::start().await;
    sub.hold();
    let server = start_with(&broker("ns", "b", ""), sequential()).await;
    let url = server.broker_url("ns", "b");
    apply(&server, &trigger("t", "b", "a", &sub.url()))
        .await
        .unwrap();
    for i in 0..5 {
        accept(&url, &event(&format!("held-{i}"), "a")).await;
    }
    server
        .plane()
        .delete(Kind::Broker, &ResourceKey::new("ns", "b"))
        .await
        .unwrap();
    assert_eq!(send_binary(&url, &event("refused", "a")).await.status, 404);
    assert_eq!(
        ready(&server, Kind::Trigger, "t").await,
        ("False".into(), "BrokerDoesNotExist".into())
    );
    // What was accepted before the deletion still reaches the Trigger.
    sub.release();
    sub.wait_for_id("held-4", DEADLINE).await;
    apply(&server, &broker("ns", "b", "")).await.unwrap();
    accept(&url, &event("back", "a")).await;
    sub.wait_for_id("back", DEADLINE).await;
    let mut ids = sub.ids();
    ids.dedup();
    assert_eq!(
        ids,
        vec!["held-0", "held-1", "held-2", "held-3", "held-4", "back"]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_cesql_call_to_an_unknown_function_makes_the_trigger_not_ready_and_is_reported() {
    let sub = Subscriber::start().await;
    let yaml = format!(
        "{}---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: t, namespace: ns}}\n\
         spec:\n  broker: b\n  filters: [{{cesql: \"NOSUCHFN(type) = 1\"}}]\n  subscriber: {{uri: \"{}\"}}\n",
        broker("ns", "b", ""),
        sub.url()
    );
    let resources = herald_core::load_str(std::path::Path::new("triggers.yaml"), &yaml).unwrap();
    let server = herald_broker::serve::start(&resources, config())
        .await
        .unwrap();
    let filter = condition(&server, "t", "FilterReady").await;
    assert_eq!(filter["status"], "False", "{filter}");
    assert_eq!(filter["reason"], "UnknownFunction");
    assert!(
        filter["message"].as_str().unwrap().contains("NOSUCHFN/1"),
        "{filter}"
    );
    assert!(
        server
            .warnings
            .iter()
            .any(|w| w.contains("triggers.yaml") && w.contains("NOSUCHFN")),
        "{:?}",
        server.warnings
    );
    server.shutdown().await;
}
