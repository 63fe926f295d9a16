//! ApiServerSource: a kube-runtime watcher per listed resource (in the source's namespace,
//! with its label selector) turns each change of an object into Knative's event: type
//! `dev.knative.apiserver.resource.{add,update,delete}` with the object as data (`mode:
//! Resource`) or `dev.knative.apiserver.ref.{add,update,delete}` with `{apiVersion, kind, name,
//! namespace}` (`mode: Reference`); source the API server's URL; subject the object's
//! selfLink-style path; extensions `kind`, `name`, `namespace` (for Trigger filters). Objects
//! that exist when the watch starts are not events (as Knative's adapter); a watch that had
//! to list again emits what changed meanwhile. It watches only while its host may run
//! leader-only sources ([`crate::Leadership`]): under `herald serve --kubernetes`, on the
//! replica holding the controller's Lease, so replicas never emit a change twice. Needs the
//! `kubernetes` feature; without it the source is refused with a message naming it.

use crate::error::ConfigError;
use crate::Source;
use herald_core::ApiServerSource;

/// Knative's event types.
pub const ADD: &str = "dev.knative.apiserver.resource.add";
pub const UPDATE: &str = "dev.knative.apiserver.resource.update";
pub const DELETE: &str = "dev.knative.apiserver.resource.delete";
pub const REF_ADD: &str = "dev.knative.apiserver.ref.add";
pub const REF_UPDATE: &str = "dev.knative.apiserver.ref.update";
pub const REF_DELETE: &str = "dev.knative.apiserver.ref.delete";

#[cfg(not(feature = "kubernetes"))]
pub fn build(a: &ApiServerSource) -> Result<Box<dyn Source>, ConfigError> {
    Err(ConfigError {
        kind: herald_core::Kind::ApiServerSource,
        key: a.key(),
        field: "kind".into(),
        message: "this herald was built without Kubernetes support (cargo feature \
                  `kubernetes`), which ApiServerSources need"
            .into(),
    })
}

#[cfg(feature = "kubernetes")]
pub use watch::{build, Cluster};

#[cfg(feature = "kubernetes")]
mod watch {
    use super::*;
    use crate::{SourceContext, SourceError};
    use cloudevents::{EventBuilder, EventBuilderV10};
    use futures::{FutureExt, StreamExt};
    use herald_core::{ApiVersionKind, Check, EventMode};
    use kube::api::{ApiResource, DynamicObject};
    use kube::core::GroupVersionKind;
    use kube::runtime::watcher::{self, Event};
    use kube::runtime::WatchStreamExt;
    use kube::Api;
    use serde_json::{json, Value};
    use std::collections::{HashMap, HashSet};

    /// The API server a source watches: a client and the URL events name as their source.
    #[derive(Clone)]
    pub struct Cluster {
        pub client: kube::Client,
        pub url: String,
    }

    impl std::fmt::Debug for Cluster {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Cluster").field("url", &self.url).finish()
        }
    }

    impl Cluster {
        pub fn new(client: kube::Client, url: &str) -> Self {
            Self {
                client,
                url: url.trim_end_matches('/').to_string(),
            }
        }

        /// In-cluster configuration, or KUBECONFIG's current context.
        pub async fn infer() -> Result<Self, SourceError> {
            let config = kube::Config::infer()
                .await
                .map_err(|e| SourceError::Kubernetes(format!("no cluster configuration: {e}")))?;
            let url = config.cluster_url.to_string();
            let client = kube::Client::try_from(config)
                .map_err(|e| SourceError::Kubernetes(format!("client: {e}")))?;
            Ok(Self::new(client, &url))
        }
    }

    /// One listed resource, ready to watch.
    struct Watched {
        api_version: String,
        kind: String,
        api: ApiResource,
        labels: String,
    }

    pub struct ApiServer {
        watched: Vec<Watched>,
        mode: EventMode,
        owner: Option<ApiVersionKind>,
        namespace: String,
    }

    pub fn build(a: &ApiServerSource) -> Result<Box<dyn Source>, ConfigError> {
        let watched = a
            .spec
            .resources
            .iter()
            .map(|r| {
                let (group, version) = match r.api_version.split_once('/') {
                    Some((g, v)) => (g, v),
                    None => ("", r.api_version.as_str()),
                };
                Watched {
                    api_version: r.api_version.clone(),
                    kind: r.kind.clone(),
                    api: ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &r.kind)),
                    labels: r
                        .selector
                        .as_ref()
                        .map(|s| s.to_query())
                        .unwrap_or_default(),
                }
            })
            .collect();
        Ok(Box::new(ApiServer {
            watched,
            mode: a.mode(),
            owner: a.spec.owner.clone(),
            namespace: a.metadata.namespace().to_string(),
        }))
    }

    /// What is known of one watched resource's objects: resourceVersion and last state by
    /// uid, and whether its first list is done.
    #[derive(Default)]
    struct Known {
        objects: HashMap<String, (String, Value)>,
        relisting: Option<HashSet<String>>,
        synced: bool,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Change {
        Add,
        Update,
        Delete,
    }

    impl ApiServer {
        /// Whether `object` passes the `owner` filter: its controller has that apiVersion
        /// and kind (an empty field matches any), as Knative's controller filter.
        fn owned(&self, object: &Value) -> bool {
            let Some(owner) = &self.owner else {
                return true;
            };
            let controller = object["metadata"]["ownerReferences"]
                .as_array()
                .and_then(|refs| refs.iter().find(|r| r["controller"] == true));
            controller.is_some_and(|c| {
                (owner.api_version.is_empty() || c["apiVersion"] == owner.api_version.as_str())
                    && (owner.kind.is_empty() || c["kind"] == owner.kind.as_str())
            })
        }

        fn event(
            &self,
            cluster: &Cluster,
            w: &Watched,
            change: Change,
            object: &Value,
        ) -> cloudevents::Event {
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
            let (ty, data) = match self.mode {
                EventMode::Resource => (
                    match change {
                        Change::Add => ADD,
                        Change::Update => UPDATE,
                        Change::Delete => DELETE,
                    },
                    object.clone(),
                ),
                EventMode::Reference => (
                    match change {
                        Change::Add => REF_ADD,
                        Change::Update => REF_UPDATE,
                        Change::Delete => REF_DELETE,
                    },
                    json!({
                        "apiVersion": w.api_version,
                        "kind": w.kind,
                        "name": name,
                        "namespace": namespace,
                    }),
                ),
            };
            // Knative's selfLink guess: `/apis/` even for the core group's `v1`.
            let subject = format!(
                "/apis/{}/namespaces/{namespace}/{}/{name}",
                w.api_version, w.api.plural
            );
            EventBuilderV10::new()
                .id(uuid::Uuid::new_v4().to_string())
                .ty(ty)
                .source(cluster.url.clone())
                .subject(subject)
                .extension("kind", w.kind.clone())
                .extension("name", name.to_string())
                .extension("namespace", namespace.to_string())
                .data("application/json", data)
                .build()
                .expect("id, type and source are set")
        }

        /// The changes one watcher event makes to what is known.
        fn changes(known: &mut Known, event: Event<DynamicObject>) -> Vec<(Change, Value)> {
            let mut out = Vec::new();
            match event {
                Event::Init => known.relisting = Some(HashSet::new()),
                Event::InitApply(o) => {
                    let (uid, rv, value) = identity(&o);
                    if let Some(seen) = &mut known.relisting {
                        seen.insert(uid.clone());
                    }
                    // The first list is the state the source starts from; later lists
                    // catch up on what the watch missed.
                    if known.synced {
                        match known.objects.get(&uid) {
                            None => out.push((Change::Add, value.clone())),
                            Some((old, _)) if *old != rv => {
                                out.push((Change::Update, value.clone()))
                            }
                            Some(_) => {}
                        }
                    }
                    known.objects.insert(uid, (rv, value));
                }
                Event::InitDone => {
                    if let Some(seen) = known.relisting.take() {
                        let gone: Vec<String> = known
                            .objects
                            .keys()
                            .filter(|k| !seen.contains(*k))
                            .cloned()
                            .collect();
                        for uid in gone {
                            if let Some((_, last)) = known.objects.remove(&uid) {
                                if known.synced {
                                    out.push((Change::Delete, last));
                                }
                            }
                        }
                    }
                    known.synced = true;
                }
                Event::Apply(o) => {
                    let (uid, rv, value) = identity(&o);
                    match known.objects.get(&uid) {
                        None => out.push((Change::Add, value.clone())),
                        Some((old, _)) if *old != rv => out.push((Change::Update, value.clone())),
                        Some(_) => {}
                    }
                    known.objects.insert(uid, (rv, value));
                }
                Event::Delete(o) => {
                    let (uid, _, value) = identity(&o);
                    known.objects.remove(&uid);
                    out.push((Change::Delete, value));
                }
            }
            out
        }
    }

    /// uid (or namespace/name), resourceVersion and JSON of an object.
    fn identity(o: &DynamicObject) -> (String, String, Value) {
        let m = &o.metadata;
        let uid = m.uid.clone().unwrap_or_else(|| {
            format!(
                "{}/{}",
                m.namespace.as_deref().unwrap_or_default(),
                m.name.as_deref().unwrap_or_default()
            )
        });
        let rv = m.resource_version.clone().unwrap_or_default();
        let value = serde_json::to_value(o).unwrap_or(Value::Null);
        (uid, rv, value)
    }

    #[async_trait::async_trait]
    impl Source for ApiServer {
        /// Watches while this host may run leader-only sources; standing by, it waits to
        /// lead, and a replica that stops leading stops watching (after the event in hand).
        async fn run(self: Box<Self>, ctx: SourceContext) -> Result<(), SourceError> {
            let cluster = match &ctx.env.kubernetes {
                Some(c) => c.clone(),
                None => Cluster::infer().await?,
            };
            let mut leadership = ctx.env.leadership.clone();
            loop {
                if !leadership.borrow_and_update().may_run() {
                    ctx.report(Check::unknown(
                        "StandingBy",
                        "another replica holds the leader Lease and runs this source",
                    ));
                    tokio::select! {
                        led = leadership.wait_for(|l| l.may_run()).map(|r| r.is_ok()) => if !led {
                            // The host is going away without ever leading again.
                            ctx.shutdown.cancelled().await;
                            return Ok(());
                        },
                        _ = ctx.shutdown.cancelled() => return Ok(()),
                    }
                }
                let leading = ctx.shutdown.child_token();
                let watching = self.watch(&ctx, &cluster, &leading);
                tokio::pin!(watching);
                let lost = async {
                    if leadership.wait_for(|l| !l.may_run()).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                };
                let result = tokio::select! {
                    r = &mut watching => r,
                    _ = lost => {
                        tracing::info!(source = %ctx.key, "no longer the leader: stopping the watch");
                        leading.cancel();
                        watching.await
                    }
                };
                result?;
                if ctx.shutdown.is_cancelled() {
                    return Ok(());
                }
            }
        }
    }

    impl ApiServer {
        /// Emits every change of the watched objects until `stop`.
        async fn watch(
            &self,
            ctx: &SourceContext,
            cluster: &Cluster,
            stop: &tokio_util::sync::CancellationToken,
        ) -> Result<(), SourceError> {
            let streams = self.watched.iter().enumerate().map(|(i, w)| {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(cluster.client.clone(), &self.namespace, &w.api);
                let config = watcher::Config::default().labels(&w.labels);
                watcher::watcher(api, config)
                    .default_backoff()
                    .map(move |e| (i, e))
                    .boxed()
            });
            let mut events = futures::stream::select_all(streams);
            let mut known: Vec<Known> = self.watched.iter().map(|_| Known::default()).collect();
            let mut failing: Vec<Option<String>> = vec![None; self.watched.len()];
            ctx.report(Check::unknown("Watching", "listing the watched resources"));
            loop {
                let (i, item) = tokio::select! {
                    item = events.next() => match item {
                        Some(item) => item,
                        None => return Ok(()),
                    },
                    _ = stop.cancelled() => return Ok(()),
                };
                let w = &self.watched[i];
                let event = match item {
                    Ok(e) => e,
                    Err(e) => {
                        let message =
                            format!("spec.resources[{i}] ({} {}): {e}", w.api_version, w.kind);
                        tracing::warn!(source = %ctx.key, %message, "watch failed; retrying");
                        ctx.report(Check::failed("WatchFailed", &message));
                        failing[i] = Some(message);
                        continue;
                    }
                };
                let done = matches!(event, Event::InitDone);
                for (change, mut object) in ApiServer::changes(&mut known[i], event) {
                    // List items may come without their type; events carry it.
                    object["apiVersion"] = json!(w.api_version);
                    object["kind"] = json!(w.kind);
                    if !self.owned(&object) {
                        continue;
                    }
                    let e = self.event(cluster, w, change, &object);
                    tracing::debug!(source = %ctx.key, ?change, kind = %w.kind, "kubernetes change");
                    if let Err(err) = ctx.sink.send(e).await {
                        tracing::warn!(source = %ctx.key, error = %err, "event lost");
                    }
                }
                if done {
                    failing[i] = None;
                    if known.iter().all(|k| k.synced) && failing.iter().all(Option::is_none) {
                        ctx.report(Check::Ok);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(not(feature = "kubernetes"))]
    #[test]
    fn without_the_feature_an_apiserversource_is_refused_naming_it() {
        let r = herald_core::load_resource(
            "a.yaml",
            r#"{"apiVersion": "sources.knative.dev/v1", "kind": "ApiServerSource",
                "metadata": {"name": "pods", "namespace": "ns"},
                "spec": {"resources": [{"apiVersion": "v1", "kind": "Pod"}],
                         "sink": {"uri": "http://127.0.0.1:9/"}}}"#,
        )
        .unwrap();
        let Some(Err(e)) = crate::build(&r) else {
            panic!("built without the feature")
        };
        let message = e.to_string();
        assert!(message.contains("ApiServerSource ns/pods"), "{message}");
        assert!(message.contains("`kubernetes`"), "{message}");
    }
}
