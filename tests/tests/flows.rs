//! Channels and Subscriptions, Sequences and Parallels end to end (memory channel): fan-out,
//! reply routing to every destination kind, transforming pipelines, filtered branches, and
//! flows applied and deleted at runtime.

mod common;

use cloudevents::{AttributesReader, AttributesWriter, Event, EventBuilder};
use common::*;
use herald_core::{Kind, ResourceKey};
use url::Url;

fn channel_url(server: &herald_broker::RunningServer, ns: &str, name: &str) -> Url {
    server
        .url()
        .join(&format!("/channels/{ns}/{name}"))
        .unwrap()
}

async fn apply(server: &herald_broker::RunningServer, yaml: &str) {
    apply_yaml(server, yaml)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

async fn ready(server: &herald_broker::RunningServer, kind: Kind, name: &str) -> serde_json::Value {
    condition_of(server, kind, name, "Ready").await
}

const CHANNEL: &str =
    "apiVersion: messaging.knative.dev/v1\nkind: Channel\nmetadata: {name: work, namespace: ns}\n\
     spec:\n  channelTemplate: {apiVersion: messaging.knative.dev/v1, kind: InMemoryChannel}\n";

fn subscription(name: &str, subscriber: &str, extra: &str) -> String {
    format!(
        "apiVersion: messaging.knative.dev/v1\nkind: Subscription\nmetadata: {{name: {name}, namespace: ns}}\n\
         spec:\n  channel: {{apiVersion: messaging.knative.dev/v1, kind: Channel, name: work}}\n  \
         subscriber: {{uri: \"{subscriber}\"}}\n{extra}"
    )
}

/// The event `e` with `step` appended to its `steps` extension: what each transforming step
/// of the tests replies with.
fn transformed(e: &Event, step: &str) -> Event {
    let mut out = e.clone();
    let before = ext(e, "steps").unwrap_or_default();
    out.set_extension("steps", format!("{before}{step}"));
    out.set_id(format!("{}-{step}", e.id()));
    out
}

#[tokio::test]
async fn a_channel_fans_out_to_every_subscription_and_a_failing_one_is_retried_then_dead_lettered()
{
    let (a, b, failing, dls) = (
        Subscriber::start().await,
        Subscriber::start().await,
        Subscriber::start().await,
        Subscriber::start().await,
    );
    failing.respond_with(|_, _| Answer::status(500));
    let server = start_with("", config()).await;
    apply(&server, CHANNEL).await;
    apply(&server, &subscription("a", &a.url(), "")).await;
    apply(&server, &subscription("b", &b.url(), "")).await;
    apply(
        &server,
        &subscription(
            "failing",
            &failing.url(),
            &format!(
                "  delivery: {{retry: 2, backoffDelay: PT0.01S, deadLetterSink: {{uri: \"{}\"}}}}\n",
                dls.url()
            ),
        ),
    )
    .await;
    assert_eq!(
        ready(&server, Kind::Subscription, "failing").await["status"],
        "True"
    );
    let url = channel_url(&server, "ns", "work");
    for i in 0..20 {
        accept(&url, &event(&format!("e{i}"), "work")).await;
    }
    a.wait_for(20, DEADLINE).await;
    b.wait_for(20, DEADLINE).await;
    dls.wait_for(20, DEADLINE).await;
    // 1 attempt + 2 retries each, then the dead letter.
    failing.wait_for(60, DEADLINE).await;
    for sub in [&a, &b, &dls] {
        let mut ids = sub.ids();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 20);
    }
    a.assert_no_more(20, std::time::Duration::from_millis(200), "each event once")
        .await;
    assert_eq!(failing.count(), 60);
    let dead = dls.events();
    assert_eq!(ext(&dead[0], "knativeerrorcode").as_deref(), Some("500"));
    server.shutdown().await;
}

#[tokio::test]
async fn subscription_replies_go_to_a_broker_a_channel_or_a_uri() {
    let (callable, via_broker, via_channel, via_uri) = (
        Subscriber::start().await,
        Subscriber::start().await,
        Subscriber::start().await,
        Subscriber::start().await,
    );
    callable.respond_with(|r, _| Answer::reply(transformed(r.event(), "replied")));
    let server = start_with(&broker("ns", "b", ""), config()).await;
    apply(
        &server,
        &format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: audit, namespace: ns}}\n\
             spec:\n  broker: b\n  subscriber: {{uri: \"{}\"}}\n",
            via_broker.url()
        ),
    )
    .await;
    apply(&server, CHANNEL).await;
    apply(
        &server,
        "apiVersion: messaging.knative.dev/v1\nkind: Channel\nmetadata: {name: results, namespace: ns}\n",
    )
    .await;
    apply(
        &server,
        &format!(
            "apiVersion: messaging.knative.dev/v1\nkind: Subscription\nmetadata: {{name: results-out, namespace: ns}}\n\
             spec:\n  channel: {{apiVersion: messaging.knative.dev/v1, kind: Channel, name: results}}\n  \
             subscriber: {{uri: \"{}\"}}\n",
            via_channel.url()
        ),
    )
    .await;
    let reply_to = |kind: &str, target: &str| {
        match kind {
        "uri" => format!("  reply: {{uri: \"{target}\"}}\n"),
        "Broker" => format!("  reply: {{ref: {{apiVersion: eventing.knative.dev/v1, kind: Broker, name: {target}}}}}\n"),
        _ => format!("  reply: {{ref: {{apiVersion: messaging.knative.dev/v1, kind: InMemoryChannel, name: {target}}}}}\n"),
    }
    };
    apply(
        &server,
        &subscription("to-broker", &callable.url(), &reply_to("Broker", "b")),
    )
    .await;
    apply(
        &server,
        &subscription(
            "to-channel",
            &callable.url(),
            &reply_to("Channel", "results"),
        ),
    )
    .await;
    apply(
        &server,
        &subscription("to-uri", &callable.url(), &reply_to("uri", &via_uri.url())),
    )
    .await;
    for name in ["to-broker", "to-channel", "to-uri"] {
        assert_eq!(
            ready(&server, Kind::Subscription, name).await["status"],
            "True",
            "{name}"
        );
    }
    accept(&channel_url(&server, "ns", "work"), &event("x", "work")).await;
    for sub in [&via_broker, &via_channel, &via_uri] {
        let got = sub.wait_for(1, DEADLINE).await;
        assert_eq!(got[0].id(), "x-replied");
        assert_eq!(ext(got[0].event(), "steps").as_deref(), Some("replied"));
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_sequence_of_three_transforming_steps_produces_the_final_event() {
    let steps = [
        Subscriber::start().await,
        Subscriber::start().await,
        Subscriber::start().await,
    ];
    for (i, s) in steps.iter().enumerate() {
        let tag = ["a", "b", "c"][i];
        s.respond_with(move |r, _| Answer::reply(transformed(r.event(), tag)));
    }
    let sink = Subscriber::start().await;
    let server = start_with("", config()).await;
    apply(
        &server,
        &format!(
            "apiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata: {{name: pipeline, namespace: ns}}\n\
             spec:\n  channelTemplate: {{apiVersion: messaging.knative.dev/v1, kind: InMemoryChannel}}\n  steps:\n\
             \x20   - uri: \"{}\"\n    - uri: \"{}\"\n    - uri: \"{}\"\n  reply: {{uri: \"{}\"}}\n",
            steps[0].url(),
            steps[1].url(),
            steps[2].url(),
            sink.url()
        ),
    )
    .await;
    let status = ready(&server, Kind::Sequence, "pipeline").await;
    assert_eq!(status["status"], "True", "{status}");
    let view = server
        .plane()
        .get(Kind::Sequence, &ResourceKey::new("ns", "pipeline"))
        .await
        .unwrap();
    let address = view.object["status"]["address"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        address.ends_with("/channels/ns/pipeline-kn-sequence-0"),
        "{address}"
    );
    assert_eq!(
        view.object["status"]["channelStatuses"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    for i in 0..5 {
        accept(
            &Url::parse(&address).unwrap(),
            &event(&format!("in{i}"), "order"),
        )
        .await;
    }
    let out = sink.wait_for(5, DEADLINE).await;
    let mut ids: Vec<_> = out.iter().map(|r| r.id()).collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "in0-a-b-c",
            "in1-a-b-c",
            "in2-a-b-c",
            "in3-a-b-c",
            "in4-a-b-c"
        ]
    );
    assert!(out
        .iter()
        .all(|r| ext(r.event(), "steps").as_deref() == Some("abc")));

    // Deleting the Sequence removes the Channels and Subscriptions it owned.
    server
        .plane()
        .delete(Kind::Sequence, &ResourceKey::new("ns", "pipeline"))
        .await
        .unwrap();
    assert!(server
        .plane()
        .list(Kind::Channel, Some("ns"))
        .await
        .is_empty());
    assert!(server
        .plane()
        .list(Kind::Subscription, Some("ns"))
        .await
        .is_empty());
    assert_eq!(
        send_binary(&Url::parse(&address).unwrap(), &event("late", "order"))
            .await
            .status,
        404
    );
    server.shutdown().await;
}

#[tokio::test]
async fn parallel_branches_filter_and_reply_to_the_branch_or_the_global_reply() {
    let (even_filter, even, all, even_replies, global) = (
        Subscriber::start().await,
        Subscriber::start().await,
        Subscriber::start().await,
        Subscriber::start().await,
        Subscriber::start().await,
    );
    // A filter passes an event by replying with it, drops it with an empty 202.
    even_filter.respond_with(|r, _| {
        let n: u32 = r.id().trim_start_matches('n').parse().unwrap();
        if n.is_multiple_of(2) {
            Answer::reply(r.event().clone())
        } else {
            Answer::accepted()
        }
    });
    even.respond_with(|r, _| Answer::reply(transformed(r.event(), "even")));
    all.respond_with(|r, _| Answer::reply(transformed(r.event(), "all")));
    let server = start_with("", config()).await;
    apply(
        &server,
        &format!(
            "apiVersion: flows.knative.dev/v1\nkind: Parallel\nmetadata: {{name: split, namespace: ns}}\n\
             spec:\n  branches:\n\
             \x20   - filter: {{uri: \"{}\"}}\n      subscriber: {{uri: \"{}\"}}\n      reply: {{uri: \"{}\"}}\n\
             \x20   - subscriber: {{uri: \"{}\"}}\n  reply: {{uri: \"{}\"}}\n",
            even_filter.url(),
            even.url(),
            even_replies.url(),
            all.url(),
            global.url()
        ),
    )
    .await;
    assert_eq!(
        ready(&server, Kind::Parallel, "split").await["status"],
        "True"
    );
    let address = channel_url(&server, "ns", "split-kn-parallel");
    for i in 0..6 {
        accept(&address, &event(&format!("n{i}"), "number")).await;
    }
    let to_branch = even_replies.wait_for(3, DEADLINE).await;
    let mut ids: Vec<_> = to_branch.iter().map(|r| r.id()).collect();
    ids.sort();
    assert_eq!(ids, ["n0-even", "n2-even", "n4-even"]);
    let to_global = global.wait_for(6, DEADLINE).await;
    assert!(to_global.iter().all(|r| r.id().ends_with("-all")));
    assert_eq!(
        even.count(),
        3,
        "odd numbers never reach the filtered branch"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_knative_flow_samples_load_and_report_their_status() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/knative-samples");
    if !dir.exists() {
        assert!(
            std::env::var("CI").is_err(),
            "the Knative samples are missing"
        );
        eprintln!("skipped: no knative-samples beside the checkout");
        return;
    }
    let set = herald_core::load_path(&dir).unwrap_or_else(|e| panic!("{e}"));
    let server = herald_broker::serve::start(&set, config()).await.unwrap();
    let get = |kind: Kind, ns: &str, name: &str| {
        let plane = server.plane().clone();
        let key = ResourceKey::new(ns, name);
        async move { plane.get(kind, &key).await.unwrap().object }
    };
    let ready = |o: &serde_json::Value| {
        o["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .cloned()
            .unwrap()
    };
    // The Sequence replies to the sample Broker, the Parallel to a URI: both run.
    let seq = get(Kind::Sequence, "default", "enrich-then-store").await;
    assert_eq!(ready(&seq)["status"], "True", "{seq}");
    let par = get(Kind::Parallel, "default", "route-by-kind").await;
    assert_eq!(ready(&par)["status"], "True", "{par}");
    // The Subscription's reply and dead-letter Channels are not in the samples: not ready,
    // with the missing Channel named.
    let sub = get(Kind::Subscription, "default", "work-to-function").await;
    let r = ready(&sub);
    assert_eq!(r["status"], "False", "{sub}");
    assert!(
        r["message"].as_str().unwrap().contains("default/results"),
        "{sub}"
    );
    let ch = get(Kind::Channel, "default", "work").await;
    assert_eq!(ready(&ch)["status"], "True", "{ch}");
    server.shutdown().await;
}

#[tokio::test]
async fn an_event_transform_is_a_sequence_step_and_a_trigger_subscriber() {
    let sink = Subscriber::start().await;
    let audit = Subscriber::start().await;
    let server = start_with(&broker("ns", "b", ""), config()).await;
    apply(
        &server,
        "apiVersion: eventing.knative.dev/v1alpha1\nkind: EventTransform\nmetadata: {name: total, namespace: ns}\n\
         spec:\n  jsonata:\n    expression: |\n      {\"specversion\": \"1.0\", \"id\": id & \"-t\", \"type\": \"order.totalled\",\n\
         \x20      \"source\": source, \"datacontenttype\": \"application/json\", \"data\": {\"total\": data.amount * 2}}\n",
    )
    .await;
    let view = server
        .plane()
        .get(Kind::EventTransform, &ResourceKey::new("ns", "total"))
        .await
        .unwrap();
    assert!(
        view.object["status"]["address"]["url"]
            .as_str()
            .unwrap()
            .ends_with("/transforms/ns/total"),
        "{}",
        view.object
    );
    // As a Sequence step: its reply feeds the Sequence's reply.
    apply(
        &server,
        &format!(
            "apiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata: {{name: s, namespace: ns}}\n\
             spec:\n  steps:\n    - ref: {{apiVersion: eventing.knative.dev/v1alpha1, kind: EventTransform, name: total}}\n\
             \x20 reply: {{uri: \"{}\"}}\n",
            sink.url()
        ),
    )
    .await;
    assert_eq!(ready(&server, Kind::Sequence, "s").await["status"], "True");
    let order = cloudevents::EventBuilderV10::new()
        .id("o1")
        .source("/shop")
        .ty("order")
        .data("application/json", serde_json::json!({"amount": 21}))
        .build()
        .unwrap();
    accept(&channel_url(&server, "ns", "s-kn-sequence-0"), &order).await;
    let got = sink.wait_for(1, DEADLINE).await;
    assert_eq!(got[0].id(), "o1-t");
    assert_eq!(got[0].event().ty(), "order.totalled");
    assert_eq!(
        data_json(got[0].event()),
        Some(serde_json::json!({"total": 42}))
    );

    // As a Trigger's subscriber: its reply re-enters the Broker.
    for yaml in [
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {name: t, namespace: ns}\n\
         spec:\n  broker: b\n  filter: {attributes: {type: order}}\n  subscriber:\n    ref: {apiVersion: eventing.knative.dev/v1alpha1, kind: EventTransform, name: total}\n"
            .to_string(),
        format!(
            "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata: {{name: audit, namespace: ns}}\n\
             spec:\n  broker: b\n  filter: {{attributes: {{type: order.totalled}}}}\n  subscriber: {{uri: \"{}\"}}\n",
            audit.url()
        ),
    ] {
        apply(&server, &yaml).await;
    }
    accept(&server.broker_url("ns", "b"), &order).await;
    let got = audit.wait_for(1, DEADLINE).await;
    assert_eq!(got[0].id(), "o1-t");
    server.shutdown().await;
}

/// A Channel whose template is Knative's NatsJetStreamChannel runs on NATS JetStream, and a
/// Sequence's channels follow their template too.
#[tokio::test]
async fn channels_and_sequences_run_on_nats_when_their_template_says_so() {
    if tokio::net::TcpStream::connect("127.0.0.1:4222")
        .await
        .is_err()
    {
        assert!(!in_ci(), "NATS (127.0.0.1:4222) is required in CI");
        eprintln!("skipping: no NATS on 127.0.0.1:4222");
        return;
    }
    let (sink, step) = (Subscriber::start().await, Subscriber::start().await);
    step.respond_with(|r, _| Answer::reply(transformed(r.event(), "s")));
    let unique = format!(
        "FLOWS{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros()
    );
    let config = herald_broker::ServeConfig {
        channels: herald_broker::backends::BackendsConfig {
            nats: herald_channels::NatsConfig {
                stream_prefix: unique,
                ..Default::default()
            },
            ..Default::default()
        },
        ..config()
    };
    let server = start_with("", config).await;
    let template = "{apiVersion: messaging.knative.dev/v1alpha1, kind: NatsJetStreamChannel}";
    apply(
        &server,
        &format!(
            "apiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata: {{name: s, namespace: ns}}\n\
             spec:\n  channelTemplate: {template}\n  steps:\n    - uri: \"{}\"\n  reply: {{uri: \"{}\"}}\n",
            step.url(),
            sink.url()
        ),
    )
    .await;
    assert_eq!(ready(&server, Kind::Sequence, "s").await["status"], "True");
    let health = server.plane().health().await;
    assert!(
        health
            .backends
            .iter()
            .any(|b| b.kind.to_string() == "nats" && b.up),
        "{health:?}"
    );
    for i in 0..10 {
        accept(
            &channel_url(&server, "ns", "s-kn-sequence-0"),
            &event(&format!("n{i}"), "t"),
        )
        .await;
    }
    let got = sink.wait_for(10, DEADLINE).await;
    assert!(got.iter().all(|r| r.id().ends_with("-s")));
    server
        .plane()
        .delete(Kind::Sequence, &ResourceKey::new("ns", "s"))
        .await
        .unwrap();
    server.shutdown().await;
}

/// Herald's own channel kind: a Channel whose template names HeraldChannel, and a
/// `messaging.herald.dev/v1alpha1` HeraldChannel itself, are kept on the server's default
/// backend (sled here) and serve their Subscriptions, while a Channel templated on
/// InMemoryChannel stays in memory.
#[tokio::test]
async fn herald_channels_use_the_server_default_and_in_memory_channels_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config();
    config.channels.default = herald_channels::BackendKind::Sled;
    config.channels.sled.data_dir = dir.path().to_path_buf();
    let server = start_with("", config).await;
    let channels = [
        (
            "templated",
            "apiVersion: messaging.knative.dev/v1\nkind: Channel",
            "spec:\n  channelTemplate: {apiVersion: messaging.herald.dev/v1alpha1, kind: HeraldChannel}\n",
        ),
        (
            "own",
            "apiVersion: messaging.herald.dev/v1alpha1\nkind: HeraldChannel",
            "",
        ),
        (
            "work",
            "apiVersion: messaging.knative.dev/v1\nkind: Channel",
            "spec:\n  channelTemplate: {apiVersion: messaging.knative.dev/v1, kind: InMemoryChannel}\n",
        ),
    ];
    let mut subscribers = Vec::new();
    for (name, kind, spec) in channels {
        apply(
            &server,
            &format!("{kind}\nmetadata: {{name: {name}, namespace: ns}}\n{spec}"),
        )
        .await;
        let (api_version, kind) = {
            let mut lines = kind.lines();
            let api = lines.next().unwrap().trim_start_matches("apiVersion: ");
            (
                api.to_string(),
                lines
                    .next()
                    .unwrap()
                    .trim_start_matches("kind: ")
                    .to_string(),
            )
        };
        let sub = Subscriber::start().await;
        apply(
            &server,
            &format!(
                "apiVersion: messaging.knative.dev/v1\nkind: Subscription\nmetadata: {{name: to-{name}, namespace: ns}}\n\
                 spec:\n  channel: {{apiVersion: {api_version}, kind: {kind}, name: {name}}}\n  subscriber: {{uri: \"{}\"}}\n",
                sub.url()
            ),
        )
        .await;
        assert_eq!(
            ready(&server, Kind::Subscription, &format!("to-{name}")).await["status"],
            "True",
            "{name}"
        );
        assert_eq!(ready(&server, Kind::Channel, name).await["status"], "True");
        subscribers.push((name, sub));
    }
    for (name, sub) in &subscribers {
        let url = channel_url(&server, "ns", name);
        for i in 0..3 {
            accept(&url, &event(&format!("{name}-{i}"), "t")).await;
        }
        let got = sub.wait_for(3, DEADLINE).await;
        assert!(got.iter().all(|e| e.id().starts_with(name)), "{name}");
    }
    let used: Vec<String> = server
        .plane()
        .health()
        .await
        .backends
        .iter()
        .map(|b| b.kind.to_string())
        .collect();
    assert!(used.contains(&"sled".to_string()), "{used:?}");
    assert!(used.contains(&"memory".to_string()), "{used:?}");
    // The HeraldChannel is shown as the kind it was written as.
    let own = server
        .plane()
        .get(Kind::Channel, &ResourceKey::new("ns", "own"))
        .await
        .unwrap();
    assert_eq!(own.object["kind"], "HeraldChannel");
    assert_eq!(own.object["apiVersion"], "messaging.herald.dev/v1alpha1");
    server.shutdown().await;
}
