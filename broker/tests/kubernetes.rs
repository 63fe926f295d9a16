//! `herald serve --kubernetes` against an in-process API server (herald-crds' fake, a real
//! HTTP listener kube's client talks to unchanged): the reflectors feed the real data plane,
//! the leader-elected controller writes status through the status subresource, finalizers
//! remove backend resources, errors back off, and a standby takes over an expired Lease.

use herald_broker::kubernetes::{run, KubernetesConfig};
use herald_broker::serve::{self, RunningServer, ServeConfig};
use herald_crds::controller::ControllerConfig;
use herald_crds::fake_apiserver::FakeApiServer;
use herald_crds::kube::api::{Api, DeleteParams, PostParams};
use herald_crds::resources::{Broker, Trigger};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const BROKERS: &str = "apis/eventing.knative.dev/v1/brokers";
const TRIGGERS: &str = "apis/eventing.knative.dev/v1/triggers";
const INGRESS: &str = "http://herald-ingress.herald.svc.cluster.local";
const DEADLINE: Duration = Duration::from_secs(20);

fn controller_config(identity: &str) -> ControllerConfig {
    ControllerConfig {
        identity: identity.into(),
        lease_namespace: "herald".into(),
        lease_duration: Duration::from_secs(2),
        lease_grace: Duration::from_secs(1),
        not_ready_requeue: Duration::from_millis(200),
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_secs(2),
        ..Default::default()
    }
}

async fn data_plane(config: ServeConfig) -> RunningServer {
    serve::start(
        &Default::default(),
        ServeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ingress_url: Some(INGRESS.parse().unwrap()),
            ..config
        },
    )
    .await
    .unwrap()
}

/// A data plane and the Kubernetes feed with the controller, against `api`.
struct Herald {
    server: RunningServer,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Herald {
    async fn start(api: &FakeApiServer, identity: &str, config: ServeConfig) -> Self {
        let server = data_plane(config).await;
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(
            api.client(),
            server.plane().clone(),
            KubernetesConfig {
                controller: true,
                controller_config: controller_config(identity),
                resync: Some(Duration::from_millis(200)),
            },
            stop.clone(),
        ));
        Self { server, stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
        self.server.shutdown().await;
    }
}

fn broker(name: &str, class: &str) -> Broker {
    serde_json::from_value(json!({
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Broker",
        "metadata": {
            "name": name,
            "namespace": "default",
            "annotations": {"eventing.knative.dev/broker.class": class}
        },
        "spec": {}
    }))
    .unwrap()
}

fn trigger(name: &str, broker: &str, subscriber: Value) -> Trigger {
    serde_json::from_value(json!({
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"broker": broker, "subscriber": subscriber}
    }))
    .unwrap()
}

/// Polls `check` until it returns something, or fails after [`DEADLINE`] saying `what`.
async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn condition<'a>(object: &'a Value, kind: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

/// The object once its Ready condition has `status` ("True"/"False").
async fn ready_is(api: &FakeApiServer, collection: &str, name: &str, status: &str) -> Value {
    let dump = DumpOnPanic(api.requests_handle());
    let found = eventually(&format!("{collection}/{name} Ready={status}"), || {
        let o = api.get(collection, "default", name)?;
        (condition(&o, "Ready")?["status"] == status).then_some(o)
    })
    .await;
    std::mem::forget(dump);
    found
}

/// On a failed wait, shows what the API server was asked.
struct DumpOnPanic(Box<dyn Fn() -> Vec<herald_crds::fake_apiserver::Recorded>>);

impl Drop for DumpOnPanic {
    fn drop(&mut self) {
        for r in (self.0)().iter().rev().take(40).rev() {
            eprintln!(
                "{} {}?{} {}",
                r.method,
                r.path,
                r.query,
                r.body.as_ref().map(|b| b.to_string()).unwrap_or_default()
            );
        }
    }
}

#[tokio::test]
async fn a_broker_becomes_ready_with_its_address_written_through_the_status_subresource() {
    let api = FakeApiServer::start().await;
    let herald = Herald::start(&api, "a", ServeConfig::default()).await;
    let brokers: Api<Broker> = Api::namespaced(api.client(), "default");
    brokers
        .create(&PostParams::default(), &broker("b1", "Herald"))
        .await
        .unwrap();
    brokers
        .create(
            &PostParams::default(),
            &broker("theirs", "MTChannelBasedBroker"),
        )
        .await
        .unwrap();

    let b1 = ready_is(&api, BROKERS, "b1", "True").await;
    assert_eq!(
        b1["status"]["address"]["url"],
        format!("{INGRESS}/default/b1")
    );
    assert_eq!(b1["status"]["observedGeneration"], 1);
    assert_eq!(
        b1["metadata"]["finalizers"],
        json!(["herald.dev/finalizer"])
    );

    // A spec change is observed: generation 2.
    let mut changed = brokers.get("b1").await.unwrap();
    changed.spec.0.delivery = Some(herald_core::DeliverySpec {
        retry: Some(3),
        ..Default::default()
    });
    brokers
        .replace("b1", &PostParams::default(), &changed)
        .await
        .unwrap();
    eventually("observedGeneration 2", || {
        let o = api.get(BROKERS, "default", "b1")?;
        (o["status"]["observedGeneration"] == 2).then_some(())
    })
    .await;

    // Status went only through /status; the main resource got the finalizer, nothing else.
    let requests = api.requests();
    let status_writes: Vec<_> = requests
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with("/brokers/b1/status"))
        .collect();
    assert!(!status_writes.is_empty());
    for r in requests
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with("/brokers/b1"))
    {
        assert!(
            !r.body.as_ref().unwrap().to_string().contains("\"status\""),
            "{r:?}"
        );
    }
    // Another class's Broker is left alone: no status, no finalizer.
    let theirs = api.get(BROKERS, "default", "theirs").unwrap();
    assert!(theirs.get("status").is_none(), "{theirs}");
    assert!(theirs["metadata"]["finalizers"].is_null(), "{theirs}");
    assert!(
        !requests
            .iter()
            .any(|r| r.path.ends_with("/brokers/theirs/status")),
        "status written for another class's Broker"
    );
    // The data plane serves it: the ingress accepts events for b1 only.
    let ingress = herald.server.url();
    let client = reqwest::Client::new();
    let send = |name: &str| {
        client
            .post(format!("{ingress}default/{name}"))
            .header("ce-specversion", "1.0")
            .header("ce-id", "1")
            .header("ce-type", "t")
            .header("ce-source", "s")
            .body("x")
            .send()
    };
    assert_eq!(send("b1").await.unwrap().status(), 202);
    assert_eq!(send("theirs").await.unwrap().status(), 404);
    herald.stop().await;
}

#[tokio::test]
async fn a_trigger_with_a_missing_subscriber_is_not_ready_until_the_service_appears() {
    let api = FakeApiServer::start().await;
    let herald = Herald::start(&api, "a", ServeConfig::default()).await;
    let client = api.client();
    Api::<Broker>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &broker("b", "Herald"))
        .await
        .unwrap();
    let triggers: Api<Trigger> = Api::namespaced(client.clone(), "default");
    let service_ref =
        json!({"ref": {"apiVersion": "v1", "kind": "Service", "name": "fn"}, "uri": "/events"});
    triggers
        .create(&PostParams::default(), &trigger("t", "b", service_ref))
        .await
        .unwrap();
    let ksvc_ref = json!({"ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "fraud-check"}});
    triggers
        .create(&PostParams::default(), &trigger("k", "b", ksvc_ref))
        .await
        .unwrap();

    let t = ready_is(&api, TRIGGERS, "t", "False").await;
    let resolved = condition(&t, "SubscriberResolved").unwrap();
    assert_eq!(resolved["status"], "False");
    assert_eq!(resolved["reason"], "NotFound");
    assert!(
        resolved["message"]
            .as_str()
            .unwrap()
            .contains("Service default/fn"),
        "{resolved}"
    );
    assert_eq!(condition(&t, "Ready").unwrap()["reason"], "NotFound");

    api.put(
        "api/v1/services",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "fn", "namespace": "default"}, "spec": {}}),
    );
    let t = ready_is(&api, TRIGGERS, "t", "True").await;
    assert_eq!(
        t["status"]["subscriberUri"],
        "http://fn.default.svc.cluster.local/events"
    );

    // A Knative Service resolves through its status.address.url.
    let k = ready_is(&api, TRIGGERS, "k", "False").await;
    assert_eq!(
        condition(&k, "SubscriberResolved").unwrap()["reason"],
        "NotFound"
    );
    api.put(
        "apis/serving.knative.dev/v1/services",
        json!({
            "apiVersion": "serving.knative.dev/v1", "kind": "Service",
            "metadata": {"name": "fraud-check", "namespace": "default"},
            "status": {"address": {"url": "http://fraud-check.default.svc.cluster.local"}}
        }),
    );
    let k = ready_is(&api, TRIGGERS, "k", "True").await;
    assert_eq!(
        k["status"]["subscriberUri"],
        "http://fraud-check.default.svc.cluster.local/"
    );
    herald.stop().await;
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

#[tokio::test]
async fn deleting_a_broker_removes_its_nats_stream_before_the_finalizer_goes() {
    let nats = match async_nats::connect("nats://127.0.0.1:4222").await {
        Ok(n) => n,
        Err(e) => {
            assert!(!in_ci(), "NATS is not available and CI=true: {e}");
            eprintln!("SKIPPED: NATS on 127.0.0.1:4222 is not available");
            return;
        }
    };
    let js = async_nats::jetstream::new(nats);
    let prefix = format!("K8SFIN{}", std::process::id());
    let mut config = ServeConfig::default();
    config.channels.default = herald_channels::BackendKind::Nats;
    config.channels.nats.stream_prefix = prefix.clone();
    let api = FakeApiServer::start().await;
    let herald = Herald::start(&api, "a", config).await;
    let brokers: Api<Broker> = Api::namespaced(api.client(), "default");
    brokers
        .create(&PostParams::default(), &broker("doomed", "Herald"))
        .await
        .unwrap();
    ready_is(&api, BROKERS, "doomed", "True").await;

    let streams = |js: async_nats::jetstream::Context, prefix: String| async move {
        use futures::TryStreamExt;
        let names: Vec<String> = js.stream_names().try_collect().await.unwrap();
        names
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        streams(js.clone(), prefix.clone()).await.len(),
        2,
        "the Broker's stream and its parking stream exist"
    );

    brokers
        .delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let start = Instant::now();
    while api.get(BROKERS, "default", "doomed").is_some() {
        assert!(
            start.elapsed() < DEADLINE,
            "the finalizer was never removed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        streams(js.clone(), prefix.clone()).await.is_empty(),
        "a stream outlived its Broker"
    );
    herald.stop().await;
}

#[tokio::test]
async fn failed_status_writes_requeue_with_backoff_until_they_succeed() {
    let api = FakeApiServer::start().await;
    api.fail(http::Method::PATCH, "/brokers/flaky/status", 3, 500);
    let herald = Herald::start(&api, "a", ServeConfig::default()).await;
    Api::<Broker>::namespaced(api.client(), "default")
        .create(&PostParams::default(), &broker("flaky", "Herald"))
        .await
        .unwrap();
    ready_is(&api, BROKERS, "flaky", "True").await;
    let attempts = api
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with("/brokers/flaky/status"))
        .count();
    // Three injected failures, then the write that stuck: retried, and not in a hot loop.
    assert_eq!(attempts, 4, "status write attempts");
    herald.stop().await;
}

/// A Herald in its own runtime on its own thread, so that "crashing" it (dropping the
/// runtime) stops everything it runs without releasing its Lease.
struct Crashable {
    crash: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Crashable {
    fn start(api_addr: std::net::SocketAddr, identity: &'static str) -> Self {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async move {
                let server = data_plane(ServeConfig::default()).await;
                let url = format!("http://{api_addr}").parse().unwrap();
                let client =
                    herald_crds::kube::Client::try_from(herald_crds::kube::Config::new(url))
                        .unwrap();
                let stop = CancellationToken::new();
                tokio::spawn(run(
                    client,
                    server.plane().clone(),
                    KubernetesConfig {
                        controller: true,
                        controller_config: controller_config(identity),
                        resync: Some(Duration::from_millis(200)),
                    },
                    stop,
                ));
                let _ = tokio::task::spawn_blocking(move || rx.recv()).await;
                std::mem::forget(server);
            });
            // Dropping the runtime here ends every task mid-flight: nothing is released.
            rt.shutdown_background();
        });
        Self {
            crash: Some(tx),
            thread: Some(thread),
        }
    }

    fn crash(mut self) {
        drop(self.crash.take());
        let _ = self.thread.take().unwrap().join();
    }
}

#[tokio::test]
async fn a_standby_takes_over_when_the_leaders_lease_expires() {
    let api = FakeApiServer::start().await;
    let leader = Crashable::start(api.addr, "first");
    let holder = |api: &FakeApiServer| {
        api.get(
            "apis/coordination.k8s.io/v1/leases",
            "herald",
            "herald-controller",
        )
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
    };
    eventually("the first replica to lead", || {
        (holder(&api)? == "first").then_some(())
    })
    .await;
    let brokers: Api<Broker> = Api::namespaced(api.client(), "default");
    brokers
        .create(&PostParams::default(), &broker("one", "Herald"))
        .await
        .unwrap();
    ready_is(&api, BROKERS, "one", "True").await;

    let standby = Herald::start(&api, "second", ServeConfig::default()).await;
    leader.crash();
    // Until the Lease expires nobody reconciles; then the standby leads and serves.
    eventually("the standby to take the Lease", || {
        (holder(&api)? == "second").then_some(())
    })
    .await;
    brokers
        .create(&PostParams::default(), &broker("two", "Herald"))
        .await
        .unwrap();
    let two = ready_is(&api, BROKERS, "two", "True").await;
    assert_eq!(
        two["status"]["address"]["url"],
        format!("{INGRESS}/default/two")
    );
    standby.stop().await;
    // Stopping gracefully releases the Lease.
    eventually("the Lease to be released", || {
        holder(&api).is_none().then_some(())
    })
    .await;
}

/// `herald serve --kubernetes --controller` as a process, finding the API server through
/// KUBECONFIG; with `--log-format json` every line it writes to stderr is a JSON object,
/// the Kubernetes start line included.
#[tokio::test]
async fn herald_serve_kubernetes_reads_kubeconfig_and_serves_brokers() {
    let api = FakeApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
             current-context: fake\nusers:\n- name: fake\n  user: {{}}\n",
            api.addr
        ),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let stderr = dir.path().join("stderr");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "serve",
            "--kubernetes",
            "--controller",
            "--channel",
            "memory",
            "--log-format",
            "json",
        ])
        .arg(format!("--listen=127.0.0.1:{port}"))
        // Its own free port: the default 127.0.0.1:8081 would clash with parallel tests.
        .arg("--admin-addr=127.0.0.1:0")
        .arg(format!("--ingress-url={INGRESS}"))
        .env("KUBECONFIG", &kubeconfig)
        .env("POD_NAMESPACE", "herald")
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    Api::<Broker>::namespaced(api.client(), "default")
        .create(&PostParams::default(), &broker("cli", "Herald"))
        .await
        .unwrap();
    let b = ready_is(&api, BROKERS, "cli", "True").await;
    assert_eq!(
        b["status"]["address"]["url"],
        format!("{INGRESS}/default/cli")
    );
    let _ = child.kill();
    let _ = child.wait();
    let logged = std::fs::read_to_string(&stderr).unwrap();
    let lines: Vec<Value> = logged
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{logged}"))
        })
        .collect();
    assert!(
        lines.iter().any(|l| l["fields"]["message"]
            == "herald serving Kubernetes objects (controller: leader-elected)"),
        "{logged}"
    );
}

#[tokio::test]
async fn a_source_object_runs_in_the_data_plane_and_gets_ready_with_its_sink_uri() {
    let api = FakeApiServer::start().await;
    let herald = Herald::start(&api, "a", ServeConfig::default()).await;
    let collection = "apis/sources.knative.dev/v1/pingsources";
    api.put(
        collection,
        json!({
            "apiVersion": "sources.knative.dev/v1",
            "kind": "PingSource",
            "metadata": {"name": "beat", "namespace": "default"},
            "spec": {"schedule": "@every 1h", "sink": {"uri": "http://127.0.0.1:9/beat"}}
        }),
    );
    let ready = ready_is(&api, collection, "beat", "True").await;
    assert_eq!(ready["status"]["sinkUri"], "http://127.0.0.1:9/beat");
    assert_eq!(ready["status"]["observedGeneration"], 1);
    assert!(
        condition(&ready, "SinkProvided").is_some_and(|c| c["status"] == "True"),
        "{ready}"
    );
    // The status came through the status subresource.
    assert!(api
        .requests()
        .iter()
        .any(|r| r.method == "PATCH" && r.path.ends_with("/pingsources/beat/status")));
    herald.stop().await;
}

const EVENTTYPES: &str = "apis/eventing.knative.dev/v1beta3/eventtypes";

/// What the data plane records from a Broker's events goes to the API server once per
/// EventType, owned by that Broker, and comes back through the feed as a Kubernetes object
/// (with its status written by the controller).
#[tokio::test]
async fn recorded_event_types_are_written_back_once_owned_by_their_broker() {
    let api = FakeApiServer::start().await;
    let herald = Herald::start(&api, "a", ServeConfig::default()).await;
    let client = api.client();
    Api::<Broker>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &broker("shop", "Herald"))
        .await
        .unwrap();
    let shop = ready_is(&api, BROKERS, "shop", "True").await;
    let uid = shop["metadata"]["uid"].as_str().unwrap().to_string();
    let http = reqwest::Client::new();
    let ingress = herald.server.url();
    let send = |ty: &'static str, source: &'static str| {
        http.post(format!("{ingress}default/shop"))
            .header("ce-specversion", "1.0")
            .header("ce-id", uuid_like())
            .header("ce-type", ty)
            .header("ce-source", source)
            .body("x")
            .send()
    };
    let pattern = [
        ("com.example.a", "/one"),
        ("com.example.a", "/two"),
        ("com.example.b", "/one"),
    ];
    for _ in 0..3 {
        for (ty, source) in pattern {
            assert_eq!(send(ty, source).await.unwrap().status(), 202);
        }
    }
    for (ty, source) in pattern {
        let name = herald_core::eventtype::generated_name("shop", "default", ty, source);
        let et = eventually(&format!("EventType {name} on the API server"), || {
            api.get(EVENTTYPES, "default", &name)
        })
        .await;
        assert_eq!(
            et["metadata"]["ownerReferences"],
            json!([{"apiVersion": "eventing.knative.dev/v1", "kind": "Broker", "name": "shop", "uid": uid}]),
            "{et}"
        );
        assert_eq!(et["spec"]["reference"]["name"], "shop", "{et}");
        let attributes = et["spec"]["attributes"].as_array().unwrap();
        assert!(
            attributes.contains(&json!({"name": "type", "required": true, "value": ty})),
            "{et}"
        );
        assert!(
            attributes.contains(&json!({"name": "source", "required": true, "value": source})),
            "{et}"
        );
        // Read back and reconciled like any EventType: Ready, its reference found.
        ready_is(&api, EVENTTYPES, &name, "True").await;
    }
    // The feed now serves them as Kubernetes objects: nothing is left to write back.
    let plane = herald.server.plane().clone();
    let start = Instant::now();
    while !plane.recorded_event_types().await.is_empty() {
        assert!(start.elapsed() < DEADLINE, "still recorded only locally");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Sent again, plus one new type: only the new one is created.
    for (ty, source) in pattern {
        assert_eq!(send(ty, source).await.unwrap().status(), 202);
    }
    assert_eq!(send("com.example.c", "/one").await.unwrap().status(), 202);
    let name = herald_core::eventtype::generated_name("shop", "default", "com.example.c", "/one");
    eventually("the new EventType", || {
        api.get(EVENTTYPES, "default", &name)
    })
    .await;
    let creates = api
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/eventtypes"))
        .count();
    assert_eq!(creates, pattern.len() + 1, "each EventType created once");
    herald.stop().await;
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("id-{}", N.fetch_add(1, Ordering::Relaxed))
}
