//! Herald scaled out on NATS JetStream, as separate `herald serve` processes: replicas share
//! a Trigger's deliveries without duplicates, a replica killed mid-load loses nothing, a NATS
//! restart is survived (ingress answers 503 + Retry-After meanwhile), and an ordered Trigger
//! keeps per-key order while different keys are delivered concurrently.
//!
//! Needs NATS with JetStream on 127.0.0.1:4222, and /usr/sbin/nats-server for the restart
//! test. With CI=true a missing NATS fails these tests; otherwise they are skipped with a
//! printed notice. Every test uses its own namespace/broker (so its own stream) and deletes
//! the stream at the end. The tests run one at a time: they start several processes each.

mod replicas;

use axum::http::StatusCode;
use replicas::servers::*;
use replicas::*;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

const NATS_SERVER: &str = "/usr/sbin/nats-server";
/// JetStream's redelivery delay for unacknowledged messages in the replica-kill test
/// (`herald serve --nats-ack-wait`; the default is 30 s).
const ACK_WAIT: Duration = Duration::from_secs(5);
const ACK_WAIT_FLAG: &str = "PT5S";

/// The ce-source of the tests' events.
const SOURCE: &str = "/herald/tests/nats-replicas";

/// Namespace of this test run: stream names never collide with other runs' leftovers.
fn namespace() -> String {
    format!("nr-{}", std::process::id())
}

// ---------------------------------------------------------------------------------------
// Replicas

/// `herald serve` arguments putting every Broker on NATS.
const ON_NATS: [&str; 2] = ["--channel", "nats"];

/// `herald serve` with NATS at `nats_url`, and `extra` arguments.
async fn start_replica(
    name: &str,
    config: &Path,
    data_dir: &Path,
    nats_url: &str,
    broker: (&str, &str),
    extra: &[&str],
) -> Replica {
    let mut args = vec!["--nats-url", nats_url];
    args.extend_from_slice(extra);
    Replica::start(name, config, data_dir, broker, &args).await
}

// ---------------------------------------------------------------------------------------
// Configuration

fn broker_yaml(namespace: &str, broker: &str, annotate_nats: bool) -> String {
    let annotations = if annotate_nats {
        "  annotations:\n    herald.dev/channel: nats\n"
    } else {
        ""
    };
    format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: {broker}\n  namespace: {namespace}\n{annotations}"
    )
}

fn trigger_yaml(
    namespace: &str,
    broker: &str,
    trigger: &str,
    subscriber: &str,
    annotations: &[(&str, &str)],
) -> String {
    let mut meta = format!("metadata:\n  name: {trigger}\n  namespace: {namespace}\n");
    if !annotations.is_empty() {
        meta.push_str("  annotations:\n");
        for (k, v) in annotations {
            meta.push_str(&format!("    {k}: {v}\n"));
        }
    }
    format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\n{meta}spec:\n  broker: {broker}\n  \
         filter:\n    attributes:\n      type: {EVENT_TYPE}\n  subscriber:\n    uri: {subscriber}\n"
    )
}

fn write_config(dir: &Path, docs: &[String]) {
    std::fs::write(dir.join("herald.yaml"), docs.join("---\n")).unwrap();
}

// ---------------------------------------------------------------------------------------
// NATS streams

/// Waits until every consumer of `stream` has nothing pending nor unacknowledged.
async fn wait_all_acked(url: &str, stream: &str, limit: Duration) -> (u64, usize) {
    let end = Instant::now() + limit;
    loop {
        let (messages, consumers) = stream_state(url, stream).await;
        assert!(!consumers.is_empty(), "stream {stream} has no consumer");
        if consumers.values().all(|&(p, a)| p == 0 && a == 0) {
            return (messages, consumers.len());
        }
        assert!(
            Instant::now() < end,
            "stream {stream}: consumers still hold work after {limit:?}: {consumers:?} (pending, ack pending)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------
// 1. Replicas share a Trigger

#[test]
fn replicas_share_a_trigger_without_duplicates() {
    const TEST: &str = "replicas_share_a_trigger_without_duplicates";
    const REPLICAS: usize = 3;
    const EVENTS: usize = 3000;
    if !shared_nats_available(TEST) {
        return;
    }
    run(async {
        let started = Instant::now();
        let (ns, broker) = (namespace(), "share");
        let stream = stream_name(&ns, broker);
        let _cleanup = StreamCleanup::new(NATS_URL, stream.clone());
        let sink = Sink::start((0, 0)).await;
        let dir = tempfile::tempdir().unwrap();
        write_config(
            dir.path(),
            &[
                broker_yaml(&ns, broker, false),
                trigger_yaml(&ns, broker, "all", &sink.url, &[]),
            ],
        );
        let mut replicas = Vec::new();
        for r in 0..REPLICAS {
            let data = dir.path().join(format!("data-{r}"));
            replicas.push(
                start_replica(
                    &format!("replica-{r}"),
                    &dir.path().join("herald.yaml"),
                    &data,
                    NATS_URL,
                    (&ns, broker),
                    &ON_NATS,
                )
                .await,
            );
        }
        let sending = Instant::now();
        let (expected, send_time) = Publisher::new(SOURCE)
            .post_all_round_robin(&replicas, "share", EVENTS, 32)
            .await;
        sink.wait_for(&expected, Duration::from_secs(60), TEST)
            .await;
        let delivered_time = sending.elapsed();
        // Acknowledged in NATS too: nothing is pending for the Trigger's durable consumer.
        let (messages, consumers) =
            wait_all_acked(NATS_URL, &stream, Duration::from_secs(30)).await;

        // Which replica delivered what: the subscriber saw each replica's connections.
        let ports = ports_of(&replicas);
        let records = sink.records();
        let (per_replica, unattributed) = count_per_replica(&records, &ports);
        let counts = sink.counts();
        let dups = duplicates(&counts);
        let stray: Vec<&String> = counts.keys().filter(|id| !expected.contains(*id)).collect();
        eprintln!(
            "{TEST}: {EVENTS} events over {REPLICAS} ingresses in {send_time:?} (all delivered \
             {delivered_time:?}); received {} deliveries of {} distinct ids, duplicates {dups}; \
             per replica {per_replica:?}, unattributed {unattributed}; stream {stream}: {messages} \
             messages, {consumers} consumer(s), total {:?}",
            records.len(),
            counts.len(),
            started.elapsed()
        );
        assert_all_alive(&mut replicas);
        assert!(stray.is_empty(), "unexpected ids delivered: {stray:?}");
        assert_eq!(dups, 0, "events delivered more than once");
        assert_eq!(counts.len(), EVENTS);
        assert_eq!(messages, EVENTS as u64, "stream {stream} holds every event");
        assert_eq!(consumers, 1, "one durable consumer shared by the replicas");
        for (i, n) in per_replica.iter().enumerate() {
            assert!(
                *n > 0,
                "replica {i} delivered nothing (per replica {per_replica:?}, unattributed {unattributed})"
            );
        }
    });
}

// ---------------------------------------------------------------------------------------
// 2. A replica dies mid-load

#[test]
fn killing_a_replica_mid_load_loses_nothing() {
    const TEST: &str = "killing_a_replica_mid_load_loses_nothing";
    const EVENTS: usize = 1500;
    if !shared_nats_available(TEST) {
        return;
    }
    run(async {
        let started = Instant::now();
        let (ns, broker) = (namespace(), "kill");
        let stream = stream_name(&ns, broker);
        let _cleanup = StreamCleanup::new(NATS_URL, stream.clone());
        // Slow-ish subscriber and few deliveries per replica: the load lasts a while and the
        // victim always has deliveries in flight.
        let sink = Sink::start((10, 10)).await;
        let dir = tempfile::tempdir().unwrap();
        write_config(
            dir.path(),
            &[
                broker_yaml(&ns, broker, false),
                trigger_yaml(&ns, broker, "all", &sink.url, &[]),
            ],
        );
        let config = dir.path().join("herald.yaml");
        let mut victim = start_replica(
            "victim",
            &config,
            &dir.path().join("data-victim"),
            NATS_URL,
            (&ns, broker),
            &[
                "--channel",
                "nats",
                "--max-in-flight",
                "8",
                "--nats-ack-wait",
                ACK_WAIT_FLAG,
            ],
        )
        .await;
        let mut survivor = start_replica(
            "survivor",
            &config,
            &dir.path().join("data-survivor"),
            NATS_URL,
            (&ns, broker),
            &[
                "--channel",
                "nats",
                "--max-in-flight",
                "8",
                "--nats-ack-wait",
                ACK_WAIT_FLAG,
            ],
        )
        .await;
        let urls = vec![victim.broker_url.clone(), survivor.broker_url.clone()];
        let ids: Vec<String> = (0..EVENTS).map(|i| format!("kill-{i}")).collect();
        let sending = tokio::spawn(async move {
            Publisher::new(SOURCE)
                .post_round_robin(&urls, ids, 16)
                .await
        });

        // Kill the victim once it has delivered some events and has deliveries in flight.
        let in_flight_at_kill = sink.wait_victim_busy(victim.proc.pid(), 0).await;
        victim.proc.kill();
        let killed_at = Instant::now();
        let delivered_at_kill = sink.counts().len();

        let posted = sending.await.unwrap();
        assert!(
            posted.refused.is_empty(),
            "{} events refused by every ingress, e.g. {:?}",
            posted.refused.len(),
            posted.refused.first()
        );
        let accepted: HashSet<String> = posted.accepted.iter().cloned().collect();
        // The victim's unacknowledged events come back after ack_wait.
        sink.wait_for(&accepted, 2 * ACK_WAIT + Duration::from_secs(20), TEST)
            .await;
        let recovered_after = killed_at.elapsed();
        let (messages, _) = wait_all_acked(NATS_URL, &stream, Duration::from_secs(30)).await;

        let counts = sink.counts();
        let dups = duplicates(&counts);
        let redelivered_in_flight = in_flight_at_kill
            .iter()
            .filter(|id| counts.get(*id).copied().unwrap_or(0) > 1)
            .count();
        eprintln!(
            "{TEST}: {} of {EVENTS} events accepted ({} posts failed over to the survivor's \
             ingress); victim killed with {} deliveries in flight and {delivered_at_kill} events \
             delivered overall; everything delivered {recovered_after:?} after the kill \
             (ack_wait {ACK_WAIT:?}); {} deliveries, duplicates {dups}, of which \
             {redelivered_in_flight} were the victim's in-flight deliveries redelivered by the \
             survivor; stream holds {messages} messages ({} published twice: stored by the victim, \
             which died before answering 202, then re-posted); total {:?}",
            accepted.len(),
            posted.failovers,
            in_flight_at_kill.len(),
            sink.records().len(),
            messages.saturating_sub(accepted.len() as u64),
            started.elapsed()
        );
        assert!(
            survivor.proc.alive(),
            "the survivor died:\n{}",
            survivor.proc.log_tail()
        );
        assert!(
            delivered_at_kill < accepted.len(),
            "the load was over before the kill"
        );
        // The victim could not acknowledge what it was delivering when killed: JetStream must
        // have handed those events to the survivor.
        assert!(
            redelivered_in_flight > 0,
            "none of the victim's in-flight deliveries {in_flight_at_kill:?} was redelivered"
        );
    });
}

// ---------------------------------------------------------------------------------------
// 3. NATS restarts

/// A private nats-server with JetStream on `port`, storing in `dir`.
async fn start_private_nats(port: u16, dir: &Path) -> Proc {
    let port = port.to_string();
    let mut nats = Proc::spawn(
        "nats-server",
        NATS_SERVER,
        &[
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            &port,
            "-sd",
            dir.to_str().unwrap(),
        ],
    );
    nats.wait_line("Server is ready").await;
    nats
}

#[test]
fn nats_restart_is_survived_and_ingress_answers_503_meanwhile() {
    const TEST: &str = "nats_restart_is_survived_and_ingress_answers_503_meanwhile";
    if !available(TEST, NATS_SERVER, Path::new(NATS_SERVER).exists()) {
        return;
    }
    run(async {
        let started = Instant::now();
        let (ns, broker) = (namespace(), "restart");
        let sink = Sink::start((0, 0)).await;
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("nats-store");
        let port = free_port();
        let nats_url = format!("nats://127.0.0.1:{port}");
        let mut nats = start_private_nats(port, &store).await;
        write_config(
            dir.path(),
            &[
                broker_yaml(&ns, broker, false),
                trigger_yaml(&ns, broker, "all", &sink.url, &[]),
            ],
        );
        let mut herald = start_replica(
            "herald",
            &dir.path().join("herald.yaml"),
            &dir.path().join("data"),
            &nats_url,
            (&ns, broker),
            &ON_NATS,
        )
        .await;
        let publisher = Publisher::new(SOURCE);
        let mut accepted: HashSet<String> = publisher
            .post_accepted(&herald.broker_url, "before", 20, "with NATS up")
            .await
            .into_iter()
            .collect();
        sink.wait_for(&accepted, Duration::from_secs(30), "before the restart")
            .await;
        // ... and acknowledged, so redeliveries after the restart are NATS's doing, not acks
        // still on their way.
        wait_all_acked(
            &nats_url,
            &stream_name(&ns, broker),
            Duration::from_secs(30),
        )
        .await;

        // NATS goes away: ingress refuses with 503 + Retry-After, and herald stays up.
        nats.kill();
        let outage = Instant::now();
        let refused = refused_while_down(&publisher, &mut herald, "NATS").await;

        // NATS comes back on the same port and store: herald recovers by itself.
        let mut nats = start_private_nats(port, &store).await;
        let outage_time = outage.elapsed();
        let back = Instant::now();
        let (first, retries_503) =
            post_until_accepted(&publisher, &herald, "NATS", Duration::from_secs(30)).await;
        let reaccepting = back.elapsed();
        accepted.insert(first);
        accepted.extend(
            publisher
                .post_accepted(&herald.broker_url, "later", 50, "after recovery")
                .await,
        );
        sink.wait_for(&accepted, Duration::from_secs(60), "after the restart")
            .await;
        let redelivered = back.elapsed();
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
             events delivered after {redelivered:?}; duplicates {} ({redelivered_before} of the 20 \
             events NATS had reported acknowledged before the crash were delivered again); \
             {late_503} of the 3 events answered 503 were delivered anyway (published once the \
             connection came back); total {:?}",
            refused.iter().map(|r| r.1).collect::<Vec<_>>(),
            refused.iter().map(|r| r.2).collect::<Vec<_>>(),
            accepted.len(),
            duplicates(&counts),
            started.elapsed()
        );
        assert!(herald.proc.alive());
        herald.proc.kill();
        nats.kill();
    });
}

// ---------------------------------------------------------------------------------------
// 4. Ordered delivery

const ORDER_ANNOTATION: &str = "kafka.eventing.knative.dev/delivery.order";
const KEYS: usize = 10;
const PER_KEY: u64 = 50;

struct OrderingRun {
    /// Per key, the sequence numbers in arrival order.
    arrivals: BTreeMap<String, Vec<u64>>,
    max_keys_in_flight: usize,
    max_same_key_in_flight: usize,
    inversions: usize,
    duplicates: usize,
    took: Duration,
}

/// One herald on a NATS Broker (chosen by annotation), one Trigger (ordered or not), a
/// subscriber with random 0-8 ms delays; KEYS keys sent concurrently, each key's events in
/// sequence (the next one is posted once the previous got 202).
async fn ordering_case(broker: &str, ordered: bool) -> OrderingRun {
    let started = Instant::now();
    let ns = namespace();
    let _cleanup = StreamCleanup::new(NATS_URL, stream_name(&ns, broker));
    let sink = Sink::start((0, 8)).await;
    let dir = tempfile::tempdir().unwrap();
    let annotations: &[(&str, &str)] = if ordered {
        &[(ORDER_ANNOTATION, "ordered")]
    } else {
        &[]
    };
    write_config(
        dir.path(),
        &[
            broker_yaml(&ns, broker, true),
            trigger_yaml(&ns, broker, "keyed", &sink.url, annotations),
        ],
    );
    // No --channel: the Broker picks NATS by its annotation (the server default is sled).
    let Replica {
        proc: mut herald,
        broker_url: url,
        ..
    } = start_replica(
        "herald",
        &dir.path().join("herald.yaml"),
        &dir.path().join("data"),
        NATS_URL,
        (&ns, broker),
        &[],
    )
    .await;
    assert!(
        herald.find_line("channel=nats").is_some(),
        "the Broker is not on NATS:\n{}",
        herald.log_tail()
    );

    let publisher = Publisher::new(SOURCE);
    let mut senders = tokio::task::JoinSet::new();
    for k in 0..KEYS {
        let (publisher, url) = (publisher.clone(), url.clone());
        senders.spawn(async move {
            let key = format!("key-{k}");
            for seq in 0..PER_KEY {
                let id = format!("{key}-{seq}");
                let ext = [("partitionkey", key.clone()), ("seq", seq.to_string())];
                let r = publisher.post(&url, &id, &ext).await.unwrap();
                assert_eq!(r.status(), StatusCode::ACCEPTED, "{id}");
            }
        });
    }
    while let Some(r) = senders.join_next().await {
        r.unwrap();
    }
    let expected: HashSet<String> = (0..KEYS)
        .flat_map(|k| (0..PER_KEY).map(move |s| format!("key-{k}-{s}")))
        .collect();
    sink.wait_for(&expected, Duration::from_secs(60), broker)
        .await;
    assert!(herald.alive(), "herald died:\n{}", herald.log_tail());

    let mut arrivals: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for r in sink.records() {
        arrivals.entry(r.key).or_default().push(r.seq);
    }
    let inversions = arrivals
        .values()
        .map(|seqs| seqs.windows(2).filter(|w| w[1] < w[0]).count())
        .sum();
    let (max_keys_in_flight, max_same_key_in_flight) = sink.concurrency();
    OrderingRun {
        arrivals,
        max_keys_in_flight,
        max_same_key_in_flight,
        inversions,
        duplicates: duplicates(&sink.counts()),
        took: started.elapsed(),
    }
}

#[test]
fn ordered_delivery_keeps_per_key_order_under_concurrency() {
    const TEST: &str = "ordered_delivery_keeps_per_key_order_under_concurrency";
    if !shared_nats_available(TEST) {
        return;
    }
    run(async {
        let run = ordering_case("ordered", true).await;
        eprintln!(
            "{TEST}: {KEYS} keys x {PER_KEY} events; per-key inversions {}, duplicates {}, most \
             keys in flight at once {}, most deliveries of one key in flight {}, took {:?}",
            run.inversions,
            run.duplicates,
            run.max_keys_in_flight,
            run.max_same_key_in_flight,
            run.took
        );
        let in_order: Vec<u64> = (0..PER_KEY).collect();
        for (key, seqs) in &run.arrivals {
            assert_eq!(
                seqs, &in_order,
                "{key}: arrival order differs from send order (annotation {ORDER_ANNOTATION}: ordered)"
            );
        }
        assert_eq!(run.arrivals.len(), KEYS);
        assert_eq!(
            run.max_same_key_in_flight, 1,
            "an ordered Trigger had several deliveries of one key in flight"
        );
        assert!(
            run.max_keys_in_flight >= 2,
            "different keys were never delivered concurrently (ordered must be per key, not global)"
        );
    });
}

/// Control: without the annotation the Trigger may reorder a key's events; nothing is
/// asserted about order, only that everything arrives.
#[test]
fn unordered_delivery_control_may_reorder() {
    const TEST: &str = "unordered_delivery_control_may_reorder";
    if !shared_nats_available(TEST) {
        return;
    }
    run(async {
        let run = ordering_case("unordered", false).await;
        eprintln!(
            "{TEST}: {KEYS} keys x {PER_KEY} events; per-key inversions {}, duplicates {}, most \
             keys in flight at once {}, most deliveries of one key in flight {}, took {:?}",
            run.inversions,
            run.duplicates,
            run.max_keys_in_flight,
            run.max_same_key_in_flight,
            run.took
        );
        assert_eq!(run.arrivals.len(), KEYS);
    });
}
