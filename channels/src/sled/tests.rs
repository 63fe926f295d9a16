//! Tests of the durable backend within one process: delivery and acks, group commit, limits,
//! retention and seeking. Restart and crash tests live in `channels/tests/sled.rs`.

use super::*;
use crate::{Channel, ChannelError, Delivery, Position, Subscription};
use cloudevents::{EventBuilder, EventBuilderV10};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn event(id: &str) -> crate::WireEvent {
    EventBuilderV10::new()
        .id(id)
        .source("/test")
        .ty("t")
        .data("application/json", serde_json::json!({ "id": id }))
        .build()
        .unwrap()
        .into()
}

fn events(prefix: &str, n: usize) -> Vec<crate::WireEvent> {
    (0..n).map(|i| event(&format!("{prefix}{i}"))).collect()
}

/// Fast maintenance so tests wait milliseconds, not seconds.
fn quick() -> SledConfig {
    SledConfig {
        commit_interval: Duration::from_millis(10),
        compaction_interval: Duration::from_millis(20),
        ..Default::default()
    }
}

fn open(dir: &tempfile::TempDir, config: SledConfig) -> SledStore {
    SledStore::open(dir.path(), config).expect("open store")
}

async fn next(sub: &mut Box<dyn Subscription>) -> Delivery {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("no delivery within 10s")
        .expect("next failed")
        .expect("subscription ended")
}

async fn take(sub: &mut Box<dyn Subscription>, n: usize) -> Vec<Delivery> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(next(sub).await);
    }
    out
}

fn offsets(deliveries: &[Delivery]) -> Vec<u64> {
    deliveries.iter().filter_map(|d| d.offset).collect()
}

/// Polls `check` until it holds, failing the test after `within`.
async fn wait_for(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn two_subscriptions_see_every_event_and_ack_out_of_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, quick());
    let ch = store.channel("default").unwrap();
    let mut a = ch.subscribe("a").await.unwrap();
    let mut b = ch.subscribe("b").await.unwrap();
    assert_eq!(ch.append(events("e", 4)).await.unwrap(), 0..4);
    let da = take(&mut a, 4).await;
    let db = take(&mut b, 4).await;
    for ds in [&da, &db] {
        let ids: Vec<_> = ds.iter().map(|d| d.event.id().to_string()).collect();
        assert_eq!(ids, ["e0", "e1", "e2", "e3"]);
        assert_eq!(offsets(ds), [0, 1, 2, 3]);
    }
    // b acknowledges 3, 1, 2 first: nothing is committed until 0 is.
    let mut db = db.into_iter().map(Some).collect::<Vec<_>>();
    for i in [3, 1, 2] {
        db[i].take().unwrap().ack().await.unwrap();
    }
    assert_eq!(ch.committed("b"), Some(0));
    db[0].take().unwrap().ack().await.unwrap();
    assert_eq!(ch.committed("b"), Some(4));
    // a is independent: acking its 0 commits only 1.
    da.into_iter().next().unwrap().ack().await.unwrap();
    assert_eq!(ch.committed("a"), Some(1));
    // Both keep receiving new events.
    ch.publish(vec![event("e4")]).await.unwrap();
    assert_eq!(next(&mut a).await.offset, Some(4));
    assert_eq!(next(&mut b).await.offset, Some(4));
}

#[tokio::test]
async fn readers_of_one_subscription_share_its_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, quick());
    let ch = store.channel("default").unwrap();
    let mut r1 = ch.subscribe("a").await.unwrap();
    let mut r2 = ch.subscribe("a").await.unwrap();
    ch.publish(events("e", 2)).await.unwrap();
    let d1 = next(&mut r1).await;
    let d2 = next(&mut r2).await;
    assert_ne!(d1.offset, d2.offset);
}

#[tokio::test]
async fn a_new_subscription_starts_at_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, quick());
    let ch = store.channel("default").unwrap();
    let _keep = ch.subscribe("keep").await.unwrap();
    ch.publish(events("old", 3)).await.unwrap();
    let mut late = ch.subscribe("late").await.unwrap();
    ch.publish(vec![event("new")]).await.unwrap();
    let d = next(&mut late).await;
    assert_eq!((d.event.id(), d.offset), ("new", Some(3)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_share_flushes_and_get_contiguous_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, quick());
    let ch = store.channel("default").unwrap();
    let _sub = ch.subscribe("a").await.unwrap();
    let (tasks, per_task) = (64, 100);
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let ch = ch.clone();
        handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..per_task {
                let range = ch.append(vec![event(&format!("{t}-{i}"))]).await.unwrap();
                got.push(range.start);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let elapsed = started.elapsed();
    let total = tasks * per_task;
    let unique: HashSet<_> = all.iter().copied().collect();
    assert_eq!(unique.len(), total, "offsets must be unique");
    all.sort_unstable();
    assert_eq!(
        all,
        (0..total as u64).collect::<Vec<_>>(),
        "offsets must be contiguous"
    );
    let stats = store.stats();
    println!(
        "group commit: {total} publishes in {elapsed:?} ({:.0}/s), {} flushes, {} groups",
        total as f64 / elapsed.as_secs_f64(),
        stats.publish_flushes,
        stats.write_groups
    );
    assert_eq!(stats.publish_requests, total as u64);
    assert_eq!(stats.published_events, total as u64);
    assert!(
        stats.publish_flushes * 4 <= stats.publish_requests,
        "{} flushes for {} publishes: group commit is not grouping",
        stats.publish_flushes,
        stats.publish_requests
    );
}

#[tokio::test]
async fn per_event_flushes_once_per_request_and_interval_never() {
    let dir = tempfile::tempdir().unwrap();
    let config = SledConfig {
        sync: SyncPolicy::PerEvent,
        ..quick()
    };
    let store = open(&dir, config);
    let ch = store.channel("default").unwrap();
    for i in 0..5 {
        ch.publish(events(&format!("p{i}-"), 2)).await.unwrap();
    }
    assert_eq!(store.stats().publish_flushes, 5);
    drop(ch);
    drop(store);

    let dir = tempfile::tempdir().unwrap();
    let config = SledConfig {
        sync: SyncPolicy::Interval(Duration::from_millis(200)),
        ..quick()
    };
    let store = open(&dir, config);
    let ch = store.channel("default").unwrap();
    let mut sub = ch.subscribe("a").await.unwrap();
    ch.publish(events("i", 3)).await.unwrap();
    assert_eq!(take(&mut sub, 3).await.len(), 3);
    assert_eq!(store.stats().publish_flushes, 0);
}

#[tokio::test]
async fn lag_limit_answers_full_until_acknowledged_and_a_batch_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = SledConfig {
        max_lag_events: 4,
        retry_after: Duration::from_millis(250),
        ..quick()
    };
    let store = open(&dir, config);
    let ch = store.channel("default").unwrap();
    let mut sub = ch.subscribe("a").await.unwrap();
    ch.publish(events("e", 3)).await.unwrap();
    // Two more would pass the limit: neither is written.
    let err = ch.publish(events("x", 2)).await.unwrap_err();
    assert!(matches!(err, ChannelError::Full { .. }), "{err}");
    assert_eq!(err.retry_after(), Some(Duration::from_millis(250)));
    assert_eq!(ch.stats().head, 3);
    ch.publish(vec![event("e3")]).await.unwrap();
    assert!(matches!(
        ch.publish(vec![event("x")]).await,
        Err(ChannelError::Full { .. })
    ));
    // Acknowledging out of order frees nothing until the lowest is acknowledged.
    let mut ds = take(&mut sub, 4).await.into_iter();
    let (d0, d1) = (ds.next().unwrap(), ds.next().unwrap());
    d1.ack().await.unwrap();
    assert!(ch.publish(vec![event("x")]).await.is_err());
    d0.ack().await.unwrap();
    ch.publish(events("f", 2)).await.unwrap();
    assert_eq!(ch.stats().head, 6);
}

#[tokio::test]
async fn log_byte_limit_answers_full() {
    let dir = tempfile::tempdir().unwrap();
    let config = SledConfig {
        max_log_bytes: 2_000,
        ..quick()
    };
    let store = open(&dir, config);
    let ch = store.channel("default").unwrap();
    let _sub = ch.subscribe("a").await.unwrap();
    let mut accepted = 0;
    let err = loop {
        match ch.publish(vec![event(&format!("e{accepted}"))]).await {
            Ok(()) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 1_000, "never full");
    };
    assert!(matches!(err, ChannelError::Full { .. }), "{err}");
    assert!(ch.stats().retained_bytes <= 2_000);
    assert!(accepted > 0);
}

#[tokio::test]
async fn steady_load_keeps_the_log_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, quick());
    let ch = store.channel("default").unwrap();
    let mut sub = ch.subscribe("a").await.unwrap();
    let (rounds, per_round) = (200, 50);
    let mut most_retained = 0;
    for r in 0..rounds {
        ch.publish(events(&format!("r{r}-"), per_round))
            .await
            .unwrap();
        for d in take(&mut sub, per_round).await {
            d.ack().await.unwrap();
        }
        most_retained = most_retained.max(ch.stats().retained_events);
    }
    let total = (rounds * per_round) as u64;
    wait_for(
        "compaction of everything consumed",
        Duration::from_secs(10),
        || ch.stats().retained_events == 0,
    )
    .await;
    let size = tokio::task::spawn_blocking({
        let dir = dir.path().to_path_buf();
        move || dir_size(&dir)
    })
    .await
    .unwrap();
    println!(
        "steady load: {total} events, at most {most_retained} retained at once, \
         sled size_on_disk {} bytes, directory {size} bytes",
        store.size_on_disk().unwrap()
    );
    assert!(
        most_retained < total / 4,
        "{most_retained} of {total} events retained at once: compaction is not keeping up"
    );
}

fn dir_size(dir: &std::path::Path) -> u64 {
    let mut size = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        match entry.metadata() {
            Ok(m) if m.is_dir() => size += dir_size(&entry.path()),
            Ok(m) => size += m.len(),
            Err(_) => {}
        }
    }
    size
}

#[tokio::test]
async fn unconsumed_events_survive_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, quick());
    let ch = store.channel("default").unwrap();
    let mut fast = ch.subscribe("fast").await.unwrap();
    let mut slow = ch.subscribe("slow").await.unwrap();
    ch.publish(events("e", 10)).await.unwrap();
    for d in take(&mut fast, 10).await {
        d.ack().await.unwrap();
    }
    // slow acknowledges the first 4 only.
    let slow_ds = take(&mut slow, 10).await;
    for d in slow_ds.into_iter().take(4) {
        d.ack().await.unwrap();
    }
    store.compact().await.unwrap();
    assert_eq!(ch.stats().base, 4, "only what both consumed may go");
    assert_eq!(ch.stats().retained_events, 6);
    // What slow still owes is readable: seek it to its committed offset and read it again.
    assert_eq!(ch.seek("slow", Position::Offset(4)).await.unwrap(), 4);
    let again = take(&mut slow, 6).await;
    assert_eq!(offsets(&again), [4, 5, 6, 7, 8, 9]);
    assert_eq!(again[0].event.id(), "e4");
}

#[tokio::test]
async fn max_age_keeps_consumed_events_for_replay_until_they_age_out() {
    let dir = tempfile::tempdir().unwrap();
    let config = SledConfig {
        retention: Retention {
            max_age: Some(Duration::from_millis(300)),
            max_bytes: None,
        },
        ..quick()
    };
    let store = open(&dir, config);
    let ch = store.channel("default").unwrap();
    let mut sub = ch.subscribe("a").await.unwrap();
    ch.publish(events("e", 5)).await.unwrap();
    for d in take(&mut sub, 5).await {
        d.ack().await.unwrap();
    }
    store.compact().await.unwrap();
    assert_eq!(
        ch.stats().retained_events,
        5,
        "consumed but younger than max_age"
    );
    assert_eq!(ch.seek("a", Position::Offset(0)).await.unwrap(), 0);
    let replayed = take(&mut sub, 5).await;
    assert_eq!(offsets(&replayed), [0, 1, 2, 3, 4]);
    for d in replayed {
        d.ack().await.unwrap();
    }
    wait_for("events to age out", Duration::from_secs(10), || {
        ch.stats().retained_events == 0
    })
    .await;
    let err = ch.seek("a", Position::Offset(0)).await.unwrap_err();
    assert!(matches!(err, ChannelError::NotRetained { .. }), "{err}");
}

#[tokio::test]
async fn a_broker_can_keep_events_longer_than_the_store_default() {
    let dir = tempfile::tempdir().unwrap();
    // The store default removes consumed events at once; one broker keeps them an hour.
    let store = open(&dir, quick());
    let keeps = store
        .channel_with_retention(
            "keeps",
            Retention {
                max_age: Some(Duration::from_secs(3600)),
                max_bytes: None,
            },
        )
        .unwrap();
    let drops = store.channel("drops").unwrap();
    for ch in [&keeps, &drops] {
        let mut sub = ch.subscribe("a").await.unwrap();
        ch.publish(events("e", 4)).await.unwrap();
        for d in take(&mut sub, 4).await {
            d.ack().await.unwrap();
        }
    }
    store.compact().await.unwrap();
    assert_eq!(
        keeps.stats().retained_events,
        4,
        "kept for replay by its own retention"
    );
    assert_eq!(
        drops.stats().retained_events,
        0,
        "the store default removes consumed events"
    );
    assert_eq!(keeps.seek("a", Position::Offset(0)).await.unwrap(), 0);
}

#[tokio::test]
async fn max_bytes_keeps_the_newest_consumed_events() {
    let dir = tempfile::tempdir().unwrap();
    let one = super::segment::entry_bytes(super::codec::encode_event(&event("e0")).unwrap().len());
    let config = SledConfig {
        retention: Retention {
            max_age: None,
            max_bytes: Some(one * 3),
        },
        ..quick()
    };
    let store = open(&dir, config);
    let ch = store.channel("default").unwrap();
    let mut sub = ch.subscribe("a").await.unwrap();
    ch.publish(events("e", 8)).await.unwrap();
    for d in take(&mut sub, 8).await {
        d.ack().await.unwrap();
    }
    store.compact().await.unwrap();
    let stats = ch.stats();
    assert_eq!((stats.base, stats.retained_events), (5, 3), "{stats:?}");
}

#[tokio::test]
async fn removing_a_subscription_releases_what_it_held() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, quick());
    let ch = store.channel("default").unwrap();
    let mut gone = ch.subscribe("gone").await.unwrap();
    ch.publish(events("e", 3)).await.unwrap();
    store.compact().await.unwrap();
    assert_eq!(ch.stats().retained_events, 3);
    assert!(ch.remove_subscription("gone").await.unwrap());
    assert!(gone.next().await.unwrap().is_none(), "its readers end");
    store.compact().await.unwrap();
    assert_eq!(ch.stats().retained_events, 0);
    assert!(!ch.remove_subscription("gone").await.unwrap());
}

/// A store that keeps consumed events for an hour (so they can be replayed), its channel
/// `default`, and subscriptions `a` and `b` on it.
async fn replayable_with_two_subscriptions(
    dir: &tempfile::TempDir,
) -> (
    SledStore,
    Arc<SledChannel>,
    Box<dyn Subscription>,
    Box<dyn Subscription>,
) {
    let config = SledConfig {
        retention: Retention {
            max_age: Some(Duration::from_secs(3600)),
            max_bytes: None,
        },
        ..quick()
    };
    let store = open(dir, config);
    let ch = store.channel("default").unwrap();
    let a = ch.subscribe("a").await.unwrap();
    let b = ch.subscribe("b").await.unwrap();
    (store, ch, a, b)
}

#[tokio::test]
async fn seek_by_offset_moves_only_that_subscription() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, ch, mut a, mut b) = replayable_with_two_subscriptions(&dir).await;
    ch.publish(events("e", 10)).await.unwrap();
    for sub in [&mut a, &mut b] {
        for d in take(sub, 10).await {
            d.ack().await.unwrap();
        }
    }
    assert_eq!(ch.seek("a", Position::Offset(3)).await.unwrap(), 3);
    assert_eq!(ch.committed("a"), Some(3));
    assert_eq!(ch.committed("b"), Some(10));
    let replay = take(&mut a, 7).await;
    assert_eq!(offsets(&replay), (3..10).collect::<Vec<_>>());
    // b gets nothing again: its next delivery is the next new event.
    ch.publish(vec![event("marker")]).await.unwrap();
    let d = next(&mut b).await;
    assert_eq!((d.event.id(), d.offset), ("marker", Some(10)));
    // Unknown subscriptions and offsets past the head are refused.
    assert!(ch.seek("nobody", Position::Offset(0)).await.is_err());
    let err = ch.seek("a", Position::Offset(99)).await.unwrap_err();
    assert!(matches!(err, ChannelError::PastHead { .. }), "{err}");
}

#[tokio::test]
async fn seek_by_time_finds_the_first_event_at_or_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, ch, mut a, mut b) = replayable_with_two_subscriptions(&dir).await;
    ch.publish(events("before", 4)).await.unwrap();
    // Append times have ms resolution: make sure the next batch is appended in a later ms.
    let before = chrono::Utc::now();
    wait_for("the clock to move on", Duration::from_secs(5), || {
        chrono::Utc::now() - before >= chrono::TimeDelta::milliseconds(2)
    })
    .await;
    let t = chrono::Utc::now();
    ch.publish(events("after", 3)).await.unwrap();
    for sub in [&mut a, &mut b] {
        for d in take(sub, 7).await {
            d.ack().await.unwrap();
        }
    }
    assert_eq!(ch.seek("a", Position::Time(t)).await.unwrap(), 4);
    let d = next(&mut a).await;
    assert_eq!((d.event.id(), d.offset), ("after0", Some(4)));
    assert_eq!(ch.committed("b"), Some(7));
    // A time before everything (nothing removed yet) starts at the oldest event; one in the
    // future at the head.
    let epoch = chrono::DateTime::UNIX_EPOCH;
    assert_eq!(ch.seek("b", Position::Time(epoch)).await.unwrap(), 0);
    let future = chrono::Utc::now() + chrono::TimeDelta::hours(1);
    assert_eq!(ch.seek("b", Position::Time(future)).await.unwrap(), 7);
}

#[tokio::test]
async fn seeking_before_retention_is_not_retained() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, quick());
    let ch = store.channel("default").unwrap();
    let mut a = ch.subscribe("a").await.unwrap();
    let start = chrono::Utc::now();
    ch.publish(events("e", 5)).await.unwrap();
    let ds = take(&mut a, 5).await;
    for d in ds.into_iter().take(3) {
        d.ack().await.unwrap();
    }
    store.compact().await.unwrap();
    assert_eq!(ch.stats().base, 3);
    match ch.seek("a", Position::Offset(1)).await.unwrap_err() {
        ChannelError::NotRetained { detail, .. } => {
            assert!(
                detail.contains("offset 3"),
                "names the oldest retained: {detail}"
            )
        }
        other => panic!("{other}"),
    }
    let err = ch.seek("a", Position::Time(start)).await.unwrap_err();
    assert!(matches!(err, ChannelError::NotRetained { .. }), "{err}");
    // At the oldest retained offset is fine.
    assert_eq!(ch.seek("a", Position::Offset(3)).await.unwrap(), 3);
}

#[tokio::test]
async fn acks_from_before_a_seek_do_not_move_the_new_position() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, quick());
    let ch = store.channel("default").unwrap();
    let mut a = ch.subscribe("a").await.unwrap();
    ch.publish(events("e", 3)).await.unwrap();
    let ds = take(&mut a, 3).await;
    ch.seek("a", Position::Offset(0)).await.unwrap();
    for d in ds {
        d.ack().await.unwrap();
    }
    assert_eq!(ch.committed("a"), Some(0), "stale acks are ignored");
    assert_eq!(offsets(&take(&mut a, 3).await), [0, 1, 2]);
}

#[tokio::test]
async fn close_ends_readers_at_once_and_keeps_accepting_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, quick());
    let ch = store.channel("default").unwrap();
    let mut a = ch.subscribe("a").await.unwrap();
    ch.publish(events("e", 2)).await.unwrap();
    let d = next(&mut a).await;
    ch.close().await;
    let end = tokio::time::timeout(Duration::from_secs(5), a.next())
        .await
        .expect("a durable channel ends its readers at once")
        .unwrap();
    assert!(end.is_none());
    // An in-flight ack still lands; a reply published by an in-flight delivery is kept.
    d.ack().await.unwrap();
    assert_eq!(ch.committed("a"), Some(1));
    ch.publish(vec![event("reply")]).await.unwrap();
    store.close().await;
    let err = ch.publish(vec![event("late")]).await.unwrap_err();
    assert!(matches!(err, ChannelError::Unavailable { .. }), "{err}");
}

#[tokio::test]
async fn readers_wait_for_new_events_and_cross_read_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let config = SledConfig {
        read_chunk: 3,
        ..quick()
    };
    let store = open(&dir, config);
    let ch: Arc<SledChannel> = store.channel("default").unwrap();
    let mut a = ch.subscribe("a").await.unwrap();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        for _ in 0..10 {
            let d = next(&mut a).await;
            got.push(d.offset.unwrap());
            d.ack().await.unwrap();
        }
        got
    });
    for i in 0..10 {
        ch.publish(vec![event(&format!("e{i}"))]).await.unwrap();
    }
    assert_eq!(reader.await.unwrap(), (0..10).collect::<Vec<_>>());
}

#[test]
fn names_with_nul_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, quick());
    assert!(store.channel("a\0b").is_err());
    assert!(store.channel("").is_err());
}

/// Longer steady load that reports how sled's disk use evolves; run it on demand with
/// `cargo test -p herald-channels --release -- --ignored --nocapture disk_use`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "takes a while; reports numbers rather than asserting them"]
async fn disk_use_under_a_long_steady_load() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, quick());
    let ch = store.channel("default").unwrap();
    let mut sub = ch.subscribe("a").await.unwrap();
    let (rounds, per_round) = (4_000, 100);
    for r in 0..rounds {
        ch.publish(events(&format!("r{r}-"), per_round))
            .await
            .unwrap();
        for d in take(&mut sub, per_round).await {
            d.ack().await.unwrap();
        }
        if r % 400 == 0 {
            println!(
                "after {:7} events: {:5} retained, size_on_disk {:>10} bytes",
                r * per_round,
                ch.stats().retained_events,
                store.size_on_disk().unwrap()
            );
        }
    }
    wait_for("compaction", Duration::from_secs(10), || {
        ch.stats().retained_events == 0
    })
    .await;
    println!("done: size_on_disk {} bytes", store.size_on_disk().unwrap());
}

#[tokio::test]
async fn a_released_event_comes_again_on_reopen_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir, quick());
        let ch = store.channel("ns/b").unwrap();
        let mut a = ch.subscribe("a").await.unwrap();
        ch.append(events("e", 3)).await.unwrap();
        let ds = take(&mut a, 3).await;
        let mut ds = ds.into_iter();
        ds.next().unwrap().ack().await.unwrap();
        ds.next()
            .unwrap()
            .settle(crate::Settlement::Released)
            .await
            .unwrap();
        ds.next()
            .unwrap()
            .settle(crate::Settlement::Dropped)
            .await
            .unwrap();
        assert_eq!(ch.committed("a"), Some(1), "held at the released event");
        drop(a);
        let mut again = ch.subscribe("a").await.unwrap();
        let d = next(&mut again).await;
        assert_eq!((d.event.id(), d.offset), ("e1", Some(1)));
        // Released again (shutdown abandons it): a restart redelivers it, and only it.
        d.settle(crate::Settlement::Released).await.unwrap();
        store.close().await;
    }
    let store = open(&dir, quick());
    let ch = store.channel("ns/b").unwrap();
    let mut a = ch.subscribe("a").await.unwrap();
    let d = next(&mut a).await;
    assert_eq!(d.offset, Some(1));
    d.ack().await.unwrap();
    ch.append(events("f", 1)).await.unwrap();
    assert_eq!(next(&mut a).await.offset, Some(3), "e2 was settled before");
}

#[tokio::test]
async fn deleting_a_subscription_ends_its_readers_and_reopening_starts_at_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, quick());
    let ch = store.channel("ns/b").unwrap();
    let mut gone = ch.subscribe("gone").await.unwrap();
    ch.append(events("e", 2)).await.unwrap();
    ch.delete_subscription("gone").await.unwrap();
    ch.delete_subscription("gone").await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(5), gone.next())
        .await
        .unwrap()
        .unwrap();
    assert!(end.is_none());
    assert!(ch.subscriptions().is_empty());
    let mut fresh = ch.subscribe("gone").await.unwrap();
    ch.append(events("f", 1)).await.unwrap();
    assert_eq!(next(&mut fresh).await.event.id(), "f0");
}

#[tokio::test]
async fn deleting_a_channel_removes_its_log_and_state_for_good() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir, quick());
        let ch = store.channel("ns/b").unwrap();
        let other = store.channel("ns/other").unwrap();
        let mut a = ch.subscribe("a").await.unwrap();
        let _o = other.subscribe("o").await.unwrap();
        ch.append(events("e", 3)).await.unwrap();
        other.append(events("o", 1)).await.unwrap();
        ch.close().await;
        ch.delete().await.unwrap();
        let end = tokio::time::timeout(Duration::from_secs(5), a.next())
            .await
            .unwrap()
            .unwrap();
        assert!(end.is_none());
        assert!(ch.publish(events("late", 1)).await.is_err());
        // A new open of the name is a new, empty log.
        let again = store.channel("ns/b").unwrap();
        assert_eq!(again.stats().head, 0);
        assert!(again.subscriptions().is_empty());
        store.close().await;
    }
    let store = open(&dir, quick());
    let ch = store.channel("ns/b").unwrap();
    assert_eq!(ch.stats(), SledChannelStats::default(), "nothing survives");
    let other = store.channel("ns/other").unwrap();
    assert_eq!(other.stats().head, 1, "other channels keep theirs");
    assert_eq!(other.subscriptions(), ["o"]);
}

/// A Broker's shared reader at the head is served from the in-memory tail of the newest
/// durable events: nothing is read back from disk. After a restart (empty tail) the same
/// events come from the segments, identical.
#[tokio::test]
async fn readers_at_the_head_are_served_from_memory_and_the_rest_from_disk() {
    use crate::shared_log::Read;
    let dir = tempfile::tempdir().unwrap();
    let read_all = |log: Arc<dyn crate::SharedLog>| async move {
        let moves = log.moves();
        match log.read(0, Some(5), 100, moves).await.unwrap() {
            Read::Events { events, end } => {
                assert_eq!(end, 5);
                events
                    .into_iter()
                    .map(|(offset, e)| (offset, e.id().to_string(), e.body().unwrap().to_vec()))
                    .collect::<Vec<_>>()
            }
            _ => panic!("no events"),
        }
    };
    let served = {
        let store = open(&dir, quick());
        let ch = store.channel("ns/b").unwrap();
        let log = ch.shared_log().expect("a shared log");
        log.open("t").await.unwrap();
        ch.append(events("e", 5)).await.unwrap();
        let served = read_all(log).await;
        assert_eq!(
            ch.stats().events_read_from_disk,
            0,
            "read from disk at the head"
        );
        store.close().await;
        served
    };
    let store = open(&dir, quick());
    let ch = store.channel("ns/b").unwrap();
    let log = ch.shared_log().expect("a shared log");
    assert_eq!(read_all(log).await, served, "the log and the tail differ");
    assert_eq!(ch.stats().events_read_from_disk, 5);
}
