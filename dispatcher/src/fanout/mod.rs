//! One reader per Broker for all of its Triggers (knative/eventing#2288). Each event is read
//! once and evaluated once against the [index](index) of the Broker's filters, then queued
//! only for the Triggers it matches; a Trigger it does not match never sees it, and its
//! position moves past it anyway (committed in batches).
//!
//! A slow or failing Trigger cannot hold back the others: when its queue is full it is
//! detached and reads on from its own cursor on the log (evaluating its own filter, in its
//! consumer, as a lone subscription would), and rejoins once it has caught up with the
//! shared reader. Each Trigger's committed position stays its own and exact: everything
//! below the lowest offset it still owes (queued, in flight or released) and below where the
//! shared reader (or, detached, its own cursor) has got to.
//!
//! Works on channels that are one offset-addressed log ([`SharedLog`]: memory, sled); on
//! others every Trigger reads its own subscription.

mod index;
mod member;

use crate::cancellation::Cancellation;
use crate::route::Route;
use herald_channels::{ChannelError, Read, SharedLog, Subscription, WireEvent};
use index::FilterIndex;
use member::{Member, MemberReader};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Events the shared reader takes from the log at once.
const BATCH: usize = 256;
/// How often positions of Triggers that are only moved past events are committed; at once
/// when the reader has caught up with the log.
const COMMIT_EVERY: Duration = Duration::from_millis(20);

/// A Broker's shared reader and its members (one per Trigger consumer).
pub struct Fanout {
    group: Arc<Group>,
}

struct Group {
    log: Arc<dyn SharedLog>,
    state: Mutex<GroupState>,
    /// `GroupState::next`, published after each batch for settlements, which do not take
    /// the group's lock.
    next: AtomicU64,
    /// Events a member may have queued before it is detached.
    queue: usize,
    stop: CancellationToken,
}

#[derive(Default)]
struct GroupState {
    /// The next offset the reader evaluates: everything below went to the members it matched.
    next: u64,
    members: Vec<Arc<Member>>,
    /// Rebuilt when members or their filters change.
    index: Option<FilterIndex>,
    /// Seeks of the log already accounted for.
    moves: u64,
    started: bool,
    ended: bool,
    next_id: u64,
}

/// What a Broker's shared reader has done, for tests and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FanoutStats {
    /// The next offset it evaluates.
    pub next: u64,
    pub members: usize,
    /// Members reading from their own cursor (lagging).
    pub detached: usize,
    /// Filter evaluations the index needed (candidates that were not settled by the look-up).
    pub evaluations: u64,
}

impl Fanout {
    /// The shared reader of `log`; a member is detached when `queue` events wait for it.
    pub fn new(log: Arc<dyn SharedLog>, queue: usize) -> Self {
        Self {
            group: Arc::new(Group {
                log,
                state: Mutex::default(),
                next: AtomicU64::new(0),
                queue: queue.max(1),
                stop: CancellationToken::new(),
            }),
        }
    }

    /// Opens the route's subscription as a member: like `Channel::subscribe`, resuming from
    /// its committed position (a new one at the head).
    pub async fn join(
        &self,
        route: watch::Receiver<Arc<Route>>,
    ) -> Result<Box<dyn Subscription>, ChannelError> {
        let subscription = route.borrow().subscription();
        let mark = self.group.log.open(&subscription).await?;
        let member = {
            let mut g = self.group.lock();
            if !g.started {
                g.started = true;
                g.next = mark.committed;
                self.group.next.store(g.next, Ordering::Release);
                tokio::spawn(self.group.clone().run());
            }
            g.next_id += 1;
            let member = Arc::new(Member::new(
                g.next_id,
                subscription,
                route,
                mark,
                g.next,
                g.ended,
            ));
            g.members.push(member.clone());
            g.index = None;
            member
        };
        Ok(Box::new(MemberReader::new(self.group.clone(), member)))
    }

    /// A member's route changed: its filter applies from the next event the reader evaluates.
    pub fn refresh(&self) {
        self.group.lock().index = None;
    }

    pub fn stats(&self) -> FanoutStats {
        let g = self.group.lock();
        FanoutStats {
            next: g.next,
            members: g.members.len(),
            detached: g.members.iter().filter(|m| !m.is_joined()).count(),
            evaluations: g.index.as_ref().map_or(0, |i| i.evaluations),
        }
    }
}

impl Drop for Fanout {
    fn drop(&mut self) {
        self.group.stop.cancel();
    }
}

impl Group {
    fn lock(&self) -> MutexGuard<'_, GroupState> {
        // Every update under this lock leaves it consistent; a panic elsewhere is no reason
        // to stop delivering.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The shared reader: until the log ends or the Fanout is dropped.
    async fn run(self: Arc<Self>) {
        let mut matched = Vec::new();
        let mut committed_at = Instant::now();
        let mut uncommitted = false;
        // Made once, not per read, and cheap to poll again.
        let mut stopped = Cancellation::new(self.stop.clone());
        loop {
            let (from, moves) = {
                let g = self.lock();
                (g.next, g.moves)
            };
            let deadline = tokio::time::Instant::from_std(committed_at + COMMIT_EVERY);
            let read = tokio::select! {
                _ = &mut stopped => break,
                _ = tokio::time::sleep_until(deadline), if uncommitted => {
                    self.commit_all();
                    (committed_at, uncommitted) = (Instant::now(), false);
                    continue;
                }
                read = self.log.read(from, None, BATCH, moves) => read,
            };
            match read {
                Ok(Read::Events { events, end }) => {
                    let caught_up = end.saturating_sub(from) < BATCH as u64;
                    self.dispatch(events, end, &mut matched);
                    uncommitted = true;
                    if caught_up && committed_at.elapsed() >= COMMIT_EVERY {
                        self.commit_all();
                        (committed_at, uncommitted) = (Instant::now(), false);
                    }
                }
                Ok(Read::Moved(moves)) => {
                    self.lock().moves = moves;
                    let members = self.lock().members.clone();
                    for m in &members {
                        m.check_mark(self.log.as_ref());
                    }
                }
                Ok(Read::End) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "shared channel read failed; retrying");
                    let wait = e.retry_after().unwrap_or(Duration::from_secs(1));
                    tokio::select! {
                        _ = &mut stopped => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
        self.commit_all();
        let members = {
            let mut g = self.lock();
            g.ended = true;
            g.members.clone()
        };
        for m in members {
            m.end();
        }
    }

    /// Evaluates each event once and queues it for the members it matches.
    fn dispatch(&self, events: Vec<(u64, Arc<WireEvent>)>, end: u64, matched: &mut Vec<usize>) {
        let mut g = self.lock();
        if g.index.is_none() {
            g.index = Some(FilterIndex::new(
                g.members.iter().map(|m| m.filter()).collect(),
            ));
        }
        let GroupState {
            next,
            members,
            index: Some(index),
            ..
        } = &mut *g
        else {
            unreachable!("built above");
        };
        for (offset, event) in events {
            let _span = tracing::trace_span!("fanout", event.id = event.id(), offset).entered();
            matched.clear();
            index.matching(&event, matched);
            for &i in matched.iter() {
                members[i].offer(offset, &event, self.queue);
            }
        }
        *next = (*next).max(end);
        self.next.store(*next, Ordering::Release);
    }

    /// Commits every member's position that moved (mostly: past events it was not offered).
    fn commit_all(&self) {
        let (next, members) = {
            let g = self.lock();
            (g.next, g.members.clone())
        };
        for m in &members {
            m.commit(self.log.as_ref(), next);
        }
    }

    /// A detached member at `from` (epoch `epoch`) that has caught up with the reader takes
    /// from it again; whether it did.
    fn rejoin(&self, member: &Member, from: u64, epoch: u64) -> bool {
        let g = self.lock();
        from >= g.next && member.rejoin(from, epoch)
    }

    fn leave(&self, id: u64) {
        let mut g = self.lock();
        g.members.retain(|m| m.id != id);
        g.index = None;
    }
}

#[cfg(test)]
mod tests;
