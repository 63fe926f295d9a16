//! Keeps one source running: builds it from its resource, runs it until shutdown, and after
//! an error builds and starts it again with a doubling backoff, reporting each failure as
//! its `Deployed` condition.

use crate::backoff::RestartBackoff;
use crate::{Sink, SourceContext, SourceEnv};
use herald_core::{Check, Resource};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// First and longest wait before a failed source is started again.
const RESTART_BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(30));

/// Runs `resource`'s source until `stop`, building it again after each error.
pub async fn supervise(
    resource: Resource,
    env: Arc<SourceEnv>,
    sink: Sink,
    stop: CancellationToken,
    health: watch::Sender<Check>,
) {
    let (kind, key) = (resource.kind(), resource.key());
    let mut backoff = RestartBackoff::new(RESTART_BACKOFF.0, RESTART_BACKOFF.1);
    let restarts = env.metrics.of(kind, &key).restarts;
    loop {
        let started = std::time::Instant::now();
        let source = match crate::build(&resource) {
            Some(Ok(s)) => s,
            Some(Err(e)) => {
                health.send_replace(Check::failed("InvalidSpec", e.to_string()));
                return;
            }
            None => return,
        };
        let ctx = SourceContext {
            kind,
            key: key.clone(),
            sink: sink.clone(),
            shutdown: stop.clone(),
            health: health.clone(),
            env: env.clone(),
        };
        let wait = match source.run(ctx).await {
            Ok(()) => return,
            Err(e) => {
                let wait = backoff.after_run(started.elapsed());
                tracing::warn!(%kind, %key, error = %e, ?wait, "source failed; starting it again");
                health.send_replace(Check::failed("SourceFailed", e.to_string()));
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
        restarts.inc();
    }
}
