//! An in-process Kubernetes API server for tests (feature `fake-apiserver`): a real HTTP
//! listener on 127.0.0.1 that kube's client talks to unchanged. It keeps objects in memory and
//! does what controllers rely on: get, list and watch (with label selectors and
//! resourceVersions), create, replace, delete with finalizers (deletionTimestamp first, gone
//! once the last finalizer is removed), merge, strategic, JSON and apply patches, the status
//! subresource (status changes through the main resource are ignored, spec changes through
//! `/status` too), `metadata.generation` bumped on spec changes, and the one server-side-apply
//! conflict leader election needs (a Lease's `holderIdentity` held by someone else). Every
//! request is recorded, and failures can be injected.

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub body: Option<Value>,
}

/// Where an object lives: `{api prefix}/{resource}`, namespace, name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Key {
    /// `api/v1/pods` or `apis/eventing.knative.dev/v1/brokers`.
    collection: String,
    namespace: String,
    name: String,
}

#[derive(Clone, Debug)]
struct WatchEvent {
    collection: String,
    namespace: String,
    kind: &'static str,
    object: Value,
}

struct Failure {
    method: Method,
    path_contains: String,
    remaining: usize,
    code: u16,
}

#[derive(Default)]
struct Store {
    objects: BTreeMap<Key, Value>,
    revision: u64,
    log: Vec<(u64, WatchEvent)>,
    requests: Vec<Recorded>,
    failures: Vec<Failure>,
}

struct Shared {
    store: Mutex<Store>,
    events: broadcast::Sender<(u64, WatchEvent)>,
}

/// A running fake API server; dropped, it stops.
pub struct FakeApiServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApiServer {
    pub async fn start() -> Self {
        let (events, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::default()),
            events,
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    /// A kube client for this server.
    pub fn client(&self) -> kube::Client {
        let url = format!("http://{}", self.addr).parse().expect("valid url");
        let mut config = kube::Config::new(url);
        config.default_namespace = "default".into();
        kube::Client::try_from(config).expect("client for the fake API server")
    }

    /// Creates or replaces an object directly (as another client would), e.g. a Service.
    /// `path` is the object's collection, e.g. `api/v1/services`.
    pub fn put(&self, collection: &str, object: Value) {
        let mut store = self.shared.store.lock().expect("store lock");
        let key = key_of(collection, &object);
        let old = store.objects.get(&key).cloned();
        let kind = if old.is_some() { "MODIFIED" } else { "ADDED" };
        let object = stamp_new(&mut store, object, old);
        store.objects.insert(key.clone(), object.clone());
        publish(&self.shared, &mut store, &key, kind, object);
    }

    /// Deletes an object directly, as `kubectl delete` would (finalizers hold it back).
    pub fn delete(&self, collection: &str, namespace: &str, name: &str) {
        let target = Target {
            collection: collection.into(),
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            status: false,
        };
        let _ = delete(&self.shared, &target);
    }

    /// The stored object, if any.
    pub fn get(&self, collection: &str, namespace: &str, name: &str) -> Option<Value> {
        let store = self.shared.store.lock().expect("store lock");
        store
            .objects
            .get(&Key {
                collection: collection.into(),
                namespace: namespace.into(),
                name: name.into(),
            })
            .cloned()
    }

    /// A way to read the requests later, e.g. from a drop guard.
    pub fn requests_handle(&self) -> Box<dyn Fn() -> Vec<Recorded>> {
        let shared = self.shared.clone();
        Box::new(move || shared.store.lock().expect("store lock").requests.clone())
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared
            .store
            .lock()
            .expect("store lock")
            .requests
            .clone()
    }

    /// The next `count` requests with `method` whose path contains `path_contains` fail with
    /// `code`.
    pub fn fail(&self, method: Method, path_contains: &str, count: usize, code: u16) {
        self.shared
            .store
            .lock()
            .expect("store lock")
            .failures
            .push(Failure {
                method,
                path_contains: path_contains.into(),
                remaining: count,
                code,
            });
    }
}

fn key_of(collection: &str, object: &Value) -> Key {
    Key {
        collection: collection.into(),
        namespace: object["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .into(),
        name: object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .into(),
    }
}

/// Gives a stored object its server-side metadata: resourceVersion always, uid, generation
/// and creationTimestamp when new, generation bumped when the spec changed.
fn stamp_new(store: &mut Store, mut object: Value, old: Option<Value>) -> Value {
    store.revision += 1;
    let meta = &mut object["metadata"];
    meta["resourceVersion"] = json!(store.revision.to_string());
    match &old {
        None => {
            meta["uid"] = json!(format!("uid-{}", store.revision));
            meta["generation"] = json!(1);
            meta["creationTimestamp"] =
                json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        Some(old) => {
            for field in ["uid", "creationTimestamp"] {
                meta[field] = old["metadata"][field].clone();
            }
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
            let changed = old.get("spec") != object.get("spec");
            object["metadata"]["generation"] = json!(generation + i64::from(changed));
        }
    }
    object
}

fn publish(shared: &Shared, store: &mut Store, key: &Key, kind: &'static str, object: Value) {
    let event = WatchEvent {
        collection: key.collection.clone(),
        namespace: key.namespace.clone(),
        kind,
        object,
    };
    let rev = store.revision;
    store.log.push((rev, event.clone()));
    let _ = shared.events.send((rev, event));
}

/// A parsed request path.
struct Target {
    collection: String,
    /// `None` for a request across all namespaces (or a cluster-scoped kind).
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (prefix, rest) = match *parts.first()? {
        "api" => (parts.get(..2)?.join("/"), parts.get(2..)?),
        "apis" => (parts.get(..3)?.join("/"), parts.get(3..)?),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() => (Some(ns.to_string()), tail),
        other => (None, other),
    };
    let (resource, name, sub) = match rest {
        [r] => (*r, None, None),
        [r, n] => (*r, Some(n.to_string()), None),
        [r, n, s] => (*r, Some(n.to_string()), Some(*s)),
        _ => return None,
    };
    Some(Target {
        collection: format!("{prefix}/{resource}"),
        namespace,
        name,
        status: sub == Some("status"),
    })
}

fn status_error(code: u16, reason: &str, message: String) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        axum::Json(body),
    )
        .into_response()
}

fn ok(object: Value) -> Response {
    axum::Json(object).into_response()
}

/// Equality-based label selectors: `a=b`, `a==b`, `a!=b`, `a`, `!a`, comma-separated.
fn matches_labels(object: &Value, selector: Option<&str>) -> bool {
    let Some(selector) = selector.filter(|s| !s.is_empty()) else {
        return true;
    };
    let labels = &object["metadata"]["labels"];
    selector.split(',').all(|term| {
        let term = term.trim();
        if let Some((k, v)) = term.split_once("!=") {
            labels[k.trim()].as_str() != Some(v.trim())
        } else if let Some((k, v)) = term.split_once('=') {
            labels[k.trim()].as_str() == Some(v.trim_start_matches('=').trim())
        } else if let Some(k) = term.strip_prefix('!') {
            labels.get(k.trim()).is_none()
        } else {
            labels.get(term).is_some()
        }
    })
}

fn in_scope(target: &Target, collection: &str, namespace: &str) -> bool {
    collection == target.collection && target.namespace.as_deref().is_none_or(|ns| ns == namespace)
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let body_json: Option<Value> = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice(&body).or_else(|_| serde_yaml::from_slice(&body)) {
            Ok(v) => Some(v),
            Err(e) => return status_error(400, "BadRequest", format!("body: {e}")),
        }
    };
    {
        let mut store = shared.store.lock().expect("store lock");
        store.requests.push(Recorded {
            method: method.clone(),
            path: path.clone(),
            query: uri.query().unwrap_or_default().to_string(),
            body: body_json.clone(),
        });
        if let Some(f) = store
            .failures
            .iter_mut()
            .find(|f| f.remaining > 0 && f.method == method && path.contains(&f.path_contains))
        {
            f.remaining -= 1;
            let code = f.code;
            return status_error(
                code,
                "InternalError",
                format!("injected failure of {method} {path}"),
            );
        }
    }
    let Some(target) = parse_path(&path) else {
        return status_error(404, "NotFound", format!("no route {path}"));
    };
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    match (method, &target.name) {
        (Method::GET, None) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch(shared, target, query)
        }
        (Method::GET, None) => list(&shared, &target, &query),
        (Method::GET, Some(_)) => {
            let store = shared.store.lock().expect("store lock");
            match store.objects.get(&target_key(&target)) {
                Some(o) => ok(o.clone()),
                None => not_found(&target),
            }
        }
        (Method::POST, None) => create(&shared, &target, body_json),
        (Method::PUT, Some(_)) => replace(&shared, &target, body_json),
        (Method::PATCH, Some(_)) => patch(&shared, &target, &content_type, body_json),
        (Method::DELETE, Some(_)) => delete(&shared, &target),
        (m, _) => status_error(405, "MethodNotAllowed", format!("{m} {path}")),
    }
}

fn target_key(t: &Target) -> Key {
    Key {
        collection: t.collection.clone(),
        namespace: t.namespace.clone().unwrap_or_default(),
        name: t.name.clone().unwrap_or_default(),
    }
}

fn not_found(t: &Target) -> Response {
    let key = target_key(t);
    status_error(
        404,
        "NotFound",
        format!("{} \"{}\" not found", key.collection, key.name),
    )
}

fn list(shared: &Shared, target: &Target, query: &HashMap<String, String>) -> Response {
    let store = shared.store.lock().expect("store lock");
    let selector = query.get("labelSelector").map(String::as_str);
    let items: Vec<Value> = store
        .objects
        .iter()
        .filter(|(k, o)| {
            in_scope(target, &k.collection, &k.namespace) && matches_labels(o, selector)
        })
        .map(|(_, o)| o.clone())
        .collect();
    ok(json!({
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": store.revision.to_string()},
        "items": items,
    }))
}

fn watch(shared: Arc<Shared>, target: Target, query: HashMap<String, String>) -> Response {
    let selector = query.get("labelSelector").cloned();
    let from: Option<u64> = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0);
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .unwrap_or(290u64);
    let (backlog, live) = {
        let store = shared.store.lock().expect("store lock");
        let backlog: Vec<(u64, WatchEvent)> = match from {
            Some(rv) => store.log.iter().filter(|(r, _)| *r > rv).cloned().collect(),
            // No resourceVersion: the current state as ADDED events, then what follows.
            None => store
                .objects
                .iter()
                .map(|(k, o)| {
                    (
                        store.revision,
                        WatchEvent {
                            collection: k.collection.clone(),
                            namespace: k.namespace.clone(),
                            kind: "ADDED",
                            object: o.clone(),
                        },
                    )
                })
                .collect(),
        };
        (backlog, shared.events.subscribe())
    };
    let last = backlog.last().map(|(r, _)| *r).unwrap_or(from.unwrap_or(0));
    let live = tokio_stream_of(live).filter(move |(r, _)| futures::future::ready(*r > last));
    let events = futures::stream::iter(backlog)
        .chain(live)
        .filter(move |(_, e)| {
            futures::future::ready(
                in_scope(&target, &e.collection, &e.namespace)
                    && matches_labels(&e.object, selector.as_deref()),
            )
        })
        .map(|(_, e)| {
            let line = json!({"type": e.kind, "object": e.object}).to_string() + "\n";
            Ok::<_, std::convert::Infallible>(Bytes::from(line))
        });
    let deadline = tokio::time::sleep(std::time::Duration::from_secs(timeout));
    let bounded = events.take_until(deadline);
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from_stream(bounded))
        .expect("valid response")
}

/// The broadcast receiver as a stream (lagging receivers skip ahead).
fn tokio_stream_of(
    rx: broadcast::Receiver<(u64, WatchEvent)>,
) -> impl futures::Stream<Item = (u64, WatchEvent)> {
    futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(e) => return Some((e, rx)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

fn create(shared: &Shared, target: &Target, body: Option<Value>) -> Response {
    let Some(mut object) = body else {
        return status_error(400, "BadRequest", "no body".into());
    };
    if let Some(ns) = &target.namespace {
        object["metadata"]["namespace"] = json!(ns);
    }
    let mut store = shared.store.lock().expect("store lock");
    let key = key_of(&target.collection, &object);
    if store.objects.contains_key(&key) {
        return status_error(
            409,
            "AlreadyExists",
            format!("{} \"{}\" already exists", key.collection, key.name),
        );
    }
    let object = stamp_new(&mut store, object, None);
    store.objects.insert(key.clone(), object.clone());
    publish(shared, &mut store, &key, "ADDED", object.clone());
    (StatusCode::CREATED, axum::Json(object)).into_response()
}

/// Stores `new` in place of `old` under the subresource rules, or removes it when it is
/// being deleted and holds no finalizer any more.
fn commit(
    shared: &Shared,
    store: &mut Store,
    key: &Key,
    old: Value,
    mut new: Value,
    status: bool,
) -> Response {
    if status {
        // Through /status only the status changes.
        let status_value = new.get("status").cloned();
        new = old.clone();
        match status_value {
            Some(s) => new["status"] = s,
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    } else {
        // Through the main resource the status stays (the status subresource is on).
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        // Deletion is the server's to set.
        new["metadata"]["deletionTimestamp"] = old["metadata"]["deletionTimestamp"].clone();
        if new["metadata"]["deletionTimestamp"].is_null() {
            if let Some(m) = new["metadata"].as_object_mut() {
                m.remove("deletionTimestamp");
            }
        }
    }
    let new = stamp_new(store, new, Some(old));
    let deleting = !new["metadata"]["deletionTimestamp"].is_null();
    let finalizers_left = new["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    if deleting && !finalizers_left {
        store.objects.remove(key);
        publish(shared, store, key, "DELETED", new.clone());
    } else {
        store.objects.insert(key.clone(), new.clone());
        publish(shared, store, key, "MODIFIED", new.clone());
    }
    ok(new)
}

fn replace(shared: &Shared, target: &Target, body: Option<Value>) -> Response {
    let Some(new) = body else {
        return status_error(400, "BadRequest", "no body".into());
    };
    let mut store = shared.store.lock().expect("store lock");
    let key = target_key(target);
    let Some(old) = store.objects.get(&key).cloned() else {
        return not_found(target);
    };
    let given = new["metadata"]["resourceVersion"].as_str();
    if given.is_some_and(|rv| Some(rv) != old["metadata"]["resourceVersion"].as_str()) {
        return status_error(
            409,
            "Conflict",
            format!(
                "the object {} has been modified; please apply your changes to the latest version",
                key.name
            ),
        );
    }
    commit(shared, &mut store, &key, old, new, target.status)
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().expect("made an object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn patch(shared: &Shared, target: &Target, content_type: &str, body: Option<Value>) -> Response {
    let Some(body) = body else {
        return status_error(400, "BadRequest", "no body".into());
    };
    let mut store = shared.store.lock().expect("store lock");
    let key = target_key(target);
    let apply = content_type.starts_with("application/apply-patch");
    let old = match store.objects.get(&key).cloned() {
        Some(o) => o,
        None if apply => {
            // Server-side apply creates what does not exist.
            let mut object = body.clone();
            object["metadata"]["name"] = json!(key.name);
            object["metadata"]["namespace"] = json!(key.namespace);
            let object = stamp_new(&mut store, object, None);
            store.objects.insert(key.clone(), object.clone());
            publish(shared, &mut store, &key, "ADDED", object.clone());
            return ok(object);
        }
        None => return not_found(target),
    };
    let mut new = old.clone();
    if content_type.starts_with("application/json-patch") {
        // As the API server does, a `test` for null passes on a field that is absent.
        let body = match body {
            Value::Array(ops) => Value::Array(
                ops.into_iter()
                    .filter(|op| {
                        !(op["op"] == "test"
                            && op["value"].is_null()
                            && op["path"]
                                .as_str()
                                .is_some_and(|p| new.pointer(p).is_none()))
                    })
                    .collect(),
            ),
            other => other,
        };
        let ops: json_patch::Patch = match serde_json::from_value(body) {
            Ok(p) => p,
            Err(e) => return status_error(400, "BadRequest", format!("json patch: {e}")),
        };
        if let Err(e) = json_patch::patch(&mut new, &ops) {
            // A failed `test` op is how optimistic concurrency shows in JSON patches.
            return status_error(422, "Invalid", format!("json patch: {e}"));
        }
    } else {
        if apply {
            let held = old["spec"]["holderIdentity"].as_str();
            let wanted = body["spec"]["holderIdentity"].as_str();
            if held.is_some() && wanted.is_some() && held != wanted {
                return status_error(
                    409,
                    "Conflict",
                    "Apply failed with 1 conflict: conflict with another manager: .spec.holderIdentity".into(),
                );
            }
        }
        merge(&mut new, &body);
    }
    commit(shared, &mut store, &key, old, new, target.status)
}

fn delete(shared: &Shared, target: &Target) -> Response {
    let mut store = shared.store.lock().expect("store lock");
    let key = target_key(target);
    let Some(mut object) = store.objects.get(&key).cloned() else {
        return not_found(target);
    };
    let has_finalizers = object["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    store.revision += 1;
    object["metadata"]["resourceVersion"] = json!(store.revision.to_string());
    if has_finalizers {
        if object["metadata"]["deletionTimestamp"].is_null() {
            object["metadata"]["deletionTimestamp"] =
                json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        }
        store.objects.insert(key.clone(), object.clone());
        publish(shared, &mut store, &key, "MODIFIED", object.clone());
    } else {
        store.objects.remove(&key);
        publish(shared, &mut store, &key, "DELETED", object.clone());
    }
    ok(object)
}
