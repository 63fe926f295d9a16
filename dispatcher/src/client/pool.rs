//! Kept-alive HTTP/1.1 connections, per origin (scheme and authority): checked out for one
//! request, put back once its response has been read whole. In place of hyper-util's pool,
//! whose bookkeeping per request (its key rebuilt and SipHashed byte by byte on checkout and
//! again on return, a checkout racing a lazy connect) cost more than the HTTP/1 exchange.

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use std::sync::{Arc, Mutex, MutexGuard, Once, Weak};
use std::time::{Duration, Instant};

/// The sending half of one connection; its connection runs in a task of its own and closes
/// when this is dropped.
pub(super) type Sender = SendRequest<Full<Bytes>>;

/// Origins with idle connections at most before a new one sweeps them (the targets of
/// routes are few; this bounds a map that once saw many).
const ORIGINS_KEPT: usize = 1024;

#[derive(Debug)]
pub(super) struct Pool {
    idle: Mutex<foldhash::HashMap<Arc<str>, Vec<Idle>>>,
    max_idle_per_origin: usize,
    idle_timeout: Duration,
    /// Starts the task that closes connections idle past the timeout, whichever origin.
    sweeper: Once,
}

#[derive(Debug)]
struct Idle {
    sender: Sender,
    since: Instant,
}

impl Idle {
    fn usable(&self, now: Instant, timeout: Duration) -> bool {
        !self.sender.is_closed() && now.saturating_duration_since(self.since) < timeout
    }
}

impl Pool {
    pub(super) fn new(max_idle_per_origin: usize, idle_timeout: Duration) -> Self {
        Self {
            idle: Mutex::default(),
            max_idle_per_origin,
            idle_timeout,
            sweeper: Once::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, foldhash::HashMap<Arc<str>, Vec<Idle>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection to `origin` idle the shortest that is still open and within the idle
    /// timeout; the ones found closed or expired on the way are dropped.
    pub(super) fn checkout(&self, origin: &str) -> Option<Sender> {
        self.checkout_at(origin, Instant::now())
    }

    fn checkout_at(&self, origin: &str, now: Instant) -> Option<Sender> {
        let mut idle = self.lock();
        let list = idle.get_mut(origin)?;
        while let Some(i) = list.pop() {
            if i.usable(now, self.idle_timeout) {
                return Some(i.sender);
            }
        }
        None
    }

    /// Keeps `sender` for the next request to `origin`, unless it closed or the origin has
    /// its fill of idle connections (then the one idle the longest goes). Expired ones at the
    /// old end go too; the rest expire in the sweeper, whose task the first kept connection
    /// starts (it ends with the pool).
    pub(super) fn put(self: &Arc<Self>, origin: &Arc<str>, sender: Sender) {
        if self.max_idle_per_origin == 0 || sender.is_closed() {
            return;
        }
        self.sweeper.call_once(|| self.start_sweeper());
        self.put_at(origin, sender, Instant::now());
    }

    fn put_at(&self, origin: &Arc<str>, sender: Sender, now: Instant) {
        let mut idle = self.lock();
        if idle.len() >= ORIGINS_KEPT && !idle.contains_key(origin) {
            self.sweep(&mut idle, now);
        }
        let list = match idle.get_mut(origin) {
            Some(list) => list,
            None => idle.entry(origin.clone()).or_default(),
        };
        let expired = list
            .iter()
            .take_while(|i| !i.usable(now, self.idle_timeout))
            .count();
        list.drain(..expired);
        if list.len() >= self.max_idle_per_origin {
            list.remove(0);
        }
        list.push(Idle { sender, since: now });
    }

    /// Drops every closed or expired connection, and the origins left without any.
    fn sweep(&self, idle: &mut foldhash::HashMap<Arc<str>, Vec<Idle>>, now: Instant) {
        idle.retain(|_, list| {
            list.retain(|i| i.usable(now, self.idle_timeout));
            !list.is_empty()
        });
    }

    fn start_sweeper(self: &Arc<Self>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pool: Weak<Self> = Arc::downgrade(self);
        let every = self.idle_timeout.max(Duration::from_millis(100));
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(pool) = pool.upgrade() else {
                    return;
                };
                let mut idle = pool.lock();
                pool.sweep(&mut idle, Instant::now());
            }
        });
    }

    #[cfg(test)]
    pub(super) fn idle(&self, origin: &str) -> usize {
        self.lock().get(origin).map_or(0, Vec::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An open connection's sender, its connection driven by a task (over an in-memory
    /// pipe whose other end `peers` keeps open).
    async fn sender(peers: &mut Vec<tokio::io::DuplexStream>) -> Sender {
        let (ours, theirs) = tokio::io::duplex(1024);
        peers.push(theirs);
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(ours))
                .await
                .unwrap();
        tokio::spawn(connection);
        sender.ready().await.unwrap();
        sender
    }

    #[tokio::test]
    async fn an_origin_keeps_its_cap_of_idle_connections_the_freshest_first() {
        let pool = Pool::new(2, Duration::from_secs(90));
        let origin: Arc<str> = "http://a".into();
        let mut peers = Vec::new();
        let now = Instant::now();
        for _ in 0..3 {
            pool.put_at(&origin, sender(&mut peers).await, now);
        }
        assert_eq!(pool.idle(&origin), 2);
        assert!(pool.checkout_at(&origin, now).is_some());
        assert!(pool.checkout_at(&origin, now).is_some());
        assert!(pool.checkout_at(&origin, now).is_none());
        assert!(pool.checkout_at("http://b", now).is_none());
    }

    #[tokio::test]
    async fn a_connection_idle_past_the_timeout_is_not_handed_out_and_the_sweep_drops_it() {
        let timeout = Duration::from_secs(90);
        let pool = Pool::new(4, timeout);
        let (a, b): (Arc<str>, Arc<str>) = ("http://a".into(), "http://b".into());
        let mut peers = Vec::new();
        let then = Instant::now();
        pool.put_at(&a, sender(&mut peers).await, then);
        pool.put_at(&b, sender(&mut peers).await, then);
        let later = then + timeout;
        assert!(pool.checkout_at(&a, later).is_none());
        assert_eq!(pool.idle(&b), 1);
        pool.sweep(&mut pool.lock(), later);
        assert_eq!(
            pool.lock().len(),
            0,
            "no origin is left with nothing to keep"
        );
    }

    #[tokio::test]
    async fn a_closed_connection_is_dropped_not_handed_out() {
        let pool = Pool::new(4, Duration::from_secs(90));
        let origin: Arc<str> = "http://a".into();
        let mut peers = Vec::new();
        let sender = sender(&mut peers).await;
        let now = Instant::now();
        pool.put_at(&origin, sender, now);
        // The peer hangs up; the connection task sees it and the sender reports closed.
        peers.clear();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while pool.lock()[&origin].iter().any(|i| !i.sender.is_closed()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never saw the close"
            );
            tokio::task::yield_now().await;
        }
        assert!(pool.checkout_at(&origin, now).is_none());
    }
}
