//! Herald as an operator runs it, across crashes, restarts, replays and overload: `herald serve`
//! as a real process (on its default channel, the durable sled store), real HTTP on 127.0.0.1,
//! and a subscriber inside this test process (an axum server on port 0) that records every
//! request per path and per event id.
//!
//! Synchronisation is always "wait for a condition with a deadline": a watch channel bumped on
//! every request the subscriber sees, or short polls (of `/healthz`, of a child's exit, of the
//! senders' accepted count) that fail the test at their deadline. Other sleeps are a sender's
//! back-off before it resends a refused event, which is what a client does.
//!
//! Figures (loss, duplicates, kills, RSS, disk use) are printed with `eprintln!`; run with
//! `--nocapture` to see them. `HERALD_CRASH_EVENTS` raises the number of events of the kill -9
//! test (at least 10,000; 3,000 on NATS and Kafka), `HERALD_CRASH_KILLS` its number of kills (at
//! least 3). The kill -9 loop runs on the sled default, on NATS and on Kafka (a private tansu).

mod replicas;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::Router;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

const HERALD: &str = env!("CARGO_BIN_EXE_herald");
/// Longest wait for a server to answer /healthz (a restart after kill -9 recovers sled first).
const READY: Duration = Duration::from_secs(60);
/// Longest wait for a delivery that should happen promptly. Generous: the machine is shared.
const PROMPT: Duration = Duration::from_secs(60);
const EVENT_TYPE: &str = "dev.herald.durability";

// ---------------------------------------------------------------------------------------------
// `herald serve` as a child process
// ---------------------------------------------------------------------------------------------

/// One `herald serve` on a fixed address and data directory, restartable after a kill.
struct Herald {
    child: Option<Child>,
    addr: SocketAddr,
    /// The admin API's address (fixed too: the same after each restart).
    admin_addr: SocketAddr,
    args: Vec<String>,
    work: PathBuf,
    /// Processes started so far (each writes `serve-<n>.log` in `work`).
    starts: usize,
    http: reqwest::Client,
}

impl Herald {
    /// Starts `herald serve --config <config> --listen <addr> --admin-addr <free>
    /// --data-dir <work>/data <extra>` (without waiting for it to be ready).
    fn start(work: &Path, config: &Path, addr: SocketAddr, extra: &[&str]) -> Herald {
        let data = work.join("data");
        let admin_addr = free_addr();
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--config".into(),
            config.display().to_string(),
            "--listen".into(),
            addr.to_string(),
            "--admin-addr".into(),
            admin_addr.to_string(),
            "--data-dir".into(),
            data.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut herald = Herald {
            child: None,
            addr,
            admin_addr,
            args,
            work: work.to_path_buf(),
            starts: 0,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap(),
        };
        herald.spawn();
        herald
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "herald is already running");
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).unwrap();
        let child = Command::new(HERALD)
            .args(&self.args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("herald starts");
        self.child = Some(child);
    }

    fn log_path(&self) -> PathBuf {
        self.work.join(format!("serve-{}.log", self.starts))
    }

    /// The last lines the current process wrote, for failure messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(40);
        format!(
            "last lines of {}:\n{}",
            self.log_path().display(),
            lines[from..].join("\n")
        )
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn admin(&self) -> String {
        format!("http://{}", self.admin_addr)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("herald is running").id()
    }

    /// Waits until `/healthz` answers 200; fails at once if the process exits.
    async fn wait_ready(&mut self) {
        let end = Instant::now() + READY;
        let url = format!("{}/healthz", self.base());
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "herald serve exited with {status} before answering /healthz\n{}",
                    self.log_tail()
                );
            }
            if let Ok(r) = self.http.get(&url).send().await {
                if r.status() == StatusCode::OK {
                    return;
                }
            }
            assert!(
                Instant::now() < end,
                "herald serve did not answer {url} within {READY:?}\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGKILL, as `kill -9`: no shutdown code runs.
    fn kill9(&mut self) {
        let mut child = self.child.take().expect("herald is running");
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "herald serve had already exited ({status}) when it was to be killed\n{}",
                self.log_tail()
            );
        }
        child.kill().unwrap(); // SIGKILL on Unix
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "{status}"
        );
    }

    /// SIGTERM, then waits (up to `within`) for the process to exit.
    async fn terminate(&mut self, within: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("herald is running");
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let end = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "herald serve did not exit within {within:?} of SIGTERM\n{}",
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// (VmRSS, VmHWM) of the running process, in KiB.
    fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/<pid>/status is readable");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/<pid>/status:\n{status}"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A port nobody listens on right now (the server binds it later, and again after each kill).
/// The Kafka kill -9 loop runs alone: under the load of the other tests here, tansu's group
/// coordinator was seen to keep a restarted replica out of its group for minutes (it never
/// reassigns a dead member's partitions), while alone it lets it back within seconds. The
/// others share the machine with each other as before.
static QUIET: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Writes a Knative config: one Broker plus `triggers` (already-indented YAML documents).
fn write_config(work: &Path, broker: &str, triggers: &[String]) -> PathBuf {
    let mut yaml = format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\nmetadata:\n  name: {broker}\n  namespace: durability\n"
    );
    for t in triggers {
        yaml.push_str("---\n");
        yaml.push_str(t);
    }
    let dir = work.join("config");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("herald.yaml"), yaml).unwrap();
    dir
}

/// A Trigger document: `name` on `broker`, delivering to `subscriber`, with extra spec lines
/// (each indented by two spaces, under `spec:`).
fn trigger(name: &str, broker: &str, subscriber: &str, spec: &str) -> String {
    format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\nmetadata:\n  name: {name}\n  namespace: durability\n\
         spec:\n  broker: {broker}\n  subscriber:\n    uri: {subscriber}\n{spec}"
    )
}

/// Bytes of the files under `dir`.
fn dir_size(dir: &Path) -> u64 {
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

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

// ---------------------------------------------------------------------------------------------
// Sending
// ---------------------------------------------------------------------------------------------

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// POSTs one binary-mode CloudEvent with `data` as its JSON body.
async fn post(
    client: &reqwest::Client,
    url: &str,
    id: &str,
    data: &str,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "/durability-test")
        .header("ce-type", EVENT_TYPE)
        .header("content-type", "application/json")
        .body(data.to_string())
        .send()
        .await
}

/// Sends one event and expects 202 (retrying 429 and 503 within `PROMPT`: a server busy for a
/// moment is not a failure of these checks).
async fn send_accepted(client: &reqwest::Client, url: &str, id: &str) {
    let end = Instant::now() + PROMPT;
    loop {
        let r = post(client, url, id, &format!("{{\"id\":\"{id}\"}}"))
            .await
            .unwrap_or_else(|e| panic!("sending {id} to {url}: {e}"));
        let status = r.status();
        if status == StatusCode::ACCEPTED {
            return;
        }
        let retryable =
            status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE;
        assert!(
            retryable && Instant::now() < end,
            "{url} answered {status} to {id}: {}",
            r.text().await.unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until Herald counts `n` events delivered to Trigger `durability/<trigger>`
/// (`herald_delivered_total` on the admin listener at `admin`).
async fn wait_settled(client: &reqwest::Client, admin: &str, trigger: &str, n: usize) {
    let series = format!(
        r#"herald_delivered_total{{kind="Trigger",namespace_name="durability",name="{trigger}"}} "#
    );
    let end = Instant::now() + PROMPT;
    loop {
        let text = client
            .get(format!("{admin}/metrics"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("scraping {admin}/metrics: {e}"))
            .text()
            .await
            .unwrap_or_default();
        let count = text
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .and_then(|v| v.trim().parse::<f64>().ok());
        if count.is_some_and(|c| c >= n as f64) {
            return;
        }
        assert!(
            Instant::now() < end,
            "Herald counted {count:?} of {n} deliveries to {trigger} within {PROMPT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A JSON body of about `size` bytes.
fn padded(id: &str, size: usize) -> String {
    let head = format!("{{\"id\":\"{id}\",\"pad\":\"");
    let pad = size.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad))
}

// ---------------------------------------------------------------------------------------------
// The subscriber
// ---------------------------------------------------------------------------------------------

/// How the subscriber answers one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reply {
    Accept,
    Fail(u16),
    /// Wait (holding the request open) until `Subscriber::release`, then accept.
    Hold,
}

/// Decides the answer from the path, the event id and the attempt (1 + earlier requests for
/// the same path and id, across Herald restarts).
type Behaviour = Arc<dyn Fn(&str, &str, u32) -> Reply + Send + Sync>;

/// What one path (one Trigger) received.
#[derive(Default, Debug)]
struct PathLog {
    /// Requests per event id, however they were answered.
    attempts: HashMap<String, u32>,
    /// Requests answered 2xx per event id.
    delivered: HashMap<String, u32>,
    /// Requests answered 2xx.
    total_delivered: u64,
    /// Ids answered non-2xx at least once.
    failed: HashSet<String>,
    /// Ids answered non-2xx and not delivered yet: waiting for a retry.
    pending_retry: HashSet<String>,
}

impl PathLog {
    fn delivered(&self, id: &str) -> u32 {
        self.delivered.get(id).copied().unwrap_or(0)
    }

    /// Deliveries beyond the first of each id.
    fn duplicates(&self) -> u64 {
        self.total_delivered - self.delivered.len() as u64
    }
}

struct Recorded {
    paths: HashMap<String, PathLog>,
    /// Requests to paths the subscriber was not told about.
    unexpected: Vec<String>,
}

struct SubInner {
    recorded: Mutex<Recorded>,
    /// Bumped on every request; waiters watch it.
    version: watch::Sender<u64>,
    behaviour: Mutex<Behaviour>,
    /// While true, `Reply::Hold` requests wait.
    held: watch::Sender<bool>,
}

/// A CloudEvents subscriber on 127.0.0.1:0 serving `paths` (e.g. `/a`), one per Trigger.
struct Subscriber {
    addr: SocketAddr,
    inner: Arc<SubInner>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Subscriber {
    async fn start(paths: &[&str], behaviour: Behaviour) -> Subscriber {
        let inner = Arc::new(SubInner {
            recorded: Mutex::new(Recorded {
                paths: paths
                    .iter()
                    .map(|p| (p.to_string(), PathLog::default()))
                    .collect(),
                unexpected: Vec::new(),
            }),
            version: watch::channel(0).0,
            behaviour: Mutex::new(behaviour),
            held: watch::channel(true).0,
        });
        let app = Router::new().fallback(receive).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Subscriber {
            addr,
            inner,
            server,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn set_behaviour(&self, behaviour: Behaviour) {
        *self.inner.behaviour.lock().unwrap() = behaviour;
    }

    /// Lets held requests (and later `Reply::Hold` ones) be answered 202.
    fn release(&self) {
        self.inner.held.send_replace(false);
    }

    fn with<T>(&self, f: impl FnOnce(&Recorded) -> T) -> T {
        f(&self.inner.recorded.lock().unwrap())
    }

    /// Waits until `check` holds, up to `within`; panics with `what` and `describe` otherwise.
    async fn wait_until(
        &self,
        what: &str,
        within: Duration,
        check: impl Fn(&Recorded) -> bool,
        describe: impl Fn(&Recorded) -> String,
    ) {
        if !self.try_wait_until(within, check).await {
            panic!(
                "{what}: not within {within:?}; {}",
                self.with(|r| describe(r))
            );
        }
    }

    /// Waits until `check` holds, up to `within`; returns whether it does.
    async fn try_wait_until(&self, within: Duration, check: impl Fn(&Recorded) -> bool) -> bool {
        let mut changes = self.inner.version.subscribe();
        let end = tokio::time::Instant::now() + within;
        loop {
            if self.with(&check) {
                return true;
            }
            // Every request bumps the version, so waking on a change is enough.
            if tokio::time::timeout_at(end, changes.changed())
                .await
                .is_err()
            {
                return self.with(&check);
            }
        }
    }

    /// Waits until every id in `ids` has been delivered (2xx) at least once on `path`.
    async fn wait_delivered(&self, path: &str, ids: &HashSet<String>, within: Duration) {
        self.wait_until(
            &format!("delivery of {} events on {path}", ids.len()),
            within,
            |r| {
                let log = &r.paths[path];
                log.delivered.len() >= ids.len() && ids.iter().all(|id| log.delivered(id) > 0)
            },
            |r| {
                let log = &r.paths[path];
                let missing: Vec<&String> = ids
                    .iter()
                    .filter(|id| log.delivered(id) == 0)
                    .take(10)
                    .collect();
                format!(
                    "{} of {} not delivered, e.g. {missing:?} ({} pending retry)",
                    ids.iter().filter(|id| log.delivered(id) == 0).count(),
                    ids.len(),
                    log.pending_retry.len()
                )
            },
        )
        .await;
    }
}

async fn receive(State(inner): State<Arc<SubInner>>, request: Request) -> StatusCode {
    let path = request.uri().path().to_string();
    let header_id = request
        .headers()
        .get("ce-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let id = match header_id {
        Some(id) => id,
        None => {
            // Not binary mode: take the id from a structured body, if it is one.
            let body = axum::body::to_bytes(request.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_string))
                .unwrap_or_else(|| "<no id>".into())
        }
    };
    let reply = {
        let mut recorded = inner.recorded.lock().unwrap();
        let Some(log) = recorded.paths.get_mut(&path) else {
            recorded.unexpected.push(format!("{path} {id}"));
            drop(recorded);
            inner.version.send_modify(|v| *v += 1);
            return StatusCode::NOT_FOUND;
        };
        let attempt = log.attempts.entry(id.clone()).or_default();
        *attempt += 1;
        let attempt = *attempt;
        let behaviour = inner.behaviour.lock().unwrap().clone();
        behaviour(&path, &id, attempt)
    };
    inner.version.send_modify(|v| *v += 1);
    let status = match reply {
        Reply::Accept => StatusCode::ACCEPTED,
        Reply::Fail(code) => StatusCode::from_u16(code).unwrap(),
        Reply::Hold => {
            let mut held = inner.held.subscribe();
            // Herald giving up on the request (timeout, kill) drops this future: not delivered.
            let _ = held.wait_for(|h| !*h).await;
            StatusCode::ACCEPTED
        }
    };
    {
        let mut recorded = inner.recorded.lock().unwrap();
        let log = recorded.paths.get_mut(&path).expect("registered above");
        if status.is_success() {
            *log.delivered.entry(id.clone()).or_default() += 1;
            log.total_delivered += 1;
            log.pending_retry.remove(&id);
        } else {
            log.failed.insert(id.clone());
            log.pending_retry.insert(id);
        }
    }
    inner.version.send_modify(|v| *v += 1);
    status
}

// ---------------------------------------------------------------------------------------------
// 1. kill -9 mid-flight
// ---------------------------------------------------------------------------------------------

/// Every event ingress answered 202 reaches the subscriber, although the server is SIGKILLed
/// several times while 16 senders are publishing and some deliveries are waiting for a retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_flight_loses_no_accepted_event() {
    let _shared = QUIET.read().await;
    let events = env_usize("HERALD_CRASH_EVENTS").unwrap_or(0).max(10_000);
    let kills = env_usize("HERALD_CRASH_KILLS").unwrap_or(4).max(3);
    kill_9_loop("sled", "crash", &[], events, kills).await;
}

/// The same kill -9 loop with the Broker on NATS JetStream (the shared server on
/// 127.0.0.1:4222; its stream is deleted afterwards). `HERALD_CRASH_EVENTS` /
/// `HERALD_CRASH_KILLS` raise its size too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_flight_loses_no_accepted_event_on_nats() {
    let _shared = QUIET.read().await;
    const TEST: &str = "kill_9_mid_flight_loses_no_accepted_event_on_nats";
    if !replicas::servers::shared_nats_available(TEST) {
        return;
    }
    let broker = format!("crash-nats-{}", std::process::id());
    let _stream = replicas::servers::StreamCleanup::new(
        replicas::servers::NATS_URL,
        replicas::servers::stream_name("durability", &broker),
    );
    let events = env_usize("HERALD_CRASH_EVENTS").unwrap_or(0).max(3_000);
    let kills = env_usize("HERALD_CRASH_KILLS").unwrap_or(3).max(3);
    let args = [
        "--channel",
        "nats",
        "--nats-url",
        replicas::servers::NATS_URL,
    ];
    kill_9_loop("nats", &broker, &args, events, kills).await;
}

/// The same kill -9 loop with the Broker on Kafka: a private tansu on sqlite (its memory
/// storage skips records on resume), a short session timeout so the restarted process gets
/// the partitions back soon. A loss tansu causes is reported by the same count, not hidden.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_flight_loses_no_accepted_event_on_kafka() {
    let _alone = QUIET.write().await;
    const TEST: &str = "kill_9_mid_flight_loses_no_accepted_event_on_kafka";
    let Some(tansu) = replicas::servers::Tansu::start(TEST).await else {
        return;
    };
    let bootstrap = tansu.bootstrap();
    let events = env_usize("HERALD_CRASH_EVENTS").unwrap_or(0).max(3_000);
    let kills = env_usize("HERALD_CRASH_KILLS").unwrap_or(3).max(3);
    let args = [
        "--channel",
        "kafka",
        "--kafka-bootstrap-servers",
        &bootstrap,
        "--kafka-consumer-config",
        "session.timeout.ms=6000",
        "--kafka-consumer-config",
        "heartbeat.interval.ms=1000",
    ];
    kill_9_loop("kafka", "crash-kafka", &args, events, kills).await;
}

/// `events` sent by 16 senders to Broker `broker` (on `channel`, per `args`) while herald is
/// SIGKILLed and restarted `kills` times, each time with some delivery awaiting its retry;
/// every 202'd event must be delivered; duplicates are counted and printed.
async fn kill_9_loop(channel: &str, broker: &str, args: &[&str], events: usize, kills: usize) {
    const AHEAD: usize = 500;
    let started = Instant::now();
    let senders = 16;

    // The first attempt of every 50th event fails, so some events are mid-retry at each kill.
    let sub = Subscriber::start(
        &["/crash"],
        Arc::new(|_: &str, id: &str, attempt: u32| {
            // e50, e100, e150, ...: every 50th event.
            let every_50th = id.len() > 2 && (id.ends_with("00") || id.ends_with("50"));
            if every_50th && attempt == 1 {
                Reply::Fail(503)
            } else {
                Reply::Accept
            }
        }),
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let config = write_config(
        work.path(),
        broker,
        &[trigger(
            "all",
            broker,
            &sub.url("/crash"),
            "  delivery:\n    retry: 10\n    backoffPolicy: linear\n    backoffDelay: PT0.3S\n",
        )],
    );
    let mut herald = Herald::start(work.path(), &config, free_addr(), args);
    herald.wait_ready().await;
    let log = std::fs::read_to_string(herald.log_path()).unwrap_or_default();
    assert!(
        log.contains(&format!("channel={channel}")),
        "the Broker is not on {channel}\n{}",
        herald.log_tail()
    );
    let url = format!("{}/durability/{broker}", herald.base());

    let accepted = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicU64::new(0)); // 429 and 5xx answers
    let transport = Arc::new(AtomicU64::new(0)); // connection errors and timeouts
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..senders {
        let (url, accepted, refused, transport, recorded) = (
            url.clone(),
            accepted.clone(),
            refused.clone(),
            transport.clone(),
            sub.inner.clone(),
        );
        tasks.spawn(async move {
            let client = client();
            let mut changes = recorded.version.subscribe();
            for i in (s..events).step_by(senders) {
                // At most AHEAD events beyond what was delivered, so sending outlasts every
                // kill however long a restarted process takes to read again (on Kafka, its
                // group's session timeout); not for ever, so lost events are reported as such.
                let held = Instant::now() + Duration::from_secs(120);
                while accepted.load(Ordering::Relaxed)
                    > recorded.recorded.lock().unwrap().paths["/crash"]
                        .delivered
                        .len()
                        + AHEAD
                    && Instant::now() < held
                {
                    let _ =
                        tokio::time::timeout(Duration::from_millis(100), changes.changed()).await;
                }
                let id = format!("e{i}");
                let body = format!("{{\"id\":\"{id}\",\"sender\":{s}}}");
                let give_up = Instant::now() + Duration::from_secs(180);
                loop {
                    match post(&client, &url, &id, &body).await {
                        Ok(r) if r.status() == StatusCode::ACCEPTED => {
                            accepted.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Ok(r)
                            if r.status() == StatusCode::TOO_MANY_REQUESTS
                                || r.status().is_server_error() =>
                        {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => panic!(
                            "ingress answered {} to {id}: {}",
                            r.status(),
                            r.text().await.unwrap_or_default()
                        ),
                        Err(_) => {
                            transport.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    assert!(
                        Instant::now() < give_up,
                        "event {id} was not accepted within 180s"
                    );
                    // A client's back-off before resending the same event, not a synchronisation.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
    }

    // Kill at evenly spaced points of the run, each time while some delivery of the running
    // process awaits a retry (one it failed itself, not one left over from before a restart).
    let mut mid_retry_at_kills: HashSet<String> = HashSet::new();
    let mut kills_mid_send = 0;
    let mut restarts = 0;
    let mut failed_before: HashSet<String> = HashSet::new();
    for k in 1..=kills {
        let target = events * k / (kills + 1);
        let end = Instant::now() + Duration::from_secs(180);
        while accepted.load(Ordering::Relaxed) < target {
            assert!(
                Instant::now() < end,
                "only {} of {events} events accepted within 180s (waiting for {target} before kill {k})\n{}",
                accepted.load(Ordering::Relaxed),
                herald.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        sub.wait_until(
            &format!("a delivery of this process awaiting its retry before kill {k}"),
            PROMPT,
            |r| {
                let log = &r.paths["/crash"];
                log.pending_retry
                    .iter()
                    .any(|id| !failed_before.contains(id))
            },
            |r| format!("{} delivered", r.paths["/crash"].delivered.len()),
        )
        .await;
        let pending: Vec<String> =
            sub.with(|r| r.paths["/crash"].pending_retry.iter().cloned().collect());
        let at = accepted.load(Ordering::Relaxed);
        if at < events {
            kills_mid_send += 1;
        }
        let delivered = sub.with(|r| r.paths["/crash"].delivered.len());
        herald.kill9();
        let down = Instant::now();
        herald.spawn();
        herald.wait_ready().await;
        restarts += 1;
        // Taken once the new process is up, so a failure the killed one still caused (a
        // request in flight) counts as before the restart.
        failed_before = sub.with(|r| r.paths["/crash"].failed.clone());
        eprintln!(
            "kill -9 #{k}: at {at}/{events} accepted, {delivered} delivered, {} awaiting a retry; \
             back up in {:?}",
            pending.len(),
            down.elapsed()
        );
        mid_retry_at_kills.extend(pending);
    }

    let end = Instant::now() + Duration::from_secs(300);
    while let Some(done) = tokio::time::timeout_at(end.into(), tasks.join_next())
        .await
        .expect("senders did not finish within 300s")
    {
        done.expect("a sender failed");
    }
    let total_accepted = accepted.load(Ordering::Relaxed);
    assert_eq!(total_accepted, events);

    let ids: HashSet<String> = (0..events).map(|i| format!("e{i}")).collect();
    let complete = |r: &Recorded| {
        let log = &r.paths["/crash"];
        log.delivered.len() >= ids.len() && ids.iter().all(|id| log.delivered(id) > 0)
    };
    // On failure the figures below are printed before the assertion.
    sub.try_wait_until(Duration::from_secs(120), complete).await;

    let (unique, duplicates, dup_ids, failed_first, unexpected) = sub.with(|r| {
        let log = &r.paths["/crash"];
        (
            log.delivered.len(),
            log.duplicates(),
            log.delivered.values().filter(|n| **n > 1).count(),
            log.failed.len(),
            r.unexpected.len(),
        )
    });
    let lost: Vec<String> = sub.with(|r| {
        let mut lost: Vec<String> = ids
            .iter()
            .filter(|id| r.paths["/crash"].delivered(id) == 0)
            .cloned()
            .collect();
        lost.sort_by_key(|id| id[1..].parse::<usize>().unwrap_or(0));
        lost
    });
    let status = herald.terminate(Duration::from_secs(60)).await;
    eprintln!(
        "SUMMARY kill_9_mid_flight channel={channel}: events={events} senders={senders} accepted={total_accepted} \
         delivered_unique={unique} lost={} duplicates={duplicates} (ids delivered more than once: \
         {dup_ids}) kills={kills} (mid-send {kills_mid_send}) restarts={restarts} \
         mid_retry_at_kills={} first_attempt_503={failed_first} sender_resends: refused={} \
         transport_errors={} elapsed={:.1}s",
        lost.len(),
        mid_retry_at_kills.len(),
        refused.load(Ordering::Relaxed),
        transport.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    assert!(
        lost.is_empty(),
        "{} accepted events were never delivered: {:?}",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    assert_eq!(unexpected, 0, "requests to unexpected paths");
    assert!(
        unique == events,
        "the subscriber saw ids that were never sent"
    );
    assert_eq!(kills_mid_send, kills, "a kill happened after sending ended");
    assert!(
        status.success(),
        "herald exited with {status} after SIGTERM"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. graceful restart
// ---------------------------------------------------------------------------------------------

/// After SIGTERM and a restart, each Trigger resumes where it was: the one whose subscriber
/// was down gets everything it was owed, the healthy one nothing again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_resumes_every_trigger_from_its_committed_offset() {
    let _shared = QUIET.read().await;
    let n = 300; // more than --max-in-flight, so some of `down`'s events were never read
    let sub = Subscriber::start(
        &["/healthy", "/down"],
        Arc::new(|path: &str, _: &str, _| {
            if path == "/down" {
                Reply::Fail(503)
            } else {
                Reply::Accept
            }
        }),
    )
    .await;
    let work = tempfile::tempdir().unwrap();
    let config = write_config(
        work.path(),
        "restart",
        &[
            trigger(
                "healthy",
                "restart",
                &sub.url("/healthy"),
                "  delivery:\n    retry: 3\n    backoffPolicy: linear\n    backoffDelay: PT0.05S\n",
            ),
            // Long back-off: the retries outlast the first run, so nothing is given up on.
            trigger(
                "down",
                "restart",
                &sub.url("/down"),
                &format!(
                    "  filter:\n    attributes:\n      type: {EVENT_TYPE}\n  \
                     delivery:\n    retry: 30\n    backoffPolicy: exponential\n    backoffDelay: PT0.5S\n"
                ),
            ),
        ],
    );
    let addr = free_addr();
    let mut herald = Herald::start(
        work.path(),
        &config,
        addr,
        &["--drain-timeout", "2", "--max-in-flight", "64"],
    );
    herald.wait_ready().await;
    let url = format!("{}/durability/restart", herald.base());
    let client = client();
    let ids: HashSet<String> = (0..n).map(|i| format!("r{i}")).collect();
    for i in 0..n {
        send_accepted(&client, &url, &format!("r{i}")).await;
    }
    sub.wait_delivered("/healthy", &ids, PROMPT).await;
    sub.wait_until(
        "the down trigger's first attempts",
        PROMPT,
        |r| r.paths["/down"].attempts.len() >= 64,
        |r| format!("{} ids attempted", r.paths["/down"].attempts.len()),
    )
    .await;

    let status = herald.terminate(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "herald exited with {status} after SIGTERM"
    );
    let (healthy_before, down_attempted, down_delivered) = sub.with(|r| {
        (
            r.paths["/healthy"].total_delivered,
            r.paths["/down"].attempts.len(),
            r.paths["/down"].total_delivered,
        )
    });
    assert_eq!(
        healthy_before, n as u64,
        "the healthy trigger got duplicates"
    );
    assert_eq!(down_delivered, 0);

    // The down subscriber recovers; Herald restarts on the same data directory.
    sub.set_behaviour(Arc::new(|_: &str, _: &str, _| Reply::Accept));
    herald.spawn();
    herald.wait_ready().await;
    sub.wait_delivered("/down", &ids, PROMPT).await;
    // Fence: the healthy trigger sees an event sent now only after anything it re-read first.
    send_accepted(&client, &url, "fence").await;
    let fence: HashSet<String> = ["fence".to_string()].into();
    sub.wait_delivered("/healthy", &fence, PROMPT).await;
    sub.wait_delivered("/down", &fence, PROMPT).await;

    let (healthy_dups, healthy_attempts, down_dups, down_total, unexpected) = sub.with(|r| {
        let (h, d) = (&r.paths["/healthy"], &r.paths["/down"]);
        (
            h.duplicates(),
            h.attempts.values().map(|a| u64::from(*a)).sum::<u64>(),
            d.duplicates(),
            d.total_delivered,
            r.unexpected.len(),
        )
    });
    let status = herald.terminate(Duration::from_secs(30)).await;
    eprintln!(
        "SUMMARY restart: events={n} healthy: delivered={} duplicates={healthy_dups} \
         attempts={healthy_attempts}; down: attempted before restart={down_attempted} \
         delivered after restart={down_total} duplicates={down_dups}",
        n + 1
    );
    assert_eq!(unexpected, 0);
    assert_eq!(
        healthy_dups, 0,
        "events the healthy trigger had acknowledged before a graceful stop came again"
    );
    assert_eq!(healthy_attempts, n as u64 + 1);
    assert!(down_total > n as u64, "the down trigger was not caught up");
    assert!(
        status.success(),
        "herald exited with {status} after SIGTERM"
    );
}

// ---------------------------------------------------------------------------------------------
// 3. replay
// ---------------------------------------------------------------------------------------------

async fn herald_replay(
    server: &str,
    broker: &str,
    trigger: &str,
    from: &str,
) -> std::process::Output {
    herald_replay_with(server, broker, trigger, from, &[]).await
}

async fn herald_replay_with(
    server: &str,
    broker: &str,
    trigger: &str,
    from: &str,
    args: &[&str],
) -> std::process::Output {
    tokio::process::Command::new(HERALD)
        .args([
            "replay",
            "--server",
            server,
            "--broker",
            broker,
            "--trigger",
            trigger,
            "--from",
            from,
        ])
        .args(args)
        .output()
        .await
        .expect("herald replay runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `herald replay` moves only the chosen Trigger back (by offset and by time); the other one
/// receives nothing again, and bad requests fail naming the problem.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_redelivers_only_to_the_chosen_trigger() {
    let _shared = QUIET.read().await;
    let n = 100;
    let sub = Subscriber::start(&["/a", "/b"], Arc::new(|_: &str, _: &str, _| Reply::Accept)).await;
    let work = tempfile::tempdir().unwrap();
    let config = write_config(
        work.path(),
        "replay",
        &[
            trigger("a", "replay", &sub.url("/a"), ""),
            trigger("b", "replay", &sub.url("/b"), ""),
        ],
    );
    let mut herald = Herald::start(
        work.path(),
        &config,
        free_addr(),
        &["--retention-max-age", "PT1H"],
    );
    herald.wait_ready().await;
    let server = herald.admin();
    let url = format!("{}/durability/replay", herald.base());
    let client = client();
    // The admin API is not on the ingress listener: whoever reaches ingress cannot replay.
    let on_ingress = client
        .post(format!("{}/admin/v1/replay", herald.base()))
        .json(&serde_json::json!({"broker": "durability/replay", "trigger": "a", "from": "0"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        on_ingress.status(),
        StatusCode::NOT_FOUND,
        "replay answered on the ingress port"
    );

    // A second before the first event: a time position that must find offset 0.
    let before = (chrono::Utc::now() - chrono::Duration::seconds(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let ids: HashSet<String> = (0..n).map(|i| format!("p{i}")).collect();
    for i in 0..n {
        send_accepted(&client, &url, &format!("p{i}")).await;
    }
    sub.wait_delivered("/a", &ids, PROMPT).await;
    sub.wait_delivered("/b", &ids, PROMPT).await;
    // Herald counts a delivery once the answer is back, a moment after the subscriber has it;
    // replay's summary counts what settles after its seek, so the earlier ones must be counted.
    wait_settled(&client, &server, "a", n).await;

    // Sends a fence event and waits until both triggers have it: B has then had every chance
    // to receive whatever it (wrongly) re-read before it.
    let fence = |name: &str| {
        let (client, url, name) = (client.clone(), url.clone(), name.to_string());
        let sub = &sub;
        async move {
            send_accepted(&client, &url, &name).await;
            let set: HashSet<String> = [name].into();
            sub.wait_delivered("/a", &set, PROMPT).await;
            sub.wait_delivered("/b", &set, PROMPT).await;
        }
    };
    // Waits until A has had every id `times` times.
    let a_has = |times: u32, ids: HashSet<String>| {
        let sub = &sub;
        async move {
            sub.wait_until(
                &format!("A receiving every replayed event {times} times"),
                PROMPT,
                |r| ids.iter().all(|id| r.paths["/a"].delivered(id) >= times),
                |r| {
                    let short = ids
                        .iter()
                        .filter(|id| r.paths["/a"].delivered(id) < times)
                        .count();
                    format!("{short} of {} ids short", ids.len())
                },
            )
            .await;
        }
    };

    // By offset.
    let out = herald_replay(&server, "durability/replay", "a", "0").await;
    assert!(
        out.status.success(),
        "herald replay failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("replaying to trigger durability/a from offset 0"),
        "{}",
        text(&out.stdout)
    );
    // It follows the replay: by the summary line, A has had every event a second time.
    let summary = format!("replayed {n} of {n} event(s) to trigger durability/a: caught up");
    assert!(
        text(&out.stdout).lines().any(|l| l == summary),
        "no {summary:?}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let short = sub.with(|r| {
        ids.iter()
            .filter(|id| r.paths["/a"].delivered(id) < 2)
            .count()
    });
    assert_eq!(short, 0, "ids not yet replayed when herald replay returned");
    fence("fence-1").await;
    let (a1, b1) = sub.with(|r| (r.paths["/a"].total_delivered, r.paths["/b"].total_delivered));
    eprintln!("replay from offset 0: A received {a1} (2 x {n} + fence), B {b1} ({n} + fence)");
    assert_eq!(b1, n as u64 + 1, "B received replayed events");
    assert_eq!(a1, 2 * n as u64 + 1, "A did not receive exactly the replay");

    // By time, from before the first event: everything again, the first fence included.
    let out = herald_replay(&server, "replay", "durability/a", &before).await;
    assert!(
        !out.status.success() && text(&out.stderr).contains("default/replay"),
        "a broker in another namespace must not be found: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let out = herald_replay_with(&server, "durability/replay", "a", &before, &["--no-wait"]).await;
    assert!(
        out.status.success(),
        "herald replay --from {before} --no-wait failed: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    // --no-wait: it returns once the Trigger moved, without following (no summary line).
    assert_eq!(
        text(&out.stdout).trim(),
        "replaying to trigger durability/a from offset 0",
        "{}",
        text(&out.stderr)
    );
    a_has(3, ids.clone()).await;
    a_has(2, ["fence-1".to_string()].into()).await;
    fence("fence-2").await;
    let (a2, b2) = sub.with(|r| (r.paths["/a"].total_delivered, r.paths["/b"].total_delivered));
    eprintln!("replay from {before}: A received {a2} (3 x {n} + 2 + 1), B {b2} ({n} + 2 fences)");
    assert_eq!(b2, n as u64 + 2, "B received replayed events");
    assert_eq!(a2, 3 * n as u64 + 3, "A did not receive exactly the replay");

    // Refusals: each exits non-zero naming the problem, and moves nothing.
    for (trigger, from, needle) in [
        ("nope", "0", "nope"),
        ("a", "yesterday", "yesterday"),
        ("a", "2026-13-45T99:00:00Z", "RFC 3339"),
        ("a", "999999", "past the head"),
        ("a", "2999-01-01T00:00:00Z", "past the head"),
    ] {
        let out = herald_replay(&server, "durability/replay", trigger, from).await;
        let stderr = text(&out.stderr);
        eprintln!(
            "herald replay --trigger {trigger} --from {from}: {} {}",
            out.status,
            stderr.trim()
        );
        assert!(
            !out.status.success(),
            "replay --trigger {trigger} --from {from} succeeded: {}",
            text(&out.stdout)
        );
        assert!(stderr.contains(needle), "{needle:?} missing from: {stderr}");
    }
    fence("fence-3").await;
    let (a3, b3) = sub.with(|r| (r.paths["/a"].total_delivered, r.paths["/b"].total_delivered));
    assert_eq!(
        (a3, b3),
        (a2 + 1, b2 + 1),
        "a refused replay moved a trigger"
    );
    assert_eq!(sub.with(|r| r.unexpected.len()), 0);
    let status = herald.terminate(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "herald exited with {status} after SIGTERM"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. backpressure
// ---------------------------------------------------------------------------------------------

/// With a subscriber that holds every request, ingress accepts up to --max-lag-events and then
/// answers 429 with Retry-After, without its memory growing; after the subscriber recovers,
/// every accepted event is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backpressure_answers_429_with_retry_after_and_memory_stays_bounded() {
    let _shared = QUIET.read().await;
    let max_lag = 200;
    let flood = 20_000;
    let senders = 16;
    let size = 1024;
    let sub = Subscriber::start(&["/stuck"], Arc::new(|_: &str, _: &str, _| Reply::Hold)).await;
    let work = tempfile::tempdir().unwrap();
    let config = write_config(
        work.path(),
        "pressure",
        &[trigger(
            "stuck",
            "pressure",
            &sub.url("/stuck"),
            "  delivery:\n    retry: 5\n    backoffPolicy: linear\n    backoffDelay: PT0.2S\n    timeout: PT600S\n",
        )],
    );
    let max_lag_arg = max_lag.to_string();
    let mut herald = Herald::start(
        work.path(),
        &config,
        free_addr(),
        &["--max-lag-events", &max_lag_arg],
    );
    herald.wait_ready().await;
    let url = format!("{}/durability/pressure", herald.base());
    let client = client();
    let (rss_start, _) = herald.memory_kib();

    // Until the first 429.
    let mut accepted: HashSet<String> = HashSet::new();
    let retry_after = loop {
        assert!(
            accepted.len() <= 10 * max_lag,
            "no 429 after {} accepted events",
            accepted.len()
        );
        let id = format!("q{}", accepted.len());
        let r = post(&client, &url, &id, &padded(&id, size)).await.unwrap();
        match r.status() {
            StatusCode::ACCEPTED => {
                accepted.insert(id);
            }
            StatusCode::TOO_MANY_REQUESTS => {
                break r
                    .headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap_or("").to_string());
            }
            other => panic!("{other} to {id}: {}", r.text().await.unwrap_or_default()),
        }
    };
    let first_429_after = accepted.len();
    let retry_after = retry_after.expect("the 429 carries Retry-After");
    let seconds: u64 = retry_after
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After {retry_after:?} is not whole seconds"));
    assert!(seconds >= 1, "Retry-After {seconds}");
    assert_eq!(
        first_429_after, max_lag,
        "ingress accepted {first_429_after} events before 429 with --max-lag-events {max_lag}"
    );
    let (rss_before, _) = herald.memory_kib();

    // The flood: 1 KiB events from 16 senders, none of which may be accepted while the
    // subscriber holds the backlog.
    let next = Arc::new(AtomicUsize::new(0));
    let counts = Arc::new(Mutex::new(HashMap::<u16, u64>::new()));
    let flood_accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let bad_retry_after = Arc::new(AtomicU64::new(0));
    let flood_started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..senders {
        let (client, url, next, counts, flood_accepted, bad_retry_after) = (
            client.clone(),
            url.clone(),
            next.clone(),
            counts.clone(),
            flood_accepted.clone(),
            bad_retry_after.clone(),
        );
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= flood {
                    return;
                }
                let id = format!("f{i}");
                let r = post(&client, &url, &id, &padded(&id, size))
                    .await
                    .unwrap_or_else(|e| panic!("sending {id}: {e}"));
                let status = r.status();
                if status == StatusCode::ACCEPTED {
                    flood_accepted.lock().unwrap().push(id);
                } else if status == StatusCode::TOO_MANY_REQUESTS {
                    let ok = r
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok())
                        .is_some_and(|s| s >= 1);
                    if !ok {
                        bad_retry_after.fetch_add(1, Ordering::Relaxed);
                    }
                }
                *counts.lock().unwrap().entry(status.as_u16()).or_default() += 1;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a flood sender failed");
    }
    let flood_secs = flood_started.elapsed().as_secs_f64();
    let (rss_after, hwm) = herald.memory_kib();
    let counts = counts.lock().unwrap().clone();
    let flood_accepted = flood_accepted.lock().unwrap().clone();
    let held = sub.with(|r| r.paths["/stuck"].attempts.len());
    eprintln!(
        "SUMMARY backpressure: max_lag_events={max_lag} accepted before the first 429={first_429_after} \
         Retry-After={seconds}s; flood of {flood} x {size} B in {flood_secs:.1}s: answers {counts:?}; \
         held at the subscriber={held}; VmRSS start={:.1} MiB, at first 429={:.1} MiB, after flood={:.1} MiB \
         (growth {:+.1} MiB), VmHWM={:.1} MiB",
        rss_start as f64 / 1024.0,
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        (rss_after as f64 - rss_before as f64) / 1024.0,
        hwm as f64 / 1024.0
    );
    assert_eq!(
        counts.values().sum::<u64>(),
        flood as u64,
        "every flood request was answered"
    );
    assert_eq!(
        counts.get(&429).copied().unwrap_or(0),
        flood as u64,
        "every flood event should be refused with 429 while the backlog is full: {counts:?}"
    );
    assert_eq!(
        bad_retry_after.load(Ordering::Relaxed),
        0,
        "429s without a valid Retry-After"
    );
    assert!(
        rss_after < 200 * 1024,
        "VmRSS {rss_after} KiB after the flood: not under 200 MiB"
    );
    assert!(
        rss_after.saturating_sub(rss_before) < 50 * 1024,
        "VmRSS grew from {rss_before} KiB to {rss_after} KiB during the flood"
    );

    // The subscriber recovers: the backlog drains and ingress accepts again.
    sub.release();
    accepted.extend(flood_accepted);
    sub.wait_delivered("/stuck", &accepted, PROMPT).await;
    send_accepted(&client, &url, "after").await;
    accepted.insert("after".into());
    sub.wait_delivered("/stuck", &accepted, PROMPT).await;
    let (unique, dups) = sub.with(|r| {
        let log = &r.paths["/stuck"];
        (log.delivered.len(), log.duplicates())
    });
    eprintln!("backpressure: after recovery {unique} events delivered, {dups} duplicates");
    assert_eq!(
        unique,
        accepted.len(),
        "events that were never accepted were delivered"
    );
    let status = herald.terminate(Duration::from_secs(30)).await;
    assert!(
        status.success(),
        "herald exited with {status} after SIGTERM"
    );
}

// ---------------------------------------------------------------------------------------------
// 5. retention
// ---------------------------------------------------------------------------------------------

/// Under a steady send-and-deliver load with the default retention (consumed events go), the
/// data directory stays far below the volume that went through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_bounds_disk_use_under_steady_load() {
    let _shared = QUIET.read().await;
    let events = env_usize("HERALD_RETENTION_EVENTS")
        .unwrap_or(0)
        .max(20_000);
    let senders = 8;
    let size = 1024;
    let sub = Subscriber::start(&["/steady"], Arc::new(|_: &str, _: &str, _| Reply::Accept)).await;
    let work = tempfile::tempdir().unwrap();
    let config = write_config(
        work.path(),
        "steady",
        &[trigger("steady", "steady", &sub.url("/steady"), "")],
    );
    let mut herald = Herald::start(work.path(), &config, free_addr(), &[]);
    herald.wait_ready().await;
    let url = format!("{}/durability/steady", herald.base());
    let data = work.path().join("data");
    let initial = dir_size(&data);

    // Samples (events sent so far, directory size) while the load runs.
    let next = Arc::new(AtomicUsize::new(0));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (data, sampling, next) = (data.clone(), sampling.clone(), next.clone());
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while sampling.load(Ordering::Relaxed) {
                let d = data.clone();
                let size = tokio::task::spawn_blocking(move || dir_size(&d))
                    .await
                    .unwrap();
                samples.push((next.load(Ordering::Relaxed).min(events), size));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            samples
        })
    };
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..senders {
        let (url, next) = (url.clone(), next.clone());
        tasks.spawn(async move {
            let client = client();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= events {
                    return;
                }
                let id = format!("s{i}");
                let end = Instant::now() + PROMPT;
                loop {
                    let r = post(&client, &url, &id, &padded(&id, size))
                        .await
                        .unwrap_or_else(|e| panic!("sending {id}: {e}"));
                    if r.status() == StatusCode::ACCEPTED {
                        break;
                    }
                    assert!(
                        r.status() == StatusCode::TOO_MANY_REQUESTS && Instant::now() < end,
                        "{} to {id}",
                        r.status()
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a sender failed");
    }
    let ids: HashSet<String> = (0..events).map(|i| format!("s{i}")).collect();
    sub.wait_delivered("/steady", &ids, PROMPT).await;
    let elapsed = started.elapsed().as_secs_f64();
    sampling.store(false, Ordering::Relaxed);
    let samples = sampler.await.unwrap();
    let peak = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let trace: Vec<String> = samples
        .iter()
        .step_by((samples.len() / 12).max(1))
        .map(|(sent, size)| format!("{sent}:{:.1}", mib(*size)))
        .collect();
    eprintln!("retention: events sent:MiB on disk = {}", trace.join(" "));
    let after_load = dir_size(&data);
    let status = herald.terminate(Duration::from_secs(30)).await;
    let after_stop = dir_size(&data);
    let volume = (events * size) as u64;
    let dups = sub.with(|r| r.paths["/steady"].duplicates());
    eprintln!(
        "SUMMARY retention: {events} x {size} B ({:.1} MiB) sent and delivered in {elapsed:.1}s \
         ({:.0} events/s, {dups} duplicates); data dir: initial {:.1} MiB, peak {:.1} MiB over {} samples, \
         after the load {:.1} MiB, after a graceful stop {:.1} MiB",
        mib(volume),
        events as f64 / elapsed,
        mib(initial),
        mib(peak),
        samples.len(),
        mib(after_load),
        mib(after_stop)
    );
    assert!(
        status.success(),
        "herald exited with {status} after SIGTERM"
    );
    // Keeping every event, this directory reaches about 55 MiB for 20,000 events (sled stores
    // each about 2.8 times over); with retention it plateaus at about 6-12 MiB, whether 20,000
    // or 60,000 events go through.
    let bound: u64 = 24 << 20;
    assert!(
        peak.max(after_load) < bound,
        "the data directory reached {:.1} MiB for {:.1} MiB of events that were all consumed \
         (bound {:.0} MiB)",
        mib(peak.max(after_load)),
        mib(volume),
        mib(bound)
    );
    // And it stops growing: the second half of the load needs no more room than the first.
    let half = |first: bool| {
        samples
            .iter()
            .filter(|(sent, _)| (*sent < events / 2) == first)
            .map(|s| s.1)
            .max()
            .unwrap_or(0)
    };
    let (first_half, second_half) = (half(true), half(false));
    eprintln!(
        "retention: data dir peak {:.1} MiB while sending the first half, {:.1} MiB the second",
        mib(first_half),
        mib(second_half)
    );
    assert!(
        second_half <= first_half + (8 << 20),
        "the data directory kept growing: {:.1} MiB in the first half of the load, {:.1} MiB in \
         the second",
        mib(first_half),
        mib(second_half)
    );
}
