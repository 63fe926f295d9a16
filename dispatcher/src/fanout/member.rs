//! One Trigger consumer's place in its Broker's [`Fanout`](super::Fanout): the events queued
//! for it, what it owes, where it reads when detached, and the [`Subscription`] its consumer
//! reads like any other.

use super::Group;
use crate::filter::Filter;
use crate::route::Route;
use async_trait::async_trait;
use herald_channels::{
    Acknowledge, ChannelError, Delivery, Mark, Read, Settlement, SharedLog, Subscription, WireEvent,
};
use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{watch, Notify};

/// Events a detached member reads from the log at once.
const CHUNK: usize = 256;

pub(super) struct Member {
    pub(super) id: u64,
    subscription: String,
    route: watch::Receiver<Arc<Route>>,
    state: Mutex<MemberState>,
    /// Woken when an event is queued, and when the member is reset or ends.
    ready: Notify,
}

struct MemberState {
    /// The subscription's epoch in the log; settlements of another are ignored.
    epoch: u64,
    /// Joined: takes events from the shared reader, from `cursor` on. Detached: reads the
    /// log itself, `cursor` being the next offset it reads.
    joined: bool,
    cursor: u64,
    queue: VecDeque<(u64, Arc<WireEvent>)>,
    /// Queued, in flight or released, not settled.
    owed: BTreeSet<u64>,
    /// Above `cursor` and settled already (before a restart): skipped when reading.
    settled: BTreeSet<u64>,
    /// The position last committed to the log.
    committed: u64,
    ended: bool,
}

impl MemberState {
    fn at(mark: Mark, joined: bool) -> Self {
        Self {
            epoch: mark.epoch,
            joined,
            cursor: mark.committed,
            queue: VecDeque::new(),
            owed: BTreeSet::new(),
            settled: mark.settled,
            committed: mark.committed,
            ended: false,
        }
    }

    /// Everything below is handled: below what it owes and below where reading has got to.
    fn position(&self, reader_next: u64) -> u64 {
        let frontier = if self.joined {
            reader_next.max(self.cursor)
        } else {
            self.cursor
        };
        self.owed.first().map_or(frontier, |o| (*o).min(frontier))
    }
}

impl Member {
    pub(super) fn new(
        id: u64,
        subscription: String,
        route: watch::Receiver<Arc<Route>>,
        mark: Mark,
        reader_next: u64,
        ended: bool,
    ) -> Self {
        // At or past the shared reader: takes from it at once; behind it: catches up alone.
        let joined = mark.committed >= reader_next;
        let mut state = MemberState::at(mark, joined);
        state.ended = ended;
        Self {
            id,
            subscription,
            route,
            state: Mutex::new(state),
            ready: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, MemberState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn filter(&self) -> Option<Filter> {
        self.route.borrow().filter.clone()
    }

    pub(super) fn is_joined(&self) -> bool {
        self.lock().joined
    }

    /// The shared reader found `event` matches this member's filter.
    pub(super) fn offer(&self, offset: u64, event: &Arc<WireEvent>, bound: usize) {
        let mut st = self.lock();
        if !st.joined || st.ended || offset < st.cursor {
            return;
        }
        if st.queue.len() >= bound {
            // Lagging: it reads on by itself from here, so the others are not held back.
            st.joined = false;
            st.cursor = offset;
            tracing::debug!(subscription = %self.subscription, offset, "lagging: reading on alone");
            return;
        }
        st.queue.push_back((offset, event.clone()));
        st.owed.insert(offset);
        drop(st);
        self.ready.notify_one();
    }

    /// Commits the position if it moved; a member whose subscription was moved or deleted
    /// meanwhile is reset (or ended).
    pub(super) fn commit(&self, log: &dyn SharedLog, reader_next: u64) {
        let (position, epoch) = {
            let mut st = self.lock();
            let position = st.position(reader_next);
            if st.ended || position <= st.committed {
                return;
            }
            st.committed = position;
            (position, st.epoch)
        };
        if !log.advance(&self.subscription, epoch, None, position) {
            self.check_mark(log);
        }
    }

    /// Takes a seek or deletion of the subscription into account: a moved one starts again,
    /// detached, at its new position (what it had queued or in flight no longer counts).
    pub(super) fn check_mark(&self, log: &dyn SharedLog) {
        let mark = log.mark(&self.subscription);
        {
            let mut st = self.lock();
            match mark {
                None => st.ended = true,
                Some(mark) if mark.epoch != st.epoch => {
                    let ended = st.ended;
                    *st = MemberState::at(mark, false);
                    st.ended = ended;
                }
                Some(_) => return,
            }
        }
        self.ready.notify_one();
    }

    pub(super) fn end(&self) {
        self.lock().ended = true;
        self.ready.notify_one();
    }

    /// Takes from the shared reader again, if still detached at `from` in `epoch`.
    pub(super) fn rejoin(&self, from: u64, epoch: u64) -> bool {
        let mut st = self.lock();
        if st.joined || st.epoch != epoch || st.cursor != from {
            return false;
        }
        st.joined = true;
        tracing::debug!(subscription = %self.subscription, offset = from, "caught up: rejoined");
        true
    }
}

/// A member's consumer-facing side.
pub(super) struct MemberReader {
    group: Arc<Group>,
    member: Arc<Member>,
    /// Read from the log while detached, from the member's cursor on, in its epoch.
    buffer: VecDeque<(u64, Arc<WireEvent>)>,
    buffer_epoch: u64,
}

enum Step {
    Deliver(u64, Arc<WireEvent>, u64),
    Read { from: u64, epoch: u64 },
    Wait,
    End,
}

impl MemberReader {
    pub(super) fn new(group: Arc<Group>, member: Arc<Member>) -> Self {
        Self {
            group,
            member,
            buffer: VecDeque::new(),
            buffer_epoch: 0,
        }
    }

    fn step(&mut self) -> Step {
        let mut st = self.member.lock();
        if let Some((offset, event)) = st.queue.pop_front() {
            return Step::Deliver(offset, event, st.epoch);
        }
        if st.ended {
            return Step::End;
        }
        if st.joined {
            self.buffer.clear();
            return Step::Wait;
        }
        if self.buffer_epoch != st.epoch {
            self.buffer.clear();
            self.buffer_epoch = st.epoch;
        }
        while let Some((offset, event)) = self.buffer.pop_front() {
            if offset < st.cursor {
                continue;
            }
            st.cursor = offset + 1;
            if st.settled.remove(&offset) {
                continue;
            }
            st.owed.insert(offset);
            return Step::Deliver(offset, event, st.epoch);
        }
        Step::Read {
            from: st.cursor,
            epoch: st.epoch,
        }
    }

    /// Reads on from `from` while detached, up to where the shared reader is; there it
    /// rejoins.
    async fn read_alone(&mut self, from: u64, epoch: u64) -> Result<bool, ChannelError> {
        let until = self.group.next.load(Ordering::Acquire);
        if from >= until {
            if !self.group.rejoin(&self.member, from, epoch) {
                // The reader moved on meanwhile: read on.
                tokio::task::yield_now().await;
            }
            return Ok(true);
        }
        let log = &self.group.log;
        match log.read(from, Some(until), CHUNK, log.moves()).await? {
            Read::Events { events, end } => {
                let mut st = self.member.lock();
                if st.epoch == epoch && st.cursor == from {
                    if events.is_empty() {
                        // Nothing readable there (or nothing retained): nothing owed either.
                        st.cursor = st.cursor.max(end);
                    }
                    self.buffer = events.into();
                    self.buffer_epoch = epoch;
                }
                Ok(true)
            }
            // The shared reader takes the move into account and resets this member if needed.
            Read::Moved(_) => {
                tokio::task::yield_now().await;
                Ok(true)
            }
            Read::End => Ok(false),
        }
    }
}

#[async_trait]
impl Subscription for MemberReader {
    async fn next(&mut self) -> Result<Option<Delivery>, ChannelError> {
        let member = self.member.clone();
        loop {
            let ready = member.ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            match self.step() {
                Step::Deliver(offset, event, epoch) => {
                    let ack = MemberAck {
                        group: self.group.clone(),
                        member: self.member.clone(),
                        offset,
                        epoch,
                    };
                    return Ok(Some(Delivery::shared(event, Some(offset), Box::new(ack))));
                }
                Step::End => return Ok(None),
                Step::Wait => ready.await,
                Step::Read { from, epoch } => {
                    if !self.read_alone(from, epoch).await? {
                        return Ok(None);
                    }
                }
            }
        }
    }
}

impl Drop for MemberReader {
    fn drop(&mut self) {
        self.group.leave(self.member.id);
    }
}

struct MemberAck {
    group: Arc<Group>,
    member: Arc<Member>,
    offset: u64,
    epoch: u64,
}

#[async_trait]
impl Acknowledge for MemberAck {
    async fn settle(self: Box<Self>, how: Settlement) -> Result<(), ChannelError> {
        // Released: stays owed, holding the position, until the subscription is next opened.
        if !how.is_handled() {
            return Ok(());
        }
        let position = {
            let mut st = self.member.lock();
            if st.epoch != self.epoch {
                return Ok(());
            }
            st.owed.remove(&self.offset);
            let position = st.position(self.group.next.load(Ordering::Acquire));
            st.committed = st.committed.max(position);
            position
        };
        let log = self.group.log.as_ref();
        if !log.advance(
            &self.member.subscription,
            self.epoch,
            Some(self.offset),
            position,
        ) {
            self.member.check_mark(log);
        }
        Ok(())
    }
}
