//! KafkaSource on a real Kafka-API broker (a private tansu per test, sqlite store): binary,
//! structured and plain records as events; offsets committed only up to what the sink
//! accepted (ordered and unordered, a refusing sink, a dead-letter sink); a restart of the
//! source and of the broker resumes without losing a record.

mod common;
#[path = "common/tansu.rs"]
mod tansu;

use common::{resource, run, run_with_delivery, unique, Received, Refusing, TestSink};
use herald_core::Check;
use herald_sources::SourceEnv;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tansu::{KafkaClients, Tansu};

const WAIT: Duration = Duration::from_secs(30);

/// A KafkaSource `name` in namespace `ns` reading `topic` from the start.
fn source(
    name: &str,
    tansu: &Tansu,
    topic: &str,
    group: &str,
    extra: &str,
) -> herald_core::Resource {
    resource(&format!(
        "apiVersion: sources.knative.dev/v1beta1\nkind: KafkaSource\nmetadata: {{name: {name}, namespace: ns}}\n\
         spec:\n  bootstrapServers: ['{}']\n  topics: [{topic}]\n  consumerGroup: {group}\n  initialOffset: earliest\n\
         {extra}  sink: {{uri: 'http://127.0.0.1:9/'}}\n",
        tansu.bootstrap()
    ))
}

fn env() -> Arc<SourceEnv> {
    Arc::new(SourceEnv::default())
}

/// The sink's requests until `done` says enough, within [`WAIT`].
async fn until(sink: &mut TestSink, mut done: impl FnMut(&[Received]) -> bool) -> Vec<Received> {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while !done(&got) {
        let left = deadline.saturating_duration_since(Instant::now());
        got.push(sink.next(left).await);
    }
    got
}

fn accepted_ids(got: &[Received]) -> Vec<String> {
    got.iter()
        .filter(|r| !r.refused)
        .filter_map(|r| r.header("ce-id").map(str::to_string))
        .collect()
}

#[tokio::test]
async fn binary_structured_and_plain_records_become_events() {
    let Some(tansu) = Tansu::start("kafka_records").await else {
        return;
    };
    let topic = unique("records");
    tansu.create_topic(&topic, 1).await;
    let producer = tansu.producer();
    let binary = [
        ("ce_specversion", "1.0"),
        ("ce_id", "b-1"),
        ("ce_source", "/producer"),
        ("ce_type", "com.example.binary"),
        ("ce_region", "eu"),
        ("content-type", "application/json"),
    ];
    producer
        .send(
            &topic,
            0,
            Some("k1"),
            &binary,
            Some(br#"{"kind":"binary"}"#),
        )
        .await;
    let structured = r#"{"specversion":"1.0","id":"s-1","source":"/producer","type":"com.example.structured","datacontenttype":"application/json","data":{"kind":"structured"}}"#;
    producer
        .send(
            &topic,
            0,
            None,
            &[("content-type", "application/cloudevents+json")],
            Some(structured.as_bytes()),
        )
        .await;
    let plain_offset = producer
        .send(
            &topic,
            0,
            Some("order-7"),
            &[("content-type", "text/plain")],
            Some(b"hello"),
        )
        .await;

    let mut sink = TestSink::start().await;
    let group = unique("g");
    let mut running = run(
        source("orders", &tansu, &topic, &group, ""),
        &sink.url,
        env(),
    );
    running.until_ok(WAIT).await;
    let got = until(&mut sink, |g| g.len() == 3).await;

    let b = &got[0];
    assert_eq!(b.header("ce-id"), Some("b-1"));
    assert_eq!(b.header("ce-source"), Some("/producer"));
    assert_eq!(b.header("ce-type"), Some("com.example.binary"));
    assert_eq!(b.header("ce-region"), Some("eu"));
    assert_eq!(b.header("content-type"), Some("application/json"));
    assert_eq!(
        b.header("ce-key"),
        None,
        "a CloudEvent is passed on as written"
    );
    assert_eq!(&b.body[..], br#"{"kind":"binary"}"#);

    let s = &got[1];
    assert_eq!(s.header("ce-id"), Some("s-1"));
    assert_eq!(s.header("ce-type"), Some("com.example.structured"));
    let data: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
    assert_eq!(data, serde_json::json!({"kind": "structured"}));

    let p = &got[2];
    assert_eq!(p.header("ce-type"), Some("dev.knative.kafka.event"));
    assert_eq!(
        p.header("ce-source").map(str::to_string),
        Some(format!(
            "/apis/v1/namespaces/ns/kafkasources/orders#{topic}"
        ))
    );
    assert_eq!(
        p.header("ce-subject").map(str::to_string),
        Some(format!("partition:0#{plain_offset}"))
    );
    assert_eq!(
        p.header("ce-id").map(str::to_string),
        Some(format!("partition:0/offset:{plain_offset}"))
    );
    assert_eq!(p.header("ce-key"), Some("order-7"));
    assert_eq!(p.header("ce-kafkaheadercontenttype"), Some("text/plain"));
    assert_eq!(p.header("content-type"), Some("text/plain"));
    assert!(p.header("ce-time").is_some(), "the record's timestamp");
    assert_eq!(&p.body[..], b"hello");

    tansu
        .wait_committed(&group, &topic, &BTreeMap::from([(0, plain_offset + 1)]))
        .await;
    running.stop().await;
}

#[tokio::test]
async fn nothing_is_committed_while_the_sink_refuses_and_all_arrives_once_it_accepts() {
    let Some(tansu) = Tansu::start("kafka_sink_down").await else {
        return;
    };
    let topic = plain_records(&tansu, "down", 3).await;
    let mut sink = TestSink::start().await;
    sink.refuse(Refusing::Everything);
    let group = unique("g");
    let running = run(source("down", &tansu, &topic, &group, ""), &sink.url, env());

    // Ordered: the first record is tried again and again, the others wait behind it.
    let refused = until(&mut sink, |g| g.len() == 3).await;
    for r in &refused {
        assert_eq!(r.header("ce-id"), Some("partition:0/offset:0"));
    }
    let committed = tansu.committed(&group, &topic, 1).await;
    assert!(
        committed.get(&0).is_none_or(|o| *o == 0),
        "committed {committed:?} while the sink refused everything"
    );

    sink.refuse(Refusing::Nothing);
    let got = until(&mut sink, |g| accepted_ids(g).len() == 3).await;
    assert_eq!(
        accepted_ids(&got),
        [
            "partition:0/offset:0",
            "partition:0/offset:1",
            "partition:0/offset:2"
        ]
    );
    tansu
        .wait_committed(&group, &topic, &BTreeMap::from([(0, 3)]))
        .await;
    // Counted per source, as its status.eventCounts shows them.
    let counts = running.counts.to_json();
    assert_eq!(counts["delivered"], 3, "{counts}");
    assert!(counts["sinkFailures"].as_u64().unwrap() >= 3, "{counts}");
    running.stop().await;
}

#[tokio::test]
async fn unordered_commits_only_the_contiguous_accepted_prefix() {
    let Some(tansu) = Tansu::start("kafka_unordered").await else {
        return;
    };
    let topic = plain_records(&tansu, "unordered", 5).await;
    let mut sink = TestSink::start().await;
    let stuck = "partition:0/offset:1".to_string();
    sink.refuse(Refusing::Ids(HashSet::from([stuck.clone()])));
    let group = unique("g");
    let running = run(
        source("loose", &tansu, &topic, &group, "  ordering: unordered\n"),
        &sink.url,
        env(),
    );
    // The others pass the refused one.
    let got = until(&mut sink, |g| accepted_ids(g).len() == 4).await;
    let accepted: BTreeSet<String> = accepted_ids(&got).into_iter().collect();
    assert!(!accepted.contains(&stuck));
    tansu
        .wait_committed(&group, &topic, &BTreeMap::from([(0, 1)]))
        .await;
    // Two more refusals later (commits run every half second) it still stops at offset 1.
    let mut refusals = got.iter().filter(|r| r.refused).count();
    while refusals < 3 {
        refusals += usize::from(sink.next(WAIT).await.refused);
    }
    assert_eq!(
        tansu.committed(&group, &topic, 1).await,
        BTreeMap::from([(0, 1)])
    );

    sink.refuse(Refusing::Nothing);
    until(&mut sink, |g| accepted_ids(g).contains(&stuck)).await;
    tansu
        .wait_committed(&group, &topic, &BTreeMap::from([(0, 5)]))
        .await;
    running.stop().await;
}

#[tokio::test]
async fn a_refused_record_goes_to_the_dead_letter_sink_and_the_offset_moves_on() {
    let Some(tansu) = Tansu::start("kafka_dead_letter").await else {
        return;
    };
    let topic = unique("dls");
    tansu.create_topic(&topic, 1).await;
    tansu
        .producer()
        .send(&topic, 0, None, &[], Some(b"poison"))
        .await;
    let mut sink = TestSink::start().await;
    sink.refuse(Refusing::Everything);
    let mut dead_letters = TestSink::start().await;
    let group = unique("g");
    let delivery = format!(
        "  delivery:\n    deadLetterSink: {{uri: '{}'}}\n    retry: 1\n    backoffPolicy: linear\n    backoffDelay: PT0.1S\n",
        dead_letters.url
    );
    let running = run_with_delivery(
        source("dls", &tansu, &topic, &group, &delivery),
        &sink.url,
        env(),
    );
    let dead = dead_letters.next(WAIT).await;
    assert_eq!(dead.header("ce-id"), Some("partition:0/offset:0"));
    assert_eq!(&dead.body[..], b"poison");
    // The first attempt and one retry, per the DeliverySpec.
    let attempts = until(&mut sink, |g| g.len() == 2).await;
    assert!(attempts.iter().all(|r| r.refused));
    tansu
        .wait_committed(&group, &topic, &BTreeMap::from([(0, 1)]))
        .await;
    let counts = running.counts.to_json();
    assert_eq!(
        counts,
        serde_json::json!({"delivered": 0, "deadLettered": 1, "sinkFailures": 0})
    );
    running.stop().await;
}

#[tokio::test]
async fn a_restart_of_source_and_broker_resumes_without_loss() {
    let Some(mut tansu) = Tansu::start("kafka_restart").await else {
        return;
    };
    let topic = unique("restart");
    tansu.create_topic(&topic, 2).await;
    let mut all = BTreeSet::new();
    {
        let producer = tansu.producer();
        for i in 0..10 {
            let offset = producer
                .send(
                    &topic,
                    i % 2,
                    None,
                    &[],
                    Some(format!("first-{i}").as_bytes()),
                )
                .await;
            all.insert(format!("partition:{}/offset:{offset}", i % 2));
        }
    }
    let mut sink = TestSink::start().await;
    let group = unique("g");
    let resource = source("again", &tansu, &topic, &group, "");
    let running = run(resource.clone(), &sink.url, env());
    let mut seen: BTreeSet<String> = until(&mut sink, |g| g.len() >= 6)
        .await
        .iter()
        .filter_map(|r| r.header("ce-id").map(str::to_string))
        .collect();
    running.stop().await;

    tansu.restart().await;
    {
        let producer = tansu.producer();
        for i in 0..10 {
            let offset = producer
                .send(
                    &topic,
                    i % 2,
                    None,
                    &[],
                    Some(format!("second-{i}").as_bytes()),
                )
                .await;
            all.insert(format!("partition:{}/offset:{offset}", i % 2));
        }
    }
    let mut running = run(resource, &sink.url, env());
    running.until_ok(WAIT).await;
    let mut total = seen.len();
    let deadline = Instant::now() + WAIT;
    while !all.is_subset(&seen) {
        let r = sink
            .next(deadline.saturating_duration_since(Instant::now()))
            .await;
        total += 1;
        seen.extend(r.header("ce-id").map(str::to_string));
    }
    eprintln!(
        "{} records, {total} deliveries ({} redelivered after the restart)",
        all.len(),
        total - all.len()
    );
    assert_eq!(seen, all, "every record, none invented");
    running.stop().await;
}

#[tokio::test]
async fn initial_offset_latest_skips_what_was_there() {
    let Some(tansu) = Tansu::start("kafka_latest").await else {
        return;
    };
    let topic = unique("latest");
    tansu.create_topic(&topic, 1).await;
    let producer = tansu.producer();
    producer.send(&topic, 0, None, &[], Some(b"old")).await;
    let mut sink = TestSink::start().await;
    let group = unique("g");
    let yaml = source("late", &tansu, &topic, &group, "");
    let herald_core::Resource::KafkaSource(mut k) = yaml else {
        unreachable!()
    };
    k.spec.initial_offset = Some(herald_core::InitialOffset::Latest);
    let mut running = run(herald_core::Resource::KafkaSource(k), &sink.url, env());
    running.until_ok(WAIT).await;
    // Until the group has its partition, new records may fall before its start too; keep
    // producing until one arrives.
    let deadline = Instant::now() + WAIT;
    let first = loop {
        producer.send(&topic, 0, None, &[], Some(b"new")).await;
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(500), sink.rx.recv()).await {
            break r.unwrap();
        }
        assert!(Instant::now() < deadline, "nothing arrived");
    };
    assert_eq!(&first.body[..], b"new");
    assert_ne!(first.header("ce-id"), Some("partition:0/offset:0"));
    running.stop().await;
}

#[tokio::test]
async fn a_missing_topic_is_reported_by_name() {
    let Some(tansu) = Tansu::start("kafka_missing_topic").await else {
        return;
    };
    let sink = TestSink::start().await;
    let mut running = run(
        source("typo", &tansu, "no-such-topic", &unique("g"), ""),
        &sink.url,
        env(),
    );
    let check = tokio::time::timeout(
        WAIT,
        running
            .health
            .wait_for(|c| matches!(c, Check::Failed { .. })),
    )
    .await
    .expect("reported in time")
    .unwrap()
    .clone();
    let Check::Failed { message, .. } = check else {
        unreachable!()
    };
    assert!(
        message.contains("spec.topics[0]") && message.contains("no-such-topic"),
        "{message}"
    );
    running.stop().await;
}

/// A new one-partition topic holding `n` plain records `r0`, `r1`, …; returns its name.
async fn plain_records(tansu: &Tansu, prefix: &str, n: usize) -> String {
    let topic = unique(prefix);
    tansu.create_topic(&topic, 1).await;
    let producer = tansu.producer();
    for i in 0..n {
        producer
            .send(&topic, 0, None, &[], Some(format!("r{i}").as_bytes()))
            .await;
    }
    topic
}
