//! Time as sources see it: the system clock in production, a [`ManualClock`] that tests move
//! by hand, so schedules are tested without waiting for them.

use chrono::{DateTime, Utc};
use std::sync::Mutex;
use tokio::sync::watch;

#[async_trait::async_trait]
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
    /// Returns once `now() >= when`.
    async fn sleep_until(&self, when: DateTime<Utc>);
}

pub struct SystemClock;

#[async_trait::async_trait]
impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn sleep_until(&self, when: DateTime<Utc>) {
        // Re-checked after waking: a suspended machine or a stepped clock makes a single
        // monotonic sleep wrong.
        loop {
            let left = when - Utc::now();
            let Ok(left) = left.to_std() else { return };
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left.min(std::time::Duration::from_secs(60))).await;
        }
    }
}

/// A clock that stands still until [`ManualClock::set`] moves it.
pub struct ManualClock {
    now: watch::Sender<DateTime<Utc>>,
    /// How many tasks are sleeping on it, so a test can wait until a source is waiting.
    sleepers: Mutex<usize>,
    sleeping: watch::Sender<usize>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: watch::Sender::new(start),
            sleepers: Mutex::new(0),
            sleeping: watch::Sender::new(0),
        }
    }

    pub fn set(&self, when: DateTime<Utc>) {
        self.now.send_replace(when);
    }

    /// Waits until at least `n` tasks sleep on this clock.
    pub async fn sleepers(&self, n: usize) {
        let mut rx = self.sleeping.subscribe();
        let _ = rx.wait_for(|s| *s >= n).await;
    }

    fn count(&self, delta: isize) {
        let mut s = self.sleepers.lock().expect("not poisoned");
        *s = (*s as isize + delta).max(0) as usize;
        self.sleeping.send_replace(*s);
    }
}

#[async_trait::async_trait]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    async fn sleep_until(&self, when: DateTime<Utc>) {
        let mut rx = self.now.subscribe();
        self.count(1);
        struct Done<'a>(&'a ManualClock);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.count(-1);
            }
        }
        let _done = Done(self);
        let _ = rx.wait_for(|now| *now >= when).await;
    }
}
