//! Event sources in the data plane: each applied source whose sink resolves runs as one task
//! (built by `herald_sources`' registry). A change of its spec or of where its sink resolves
//! to replaces the task (the old one finishes the event in hand); a removed source stops.
//! A source that ends with an error is built and started again after a backoff
//! ([`herald_sources::supervise`]).
//!
//! Status, as Knative's sources: `SinkProvided` (sink and dead-letter sink resolve), and
//! `Deployed` (the source runs: its own report, read live), `status.sinkUri`; a
//! GitHubSource's `status.address` is where GitHub must send its webhooks;
//! `status.eventCounts` counts what its sink did with its events (delivered, dead-lettered,
//! sink failures) since the source (re)started.

use super::{DataPlane, Entry, State};
use herald_core::status::Addressable;
use herald_core::{Check, Condition, ConditionStatus, Kind, Resource, ResourceKey, Status};
use herald_sources::{Sink, DEPLOYED, SINK_PROVIDED};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use url::Url;

/// A source's running task.
pub(super) struct RunningSource {
    generation: i64,
    sink: Url,
    dead_letter_sink: Option<Url>,
    pub(super) stop: CancellationToken,
    pub(super) task: JoinHandle<()>,
    health: watch::Receiver<Check>,
    counts: std::sync::Arc<herald_sources::SinkCounts>,
}

impl RunningSource {
    /// Stops it; what it has in hand finishes in the background.
    pub(super) fn retire(self, retiring: &mut tokio::task::JoinSet<()>) {
        self.stop.cancel();
        retiring.spawn(async move {
            let _ = self.task.await;
        });
    }
}

impl DataPlane {
    pub(super) async fn reconcile_sources(&self, state: &mut State) {
        let ids: Vec<(Kind, ResourceKey)> = state
            .sources
            .iter()
            .flat_map(|(kind, m)| m.keys().map(|k| (*kind, k.clone())))
            .collect();
        // Sources whose resource is gone stop.
        let gone: Vec<_> = state
            .source_runs
            .keys()
            .filter(|id| !ids.contains(id))
            .cloned()
            .collect();
        for id in gone {
            if let Some(r) = state.source_runs.remove(&id) {
                r.retire(&mut state.retiring);
            }
        }
        for (kind, key) in ids {
            let entry = &state.sources[&kind][&key];
            let (resource, generation) = (entry.resource.clone(), entry.generation);
            let namespace = key.namespace.clone();
            let Some((sink, delivery, overrides)) = herald_sources::sink_parts(&resource) else {
                continue;
            };
            let delivery = delivery
                .cloned()
                .unwrap_or_else(|| self.config.default_delivery.clone());
            let mut sink_check = self.destination_check(state, sink, &namespace);
            if sink_check.is_ok() {
                if let Some(d) = &delivery.dead_letter_sink {
                    if let Check::Failed { reason, message } =
                        self.destination_check(state, d, &namespace)
                    {
                        sink_check = Check::failed(
                            reason,
                            format!("spec.delivery.deadLetterSink: {message}"),
                        );
                    }
                }
            }
            let urls = sink_check.is_ok().then(|| {
                let url = self.resolver.resolve(sink, &namespace).ok();
                let dls = delivery
                    .dead_letter_sink
                    .as_ref()
                    .and_then(|d| self.resolver.resolve(d, &namespace).ok());
                (url, dls)
            });
            let id = (kind, key.clone());
            match urls {
                Some((Some(url), dls)) => {
                    let current = state.source_runs.get(&id).is_some_and(|r| {
                        r.generation == generation
                            && r.sink == url
                            && r.dead_letter_sink == dls
                            && !r.task.is_finished()
                    });
                    if !current {
                        if let Some(old) = state.source_runs.remove(&id) {
                            old.retire(&mut state.retiring);
                        }
                        let sink = Sink::new(
                            self.engine.clone(),
                            kind,
                            key.clone(),
                            url.clone(),
                            &delivery,
                            dls.clone(),
                            overrides.map(|o| o.extensions.clone()).unwrap_or_default(),
                        )
                        .with_metrics(&self.source_env.metrics);
                        let counts = sink.counts();
                        let stop = CancellationToken::new();
                        let (health_tx, health) =
                            watch::channel(Check::unknown("Starting", "the source is starting"));
                        let task = tokio::spawn(herald_sources::supervise(
                            resource.clone(),
                            self.source_env.clone(),
                            sink,
                            stop.clone(),
                            health_tx,
                        ));
                        tracing::info!(%kind, %key, sink = %url, "source started");
                        state.source_runs.insert(
                            id.clone(),
                            RunningSource {
                                generation,
                                sink: url.clone(),
                                dead_letter_sink: dls,
                                stop,
                                task,
                                health,
                                counts,
                            },
                        );
                    }
                }
                _ => {
                    if let Some(old) = state.source_runs.remove(&id) {
                        old.retire(&mut state.retiring);
                    }
                }
            }
            let running = state.source_runs.get(&id);
            let sink_uri = running.map(|r| r.sink.to_string());
            let deployed = match running {
                Some(r) => r.health.borrow().clone(),
                None => Check::unknown("SinkNotProvided", "waiting for the sink to resolve"),
            };
            let address = (kind == Kind::GitHubSource).then(|| Addressable {
                url: self.resolver.webhook_url(&key).to_string(),
            });
            let entry = state
                .sources
                .get_mut(&kind)
                .and_then(|m| m.get_mut(&key))
                .expect("listed above");
            entry.status.observed_generation = generation;
            entry.status.address = address;
            match sink_uri {
                Some(u) => entry.status.extra.insert("sinkUri".into(), u.into()),
                None => entry.status.extra.remove("sinkUri"),
            };
            entry
                .status
                .set_all(&[(SINK_PROVIDED, sink_check), (DEPLOYED, deployed)]);
        }
    }
}

impl State {
    /// A source's status with its `Deployed` condition as the source reports it now.
    pub(super) fn live_source_status(&self, kind: Kind, entry: &Entry<Resource>) -> Status {
        let mut status = entry.status.clone();
        let Some(running) = self.source_runs.get(&(kind, entry.resource.key())) else {
            return status;
        };
        let sink = status
            .condition(SINK_PROVIDED)
            .map(check_of)
            .unwrap_or(Check::Ok);
        let deployed = running.health.borrow().clone();
        status.set_all(&[(SINK_PROVIDED, sink), (DEPLOYED, deployed)]);
        status
            .extra
            .insert("eventCounts".into(), running.counts.to_json());
        status
    }
}

fn check_of(c: &Condition) -> Check {
    let text = |o: &Option<String>| o.clone().unwrap_or_default();
    match c.status {
        ConditionStatus::True => Check::Ok,
        ConditionStatus::False => Check::failed(text(&c.reason), text(&c.message)),
        ConditionStatus::Unknown => Check::unknown(text(&c.reason), text(&c.message)),
    }
}
