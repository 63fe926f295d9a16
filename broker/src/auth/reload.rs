//! Reloads the token file and the JWKS when they change, without a restart. A file that
//! no longer reads or parses keeps the last good one in force, and the log says why.

use super::IngressAuth;
use notify_debouncer_mini::{new_debouncer, DebounceEventResult};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Which file changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Changed {
    Tokens,
    Jwks,
}

/// Watches the files of `auth` until `stop`; `None` when it has none.
pub fn spawn(
    auth: Arc<IngressAuth>,
    debounce: Duration,
    stop: CancellationToken,
) -> Result<Option<JoinHandle<()>>, notify::Error> {
    let files: Vec<(PathBuf, Changed)> = [
        (auth.config().tokens_file.clone(), Changed::Tokens),
        (auth.config().jwks_file.clone(), Changed::Jwks),
    ]
    .into_iter()
    .filter_map(|(p, c)| p.map(|p| (absolute(&p), c)))
    .collect();
    if files.is_empty() {
        return Ok(None);
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Changed>();
    let watched = files.clone();
    let mut debouncer = new_debouncer(debounce, move |result: DebounceEventResult| match result {
        Ok(events) => {
            for (path, changed) in &watched {
                if events.iter().any(|e| &absolute(&e.path) == path) {
                    let _ = tx.send(*changed);
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "ingress credentials watch error"),
    })?;
    // Each file through its directory: editors and `mv` replace files rather than write them.
    for (path, _) in &files {
        let dir = path.parent().unwrap_or(Path::new("/"));
        debouncer
            .watcher()
            .watch(dir, notify::RecursiveMode::NonRecursive)?;
    }
    Ok(Some(tokio::spawn(async move {
        let _debouncer = debouncer;
        loop {
            tokio::select! {
                changed = rx.recv() => {
                    let Some(changed) = changed else { return };
                    reload(&auth, changed);
                }
                _ = stop.cancelled() => return,
            }
        }
    })))
}

fn reload(auth: &IngressAuth, changed: Changed) {
    let (what, result) = match changed {
        Changed::Tokens => ("ingress tokens", auth.reload_tokens()),
        Changed::Jwks => ("JWKS", auth.reload_jwks()),
    };
    match result {
        Ok(n) => tracing::info!(entries = n, "{what} reloaded"),
        Err(e) => tracing::error!("{what} not reloaded; the last good ones stay in force: {e}"),
    }
}

/// Event paths are absolute; so must ours be to compare them.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}
