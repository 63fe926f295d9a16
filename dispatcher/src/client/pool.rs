//! Kept-alive HTTP/1.1 connections, per origin (scheme and authority): checked out for one
//! request, put back once its response has been read whole. In place of hyper-util's pool,
//! whose bookkeeping per request (its key rebuilt and SipHashed byte by byte on checkout and
//! again on return, a checkout racing a lazy connect) cost more than the HTTP/1 exchange.

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The sending half of one connection; its connection runs in a task of its own and closes
/// when this is dropped.
pub(super) type Sender = SendRequest<Full<Bytes>>;

/// Origins with an entry at most before empty entries are dropped (the targets of routes are
/// few; this only bounds a map that once saw many).
const ORIGINS_KEPT: usize = 1024;

#[derive(Debug)]
pub(super) struct Pool {
    idle: Mutex<foldhash::HashMap<Arc<str>, Vec<Idle>>>,
    max_idle_per_origin: usize,
    idle_timeout: Duration,
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
        }
    }

    fn lock(&self) -> MutexGuard<'_, foldhash::HashMap<Arc<str>, Vec<Idle>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connection to `origin` idle the shortest that is still open and within the idle
    /// timeout; the ones found closed or expired on the way are dropped.
    pub(super) fn checkout(&self, origin: &str) -> Option<Sender> {
        let now = Instant::now();
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
    /// old end go too, so a connection nobody takes is not kept past the timeout by a busy
    /// origin's returns.
    pub(super) fn put(&self, origin: &Arc<str>, sender: Sender) {
        if self.max_idle_per_origin == 0 || sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.lock();
        if idle.len() >= ORIGINS_KEPT && !idle.contains_key(origin) {
            idle.retain(|_, list| !list.is_empty());
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

    #[cfg(test)]
    pub(super) fn idle(&self, origin: &str) -> usize {
        self.lock().get(origin).map_or(0, Vec::len)
    }
}
