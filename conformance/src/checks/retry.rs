//! The retry table, retry counts, backoff and dead letters: a subscriber answers each event
//! with a scripted status, and the sink sees which attempts follow, when, and what reaches
//! the dead-letter sink.

use crate::adapter::{BackoffPolicy, DeliverySpec, TriggerSpec};
use crate::check::{must, should, Check, Outcome, Tally};
use crate::ctx::{Ctx, Message};
use crate::sink::{Answer, Recorded};
use base64::Engine;
use std::time::Duration;

const SECTION: &str = "data-plane §Event Acknowledgement and Delivery Retry";

/// Codes the table says to retry, each a MUST (control-plane §Event Delivery: retryable
/// errors MUST be retried).
const RETRIED: &[(u16, &str)] = &[
    (404, "data-plane.retry.404"),
    (408, "data-plane.retry.408"),
    (409, "data-plane.retry.409"),
    (429, "data-plane.retry.429"),
    (500, "data-plane.retry.500"),
    (502, "data-plane.retry.502"),
    (503, "data-plane.retry.503"),
    (504, "data-plane.retry.504"),
];
/// Codes the table says not to retry.
const NOT_RETRIED: &[(u16, &str)] = &[
    (400, "data-plane.retry.no-400"),
    (401, "data-plane.retry.no-401"),
    (403, "data-plane.retry.no-403"),
    (413, "data-plane.retry.no-413"),
    (422, "data-plane.retry.no-422"),
];
const REDIRECTS: &[(u16, &str)] = &[
    (301, "data-plane.ack.3xx-301"),
    (302, "data-plane.ack.3xx-302"),
    (307, "data-plane.ack.3xx-307"),
    (308, "data-plane.ack.3xx-308"),
];
const SUCCESS: &[(u16, &str)] = &[
    (201, "data-plane.ack.2xx-201"),
    (204, "data-plane.ack.2xx-204"),
];

const RETRY_COUNT: Check = must(
    "control-plane.delivery.retry-count",
    "control-plane §Event Delivery; DeliverySpec.retry (the minimum number of retries)",
    "a failing event is retried at least `retry` times",
);
const BACKOFF_LINEAR: Check = must(
    "control-plane.delivery.backoff-linear",
    "control-plane §Event Delivery; DeliverySpec.backoffPolicy",
    "linear backoff waits at least backoffDelay between attempts",
);
const BACKOFF_EXPONENTIAL: Check = must(
    "control-plane.delivery.backoff-exponential",
    "control-plane §Event Delivery; DeliverySpec.backoffPolicy",
    "exponential backoff waits at least backoffDelay × 2^(n-1) before retry n",
);
const DEAD_LETTER: Check = must(
    "control-plane.delivery.dead-letter",
    "control-plane §Event Delivery (MUST be delivered to the deadLetterSink)",
    "an event that cannot be delivered goes to the deadLetterSink unmodified",
);
const DEAD_LETTER_EXTENSIONS: Check = should(
    "knative.dead-letter.extensions",
    "Knative Eventing docs: dead-letter extensions (not standardised: control-plane §Event Delivery MAY)",
    "dead letters carry knativeerrorcode, knativeerrordest and knativeerrordata",
);

const DELAY: Duration = Duration::from_millis(200);
const FAILURE_BODY: &str = "conformance: failing on purpose";

fn retried(id: &'static str) -> Check {
    must(id, SECTION, "this status is retried")
}

fn not_retried(id: &'static str) -> Check {
    should(
        id,
        SECTION,
        "this status is not retried and goes to the dead-letter sink",
    )
}

fn redirect(id: &'static str) -> Check {
    must(
        id,
        "data-plane §Event Acknowledgement and Delivery Retry (3xx: an error, not retried)",
        "a redirect is a failed delivery, not followed",
    )
}

fn success(id: &'static str) -> Check {
    should(
        id,
        SECTION,
        "this status completes the delivery (no retry, no dead letter)",
    )
}

pub fn triggers(ctx: &Ctx) -> Vec<TriggerSpec> {
    let delivery = |retry, policy, delay, dls: &str| DeliverySpec {
        retry: Some(retry),
        backoff_policy: Some(policy),
        backoff_delay: Some(delay),
        dead_letter_sink: Some(ctx.sink.url(dls)),
        format: None,
    };
    vec![
        ctx.trigger(
            "retry",
            "retry",
            "/retry",
            Some(delivery(
                1,
                BackoffPolicy::Linear,
                Duration::from_millis(100),
                "/dls-retry",
            )),
        ),
        ctx.trigger(
            "linear",
            "linear",
            "/linear",
            Some(delivery(3, BackoffPolicy::Linear, DELAY, "/dls-linear")),
        ),
        ctx.trigger(
            "exponential",
            "exponential",
            "/exponential",
            Some(delivery(
                3,
                BackoffPolicy::Exponential,
                DELAY,
                "/dls-exponential",
            )),
        ),
    ]
}

pub async fn run(ctx: &Ctx) -> Vec<Outcome> {
    let (mut table, mut backoff) = futures::join!(table(ctx), backoff(ctx));
    table.append(&mut backoff);
    table
}

/// One event per status code through the `retry` Trigger (retry 1).
async fn table(ctx: &Ctx) -> Vec<Outcome> {
    let ty = ctx.ty("retry");
    let id = |code: u16| ctx.id(&format!("status-{code}"));
    for &(code, _) in RETRIED {
        ctx.sink.script(
            "/retry",
            &id(code),
            vec![Answer::status(code), Answer::status(202)],
        );
    }
    for &(code, _) in NOT_RETRIED.iter().chain(SUCCESS) {
        ctx.sink
            .script("/retry", &id(code), vec![Answer::status(code)]);
    }
    for &(code, _) in REDIRECTS {
        let location = ctx.sink.url("/redirected");
        ctx.sink.script(
            "/retry",
            &id(code),
            vec![Answer::status(code).header("location", location.as_str())],
        );
    }
    let all = RETRIED
        .iter()
        .chain(NOT_RETRIED)
        .chain(REDIRECTS)
        .chain(SUCCESS);
    let mut refused = Vec::new();
    for &(code, check) in all {
        let answer = ctx.send(&Message::binary(&id(code), &ty)).await;
        if !answer.as_ref().is_ok_and(|a| a.accepted()) {
            refused.push((check, crate::ctx::describe(&answer)));
        }
    }
    let was_refused = |check: &str| {
        refused
            .iter()
            .find(|(c, _)| *c == check)
            .map(|(_, a)| a.clone())
    };
    let mut outcomes = Vec::new();

    // A second attempt, or a dead letter (then there will be none).
    let retries = futures::future::join_all(RETRIED.iter().map(|&(code, _)| {
        let id = id(code);
        async move {
            ctx.sink
                .wait(ctx.timeout, |all| {
                    let mine = all.iter().filter(|r| r.id() == Some(id.as_str()));
                    let (mut attempts, mut dead) = (0, false);
                    for r in mine {
                        attempts += usize::from(r.path == "/retry");
                        dead |= r.path == "/dls-retry";
                    }
                    (attempts >= 2 || dead).then_some(attempts >= 2)
                })
                .await
                .unwrap_or(false)
        }
    }))
    .await;
    for (&(code, check_id), retried_ok) in RETRIED.iter().zip(retries) {
        let check = retried(check_id);
        outcomes.push(if let Some(a) = was_refused(check_id) {
            check.fail(format!("the event was answered {a}"))
        } else {
            match retried_ok {
                true => check.pass("retried"),
                false => {
                    let n = ctx.sink.attempts("/retry", &id(code)).len();
                    let dead = ctx.sink.attempts("/dls-retry", &id(code)).len();
                    check.fail(format!(
                        "{n} attempt(s), no retry{}",
                        if dead > 0 {
                            "; dead-lettered instead"
                        } else {
                            ""
                        }
                    ))
                }
            }
        });
    }

    let dead = futures::future::join_all(
        NOT_RETRIED
            .iter()
            .map(|&(code, _)| ctx.sink.wait_event("/dls-retry", id(code), ctx.timeout)),
    )
    .await;
    for (&(code, check_id), dead) in NOT_RETRIED.iter().zip(dead) {
        let check = not_retried(check_id);
        let n = ctx.sink.attempts("/retry", &id(code)).len();
        outcomes.push(match (was_refused(check_id), dead) {
            (Some(a), _) => check.fail(format!("the event was answered {a}")),
            (None, None) => check.fail(format!(
                "{n} attempt(s), not dead-lettered within {:?}",
                ctx.timeout
            )),
            (None, Some(_)) => check.verdict(n == 1, format!("{n} attempt(s), then dead-lettered")),
        });
    }

    let redirects = futures::future::join_all(REDIRECTS.iter().map(|&(code, _)| {
        let id = id(code);
        async move {
            ctx.sink
                .wait(ctx.timeout, |all| {
                    all.iter()
                        .find(|r| {
                            r.id() == Some(id.as_str())
                                && (r.path == "/dls-retry" || r.path == "/redirected")
                        })
                        .map(|r| r.path.clone())
                })
                .await
        }
    }))
    .await;
    for (&(code, check_id), landed) in REDIRECTS.iter().zip(redirects) {
        let check = redirect(check_id);
        outcomes.push(match (was_refused(check_id), landed.as_deref()) {
            (Some(a), _) => check.fail(format!("the event was answered {a}")),
            (None, Some("/redirected")) => check.fail(format!("{code}: the redirect was followed")),
            (None, Some(_)) => check.pass("a failed delivery, dead-lettered"),
            (None, None) => check.fail(format!(
                "neither followed nor dead-lettered within {:?}",
                ctx.timeout
            )),
        });
    }

    // 2xx: the first attempt must be the only one; by now every retry above has happened,
    // and a quiet period covers the 100 ms backoff of the Trigger.
    let firsts = futures::future::join_all(
        SUCCESS
            .iter()
            .map(|&(code, _)| ctx.sink.wait_event("/retry", id(code), ctx.timeout)),
    )
    .await;
    tokio::time::sleep(ctx.quiet).await;
    for (&(code, check_id), first) in SUCCESS.iter().zip(firsts) {
        let check = success(check_id);
        let n = ctx.sink.attempts("/retry", &id(code)).len();
        let dead = ctx.sink.attempts("/dls-retry", &id(code)).len();
        outcomes.push(match (was_refused(check_id), first) {
            (Some(a), _) => check.fail(format!("the event was answered {a}")),
            (None, None) => check.fail(format!("not delivered within {:?}", ctx.timeout)),
            (None, Some(_)) => check.verdict(
                n == 1 && dead == 0,
                format!("{n} attempt(s), {dead} dead letter(s)"),
            ),
        });
    }
    outcomes
}

/// Always-failing events through the `linear` and `exponential` Triggers (retry 3, 200 ms).
async fn backoff(ctx: &Ctx) -> Vec<Outcome> {
    let linear = ctx.id("backoff-linear");
    let exponential = ctx.id("backoff-exponential");
    ctx.sink.script(
        "/linear",
        &linear,
        vec![Answer::status(500).body(FAILURE_BODY)],
    );
    ctx.sink
        .script("/exponential", &exponential, vec![Answer::status(503)]);
    let data = br#"{"failing": true}"#;
    let sent_linear = ctx
        .send(&Message::binary(&linear, &ctx.ty("linear")).data("application/json", data.to_vec()))
        .await;
    let sent_exponential = ctx
        .send(&Message::binary(&exponential, &ctx.ty("exponential")))
        .await;
    // Three retries with at most 200 + 400 + 800 ms of backoff: well within the timeout.
    let (dead_linear, dead_exponential) = futures::join!(
        ctx.sink
            .wait_event("/dls-linear", &linear, ctx.timeout + DELAY * 7),
        ctx.sink
            .wait_event("/dls-exponential", &exponential, ctx.timeout + DELAY * 7),
    );
    let mut tally = Tally::default();
    for (sent, name) in [(&sent_linear, "linear"), (&sent_exponential, "exponential")] {
        if !sent.as_ref().is_ok_and(|a| a.accepted()) {
            let why = format!(
                "{name}: the event was answered {}",
                crate::ctx::describe(sent)
            );
            for check in [RETRY_COUNT, DEAD_LETTER] {
                tally.bad(check, why.clone());
            }
        }
    }
    let linear_attempts = ctx.sink.attempts("/linear", &linear);
    let exponential_attempts = ctx.sink.attempts("/exponential", &exponential);
    for (attempts, dead, name) in [
        (&linear_attempts, &dead_linear, "linear"),
        (&exponential_attempts, &dead_exponential, "exponential"),
    ] {
        let n = attempts.len();
        tally.verdict_of(RETRY_COUNT, n >= 4, || {
            format!("{name}: retry 3 but {n} attempt(s) in all")
        });
        match dead {
            None => tally.bad(
                DEAD_LETTER,
                format!(
                    "{name}: nothing at the dead-letter sink within {:?}",
                    ctx.timeout
                ),
            ),
            Some(d) => dead_letter(&mut tally, name, d, data.as_slice(), name == "linear"),
        }
    }
    if let Some(d) = &dead_linear {
        extensions(ctx, &mut tally, d);
    } else {
        tally.bad(DEAD_LETTER_EXTENSIONS, "no dead letter to look at");
    }
    let gaps = |attempts: &[Recorded]| -> Vec<Duration> {
        attempts
            .windows(2)
            .map(|w| w[1].at.duration_since(w[0].at))
            .collect()
    };
    let show = |gaps: &[Duration]| {
        gaps.iter()
            .map(|g| format!("{}ms", g.as_millis()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // 10% under the minimum still passes: the sink stamps arrival, not the sender's send.
    let at_least = |d: Duration| d.mul_f64(0.9);
    let lin = gaps(&linear_attempts);
    if lin.is_empty() {
        tally.bad(BACKOFF_LINEAR, "no retry to measure");
    } else {
        let ok = lin.iter().all(|g| *g >= at_least(DELAY));
        tally.note(BACKOFF_LINEAR, format!("gaps {}", show(&lin)));
        tally.verdict_of(BACKOFF_LINEAR, ok, || {
            format!("gaps {} with backoffDelay 200ms", show(&lin))
        });
    }
    let exp = gaps(&exponential_attempts);
    if exp.is_empty() {
        tally.bad(BACKOFF_EXPONENTIAL, "no retry to measure");
    } else {
        let ok = exp
            .iter()
            .enumerate()
            .all(|(n, g)| *g >= at_least(DELAY * 2u32.pow(n as u32)));
        tally.note(BACKOFF_EXPONENTIAL, format!("gaps {}", show(&exp)));
        tally.verdict_of(BACKOFF_EXPONENTIAL, ok, || {
            format!(
                "gaps {} with backoffDelay 200ms (want >= 200, 400, 800ms)",
                show(&exp)
            )
        });
    }
    tally.into_outcomes()
}

fn dead_letter(tally: &mut Tally, name: &str, dead: &Recorded, data: &[u8], has_data: bool) {
    let Some(event) = dead.event() else {
        tally.bad(
            DEAD_LETTER,
            format!("{name}: the dead letter is not a CloudEvent"),
        );
        return;
    };
    let mut problems = Vec::new();
    if has_data {
        let got = event.data.as_ref().map(|d| d.bytes());
        if got.as_deref() != Some(data) {
            problems.push(format!(
                "{name}: data became {:?}",
                got.map(|g| String::from_utf8_lossy(&g).to_string())
            ));
        }
    }
    tally.record(DEAD_LETTER, problems);
}

fn extensions(ctx: &Ctx, tally: &mut Tally, dead: &Recorded) {
    let Some(event) = dead.event() else {
        tally.bad(
            DEAD_LETTER_EXTENSIONS,
            "the dead letter is not a CloudEvent",
        );
        return;
    };
    let mut problems = Vec::new();
    let code = event.attr("knativeerrorcode");
    if code != Some("500") {
        problems.push(format!("knativeerrorcode {code:?}, want \"500\""));
    }
    let dest = event.attr("knativeerrordest");
    let want = ctx.sink.url("/linear");
    if dest.map(|d| d.trim_end_matches('/')) != Some(want.as_str().trim_end_matches('/')) {
        problems.push(format!(
            "knativeerrordest {dest:?}, want {:?}",
            want.as_str()
        ));
    }
    let data = event.attr("knativeerrordata");
    let want = base64::engine::general_purpose::STANDARD.encode(FAILURE_BODY);
    if data != Some(want.as_str()) {
        problems.push(format!(
            "knativeerrordata {data:?}, want {want:?} (base64 of the body)"
        ));
    }
    tally.record(DEAD_LETTER_EXTENSIONS, problems);
}
