//! ApiServerSource against the in-process API server (herald-crds' fake, a real HTTP listener
//! kube's watchers talk to unchanged), delivering to a real HTTP sink: add, update and delete
//! of a watched object are Knative's three events (type, source, subject, extensions, data),
//! label selectors and `owner` narrow what is watched, `herald serve` runs the source
//! from a config file as it runs every source, and under `--kubernetes --controller` only the
//! Lease holder runs it (a standby takes over once a dead leader's Lease expires).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use herald_broker::serve::{self, ServeConfig};
use herald_core::{Check, Kind, ResourceKey};
use herald_crds::fake_apiserver::FakeApiServer;
use herald_dispatcher::{DeliveryEngine, EngineConfig};
use herald_sources::apiserver::Cluster;
use herald_sources::{Sink, SourceEnv};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use url::Url;

const PODS: &str = "api/v1/pods";
const WAIT: Duration = Duration::from_secs(15);

/// One event the sink received (binary mode: attributes in `ce-` headers).
struct Received {
    headers: HeaderMap,
    body: Value,
}

impl Received {
    fn ce(&self, name: &str) -> &str {
        self.headers
            .get(format!("ce-{name}"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

struct TestSink {
    url: Url,
    rx: mpsc::UnboundedReceiver<Received>,
}

impl TestSink {
    async fn start() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let app = axum::Router::new()
            .route(
                "/",
                axum::routing::post(
                    |State(tx): State<mpsc::UnboundedSender<Received>>,
                     headers: HeaderMap,
                     body: Bytes| async move {
                        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let _ = tx.send(Received { headers, body });
                        StatusCode::ACCEPTED
                    },
                ),
            )
            .with_state(tx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, rx }
    }

    async fn next(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("the sink received nothing in time")
            .expect("sink open")
    }
}

fn pod(name: &str, labels: Value, owner: Option<(&str, &str)>, phase: &str) -> Value {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "example/app"}]},
        "status": {"phase": phase},
    });
    if let Some((api_version, kind)) = owner {
        pod["metadata"]["ownerReferences"] = json!([{
            "apiVersion": api_version, "kind": kind, "name": "owner", "uid": "u-1",
            "controller": true,
        }]);
    }
    pod
}

fn source(mode: &str, extra: &str, sink: &Url) -> herald_core::Resource {
    let yaml = format!(
        r#"
apiVersion: sources.knative.dev/v1
kind: ApiServerSource
metadata: {{name: pods, namespace: default}}
spec:
  mode: {mode}
  serviceAccountName: pod-watcher
  resources:
    - apiVersion: v1
      kind: Pod
      selector: {{matchLabels: {{app: web}}}}
{extra}
  sink: {{uri: "{sink}"}}
"#
    );
    herald_core::load_resource("test.yaml", &yaml).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs `resource`'s source as the data plane does, against `api`; returns when it watches.
async fn run(
    api: &FakeApiServer,
    resource: herald_core::Resource,
    sink: &Url,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let env = Arc::new(SourceEnv {
        kubernetes: Some(Cluster::new(api.client(), &format!("http://{}", api.addr))),
        ..Default::default()
    });
    let engine = DeliveryEngine::new(EngineConfig::default()).unwrap();
    let sink = Sink::to_url(engine, resource.kind(), resource.key(), sink.clone());
    let stop = CancellationToken::new();
    let (health_tx, mut health) = watch::channel(Check::unknown("Starting", ""));
    let task = tokio::spawn(herald_sources::supervise(
        resource,
        env,
        sink,
        stop.clone(),
        health_tx,
    ));
    // Objects that exist before the watch are not events: wait until it watches.
    tokio::time::timeout(WAIT, health.wait_for(|c| c.is_ok()))
        .await
        .expect("the source did not start watching in time")
        .unwrap();
    (stop, task)
}

#[tokio::test]
async fn add_update_and_delete_of_a_watched_object_are_knatives_three_events() {
    let api = FakeApiServer::start().await;
    let mut sink = TestSink::start().await;
    let (stop, task) = run(&api, source("Resource", "", &sink.url), &sink.url).await;
    let server_url = format!("http://{}", api.addr);

    api.put(PODS, pod("web-1", json!({"app": "web"}), None, "Pending"));
    let added = sink.next().await;
    assert_eq!(added.ce("type"), "dev.knative.apiserver.resource.add");
    assert_eq!(added.ce("source"), server_url);
    assert_eq!(
        added.ce("subject"),
        "/apis/v1/namespaces/default/pods/web-1"
    );
    assert_eq!(
        (added.ce("kind"), added.ce("name"), added.ce("namespace")),
        ("Pod", "web-1", "default")
    );
    assert_eq!(
        added.headers["content-type"].to_str().unwrap(),
        "application/json"
    );
    assert_eq!(added.body["kind"], "Pod");
    assert_eq!(added.body["metadata"]["name"], "web-1");
    assert_eq!(added.body["status"]["phase"], "Pending");

    api.put(PODS, pod("web-1", json!({"app": "web"}), None, "Running"));
    let updated = sink.next().await;
    assert_eq!(updated.ce("type"), "dev.knative.apiserver.resource.update");
    assert_eq!(updated.body["status"]["phase"], "Running");

    // Outside the label selector: no event (the delete below must be the next one).
    api.put(PODS, pod("db-1", json!({"app": "db"}), None, "Running"));
    api.delete(PODS, "default", "web-1");
    let deleted = sink.next().await;
    assert_eq!(deleted.ce("type"), "dev.knative.apiserver.resource.delete");
    assert_eq!(deleted.ce("name"), "web-1");
    assert_eq!(deleted.body["metadata"]["name"], "web-1");

    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn reference_mode_sends_references_of_objects_whose_controller_matches_owner() {
    let api = FakeApiServer::start().await;
    let mut sink = TestSink::start().await;
    let owner = "  owner: {apiVersion: apps/v1, kind: ReplicaSet}";
    let (stop, task) = run(&api, source("Reference", owner, &sink.url), &sink.url).await;

    let web = json!({"app": "web"});
    api.put(PODS, pod("bare", web.clone(), None, "Running"));
    api.put(
        PODS,
        pod("job", web.clone(), Some(("batch/v1", "Job")), "Running"),
    );
    api.put(
        PODS,
        pod(
            "owned",
            web.clone(),
            Some(("apps/v1", "ReplicaSet")),
            "Running",
        ),
    );
    let added = sink.next().await;
    assert_eq!(added.ce("type"), "dev.knative.apiserver.ref.add");
    assert_eq!(
        added.ce("subject"),
        "/apis/v1/namespaces/default/pods/owned"
    );
    assert_eq!(
        added.body,
        json!({"apiVersion": "v1", "kind": "Pod", "name": "owned", "namespace": "default"})
    );
    api.put(
        PODS,
        pod(
            "owned",
            web.clone(),
            Some(("apps/v1", "ReplicaSet")),
            "Failed",
        ),
    );
    assert_eq!(
        sink.next().await.ce("type"),
        "dev.knative.apiserver.ref.update"
    );
    api.delete(PODS, "default", "bare");
    api.delete(PODS, "default", "owned");
    let deleted = sink.next().await;
    assert_eq!(deleted.ce("type"), "dev.knative.apiserver.ref.delete");
    assert_eq!(deleted.ce("name"), "owned", "bare and job are not owned");

    stop.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn herald_serve_runs_an_apiserversource_from_its_config() {
    let api = FakeApiServer::start().await;
    let mut sink = TestSink::start().await;
    let resource = source("Resource", "", &sink.url);
    let mut set = herald_core::ResourceSet::default();
    set.sources.push(herald_core::Loaded {
        resource,
        origin: herald_core::Origin {
            file: "apiserversource.yaml".into(),
            document: 1,
        },
    });
    let server = serve::start(
        &set,
        ServeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            cluster: Some(Cluster::new(api.client(), &format!("http://{}", api.addr))),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let key = ResourceKey::new("default", "pods");
    let start = Instant::now();
    loop {
        let view = server.plane().get(Kind::ApiServerSource, &key).await;
        let ready = view.as_ref().and_then(|v| {
            v.object["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready")
                .map(|c| c["status"] == "True")
        });
        if ready == Some(true) {
            assert_eq!(
                view.unwrap().object["status"]["sinkUri"],
                sink.url.to_string()
            );
            break;
        }
        assert!(start.elapsed() < WAIT, "not ready in time: {view:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    api.put(PODS, pod("web-2", json!({"app": "web"}), None, "Pending"));
    let added = sink.next().await;
    assert_eq!(added.ce("type"), "dev.knative.apiserver.resource.add");
    assert_eq!(added.ce("name"), "web-2");
    server.shutdown().await;
}

fn deployed_of(view: Option<&herald_broker::plane::ResourceView>) -> Option<(String, String)> {
    let c = view?.object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Deployed")?
        .clone();
    Some((
        c["status"].as_str()?.to_string(),
        c["reason"].as_str().unwrap_or_default().to_string(),
    ))
}

/// `herald serve --kubernetes --controller` with the ApiServerSource in its config, in a
/// runtime of its own on its own thread: dropping that runtime "crashes" it, so its Lease
/// is not released and its watch just stops.
struct Replica {
    crash: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The source's `Deployed` condition (status, reason), as this replica's plane has it.
    deployed: Arc<std::sync::Mutex<Option<(String, String)>>>,
}

impl Replica {
    fn start(api_addr: std::net::SocketAddr, identity: &'static str, sink: &Url) -> Self {
        use herald_broker::kubernetes::{run, KubernetesConfig};
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let deployed = Arc::new(std::sync::Mutex::new(None));
        let (sink, seen) = (sink.clone(), deployed.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let url: Url = format!("http://{api_addr}").parse().unwrap();
                let client = || {
                    let mut config = herald_crds::kube::Config::new(url.as_str().parse().unwrap());
                    config.default_namespace = "default".into();
                    herald_crds::kube::Client::try_from(config).unwrap()
                };
                let mut set = herald_core::ResourceSet::default();
                set.sources.push(herald_core::Loaded {
                    resource: source("Resource", "", &sink),
                    origin: herald_core::Origin {
                        file: "apiserversource.yaml".into(),
                        document: 1,
                    },
                });
                let server = serve::start(
                    &set,
                    ServeConfig {
                        listen: "127.0.0.1:0".parse().unwrap(),
                        cluster: Some(Cluster::new(client(), url.as_str())),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
                let controller_config = herald_crds::controller::ControllerConfig {
                    identity: identity.into(),
                    lease_duration: Duration::from_secs(2),
                    lease_grace: Duration::from_secs(1),
                    ..Default::default()
                };
                tokio::spawn(run(
                    client(),
                    server.plane().clone(),
                    KubernetesConfig {
                        controller: true,
                        controller_config,
                        resync: Some(Duration::from_millis(500)),
                    },
                    CancellationToken::new(),
                ));
                let plane = server.plane().clone();
                tokio::spawn(async move {
                    let key = ResourceKey::new("default", "pods");
                    loop {
                        let view = plane.get(Kind::ApiServerSource, &key).await;
                        *seen.lock().unwrap() = deployed_of(view.as_ref());
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                });
                let _ = tokio::task::spawn_blocking(move || rx.recv()).await;
                std::mem::forget(server);
            });
            // Every task ends mid-flight: nothing is released.
            rt.shutdown_background();
        });
        Self {
            crash: Some(tx),
            thread: Some(thread),
            deployed,
        }
    }

    fn deployed(&self) -> Option<(String, String)> {
        self.deployed.lock().unwrap().clone()
    }

    fn crash(mut self) {
        drop(self.crash.take());
        let _ = self.thread.take().unwrap().join();
    }
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < WAIT, "{what}: not within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn holder(api: &FakeApiServer) -> Option<String> {
    api.get(
        "apis/coordination.k8s.io/v1/leases",
        "herald",
        "herald-controller",
    )
    .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
}

/// Two replicas run the same ApiServerSource: only the Lease holder watches and emits (the
/// other stands by), so each change is one event; when the leader dies without releasing
/// its Lease, the other takes over once the Lease expires and emits from then on.
#[tokio::test]
async fn only_the_leader_emits_and_the_standby_takes_over_when_its_lease_expires() {
    let api = FakeApiServer::start().await;
    let mut sink = TestSink::start().await;
    let first = Replica::start(api.addr, "first", &sink.url);
    until("the first replica to lead", || {
        holder(&api).as_deref() == Some("first")
    })
    .await;
    let second = Replica::start(api.addr, "second", &sink.url);
    until("the leader to watch and the other to stand by", || {
        first.deployed().is_some_and(|(status, _)| status == "True")
            && second
                .deployed()
                .is_some_and(|(_, reason)| reason == "StandingBy")
    })
    .await;
    for name in ["p1", "p2"] {
        api.put(PODS, pod(name, json!({"app": "web"}), None, "Pending"));
        let added = sink.next().await;
        assert_eq!(added.ce("type"), ADD_TYPE);
        assert_eq!(added.ce("name"), name, "one event per change, in order");
    }

    first.crash();
    until(
        "the second replica to take the expired Lease and watch",
        || {
            holder(&api).as_deref() == Some("second")
                && second
                    .deployed()
                    .is_some_and(|(status, _)| status == "True")
        },
    )
    .await;
    api.put(PODS, pod("p3", json!({"app": "web"}), None, "Pending"));
    let added = sink.next().await;
    assert_eq!(added.ce("name"), "p3");
    // Nothing twice: a last change, and it is the next event.
    api.put(PODS, pod("p4", json!({"app": "web"}), None, "Pending"));
    assert_eq!(sink.next().await.ce("name"), "p4");
    assert!(
        sink.rx.try_recv().is_err(),
        "an event more than the changes"
    );
    second.crash();
}

const ADD_TYPE: &str = "dev.knative.apiserver.resource.add";
