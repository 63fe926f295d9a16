//! The retry policy of a DeliverySpec: how many retries, how long to wait before each, and
//! how long one attempt may take.

use herald_core::{BackoffPolicy, DeliverySpec};
use std::time::Duration;

/// Longest wait a subscriber's Retry-After can impose when `retryAfterMax` is not set, so a
/// misbehaving subscriber cannot park an event for days.
pub const RETRY_AFTER_CEILING: Duration = Duration::from_secs(3600);

#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retry: u32,
    pub backoff_policy: BackoffPolicy,
    pub backoff_delay: Duration,
    /// Per-attempt timeout.
    pub timeout: Duration,
    pub retry_after_max: Option<Duration>,
}

impl RetryPolicy {
    /// The policy a DeliverySpec describes; fields it leaves unset take Knative's meaning
    /// (no retries, exponential backoff) and the server's default timeout.
    pub fn from_spec(spec: &DeliverySpec, default_timeout: Duration) -> Self {
        Self {
            retry: spec.retry.unwrap_or(0).max(0) as u32,
            backoff_policy: spec.backoff_policy.unwrap_or_default(),
            backoff_delay: spec
                .backoff_delay
                .as_ref()
                .map(|d| d.as_duration())
                .unwrap_or(Duration::from_millis(200)),
            timeout: spec
                .timeout
                .as_ref()
                .map(|d| d.as_duration())
                .unwrap_or(default_timeout),
            retry_after_max: spec.retry_after_max.as_ref().map(|d| d.as_duration()),
        }
    }

    /// Wait before retry number `retry` (1-based): linear waits `delay * n`, exponential
    /// `delay * 2^(n-1)`, so the first retry waits `backoffDelay` under both.
    pub fn backoff(&self, retry: u32) -> Duration {
        let n = retry.max(1);
        match self.backoff_policy {
            BackoffPolicy::Linear => self.backoff_delay.saturating_mul(n),
            BackoffPolicy::Exponential => self
                .backoff_delay
                .saturating_mul(2u32.saturating_pow((n - 1).min(31))),
        }
    }

    /// Wait before retry `retry`, honouring a Retry-After (429/503) up to `retryAfterMax`:
    /// the longer of the backoff and the capped Retry-After.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self.backoff(retry);
        match retry_after {
            Some(ra) => {
                let cap = self.retry_after_max.unwrap_or(RETRY_AFTER_CEILING);
                backoff.max(ra.min(cap))
            }
            None => backoff,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(p: BackoffPolicy) -> RetryPolicy {
        RetryPolicy {
            retry: 5,
            backoff_policy: p,
            backoff_delay: Duration::from_millis(100),
            timeout: Duration::from_secs(1),
            retry_after_max: Some(Duration::from_secs(2)),
        }
    }

    #[test]
    fn linear_and_exponential_backoff() {
        let ms = |p: &RetryPolicy, n| p.backoff(n).as_millis();
        let lin = policy(BackoffPolicy::Linear);
        assert_eq!([1, 2, 3].map(|n| ms(&lin, n)), [100, 200, 300]);
        let exp = policy(BackoffPolicy::Exponential);
        assert_eq!([1, 2, 3, 4].map(|n| ms(&exp, n)), [100, 200, 400, 800]);
        // Huge retry counts saturate instead of overflowing.
        assert!(exp.backoff(1000) >= Duration::from_secs(1000));
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let p = policy(BackoffPolicy::Linear);
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(60))),
            Duration::from_secs(2)
        );
        // A Retry-After shorter than the backoff does not shorten it.
        assert_eq!(
            p.delay(3, Some(Duration::from_millis(10))),
            Duration::from_millis(300)
        );
    }

    #[test]
    fn unset_fields_take_knative_defaults() {
        let p = RetryPolicy::from_spec(&DeliverySpec::default(), Duration::from_secs(7));
        assert_eq!(p.retry, 0);
        assert_eq!(p.backoff_policy, BackoffPolicy::Exponential);
        assert_eq!(p.timeout, Duration::from_secs(7));
    }
}
