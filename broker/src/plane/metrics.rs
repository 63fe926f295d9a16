//! The gauges of the data plane, set when `/metrics` is scraped: lag and parked events per
//! route, backend reachability and the durable store's size. Counters are updated where
//! events pass (ingress, the dispatcher); these are states, read from their owners on demand.

use super::DataPlane;
use herald_channels::BackendKind;
use herald_core::metrics::{BackendLabels, Metrics, RouteLabels};
use std::path::Path;
use std::sync::Arc;

impl DataPlane {
    /// The registry every part of this server records into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Sets every gauge from the current state; the series of routes and backends that are
    /// gone disappear.
    pub async fn refresh_metrics(&self) {
        let herald = &self.metrics.herald;
        let (routes, backends) = {
            let state = self.state.lock().await;
            let routes: Vec<_> = state
                .consumers
                .iter()
                .map(|(id, r)| {
                    let lot = state.logs.get(&r.log).map(|l| l.parking.clone());
                    let labels = RouteLabels {
                        kind: id.kind.to_string(),
                        namespace_name: id.key.namespace.clone(),
                        name: id.key.name.clone(),
                    };
                    (labels, r.channel.clone(), r.subscription.clone(), lot)
                })
                .collect();
            (routes, state.backends.health().await)
        };
        herald.channel_lag.clear();
        herald.parked_events.clear();
        for (labels, channel, subscription, lot) in routes {
            if let Some(lag) = channel.lag(&subscription).await {
                herald.channel_lag.get_or_create(&labels).set(gauge(lag));
            }
            if let Some(Ok(parked)) = match lot {
                Some(lot) => Some(lot.list(&subscription).await),
                None => None,
            } {
                let n = gauge(parked.len() as u64);
                herald.parked_events.get_or_create(&labels).set(n);
            }
        }
        herald.backend_up.clear();
        herald.store_size_bytes.clear();
        for b in backends {
            let labels = BackendLabels {
                backend: b.kind.to_string(),
            };
            herald
                .backend_up
                .get_or_create(&labels)
                .set(i64::from(b.up));
            if b.kind == BackendKind::Sled {
                let dir = self.config.channels.sled.data_dir.clone();
                let size = tokio::task::spawn_blocking(move || dir_size(&dir))
                    .await
                    .unwrap_or(0);
                herald
                    .store_size_bytes
                    .get_or_create(&labels)
                    .set(gauge(size));
            }
        }
    }
}

fn gauge(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Bytes of every file under `dir` (what the store occupies on disk).
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}
