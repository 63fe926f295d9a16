//! Expiry of parked events: an entry parked longer ago than its retention (the Trigger's
//! `herald.dev/dlq-retention`, else the server's `--dlq-retention`) is removed, counted in
//! `herald_parked_expired_total` per route, and each sweep that removed any logs one summary
//! line rather than a line per event.

use super::DataPlane;
use herald_channels::ParkingLot;
use herald_core::metrics::{Counter, LabelledFamily, RouteLabels};
use herald_core::Kind;
use herald_dispatcher::route::dlq_retention;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The counter of expired entries, registered once per server.
pub type ExpiredCounter = LabelledFamily<RouteLabels, Counter>;

/// One route's lot to sweep, with its retention.
struct Sweep {
    labels: RouteLabels,
    route: String,
    lot: Arc<dyn ParkingLot>,
    subscription: String,
    retention: Duration,
}

impl DataPlane {
    /// Registers `herald_parked_expired_total` and sweeps until `stop`: often enough that an
    /// entry outlives its retention by a tenth of it at most (of the shortest retention in
    /// use, a Trigger's included; every second at most, every minute at least).
    pub async fn expire_parked_until(
        self: Arc<Self>,
        retention: Duration,
        stop: CancellationToken,
    ) {
        let expired = ExpiredCounter::default();
        self.metrics.register(
            "parked_expired",
            "Parked events removed because they outlived their retention",
            expired.clone(),
        );
        let mut last_sweep: Option<tokio::time::Instant> = None;
        // Looked at every second, swept when due: a Trigger newly annotated with a short
        // retention is honoured within seconds, not after the previous interval.
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.cancelled() => return,
            }
            let shortest = self.shortest_retention(retention).await;
            let every = (shortest / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
            if last_sweep.is_some_and(|at| at.elapsed() < every) {
                continue;
            }
            last_sweep = Some(tokio::time::Instant::now());
            self.expire_parked(retention, &expired).await;
        }
    }

    /// The shortest retention of any running route (`retention` where none says).
    async fn shortest_retention(&self, retention: Duration) -> Duration {
        let state = self.state.lock().await;
        state
            .consumers
            .keys()
            .filter(|id| id.kind == Kind::Trigger.name())
            .filter_map(|id| state.triggers.get(&id.key))
            .filter_map(|t| dlq_retention(&t.resource).ok().flatten())
            .fold(retention, Duration::min)
    }

    /// Removes the entries older than their retention; returns how many.
    pub async fn expire_parked(&self, retention: Duration, expired: &ExpiredCounter) -> usize {
        let sweeps: Vec<Sweep> = {
            let state = self.state.lock().await;
            state
                .consumers
                .iter()
                .filter_map(|(id, r)| {
                    let lot = state.logs.get(&r.log)?.parking.clone();
                    // A Trigger's annotation was checked on apply; a Subscription has none.
                    let own = if id.kind == Kind::Trigger.name() {
                        state
                            .triggers
                            .get(&id.key)
                            .and_then(|t| dlq_retention(&t.resource).ok().flatten())
                    } else {
                        None
                    };
                    Some(Sweep {
                        labels: RouteLabels {
                            kind: id.kind.to_string(),
                            namespace_name: id.key.namespace.clone(),
                            name: id.key.name.clone(),
                        },
                        route: format!("{} {}", id.kind, id.key),
                        lot,
                        subscription: r.subscription.clone(),
                        retention: own.unwrap_or(retention),
                    })
                })
                .collect()
        };
        let now = chrono::Utc::now();
        let mut total = 0;
        let mut summary = Vec::new();
        for s in sweeps {
            let entries = match s.lot.list(&s.subscription).await {
                Ok(entries) => entries,
                Err(e) => {
                    tracing::warn!(route = %s.route, error = %e, "parked events not swept");
                    continue;
                }
            };
            let mut removed = 0;
            for entry in entries {
                // An unreadable time is kept: expiring it could lose an event early.
                let Ok(at) = chrono::DateTime::parse_from_rfc3339(&entry.parked_at) else {
                    continue;
                };
                let age = (now - at.with_timezone(&chrono::Utc))
                    .to_std()
                    .unwrap_or_default();
                if age <= s.retention {
                    continue;
                }
                match s.lot.remove(&s.subscription, entry.id).await {
                    Ok(true) => removed += 1,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::warn!(route = %s.route, parked = entry.id, error = %e, "expired parked event not removed");
                    }
                }
            }
            if removed > 0 {
                expired.get_or_create(&s.labels).inc_by(removed as u64);
                summary.push(format!(
                    "{}: {removed} (older than {:?})",
                    s.route, s.retention
                ));
                total += removed;
            }
        }
        if total > 0 {
            tracing::info!(
                expired = total,
                "parked events expired past their retention: {}",
                summary.join(", ")
            );
        }
        total
    }
}
