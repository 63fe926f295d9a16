//! Admission by backlog for the channels whose backlog lives in another server (NATS, Kafka):
//! a slow Trigger must turn overload into `Full` (429 with Retry-After) instead of a stream or
//! topic that grows without bound while every publisher is told 202.
//!
//! The backlog is the slowest subscription's lag, read from the server (so it counts every
//! replica's publishes and acknowledgements) by a task at a fixed interval; `publish` only reads
//! the last figure, so admission costs nothing on the hot path and can overshoot the limit by
//! at most what is accepted in one interval.

use crate::ChannelError;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The last lag read for one channel, and the limit publishes are held to.
pub struct BacklogGate {
    channel: String,
    limit: u64,
    retry_after: Duration,
    lag: AtomicU64,
}

impl BacklogGate {
    /// A gate for `channel`; `limit` 0 turns admission by backlog off.
    pub fn new(channel: impl Into<String>, limit: u64, retry_after: Duration) -> Arc<Self> {
        Arc::new(Self {
            channel: channel.into(),
            limit,
            retry_after,
            lag: AtomicU64::new(0),
        })
    }

    /// `Full` while the slowest subscription lags `limit` events or more.
    pub fn admit(&self) -> Result<(), ChannelError> {
        let lag = self.lag.load(Ordering::Relaxed);
        if self.limit > 0 && lag >= self.limit {
            return Err(ChannelError::full(
                self.channel.as_str(),
                format!(
                    "the slowest Trigger lags {lag} events (limit maxLagEvents {})",
                    self.limit
                ),
                self.retry_after,
            ));
        }
        Ok(())
    }

    /// The lag last read.
    pub fn lag(&self) -> u64 {
        self.lag.load(Ordering::Relaxed)
    }

    /// Reads the lag with `read` every `interval` until `closed` or until nothing but this
    /// task holds the gate. A failed read keeps the last figure: an unreachable server is the
    /// publish path's own 503 to report.
    pub fn watch<F, Fut, E>(
        self: &Arc<Self>,
        interval: Duration,
        closed: CancellationToken,
        read: F,
    ) where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<u64, E>> + Send,
        E: std::fmt::Display,
    {
        if self.limit == 0 {
            return;
        }
        let gate = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = closed.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if Arc::strong_count(&gate) == 1 {
                    return;
                }
                match read().await {
                    Ok(lag) => gate.lag.store(lag, Ordering::Relaxed),
                    Err(e) => tracing::debug!(
                        channel = %gate.channel, error = %e, "cannot read the backlog"
                    ),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_at_the_limit_and_admits_again_below_it() {
        let gate = BacklogGate::new("ns/b", 10, Duration::from_secs(2));
        let lag = Arc::new(AtomicU64::new(10));
        let closed = CancellationToken::new();
        let source = lag.clone();
        gate.watch(Duration::from_millis(10), closed.clone(), move || {
            let source = source.clone();
            async move { Ok::<_, String>(source.load(Ordering::Relaxed)) }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while gate.lag() != 10 {
            assert!(tokio::time::Instant::now() < deadline, "lag never read");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let err = gate.admit().unwrap_err();
        assert!(matches!(err, ChannelError::Full { .. }), "{err}");
        assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
        assert!(err.to_string().contains("lags 10 events"), "{err}");
        lag.store(3, Ordering::Relaxed);
        while gate.lag() != 3 {
            assert!(tokio::time::Instant::now() < deadline, "lag never re-read");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        gate.admit().unwrap();
        closed.cancel();
    }

    #[test]
    fn a_zero_limit_admits_everything() {
        let gate = BacklogGate::new("ns/b", 0, Duration::from_secs(1));
        gate.lag.store(u64::MAX, Ordering::Relaxed);
        gate.admit().unwrap();
    }
}
