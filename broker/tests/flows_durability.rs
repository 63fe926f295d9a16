//! Channels, Subscriptions and Sequences on the durable default channel (sled), over real
//! `herald serve` processes: a Sequence keeps every accepted event across kill -9 mid-flow,
//! and flows applied and deleted at runtime through the admin API disturb no unrelated
//! Channel.
//!
//! The step subscribers live in this test process (an axum server on port 0): each replies
//! 200 with the event it received, its id suffixed by the step's name (`-a`, `-b`), step `a`
//! in binary mode and step `b` in structured mode. The sink answers 200 and records ids.
//!
//! Synchronisation is deadline-based polling only (`replicas::until`, polls of `/healthz` and
//! of the admin API). Other sleeps are a sender's back-off or pacing, or a step's processing
//! time. Figures are printed with `eprintln!` (see them with `--nocapture`).

mod replicas;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use replicas::{duplicates, free_port, until, Proc, HERALD};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NS: &str = "flows";
const EVENT_TYPE: &str = "dev.herald.test.flows";
/// Longest wait for a server to answer /healthz (after kill -9 sled recovers first).
const READY: Duration = Duration::from_secs(60);
/// Longest wait for a resource's status or for deliveries that should happen promptly.
const PROMPT: Duration = Duration::from_secs(90);
const FLOWS_API: &str = "/apis/flows.knative.dev/v1";
const MESSAGING_API: &str = "/apis/messaging.knative.dev/v1";

// ---------------------------------------------------------------------------------------
// `herald serve`, restartable on the same port, config and data dir

struct Herald {
    proc: Option<Proc>,
    addr: String,
    /// The admin API's address (fixed too, so it is the same after each restart).
    admin_addr: String,
    config: PathBuf,
    data: PathBuf,
    starts: usize,
    http: reqwest::Client,
}

impl Herald {
    /// Starts `herald serve` on a free fixed port and waits for /healthz.
    async fn start(config: &Path, data: &Path) -> Herald {
        let mut herald = Herald {
            proc: None,
            addr: format!("127.0.0.1:{}", free_port()),
            admin_addr: format!("127.0.0.1:{}", free_port()),
            config: config.to_path_buf(),
            data: data.to_path_buf(),
            starts: 0,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        };
        herald.spawn().await;
        herald
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn admin(&self) -> String {
        format!("http://{}", self.admin_addr)
    }

    async fn spawn(&mut self) {
        assert!(self.proc.is_none(), "herald is already running");
        self.starts += 1;
        let args = [
            "serve",
            "--config",
            self.config.to_str().unwrap(),
            "--listen",
            &self.addr,
            "--admin-addr",
            &self.admin_addr,
            "--data-dir",
            self.data.to_str().unwrap(),
        ];
        self.proc = Some(Proc::spawn(
            &format!("herald serve #{}", self.starts),
            HERALD,
            &args,
        ));
        let end = Instant::now() + READY;
        let url = format!("{}/healthz", self.base());
        loop {
            let proc = self.proc.as_mut().unwrap();
            assert!(
                proc.alive(),
                "{} exited before answering /healthz:\n{}",
                proc.name,
                proc.log_tail()
            );
            if let Ok(r) = self.http.get(&url).send().await {
                if r.status() == StatusCode::OK {
                    return;
                }
            }
            assert!(
                Instant::now() < end,
                "no /healthz within {READY:?}:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGKILL (no shutdown code runs), and reap.
    fn kill9(&mut self) {
        let mut proc = self.proc.take().expect("herald is running");
        assert!(
            proc.alive(),
            "{} had exited before the kill:\n{}",
            proc.name,
            proc.log_tail()
        );
        proc.kill();
    }

    fn log_tail(&self) -> String {
        self.proc
            .as_ref()
            .map_or_else(|| "(not running)".into(), |p| p.log_tail())
    }

    fn assert_alive(&mut self) {
        let proc = self.proc.as_mut().expect("herald is running");
        assert!(proc.alive(), "{} died:\n{}", proc.name, proc.log_tail());
    }

    // --- the admin API of the flows and messaging groups

    fn object_url(&self, api: &str, plural: &str, name: &str) -> String {
        format!("{}{api}/namespaces/{NS}/{plural}/{name}", self.admin())
    }

    /// The object with its status; None on 404.
    async fn get(&self, api: &str, plural: &str, name: &str) -> Option<Value> {
        let url = self.object_url(api, plural, name);
        let r = self
            .http
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        match r.status() {
            StatusCode::OK => Some(r.json().await.unwrap()),
            StatusCode::NOT_FOUND => None,
            other => panic!("GET {url}: {other}: {}", r.text().await.unwrap_or_default()),
        }
    }

    async fn list_names(&self, api: &str, plural: &str) -> Vec<String> {
        let url = format!("{}{api}/namespaces/{NS}/{plural}", self.admin());
        let r = self.http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "GET {url}");
        let body: Value = r.json().await.unwrap();
        body["items"]
            .as_array()
            .unwrap_or_else(|| panic!("GET {url}: no items: {body}"))
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap_or("?").to_string())
            .collect()
    }

    async fn put_yaml(&self, api: &str, plural: &str, name: &str, yaml: &str) -> StatusCode {
        let url = self.object_url(api, plural, name);
        let r = self
            .http
            .put(&url)
            .header("content-type", "application/yaml")
            .body(yaml.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT {url}: {e}"));
        let status = r.status();
        assert!(
            status.is_success(),
            "PUT {url}: {status}: {}",
            r.text().await.unwrap_or_default()
        );
        status
    }

    async fn delete(&self, api: &str, plural: &str, name: &str) -> StatusCode {
        let url = self.object_url(api, plural, name);
        let r = self.http.delete(&url).send().await.unwrap();
        r.status()
    }

    /// Waits until the object is Ready for its current generation; returns it.
    async fn wait_ready(&self, api: &str, plural: &str, name: &str) -> Value {
        let end = Instant::now() + PROMPT;
        loop {
            let o = self.get(api, plural, name).await;
            if let Some(o) = &o {
                let ready = o["status"]["conditions"]
                    .as_array()
                    .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
                    .is_some_and(|c| c["status"] == "True");
                let current = o["status"]["observedGeneration"] == o["metadata"]["generation"];
                if ready && current {
                    return o.clone();
                }
            }
            assert!(
                Instant::now() < end,
                "{plural} {NS}/{name} not Ready within {PROMPT:?}; last: {}",
                o.map_or("absent (404)".into(), |o| o["status"].to_string())
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The step subscribers and sinks

#[derive(Default)]
struct Log {
    /// Requests per path, then per event id (each answered 200).
    by_path: HashMap<String, HashMap<String, usize>>,
}

/// Serves `/a` and `/b` (transforming steps) and any other path (a sink), recording ids.
struct Endpoints {
    base: String,
    log: Mutex<Log>,
    /// A step's processing time, uniformly in [0, step_delay_ms] ms.
    step_delay_ms: u64,
    rng: AtomicU64,
}

impl Endpoints {
    async fn start(step_delay_ms: u64) -> Arc<Endpoints> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoints = Arc::new(Endpoints {
            base: format!("http://{}", listener.local_addr().unwrap()),
            log: Mutex::default(),
            step_delay_ms,
            rng: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
        });
        let app = Router::new()
            .fallback(endpoint)
            .with_state(endpoints.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        endpoints
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Event id -> times received on `path`.
    fn counts(&self, path: &str) -> HashMap<String, usize> {
        self.log
            .lock()
            .unwrap()
            .by_path
            .get(path)
            .cloned()
            .unwrap_or_default()
    }

    fn total(&self, path: &str) -> usize {
        self.counts(path).values().sum()
    }

    fn delay(&self) -> Duration {
        if self.step_delay_ms == 0 {
            return Duration::ZERO;
        }
        // splitmix64, as the replicas' Sink.
        let mut z = self.rng.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Duration::from_millis(z % (self.step_delay_ms + 1))
    }

    /// Waits until every id of `ids` has reached `path` at least once.
    async fn wait_all(&self, path: &str, ids: &HashSet<String>, limit: Duration, ctx: &Herald) {
        let missing = || {
            let counts = self.counts(path);
            let mut m: Vec<String> = ids
                .iter()
                .filter(|id| !counts.contains_key(*id))
                .cloned()
                .collect();
            m.sort();
            m
        };
        until(
            limit,
            || missing().is_empty(),
            || {
                let m = missing();
                format!(
                    "{} of {} accepted events never reached {path}, e.g. {:?}\n{}",
                    m.len(),
                    ids.len(),
                    &m[..m.len().min(10)],
                    ctx.log_tail()
                )
            },
        )
        .await;
    }
}

async fn endpoint(
    State(endpoints): State<Arc<Endpoints>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let structured =
        header("content-type").is_some_and(|c| c.starts_with("application/cloudevents+json"));
    let (id, source, data): (String, String, Value) = if structured {
        let e: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (
            e["id"].as_str().unwrap_or("<no id>").to_string(),
            e["source"].as_str().unwrap_or("/").to_string(),
            e.get("data").cloned().unwrap_or(Value::Null),
        )
    } else {
        (
            header("ce-id").unwrap_or_else(|| "<no id>".into()),
            header("ce-source").unwrap_or_else(|| "/".into()),
            serde_json::from_slice(&body).unwrap_or(Value::Null),
        )
    };
    let path = uri.path().to_string();
    *endpoints
        .log
        .lock()
        .unwrap()
        .by_path
        .entry(path.clone())
        .or_default()
        .entry(id.clone())
        .or_default() += 1;
    let step = match path.as_str() {
        "/a" => "a",
        "/b" => "b",
        _ => return StatusCode::OK.into_response(),
    };
    // The step's processing time.
    let delay = endpoints.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let out_id = format!("{id}-{step}");
    if step == "a" {
        // Binary mode.
        (
            StatusCode::OK,
            [
                ("ce-specversion", "1.0".to_string()),
                ("ce-id", out_id),
                ("ce-type", EVENT_TYPE.to_string()),
                ("ce-source", source),
                ("content-type", "application/json".to_string()),
            ],
            data.to_string(),
        )
            .into_response()
    } else {
        // Structured mode.
        let event = json!({
            "specversion": "1.0",
            "id": out_id,
            "type": EVENT_TYPE,
            "source": source,
            "datacontenttype": "application/json",
            "data": data,
        });
        (
            StatusCode::OK,
            [("content-type", "application/cloudevents+json")],
            event.to_string(),
        )
            .into_response()
    }
}

// ---------------------------------------------------------------------------------------
// Configuration and sending

/// A Sequence of steps `/a`, `/b` replying to `sink`, on the default channel (no template).
fn sequence_yaml(name: &str, endpoints: &Endpoints, sink: &str) -> String {
    format!(
        "apiVersion: flows.knative.dev/v1\nkind: Sequence\nmetadata:\n  name: {name}\n  \
         namespace: {NS}\nspec:\n  steps:\n    - uri: \"{}\"\n      delivery:\n        \
         retry: 20\n        backoffPolicy: linear\n        backoffDelay: PT0.2S\n    \
         - uri: \"{}\"\n      delivery:\n        retry: 20\n        backoffPolicy: linear\n        \
         backoffDelay: PT0.2S\n  reply:\n    uri: \"{}\"\n",
        endpoints.url("/a"),
        endpoints.url("/b"),
        endpoints.url(sink)
    )
}

/// A Channel without template (the server's default, sled) and its Subscription to `sink`.
fn channel_yaml(name: &str, endpoints: &Endpoints, sink: &str) -> String {
    format!(
        "apiVersion: messaging.knative.dev/v1\nkind: Channel\nmetadata:\n  name: {name}\n  \
         namespace: {NS}\n---\napiVersion: messaging.knative.dev/v1\nkind: Subscription\n\
         metadata:\n  name: {name}-sub\n  namespace: {NS}\nspec:\n  channel:\n    \
         apiVersion: messaging.knative.dev/v1\n    kind: Channel\n    name: {name}\n  \
         subscriber:\n    uri: \"{}\"\n",
        endpoints.url(sink)
    )
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn post(client: &reqwest::Client, url: &str, id: &str) -> reqwest::Result<StatusCode> {
    let r = client
        .post(url)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", "/flows-durability")
        .header("ce-type", EVENT_TYPE)
        .header("content-type", "application/json")
        .body(format!(r#"{{"id":"{id}"}}"#))
        .send()
        .await?;
    Ok(r.status())
}

/// What concurrent senders saw.
#[derive(Default)]
struct Sent {
    accepted: Mutex<HashSet<String>>,
    /// 429 and 5xx answers, resent.
    refused: AtomicU64,
    /// 404 answers (a restarted server before it loaded its config), resent.
    not_found: AtomicU64,
    /// Connection errors and timeouts (the server was down), resent.
    transport: AtomicU64,
}

impl Sent {
    fn accepted_len(&self) -> usize {
        self.accepted.lock().unwrap().len()
    }
}

/// Sends `id` until it is answered 202 (or `give_up`): resends after refusals, transport
/// errors and 404s, as a publisher of a restarting server does. Other answers fail.
async fn send_until_accepted(client: &reqwest::Client, url: &str, id: &str, sent: &Sent) {
    let give_up = Instant::now() + Duration::from_secs(180);
    loop {
        match post(client, url, id).await {
            Ok(StatusCode::ACCEPTED) => {
                sent.accepted.lock().unwrap().insert(id.to_string());
                return;
            }
            Ok(s) if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => {
                sent.refused.fetch_add(1, Ordering::Relaxed);
            }
            Ok(StatusCode::NOT_FOUND) => {
                sent.not_found.fetch_add(1, Ordering::Relaxed);
            }
            Ok(other) => panic!("{url} answered {other} to {id}"),
            Err(_) => {
                sent.transport.fetch_add(1, Ordering::Relaxed);
            }
        }
        assert!(
            Instant::now() < give_up,
            "{id} was not accepted by {url} within 180s"
        );
        // A publisher's back-off before resending.
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn sequence_address(seq: &Value) -> String {
    seq["status"]["address"]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("a Ready Sequence without status.address.url: {seq}"))
        .to_string()
}

fn transformed(ids: &HashSet<String>) -> HashSet<String> {
    ids.iter().map(|id| format!("{id}-a-b")).collect()
}

// ---------------------------------------------------------------------------------------
// 1. kill -9 mid-flow

#[test]
fn a_sequence_on_the_durable_default_survives_kill_9_mid_flow() {
    replicas::run(async {
        let started = Instant::now();
        let events = 300;
        let senders = 6;
        let kills = 3;
        let endpoints = Endpoints::start(8).await;
        let work = tempfile::tempdir().unwrap();
        let config = work.path().join("config");
        std::fs::create_dir_all(&config).unwrap();
        std::fs::write(
            config.join("sequence.yaml"),
            sequence_yaml("pipeline", &endpoints, "/sink"),
        )
        .unwrap();
        let data = work.path().join("data");
        let mut herald = Herald::start(&config, &data).await;
        let seq = herald.wait_ready(FLOWS_API, "sequences", "pipeline").await;
        let address = sequence_address(&seq);
        let expected = format!("{}/channels/{NS}/pipeline-kn-sequence-0", herald.base());
        assert_eq!(address, expected, "the Sequence's address");
        for field in ["channelStatuses", "subscriptionStatuses"] {
            assert_eq!(
                seq["status"][field].as_array().map(Vec::len),
                Some(2),
                "status.{field} of a 2-step Sequence: {}",
                seq["status"]
            );
        }

        let sent = Arc::new(Sent::default());
        let mut tasks = tokio::task::JoinSet::new();
        for s in 0..senders {
            let (url, sent) = (address.clone(), sent.clone());
            tasks.spawn(async move {
                let client = client();
                for i in (s..events).step_by(senders) {
                    send_until_accepted(&client, &url, &format!("e{i}"), &sent).await;
                    // Pacing, so the kills fall while events are still being sent.
                    tokio::time::sleep(Duration::from_millis(15)).await;
                }
            });
        }

        let mut kill_figures = Vec::new();
        // Kills while senders still had events to send, and while some accepted event had
        // not reached the sink yet.
        let (mut kills_mid_send, mut kills_mid_flow) = (0, 0);
        for k in 1..=kills {
            let target = events * k / (kills + 1);
            until(
                Duration::from_secs(180),
                || sent.accepted_len() >= target,
                || {
                    format!(
                        "only {} of {events} accepted before kill {k}\n{}",
                        sent.accepted_len(),
                        herald.log_tail()
                    )
                },
            )
            .await;
            // Mid-flow: the steps have started on what was accepted.
            let a_before = endpoints.total("/a");
            until(
                PROMPT,
                || endpoints.total("/a") > a_before || endpoints.total("/sink") > 0,
                || format!("step a received nothing before kill {k}"),
            )
            .await;
            // The flow drains in milliseconds: kill once something accepted is on its way,
            // not merely once step a has seen something.
            until(
                PROMPT,
                || {
                    let at_sink = endpoints.counts("/sink");
                    transformed(&sent.accepted.lock().unwrap().clone())
                        .iter()
                        .any(|id| !at_sink.contains_key(id))
                },
                || format!("nothing accepted was in flight before kill {k}"),
            )
            .await;
            let figures = format!(
                "kill -9 #{k}: accepted {}/{events}, step a {} requests, step b {}, sink {}",
                sent.accepted_len(),
                endpoints.total("/a"),
                endpoints.total("/b"),
                endpoints.total("/sink")
            );
            let accepted_now = sent.accepted.lock().unwrap().clone();
            kills_mid_send += usize::from(accepted_now.len() < events);
            let at_sink = endpoints.counts("/sink");
            kills_mid_flow += usize::from(
                transformed(&accepted_now)
                    .iter()
                    .any(|id| !at_sink.contains_key(id)),
            );
            herald.kill9();
            let down = Instant::now();
            herald.spawn().await;
            eprintln!("{figures}; back up in {:?}", down.elapsed());
            kill_figures.push(figures);
        }

        let end = Instant::now() + Duration::from_secs(240);
        while let Some(done) = tokio::time::timeout_at(end.into(), tasks.join_next())
            .await
            .expect("the senders did not finish within 240s")
        {
            done.expect("a sender failed");
        }
        let accepted = sent.accepted.lock().unwrap().clone();
        assert_eq!(
            accepted.len(),
            events,
            "every event was accepted in the end"
        );
        let want = transformed(&accepted);

        // Wait for the whole set at the sink; on failure the figures print first.
        let end = Instant::now() + Duration::from_secs(120);
        let finished = loop {
            let c = endpoints.counts("/sink");
            if want.iter().all(|id| c.contains_key(id)) {
                break true;
            }
            if Instant::now() > end {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };

        let (a, b, sink) = (
            endpoints.counts("/a"),
            endpoints.counts("/b"),
            endpoints.counts("/sink"),
        );
        let mut lost: Vec<&String> = want.iter().filter(|id| !sink.contains_key(*id)).collect();
        lost.sort();
        let unexpected: Vec<&String> = sink.keys().filter(|id| !want.contains(*id)).collect();
        let dup_ids = sink.values().filter(|n| **n > 1).count();
        eprintln!(
            "SUMMARY sequence_kill_9: events={events} senders={senders} accepted={} kills={kills} \
             (mid-send {kills_mid_send}, mid-flow {kills_mid_flow}) restarts={} sink_unique={} lost={} sink_duplicates={} (ids more than once: \
             {dup_ids}) step_a requests={} unique={} dup={} step_b requests={} unique={} dup={} \
             unexpected_at_sink={} resends: refused={} not_found={} transport={} elapsed={:.1}s",
            accepted.len(),
            herald.starts - 1,
            sink.len(),
            lost.len(),
            duplicates(&sink),
            a.values().sum::<usize>(),
            a.len(),
            duplicates(&a),
            b.values().sum::<usize>(),
            b.len(),
            duplicates(&b),
            unexpected.len(),
            sent.refused.load(Ordering::Relaxed),
            sent.not_found.load(Ordering::Relaxed),
            sent.transport.load(Ordering::Relaxed),
            started.elapsed().as_secs_f64()
        );
        herald.assert_alive();
        assert!(
            finished && lost.is_empty(),
            "{} of {} accepted events never reached the sink as <id>-a-b, e.g. {:?}\n\
             kills: {kill_figures:?}\n{}",
            lost.len(),
            want.len(),
            &lost[..lost.len().min(20)],
            herald.log_tail()
        );
        assert!(
            unexpected.is_empty(),
            "the sink received ids never accepted: {unexpected:?}"
        );
        assert_eq!(kills_mid_send, kills, "a kill came after sending ended");
        assert_eq!(kills_mid_flow, kills, "a kill came with nothing in flight");
    });
}

// ---------------------------------------------------------------------------------------
// 2. flows applied and deleted at runtime

#[test]
fn flows_applied_and_deleted_at_runtime_lose_nothing() {
    replicas::run(async {
        let endpoints = Endpoints::start(2).await;
        let work = tempfile::tempdir().unwrap();
        let config = work.path().join("config");
        std::fs::create_dir_all(&config).unwrap();
        std::fs::write(
            config.join("channel.yaml"),
            channel_yaml("plain", &endpoints, "/plain"),
        )
        .unwrap();
        let herald = Herald::start(&config, &work.path().join("data")).await;
        let channel = herald.wait_ready(MESSAGING_API, "channels", "plain").await;
        herald
            .wait_ready(MESSAGING_API, "subscriptions", "plain-sub")
            .await;
        let plain_url = channel["status"]["address"]["url"]
            .as_str()
            .unwrap_or_else(|| panic!("a Ready Channel without an address: {channel}"))
            .to_string();
        assert_eq!(plain_url, format!("{}/channels/{NS}/plain", herald.base()));

        // Events flow into the unrelated Channel the whole time.
        let plain_sent = Arc::new(Sent::default());
        let stop = Arc::new(AtomicBool::new(false));
        let counter = Arc::new(AtomicUsize::new(0));
        let mut background = tokio::task::JoinSet::new();
        for _ in 0..2 {
            let (url, sent, stop, counter) = (
                plain_url.clone(),
                plain_sent.clone(),
                stop.clone(),
                counter.clone(),
            );
            background.spawn(async move {
                let client = client();
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("p{}", counter.fetch_add(1, Ordering::Relaxed));
                    send_until_accepted(&client, &url, &id, &sent).await;
                    // Pacing: a steady trickle.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            });
        }

        let client = client();
        let rounds = 2;
        let per_round = 100;
        let mut seq_accepted_total = 0;
        for round in 0..rounds {
            let name = "pipeline";
            let sink = format!("/seq-sink-{round}");
            let status = herald
                .put_yaml(
                    FLOWS_API,
                    "sequences",
                    name,
                    &sequence_yaml(name, &endpoints, &sink),
                )
                .await;
            let seq = herald.wait_ready(FLOWS_API, "sequences", name).await;
            let address = sequence_address(&seq);
            assert_eq!(
                address,
                format!("{}/channels/{NS}/{name}-kn-sequence-0", herald.base()),
                "round {round}: PUT answered {status}"
            );
            let channels = herald.list_names(MESSAGING_API, "channels").await;
            for derived in [
                format!("{name}-kn-sequence-0"),
                format!("{name}-kn-sequence-1"),
            ] {
                assert!(
                    channels.contains(&derived),
                    "round {round}: {derived} not among the channels: {channels:?}"
                );
            }

            let sent = Sent::default();
            for i in 0..per_round {
                send_until_accepted(&client, &address, &format!("r{round}-{i}"), &sent).await;
            }
            let accepted = sent.accepted.lock().unwrap().clone();
            seq_accepted_total += accepted.len();
            let want = transformed(&accepted);
            endpoints.wait_all(&sink, &want, PROMPT, &herald).await;

            let deleted = herald.delete(FLOWS_API, "sequences", name).await;
            assert!(deleted.is_success(), "DELETE sequence: {deleted}");
            let end = Instant::now() + PROMPT;
            let last = loop {
                let gone = herald.get(FLOWS_API, "sequences", name).await.is_none();
                let last = herald.list_names(MESSAGING_API, "channels").await;
                let derived_left = last.iter().any(|c| c.starts_with(&format!("{name}-kn-")));
                let subs = herald.list_names(MESSAGING_API, "subscriptions").await;
                let subs_left = subs.iter().any(|s| s.starts_with(&format!("{name}-kn-")));
                let answer = post(&client, &address, &format!("after-delete-{round}"))
                    .await
                    .unwrap();
                if gone && !derived_left && !subs_left && answer == StatusCode::NOT_FOUND {
                    break last;
                }
                assert!(
                    Instant::now() < end,
                    "round {round}: {PROMPT:?} after DELETE: sequence gone {gone}, channels \
                     {last:?}, subscriptions {subs:?}, its address answers {answer}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            assert!(last.contains(&"plain".to_string()), "{last:?}");
            let sink_counts = endpoints.counts(&sink);
            // A probe accepted before the delete took effect may go through: not unexpected.
            let unexpected: Vec<&String> = sink_counts
                .keys()
                .filter(|id| !want.contains(*id) && !id.starts_with("after-delete-"))
                .collect();
            eprintln!(
                "round {round}: sequence applied (PUT {status}), {} events accepted, all \
                 reached {sink} as <id>-a-b ({} duplicates), deleted; plain channel: {} \
                 accepted so far",
                accepted.len(),
                duplicates(&sink_counts),
                plain_sent.accepted_len()
            );
            assert!(
                unexpected.is_empty(),
                "round {round}: {sink} received {unexpected:?}"
            );
        }
        // Round 1 recreated the same Sequence: none of round 0's events came back.
        let replayed: Vec<String> = endpoints
            .counts("/seq-sink-1")
            .into_keys()
            .filter(|id| id.starts_with("r0-"))
            .collect();
        assert!(
            replayed.is_empty(),
            "the recreated Sequence replayed {replayed:?}"
        );

        stop.store(true, Ordering::Relaxed);
        while let Some(done) = background.join_next().await {
            done.expect("a plain sender failed");
        }
        let accepted = plain_sent.accepted.lock().unwrap().clone();
        endpoints
            .wait_all("/plain", &accepted, PROMPT, &herald)
            .await;
        let received = endpoints.counts("/plain");
        let received_set: HashSet<String> = received.keys().cloned().collect();
        let extra: Vec<&String> = received_set.difference(&accepted).collect();
        eprintln!(
            "SUMMARY flows_at_runtime: rounds={rounds} sequence events={seq_accepted_total}; \
             plain channel accepted={} received unique={} duplicates={} extra={} resends: \
             refused={} not_found={} transport={}",
            accepted.len(),
            received_set.len(),
            duplicates(&received),
            extra.len(),
            plain_sent.refused.load(Ordering::Relaxed),
            plain_sent.not_found.load(Ordering::Relaxed),
            plain_sent.transport.load(Ordering::Relaxed)
        );
        assert_eq!(
            received_set, accepted,
            "the plain Channel's Subscription did not receive exactly its accepted events"
        );
        assert_eq!(
            plain_sent.not_found.load(Ordering::Relaxed),
            0,
            "the plain Channel answered 404 while Sequences came and went"
        );
        let channel = herald.get(MESSAGING_API, "channels", "plain").await;
        assert!(channel.is_some(), "the plain Channel went away");
    });
}
