//! The live routing plane over real processes: while a publisher sends events without pause,
//! the test edits the directory `herald serve --config` watches and checks, through the
//! admin API and two subscribers, that every change is applied at runtime with Knative's
//! semantics:
//!
//! (a) an added Trigger T2 starts at the head of its Broker: once it is Ready, every event
//!     accepted after that reaches it, and none accepted before its file was written does;
//! (b) a changed filter on T1 (`kind: a` -> `kind: b`) applies from the new
//!     `observedGeneration` on, T1 keeps its position (what it already skipped or delivered
//!     is not delivered again);
//! (b2) a changed subscriber on T1 applies from the new `observedGeneration` on, and T1
//!     keeps its position (nothing delivered to the old URI is delivered again to the new);
//! (c) a removed T2 stops at once: nothing reaches its subscriber after it is gone from the
//!     API, while T1 receives everything sent meanwhile;
//! (d) a removed Broker answers 404 at once, and T1 (still applied) drains everything its
//!     channel accepted before;
//! (e) the Broker added back answers 202 again, on the same channel, and T1 receives the new
//!     events; once the Broker and then T1 are removed, the channel is deleted (checked on
//!     NATS, where the stream is visible).
//!
//! At the end the set of ids T1 received must equal exactly the accepted events that matched
//! its filter when they were sent. The publisher's kinds change in epochs around the filter
//! change (a/b/c mixed, then a only, then c only while the change is applied, then mixed
//! again), so "matched at the time" never depends on a race.
//!
//! Run for the memory, sled, NATS and Kafka channels (Kafka on a private tansu with a fresh sqlite
//! store; NATS under a namespace unique to the run, so the stream is too, deleted after).

mod replicas;

use replicas::admin::*;
use replicas::servers::*;
use replicas::*;
use reqwest::StatusCode;
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The ce-source of the tests' events.
const SOURCE: &str = "/herald/tests/live-config";
/// The longest any one condition may take to come true.
const WAIT: Duration = Duration::from_secs(60);
/// `herald serve --max-in-flight`: few, so T1 lags behind a burst.
const MAX_IN_FLIGHT: usize = 4;
/// Events the publisher must have had accepted in a phase before the test moves on.
const PER_PHASE: usize = 30;
const BROKER: &str = "b";

// ---------------------------------------------------------------------------------------
// The publisher

/// One event the feed sent: its kind extension, the epoch of kinds it was sent in, when its
/// POST started and was answered, and the answer (0: no answer).
#[derive(Clone, Debug)]
struct Sent {
    id: String,
    kind: &'static str,
    epoch: usize,
    started: Instant,
    answered: Instant,
    status: u16,
    error: String,
}

impl Sent {
    fn accepted(&self) -> bool {
        self.status == 202
    }
}

struct Mode {
    epoch: usize,
    kinds: &'static [&'static str],
}

/// Posts events `ev-N` one after the other (every 10 ms) with the extension `kind` cycling
/// through the current mode's kinds, recording every answer.
struct Feed {
    sent: Arc<Mutex<Vec<Sent>>>,
    mode: Arc<Mutex<Mode>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Feed {
    fn start(url: String, kinds: &'static [&'static str]) -> Feed {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let mode = Arc::new(Mutex::new(Mode { epoch: 0, kinds }));
        let stop = CancellationToken::new();
        let publisher = Publisher::new(SOURCE);
        let task = tokio::spawn({
            let (sent, mode, stop) = (sent.clone(), mode.clone(), stop.clone());
            async move {
                let mut n = 0usize;
                while !stop.is_cancelled() {
                    let (epoch, kind) = {
                        let m = mode.lock().unwrap();
                        (m.epoch, m.kinds[n % m.kinds.len()])
                    };
                    let id = format!("ev-{n}");
                    let started = Instant::now();
                    let (status, error) =
                        match publisher.post(&url, &id, &[("kind", kind.into())]).await {
                            Ok(r) => (r.status().as_u16(), String::new()),
                            Err(e) => (0, e.to_string()),
                        };
                    sent.lock().unwrap().push(Sent {
                        id,
                        kind,
                        epoch,
                        started,
                        answered: Instant::now(),
                        status,
                        error,
                    });
                    n += 1;
                    // The publisher's pace (not synchronisation).
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
        Feed {
            sent,
            mode,
            stop,
            task,
        }
    }

    fn sent(&self) -> Vec<Sent> {
        self.sent.lock().unwrap().clone()
    }

    /// Switches to `kinds` and waits until an event of the new epoch has been answered: from
    /// then on every event is of the new epoch, and every earlier one has its answer.
    async fn switch(&self, kinds: &'static [&'static str]) -> usize {
        let epoch = {
            let mut m = self.mode.lock().unwrap();
            m.epoch += 1;
            m.kinds = kinds;
            m.epoch
        };
        until(
            WAIT,
            || self.sent().iter().any(|s| s.epoch == epoch),
            || format!("the publisher sent nothing in epoch {epoch}"),
        )
        .await;
        epoch
    }

    /// Waits until `n` events started after `after` and matching `which` have been
    /// accepted; returns them all.
    async fn wait_accepted(
        &self,
        after: Instant,
        n: usize,
        which: impl Fn(&Sent) -> bool,
        what: &str,
    ) -> Vec<Sent> {
        let pick = || -> Vec<Sent> {
            self.sent()
                .into_iter()
                .filter(|s| s.started > after && s.accepted() && which(s))
                .collect()
        };
        until(
            WAIT,
            || pick().len() >= n,
            || {
                let last = self.sent().last().cloned();
                format!("{what}: fewer than {n} events accepted; last sent: {last:?}")
            },
        )
        .await;
        pick()
    }

    /// Stops and returns everything sent.
    async fn stop(self) -> Vec<Sent> {
        self.stop.cancel();
        self.task.await.unwrap();
        let sent = self.sent.lock().unwrap().clone();
        sent
    }
}

fn ids(sent: &[Sent]) -> HashSet<String> {
    sent.iter().map(|s| s.id.clone()).collect()
}

/// POSTs `n` events `{prefix}-N` of `kind`, 8 at a time, each of which must be accepted.
async fn burst(url: &str, prefix: &str, kind: &str, n: usize) -> HashSet<String> {
    use futures::StreamExt;
    let publisher = Publisher::new(SOURCE);
    let results: Vec<(String, String)> = futures::stream::iter(0..n)
        .map(|i| {
            let publisher = publisher.clone();
            async move {
                let id = format!("{prefix}-{i}");
                let answer = match publisher.post(url, &id, &[("kind", kind.into())]).await {
                    Ok(r) if r.status() == StatusCode::ACCEPTED => String::new(),
                    Ok(r) => r.status().to_string(),
                    Err(e) => e.to_string(),
                };
                (id, answer)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let refused: Vec<_> = results.iter().filter(|(_, a)| !a.is_empty()).collect();
    assert!(refused.is_empty(), "burst events refused: {refused:?}");
    results.into_iter().map(|(id, _)| id).collect()
}

// ---------------------------------------------------------------------------------------
// The scenario

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Channel {
    Memory,
    Sled,
    Nats,
    Kafka,
}

impl Channel {
    fn name(self) -> &'static str {
        match self {
            Channel::Memory => "memory",
            Channel::Sled => "sled",
            Channel::Nats => "nats",
            Channel::Kafka => "kafka",
        }
    }
}

struct Files {
    config: PathBuf,
}

impl Files {
    fn path(&self, file: &str) -> PathBuf {
        self.config.join(file)
    }

    fn write(&self, file: &str, text: &str) {
        write_atomically(&self.path(file), text);
    }

    fn remove(&self, file: &str) {
        std::fs::remove_file(self.path(file)).unwrap();
    }
}

/// The whole scenario on `channel`; `args` are the backend's `herald serve` arguments.
async fn live_changes_lose_nothing(test: &str, channel: Channel, work: &Path, args: &[&str]) {
    let started = Instant::now();
    let ns = format!("lc-{}-{}", channel.name(), std::process::id());
    let files = Files {
        config: work.join("config"),
    };
    std::fs::create_dir_all(&files.config).unwrap();
    // T1's subscriber takes a while per event, so T1 lags behind a burst (see (d)).
    let sink1 = Sink::start((5, 15)).await;
    let sink2 = Sink::start((0, 0)).await;
    let broker_yaml = broker_yaml(&ns, BROKER, &[("herald.dev/channel", channel.name())]);
    // T1's subscriber moves from sink1's /events to its /v2 in (b2).
    let sink1_v2 = sink1.url.replace("/events", "/v2");
    let t1_to = |kind: &str, subscriber: &str| {
        trigger_yaml(
            &ns,
            "t1",
            BROKER,
            subscriber,
            &[("type", EVENT_TYPE), ("kind", kind)],
        )
    };
    let t1 = |kind: &str| t1_to(kind, &sink1.url);
    files.write("broker.yaml", &broker_yaml);
    files.write("t1.yaml", &t1("a"));
    let max_in_flight = MAX_IN_FLIGHT.to_string();
    let mut all_args = vec!["--max-in-flight", max_in_flight.as_str()];
    all_args.extend_from_slice(args);
    let mut herald = Replica::start(
        "herald",
        &files.config,
        &work.join("data"),
        (&ns, BROKER),
        &all_args,
    )
    .await;
    let on_channel = format!("channel={}", channel.name());
    assert!(
        herald.proc.find_line(&on_channel).is_some(),
        "the Broker is not on {}:\n{}",
        channel.name(),
        herald.proc.log_tail()
    );
    let admin = Admin::new(&herald.admin);
    let t1_obj = admin.wait_ready("triggers", &ns, "t1", WAIT).await;
    let t1_generation = generation(&t1_obj);
    let logs = |h: &Replica| format!("herald log:\n{}", h.proc.log_tail());

    let feed = Feed::start(herald.broker_url.clone(), &["a", "b", "c"]);
    until(
        WAIT,
        || sink1.records().len() >= 10,
        || format!("T1 received {} events", sink1.records().len()),
    )
    .await;

    // (a) Add T2, selecting every kind.
    let wrote_t2 = Instant::now();
    files.write(
        "t2.yaml",
        &trigger_yaml(&ns, "t2", BROKER, &sink2.url, &[("type", EVENT_TYPE)]),
    );
    admin.wait_ready("triggers", &ns, "t2", WAIT).await;
    let t2_ready = Instant::now();
    let t2_after_ready = feed
        .wait_accepted(t2_ready, PER_PHASE, |_| true, "after T2 was Ready")
        .await;
    sink2
        .wait_for_or(
            &ids(&t2_after_ready),
            WAIT,
            "(a) T2, events accepted after it was Ready",
            || logs(&herald),
        )
        .await;
    let t2_ready_after = t2_ready - wrote_t2;

    // (b) Change T1's filter from kind a to kind b. First a run of a-events, all of which
    // T1 must receive: T1 has then read everything before them (also the b-events its old
    // filter skipped). Then only c-events (matched by neither filter) while the change is
    // applied, then every kind again.
    let a_run = feed.switch(&["a"]).await;
    feed.wait_accepted(wrote_t2, PER_PHASE, |s| s.epoch == a_run, "a-run")
        .await;
    let c_only = feed.switch(&["c"]).await;
    let a_events: Vec<Sent> = feed
        .sent()
        .into_iter()
        .filter(|s| s.accepted() && s.kind == "a")
        .collect();
    sink1
        .wait_for_or(
            &ids(&a_events),
            WAIT,
            "(b) T1, every a-event before the change",
            || logs(&herald),
        )
        .await;
    let wrote_t1 = Instant::now();
    files.write("t1.yaml", &t1("b"));
    let changed = admin
        .wait("triggers", &ns, "t1", WAIT, "at its new generation", |o| {
            o.is_some_and(|o| {
                generation(o) > t1_generation && observed_generation(o) == generation(o)
            })
        })
        .await
        .expect("T1 present");
    let changed_at = Instant::now();
    let change_took = changed_at - wrote_t1;
    assert_eq!(
        generation(&changed),
        t1_generation + 1,
        "one filter change, one generation: {}",
        brief(&changed)
    );
    assert!(
        is_ready(&changed),
        "T1 after the change: {}",
        brief(&changed)
    );
    let mixed = feed.switch(&["a", "b", "c"]).await;
    let b_after_change = feed
        .wait_accepted(
            changed_at,
            PER_PHASE,
            |s| s.kind == "b",
            "b-events after the change",
        )
        .await;
    sink1
        .wait_for_or(
            &ids(&b_after_change),
            WAIT,
            "(b) T1, b-events after the change",
            || logs(&herald),
        )
        .await;

    // (b2) Change T1's subscriber: it keeps its position (nothing it delivered to the old
    // URI is delivered again to the new one) and delivers to the new URI from its new
    // observedGeneration on.
    let wrote_subscriber = Instant::now();
    files.write("t1.yaml", &t1_to("b", &sink1_v2));
    let moved = admin
        .wait(
            "triggers",
            &ns,
            "t1",
            WAIT,
            "at its third generation",
            |o| {
                o.is_some_and(|o| {
                    generation(o) == t1_generation + 2 && observed_generation(o) == generation(o)
                })
            },
        )
        .await
        .expect("T1 present");
    let moved_at = Instant::now();
    let move_took = moved_at - wrote_subscriber;
    assert!(is_ready(&moved), "T1 after the move: {}", brief(&moved));
    let b_after_move = feed
        .wait_accepted(
            moved_at,
            PER_PHASE,
            |s| s.kind == "b",
            "b-events after the subscriber change",
        )
        .await;
    sink1
        .wait_for_or(
            &ids(&b_after_move),
            WAIT,
            "(b2) T1, b-events after the subscriber change",
            || logs(&herald),
        )
        .await;

    // T2 has received everything accepted since it was Ready, across T1's changes.
    let t2_expected = feed
        .wait_accepted(t2_ready, PER_PHASE, |_| true, "after T2 was Ready")
        .await;
    sink2
        .wait_for_or(
            &ids(&t2_expected),
            WAIT,
            "T2, every event accepted since it was Ready",
            || logs(&herald),
        )
        .await;

    // (c) Remove T2.
    files.remove("t2.yaml");
    admin.wait_gone("triggers", &ns, "t2", WAIT).await;
    let t2_gone = Instant::now();
    let t2_records_at_removal = sink2.records().len();
    // Grace: T1 receives the b-events sent after the removal, so Herald has read them all
    // (and had every chance to deliver them to T2 as well).
    let b_after_removal = feed
        .wait_accepted(
            t2_gone,
            PER_PHASE,
            |s| s.kind == "b",
            "b-events after T2 was removed",
        )
        .await;
    sink1
        .wait_for_or(
            &ids(&b_after_removal),
            WAIT,
            "(c) T1, b-events after T2 was removed",
            || logs(&herald),
        )
        .await;
    let t2_records_after_grace = sink2.records().len();
    if channel == Channel::Nats {
        let (_, consumers) = stream_state(NATS_URL, &stream_name(&ns, BROKER)).await;
        assert_eq!(
            consumers.len(),
            1,
            "(c) T2's durable consumer is still in the stream: {consumers:?}"
        );
    }

    // (d) Remove the Broker right after a burst T1 has not worked through yet.
    let backlog = burst(&herald.broker_url, "burst", "b", 100).await;
    let removed_broker = Instant::now();
    files.remove("broker.yaml");
    admin.wait_gone("brokers", &ns, BROKER, WAIT).await;
    let broker_gone = Instant::now();
    let burst_delivered_at_removal = sink1
        .counts()
        .keys()
        .filter(|id| backlog.contains(*id))
        .count();
    let t1_orphaned = admin
        .wait("triggers", &ns, "t1", WAIT, "BrokerDoesNotExist", |o| {
            o.is_some_and(|o| condition_state(o, "BrokerReady").1 == "BrokerDoesNotExist")
        })
        .await
        .expect("T1 stays applied");
    assert_eq!(
        condition_state(&t1_orphaned, "Ready").0,
        "False",
        "T1 without its Broker: {}",
        brief(&t1_orphaned)
    );
    // Ingress refuses at once: the next event the publisher sends is answered 404.
    until(
        WAIT,
        || feed.sent().iter().any(|s| s.started > broker_gone),
        || "the publisher sent nothing after the Broker was removed".into(),
    )
    .await;
    // T1 drains what the channel accepted, while the Broker is gone.
    let accepted_b: HashSet<String> = feed
        .sent()
        .iter()
        .filter(|s| s.accepted() && s.kind == "b" && s.epoch >= mixed)
        .map(|s| s.id.clone())
        .chain(backlog.iter().cloned())
        .collect();
    sink1
        .wait_for_or(
            &accepted_b,
            WAIT,
            "(d) T1 draining the removed Broker's channel",
            || logs(&herald),
        )
        .await;

    if channel == Channel::Nats {
        assert!(
            stream_exists(NATS_URL, &stream_name(&ns, BROKER)).await,
            "(d) the removed Broker's stream was deleted while T1 still reads it"
        );
    }

    // (e) Add the Broker back.
    let wrote_broker_back = Instant::now();
    files.write("broker.yaml", &broker_yaml);
    admin.wait_ready("brokers", &ns, BROKER, WAIT).await;
    let broker_back = Instant::now();
    admin.wait_ready("triggers", &ns, "t1", WAIT).await;
    let b_after_return = feed
        .wait_accepted(
            broker_back,
            PER_PHASE,
            |s| s.kind == "b",
            "b-events after the Broker came back",
        )
        .await;
    sink1
        .wait_for_or(
            &ids(&b_after_return),
            WAIT,
            "(e) T1, b-events after the Broker came back",
            || logs(&herald),
        )
        .await;
    let sent = feed.stop().await;
    // A last b-event: once T1 has it, anything it would wrongly receive has arrived too.
    let fence = burst(&herald.broker_url, "fence", "b", 1).await;
    sink1
        .wait_for_or(&fence, WAIT, "the fence", || logs(&herald))
        .await;
    assert!(herald.proc.alive(), "herald died: {}", logs(&herald));

    // The Broker removed, then its last Trigger: its channel goes from the backend.
    files.remove("broker.yaml");
    admin.wait_gone("brokers", &ns, BROKER, WAIT).await;
    files.remove("t1.yaml");
    admin.wait_gone("triggers", &ns, "t1", WAIT).await;
    if channel == Channel::Nats {
        let stream = stream_name(&ns, BROKER);
        let end = Instant::now() + WAIT;
        while stream_exists(NATS_URL, &stream).await {
            assert!(
                Instant::now() < end,
                "stream {stream} still exists {WAIT:?} after its Broker and last Trigger were \
                 removed:\n{}",
                herald.proc.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // --- Answers: 202 while the Broker exists, 404 (only) while it does not.
    let wrong_answers: Vec<&Sent> = sent
        .iter()
        .filter(|s| {
            let absent = s.started > broker_gone && s.answered < wrote_broker_back;
            let present = s.answered < removed_broker || s.started > broker_back;
            match s.status {
                202 => absent,
                404 => present,
                _ => true,
            }
        })
        .collect();
    let refused = sent.iter().filter(|s| s.status == 404).count();

    // --- T1: exactly the events that matched its filter when they were sent.
    let expected_t1: BTreeSet<String> = sent
        .iter()
        .filter(|s| {
            s.accepted()
                && ((s.kind == "a" && s.epoch < c_only) || (s.kind == "b" && s.epoch >= mixed))
        })
        .map(|s| s.id.clone())
        .chain(backlog.iter().cloned())
        .chain(fence.iter().cloned())
        .collect();
    let counts1 = sink1.counts();
    let got_t1: BTreeSet<String> = counts1.keys().cloned().collect();
    let missing: Vec<&String> = expected_t1.difference(&got_t1).collect();
    let by_id = |id: &String| sent.iter().find(|s| &s.id == id);
    let unexpected: Vec<String> = got_t1
        .difference(&expected_t1)
        .map(|id| match by_id(id) {
            Some(s) => format!(
                "{id} (kind {}, epoch {}, answered {})",
                s.kind, s.epoch, s.status
            ),
            None => format!("{id} (never sent)"),
        })
        .collect();
    let dups1 = duplicates(&counts1);
    let pre_change_b = sent
        .iter()
        .filter(|s| s.kind == "b" && s.epoch < a_run && counts1.contains_key(&s.id))
        .count();

    // --- T1's subscriber change: events sent after it reached its new generation went to the
    // new URI only.
    let started_after_move: HashSet<&str> = sent
        .iter()
        .filter(|s| s.started > moved_at)
        .map(|s| s.id.as_str())
        .collect();
    let old_uri_after_move: Vec<String> = sink1
        .records()
        .iter()
        .filter(|r| {
            r.path != "/v2"
                && (started_after_move.contains(r.id.as_str())
                    || backlog.contains(&r.id)
                    || fence.contains(&r.id))
        })
        .map(|r| r.id.clone())
        .collect();

    // --- T2: from its Ready on, until its removal; nothing from before its file, nothing
    // after its removal.
    let records2 = sink2.records();
    let counts2 = sink2.counts();
    let before_t2: Vec<&String> = sent
        .iter()
        .filter(|s| s.answered < wrote_t2 && counts2.contains_key(&s.id))
        .map(|s| &s.id)
        .collect();
    let after_t2: Vec<&String> = sent
        .iter()
        .filter(|s| s.started > t2_gone && counts2.contains_key(&s.id))
        .map(|s| &s.id)
        .collect();
    let t2_late = records2.len() - t2_records_at_removal;
    let dups2 = duplicates(&counts2);

    eprintln!(
        "{test}: {} events sent ({} refused with 404 while the Broker was gone) + {} burst + \
         fence; T2 Ready {t2_ready_after:?} after its file was written; T1's filter change \
         applied after {change_took:?}, its subscriber change after {move_took:?}; T1 received {} deliveries of {} ids (expected {}, \
         duplicates {dups1}); T2 received {} deliveries (duplicates {dups2}, {t2_late} after \
         its removal, {} more after the grace); burst delivered before the Broker's removal \
         was applied: {burst_delivered_at_removal} of {}; total {:?}",
        sent.len(),
        refused,
        backlog.len(),
        counts1.values().sum::<usize>(),
        got_t1.len(),
        expected_t1.len(),
        records2.len(),
        t2_records_after_grace - t2_records_at_removal,
        backlog.len(),
        started.elapsed()
    );
    assert!(
        wrong_answers.is_empty(),
        "{} events answered other than 202 with the Broker present / 404 with it gone, e.g. \
         {:?}",
        wrong_answers.len(),
        wrong_answers
            .iter()
            .take(5)
            .map(|s| format!("{} kind {}: {} {}", s.id, s.kind, s.status, s.error))
            .collect::<Vec<_>>()
    );
    assert!(
        refused > 0,
        "no event was refused while the Broker was gone"
    );
    assert!(
        missing.is_empty(),
        "T1 lost {} accepted events that matched its filter, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(
        pre_change_b, 0,
        "T1 received b-events sent before its filter changed to b (it re-read its Broker \
         from before its position)"
    );
    assert!(
        unexpected.is_empty(),
        "T1 received {} events its filter did not match when they were sent, e.g. {:?}",
        unexpected.len(),
        &unexpected[..unexpected.len().min(10)]
    );
    match channel {
        Channel::Memory | Channel::Sled => assert_eq!(dups1, 0, "T1 received events twice"),
        // At-least-once: only deliveries in flight when a consumer is re-created may repeat.
        Channel::Nats | Channel::Kafka => assert!(
            dups1 <= MAX_IN_FLIGHT,
            "T1 received {dups1} events twice, more than the {MAX_IN_FLIGHT} in flight"
        ),
    }
    assert!(
        old_uri_after_move.is_empty(),
        "T1 delivered {} events sent after its subscriber change to the old URI, e.g. {:?}",
        old_uri_after_move.len(),
        &old_uri_after_move[..old_uri_after_move.len().min(10)]
    );
    assert!(
        before_t2.is_empty(),
        "T2 did not start at the head: it received {} events accepted before its file was \
         written, e.g. {:?}",
        before_t2.len(),
        &before_t2[..before_t2.len().min(10)]
    );
    assert_eq!(
        t2_late, 0,
        "T2 received {t2_late} deliveries after its removal was applied"
    );
    assert!(
        after_t2.is_empty(),
        "T2 received events sent after its removal: {after_t2:?}"
    );
    if matches!(channel, Channel::Memory | Channel::Sled) {
        assert_eq!(dups2, 0, "T2 received events twice");
    }
}

#[test]
fn live_config_changes_on_sled() {
    run(async {
        let work = tempfile::tempdir().unwrap();
        live_changes_lose_nothing(
            "live_config_changes_on_sled",
            Channel::Sled,
            work.path(),
            &[],
        )
        .await;
    });
}

#[test]
fn live_config_changes_on_memory() {
    run(async {
        let work = tempfile::tempdir().unwrap();
        live_changes_lose_nothing(
            "live_config_changes_on_memory",
            Channel::Memory,
            work.path(),
            &[],
        )
        .await;
    });
}

#[test]
fn live_config_changes_on_nats() {
    const TEST: &str = "live_config_changes_on_nats";
    if !shared_nats_available(TEST) {
        return;
    }
    run(async {
        let ns = format!("lc-nats-{}", std::process::id());
        let _cleanup = StreamCleanup::new(NATS_URL, stream_name(&ns, BROKER));
        let work = tempfile::tempdir().unwrap();
        live_changes_lose_nothing(TEST, Channel::Nats, work.path(), &["--nats-url", NATS_URL])
            .await;
    });
}

#[cfg(feature = "kafka")]
#[test]
fn live_config_changes_on_kafka() {
    const TEST: &str = "live_config_changes_on_kafka";
    run(async {
        let Some(mut tansu) = Tansu::start(TEST).await else {
            return;
        };
        let work = tempfile::tempdir().unwrap();
        let bootstrap = tansu.bootstrap();
        live_changes_lose_nothing(
            TEST,
            Channel::Kafka,
            work.path(),
            &["--kafka-bootstrap-servers", &bootstrap],
        )
        .await;
        tansu.assert_alive();
    });
}
