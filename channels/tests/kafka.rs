//! The Kafka channel against a private tansu broker per test (sqlite store in a temporary
//! directory, a free port on 127.0.0.1). With CI=true a missing or unstartable tansu fails
//! these tests; elsewhere they are skipped with a notice. Set TANSU_BIN to use another binary,
//! KEEP_TANSU=1 to keep each broker's store and log for a look afterwards.

use cloudevents::{EventBuilder, EventBuilderV10};
use herald_channels::{
    Channel, ChannelError, Delivery, KafkaBackend, KafkaChannel, KafkaConfig, Position,
    Subscription,
};
use herald_test_support::tansu::Tansu;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientConfig;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(30);

fn config(tansu: &Tansu) -> KafkaConfig {
    KafkaConfig {
        bootstrap_servers: tansu.bootstrap(),
        publish_timeout: Duration::from_secs(3),
        commit_interval: Duration::from_millis(200),
        // Reconnect quickly after the broker restart test.
        client: BTreeMap::from([("reconnect.backoff.max.ms".into(), "500".into())]),
        ..Default::default()
    }
}

async fn open(tansu: &Tansu) -> Arc<KafkaChannel> {
    let backend = KafkaBackend::connect(config(tansu))
        .await
        .expect("connect to tansu");
    backend.channel("test-ns/broker").await.expect("channel")
}

fn event(id: &str) -> herald_channels::WireEvent {
    EventBuilderV10::new()
        .id(id)
        .source("/kafka-test")
        .ty("t")
        .extension("region", "eu")
        .data("application/json", serde_json::json!({"id": id}))
        .build()
        .unwrap()
        .into()
}

fn keyed(id: &str, key: &str) -> herald_channels::WireEvent {
    let mut e = event(id);
    e.set_extension("partitionkey", key);
    e
}

async fn next(sub: &mut Box<dyn Subscription>) -> Delivery {
    next_within(sub, DEADLINE)
        .await
        .expect("no delivery before the deadline")
}

/// The next delivery, or None if none comes within `wait`; transient read errors are
/// retried (the reader reconnects on its own).
async fn next_within(sub: &mut Box<dyn Subscription>, wait: Duration) -> Option<Delivery> {
    tokio::time::timeout(wait, async {
        loop {
            match sub.next().await {
                Ok(Some(d)) => return d,
                Ok(None) => panic!("subscription ended"),
                Err(e) => {
                    eprintln!("read error (retrying): {e}");
                    tokio::time::sleep(e.retry_after().unwrap_or(Duration::from_millis(200))).await;
                }
            }
        }
    })
    .await
    .ok()
}

fn id(d: &Delivery) -> String {
    d.event.id().to_string()
}

/// A client outside the channel's groups, for checks on the raw records (librdkafka wants a
/// group id even for assigned partitions; this one never commits).
fn raw_client(tansu: &Tansu) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", tansu.bootstrap())
        .set("group.id", "raw-check")
        .set("enable.auto.commit", "false")
        .create()
        .expect("raw consumer")
}

/// Every record of the topic from the start, with its partition, read by a plain consumer.
async fn raw_records(
    tansu: &Tansu,
    topic: &str,
    count: usize,
) -> Vec<(i32, Option<Vec<u8>>, Vec<String>)> {
    let client = raw_client(tansu);
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let mut tpl = TopicPartitionList::new();
        for p in 0..4 {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)
                .unwrap();
        }
        client.assign(&tpl).unwrap();
        let deadline = Instant::now() + DEADLINE;
        let mut records = Vec::new();
        while records.len() < count && Instant::now() < deadline {
            if let Some(Ok(m)) = client.poll(Duration::from_millis(200)) {
                let headers = m
                    .headers()
                    .map(|h| h.iter().map(|h| h.key.to_string()).collect())
                    .unwrap_or_default();
                records.push((m.partition(), m.key().map(<[u8]>::to_vec), headers));
            }
        }
        records
    })
    .await
    .unwrap()
}

/// The group's committed offset per partition (partitions with none left out).
async fn committed(tansu: &Tansu, group: &str, topic: &str) -> BTreeMap<i32, i64> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", tansu.bootstrap())
        .set("group.id", group)
        .create()
        .unwrap();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let mut tpl = TopicPartitionList::new();
        for p in 0..4 {
            tpl.add_partition(&topic, p);
        }
        let got = client
            .committed_offsets(tpl, Duration::from_secs(10))
            .unwrap();
        got.elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn publish_and_consume_round_trip_with_ce_headers() {
    let Some(tansu) = Tansu::start("round_trip").await else {
        return;
    };
    let ch = open(&tansu).await;
    let mut sub = ch.subscribe("trigger.a").await.unwrap();
    ch.publish(vec![keyed("1", "k"), keyed("2", "k"), keyed("3", "k")])
        .await
        .unwrap();
    for expected in ["1", "2", "3"] {
        let d = next(&mut sub).await;
        assert_eq!(id(&d), expected);
        assert_eq!(d.event.source(), "/kafka-test");
        assert_eq!(
            d.event
                .extension("region")
                .map(|v| v.to_string())
                .as_deref(),
            Some("eu")
        );
        let data: serde_json::Value = serde_json::from_slice(&d.event.body().unwrap()).unwrap();
        assert_eq!(data, serde_json::json!({"id": expected}));
        assert!(d.offset.is_some());
        d.ack().await.unwrap();
    }

    // Other Kafka tools see the CloudEvents Kafka binding: ce_ headers, the key.
    let records = raw_records(&tansu, ch.topic(), 3).await;
    assert_eq!(records.len(), 3);
    let (_, key, headers) = &records[0];
    assert_eq!(key.as_deref(), Some(&b"k"[..]));
    for h in [
        "ce_id",
        "ce_source",
        "ce_type",
        "ce_specversion",
        "ce_region",
        "content-type",
    ] {
        assert!(headers.iter().any(|x| x == h), "{h} missing in {headers:?}");
    }
}

#[tokio::test]
async fn a_record_that_is_not_a_cloudevent_is_skipped_and_committed() {
    let Some(tansu) = Tansu::start("foreign_record").await else {
        return;
    };
    let ch = open(&tansu).await;
    let mut sub = ch.subscribe("trigger.f").await.unwrap();
    // Another producer writes plain bytes to the topic, on the partition of key "k".
    let producer: rdkafka::producer::FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", tansu.bootstrap())
        .create()
        .unwrap();
    producer
        .send(
            rdkafka::producer::FutureRecord::to(ch.topic())
                .key("k")
                .payload("not a cloudevent"),
            Duration::from_secs(5),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    ch.publish(vec![keyed("real", "k")]).await.unwrap();
    let d = next(&mut sub).await;
    assert_eq!(id(&d), "real");
    let offset = d.offset.unwrap() as i64;
    d.ack().await.unwrap();
    let partition = raw_records(&tansu, ch.topic(), 2).await[0].0;
    wait_for_commit(&tansu, &ch, "trigger.f", partition, offset + 1, &mut sub).await;
}

/// Waits until the subscription's group has committed `offset` on `partition`; reading
/// drives the reader's periodic commit.
async fn wait_for_commit(
    tansu: &Tansu,
    ch: &KafkaChannel,
    subscription: &str,
    partition: i32,
    offset: i64,
    sub: &mut Box<dyn Subscription>,
) {
    let group = ch.consumer_group(subscription);
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(d) = next_within(sub, Duration::from_millis(300)).await {
            panic!("unexpected delivery {}", id(&d));
        }
        let now = committed(tansu, &group, ch.topic()).await;
        if now.get(&partition) == Some(&offset) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "committed {now:?}, want {offset} on {partition}"
        );
    }
}

#[tokio::test]
async fn close_ends_readers_after_committing_what_is_acknowledged() {
    let Some(tansu) = Tansu::start("close").await else {
        return;
    };
    let ch = open(&tansu).await;
    let group = ch.consumer_group("trigger.c");
    let mut sub = ch.subscribe("trigger.c").await.unwrap();
    ch.publish((0..3).map(|i| keyed(&i.to_string(), "k")).collect())
        .await
        .unwrap();
    let mut last = 0;
    for _ in 0..3 {
        let d = next(&mut sub).await;
        last = d.offset.unwrap() as i64;
        d.ack().await.unwrap();
    }
    // A reader waiting for more ends once the channel closes.
    let waiting = tokio::spawn(async move {
        let end = tokio::time::timeout(DEADLINE, sub.next()).await;
        (end.map(|r| r.map(|d| d.is_none())), sub)
    });
    ch.close().await;
    let (end, _sub) = waiting.await.unwrap();
    assert!(matches!(end, Ok(Ok(true))), "the reader did not end");
    let partition = raw_records(&tansu, ch.topic(), 3).await[0].0;
    let deadline = Instant::now() + DEADLINE;
    while committed(&tansu, &group, ch.topic()).await.get(&partition) != Some(&(last + 1)) {
        assert!(
            Instant::now() < deadline,
            "the acknowledged events were not committed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn each_subscription_sees_every_event_and_readers_of_one_share_them() {
    let Some(tansu) = Tansu::start("sharing").await else {
        return;
    };
    let ch = open(&tansu).await;
    let mut other = ch.subscribe("trigger.other").await.unwrap();
    let readers = [
        ch.subscribe("trigger.shared").await.unwrap(),
        ch.subscribe("trigger.shared").await.unwrap(),
    ];
    let n = 200;
    let seen = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let done = tokio_util::sync::CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    for mut r in readers {
        let (seen, done) = (seen.clone(), done.clone());
        tasks.spawn(async move {
            let mut mine = 0;
            loop {
                let d = tokio::select! {
                    d = r.next() => d,
                    _ = done.cancelled() => return mine,
                };
                let Ok(Some(d)) = d else { continue };
                seen.lock().await.push(id(&d));
                d.ack().await.unwrap();
                mine += 1;
            }
        });
    }
    // Both readers must have joined the group before events flow, or the rebalance that
    // moves partitions to the second one would redeliver the first one's in-flight events.
    wait_for_shares(&ch, "trigger.shared", 2).await;

    // Keyed: records without a key go to librdkafka's sticky partitioner, which may put a
    // whole burst on one partition (and so one reader). Keys hash over every partition.
    for batch in 0..4 {
        ch.publish(
            (0..n / 4)
                .map(|i| {
                    let n = batch * n / 4 + i;
                    keyed(&n.to_string(), &format!("k{}", n % 16))
                })
                .collect(),
        )
        .await
        .unwrap();
    }
    let deadline = Instant::now() + DEADLINE;
    while seen.lock().await.len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Anything extra (a duplicate) would arrive now.
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle && seen.lock().await.len() == n {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done.cancel();
    let mut per_reader = Vec::new();
    while let Some(r) = tasks.join_next().await {
        per_reader.push(r.unwrap());
    }
    let seen = seen.lock().await.clone();
    let unique: HashSet<_> = seen.iter().collect();
    assert_eq!(
        unique.len(),
        n,
        "every event reaches the shared subscription"
    );
    assert_eq!(
        seen.len(),
        n,
        "no event twice in the happy path: {per_reader:?}"
    );
    assert!(
        per_reader.iter().all(|c| *c > 0),
        "both readers got a share: {per_reader:?}"
    );

    let mut other_seen = HashSet::new();
    while other_seen.len() < n {
        let d = next(&mut other).await;
        other_seen.insert(id(&d));
        d.ack().await.unwrap();
    }
}

/// Waits until every reader of the subscription holds a share of the partitions.
async fn wait_for_shares(ch: &KafkaChannel, subscription: &str, readers: usize) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let assignments = ch.assignments(subscription);
        let all: HashSet<i32> = assignments.iter().flatten().copied().collect();
        if assignments.len() == readers
            && assignments.iter().all(|a| !a.is_empty())
            && all.len() == 4
        {
            return;
        }
        assert!(Instant::now() < deadline, "assignments {assignments:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn an_unacknowledged_event_is_redelivered_and_an_acknowledged_one_is_not() {
    let Some(tansu) = Tansu::start("redelivery").await else {
        return;
    };
    let ch = open(&tansu).await;
    let mut sub = ch.subscribe("trigger.r").await.unwrap();
    // One key: one partition, so "acked" is read (and committed) before "lost".
    ch.publish(vec![keyed("acked", "k"), keyed("lost", "k")])
        .await
        .unwrap();
    let first = next(&mut sub).await;
    assert_eq!(id(&first), "acked");
    first.ack().await.unwrap();
    // A replica that dies mid-delivery: the delivery is dropped without an ack.
    let lost = next(&mut sub).await;
    assert_eq!(id(&lost), "lost");
    drop(lost);
    drop(sub);
    let mut again = ch.subscribe("trigger.r").await.unwrap();
    let redelivered = next(&mut again).await;
    assert_eq!(id(&redelivered), "lost");
    redelivered.ack().await.unwrap();
    let more = next_within(&mut again, Duration::from_secs(2)).await;
    assert!(
        more.is_none(),
        "redelivered after it was handled: {:?}",
        more.map(|d| id(&d))
    );
}

#[tokio::test]
async fn out_of_order_acks_commit_only_the_contiguous_prefix() {
    let Some(tansu) = Tansu::start("prefix").await else {
        return;
    };
    let ch = open(&tansu).await;
    let group = ch.consumer_group("trigger.p");
    let mut sub = ch.subscribe("trigger.p").await.unwrap();
    ch.publish((0..5).map(|i| keyed(&i.to_string(), "k")).collect())
        .await
        .unwrap();
    let mut deliveries = Vec::new();
    for _ in 0..5 {
        deliveries.push(Some(next(&mut sub).await));
    }
    let offsets: Vec<i64> = deliveries
        .iter()
        .map(|d| d.as_ref().unwrap().offset.unwrap() as i64)
        .collect();
    let records = raw_records(&tansu, ch.topic(), 5).await;
    let partition = records.first().expect("the records are readable").0;
    assert_eq!(
        committed(&tansu, &group, ch.topic()).await.get(&partition),
        Some(&offsets[0]),
        "a new subscription starts at the head"
    );

    // Acknowledge 1, 2 and 4; 0 and 3 are still owed.
    for i in [1, 2, 4] {
        deliveries[i].take().unwrap().ack().await.unwrap();
    }
    // Give the reader a few commit intervals to (wrongly) commit past offset 0.
    let _ = next_within(&mut sub, Duration::from_secs(1)).await;
    assert_eq!(
        committed(&tansu, &group, ch.topic()).await.get(&partition),
        Some(&offsets[0]),
        "nothing may be committed while the first event is owed"
    );

    deliveries[0].take().unwrap().ack().await.unwrap();
    wait_for_commit(&tansu, &ch, "trigger.p", partition, offsets[3], &mut sub).await;
    // 3 is still owed: the reader goes away; 3 and the acknowledged 4 come again.
    drop(deliveries);
    drop(sub);
    let mut again = ch.subscribe("trigger.p").await.unwrap();
    let a = next(&mut again).await;
    let b = next(&mut again).await;
    assert_eq!((id(&a), id(&b)), ("3".to_string(), "4".to_string()));
}

#[tokio::test]
async fn events_with_one_partition_key_share_a_partition_and_keep_their_order() {
    let Some(tansu) = Tansu::start("order").await else {
        return;
    };
    let ch = open(&tansu).await;
    let mut sub = ch.subscribe("trigger.o").await.unwrap();
    let keys = ["alpha", "beta", "gamma", "delta", "epsilon"];
    let per_key = 40;
    for batch in 0..4 {
        let events = (0..per_key / 4)
            .flat_map(|i| {
                let seq = batch * per_key / 4 + i;
                keys.iter().map(move |k| keyed(&format!("{k}-{seq}"), k))
            })
            .collect();
        ch.publish(events).await.unwrap();
    }
    let total = keys.len() * per_key;
    let mut last: HashMap<String, i64> = HashMap::new();
    for _ in 0..total {
        let d = next(&mut sub).await;
        let name = id(&d);
        let (key, seq) = name.rsplit_once('-').unwrap();
        let seq: i64 = seq.parse().unwrap();
        let previous = last.insert(key.to_string(), seq).unwrap_or(-1);
        assert_eq!(seq, previous + 1, "{key} out of order");
        d.ack().await.unwrap();
    }
    let records = raw_records(&tansu, ch.topic(), total).await;
    assert_eq!(records.len(), total);
    let mut partitions: HashMap<Vec<u8>, HashSet<i32>> = HashMap::new();
    for (partition, key, _) in records {
        partitions
            .entry(key.expect("keyed record"))
            .or_default()
            .insert(partition);
    }
    for (key, parts) in &partitions {
        assert_eq!(
            parts.len(),
            1,
            "{} spread over {parts:?}",
            String::from_utf8_lossy(key)
        );
    }
}

#[tokio::test]
async fn seek_by_offset_replays_to_one_subscription_only() {
    let Some(tansu) = Tansu::start("seek").await else {
        return;
    };
    let ch = open(&tansu).await;
    let mut a = ch.subscribe("trigger.a").await.unwrap();
    let mut b = ch.subscribe("trigger.b").await.unwrap();
    ch.publish((0..5).map(|i| keyed(&i.to_string(), "k")).collect())
        .await
        .unwrap();
    for sub in [&mut a, &mut b] {
        for i in 0..5 {
            let d = next(sub).await;
            assert_eq!(id(&d), i.to_string());
            d.ack().await.unwrap();
        }
    }
    let resumed = ch.seek("trigger.a", Position::Offset(2)).await.unwrap();
    assert_eq!(resumed, 2);
    for i in 2..5 {
        let d = next(&mut a).await;
        assert_eq!(id(&d), i.to_string());
        d.ack().await.unwrap();
    }
    let replayed = next_within(&mut b, Duration::from_secs(2)).await;
    assert!(
        replayed.is_none(),
        "the other subscription got {:?}",
        replayed.map(|d| id(&d))
    );
}

#[tokio::test]
async fn seek_by_time_replays_what_was_accepted_since() {
    let Some(tansu) = Tansu::start("seek_time").await else {
        return;
    };
    let ch = open(&tansu).await;
    let mut a = ch.subscribe("trigger.a").await.unwrap();
    ch.publish(vec![keyed("old", "k")]).await.unwrap();
    let d = next(&mut a).await;
    d.ack().await.unwrap();
    // Record timestamps have millisecond resolution: step past the first one.
    let since = chrono::Utc::now() + chrono::Duration::milliseconds(5);
    tokio::time::sleep(Duration::from_millis(20)).await;
    ch.publish(vec![keyed("new-1", "k"), keyed("new-2", "k")])
        .await
        .unwrap();
    for expected in ["new-1", "new-2"] {
        let d = next(&mut a).await;
        assert_eq!(id(&d), expected);
        d.ack().await.unwrap();
    }

    ch.seek("trigger.a", Position::Time(since)).await.unwrap();
    for expected in ["new-1", "new-2"] {
        let d = next(&mut a).await;
        assert_eq!(
            id(&d),
            expected,
            "replay starts at the first event since the time"
        );
        d.ack().await.unwrap();
    }
    // A time after everything replays nothing.
    let future = chrono::Utc::now() + chrono::Duration::hours(1);
    ch.seek("trigger.a", Position::Time(future)).await.unwrap();
    let replayed = next_within(&mut a, Duration::from_secs(2)).await;
    assert!(
        replayed.is_none(),
        "replayed {:?}",
        replayed.map(|d| id(&d))
    );
}

#[tokio::test]
async fn publishing_fails_while_the_broker_is_down_and_recovers_after_restart() {
    let Some(mut tansu) = Tansu::start("restart").await else {
        return;
    };
    let ch = open(&tansu).await;
    let mut sub = ch.subscribe("trigger.r").await.unwrap();
    ch.publish((0..20).map(|i| event(&format!("before-{i}"))).collect())
        .await
        .unwrap();
    let mut seen = HashSet::new();
    for _ in 0..10 {
        let d = next(&mut sub).await;
        seen.insert(id(&d));
        d.ack().await.unwrap();
    }

    tansu.kill();
    let started = Instant::now();
    let err = ch
        .publish(vec![event("during")])
        .await
        .expect_err("publish while the broker is down");
    assert!(
        matches!(err, ChannelError::Unavailable { .. }),
        "want Unavailable, got {err}"
    );
    assert!(err.retry_after().is_some());
    eprintln!("publish failed after {:?}: {err}", started.elapsed());
    // That failure opened the circuit: the next publish is refused without waiting for the
    // publish timeout (and without queueing the record, so nothing refused is stored later).
    let again = Instant::now();
    let err = ch
        .publish(vec![event("during-refused")])
        .await
        .expect_err("publish while the circuit is open");
    let refused_in = again.elapsed();
    assert!(
        matches!(err, ChannelError::Unavailable { .. }),
        "want Unavailable, got {err}"
    );
    assert!(
        refused_in < config(&tansu).publish_timeout / 2,
        "refused after {refused_in:?}: it waited for Kafka instead of refusing at once"
    );
    eprintln!("the next publish was refused after {refused_in:?}");

    tansu.restart().await;
    let deadline = Instant::now() + DEADLINE;
    let mut attempts = 0;
    loop {
        attempts += 1;
        match ch
            .publish((0..10).map(|i| event(&format!("after-{i}"))).collect())
            .await
        {
            Ok(()) => break,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "publish did not recover: {e}\ntansu log:\n{}",
                    tansu.log_tail()
                );
                eprintln!("publish after restart failed (retrying): {e}");
                // As a publisher honouring Retry-After would (shortened).
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    eprintln!("publish recovered after {attempts} attempt(s)");

    // Nothing accepted is lost: the 10 unread events from before and the 10 after arrive
    // (some possibly twice: at-least-once across the restart).
    let want: HashSet<String> = (0..20)
        .map(|i| format!("before-{i}"))
        .chain((0..10).map(|i| format!("after-{i}")))
        .collect();
    while !want.is_subset(&seen) {
        let d = next(&mut sub).await;
        seen.insert(id(&d));
        d.ack().await.unwrap();
    }
    // Whatever else the topic holds (another partition may still have it) arrives now.
    while let Some(d) = next_within(&mut sub, Duration::from_secs(2)).await {
        seen.insert(id(&d));
        d.ack().await.unwrap();
    }
    assert!(
        !seen.contains("during-refused"),
        "an event refused while Kafka was down was stored anyway"
    );
}

#[tokio::test]
async fn a_subscription_opened_while_events_flow_sees_everything_after_subscribe() {
    let Some(tansu) = Tansu::start("live_subscription").await else {
        return;
    };
    let ch = open(&tansu).await;
    let mut first = ch.subscribe("trigger.first").await.unwrap();
    ch.publish(vec![event("before")]).await.unwrap();
    let mut late = ch.subscribe("trigger.late").await.unwrap();
    // Published right after subscribe returned, before the late reader joined its group:
    // still the late Trigger's, since its group's position was set on subscribe.
    let n = 20;
    ch.publish((0..n).map(|i| event(&format!("after-{i}"))).collect())
        .await
        .unwrap();
    let mut seen = HashSet::new();
    while seen.len() < n {
        let d = next(&mut late).await;
        assert_ne!(id(&d), "before", "a new subscription starts at the head");
        seen.insert(id(&d));
        d.ack().await.unwrap();
    }
    for _ in 0..=n {
        next(&mut first).await.ack().await.unwrap();
    }
    // Reopened by name: resumes at its committed position, not at the head.
    drop(late);
    ch.publish(vec![event("while-away")]).await.unwrap();
    let mut again = ch.subscribe("trigger.late").await.unwrap();
    let d = next(&mut again).await;
    assert_eq!(id(&d), "while-away", "{}", tansu.log_tail());
    d.ack().await.unwrap();
}

#[tokio::test]
async fn a_released_event_is_redelivered_when_reopened_and_deletes_clean_up() {
    let Some(tansu) = Tansu::start("release_and_delete").await else {
        return;
    };
    let ch = open(&tansu).await;
    let mut sub = ch.subscribe("trigger.r").await.unwrap();
    ch.publish(vec![keyed("r", "k")]).await.unwrap();
    let d = next(&mut sub).await;
    d.settle(herald_channels::Settlement::Released)
        .await
        .unwrap();
    drop(sub);
    let mut again = ch.subscribe("trigger.r").await.unwrap();
    let d = next(&mut again).await;
    assert_eq!(id(&d), "r", "released, so delivered again");
    d.ack().await.unwrap();

    ch.delete_subscription("trigger.r").await.unwrap();
    let end = tokio::time::timeout(DEADLINE, again.next())
        .await
        .expect("the reader ends")
        .unwrap();
    assert!(end.is_none());
    ch.delete_subscription("trigger.r").await.unwrap();

    ch.close().await;
    ch.delete().await.unwrap();
    let raw = raw_client(&tansu);
    let topic = ch.topic().to_string();
    let metadata = tokio::task::spawn_blocking(move || {
        raw.fetch_metadata(Some(&topic), Duration::from_secs(5))
            .map(|m| {
                m.topics()
                    .iter()
                    .any(|t| t.error().is_none() && !t.partitions().is_empty())
            })
    })
    .await
    .unwrap();
    assert!(!metadata.unwrap_or(false), "the topic is gone");
}
