//! Live taps on what a log accepts (the admin API's event stream, `herald tail`, the UI): each
//! open backend channel is wrapped so that a successful publish also offers its events to a
//! bounded broadcast. Nobody watching costs one atomic load per publish; a watcher that falls
//! behind loses the oldest events rather than slowing ingress, and is told how many. The
//! same wrapper hands the types of accepted events to the EventType recorder.

use super::recorder::EventTypeRecorder;
use super::{DataPlane, Kind, LogId};
use async_trait::async_trait;
use herald_channels::{
    Channel, ChannelError, ParkingLot, Position, SharedLog, Subscription as ChannelSubscription,
    WireEvent,
};
use herald_core::ResourceKey;
use std::sync::Arc;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Events a watcher may fall behind by before it starts missing some.
pub const TAP_CAPACITY: usize = 1024;

/// The broadcast side of one log's tap.
#[derive(Clone)]
pub(super) struct EventTap {
    sender: broadcast::Sender<Arc<WireEvent>>,
    /// Cancelled when the log closes (its Broker is gone, or Herald stops).
    closed: CancellationToken,
}

impl EventTap {
    fn watch(&self) -> Watch {
        Watch {
            receiver: self.sender.subscribe(),
            closed: self.closed.clone(),
        }
    }
}

/// One watcher of a log's accepted events.
pub struct Watch {
    receiver: broadcast::Receiver<Arc<WireEvent>>,
    closed: CancellationToken,
}

/// What a watcher sees next.
#[derive(Debug)]
pub enum Seen {
    Event(Arc<WireEvent>),
    /// It fell behind and this many events went by unseen.
    Missed(u64),
}

impl Watch {
    /// The next accepted event (or how many were missed); `None` once the log has closed.
    pub async fn next(&mut self) -> Option<Seen> {
        tokio::select! {
            // What was accepted before the close is still handed out.
            biased;
            got = self.receiver.recv() => match got {
                Ok(event) => Some(Seen::Event(event)),
                Err(broadcast::error::RecvError::Lagged(n)) => Some(Seen::Missed(n)),
                Err(broadcast::error::RecvError::Closed) => None,
            },
            _ = self.closed.cancelled() => None,
        }
    }
}

/// A backend channel whose accepted events are also offered to its tap.
struct TappedChannel {
    inner: Arc<dyn Channel>,
    tap: EventTap,
    recorder: EventTypeRecorder,
    log: LogId,
}

/// Wraps `inner` (the log of `log`) with a tap that ends with `stopping` as well as with the
/// channel, and that hands what it accepts to `recorder`.
pub(super) fn wrap(
    inner: Arc<dyn Channel>,
    stopping: &CancellationToken,
    recorder: EventTypeRecorder,
    log: LogId,
) -> (Arc<dyn Channel>, EventTap) {
    let (sender, _) = broadcast::channel(TAP_CAPACITY);
    let tap = EventTap {
        sender,
        closed: stopping.child_token(),
    };
    let channel = Arc::new(TappedChannel {
        inner,
        tap: tap.clone(),
        recorder,
        log,
    });
    (channel, tap)
}

#[async_trait]
impl Channel for TappedChannel {
    fn name(&self) -> &str {
        self.inner.name()
    }

    async fn publish(&self, events: Vec<WireEvent>) -> Result<(), ChannelError> {
        // Types not recorded yet are found before publishing consumes the events, and
        // recorded only once the channel holds them.
        let unseen = self.recorder.unseen(&self.log, &events);
        if self.tap.sender.receiver_count() == 0 {
            self.inner.publish(events).await?;
            self.recorder.record(unseen);
            return Ok(());
        }
        // Copied before publishing consumes them; offered only once the channel holds them.
        let copies: Vec<Arc<WireEvent>> = events.iter().cloned().map(Arc::new).collect();
        self.inner.publish(events).await?;
        self.recorder.record(unseen);
        for event in copies {
            // No receiver left is not an error: the watcher went away meanwhile.
            let _ = self.tap.sender.send(event);
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        subscription: &str,
    ) -> Result<Box<dyn ChannelSubscription>, ChannelError> {
        self.inner.subscribe(subscription).await
    }

    fn parking(&self) -> Option<Arc<dyn ParkingLot>> {
        self.inner.parking()
    }

    fn shared_log(&self) -> Option<Arc<dyn SharedLog>> {
        self.inner.shared_log()
    }

    async fn lag(&self, subscription: &str) -> Option<u64> {
        self.inner.lag(subscription).await
    }

    async fn seek(&self, subscription: &str, position: Position) -> Result<u64, ChannelError> {
        self.inner.seek(subscription, position).await
    }

    async fn delete_subscription(&self, subscription: &str) -> Result<(), ChannelError> {
        self.inner.delete_subscription(subscription).await
    }

    async fn delete(&self) -> Result<(), ChannelError> {
        self.inner.delete().await
    }

    async fn close(&self) {
        self.tap.closed.cancel();
        self.inner.close().await
    }
}

impl DataPlane {
    /// Watches what Broker `key` accepts from now on (ingress and replies alike); `None`
    /// when no such Broker is applied or it has no channel yet.
    pub async fn watch_broker(&self, key: &ResourceKey) -> Option<Watch> {
        let state = self.state.lock().await;
        if !state.brokers.contains_key(key) {
            return None;
        }
        state
            .logs
            .get(&(Kind::Broker, key.clone()))
            .map(|l| l.tap.watch())
    }

    /// Ends every watch (Herald is stopping: open streams must not hold the listener's
    /// graceful shutdown until its deadline).
    pub async fn end_watches(&self) {
        self.state.lock().await.stopping_watches.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_channels::{MemoryChannel, MemoryChannelConfig};

    fn event(id: &str) -> WireEvent {
        herald_channels::event::json::from_slice(
            format!(r#"{{"specversion":"1.0","id":"{id}","source":"/t","type":"t"}}"#).as_bytes(),
        )
        .unwrap()
    }

    fn tapped() -> (Arc<dyn Channel>, EventTap, CancellationToken) {
        let stopping = CancellationToken::new();
        let inner: Arc<dyn Channel> = Arc::new(MemoryChannel::new(
            "tap-test",
            MemoryChannelConfig::default(),
        ));
        let (channel, tap) = wrap(
            inner,
            &stopping,
            EventTypeRecorder::disabled(),
            (Kind::Broker, ResourceKey::new("default", "b")),
        );
        (channel, tap, stopping)
    }

    #[tokio::test]
    async fn a_watcher_sees_what_was_published_after_it_started() {
        let (channel, tap, _stopping) = tapped();
        channel.publish(vec![event("before")]).await.unwrap();
        let mut watch = tap.watch();
        channel.publish(vec![event("a"), event("b")]).await.unwrap();
        for want in ["a", "b"] {
            match watch.next().await {
                Some(Seen::Event(e)) => assert_eq!(e.id(), want),
                other => panic!("expected event {want}, got {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_slow_watcher_is_told_how_many_it_missed_and_publishing_never_waits() {
        let (channel, tap, _stopping) = tapped();
        let mut watch = tap.watch();
        let extra = 10;
        for i in 0..TAP_CAPACITY + extra {
            channel.publish(vec![event(&i.to_string())]).await.unwrap();
        }
        match watch.next().await {
            Some(Seen::Missed(n)) => assert_eq!(n, extra as u64),
            other => panic!("expected a miss, got {other:?}"),
        }
        match watch.next().await {
            Some(Seen::Event(e)) => assert_eq!(e.id(), extra.to_string()),
            other => panic!("expected the oldest kept event, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn watches_end_when_the_channel_closes_or_herald_stops() {
        let (channel, tap, _stopping) = tapped();
        let mut watch = tap.watch();
        channel.close().await;
        assert!(watch.next().await.is_none());

        let (_channel, tap, stopping) = tapped();
        let mut watch = tap.watch();
        stopping.cancel();
        assert!(watch.next().await.is_none());
    }
}
