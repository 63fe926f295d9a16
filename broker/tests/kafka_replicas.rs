//! Herald scaled out on Kafka, as separate `herald serve` processes on a private tansu (a
//! Kafka-API broker on sqlite): replicas share a Trigger's consumer group without duplicates,
//! a replica killed mid-load loses nothing (its partitions move to the survivor after the
//! session timeout and the uncommitted tail is redelivered), and a Kafka restart is survived
//! (ingress answers 503 + Retry-After meanwhile).
//!
//! Needs tansu (TANSU_BIN, else ~/.cargo/bin/tansu, else `tansu` on PATH). With CI=true a
//! missing tansu fails these tests; otherwise they are skipped with a printed notice. Every
//! test starts its own tansu with a fresh store and uses its own Broker name. The tests run
//! one at a time: they start several processes each.

mod replicas;

use axum::http::StatusCode;
use replicas::servers::*;
use replicas::*;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The consumer group session timeout given to every replica (librdkafka's default is 45 s):
/// a killed replica's partitions move to the survivors this long after its last heartbeat.
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);
/// Herald's commit interval for acknowledged offsets (KafkaConfig::commit_interval).
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
const NAMESPACE: &str = "kr";
/// The ce-source of the tests' events.
const SOURCE: &str = "/herald/tests/kafka-replicas";

/// `herald serve` with Kafka at `127.0.0.1:kafka_port` (for Brokers of class Kafka), a short session
/// timeout, and `extra` arguments.
async fn start_replica(
    name: &str,
    config: &Path,
    data_dir: &Path,
    kafka_port: u16,
    broker: &str,
    extra: &[&str],
) -> Replica {
    let bootstrap = format!("127.0.0.1:{kafka_port}");
    let session = format!("session.timeout.ms={}", SESSION_TIMEOUT.as_millis());
    let mut args = vec![
        "--kafka-bootstrap-servers",
        &bootstrap,
        "--kafka-consumer-config",
        &session,
        "--kafka-consumer-config",
        "heartbeat.interval.ms=1000",
    ];
    args.extend_from_slice(extra);
    let replica = Replica::start(name, config, data_dir, (NAMESPACE, broker), &args).await;
    assert!(
        replica.proc.find_line("channel=kafka").is_some(),
        "{name}: the Broker is not on Kafka:\n{}",
        replica.proc.log_tail()
    );
    replica
}

/// Samples the TCP ports of some processes every 20 ms until dropped, so deliveries made on
/// connections that were closed before the end of the test can still be attributed.
struct PortWatch {
    seen: Arc<Mutex<Vec<HashSet<u16>>>>,
    stop: tokio_util::sync::CancellationToken,
}

impl PortWatch {
    fn start(pids: Vec<u32>) -> PortWatch {
        let seen = Arc::new(Mutex::new(vec![HashSet::new(); pids.len()]));
        let stop = tokio_util::sync::CancellationToken::new();
        let (s, t) = (seen.clone(), stop.clone());
        tokio::spawn(async move {
            while !t.is_cancelled() {
                for (i, pid) in pids.iter().enumerate() {
                    let ports = tcp_ports_of(*pid);
                    s.lock().unwrap()[i].extend(ports);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        PortWatch { seen, stop }
    }

    /// Every port seen so far per process, including the ones held right now.
    fn ports(&self, pids: &[u32]) -> Vec<HashSet<u16>> {
        let mut seen = self.seen.lock().unwrap().clone();
        for (i, pid) in pids.iter().enumerate() {
            seen[i].extend(tcp_ports_of(*pid));
        }
        seen
    }
}

impl Drop for PortWatch {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

// ---------------------------------------------------------------------------------------
// Configuration

/// One Broker with one Trigger selecting the tests' event type, written to `dir/herald.yaml`.
/// The Broker is put on Kafka by Knative's broker class, as a Knative manifest would.
fn write_config(dir: &Path, broker: &str, subscriber: &str) -> PathBuf {
    let yaml = format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: {broker}\n  \
         namespace: {NAMESPACE}\n  annotations:\n    eventing.knative.dev/broker.class: Kafka\n\
         ---\napiVersion: eventing.knative.dev/v1\nkind: Trigger\n\
         metadata:\n  name: all\n  namespace: {NAMESPACE}\nspec:\n  broker: {broker}\n  \
         filter:\n    attributes:\n      type: {EVENT_TYPE}\n  subscriber:\n    \
         uri: {subscriber}\n"
    );
    let path = dir.join("herald.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Sends fence events (one every 100 ms, through the replicas' ingresses in turn) until every
/// replica has delivered at least one, i.e. every replica holds partitions of the Trigger's
/// group and the rebalance is over; then waits until all fences have arrived and one commit
/// interval more, so the main load starts on a settled group. Returns the fences sent and
/// how long it took.
async fn wait_until_all_replicas_deliver(
    sink: &Sink,
    replicas: &[Replica],
    limit: Duration,
) -> (HashSet<String>, Duration) {
    let started = Instant::now();
    let publisher = Publisher::new(SOURCE);
    let mut fences = HashSet::new();
    let mut seen = vec![false; replicas.len()];
    let mut i = 0usize;
    while !seen.iter().all(|s| *s) {
        assert!(
            started.elapsed() < limit,
            "not every replica delivered within {limit:?} (delivered: {seen:?}); logs:\n{}",
            replicas
                .iter()
                .map(|r| format!("--- {}\n{}", r.proc.name, r.proc.log_tail()))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let id = format!("fence-{i}");
        let url = &replicas[i % replicas.len()].broker_url;
        let r = publisher.post(url, &id, &[]).await.unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{id}");
        fences.insert(id);
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let ports = ports_of(replicas);
        let records = sink.records();
        for (r, who) in records.iter().zip(attribute(&records, &ports)) {
            if r.id.starts_with("fence-") {
                if let Some(w) = who {
                    seen[w] = true;
                }
            }
        }
    }
    sink.wait_for(&fences, limit, "fences").await;
    tokio::time::sleep(COMMIT_INTERVAL * 2).await;
    (fences, started.elapsed())
}

// ---------------------------------------------------------------------------------------
// 1. Replicas share a Trigger

#[test]
fn kafka_replicas_share_a_trigger_without_duplicates() {
    const TEST: &str = "kafka_replicas_share_a_trigger_without_duplicates";
    const REPLICAS: usize = 2;
    const EVENTS: usize = 800;
    run(async {
        let Some(mut tansu) = Tansu::start(TEST).await else {
            return;
        };
        let port = tansu.port;
        let started = Instant::now();
        let broker = "share";
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::start((0, 0)).await;
        let config = write_config(dir.path(), broker, &sink.url);
        let mut replicas = Vec::new();
        for r in 0..REPLICAS {
            replicas.push(
                start_replica(
                    &format!("replica-{r}"),
                    &config,
                    &dir.path().join(format!("data-{r}")),
                    port,
                    broker,
                    &[],
                )
                .await,
            );
        }
        let (fences, joined_after) =
            wait_until_all_replicas_deliver(&sink, &replicas, Duration::from_secs(60)).await;
        let before_load = sink.records().len();

        let pids: Vec<u32> = replicas.iter().map(|r| r.proc.pid()).collect();
        let watch = PortWatch::start(pids.clone());
        let sending = Instant::now();
        let (expected, send_time) = Publisher::new(SOURCE)
            .post_all_round_robin(&replicas, "share", EVENTS, 16)
            .await;
        sink.wait_for(&expected, Duration::from_secs(90), TEST)
            .await;
        let delivered_time = sending.elapsed();
        // Anything delivered twice would show up within a commit interval or two.
        tokio::time::sleep(COMMIT_INTERVAL * 2).await;

        let ports = watch.ports(&pids);
        let records = sink.records();
        let load: Vec<Received> = records[before_load..]
            .iter()
            .filter(|r| !r.id.starts_with("fence-"))
            .cloned()
            .collect();
        let (per_replica, unattributed) = count_per_replica(&load, &ports);
        let counts = sink.counts();
        let dups: usize = expected
            .iter()
            .map(|id| counts.get(id).copied().unwrap_or(0).saturating_sub(1))
            .sum();
        let fence_dups: usize = fences
            .iter()
            .map(|id| counts.get(id).copied().unwrap_or(0).saturating_sub(1))
            .sum();
        let stray: Vec<&String> = counts
            .keys()
            .filter(|id| !expected.contains(*id) && !fences.contains(*id))
            .collect();
        eprintln!(
            "{TEST}: {REPLICAS} replicas all delivering after {joined_after:?} ({} fences, \
             {fence_dups} fence duplicates); {EVENTS} events over {REPLICAS} ingresses in \
             {send_time:?} (all delivered {delivered_time:?}); {} deliveries of the load, \
             duplicates {dups}; per replica {per_replica:?}, unattributed {unattributed}; \
             total {:?}",
            fences.len(),
            load.len(),
            started.elapsed()
        );
        assert_all_alive(&mut replicas);
        tansu.assert_alive();
        assert!(stray.is_empty(), "unexpected ids delivered: {stray:?}");
        assert_eq!(dups, 0, "events delivered more than once");
        assert_eq!(load.len(), EVENTS, "every event exactly once");
        for (i, n) in per_replica.iter().enumerate() {
            assert!(
                *n > 0,
                "replica {i} delivered nothing (per replica {per_replica:?}, unattributed \
                 {unattributed})"
            );
        }
    });
}

// ---------------------------------------------------------------------------------------
// 2. A replica dies mid-load

/// A replica is SIGKILLed mid-load and nothing replaces it: the survivor must take over its
/// partitions once its session times out and redeliver its uncommitted tail.
///
/// Ignored: fails on tansu 0.6.0, whose group coordinator never reassigns an expired member's
/// partitions. In tansu-broker 0.6.0 `coordinator/group/administrator.rs`, the heartbeat of a
/// *formed* group calls `missed_heartbeat`, which drops the expired member from `members`
/// and answers RebalanceInProgress, but leaves the group Formed with the old assignments;
/// the survivor's re-join (same member id and metadata) is answered from that formed state,
/// and its SyncGroup returns its old half of the partitions. The dead member's partitions
/// stay with nobody, and 40–50% of the accepted events are never delivered (observed in 5 of
/// 5 runs, with either replica first to join). Run it with `--ignored` against a Kafka-API
/// broker that rebalances on member expiry (Apache Kafka, Redpanda; TANSU_BIN may point at
/// a wrapper script), or once tansu fixes this.
#[test]
#[ignore = "tansu 0.6.0 does not reassign an expired member's partitions (see the doc comment)"]
fn killing_a_kafka_replica_mid_load_loses_nothing() {
    const TEST: &str = "killing_a_kafka_replica_mid_load_loses_nothing";
    run(kill_a_replica_mid_load(TEST, None));
}

/// A replica is SIGKILLed mid-load and, as a Kubernetes Deployment would, a replacement
/// starts once the dead one's session has expired: the group rebalances over the survivor
/// and the replacement, and the dead replica's in-flight (uncommitted) events are delivered
/// again. On tansu 0.6.0 a joining member is what makes the group rebalance (see above).
#[test]
fn killed_kafka_replica_replaced_mid_load_loses_nothing() {
    const TEST: &str = "killed_kafka_replica_replaced_mid_load_loses_nothing";
    run(kill_a_replica_mid_load(
        TEST,
        Some(SESSION_TIMEOUT + Duration::from_secs(2)),
    ));
}

/// Two replicas share a Trigger; one is SIGKILLed while it has deliveries in flight; with
/// `replace_after`, a third replica starts that long after the kill. Every accepted event
/// must arrive, and some of the victim's in-flight deliveries must arrive again.
async fn kill_a_replica_mid_load(test: &str, replace_after: Option<Duration>) {
    const EVENTS: usize = 600;
    let Some(mut tansu) = Tansu::start(test).await else {
        return;
    };
    let port = tansu.port;
    let started = Instant::now();
    let broker = "kill";
    let dir = tempfile::tempdir().unwrap();
    // Slow-ish subscriber and few deliveries per replica: the load lasts a while and the
    // victim always has deliveries in flight.
    let sink = Sink::start((10, 10)).await;
    let config = write_config(dir.path(), broker, &sink.url);
    let extra = [
        "--max-in-flight",
        "8",
        "--kafka-consumer-config",
        "max.poll.interval.ms=10000",
    ];
    let survivor = start_replica(
        "survivor",
        &config,
        &dir.path().join("data-survivor"),
        port,
        broker,
        &extra,
    )
    .await;
    let victim = start_replica(
        "victim",
        &config,
        &dir.path().join("data-victim"),
        port,
        broker,
        &extra,
    )
    .await;
    let mut replicas = vec![victim, survivor];
    let (_, joined_after) =
        wait_until_all_replicas_deliver(&sink, &replicas, Duration::from_secs(60)).await;
    let before_load = sink.records().len();

    let urls: Vec<String> = replicas.iter().map(|r| r.broker_url.clone()).collect();
    let ids: Vec<String> = (0..EVENTS).map(|i| format!("kill-{i}")).collect();
    let sending = tokio::spawn(async move {
        Publisher::new(SOURCE)
            .post_round_robin(&urls, ids, 16)
            .await
    });

    // Kill the victim once it has delivered some of the load and has deliveries in flight.
    let in_flight_at_kill = sink
        .wait_victim_busy(replicas[0].proc.pid(), before_load)
        .await;
    replicas[0].proc.kill();
    let killed_at = Instant::now();
    eprintln!(
        "{test}: victim killed at {:?} (since the epoch)",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
    );
    let delivered_at_kill = sink.counts().len();
    let records_at_kill = sink.records().len();
    // A replacement, as a Deployment would start, once the victim's session has expired.
    if let Some(after) = replace_after {
        tokio::time::sleep(after).await;
        let replacement = start_replica(
            "replacement",
            &config,
            &dir.path().join("data-replacement"),
            port,
            broker,
            &extra,
        )
        .await;
        replicas.push(replacement);
    }

    let posted = sending.await.unwrap();
    assert!(
        posted.refused.is_empty(),
        "{} events refused by every ingress, e.g. {:?}",
        posted.refused.len(),
        posted.refused.first()
    );
    let accepted: HashSet<String> = posted.accepted.iter().cloned().collect();
    // The victim's partitions move to the survivor once its session times out; the
    // survivor resumes them from the last committed (contiguous acknowledged) offsets.
    let limit = SESSION_TIMEOUT + COMMIT_INTERVAL + Duration::from_secs(60);
    sink.wait_for_or(&accepted, limit, test, || {
        let logs: Vec<String> = replicas[1..]
            .iter()
            .map(|r| format!("--- {}\n{}", r.proc.name, r.proc.log_tail()))
            .collect();
        format!("{}\n--- tansu\n{}", logs.join("\n"), tansu.log_tail())
    })
    .await;
    let recovered_after = killed_at.elapsed();

    let counts = sink.counts();
    let load_counts: HashMap<&String, usize> = accepted
        .iter()
        .map(|id| (id, counts.get(id).copied().unwrap_or(0)))
        .collect();
    let dups: usize = load_counts.values().map(|n| n.saturating_sub(1)).sum();
    let redelivered_in_flight = in_flight_at_kill
        .iter()
        .filter(|id| counts.get(*id).copied().unwrap_or(0) > 1)
        .count();
    // Deliveries after the kill, per live replica (survivor, then any replacement).
    let after_kill: Vec<usize> = replicas[1..]
        .iter()
        .map(|r| {
            let ports = tcp_ports_of(r.proc.pid());
            sink.records()
                .iter()
                .skip(records_at_kill)
                .filter(|d| ports.contains(&d.peer.port()))
                .count()
        })
        .collect();
    eprintln!(
        "{test}: both replicas delivering after {joined_after:?}; {} of {EVENTS} events \
         accepted ({} posts failed over to the survivor's ingress); victim killed with {} \
         deliveries in flight and {delivered_at_kill} distinct ids delivered overall; \
         everything delivered {recovered_after:?} after the kill (session timeout \
         {SESSION_TIMEOUT:?}); duplicates {dups}, of which {redelivered_in_flight} of the \
         victim's in-flight deliveries were redelivered; deliveries after the kill by the \
         survivor and any replacement {after_kill:?}; total {:?}",
        accepted.len(),
        posted.failovers,
        in_flight_at_kill.len(),
        started.elapsed()
    );
    assert_all_alive(&mut replicas[1..]);
    tansu.assert_alive();
    assert!(
        delivered_at_kill < accepted.len(),
        "the load was over before the kill"
    );
    // The victim could not acknowledge (let alone commit) what it was delivering when
    // killed: its partitions' next owner must have delivered those events again.
    assert!(
        redelivered_in_flight > 0,
        "none of the victim's in-flight deliveries {in_flight_at_kill:?} was redelivered"
    );
}

// ---------------------------------------------------------------------------------------
// 3. Kafka restarts

#[test]
fn kafka_broker_restart_gives_503_then_recovers() {
    const TEST: &str = "kafka_broker_restart_gives_503_then_recovers";
    run(async {
        let Some(mut tansu) = Tansu::start(TEST).await else {
            return;
        };
        let port = tansu.port;
        let started = Instant::now();
        let broker = "restart";
        let dir = tempfile::tempdir().unwrap();
        let sink = Sink::start((0, 0)).await;
        let config = write_config(dir.path(), broker, &sink.url);
        let mut herald = start_replica(
            "herald",
            &config,
            &dir.path().join("data"),
            port,
            broker,
            &[],
        )
        .await;
        let replicas = std::slice::from_ref(&herald);
        let (fences, _) =
            wait_until_all_replicas_deliver(&sink, replicas, Duration::from_secs(60)).await;
        let publisher = Publisher::new(SOURCE);
        let mut accepted: HashSet<String> = fences;
        accepted.extend(
            publisher
                .post_accepted(&herald.broker_url, "before", 20, "with Kafka up")
                .await,
        );
        sink.wait_for(&accepted, Duration::from_secs(30), "before the restart")
            .await;
        // ... and committed.
        tokio::time::sleep(COMMIT_INTERVAL * 2).await;

        // Kafka goes away: ingress refuses with 503 + Retry-After, and herald stays up.
        tansu.kill();
        let outage = Instant::now();
        let refused = refused_while_down(&publisher, &mut herald, "Kafka").await;

        // Kafka comes back on the same port and store: herald recovers by itself.
        tansu.restart().await;
        let outage_time = outage.elapsed();
        let back = Instant::now();
        let (first, retries_503) =
            post_until_accepted(&publisher, &herald, "Kafka", Duration::from_secs(60)).await;
        let reaccepting = back.elapsed();
        accepted.insert(first);
        accepted.extend(
            publisher
                .post_accepted(&herald.broker_url, "later", 50, "after recovery")
                .await,
        );
        sink.wait_for(&accepted, Duration::from_secs(90), "after the restart")
            .await;
        let redelivered = back.elapsed();
        // A late delivery of a refused event would show up within a couple of commit
        // intervals of the rest.
        tokio::time::sleep(COMMIT_INTERVAL * 3).await;
        let counts = sink.counts();
        let redelivered_before = counts
            .iter()
            .filter(|(id, n)| id.starts_with("before-") && **n > 1)
            .count();
        let late_503 = refused
            .iter()
            .filter(|(id, _, _)| counts.contains_key(id))
            .count();
        eprintln!(
            "{TEST}: outage {outage_time:?}; 503 answers took {:?} (Retry-After {:?} s); after \
             restart: {retries_503} more 503s, first 202 after {reaccepting:?}, all {} accepted \
             events delivered after {redelivered:?}; duplicates {} ({redelivered_before} of the \
             20 events committed before the crash were delivered again); {late_503} of the 3 \
             events answered 503 were delivered anyway; total {:?}",
            refused.iter().map(|r| r.1).collect::<Vec<_>>(),
            refused.iter().map(|r| r.2).collect::<Vec<_>>(),
            accepted.len(),
            duplicates(&counts),
            started.elapsed()
        );
        assert!(
            herald.proc.alive(),
            "herald died:\n{}",
            herald.proc.log_tail()
        );
        // The first refusal waited out the publish timeout, and Kafka may have stored the
        // record anyway (at-least-once allows that). The others were refused by the circuit
        // without reaching librdkafka: they must never be stored.
        let stored_anyway: Vec<&String> = refused[1..]
            .iter()
            .map(|(id, _, _)| id)
            .filter(|id| counts.contains_key(*id))
            .collect();
        assert!(
            stored_anyway.is_empty(),
            "events refused at once while Kafka was down were delivered: {stored_anyway:?}"
        );
        drop(tansu);
    });
}
