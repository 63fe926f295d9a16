//! A channel seen as what it is underneath when it is one offset-addressed log shared by all
//! its subscriptions (memory, sled): a Broker's Triggers can then read each event once
//! through one reader that evaluates it against all their filters
//! (`herald_dispatcher::fanout`), and the position of a Trigger an event is not for moves
//! past it without the event being handed to it.

use crate::{ChannelError, WireEvent};
use async_trait::async_trait;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Where a subscription stands, for a reader that is not one of its `Subscription`s.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mark {
    /// Everything below is handled.
    pub committed: u64,
    /// Offsets above `committed` that are settled already (out of order, before a restart).
    pub settled: BTreeSet<u64>,
    /// Changes whenever the subscription is moved (seek): an [`SharedLog::advance`] made
    /// for an older epoch is ignored.
    pub epoch: u64,
}

/// What a [`SharedLog::read`] found.
#[derive(Debug)]
pub enum Read {
    /// Events in offset order from the asked offset on (or from the oldest retained one,
    /// when the asked one is gone: nobody owed it), and the offset after the range read.
    /// Offsets in the range but not in `events` (unreadable, logged) are skipped.
    Events {
        events: Vec<(u64, Arc<WireEvent>)>,
        end: u64,
    },
    /// Some subscription was moved since the reader's `moves` count (this is the new one):
    /// the reader asks for its members' marks again.
    Moved(u64),
    /// The channel has ended: closed, and (memory) everything it held is handled.
    End,
}

#[async_trait]
pub trait SharedLog: Send + Sync {
    /// Opens `subscription` as `subscribe` would (a new one at the head) without a reader,
    /// and says where it stands.
    async fn open(&self, subscription: &str) -> Result<Mark, ChannelError>;

    /// Where `subscription` stands; `None` once it was deleted.
    fn mark(&self, subscription: &str) -> Option<Mark>;

    /// How many times a subscription was moved (seek) so far.
    fn moves(&self) -> u64;

    /// Up to `max` events from offset `from`. With `until`, only below it and without
    /// waiting (an empty answer when there are none); without, waits for at least one,
    /// for a move past `moves`, or for the end.
    async fn read(
        &self,
        from: u64,
        until: Option<u64>,
        max: usize,
        moves: u64,
    ) -> Result<Read, ChannelError>;

    /// Records, for `subscription` at `epoch`, that `settled` (if any) is handled and that
    /// everything below `through` is. Never moves a position back. `false` (and nothing
    /// changes) when the subscription was moved to another epoch or deleted.
    fn advance(&self, subscription: &str, epoch: u64, settled: Option<u64>, through: u64) -> bool;
}
