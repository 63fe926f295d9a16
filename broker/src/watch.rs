//! Watches the config file or directory of `herald serve --config` and applies every change
//! to the data plane (debounced, so an editor's save or a `cp -r` is one apply). A change
//! that does not load is reported and changes nothing: the running resources stay.

use crate::plane::{DataPlane, Owner};
use notify_debouncer_mini::{new_debouncer, DebounceEventResult};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct ConfigWatcher {
    task: JoinHandle<()>,
}

impl ConfigWatcher {
    pub fn spawn(
        path: &Path,
        debounce: Duration,
        plane: Arc<DataPlane>,
        stop: CancellationToken,
    ) -> Result<Self, notify::Error> {
        let (tx, mut rx) = mpsc::unbounded_channel::<()>();
        let mut debouncer = new_debouncer(debounce, move |result: DebounceEventResult| {
            match result {
                // Only YAML files count: a data directory inside the config directory
                // must not trigger a reload on every write.
                Ok(events) if events.iter().any(|e| is_config_file(&e.path)) => {
                    let _ = tx.send(());
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "config watch error"),
            }
        })?;
        // A directory is watched whole (files added later count); a file through its
        // directory, since editors replace files rather than write them in place.
        let watched = if path.is_dir() {
            path.to_path_buf()
        } else {
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."))
        };
        debouncer
            .watcher()
            .watch(&watched, notify::RecursiveMode::Recursive)?;
        let path = path.to_path_buf();
        let task = tokio::spawn(async move {
            // Owned by the task: dropping the debouncer stops the watch.
            let _debouncer = debouncer;
            loop {
                tokio::select! {
                    changed = rx.recv() => {
                        if changed.is_none() { return; }
                        // Coalesce whatever else arrived meanwhile into this one apply.
                        while rx.try_recv().is_ok() {}
                        reload(&path, &plane).await;
                    }
                    _ = stop.cancelled() => return,
                }
            }
        });
        tracing::info!(path = %watched.display(), "watching the configuration");
        Ok(Self { task })
    }

    pub async fn stop(self) {
        let _ = self.task.await;
    }
}

fn is_config_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml") | Some("yml")
    )
}

async fn reload(path: &Path, plane: &DataPlane) {
    let loaded = {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || herald_core::load_path(&path)).await
    };
    let set = match loaded {
        Ok(Ok(set)) => set,
        Ok(Err(e)) => {
            tracing::error!(
                "configuration change not applied; the running resources stay as they were: {e}"
            );
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "configuration reload failed");
            return;
        }
    };
    match plane.apply_set(&set, Owner::Files).await {
        Ok(changes) => {
            for (kind, key, how) in &changes {
                tracing::info!(%kind, %key, "{how}");
            }
            tracing::info!(changes = changes.len(), "configuration applied");
        }
        Err(e) => tracing::error!(
            "configuration change not applied; the running resources stay as they were: {e}"
        ),
    }
}
