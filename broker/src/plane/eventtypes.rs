//! EventTypes in the data plane: declared ones (files, the admin API, Kubernetes) and the ones
//! recorded from what each Broker's and Channel's log accepts ([`super::recorder`]), named as
//! Knative's auto-creation names them and owned by [`Owner::Recorded`]. Status is Knative's:
//! `ReferenceExists` (and `Ready`) once `spec.reference` names something applied here.
//!
//! Rules: one recorded EventType per (Broker or Channel, type, source); a declared EventType
//! describing the same wins and the recorded one goes; a recorded one goes with its Broker or
//! Channel (Knative's owner reference). With the durable default backend (`sled`) recorded
//! EventTypes are kept in `{data-dir}/eventtypes.json` and restored on start; on the other
//! backends they are learned again from the next events.

use super::recorder::Observed;
use super::{DataPlane, LogId, Owner, State};
use herald_core::eventtype::EventType;
use herald_core::{Check, KReference, Kind, ResourceKey};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

const REFERENCE_EXISTS: &str = "ReferenceExists";
/// Recorded EventTypes one Broker or Channel may have; past it new types are not recorded
/// (counted as `herald_eventtypes_dropped_total{reason="limit"}`), so a sender inventing
/// types cannot grow the registry without bound.
pub const MAX_RECORDED_PER_TARGET: usize = 1000;
/// The file recorded EventTypes are kept in, in the sled data directory.
pub const STORE_FILE: &str = "eventtypes.json";

#[derive(Debug, thiserror::Error)]
pub enum EventTypeStoreError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a list of EventTypes: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl State {
    /// The reference a recorded EventType of `log` carries: the Broker, or the Channel as
    /// the kind it was written as.
    fn reference_of(&self, log: &LogId) -> Option<KReference> {
        let (api_version, kind) = match log.0 {
            Kind::Broker if self.brokers.contains_key(&log.1) => {
                (herald_core::EVENTING_API_VERSION, "Broker")
            }
            Kind::Channel => {
                let flavor = self.channels.get(&log.1)?.resource.flavor;
                (flavor.api_version(), flavor.kind())
            }
            _ => return None,
        };
        Some(KReference {
            api_version: Some(api_version.into()),
            kind: kind.into(),
            name: log.1.name.clone(),
            namespace: Some(log.1.namespace.clone()),
            group: None,
        })
    }

    /// Whether `reference` names something applied here, and what.
    fn reference_check(&self, et: &EventType) -> Check {
        let Some(r) = et.reference() else {
            return Check::Ok;
        };
        let key = ResourceKey::new(r.namespace.clone().unwrap_or_default(), &r.name);
        let what = format!(
            "{} {key} ({})",
            r.kind,
            r.api_version.as_deref().unwrap_or("no apiVersion")
        );
        match Kind::of_ref(&r) {
            Some(kind) if self.exists(kind, &key) => Check::Ok,
            Some(_) => Check::failed(
                "ResourceDoesNotExist",
                format!("{what} in spec.reference does not exist"),
            ),
            None => Check::failed(
                "ResourceDoesNotExist",
                format!("{what} in spec.reference is not a kind Herald serves"),
            ),
        }
    }

    /// Whether an EventType other than a recorded one describes `et`'s events.
    fn declared_for(&self, et: &EventType) -> bool {
        let Some(r) = et.reference() else {
            return false;
        };
        self.event_types.values().any(|e| {
            e.owner != Owner::Recorded && e.resource.describes(&r, et.event_type(), et.source())
        })
    }

    fn set_event_type_status(&mut self, key: &ResourceKey) {
        let Some(et) = self.event_types.get(key) else {
            return;
        };
        let check = self.reference_check(&et.resource);
        let unset = et.resource.spec.reference.is_none();
        let entry = self.event_types.get_mut(key).expect("looked up above");
        entry.status.observed_generation = entry.generation;
        entry.status.set_all(&[(REFERENCE_EXISTS, check)]);
        if unset {
            // Knative's: true, with a reason saying why.
            if let Some(c) = entry
                .status
                .conditions
                .iter_mut()
                .find(|c| c.kind == REFERENCE_EXISTS)
            {
                c.reason = Some("ReferenceNotSet".into());
                c.message = Some("spec.reference is not set".into());
            }
        }
    }

    /// Inserts a recorded EventType unless one describing its events exists; says whether it
    /// did.
    fn insert_recorded(&mut self, et: EventType, limit: usize) -> Result<bool, &'static str> {
        let Some(reference) = et.reference() else {
            return Ok(false);
        };
        if self.event_types.contains_key(&et.key())
            || self.event_types.values().any(|e| {
                e.resource
                    .describes(&reference, et.event_type(), et.source())
            })
        {
            return Ok(false);
        }
        // Every EventType on the target counts, whoever owns it: in Kubernetes mode a recorded
        // one comes back from the API server owned by the feed, and must still count.
        let on_target = self
            .event_types
            .values()
            .filter(|e| {
                e.resource.reference().is_some_and(|r| {
                    r.kind == reference.kind
                        && r.name == reference.name
                        && r.namespace == reference.namespace
                })
            })
            .count();
        if on_target >= limit {
            return Err("limit");
        }
        let key = et.key();
        super::upsert(
            &mut self.event_types,
            key.clone(),
            et,
            Owner::Recorded,
            herald_core::Resource::EventType,
        );
        self.set_event_type_status(&key);
        Ok(true)
    }
}

impl DataPlane {
    /// Writes every EventType's status and removes the recorded ones a declared EventType
    /// replaces or whose Broker or Channel is gone. Runs after Brokers and Channels.
    pub(super) fn reconcile_event_types(&self, state: &mut State) {
        let gone: Vec<ResourceKey> = state
            .event_types
            .iter()
            .filter(|(_, e)| e.owner == Owner::Recorded)
            .filter(|(_, e)| {
                !state.reference_check(&e.resource).is_ok() || state.declared_for(&e.resource)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in &gone {
            state.event_types.remove(key);
            tracing::info!(%key, "recorded EventType removed");
        }
        if !gone.is_empty() {
            state.recorder.forget_all();
            self.recorded_changed.send_modify(|v| *v += 1);
        }
        let keys: Vec<ResourceKey> = state.event_types.keys().cloned().collect();
        for key in keys {
            state.set_event_type_status(&key);
        }
    }

    /// Records the EventTypes of what the logs accepted (see [`super::recorder`]).
    pub(super) async fn record_observed(&self, batch: Vec<Observed>) {
        let mut state = self.state.lock().await;
        let mut created = 0;
        for observed in batch {
            let Some(reference) = state.reference_of(&observed.log) else {
                continue;
            };
            let et = EventType::recorded(reference, &observed.seen);
            let name = et.key();
            match state.insert_recorded(et, MAX_RECORDED_PER_TARGET) {
                Ok(true) => {
                    created += 1;
                    tracing::info!(
                        eventtype = %name,
                        kind = %observed.log.0,
                        target = %observed.log.1,
                        event_type = %observed.seen.event_type,
                        source = %observed.seen.source,
                        "EventType recorded"
                    );
                    state.recorder.count_recorded(&observed.log);
                }
                Ok(false) => {}
                Err(reason) => {
                    tracing::warn!(
                        kind = %observed.log.0,
                        target = %observed.log.1,
                        limit = MAX_RECORDED_PER_TARGET,
                        event_type = %observed.seen.event_type,
                        "EventType not recorded: too many on this target"
                    );
                    state.recorder.count_drop(reason);
                }
            }
        }
        if created > 0 {
            self.recorded_changed.send_modify(|v| *v += 1);
        }
    }

    /// The EventTypes recorded from events (not declared), as applied.
    pub async fn recorded_event_types(&self) -> Vec<EventType> {
        let state = self.state.lock().await;
        state
            .event_types
            .values()
            .filter(|e| e.owner == Owner::Recorded)
            .map(|e| e.resource.clone())
            .collect()
    }

    /// Changes (a number that moves) whenever the recorded EventTypes change.
    pub fn recorded_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.recorded_changed.subscribe()
    }

    /// Records EventTypes kept by an earlier run: those whose Broker or Channel is applied
    /// and that no declared EventType replaces.
    pub async fn restore_event_types(&self, recorded: Vec<EventType>) -> usize {
        let mut state = self.state.lock().await;
        let mut restored = 0;
        for et in recorded {
            if et.validate().is_empty()
                && state.reference_check(&et).is_ok()
                && !state.declared_for(&et)
                && state.insert_recorded(et, MAX_RECORDED_PER_TARGET) == Ok(true)
            {
                restored += 1;
            }
        }
        restored
    }

    /// Drains the recorder's queue into the plane until `stop`, and with `store` keeps the
    /// recorded EventTypes there (restored first).
    pub async fn run_event_types(self: Arc<Self>, store: Option<PathBuf>, stop: CancellationToken) {
        let Some(mut queue) = self
            .recorder_queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return;
        };
        if let Some(path) = &store {
            match read_store(path).await {
                Ok(list) if !list.is_empty() => {
                    let n = self.restore_event_types(list).await;
                    tracing::info!(restored = n, file = %path.display(), "recorded EventTypes restored");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "recorded EventTypes not restored"),
            }
        }
        let mut changes = self.recorded_changes();
        let mut batch = Vec::new();
        loop {
            tokio::select! {
                n = queue.recv_many(&mut batch, 256) => {
                    if n == 0 {
                        break;
                    }
                    self.record_observed(std::mem::take(&mut batch)).await;
                }
                changed = changes.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    if let Some(path) = &store {
                        let list = self.recorded_event_types().await;
                        if let Err(e) = write_store(path, list).await {
                            tracing::warn!(error = %e, "recorded EventTypes not saved");
                        }
                    }
                }
                _ = stop.cancelled() => break,
            }
        }
        if let Some(path) = &store {
            if changes.has_changed().unwrap_or(false) {
                let list = self.recorded_event_types().await;
                if let Err(e) = write_store(path, list).await {
                    tracing::warn!(error = %e, "recorded EventTypes not saved");
                }
            }
        }
    }
}

/// The recorded EventTypes an earlier run kept at `path` (none when there is no file).
pub async fn read_store(path: &Path) -> Result<Vec<EventType>, EventTypeStoreError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(EventTypeStoreError::Read { path, source }),
        };
        serde_json::from_str(&text).map_err(|source| EventTypeStoreError::Parse { path, source })
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Replaces the file at `path` with `list`, whole (written aside, then renamed over).
async fn write_store(path: &Path, list: Vec<EventType>) -> Result<(), EventTypeStoreError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let write_err = |source| EventTypeStoreError::Write {
            path: path.clone(),
            source,
        };
        let text = serde_json::to_string_pretty(&list).expect("EventTypes serialize");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(write_err)?;
        }
        let aside = path.with_extension("json.tmp");
        std::fs::write(&aside, text).map_err(write_err)?;
        std::fs::rename(&aside, &path).map_err(write_err)
    })
    .await
    .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}
