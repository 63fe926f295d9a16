//! The shared reader against a real memory channel: who gets what, who is held back by
//! whom, and where each subscription stands.

use super::*;
use crate::filter::Filter;
use crate::retry::RetryPolicy;
use crate::route::{DeliveryOrder, ReplyTarget, RouteId, TtlHandling};
use herald_channels::{
    Channel, Delivery, MemoryChannel, MemoryChannelConfig, Position, Settlement,
};
use herald_core::{DeliveryFormat, ResourceKey, SubscriptionsApiFilter, TriggerSpec};

fn route(name: &str, filter: &str) -> watch::Receiver<Arc<Route>> {
    let filters: Vec<SubscriptionsApiFilter> = serde_yaml::from_str(filter).unwrap();
    let filter = Filter::compile(&TriggerSpec {
        filters,
        ..Default::default()
    })
    .unwrap();
    let route = Route {
        id: RouteId::trigger(ResourceKey {
            namespace: "ns".into(),
            name: name.into(),
        }),
        filter: Some(filter),
        subscriber: "http://127.0.0.1:1/".parse().unwrap(),
        reply: ReplyTarget::Discard,
        dead_letter_sink: None,
        policy: RetryPolicy::from_spec(&Default::default(), Duration::from_secs(1)),
        order: DeliveryOrder::Unordered,
        format: DeliveryFormat::Binary,
        ttl: TtlHandling::Broker,
        keep_dead_letters: false,
        broker: None,
        filter_type: "any".into(),
        dispatch_metrics: Default::default(),
    };
    watch::channel(Arc::new(route)).1
}

fn event(id: &str, ty: &str) -> WireEvent {
    use cloudevents::{EventBuilder, EventBuilderV10};
    EventBuilderV10::new()
        .id(id)
        .source("/test")
        .ty(ty)
        .build()
        .unwrap()
        .into()
}

fn channel() -> Arc<MemoryChannel> {
    Arc::new(MemoryChannel::new(
        "ns/b",
        MemoryChannelConfig {
            capacity: 100_000,
            ..Default::default()
        },
    ))
}

async fn next(sub: &mut Box<dyn Subscription>) -> Delivery {
    tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .expect("no delivery within 10s")
        .unwrap()
        .expect("subscription ended")
}

/// Waits (deadline 10 s) until `check` holds.
async fn until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "not within 10s: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn publish(ch: &MemoryChannel, ids: std::ops::Range<usize>, ty: &str) {
    let events = ids.map(|i| event(&i.to_string(), ty)).collect();
    ch.publish(events).await.unwrap();
}

#[tokio::test]
async fn non_matching_triggers_are_neither_evaluated_nor_handed_events_yet_move_on() {
    let ch = channel();
    let fanout = Fanout::new(ch.shared_log().unwrap(), 64);
    let mut others = Vec::new();
    for i in 0..100 {
        let filter = if i % 2 == 0 {
            format!("- prefix: {{type: other.{i}.}}")
        } else {
            format!("- cesql: \"type = 'other.{i}'\"")
        };
        others.push(fanout.join(route(&format!("o{i}"), &filter)).await.unwrap());
    }
    let mut matching = fanout.join(route("m", "- exact: {type: t}")).await.unwrap();
    let evaluated_before = crate::filter::tests::evaluations();
    publish(&ch, 0..500, "t").await;
    for i in 0..500 {
        let d = next(&mut matching).await;
        assert_eq!(d.offset, Some(i));
        d.ack().await.unwrap();
    }
    // Only the matching Trigger's consumer would evaluate (it is precise: the index did not).
    assert_eq!(crate::filter::tests::evaluations(), evaluated_before);
    assert_eq!(fanout.stats().evaluations, 0);
    // Each non-matching subscription is committed past all 500 without reading any.
    until("every position at the head", async || {
        let mut all = true;
        for i in 0..100 {
            all &= ch.lag(&format!("trigger.ns.o{i}")).await == Some(0);
        }
        all && ch.lag("trigger.ns.m").await == Some(0)
    })
    .await;
    for other in &mut others {
        let nothing = tokio::time::timeout(Duration::from_millis(20), other.next()).await;
        assert!(
            nothing.is_err(),
            "a non-matching Trigger was handed an event"
        );
    }
}

#[tokio::test]
async fn a_lagging_trigger_holds_nobody_back_and_catches_up_alone_then_rejoins() {
    let ch = channel();
    let fanout = Fanout::new(ch.shared_log().unwrap(), 16);
    let mut slow = fanout
        .join(route("slow", "- exact: {type: t}"))
        .await
        .unwrap();
    let mut fast = fanout
        .join(route("fast", "- exact: {type: t}"))
        .await
        .unwrap();
    // `slow` reads nothing meanwhile; `fast`, keeping up, gets all 200 regardless.
    for chunk in 0..20 {
        publish(&ch, chunk * 10..chunk * 10 + 10, "t").await;
        for i in chunk * 10..chunk * 10 + 10 {
            let d = next(&mut fast).await;
            assert_eq!(d.offset, Some(i as u64));
            d.ack().await.unwrap();
        }
    }
    until("the fanout's reader past the batch", async || {
        fanout.stats().next == 200
    })
    .await;
    assert_eq!(
        fanout.stats().detached,
        1,
        "the lagging Trigger was not detached"
    );
    assert_eq!(
        ch.lag("trigger.ns.slow").await,
        Some(200),
        "it owes all 200"
    );
    // It reads on from its own cursor: every event once, in order.
    for i in 0..200 {
        let d = next(&mut slow).await;
        assert_eq!(d.offset, Some(i));
        d.ack().await.unwrap();
    }
    // Caught up, it takes from the shared reader again.
    publish(&ch, 200..210, "t").await;
    for i in 200..210 {
        assert_eq!(next(&mut slow).await.offset, Some(i));
        assert_eq!(next(&mut fast).await.offset, Some(i));
    }
    until("rejoined", async || fanout.stats().detached == 0).await;
}

#[tokio::test]
async fn positions_are_exact_when_a_trigger_is_opened_again() {
    let ch = channel();
    let fanout = Fanout::new(ch.shared_log().unwrap(), 64);
    let mut other = fanout
        .join(route("other", "- exact: {type: x}"))
        .await
        .unwrap();
    let mut sub = fanout.join(route("a", "- exact: {type: t}")).await.unwrap();
    publish(&ch, 0..3, "t").await;
    publish(&ch, 3..6, "x").await;
    let ds: Vec<_> = [
        next(&mut sub).await,
        next(&mut sub).await,
        next(&mut sub).await,
    ]
    .into();
    let mut ds = ds.into_iter();
    let (d0, d1, d2) = (ds.next().unwrap(), ds.next().unwrap(), ds.next().unwrap());
    d0.ack().await.unwrap();
    d2.settle(Settlement::DeadLettered).await.unwrap();
    // 1 is released: still owed, the position holds at 1.
    d1.settle(Settlement::Released).await.unwrap();
    for _ in 3..6 {
        next(&mut other).await.ack().await.unwrap();
    }
    until("a's position at 1", async || {
        ch.lag("trigger.ns.a").await == Some(5)
    })
    .await;
    drop(sub);
    // Opened again: exactly the released event comes again, then what follows.
    let mut again = fanout.join(route("a", "- exact: {type: t}")).await.unwrap();
    let d = next(&mut again).await;
    assert_eq!(d.offset, Some(1));
    d.ack().await.unwrap();
    publish(&ch, 6..7, "t").await;
    // 3..6 are handed out again while it reads alone (its consumer drops them) ...
    let mut offsets = Vec::new();
    loop {
        let d = next(&mut again).await;
        offsets.push(d.offset.unwrap());
        d.settle(Settlement::Dropped).await.unwrap();
        if offsets.last() == Some(&6) {
            break;
        }
    }
    assert_eq!(
        offsets,
        [3, 4, 5, 6],
        "2 was settled and must not come again"
    );
    until("a at the head", async || {
        ch.lag("trigger.ns.a").await == Some(0)
    })
    .await;
}

#[tokio::test]
async fn a_seek_moves_only_that_trigger_back() {
    let ch = channel();
    // A subscription that reads nothing keeps every event in the memory channel, to seek to.
    let _hold = ch.subscribe("hold").await.unwrap();
    let fanout = Fanout::new(ch.shared_log().unwrap(), 64);
    let mut a = fanout.join(route("a", "- exact: {type: t}")).await.unwrap();
    let mut b = fanout.join(route("b", "- exact: {type: t}")).await.unwrap();
    publish(&ch, 0..5, "t").await;
    for _ in 0..5 {
        next(&mut a).await.ack().await.unwrap();
        next(&mut b).await.ack().await.unwrap();
    }
    until("both at the head", async || {
        ch.lag("trigger.ns.a").await == Some(0) && ch.lag("trigger.ns.b").await == Some(0)
    })
    .await;
    assert_eq!(
        ch.seek("trigger.ns.a", Position::Offset(2)).await.unwrap(),
        2
    );
    for i in 2..5 {
        let d = next(&mut a).await;
        assert_eq!(d.offset, Some(i));
        d.ack().await.unwrap();
    }
    let nothing = tokio::time::timeout(Duration::from_millis(50), b.next()).await;
    assert!(nothing.is_err(), "b was moved too");
    publish(&ch, 5..6, "t").await;
    assert_eq!(next(&mut a).await.offset, Some(5));
    assert_eq!(next(&mut b).await.offset, Some(5));
}
