//! What the replica tests share, whatever the Broker's backend: `herald serve` and backend
//! processes, telling replicas apart by their sockets, an HTTP subscriber recording every
//! delivery, and publishing with failover between ingresses.

// Each test binary compiles this module on its own, and not all of them use every item.
#![allow(dead_code)]

pub mod admin;
pub mod servers;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Router;
use futures::StreamExt;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const HERALD: &str = env!("CARGO_BIN_EXE_herald");
/// How long a process may take to start and print its readiness line.
pub const STARTUP: Duration = Duration::from_secs(30);
/// The type of the tests' events, which their Triggers select.
pub const EVENT_TYPE: &str = "dev.herald.test.replicas";

static SERIAL: Mutex<()> = Mutex::new(());

/// Runs one test body on its own runtime, one test at a time.
pub fn run(test: impl Future<Output = ()>) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(test)
}

pub use herald_test_support::in_ci;

/// Polls `done` every 20 ms until it holds; panics with `what()` after `limit`.
pub async fn until(limit: Duration, mut done: impl FnMut() -> bool, what: impl FnOnce() -> String) {
    let end = Instant::now() + limit;
    while !done() {
        if Instant::now() > end {
            panic!("not within {limit:?}: {}", what());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------------------
// Processes

/// A child process whose output lines are collected by threads.
pub struct Proc {
    pub name: String,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    pub fn spawn(name: &str, program: &str, args: &[&str]) -> Proc {
        let mut command = Command::new(program);
        command.args(args).env("NO_COLOR", "1");
        Proc::spawn_command(name, command)
    }

    pub fn spawn_command(name: &str, mut command: Command) -> Proc {
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn log_tail(&self) -> String {
        let lines = self.lines.lock().unwrap();
        let from = lines.len().saturating_sub(40);
        lines[from..].join("\n")
    }

    /// How many output lines so far contain `needle`.
    pub fn count_lines(&self, needle: &str) -> usize {
        let lines = self.lines.lock().unwrap();
        lines.iter().filter(|l| l.contains(needle)).count()
    }

    pub fn find_line(&self, needle: &str) -> Option<String> {
        let lines = self.lines.lock().unwrap();
        lines.iter().find(|l| l.contains(needle)).cloned()
    }

    /// Waits for an output line containing `needle`; fails at once if the process exits.
    pub async fn wait_line(&mut self, needle: &str) -> String {
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
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `herald serve` replica, its ingress URLs and its admin API's.
pub struct Replica {
    pub proc: Proc,
    /// The ingress, e.g. http://127.0.0.1:PORT
    pub base: String,
    /// The admin API (a listener of its own), e.g. http://127.0.0.1:PORT
    pub admin: String,
    /// e.g. http://127.0.0.1:PORT/ns/broker
    pub broker_url: String,
}

impl Replica {
    /// `herald serve` on `config` and `data_dir`, listening on a free port, with `args` (the
    /// backend's and the test's); ready once it prints the ingress URL of `broker`
    /// (namespace, name).
    pub async fn start(
        name: &str,
        config: &Path,
        data_dir: &Path,
        broker: (&str, &str),
        args: &[&str],
    ) -> Replica {
        let mut proc = Proc::spawn(name, HERALD, &serve_args(config, data_dir, args));
        let line = proc
            .wait_line(&format!("Broker {}/{}:", broker.0, broker.1))
            .await;
        // http:// or https://
        let start = line.find("http").expect("the Broker line has a URL");
        let broker_url = line[start..].split_whitespace().next().unwrap().to_string();
        let path = format!("/{}/{}", broker.0, broker.1);
        let base = broker_url
            .strip_suffix(&path)
            .unwrap_or_else(|| panic!("unexpected broker URL {broker_url}"))
            .to_string();
        let admin = admin_url(&mut proc).await;
        Replica {
            proc,
            base,
            admin,
            broker_url,
        }
    }

    /// Like `start`, for a configuration that may hold no Broker yet: ready once it prints
    /// the address it serves on (`broker_url` stays empty; see `url_of`).
    pub async fn serve(name: &str, config: &Path, data_dir: &Path, args: &[&str]) -> Replica {
        let mut proc = Proc::spawn(name, HERALD, &serve_args(config, data_dir, args));
        let line = proc.wait_line("herald serving on http").await;
        let start = line.find("http").expect("the line has a URL");
        let base = line[start..]
            .split_whitespace()
            .next()
            .unwrap()
            .trim_end_matches('/')
            .to_string();
        let admin = admin_url(&mut proc).await;
        Replica {
            proc,
            base,
            admin,
            broker_url: String::new(),
        }
    }

    /// The ingress URL of Broker `namespace/name` on this replica.
    pub fn url_of(&self, namespace: &str, name: &str) -> String {
        format!("{}/{namespace}/{name}", self.base)
    }
}

/// The admin API's base URL, from the line `herald serve` prints.
pub async fn admin_url(proc: &mut Proc) -> String {
    let line = proc.wait_line("herald admin API on http").await;
    let start = line.find("http").expect("the line has a URL");
    line[start..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_string()
}

fn serve_args<'a>(config: &'a Path, data_dir: &'a Path, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec![
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        "--data-dir",
        data_dir.to_str().unwrap(),
    ];
    all.extend_from_slice(args);
    all
}

pub fn assert_all_alive(replicas: &mut [Replica]) {
    for r in replicas {
        assert!(
            r.proc.alive(),
            "{} died:\n{}",
            r.proc.name,
            r.proc.log_tail()
        );
    }
}

/// TCP ports of the sockets process `pid` holds (to tell which replica a delivery came from).
pub fn tcp_ports_of(pid: u32) -> HashSet<u16> {
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

/// The TCP ports each replica holds right now.
pub fn ports_of(replicas: &[Replica]) -> Vec<HashSet<u16>> {
    replicas
        .iter()
        .map(|r| tcp_ports_of(r.proc.pid()))
        .collect()
}

/// Which replica (index into `ports`, each replica's ports) each of the `records` came
/// from; None when no replica holds that port.
pub fn attribute(records: &[Received], ports: &[HashSet<u16>]) -> Vec<Option<usize>> {
    records
        .iter()
        .map(|r| ports.iter().position(|p| p.contains(&r.peer.port())))
        .collect()
}

/// Deliveries per replica (by `ports`, as in `attribute`), and how many none accounts for.
pub fn count_per_replica(records: &[Received], ports: &[HashSet<u16>]) -> (Vec<usize>, usize) {
    let mut per_replica = vec![0usize; ports.len()];
    let mut unattributed = 0;
    for who in attribute(records, ports) {
        match who {
            Some(i) => per_replica[i] += 1,
            None => unattributed += 1,
        }
    }
    (per_replica, unattributed)
}

// ---------------------------------------------------------------------------------------
// The subscriber

#[derive(Clone, Debug)]
pub struct Received {
    pub id: String,
    /// The ce-partitionkey extension ("" without).
    pub key: String,
    /// The ce-seq extension (u64::MAX without).
    pub seq: u64,
    pub peer: SocketAddr,
    /// The path it was delivered to (a Trigger's subscriber URI may change).
    pub path: String,
}

#[derive(Default)]
struct InFlight {
    next_token: u64,
    /// The deliveries being handled, by token: (id, peer).
    requests: HashMap<u64, (String, SocketAddr)>,
    by_key: HashMap<String, usize>,
    max_keys: usize,
    max_same_key: usize,
}

/// An HTTP subscriber recording every delivery as it arrives, answering 200 after a delay.
pub struct Sink {
    pub url: String,
    records: Mutex<Vec<Received>>,
    in_flight: Mutex<InFlight>,
    /// Delay before answering, uniformly in [min, max] ms.
    delay_ms: (u64, u64),
    rng: AtomicU64,
}

impl Sink {
    pub async fn start(delay_ms: (u64, u64)) -> Arc<Sink> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sink = Arc::new(Sink {
            url: format!("http://{}/events", listener.local_addr().unwrap()),
            records: Mutex::default(),
            in_flight: Mutex::default(),
            delay_ms,
            rng: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
        });
        let app = Router::new()
            .fallback(receive)
            .with_state(sink.clone())
            .into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        sink
    }

    fn delay(&self) -> Duration {
        let (lo, hi) = self.delay_ms;
        if hi <= lo {
            return Duration::from_millis(lo);
        }
        // splitmix64: good enough randomness without a dependency.
        let mut z = self.rng.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Duration::from_millis(lo + z % (hi - lo + 1))
    }

    pub fn records(&self) -> Vec<Received> {
        self.records.lock().unwrap().clone()
    }

    pub fn counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for r in self.records.lock().unwrap().iter() {
            *counts.entry(r.id.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// (id, peer) of the deliveries being handled right now.
    pub fn in_flight_now(&self) -> Vec<(String, SocketAddr)> {
        self.in_flight
            .lock()
            .unwrap()
            .requests
            .values()
            .cloned()
            .collect()
    }

    /// Most distinct partition keys in flight at once, and most deliveries of one key.
    pub fn concurrency(&self) -> (usize, usize) {
        let f = self.in_flight.lock().unwrap();
        (f.max_keys, f.max_same_key)
    }

    /// Waits until every id in `ids` has arrived at least once.
    pub async fn wait_for(&self, ids: &HashSet<String>, limit: Duration, what: &str) {
        self.wait_for_or(ids, limit, what, String::new).await
    }

    /// Like `wait_for`, adding `context()` (e.g. process logs) to the failure message.
    pub async fn wait_for_or(
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

    /// Waits until the replica `victim_pid` has made 50 of the deliveries recorded from
    /// `from` on and has deliveries in flight; returns the ids it has in flight.
    pub async fn wait_victim_busy(&self, victim_pid: u32, from: usize) -> Vec<String> {
        let mut in_flight = Vec::new();
        until(
            Duration::from_secs(60),
            || {
                let victim_ports = tcp_ports_of(victim_pid);
                let delivered = self.records()[from..]
                    .iter()
                    .filter(|r| victim_ports.contains(&r.peer.port()))
                    .count();
                in_flight = self
                    .in_flight_now()
                    .into_iter()
                    .filter(|(_, peer)| victim_ports.contains(&peer.port()))
                    .map(|(id, _)| id)
                    .collect();
                delivered >= 50 && !in_flight.is_empty()
            },
            || "the victim never had deliveries in flight".into(),
        )
        .await;
        in_flight
    }
}

async fn receive(
    State(sink): State<Arc<Sink>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    _body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (id, key) = (header("ce-id"), header("ce-partitionkey"));
    let seq = header("ce-seq").parse().unwrap_or(u64::MAX);
    let token = {
        let mut f = sink.in_flight.lock().unwrap();
        let token = f.next_token;
        f.next_token += 1;
        f.requests.insert(token, (id.clone(), peer));
        let same = {
            let n = f.by_key.entry(key.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let keys = f.by_key.values().filter(|n| **n > 0).count();
        f.max_same_key = f.max_same_key.max(same);
        f.max_keys = f.max_keys.max(keys);
        sink.records.lock().unwrap().push(Received {
            id,
            key: key.clone(),
            seq,
            peer,
            path: uri.path().to_string(),
        });
        token
    };
    // The subscriber's processing time (not synchronisation).
    let delay = sink.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut f = sink.in_flight.lock().unwrap();
    f.requests.remove(&token);
    if let Some(n) = f.by_key.get_mut(&key) {
        *n -= 1;
    }
    StatusCode::OK
}

pub fn duplicates(counts: &HashMap<String, usize>) -> usize {
    counts.values().map(|n| n.saturating_sub(1)).sum()
}

// ---------------------------------------------------------------------------------------
// Publishing

/// POSTs binary-mode CloudEvents of `EVENT_TYPE` from one source.
#[derive(Clone)]
pub struct Publisher {
    pub http: reqwest::Client,
    /// The events' ce-source.
    source: &'static str,
}

#[derive(Default)]
pub struct Posted {
    /// Ids answered 202.
    pub accepted: Vec<String>,
    /// Ids no ingress accepted, with the last answer.
    pub refused: Vec<(String, String)>,
    /// Attempts that failed over to another ingress (connection error or non-202).
    pub failovers: usize,
}

impl Publisher {
    pub fn new(source: &'static str) -> Publisher {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Publisher { http, source }
    }

    /// POSTs the event `id` with `extensions` (name without the ce- prefix, value).
    pub async fn post(
        &self,
        url: &str,
        id: &str,
        extensions: &[(&str, String)],
    ) -> reqwest::Result<reqwest::Response> {
        let mut request = self
            .http
            .post(url)
            .header("ce-specversion", "1.0")
            .header("ce-id", id)
            .header("ce-type", EVENT_TYPE)
            .header("ce-source", self.source)
            .header("content-type", "application/json");
        for (name, value) in extensions {
            request = request.header(format!("ce-{name}"), value.as_str());
        }
        request.body(format!(r#"{{"id":"{id}"}}"#)).send().await
    }

    /// POSTs events `{prefix}-0` to `{prefix}-{n - 1}` to `url` one after the other, each of
    /// which must be answered 202 (`when`: for the failure message); returns their ids.
    pub async fn post_accepted(
        &self,
        url: &str,
        prefix: &str,
        n: usize,
        when: &str,
    ) -> Vec<String> {
        let mut ids = Vec::new();
        for i in 0..n {
            let id = format!("{prefix}-{i}");
            let r = self.post(url, &id, &[]).await.unwrap();
            assert_eq!(r.status(), StatusCode::ACCEPTED, "{id} {when}");
            ids.push(id);
        }
        ids
    }

    /// POSTs `ids` round-robin across `urls`, `concurrency` at a time; an attempt that fails
    /// (connection refused, non-202) moves on to the next ingress.
    pub async fn post_round_robin(
        &self,
        urls: &[String],
        ids: Vec<String>,
        concurrency: usize,
    ) -> Posted {
        let results: Vec<(String, Result<(), String>, usize)> =
            futures::stream::iter(ids.into_iter().enumerate())
                .map(|(i, id)| async move {
                    let mut last = String::new();
                    for attempt in 0..urls.len() {
                        let url = &urls[(i + attempt) % urls.len()];
                        match self.post(url, &id, &[]).await {
                            Ok(r) if r.status() == StatusCode::ACCEPTED => {
                                return (id, Ok(()), attempt)
                            }
                            Ok(r) => last = format!("{url}: {}", r.status()),
                            Err(e) => last = format!("{url}: {e}"),
                        }
                    }
                    (id, Err(last), urls.len())
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

    /// The happy path: `n` events `{prefix}-N` POSTed round-robin over the replicas, each
    /// answered 202 by the first ingress tried. Returns their ids and how long sending took.
    pub async fn post_all_round_robin(
        &self,
        replicas: &[Replica],
        prefix: &str,
        n: usize,
        concurrency: usize,
    ) -> (HashSet<String>, Duration) {
        let urls: Vec<String> = replicas.iter().map(|r| r.broker_url.clone()).collect();
        let ids: Vec<String> = (0..n).map(|i| format!("{prefix}-{i}")).collect();
        let sending = Instant::now();
        let posted = self.post_round_robin(&urls, ids.clone(), concurrency).await;
        let send_time = sending.elapsed();
        assert!(
            posted.refused.is_empty() && posted.failovers == 0,
            "{} events refused, {} failovers, e.g. {:?}",
            posted.refused.len(),
            posted.failovers,
            posted.refused.first()
        );
        (ids.into_iter().collect(), send_time)
    }
}

// ---------------------------------------------------------------------------------------
// The backend restarts

/// With the `backend` down: three events `during-N` are each answered 503 with a Retry-After
/// of at least 1 s (all but the first at once), /healthz still answers 200 and herald stays
/// up. Returns per event (id, time to answer, Retry-After in s).
pub async fn refused_while_down(
    publisher: &Publisher,
    herald: &mut Replica,
    backend: &str,
) -> Vec<(String, Duration, u64)> {
    let mut refused = Vec::new();
    for i in 0..3 {
        let id = format!("during-{i}");
        let asked = Instant::now();
        let r = publisher
            .post(&herald.broker_url, &id, &[])
            .await
            .unwrap_or_else(|e| panic!("{id}: ingress did not answer with {backend} down: {e}"));
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
            "{id} with {backend} down: {body}"
        );
        assert!(
            retry_after.is_some_and(|s| s >= 1),
            "503 without a usable Retry-After: {retry_after:?}"
        );
        refused.push((id, asked.elapsed(), retry_after.unwrap()));
    }
    // The first refusal may wait for the backend (Kafka's publish timeout); once herald
    // knows it is down, it refuses at once instead of holding each request.
    for (id, took, _) in &refused[1..] {
        assert!(
            *took < Duration::from_secs(1),
            "{id} was refused only after {took:?}, though {backend} was known to be down"
        );
    }
    let health = publisher
        .http
        .get(format!("{}/healthz", herald.base))
        .send()
        .await
        .unwrap_or_else(|e| panic!("/healthz does not answer with {backend} down: {e}"));
    assert_eq!(
        health.status(),
        StatusCode::OK,
        "/healthz with {backend} down"
    );
    assert!(
        herald.proc.alive(),
        "herald exited with {backend} down:\n{}",
        herald.proc.log_tail()
    );
    refused
}

/// Once the `backend` is back: POSTs events `after-N` until one is answered 202, failing if
/// ingress still answers 503 after `limit`. Returns the accepted id and the 503s before it.
pub async fn post_until_accepted(
    publisher: &Publisher,
    herald: &Replica,
    backend: &str,
    limit: Duration,
) -> (String, usize) {
    let back = Instant::now();
    let mut retries_503 = 0;
    loop {
        let id = format!("after-{retries_503}");
        let r = publisher.post(&herald.broker_url, &id, &[]).await.unwrap();
        match r.status() {
            StatusCode::ACCEPTED => return (id, retries_503),
            StatusCode::SERVICE_UNAVAILABLE => {
                retries_503 += 1;
                assert!(
                    back.elapsed() < limit,
                    "ingress still answers 503 {limit:?} after {backend} came back:\n{}",
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
            other => panic!("{id} after {backend} came back: {other}"),
        }
    }
}
