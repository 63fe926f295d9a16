//! Leader election over a coordination.k8s.io Lease (kube-lease-manager): the work runs while
//! this replica holds the Lease and stops when it loses it; a replica that stops releases it,
//! and one that dies is replaced once its Lease expires.

use super::ControllerConfig;
use kube_lease_manager::{LeaseManagerBuilder, LeaseManagerError};
use std::future::Future;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Runs `work` (given a token cancelled when leadership ends) whenever this replica leads,
/// until `stop`.
pub async fn run_while_leader<F, Fut>(
    client: kube::Client,
    config: &ControllerConfig,
    stop: CancellationToken,
    work: F,
) -> Result<(), LeaseManagerError>
where
    F: Fn(CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let manager = LeaseManagerBuilder::new(client, &config.lease_name)
        .with_namespace(&config.lease_namespace)
        .with_identity(&config.identity)
        .with_duration(config.lease_duration.as_secs().max(1))
        .with_grace(config.lease_grace.as_secs().max(1))
        .build()
        .await?;
    let mut leading: Option<(CancellationToken, tokio::task::JoinHandle<()>)> = None;
    let step_down = |leading: &mut Option<(CancellationToken, tokio::task::JoinHandle<()>)>| {
        let current = leading.take();
        async move {
            if let Some((token, task)) = current {
                token.cancel();
                let _ = task.await;
            }
        }
    };
    loop {
        tokio::select! {
            // `changed` also renews the Lease while this replica holds it: keep polling it.
            changed = manager.changed() => match changed {
                Ok(true) => {
                    tracing::info!(identity = %config.identity, lease = %config.lease_name, "leading");
                    let token = stop.child_token();
                    leading = Some((token.clone(), tokio::spawn(work(token))));
                }
                Ok(false) => {
                    tracing::info!(identity = %config.identity, "lost the lease; standing by");
                    step_down(&mut leading).await;
                }
                Err(e) => {
                    // Renewal cannot be proven: stop leading rather than risk two leaders.
                    tracing::warn!(error = %e, "leader election failed; retrying");
                    step_down(&mut leading).await;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = stop.cancelled() => {}
                    }
                }
            },
            _ = stop.cancelled() => {
                step_down(&mut leading).await;
                return manager.release().await;
            }
        }
    }
}
