//! The writer thread: the only place offsets are assigned and events appended. It drains the
//! publish requests waiting at that moment (a group), writes each broker's share with one
//! write to its active segment, makes it durable per the sync policy with one `fdatasync`, and
//! only then answers the publishers and wakes the readers, so no reader ever sees an event
//! that could still be lost.

use super::log::AppendError;
use super::state::ChannelShared;
use super::SyncPolicy;
use crate::ChannelError;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

pub(crate) enum WriterMessage {
    Append(AppendRequest),
    /// Finish what is queued, then stop.
    Stop,
}

/// One `publish` call: all of its events land together or not at all.
pub(crate) struct AppendRequest {
    pub(crate) channel: Arc<ChannelShared>,
    /// Record payloads (see `codec`).
    pub(crate) values: Vec<Vec<u8>>,
    /// The same events decoded, each with its size in the log, for the channel's tail.
    pub(crate) events: Vec<(Arc<crate::WireEvent>, u64)>,
    /// Number of events (kept apart from `values`, which the writer moves into its batch).
    pub(crate) count: u64,
    pub(crate) bytes: u64,
    pub(crate) reply: oneshot::Sender<Result<Range<u64>, ChannelError>>,
}

#[derive(Default)]
pub(crate) struct WriterCounters {
    pub(crate) requests: AtomicU64,
    pub(crate) events: AtomicU64,
    pub(crate) groups: AtomicU64,
    pub(crate) flushes: AtomicU64,
}

pub(crate) fn run(sync: SyncPolicy, counters: Arc<WriterCounters>, queue: Receiver<WriterMessage>) {
    // Under a sync interval: brokers written since their last fdatasync, and when that was.
    let mut unsynced: Vec<Arc<ChannelShared>> = Vec::new();
    let mut last_sync = Instant::now();
    loop {
        let mut group = Vec::new();
        let mut stopping = false;
        let first = match sync {
            SyncPolicy::Interval(every) if !unsynced.is_empty() => {
                queue.recv_timeout(every.saturating_sub(last_sync.elapsed()))
            }
            _ => queue.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match first {
            Ok(WriterMessage::Append(request)) => group.push(request),
            Ok(WriterMessage::Stop) | Err(RecvTimeoutError::Disconnected) => stopping = true,
            Err(RecvTimeoutError::Timeout) => {}
        }
        // PerEvent syncs each request on its own; the others share one sync per group.
        while !group.is_empty() && sync != SyncPolicy::PerEvent && !stopping {
            match queue.try_recv() {
                Ok(WriterMessage::Append(request)) => group.push(request),
                Ok(WriterMessage::Stop) => stopping = true,
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        if stopping {
            // Publishers already queued were promised an answer: write them before stopping.
            while let Ok(message) = queue.try_recv() {
                if let WriterMessage::Append(request) = message {
                    group.push(request);
                }
            }
        }
        if !group.is_empty() {
            for channel in commit(sync, &counters, group) {
                if !unsynced.iter().any(|c| Arc::ptr_eq(c, &channel)) {
                    unsynced.push(channel);
                }
            }
        }
        if let SyncPolicy::Interval(every) = sync {
            if stopping || last_sync.elapsed() >= every {
                for channel in unsynced.drain(..) {
                    if let Err(e) = channel.log.sync() {
                        tracing::warn!(broker = %channel.name, error = %e, "periodic fdatasync failed");
                    }
                }
                last_sync = Instant::now();
            }
        }
        if stopping {
            return;
        }
    }
}

/// Requests of one broker within a group, with the offsets they were given.
struct BrokerBatch {
    channel: Arc<ChannelShared>,
    requests: Vec<AppendRequest>,
    start: u64,
    end: u64,
    bytes: u64,
    append_ms: u64,
}

/// Writes one group; returns the brokers written (for a sync interval to sync later).
fn commit(
    sync: SyncPolicy,
    counters: &WriterCounters,
    group: Vec<AppendRequest>,
) -> Vec<Arc<ChannelShared>> {
    counters.groups.fetch_add(1, Ordering::Relaxed);
    let mut brokers: Vec<BrokerBatch> = Vec::new();
    for request in group {
        counters.requests.fetch_add(1, Ordering::Relaxed);
        match brokers
            .iter_mut()
            .find(|b| Arc::ptr_eq(&b.channel, &request.channel))
        {
            Some(b) => b.requests.push(request),
            None => brokers.push(BrokerBatch {
                channel: request.channel.clone(),
                requests: vec![request],
                start: 0,
                end: 0,
                bytes: 0,
                append_ms: 0,
            }),
        }
    }
    let durable = !matches!(sync, SyncPolicy::Interval(_));
    let mut written = Vec::new();
    for mut broker in brokers {
        if durable {
            counters.flushes.fetch_add(1, Ordering::Relaxed);
        }
        match append(&mut broker, durable) {
            Ok(()) => written.push(broker),
            Err(e) => fail(broker, &e),
        }
    }
    let mut channels = Vec::with_capacity(written.len());
    for mut broker in written {
        let n = broker.end - broker.start;
        counters.events.fetch_add(n, Ordering::Relaxed);
        {
            let events = broker
                .requests
                .iter_mut()
                .flat_map(|r| std::mem::take(&mut r.events));
            let mut state = broker.channel.lock();
            state.tail.extend(broker.start, events);
            state.head = broker.end;
            state.last_append_ms = broker.append_ms;
            state.retained_bytes += broker.bytes;
            state.pending_events = state.pending_events.saturating_sub(n);
            state.pending_bytes = state.pending_bytes.saturating_sub(broker.bytes);
        }
        broker.channel.changed.notify_waiters();
        let mut next = broker.start;
        for request in broker.requests {
            let end = next + request.count;
            // A publisher that gave up waiting is no reason to undo a durable append.
            let _ = request.reply.send(Ok(next..end));
            next = end;
        }
        channels.push(broker.channel);
    }
    channels
}

/// Assigns offsets to one broker's requests and appends them with one write (and, if
/// `durable`, one fdatasync).
fn append(broker: &mut BrokerBatch, durable: bool) -> Result<(), AppendError> {
    let (head, last_ms) = {
        let state = broker.channel.lock();
        (state.head, state.last_append_ms)
    };
    // Monotonic append times per broker, so seeking by time can bisect the log.
    let append_ms = super::now_ms().max(last_ms);
    let mut values = Vec::new();
    for request in &mut broker.requests {
        values.append(&mut request.values);
    }
    let bytes = broker
        .channel
        .log
        .append(head, append_ms, &values, durable)?;
    broker.start = head;
    broker.end = head + values.len() as u64;
    broker.bytes = bytes;
    broker.append_ms = append_ms;
    Ok(())
}

fn fail(broker: BrokerBatch, error: &AppendError) {
    let detail = if error.is_disk_full() {
        "the disk is full; events are accepted again as soon as space is freed"
    } else {
        "write failed"
    };
    tracing::warn!(broker = %broker.channel.name, error = %error, "{detail}");
    for request in broker.requests {
        broker.channel.release(request.count, request.bytes);
        let message = match error {
            AppendError::Deleted => broker.channel.backend("the channel was deleted"),
            AppendError::Io { what, path, source } => broker
                .channel
                .unavailable(format!("{detail} ({what} {path})"))
                .caused_by(std::io::Error::new(source.kind(), source.to_string())),
        };
        let _ = request.reply.send(Err(message));
    }
}
