//! The gauges of the data plane, set when `/metrics` is scraped: lag and parked events per
//! route, backend reachability and the durable store's size; and one route's counters for
//! the admin API ([`RouteCounters`]). Counters are updated where
//! events pass (ingress, the dispatcher); these are states, read from their owners on demand.

use super::DataPlane;
use futures::StreamExt;
use herald_channels::BackendKind;
use herald_core::metrics::{BackendLabels, Counter, Metrics, RouteLabels};
use herald_dispatcher::RouteId;
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
        // NATS and Kafka answer lag with a round trip each: a few at a time, not one by one.
        // Collected first: a stream mapping with a closure over `dyn Channel` trips rustc's
        // Send check of the scrape handler's future.
        let reads: Vec<futures::future::BoxFuture<'static, Option<u64>>> = routes
            .iter()
            .map(|(_, channel, subscription, _)| {
                let (channel, subscription) = (channel.clone(), subscription.clone());
                Box::pin(async move { channel.lag(&subscription).await }) as _
            })
            .collect();
        let lags: Vec<Option<u64>> = futures::stream::iter(reads)
            .buffered(LAG_READS_AT_ONCE)
            .collect()
            .await;
        herald.channel_lag.clear();
        herald.parked_events.clear();
        for ((labels, _, subscription, lot), lag) in routes.into_iter().zip(lags) {
            if let Some(lag) = lag {
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

/// Lag requests in flight at once during a scrape.
const LAG_READS_AT_ONCE: usize = 16;

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

/// One route's traffic as the admin API shows it (`herald describe`, `herald replay`'s
/// progress): its counters and its lag now.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteCounters {
    /// `Trigger` or `Subscription`.
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// Events its subscriber took.
    pub delivered: u64,
    /// Delivery attempts after the first.
    pub retried: u64,
    /// Events that reached its dead-letter sink.
    pub dead_lettered: u64,
    /// Events parked for `herald dlq` now.
    pub parked: u64,
    /// Events in its channel it has not committed; `None` where the backend cannot tell.
    pub lag: Option<u64>,
}

impl DataPlane {
    /// Events route `id` has settled so far by delivering or dead-lettering them (0 for one
    /// that never did): what a replay's count adds to the lag it reads after its seek.
    pub fn route_settled(&self, id: &RouteId) -> u64 {
        let labels = RouteLabels {
            kind: id.kind.to_string(),
            namespace_name: id.key.namespace.clone(),
            name: id.key.name.clone(),
        };
        let herald = &self.metrics.herald;
        [&herald.delivered, &herald.dead_letters]
            .iter()
            .map(|f| f.get(&labels).map_or(0, |c| c.get()))
            .sum()
    }

    /// The counters of the running route `id`; `None` when it does not run here.
    pub async fn route_counters(&self, id: &RouteId) -> Option<RouteCounters> {
        let (channel, subscription, lot) = {
            let state = self.state.lock().await;
            let r = state.consumers.get(id)?;
            let lot = state.logs.get(&r.log).map(|l| l.parking.clone());
            (r.channel.clone(), r.subscription.clone(), lot)
        };
        let labels = RouteLabels {
            kind: id.kind.to_string(),
            namespace_name: id.key.namespace.clone(),
            name: id.key.name.clone(),
        };
        let herald = &self.metrics.herald;
        // `get`, not `get_or_create`: reading must not add empty series to `/metrics`.
        let count = |f: &herald_core::metrics::LabelledFamily<RouteLabels, Counter>| {
            f.get(&labels).map_or(0, |c| c.get())
        };
        let parked = match lot {
            Some(lot) => lot.list(&subscription).await.map_or(0, |l| l.len() as u64),
            None => 0,
        };
        Some(RouteCounters {
            kind: id.kind.to_string(),
            namespace: id.key.namespace.clone(),
            name: id.key.name.clone(),
            delivered: count(&herald.delivered),
            retried: count(&herald.retries),
            dead_lettered: count(&herald.dead_letters),
            parked,
            lag: channel.lag(&subscription).await,
        })
    }
}
