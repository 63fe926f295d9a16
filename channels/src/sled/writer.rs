//! The writer thread: the only place offsets are assigned and events appended. It drains the
//! publish requests waiting at that moment, writes them as one batch per broker, makes them
//! durable per the sync policy with one flush, and only then answers the publishers and wakes
//! the readers, so no reader ever sees an event that could still be lost.

use super::record;
use super::state::ChannelShared;
use super::SyncPolicy;
use crate::ChannelError;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use tokio::sync::oneshot;

pub(crate) enum WriterMessage {
    Append(AppendRequest),
    /// Finish what is queued, then stop.
    Stop,
}

/// One `publish` call: all of its events land together or not at all.
pub(crate) struct AppendRequest {
    pub(crate) channel: Arc<ChannelShared>,
    /// Encoded values with room for the header.
    pub(crate) values: Vec<Vec<u8>>,
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

pub(crate) fn run(
    db: ::sled::Db,
    sync: SyncPolicy,
    counters: Arc<WriterCounters>,
    queue: Receiver<WriterMessage>,
) {
    loop {
        let mut group = Vec::new();
        let mut stopping = false;
        match queue.recv() {
            Ok(WriterMessage::Append(request)) => group.push(request),
            Ok(WriterMessage::Stop) | Err(_) => stopping = true,
        }
        // PerEvent flushes each request on its own; the others share one flush per group.
        while (group.is_empty() || sync != SyncPolicy::PerEvent) && !stopping {
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
            commit(&db, sync, &counters, group);
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

fn commit(db: &::sled::Db, sync: SyncPolicy, counters: &WriterCounters, group: Vec<AppendRequest>) {
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

    let mut written = Vec::new();
    for mut broker in brokers {
        match append(&mut broker) {
            Ok(()) => written.push(broker),
            Err(e) => fail(broker, &e),
        }
    }
    if written.is_empty() {
        return;
    }
    if !matches!(sync, SyncPolicy::Interval(_)) {
        counters.flushes.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = db.flush() {
            for broker in written {
                // Not durable, so not published: take the entries back out (best effort), so
                // the offsets are reused instead of surfacing events publishers saw fail.
                let mut undo = ::sled::Batch::default();
                for offset in broker.start..broker.end {
                    undo.remove(&record::offset_key(offset));
                }
                let _ = broker.channel.log.apply_batch(undo);
                fail(broker, &e);
            }
            return;
        }
    }
    for broker in written {
        let n = broker.end - broker.start;
        counters.events.fetch_add(n, Ordering::Relaxed);
        {
            let mut state = broker.channel.lock();
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
    }
}

/// Assigns offsets to one broker's requests and writes them in one atomic sled batch.
fn append(broker: &mut BrokerBatch) -> Result<(), ::sled::Error> {
    let (head, last_ms) = {
        let state = broker.channel.lock();
        (state.head, state.last_append_ms)
    };
    // Monotonic append times per broker, so seeking by time can bisect the log.
    let append_ms = record::now_ms().max(last_ms);
    let mut batch = ::sled::Batch::default();
    let mut offset = head;
    let mut bytes = 0;
    for request in &mut broker.requests {
        for mut value in std::mem::take(&mut request.values) {
            record::set_header(&mut value, append_ms);
            bytes += record::entry_bytes(value.len());
            batch.insert(&record::offset_key(offset), value);
            offset += 1;
        }
    }
    broker.start = head;
    broker.end = offset;
    broker.bytes = bytes;
    broker.append_ms = append_ms;
    broker.channel.log.apply_batch(batch)
}

fn fail(broker: BrokerBatch, error: &::sled::Error) {
    for request in broker.requests {
        broker.channel.release(request.count, request.bytes);
        let _ = request.reply.send(Err(broker
            .channel
            .unavailable("write failed")
            .caused_by(error.clone())));
    }
}
