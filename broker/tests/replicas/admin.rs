//! The control plane of a running `herald serve` as the tests drive it: the admin API
//! (`/apis/eventing.knative.dev/v1/...`, `/readyz`), waiting for a resource's status,
//! `herald apply|get|delete` runs, and Knative YAML for the tests' Brokers and Triggers
//! (written to a watched config directory the way an editor would).

use super::HERALD;
use reqwest::StatusCode;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

/// Where Herald serves Knative Eventing's resources.
pub const API: &str = "/apis/eventing.knative.dev/v1";
/// How long a `herald` CLI run may take.
pub const CLI_DEADLINE: Duration = Duration::from_secs(30);

/// A client of one server's admin API.
#[derive(Clone)]
pub struct Admin {
    /// e.g. http://127.0.0.1:PORT
    pub base: String,
    /// The API group and version its objects are under (`API` unless told).
    api: String,
    http: reqwest::Client,
}

/// An answer of the admin API: status, the `herald-applied` header, body (JSON, or the text
/// as a JSON string when it is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub applied: Option<String>,
    pub body: Value,
}

impl Admin {
    pub fn new(base: &str) -> Admin {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        Admin {
            base: base.trim_end_matches('/').to_string(),
            api: API.to_string(),
            http,
        }
    }

    /// A client for the objects of another API group, e.g. `/apis/sources.knative.dev/v1`.
    pub fn for_api(base: &str, api: &str) -> Admin {
        Admin {
            api: api.to_string(),
            ..Admin::new(base)
        }
    }

    /// `.../namespaces/{namespace}/{plural}/{name}`.
    pub fn object_url(&self, plural: &str, namespace: &str, name: &str) -> String {
        format!(
            "{}{}/namespaces/{namespace}/{plural}/{name}",
            self.base, self.api
        )
    }

    async fn answer(request: reqwest::RequestBuilder, what: &str) -> Answer {
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: the admin API does not answer: {e}"));
        let status = response.status();
        let applied = response
            .headers()
            .get("herald-applied")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            applied,
            body,
        }
    }

    /// The object with its status; None when the API answers 404.
    pub async fn get(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let url = self.object_url(plural, namespace, name);
        let a = Self::answer(self.http.get(&url), &url).await;
        match a.status {
            StatusCode::OK => Some(a.body),
            StatusCode::NOT_FOUND => None,
            other => panic!("GET {url}: {other}: {}", a.body),
        }
    }

    /// The items of a list: of `namespace`, or of every namespace with None.
    pub async fn list(&self, plural: &str, namespace: Option<&str>) -> Vec<Value> {
        let url = match namespace {
            Some(ns) => format!("{}{}/namespaces/{ns}/{plural}", self.base, self.api),
            None => format!("{}{}/{plural}", self.base, self.api),
        };
        let a = Self::answer(self.http.get(&url), &url).await;
        assert_eq!(a.status, StatusCode::OK, "GET {url}: {}", a.body);
        a.body["items"]
            .as_array()
            .unwrap_or_else(|| panic!("GET {url}: no items: {}", a.body))
            .clone()
    }

    /// PUT (apply) `body` with `content_type`.
    pub async fn put(
        &self,
        plural: &str,
        namespace: &str,
        name: &str,
        content_type: &str,
        body: &str,
    ) -> Answer {
        let url = self.object_url(plural, namespace, name);
        let request = self
            .http
            .put(&url)
            .header("content-type", content_type)
            .body(body.to_string());
        Self::answer(request, &url).await
    }

    pub async fn delete(&self, plural: &str, namespace: &str, name: &str) -> Answer {
        let url = self.object_url(plural, namespace, name);
        Self::answer(self.http.delete(&url), &url).await
    }

    /// `GET /readyz`: status and body.
    pub async fn readyz(&self) -> (StatusCode, Value) {
        let url = format!("{}/readyz", self.base);
        let a = Self::answer(self.http.get(&url), &url).await;
        (a.status, a.body)
    }

    /// Polls the object every 50 ms until `done` holds for it (None: absent); panics with
    /// `what` and the last state after `limit`. Returns the last state.
    pub async fn wait(
        &self,
        plural: &str,
        namespace: &str,
        name: &str,
        limit: Duration,
        what: &str,
        done: impl Fn(Option<&Value>) -> bool,
    ) -> Option<Value> {
        let end = Instant::now() + limit;
        loop {
            let current = self.get(plural, namespace, name).await;
            if done(current.as_ref()) {
                return current;
            }
            assert!(
                Instant::now() < end,
                "{plural} {namespace}/{name}: not {what} within {limit:?}; last: {}",
                current.map_or("absent (404)".into(), |o| brief(&o))
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the object exists and its Ready condition is True for its current
    /// generation.
    pub async fn wait_ready(
        &self,
        plural: &str,
        namespace: &str,
        name: &str,
        limit: Duration,
    ) -> Value {
        self.wait(plural, namespace, name, limit, "Ready", |o| {
            o.is_some_and(|o| is_ready(o) && observed_generation(o) == generation(o))
        })
        .await
        .expect("present")
    }

    /// Waits until the API answers 404 for the object.
    pub async fn wait_gone(&self, plural: &str, namespace: &str, name: &str, limit: Duration) {
        self.wait(plural, namespace, name, limit, "gone", |o| o.is_none())
            .await;
    }
}

/// The condition of `kind` (`Ready`, `BrokerReady`, ...) in the object's status.
pub fn condition<'a>(object: &'a Value, kind: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

/// (status, reason) of a condition, "" for what is missing.
pub fn condition_state(object: &Value, kind: &str) -> (String, String) {
    let c = condition(object, kind);
    let text = |f: &str| {
        c.and_then(|c| c[f].as_str())
            .unwrap_or_default()
            .to_string()
    };
    (text("status"), text("reason"))
}

pub fn is_ready(object: &Value) -> bool {
    condition(object, "Ready").is_some_and(|c| c["status"] == "True")
}

pub fn generation(object: &Value) -> i64 {
    object["metadata"]["generation"].as_i64().unwrap_or(-1)
}

pub fn observed_generation(object: &Value) -> i64 {
    object["status"]["observedGeneration"]
        .as_i64()
        .unwrap_or(-1)
}

/// Name, generations and conditions of an object, for failure messages.
pub fn brief(object: &Value) -> String {
    let conditions: Vec<String> = object["status"]["conditions"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    format!(
                        "{}={} {} {}",
                        c["type"].as_str().unwrap_or("?"),
                        c["status"].as_str().unwrap_or("?"),
                        c["reason"].as_str().unwrap_or(""),
                        c["message"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        "{}/{} generation {} observedGeneration {} conditions [{}]",
        object["metadata"]["namespace"].as_str().unwrap_or("?"),
        object["metadata"]["name"].as_str().unwrap_or("?"),
        generation(object),
        observed_generation(object),
        conditions.join("; ")
    )
}

// ---------------------------------------------------------------------------------------
// The CLI

/// One finished `herald` command.
#[derive(Debug)]
pub struct CliRun {
    pub command: String,
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl CliRun {
    /// Panics with the command's output unless it succeeded.
    pub fn ok(self) -> CliRun {
        assert!(self.success, "{self}");
        self
    }

    /// Panics with the command's output if it succeeded.
    pub fn failed(self) -> CliRun {
        assert!(!self.success, "expected a failure: {self}");
        self
    }
}

impl std::fmt::Display for CliRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` {}\n--- stdout\n{}\n--- stderr\n{}",
            self.command,
            if self.success { "succeeded" } else { "failed" },
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Runs `herald args...` to completion (killed after [`CLI_DEADLINE`]).
pub async fn herald(args: &[&str]) -> CliRun {
    herald_with_env(args, &[]).await
}

/// Runs `herald args...` with extra environment variables.
pub async fn herald_with_env(args: &[&str], env: &[(&str, &str)]) -> CliRun {
    let mut command = tokio::process::Command::new(HERALD);
    command
        .args(args)
        // The caller's HERALD_SERVER must not redirect the tests' commands.
        .env_remove("HERALD_SERVER")
        .envs(env.iter().copied())
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let shown = format!("herald {}", args.join(" "));
    let out = tokio::time::timeout(CLI_DEADLINE, command.output())
        .await
        .unwrap_or_else(|_| panic!("`{shown}` did not finish within {CLI_DEADLINE:?}"))
        .unwrap_or_else(|e| panic!("cannot run `{shown}`: {e}"));
    CliRun {
        command: shown,
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The rows of a `herald get` table, split on runs of spaces, header first.
/// The Prometheus text an admin listener serves on `/metrics`.
pub async fn metrics_text(admin: &str) -> String {
    reqwest::get(format!("{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

pub fn table_rows(stdout: &str) -> Vec<Vec<String>> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Configuration

/// A Broker in `namespace`, with `annotations`.
pub fn broker_yaml(namespace: &str, name: &str, annotations: &[(&str, &str)]) -> String {
    format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Broker\n{}",
        metadata(namespace, name, annotations)
    )
}

/// A Trigger on `broker` delivering to `subscriber` the events whose attributes (and
/// extensions) equal `filter`.
pub fn trigger_yaml(
    namespace: &str,
    name: &str,
    broker: &str,
    subscriber: &str,
    filter: &[(&str, &str)],
) -> String {
    let mut spec = format!("  broker: {broker}\n");
    if !filter.is_empty() {
        spec.push_str("  filter:\n    attributes:\n");
        for (k, v) in filter {
            spec.push_str(&format!("      {k}: \"{v}\"\n"));
        }
    }
    spec.push_str(&format!("  subscriber:\n    uri: {subscriber}\n"));
    trigger_yaml_with_spec(namespace, name, &spec)
}

/// A Trigger with `spec` as given (its lines indented by two spaces).
pub fn trigger_yaml_with_spec(namespace: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: eventing.knative.dev/v1\nkind: Trigger\n{}spec:\n{spec}",
        metadata(namespace, name, &[])
    )
}

/// Writes `dir/config/herald.yaml` with Broker `b` in `namespace` and Trigger `t` on it sending
/// the events of type [`EVENT_TYPE`](super::EVENT_TYPE) to `subscriber`; returns the config
/// directory.
pub fn one_trigger_config(dir: &Path, namespace: &str, subscriber: &str) -> std::path::PathBuf {
    let config = dir.join("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("herald.yaml"),
        format!(
            "{}---\n{}",
            broker_yaml(namespace, "b", &[]),
            trigger_yaml(
                namespace,
                "t",
                "b",
                subscriber,
                &[("type", super::EVENT_TYPE)]
            )
        ),
    )
    .unwrap();
    config
}

fn metadata(namespace: &str, name: &str, annotations: &[(&str, &str)]) -> String {
    let mut meta = format!("metadata:\n  name: {name}\n  namespace: {namespace}\n");
    if !annotations.is_empty() {
        meta.push_str("  annotations:\n");
        for (k, v) in annotations {
            meta.push_str(&format!("    {k}: \"{v}\"\n"));
        }
    }
    meta
}

/// Writes `text` to `path` the way editors save: a temporary file beside it, renamed over
/// it, so a watcher never reads half a file.
pub fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Checks a test records and reports together at its end, so one missing status field does
/// not hide what the rest of the test would find.
#[derive(Default)]
pub struct Findings(Vec<String>);

impl Findings {
    /// Records `what` unless `ok`.
    pub fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            let what = what();
            eprintln!("FINDING: {what}");
            self.0.push(what);
        }
    }

    /// Panics listing every failed check.
    pub fn assert_none(self) {
        assert!(
            self.0.is_empty(),
            "{} check(s) failed:\n- {}",
            self.0.len(),
            self.0.join("\n- ")
        );
    }
}
