//! Which delivery options apply and where events go: the Broker's `spec.delivery` as the
//! default for Triggers without one and ignored by Triggers with any, `delivery.format`, one
//! delivery per matching Trigger, and filters seeing decoded attribute values.

use crate::adapter::{BackoffPolicy, DeliverySpec, TriggerSpec};
use crate::check::{must, should, Check, Outcome};
use crate::ctx::{describe, Ctx, Message, SOURCE};
use crate::sink::Answer;
use crate::wire::{self, Mode};
use std::collections::BTreeMap;
use std::time::Duration;

const DEFAULT: Check = must(
    "control-plane.broker.delivery-default",
    "control-plane §Broker (spec.delivery: the default for Triggers without delivery options)",
    "a Trigger without delivery options uses the Broker's (its dead-letter sink)",
);
const IGNORED_DLS: Check = must(
    "control-plane.broker.delivery-ignored",
    "control-plane §Broker (spec.delivery MUST be ignored if a Trigger specifies any)",
    "a Trigger with its own delivery options uses its dead-letter sink, not the Broker's",
);
const IGNORED_RETRY: Check = should(
    "control-plane.broker.delivery-not-merged",
    "control-plane §Broker (spec.delivery MUST be ignored if a Trigger specifies any)",
    "the Broker's retry is not merged into a Trigger that sets only a dead-letter sink",
);
const FORMAT_JSON: Check = should(
    "knative.delivery.format-json",
    "Knative Eventing DeliverySpec.format",
    "delivery.format json delivers in structured mode",
);
const FORMAT_BINARY: Check = should(
    "knative.delivery.format-binary",
    "Knative Eventing DeliverySpec.format",
    "delivery.format binary delivers a structured event in binary mode",
);
const PER_TRIGGER: Check = must(
    "control-plane.routing.per-trigger",
    "control-plane §Content Based Routing (one delivery per matching Trigger)",
    "two Triggers with the same subscriber each deliver the event",
);
const FILTER_DECODED: Check = must(
    "http-binding.3.1.3.2.filter-decoded",
    "http-binding §3.1.3.2 HTTP Header Values (decoding); control-plane §Content Based Routing",
    "a filter on a non-ASCII attribute matches the percent-encoded event",
);

/// The Broker's own delivery options: one retry, then its dead-letter sink.
pub fn broker_delivery(ctx: &Ctx) -> DeliverySpec {
    DeliverySpec {
        retry: Some(1),
        backoff_policy: Some(BackoffPolicy::Linear),
        backoff_delay: Some(Duration::from_millis(100)),
        dead_letter_sink: Some(ctx.sink.url("/dls-broker")),
        format: None,
    }
}

const SUBJECT: &str = "Euro \u{20ac} \u{1f600}";

pub fn triggers(ctx: &Ctx) -> Vec<TriggerSpec> {
    let format = |f: &str| DeliverySpec {
        format: Some(f.into()),
        ..Default::default()
    };
    let mut filtered = ctx.trigger("filter", "filter", "/filter", None);
    filtered.filter = BTreeMap::from([
        ("type".into(), ctx.ty("filter")),
        ("subject".into(), SUBJECT.into()),
    ]);
    vec![
        ctx.trigger("inherit", "inherit", "/inherit", None),
        ctx.trigger(
            "override",
            "override",
            "/override",
            Some(DeliverySpec {
                dead_letter_sink: Some(ctx.sink.url("/dls-override")),
                ..Default::default()
            }),
        ),
        ctx.trigger(
            "format-json",
            "format-json",
            "/format-json",
            Some(format("json")),
        ),
        ctx.trigger(
            "format-binary",
            "format-binary",
            "/format-binary",
            Some(format("binary")),
        ),
        ctx.trigger("twin-a", "twin", "/twin", None),
        ctx.trigger("twin-b", "twin", "/twin", None),
        filtered,
    ]
}

pub async fn run(ctx: &Ctx) -> Vec<Outcome> {
    let (mut a, mut b) = futures::join!(delivery(ctx), routing(ctx));
    a.append(&mut b);
    a
}

async fn delivery(ctx: &Ctx) -> Vec<Outcome> {
    let inherit = ctx.id("inherit");
    let own = ctx.id("override");
    ctx.sink
        .script("/inherit", &inherit, vec![Answer::status(500)]);
    ctx.sink
        .script("/override", &own, vec![Answer::status(500)]);
    let sent_inherit = ctx
        .send(&Message::binary(&inherit, &ctx.ty("inherit")))
        .await;
    let sent_own = ctx.send(&Message::binary(&own, &ctx.ty("override"))).await;
    let find = |id: String| {
        let ctx = &*ctx;
        async move {
            ctx.sink
                .wait(ctx.timeout, |all| {
                    all.iter()
                        .find(|r| r.id() == Some(id.as_str()) && r.path.starts_with("/dls-"))
                        .map(|r| r.path.clone())
                })
                .await
        }
    };
    let (dead_inherit, dead_own) = futures::join!(find(inherit.clone()), find(own.clone()));
    let mut outcomes = Vec::new();
    outcomes.push(match (&sent_inherit, dead_inherit.as_deref()) {
        (a, _) if !a.as_ref().is_ok_and(|a| a.accepted()) => {
            DEFAULT.fail(format!("the event was answered {}", describe(a)))
        }
        (_, Some("/dls-broker")) => DEFAULT.pass(format!(
            "{} attempt(s), then the Broker's dead-letter sink",
            ctx.sink.attempts("/inherit", &inherit).len()
        )),
        (_, Some(other)) => DEFAULT.fail(format!("dead-lettered to {other}")),
        (_, None) => DEFAULT.fail(format!("not dead-lettered within {:?}", ctx.timeout)),
    });
    let attempts = ctx.sink.attempts("/override", &own).len();
    match (&sent_own, dead_own.as_deref()) {
        (a, _) if !a.as_ref().is_ok_and(|a| a.accepted()) => {
            let why = format!("the event was answered {}", describe(a));
            outcomes.push(IGNORED_DLS.fail(why.clone()));
            outcomes.push(IGNORED_RETRY.fail(why));
        }
        (_, Some("/dls-override")) => {
            outcomes.push(IGNORED_DLS.pass("the Trigger's dead-letter sink"));
            outcomes.push(IGNORED_RETRY.verdict(
                attempts == 1,
                format!("{attempts} attempt(s) (the Broker says retry 1, the Trigger nothing)"),
            ));
        }
        (_, other) => {
            let why = match other {
                Some(p) => format!("dead-lettered to {p}"),
                None => format!("not dead-lettered within {:?}", ctx.timeout),
            };
            outcomes.push(IGNORED_DLS.fail(why.clone()));
            outcomes.push(IGNORED_RETRY.fail(why));
        }
    }
    outcomes
}

async fn routing(ctx: &Ctx) -> Vec<Outcome> {
    let json = ctx.id("format-json");
    let binary = ctx.id("format-binary");
    let twin = ctx.id("twin");
    let filtered = ctx.id("filter");
    let sent_json = ctx
        .send(
            &Message::binary(&json, &ctx.ty("format-json"))
                .data("application/json", br#"{"a": 1}"#.to_vec()),
        )
        .await;
    let sent_binary = ctx
        .send(&Message::structured(format!(
            r#"{{"specversion":"1.0","id":"{binary}","source":"{SOURCE}","type":"{}","datacontenttype":"text/plain","data":"text"}}"#,
            ctx.ty("format-binary")
        )))
        .await;
    let sent_twin = ctx.send(&Message::binary(&twin, &ctx.ty("twin"))).await;
    let sent_filtered = ctx
        .send(
            &Message::binary(&filtered, &ctx.ty("filter"))
                .header("ce-subject", wire::encode_header_value(SUBJECT)),
        )
        .await;
    let (got_json, got_binary, got_twin, got_filtered) = futures::join!(
        ctx.sink.wait_event("/format-json", &json, ctx.timeout),
        ctx.sink.wait_event("/format-binary", &binary, ctx.timeout),
        ctx.sink.wait_attempt("/twin", &twin, 2, ctx.timeout),
        ctx.sink.wait_event("/filter", &filtered, ctx.timeout),
    );
    let accepted =
        |a: &Result<crate::ctx::Answered, String>| a.as_ref().is_ok_and(|a| a.accepted());
    let mode_check =
        |check: Check, sent: &Result<_, String>, got: Option<crate::sink::Recorded>, want: Mode| {
            if !accepted(sent) {
                return check.fail(format!("the event was answered {}", describe(sent)));
            }
            match got {
                None => check.fail(format!("not delivered within {:?}", ctx.timeout)),
                Some(r) => match r.event() {
                    Some(e) => check.verdict(
                        e.mode == want,
                        format!(
                            "delivered in {:?} mode (Content-Type {:?})",
                            e.mode,
                            r.header("content-type").unwrap_or("")
                        ),
                    ),
                    None => check.fail("the delivery is not a CloudEvent"),
                },
            }
        };
    let mut outcomes = vec![
        mode_check(FORMAT_JSON, &sent_json, got_json, Mode::Structured),
        mode_check(FORMAT_BINARY, &sent_binary, got_binary, Mode::Binary),
    ];
    outcomes.push(if !accepted(&sent_twin) {
        PER_TRIGGER.fail(format!("the event was answered {}", describe(&sent_twin)))
    } else {
        let n = ctx.sink.attempts("/twin", &twin).len();
        PER_TRIGGER.verdict(
            got_twin.is_some(),
            format!("{n} delivery(ies) for 2 Triggers"),
        )
    });
    outcomes.push(if !accepted(&sent_filtered) {
        FILTER_DECODED.fail(format!(
            "the event was answered {}",
            describe(&sent_filtered)
        ))
    } else {
        FILTER_DECODED.verdict(
            got_filtered.is_some(),
            match &got_filtered {
                Some(_) => "matched".to_string(),
                None => format!("subject {SUBJECT:?} did not match within {:?}", ctx.timeout),
            },
        )
    });
    outcomes
}
