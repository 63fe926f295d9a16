//! The broker's answers to what it must not accept: malformed events, other methods, an
//! address that does not exist, a body over its limit.

use crate::check::{must, should, Check, Outcome, Tally};
use crate::ctx::{describe, Ctx, Message, SOURCE};
use crate::wire;
use http::Method;

const MALFORMED: Check = must(
    "data-plane.ack.malformed",
    "data-plane §Event Acknowledgement and Delivery Retry",
    "a malformed event is not accepted (no 2xx)",
);
const MALFORMED_400: Check = should(
    "data-plane.ack.malformed-400",
    "data-plane §Event Acknowledgement and Delivery Retry (400: unparsable event)",
    "a malformed event is answered 400",
);
const INVALID_UTF8: Check = must(
    "http-binding.3.1.3.2.invalid-utf8",
    "http-binding §3.1.3.2 HTTP Header Values",
    "a percent-encoding that is not UTF-8 (%C0%A0) is rejected",
);
const METHODS: Check = should(
    "data-plane.verbs.other-methods",
    "data-plane §HTTP Verbs; RFC 7231 §6.5.5",
    "GET, PUT and DELETE on the ingress are answered 405",
);
const OPTIONS: Check = must(
    "data-plane.verbs.options",
    "data-plane §HTTP Verbs",
    "an OPTIONS answer, if implemented, allows POST",
);
const UNKNOWN: Check = must(
    "data-plane.ack.unknown-endpoint",
    "data-plane §Event Acknowledgement and Delivery Retry",
    "an event to an address that does not exist is not accepted",
);
const UNKNOWN_404: Check = should(
    "data-plane.ack.unknown-endpoint-404",
    "data-plane §Event Acknowledgement and Delivery Retry (404: endpoint does not exist)",
    "an address that does not exist is answered 404",
);
const TOO_LARGE: Check = should(
    "http.413.too-large",
    "RFC 7231 §6.5.11 Payload Too Large",
    "a body over the broker's limit is answered 413",
);

pub async fn run(ctx: &Ctx) -> Vec<Outcome> {
    let mut tally = Tally::default();
    let ty = ctx.ty("rejected");
    let id = |n: &str| ctx.id(n);
    let malformed: Vec<(&str, Message)> = vec![
        (
            "binary without ce-id",
            Message::binary(&id("no-id"), &ty).without("ce-id"),
        ),
        (
            "binary without ce-source",
            Message::binary(&id("no-source"), &ty).without("ce-source"),
        ),
        (
            "binary with ce-specversion 9.9",
            Message::binary(&id("bad-version"), &ty)
                .without("ce-specversion")
                .header("ce-specversion", "9.9"),
        ),
        (
            "structured that is not JSON",
            Message::structured(r#"{"specversion": "1.0", "id": "#),
        ),
        (
            "structured without type",
            Message::structured(format!(
                r#"{{"specversion":"1.0","id":"{}","source":"{SOURCE}"}}"#,
                id("no-type")
            )),
        ),
        (
            "structured with a numeric id",
            Message::structured(format!(
                r#"{{"specversion":"1.0","id":7,"source":"{SOURCE}","type":"{ty}"}}"#
            )),
        ),
        (
            "a batch that is not an array",
            Message::raw(
                wire::BATCH,
                format!(r#"{{"specversion":"1.0","id":"x","source":"{SOURCE}","type":"{ty}"}}"#)
                    .into_bytes(),
            ),
        ),
    ];
    for (name, message) in &malformed {
        let answer = ctx.send(message).await;
        let refused = answer.as_ref().is_ok_and(|a| !a.accepted());
        tally.verdict_of(MALFORMED, refused, || {
            format!("{name}: {}", describe(&answer))
        });
        let is_400 = answer.as_ref().is_ok_and(|a| a.status == 400);
        tally.verdict_of(MALFORMED_400, is_400, || {
            format!("{name}: {}", describe(&answer))
        });
    }

    let answer = ctx
        .send(&Message::binary(&id("overlong"), &ty).header("ce-subject", "%C0%A0"))
        .await;
    let refused = answer
        .as_ref()
        .is_ok_and(|a| (400..500).contains(&a.status));
    tally.verdict_of(INVALID_UTF8, refused, || {
        format!("answered {}", describe(&answer))
    });

    for method in [Method::GET, Method::PUT, Method::DELETE] {
        let answer = ctx
            .send(&Message::binary(&id("method"), &ty).method(method.clone()))
            .await;
        let is_405 = answer.as_ref().is_ok_and(|a| a.status == 405);
        tally.verdict_of(METHODS, is_405, || {
            format!("{method}: {}", describe(&answer))
        });
    }

    let answer = ctx
        .send(&Message::binary(&id("options"), &ty).method(Method::OPTIONS))
        .await;
    match &answer {
        Ok(a) if a.accepted() => {
            let allow = a
                .headers
                .get_all(http::header::ALLOW)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|m| m.trim().eq_ignore_ascii_case("POST"));
            tally.verdict_of(OPTIONS, allow, || {
                format!("answered {} without POST in Allow", a.status)
            });
        }
        // Not implemented: the requirement does not apply.
        Ok(_) => tally.ok(OPTIONS),
        Err(e) => tally.bad(OPTIONS, e.clone()),
    }

    let mut unknown = ctx.broker.clone();
    let missing = format!("{}-missing-{}", last_segment(&ctx.broker), ctx.run);
    if let Ok(mut segments) = unknown.path_segments_mut() {
        segments.pop_if_empty().pop().push(&missing);
    }
    let answer = ctx
        .send_to(&unknown, &Message::binary(&id("unknown"), &ty))
        .await;
    let refused = answer.as_ref().is_ok_and(|a| !a.accepted());
    tally.verdict_of(UNKNOWN, refused, || {
        format!("{unknown}: {}", describe(&answer))
    });
    let is_404 = answer.as_ref().is_ok_and(|a| a.status == 404);
    tally.verdict_of(UNKNOWN_404, is_404, || {
        format!("{unknown}: {}", describe(&answer))
    });

    let mut outcomes = tally.into_outcomes();
    outcomes.push(match ctx.max_body_bytes {
        None => TOO_LARGE.skip("the broker's limit is not known (--max-body-bytes)"),
        Some(limit) => {
            let body = vec![b'x'; limit + 1];
            let answer = ctx
                .send(
                    &Message::binary(&id("too-large"), &ty).data("application/octet-stream", body),
                )
                .await;
            let is_413 = answer.as_ref().is_ok_and(|a| a.status == 413);
            TOO_LARGE.verdict(
                is_413,
                format!("{} bytes: {}", limit + 1, describe(&answer)),
            )
        }
    });
    outcomes
}

fn last_segment(url: &url::Url) -> String {
    url.path_segments()
        .and_then(|mut s| s.rfind(|s| !s.is_empty()))
        .unwrap_or("broker")
        .to_string()
}
