//! The durable backend (`sled` by its historical name) across process lifetimes: resuming
//! after a clean restart, surviving SIGKILL mid-publish (sled 0.34, which it replaced, did not:
//! spacejam/sled#1509, #1527), shrinking once a backlog is delivered, and a full disk.

use cloudevents::{EventBuilder, EventBuilderV10};
use herald_channels::{Channel, Delivery, Position, SledConfig, SledStore, Subscription};
use herald_test_support::disk::SmallDisk;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn event(id: &str) -> herald_channels::WireEvent {
    EventBuilderV10::new()
        .id(id)
        .source("/test")
        .ty("t")
        .data("application/json", serde_json::json!({ "id": id }))
        .build()
        .unwrap()
        .into()
}

async fn next(sub: &mut Box<dyn Subscription>) -> Delivery {
    tokio::time::timeout(Duration::from_secs(30), sub.next())
        .await
        .expect("no delivery within 30s")
        .expect("next failed")
        .expect("subscription ended")
}

fn quick() -> SledConfig {
    SledConfig {
        commit_interval: Duration::from_millis(10),
        compaction_interval: Duration::from_millis(20),
        ..Default::default()
    }
}

#[tokio::test]
async fn restart_resumes_at_the_committed_offset() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SledStore::open(dir.path(), quick()).unwrap();
        let ch = store.channel("default").unwrap();
        let mut a = ch.subscribe("a").await.unwrap();
        let mut b = ch.subscribe("b").await.unwrap();
        let ids: Vec<_> = (0..10).map(|i| format!("e{i}")).collect();
        ch.publish(ids.iter().map(|id| event(id)).collect())
            .await
            .unwrap();
        let mut da = Vec::new();
        for _ in 0..10 {
            da.push(Some(next(&mut a).await));
        }
        // Out of order below the gap (committed reaches 3), then above it: 3 is "mid-retry"
        // and never acknowledged, so it alone is owed after a restart (the acknowledgements
        // above the gap are persisted too).
        for i in [0, 2, 1, 5, 4, 6, 9, 8, 7] {
            da[i].take().unwrap().ack().await.unwrap();
        }
        assert_eq!(ch.committed("a"), Some(3));
        for _ in 0..10 {
            next(&mut b).await.ack().await.unwrap();
        }
        assert_eq!(ch.committed("b"), Some(10));
        // Everything holding the database must go before it can be reopened.
        drop((da, a, b, ch));
        store.close().await;
    }
    {
        let store = SledStore::open(dir.path(), quick()).unwrap();
        let ch = store.channel("default").unwrap();
        assert_eq!(
            ch.committed("a"),
            Some(3),
            "committed offset survives the restart"
        );
        assert_eq!(ch.committed("b"), Some(10));
        let mut a = ch.subscribe("a").await.unwrap();
        let mut b = ch.subscribe("b").await.unwrap();
        let owed = next(&mut a).await;
        assert_eq!(
            (owed.offset, owed.event.id()),
            (Some(3), "e3"),
            "resumes exactly at the committed offset"
        );
        drop(owed);
        ch.publish(vec![event("new")]).await.unwrap();
        let d = next(&mut b).await;
        assert_eq!(
            (d.event.id(), d.offset),
            ("new", Some(10)),
            "b resumes at the head"
        );
        // 4..9 were acknowledged before the restart: not delivered again.
        let d = next(&mut a).await;
        assert_eq!(d.offset, Some(10), "an acknowledged event was redelivered");
        d.ack().await.unwrap();
        // No close this time: dropping the store shuts it down the same way.
        drop((a, b, ch));
        drop(store);
    }
    let store = SledStore::open(dir.path(), quick()).unwrap();
    let ch = store.channel("default").unwrap();
    assert_eq!(ch.committed("a"), Some(3), "offset 3 is still owed");
    let mut a = ch.subscribe("a").await.unwrap();
    let d = next(&mut a).await;
    assert_eq!((d.event.id(), d.offset), ("e3", Some(3)));
    // A replay position chosen by seek survives a restart too.
    ch.seek("a", Position::Offset(8)).await.unwrap();
    drop((d, a, ch));
    store.close().await;
    drop(store);
    let store = SledStore::open(dir.path(), quick()).unwrap();
    assert_eq!(store.channel("default").unwrap().committed("a"), Some(8));
}

const CHILD_DIR_ENV: &str = "HERALD_SLED_KILL_CHILD_DIR";
const KILL_TEST: &str = "acknowledged_events_survive_a_sigkill_loop";
const PUBLISHERS: usize = 8;

/// Re-runs this test binary as a writer process and SIGKILLs it at a random moment, again and
/// again on the same directory; after each kill the store must reopen and hold every event
/// the writer was told was durable. `HERALD_SLED_KILLS` sets the number of kills (default 24),
/// `HERALD_SLED_KILL_SEED` replays a run.
#[test]
fn acknowledged_events_survive_a_sigkill_loop() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        child_writer(Path::new(&dir));
        return;
    }
    let kills: usize = env_number("HERALD_SLED_KILLS").unwrap_or(24) as usize;
    let seed = env_number("HERALD_SLED_KILL_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ u64::from(std::process::id())
    });
    println!("kill loop: {kills} kills, seed {seed}");
    let mut rng = XorShift(seed | 1);
    let work = tempfile::tempdir().unwrap();
    let store_dir = work.path().join("store");
    let exe = std::env::current_exe().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // offset -> event id, for every event a writer was told was durable.
    let mut acknowledged: BTreeMap<u64, String> = BTreeMap::new();
    // Offsets acknowledged on the compacted `churn` broker.
    let mut churn_acknowledged: BTreeSet<u64> = BTreeSet::new();

    for round in 0..kills {
        let stderr_path = work.path().join(format!("child-{round}.stderr"));
        let mut child = Command::new(&exe)
            .args(["--exact", KILL_TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_ENV, &store_dir)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines_tx, lines) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            let mut line = Vec::new();
            // Only whole lines count: a kill may cut the last one short.
            while stdout.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                if line.ends_with(b"\n") {
                    let _ = lines_tx.send(String::from_utf8_lossy(&line).trim_end().to_string());
                }
                line.clear();
            }
        });

        // Even rounds: kill while publishing; odd rounds: early, often while sled recovers.
        let mut early = Vec::new();
        let delay = if round % 2 == 0 {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match lines.recv_timeout(left) {
                    Ok(line) if line.starts_with("ack ") => {
                        early.push(line);
                        break;
                    }
                    Ok(line) => early.push(line),
                    Err(_) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!(
                            "round {round}: the writer acknowledged nothing within 60s; stderr:\n{}",
                            std::fs::read_to_string(&stderr_path).unwrap_or_default()
                        );
                    }
                }
            }
            Duration::from_millis(rng.below(300))
        } else {
            Duration::from_millis(rng.below(150))
        };
        // The kill time is the random variable under test, not a synchronisation.
        std::thread::sleep(delay);
        let exited_early = child.try_wait().unwrap();
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        reader.join().unwrap();
        if let Some(status) = exited_early {
            panic!(
                "round {round}: the writer exited on its own ({status}) instead of being killed; \
                 stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        let mut this_round = 0;
        for line in early.into_iter().chain(lines.try_iter()) {
            let mut parts = line.split(' ');
            match parts.next() {
                Some("ack") => {}
                Some("churn") => {
                    let offset: u64 = parts
                        .next()
                        .and_then(|o| o.parse().ok())
                        .unwrap_or_else(|| panic!("round {round}: unparsable line {line:?}"));
                    // A reused offset means a restart recovered a head below one handed out.
                    assert!(
                        churn_acknowledged.insert(offset),
                        "round {round}: churn offset {offset} acknowledged twice"
                    );
                    continue;
                }
                _ => continue,
            }
            let (Some(Ok(offset)), Some(id)) = (parts.next().map(str::parse::<u64>), parts.next())
            else {
                panic!("round {round}: unparsable writer line {line:?}");
            };
            if let Some(before) = acknowledged.insert(offset, id.to_string()) {
                panic!("round {round}: offset {offset} acknowledged twice ({before}, then {id})");
            }
            this_round += 1;
        }

        let opened = Instant::now();
        let killed_after = if round % 2 == 0 { "ack" } else { "spawn" };
        let store = SledStore::open(&store_dir, SledConfig::default()).unwrap_or_else(|e| {
            panic!(
                "round {round}: the store did not reopen after SIGKILL ({status}, {delay:?} after \
                 {killed_after}): {e}"
            )
        });
        let reopen = opened.elapsed();
        let (head, unreported) = runtime.block_on(verify(&store, &acknowledged, round));
        let churn = store.channel("churn").unwrap().stats();
        let churn_expected = churn_acknowledged.last().map_or(0, |o| o + 1);
        assert!(
            churn.head >= churn_expected && churn.base <= churn.head,
            "round {round}: churn recovered as {churn:?}, but offset {} was acknowledged",
            churn_expected.saturating_sub(1)
        );
        println!(
            "round {round:2}: killed {delay:>5?} after {:5}, {this_round:5} acks this round, \
             {:6} in all, head {head:6}, {unreported:3} durable but unreported, \
             churn {}..{}, reopened in {reopen:?}",
            killed_after,
            acknowledged.len(),
            churn.base,
            churn.head,
        );
        runtime.block_on(store.close());
        drop(store);
    }
    assert!(
        acknowledged.len() > kills,
        "too few acknowledged events ({}) for the loop to mean anything",
        acknowledged.len()
    );
}

/// Reads the whole log through a subscription and checks every acknowledged event is there,
/// with its id, at its offset. Returns the head and the number of durable, unreported events.
async fn verify(
    store: &SledStore,
    acknowledged: &BTreeMap<u64, String>,
    round: usize,
) -> (u64, u64) {
    let ch = store.channel("crash").unwrap();
    let stats = ch.stats();
    let expected_head = acknowledged.keys().next_back().map_or(0, |o| o + 1);
    assert!(
        stats.head >= expected_head,
        "round {round}: head {} but offset {} was acknowledged: acknowledged events were lost",
        stats.head,
        expected_head - 1
    );
    assert_eq!(
        stats.base, 0,
        "round {round}: nothing may be compacted (never consumed)"
    );
    let mut sub = ch.subscribe("keep").await.unwrap();
    ch.seek("keep", Position::Offset(0)).await.unwrap();
    let mut seen_ids = HashSet::new();
    let mut unreported = 0;
    for expected in 0..stats.head {
        let d = next(&mut sub).await;
        let offset = d.offset.unwrap();
        assert_eq!(offset, expected, "round {round}: the log has a gap");
        let id = d.event.id().to_string();
        match acknowledged.get(&offset) {
            Some(acked) => assert_eq!(
                acked, &id,
                "round {round}: offset {offset} holds {id}, but {acked} was acknowledged there"
            ),
            None => unreported += 1,
        }
        assert!(
            seen_ids.insert(id.clone()),
            "round {round}: {id} stored twice"
        );
    }
    (stats.head, unreported)
}

/// The child: publishes from several tasks as fast as it can and prints `ack <offset> <id>`
/// for every event once `publish` has returned, until it is killed. Meanwhile a subscription
/// acknowledges everything (committed offsets are written all the time), and a second broker,
/// `churn`, is consumed and compacted away as fast as it is written (printing
/// `churn <offset>`), so kills also land mid-compaction.
fn child_writer(dir: &Path) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = SledConfig {
            max_lag_events: u64::MAX,
            max_log_bytes: u64::MAX,
            ..quick()
        };
        let store = SledStore::open(dir, config).expect("child: open store");
        let ch = store.channel("crash").expect("child: open channel");
        // Never acknowledged, so compaction keeps everything for the parent to check.
        let _keep = ch.subscribe("keep").await.expect("child: subscribe");
        let mut acker = ch.subscribe("acker").await.expect("child: subscribe");
        let churn = store.channel("churn").expect("child: open churn");
        let mut churn_sub = churn
            .subscribe("all")
            .await
            .expect("child: subscribe churn");
        let pid = std::process::id();
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(async move {
            while let Ok(Some(d)) = acker.next().await {
                let _ = d.ack().await;
            }
        }));
        tasks.push(tokio::spawn(async move {
            while let Ok(Some(d)) = churn_sub.next().await {
                let _ = d.ack().await;
            }
        }));
        for task in 0..2 {
            let churn = churn.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0u64.. {
                    let id = format!("{pid}-c{task}-{i}");
                    let range = churn.append(vec![event(&id)]).await.expect("child: churn");
                    println!("churn {}", range.start);
                }
            }));
        }
        for task in 0..PUBLISHERS {
            let ch = ch.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0u64.. {
                    // Some publishes are batches, to cover all-or-nothing appends.
                    let n = 1 + (i % 3) as usize;
                    let ids: Vec<_> = (0..n).map(|k| format!("{pid}-{task}-{i}-{k}")).collect();
                    let range = ch
                        .append(ids.iter().map(|id| event(id)).collect())
                        .await
                        .expect("child: publish");
                    let mut out = String::new();
                    for (offset, id) in range.zip(&ids) {
                        out.push_str(&format!("ack {offset} {id}\n"));
                    }
                    // One write per publish; stdout is a pipe, each line reaches it whole.
                    print!("{out}");
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// Enough randomness for kill timings without another dependency.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn sized_event(id: &str, size: usize) -> herald_channels::WireEvent {
    EventBuilderV10::new()
        .id(id)
        .source("/test")
        .ty("t")
        .data("text/plain", "x".repeat(size))
        .build()
        .unwrap()
        .into()
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => dir_size(&entry.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// A backlog of 20,000 1 KiB events, then all of it delivered: retention drops the segments
/// and the store shrinks to (almost) nothing. Prints the sizes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_shrinks_once_a_backlog_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), quick()).unwrap();
    let ch = store.channel("ns/b").unwrap();
    let mut sub = ch.subscribe("t").await.unwrap();
    let n = 20_000;
    for chunk in 0..n / 100 {
        let batch = (0..100)
            .map(|i| sized_event(&format!("e{chunk}-{i}"), 1024))
            .collect();
        ch.publish(batch).await.unwrap();
    }
    let before = dir_size(dir.path());
    for _ in 0..n {
        next(&mut sub).await.ack().await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        store.compact().await.unwrap();
        let size = dir_size(dir.path());
        if size < before / 100 || Instant::now() > deadline {
            break size;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("backlog of {n} x 1 KiB: {before} bytes on disk; delivered: {after} bytes");
    assert!(
        after < before / 100,
        "the store kept {after} of {before} bytes after everything was delivered"
    );
}

/// The disk fills up: publishes answer Unavailable (503 with Retry-After at ingress) naming
/// the full disk, nothing half-written surfaces, and once space is freed publishing works
/// again without a restart; every accepted event is delivered, in order, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_publishes_then_recovers_by_itself() {
    let Some(disk) = SmallDisk::mount(module_path!(), "3m") else {
        return;
    };
    let data = disk.path().join("data");
    let config = SledConfig {
        retry_after: Duration::from_secs(2),
        ..quick()
    };
    let store = SledStore::open(&data, config).unwrap();
    let ch = store.channel("ns/b").unwrap();
    let mut sub = ch.subscribe("t").await.unwrap();
    // Most of the disk taken by something else.
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![0u8; 2 << 20]).unwrap();
    let mut accepted = Vec::new();
    let err = loop {
        let id = format!("e{}", accepted.len());
        match ch.publish(vec![sized_event(&id, 4096)]).await {
            Ok(()) => accepted.push(id),
            Err(e) => break e,
        }
        assert!(accepted.len() < 10_000, "the disk never filled");
    };
    println!("disk full after {} events: {err}", accepted.len());
    assert!(
        matches!(err, herald_channels::ChannelError::Unavailable { .. }),
        "{err}"
    );
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
    assert!(err.to_string().contains("disk is full"), "{err}");
    // Still full: still refused, and nothing of the failed appends is readable.
    assert!(ch.publish(vec![sized_event("still", 4096)]).await.is_err());
    assert_eq!(ch.stats().head, accepted.len() as u64);
    // Space freed: the next publish is accepted, no restart.
    std::fs::remove_file(&filler).unwrap();
    for i in 0..10 {
        let id = format!("after{i}");
        ch.publish(vec![sized_event(&id, 4096)])
            .await
            .expect("publishing works again once space is freed");
        accepted.push(id);
    }
    for (offset, id) in accepted.iter().enumerate() {
        let d = next(&mut sub).await;
        assert_eq!(
            (d.offset, d.event.id()),
            (Some(offset as u64), id.as_str()),
            "every accepted event, in order, once"
        );
        d.ack().await.unwrap();
    }
    // And the same after a restart.
    drop((sub, ch));
    store.close().await;
    drop(store);
    let store = SledStore::open(&data, quick()).unwrap();
    assert_eq!(
        store.channel("ns/b").unwrap().stats().head,
        accepted.len() as u64
    );
    store.close().await;
}
