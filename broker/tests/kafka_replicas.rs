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

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Router;
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
/// How long a process may take to start and print its readiness line.
const STARTUP: Duration = Duration::from_secs(30);
/// The consumer group session timeout given to every replica (librdkafka's default is 45 s):
/// a killed replica's partitions move to the survivors this long after its last heartbeat.
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);
/// Herald's commit interval for acknowledged offsets (KafkaConfig::commit_interval).
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
const NAMESPACE: &str = "kr";

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs one test body on its own runtime, one test at a time.
fn run(test: impl Future<Output = ()>) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(test)
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The tansu binary, or None (after failing under CI=true, or printing a skip notice).
fn tansu_bin(test: &str) -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = match std::env::var_os("TANSU_BIN") {
        Some(bin) => vec![PathBuf::from(bin)],
        None => {
            let home = std::env::var_os("HOME").unwrap_or_default();
            let mut c = vec![Path::new(&home).join(".cargo/bin/tansu")];
            if let Some(path) = std::env::var_os("PATH") {
                c.extend(std::env::split_paths(&path).map(|d| d.join("tansu")));
            }
            c
        }
    };
    if let Some(bin) = candidates.into_iter().find(|p| p.is_file()) {
        return Some(bin);
    }
    assert!(
        !in_ci(),
        "{test}: tansu is not available (TANSU_BIN, ~/.cargo/bin/tansu, PATH) and CI=true: \
         failing instead of skipping"
    );
    eprintln!(
        "SKIPPED {test}: tansu is not available; install it with `cargo install tansu` or set \
         TANSU_BIN (set CI=true to make this a failure)"
    );
    None
}

/// Polls `done` every 20 ms until it holds; panics with `what()` after `limit`.
async fn until(limit: Duration, mut done: impl FnMut() -> bool, what: impl FnOnce() -> String) {
    let end = Instant::now() + limit;
    while !done() {
        if Instant::now() > end {
            panic!("not within {limit:?}: {}", what());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------------------
// Processes

/// A child process whose output lines are collected by threads.
struct Proc {
    name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    fn spawn(name: &str, program: &str, args: &[&str]) -> Proc {
        let mut command = Command::new(program);
        command.args(args).env("NO_COLOR", "1");
        Proc::spawn_command(name, command)
    }

    fn spawn_command(name: &str, mut command: Command) -> Proc {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Proc {
            name: name.to_string(),
            child,
            lines,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn log_tail(&self) -> String {
        let lines = self.lines.lock().unwrap();
        let from = lines.len().saturating_sub(40);
        lines[from..].join("\n")
    }

    fn find_line(&self, needle: &str) -> Option<String> {
        let lines = self.lines.lock().unwrap();
        lines.iter().find(|l| l.contains(needle)).cloned()
    }

    /// Waits for an output line containing `needle`; fails at once if the process exits.
    async fn wait_line(&mut self, needle: &str) -> String {
        let end = Instant::now() + STARTUP;
        loop {
            if let Some(line) = self.find_line(needle) {
                return line;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader threads catch the last words.
                tokio::time::sleep(Duration::from_millis(100)).await;
                panic!(
                    "{} exited ({status}) before printing {needle:?}:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            assert!(
                Instant::now() < end,
                "{}: no line containing {needle:?} within {STARTUP:?}:\n{}",
                self.name,
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, and reap.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A private tansu broker on `port`, storing in `dir/tansu.db` (sqlite; tansu resolves the
/// path relative to its working directory), so a restart on the same port and directory
/// keeps the topics, records and committed offsets.
async fn start_tansu(bin: &Path, port: u16, dir: &Path) -> Proc {
    let url = format!("tcp://127.0.0.1:{port}");
    let mut command = Command::new(bin);
    command
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "sqlite://tansu.db"])
        .current_dir(dir)
        // tansu logs every request at info level: keep it to warnings unless asked for.
        .env(
            "RUST_LOG",
            std::env::var("TANSU_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .env("NO_COLOR", "1");
    let mut tansu = Proc::spawn_command("tansu", command);
    let end = Instant::now() + STARTUP;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(tansu.alive(), "tansu exited:\n{}", tansu.log_tail());
        assert!(
            Instant::now() < end,
            "tansu did not listen on {port} within {STARTUP:?}:\n{}",
            tansu.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tansu
}

/// A `herald serve` replica and its ingress URLs.
struct Replica {
    proc: Proc,
    /// e.g. http://127.0.0.1:PORT
    base: String,
    /// e.g. http://127.0.0.1:PORT/ns/broker
    broker_url: String,
}

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
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--kafka-bootstrap-servers",
        &bootstrap,
        "--kafka-consumer-config",
        &session,
        "--kafka-consumer-config",
        "heartbeat.interval.ms=1000",
    ];
    args.extend_from_slice(extra);
    let mut proc = Proc::spawn(name, HERALD, &args);
    let line = proc
        .wait_line(&format!("Broker {NAMESPACE}/{broker}:"))
        .await;
    assert!(
        proc.find_line("channel=kafka").is_some(),
        "{name}: the Broker is not on Kafka:\n{}",
        proc.log_tail()
    );
    let start = line.find("http://").expect("the Broker line has a URL");
    let broker_url = line[start..].split_whitespace().next().unwrap().to_string();
    let path = format!("/{NAMESPACE}/{broker}");
    let base = broker_url
        .strip_suffix(&path)
        .unwrap_or_else(|| panic!("unexpected broker URL {broker_url}"))
        .to_string();
    Replica {
        proc,
        base,
        broker_url,
    }
}

/// TCP ports of the sockets process `pid` holds (to tell which replica a delivery came from).
fn tcp_ports_of(pid: u32) -> HashSet<u16> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return HashSet::new();
    };
    let inodes: HashSet<String> = fds
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let t = target.to_string_lossy();
            Some(t.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut ports = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for row in text.lines().skip(1) {
            let cols: Vec<&str> = row.split_whitespace().collect();
            if cols.len() > 9 && inodes.contains(cols[9]) {
                if let Some(port) = cols[1].rsplit(':').next() {
                    if let Ok(port) = u16::from_str_radix(port, 16) {
                        ports.insert(port);
                    }
                }
            }
        }
    }
    ports
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
         filter:\n    attributes:\n      type: dev.herald.test.replicas\n  subscriber:\n    \
         uri: {subscriber}\n"
    );
    let path = dir.join("herald.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

// ---------------------------------------------------------------------------------------
// The subscriber

#[derive(Clone, Debug)]
struct Received {
    id: String,
    peer: SocketAddr,
}

/// The next token, and the deliveries being handled by token: (id, peer).
type InFlight = (u64, HashMap<u64, (String, SocketAddr)>);

/// An HTTP subscriber recording every delivery as it arrives, answering 200 after a delay.
struct Sink {
    url: String,
    records: Mutex<Vec<Received>>,
    /// Deliveries being handled right now, by token.
    in_flight: Mutex<InFlight>,
    delay: Duration,
}

impl Sink {
    async fn start(delay: Duration) -> Arc<Sink> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = Arc::new(Sink {
            url: format!("http://{}/events", listener.local_addr().unwrap()),
            records: Mutex::default(),
            in_flight: Mutex::default(),
            delay,
        });
        let app = Router::new()
            .fallback(receive)
            .with_state(sink.clone())
            .into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        sink
    }

    fn records(&self) -> Vec<Received> {
        self.records.lock().unwrap().clone()
    }

    fn counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for r in self.records.lock().unwrap().iter() {
            *counts.entry(r.id.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// (id, peer) of the deliveries being handled right now.
    fn in_flight_now(&self) -> Vec<(String, SocketAddr)> {
        self.in_flight.lock().unwrap().1.values().cloned().collect()
    }

    /// Waits until every id in `ids` has arrived at least once.
    async fn wait_for(&self, ids: &HashSet<String>, limit: Duration, what: &str) {
        self.wait_for_or(ids, limit, what, String::new).await
    }

    /// Like `wait_for`, adding `context()` (e.g. process logs) to the failure message.
    async fn wait_for_or(
        &self,
        ids: &HashSet<String>,
        limit: Duration,
        what: &str,
        context: impl FnOnce() -> String,
    ) {
        let missing = || {
            let counts = self.counts();
            ids.iter()
                .filter(|id| !counts.contains_key(*id))
                .cloned()
                .collect::<Vec<_>>()
        };
        until(
            limit,
            || missing().is_empty(),
            || {
                let mut m = missing();
                m.sort();
                format!(
                    "{what}: {} of {} accepted events never reached the subscriber, e.g. \
                     {:?}\n{}",
                    m.len(),
                    ids.len(),
                    &m[..m.len().min(10)],
                    context()
                )
            },
        )
        .await;
    }
}

async fn receive(
    State(sink): State<Arc<Sink>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    _body: Bytes,
) -> StatusCode {
    let id = headers
        .get("ce-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let token = {
        let mut f = sink.in_flight.lock().unwrap();
        let token = f.0;
        f.0 += 1;
        f.1.insert(token, (id.clone(), peer));
        sink.records.lock().unwrap().push(Received { id, peer });
        token
    };
    // The subscriber's processing time (not synchronisation).
    if !sink.delay.is_zero() {
        tokio::time::sleep(sink.delay).await;
    }
    sink.in_flight.lock().unwrap().1.remove(&token);
    StatusCode::OK
}

// ---------------------------------------------------------------------------------------
// Publishing

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// POSTs one binary-mode CloudEvent of the type the test Trigger selects.
async fn post(client: &reqwest::Client, url: &str, id: &str) -> reqwest::Result<reqwest::Response> {
    client
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-type", "dev.herald.test.replicas")
        .header("ce-source", "/herald/tests/kafka-replicas")
        .header("content-type", "application/json")
        .body(format!(r#"{{"id":"{id}"}}"#))
        .send()
        .await
}

#[derive(Default)]
struct Posted {
    /// Ids answered 202.
    accepted: Vec<String>,
    /// Ids no ingress accepted, with the last answer.
    refused: Vec<(String, String)>,
    /// Attempts that failed over to another ingress (connection error or non-202).
    failovers: usize,
}

/// POSTs `ids` round-robin across `urls`, `concurrency` at a time; an attempt that fails
/// (connection refused, non-202) moves on to the next ingress.
async fn post_round_robin(urls: &[String], ids: Vec<String>, concurrency: usize) -> Posted {
    let client = client();
    let results: Vec<(String, Result<(), String>, usize)> =
        futures::stream::iter(ids.into_iter().enumerate())
            .map(|(i, id)| {
                let client = client.clone();
                async move {
                    let mut last = String::new();
                    for attempt in 0..urls.len() {
                        let url = &urls[(i + attempt) % urls.len()];
                        match post(&client, url, &id).await {
                            Ok(r) if r.status() == StatusCode::ACCEPTED => {
                                return (id, Ok(()), attempt)
                            }
                            Ok(r) => last = format!("{url}: {}", r.status()),
                            Err(e) => last = format!("{url}: {e}"),
                        }
                    }
                    (id, Err(last), urls.len())
                }
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
    let mut posted = Posted::default();
    for (id, result, failovers) in results {
        posted.failovers += failovers;
        match result {
            Ok(()) => posted.accepted.push(id),
            Err(e) => posted.refused.push((id, e)),
        }
    }
    posted
}

fn duplicates(counts: &HashMap<String, usize>) -> usize {
    counts.values().map(|n| n.saturating_sub(1)).sum()
}

/// Which replica (index into `pids`) each of the `records` came from, by the replicas'
/// sockets as seen in /proc now; None when no live replica holds that port.
fn attribute(records: &[Received], ports: &[HashSet<u16>]) -> Vec<Option<usize>> {
    records
        .iter()
        .map(|r| ports.iter().position(|p| p.contains(&r.peer.port())))
        .collect()
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
    let client = client();
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
        let r = post(&client, url, &id).await.unwrap();
        assert_eq!(r.status(), StatusCode::ACCEPTED, "{id}");
        fences.insert(id);
        i += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let ports: Vec<HashSet<u16>> = replicas
            .iter()
            .map(|r| tcp_ports_of(r.proc.pid()))
            .collect();
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
    let Some(bin) = tansu_bin(TEST) else {
        return;
    };
    run(async {
        let started = Instant::now();
        let broker = "share";
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut tansu = start_tansu(&bin, port, dir.path()).await;
        let sink = Sink::start(Duration::ZERO).await;
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
        let urls: Vec<String> = replicas.iter().map(|r| r.broker_url.clone()).collect();
        let ids: Vec<String> = (0..EVENTS).map(|i| format!("share-{i}")).collect();
        let sending = Instant::now();
        let posted = post_round_robin(&urls, ids.clone(), 16).await;
        let send_time = sending.elapsed();
        assert!(
            posted.refused.is_empty() && posted.failovers == 0,
            "{} events refused, {} failovers, e.g. {:?}",
            posted.refused.len(),
            posted.failovers,
            posted.refused.first()
        );
        let expected: HashSet<String> = ids.into_iter().collect();
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
        let mut per_replica = vec![0usize; REPLICAS];
        let mut unattributed = 0;
        for who in attribute(&load, &ports) {
            match who {
                Some(i) => per_replica[i] += 1,
                None => unattributed += 1,
            }
        }
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
        for r in &mut replicas {
            assert!(
                r.proc.alive(),
                "{} died:\n{}",
                r.proc.name,
                r.proc.log_tail()
            );
        }
        assert!(tansu.alive(), "tansu died:\n{}", tansu.log_tail());
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
/// stay with nobody, and ~40% of the accepted events are never delivered (observed in 4 of
/// 4 runs, with either replica first to join). Run it with `--ignored` against a Kafka-API
/// broker that rebalances on member expiry (Apache Kafka, Redpanda; TANSU_BIN may point at
/// a wrapper script), or once tansu fixes this.
#[test]
#[ignore = "tansu 0.6.0 does not reassign an expired member's partitions (see the doc comment)"]
fn killing_a_kafka_replica_mid_load_loses_nothing() {
    const TEST: &str = "killing_a_kafka_replica_mid_load_loses_nothing";
    let Some(bin) = tansu_bin(TEST) else {
        return;
    };
    run(kill_a_replica_mid_load(TEST, bin, None));
}

/// A replica is SIGKILLed mid-load and, as a Kubernetes Deployment would, a replacement
/// starts once the dead one's session has expired: the group rebalances over the survivor
/// and the replacement, and the dead replica's in-flight (uncommitted) events are delivered
/// again. On tansu 0.6.0 a joining member is what makes the group rebalance (see above).
#[test]
fn killed_kafka_replica_replaced_mid_load_loses_nothing() {
    const TEST: &str = "killed_kafka_replica_replaced_mid_load_loses_nothing";
    let Some(bin) = tansu_bin(TEST) else {
        return;
    };
    run(kill_a_replica_mid_load(
        TEST,
        bin,
        Some(SESSION_TIMEOUT + Duration::from_secs(2)),
    ));
}

/// Two replicas share a Trigger; one is SIGKILLed while it has deliveries in flight; with
/// `replace_after`, a third replica starts that long after the kill. Every accepted event
/// must arrive, and some of the victim's in-flight deliveries must arrive again.
async fn kill_a_replica_mid_load(test: &str, bin: PathBuf, replace_after: Option<Duration>) {
    const EVENTS: usize = 600;
    let started = Instant::now();
    let broker = "kill";
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut tansu = start_tansu(&bin, port, dir.path()).await;
    // Slow-ish subscriber and few deliveries per replica: the load lasts a while and the
    // victim always has deliveries in flight.
    let sink = Sink::start(Duration::from_millis(10)).await;
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
    let sending = tokio::spawn(async move { post_round_robin(&urls, ids, 16).await });

    // Kill the victim once it has delivered some of the load and has deliveries in flight.
    let victim_pid = replicas[0].proc.pid();
    let mut in_flight_at_kill = Vec::new();
    until(
        Duration::from_secs(60),
        || {
            let victim_ports = tcp_ports_of(victim_pid);
            let delivered = sink.records()[before_load..]
                .iter()
                .filter(|r| victim_ports.contains(&r.peer.port()))
                .count();
            in_flight_at_kill = sink
                .in_flight_now()
                .into_iter()
                .filter(|(_, peer)| victim_ports.contains(&peer.port()))
                .map(|(id, _)| id)
                .collect();
            delivered >= 50 && !in_flight_at_kill.is_empty()
        },
        || "the victim never had deliveries in flight".into(),
    )
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
    for r in &mut replicas[1..] {
        assert!(
            r.proc.alive(),
            "{} died:\n{}",
            r.proc.name,
            r.proc.log_tail()
        );
    }
    assert!(tansu.alive(), "tansu died:\n{}", tansu.log_tail());
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
    let Some(bin) = tansu_bin(TEST) else {
        return;
    };
    run(async {
        let started = Instant::now();
        let broker = "restart";
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut tansu = start_tansu(&bin, port, dir.path()).await;
        let sink = Sink::start(Duration::ZERO).await;
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
        let client = client();
        let mut accepted: HashSet<String> = fences;
        for i in 0..20 {
            let id = format!("before-{i}");
            let r = post(&client, &herald.broker_url, &id).await.unwrap();
            assert_eq!(r.status(), StatusCode::ACCEPTED, "{id} with Kafka up");
            accepted.insert(id);
        }
        sink.wait_for(&accepted, Duration::from_secs(30), "before the restart")
            .await;
        // ... and committed.
        tokio::time::sleep(COMMIT_INTERVAL * 2).await;

        // Kafka goes away: ingress refuses with 503 + Retry-After, and herald stays up.
        tansu.kill();
        let outage = Instant::now();
        let mut refused = Vec::new();
        for i in 0..3 {
            let id = format!("during-{i}");
            let asked = Instant::now();
            let r = post(&client, &herald.broker_url, &id)
                .await
                .unwrap_or_else(|e| panic!("{id}: ingress did not answer with Kafka down: {e}"));
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            assert_eq!(
                status,
                StatusCode::SERVICE_UNAVAILABLE,
                "{id} with Kafka down: {body}"
            );
            assert!(
                retry_after.is_some_and(|s| s >= 1),
                "503 without a usable Retry-After: {retry_after:?}"
            );
            refused.push((id, asked.elapsed(), retry_after.unwrap()));
        }
        let health = client
            .get(format!("{}/healthz", herald.base))
            .send()
            .await
            .expect("/healthz answers with Kafka down");
        assert_eq!(health.status(), StatusCode::OK, "/healthz with Kafka down");
        assert!(
            herald.proc.alive(),
            "herald exited with Kafka down:\n{}",
            herald.proc.log_tail()
        );

        // Kafka comes back on the same port and store: herald recovers by itself.
        let tansu = start_tansu(&bin, port, dir.path()).await;
        let outage_time = outage.elapsed();
        let back = Instant::now();
        let mut first = None;
        let mut retries_503 = 0;
        while first.is_none() {
            let id = format!("after-{retries_503}");
            let r = post(&client, &herald.broker_url, &id).await.unwrap();
            match r.status() {
                StatusCode::ACCEPTED => first = Some(id),
                StatusCode::SERVICE_UNAVAILABLE => {
                    retries_503 += 1;
                    assert!(
                        back.elapsed() < Duration::from_secs(60),
                        "ingress still answers 503 60 s after Kafka came back:\n{}",
                        herald.proc.log_tail()
                    );
                    let wait: u64 = r
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())
                        .expect("a 503 carries Retry-After");
                    // Honour Retry-After, as a publisher should (capped to keep the test short).
                    tokio::time::sleep(Duration::from_secs(wait.min(1))).await;
                }
                other => panic!("{id} after Kafka came back: {other}"),
            }
        }
        let reaccepting = back.elapsed();
        accepted.insert(first.unwrap());
        for i in 0..50 {
            let id = format!("later-{i}");
            let r = post(&client, &herald.broker_url, &id).await.unwrap();
            assert_eq!(r.status(), StatusCode::ACCEPTED, "{id} after recovery");
            accepted.insert(id);
        }
        sink.wait_for(&accepted, Duration::from_secs(90), "after the restart")
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
        drop(tansu);
    });
}
