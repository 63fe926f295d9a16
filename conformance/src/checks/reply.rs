//! Replies: a subscriber answering `200` with an event (binary or structured) has it routed
//! back into the Broker, where another Trigger picks it up; an event in a `202` is not a reply.

use crate::adapter::TriggerSpec;
use crate::check::{must, Check, Outcome};
use crate::ctx::{describe, Ctx, Message, SOURCE};
use crate::sink::Answer;
use crate::wire;

const REPLY_BINARY: Check = must(
    "control-plane.delivery.reply-binary",
    "control-plane §Event Delivery (a reply MUST be added to the Broker)",
    "a 200 with a binary-mode event is a reply, routed to the Broker's Triggers",
);
const REPLY_STRUCTURED: Check = must(
    "control-plane.delivery.reply-structured",
    "data-plane §Derived (Reply) Events (binary or structured)",
    "a 200 with a structured-mode event is a reply, routed to the Broker's Triggers",
);
const NOT_A_REPLY: Check = must(
    "data-plane.reply.202-not-routed",
    "data-plane §Derived (Reply) Events",
    "an event in a 202 response is not processed as a reply",
);

const PATH: &str = "/reply";
const REPLIED: &str = "/replied";

pub fn triggers(ctx: &Ctx) -> Vec<TriggerSpec> {
    vec![
        ctx.trigger("reply", "reply", PATH, None),
        ctx.trigger("replied", "replied", REPLIED, None),
    ]
}

/// A binary-mode reply event `id` of the `replied` topic, in a response with `status`.
fn binary_reply(ctx: &Ctx, status: u16, id: &str) -> Answer {
    Answer::status(status)
        .header("ce-specversion", "1.0")
        .header("ce-id", id)
        .header("ce-source", format!("{SOURCE}/replier"))
        .header("ce-type", ctx.ty("replied"))
        .header("content-type", "application/json")
        .body(format!(r#"{{"reply": "{id}"}}"#))
}

pub async fn run(ctx: &Ctx) -> Vec<Outcome> {
    let ty = ctx.ty("reply");
    let binary = ctx.id("reply-binary");
    let structured = ctx.id("reply-structured");
    let accepted = ctx.id("reply-202");
    let reply_id = |id: &str| format!("{id}-reply");
    ctx.sink.script(
        PATH,
        &binary,
        vec![binary_reply(ctx, 200, &reply_id(&binary))],
    );
    ctx.sink.script(
        PATH,
        &accepted,
        vec![binary_reply(ctx, 202, &reply_id(&accepted))],
    );
    let structured_reply = format!(
        r#"{{"specversion":"1.0","id":"{}","source":"{SOURCE}/replier","type":"{}","datacontenttype":"application/json","data":{{"reply": "structured"}}}}"#,
        reply_id(&structured),
        ctx.ty("replied")
    );
    ctx.sink.script(
        PATH,
        &structured,
        vec![Answer::status(200)
            .header("content-type", wire::STRUCTURED)
            .body(structured_reply)],
    );
    let mut outcomes = Vec::new();
    // The 202 first, so that by the time the 200 replies are back it had every chance.
    let mut sent = Vec::new();
    for id in [&accepted, &binary, &structured] {
        sent.push(ctx.send(&Message::binary(id, &ty)).await);
    }
    let (got_binary, got_structured) = futures::join!(
        ctx.sink.wait_event(REPLIED, reply_id(&binary), ctx.timeout),
        ctx.sink
            .wait_event(REPLIED, reply_id(&structured), ctx.timeout),
    );
    let judge = |check: Check,
                 answer: &Result<_, String>,
                 got: Option<crate::sink::Recorded>,
                 data: &str| {
        if !answer
            .as_ref()
            .is_ok_and(|a: &crate::ctx::Answered| a.accepted())
        {
            return check.fail(format!("the event was answered {}", describe(answer)));
        }
        match got {
            None => check.fail(format!(
                "no reply reached the Broker's Triggers within {:?}",
                ctx.timeout
            )),
            Some(r) => {
                let delivered = r.event().and_then(|e| e.data.clone()).map(|d| d.bytes());
                let want = wire::json_tokens(data.as_bytes());
                let same = delivered
                    .as_deref()
                    .is_some_and(|d| wire::json_tokens(d) == want);
                check.verdict(
                    same,
                    if same {
                        "routed with its data".to_string()
                    } else {
                        format!(
                            "routed, but data became {:?}",
                            delivered.map(|d| String::from_utf8_lossy(&d).to_string())
                        )
                    },
                )
            }
        }
    };
    outcomes.push(judge(
        REPLY_BINARY,
        &sent[1],
        got_binary,
        &format!(r#"{{"reply": "{}"}}"#, reply_id(&binary)),
    ));
    outcomes.push(judge(
        REPLY_STRUCTURED,
        &sent[2],
        got_structured,
        r#"{"reply": "structured"}"#,
    ));
    let original = ctx.sink.wait_event(PATH, &accepted, ctx.timeout).await;
    outcomes.push(if original.is_none() {
        NOT_A_REPLY.fail(format!(
            "the event itself ({}) was not delivered within {:?}",
            describe(&sent[0]),
            ctx.timeout
        ))
    } else {
        let routed = ctx
            .sink
            .wait(ctx.quiet, |all| {
                all.iter()
                    .find(|r| r.id() == Some(reply_id(&accepted).as_str()))
                    .map(|r| r.path.clone())
            })
            .await;
        match routed {
            Some(path) => NOT_A_REPLY.fail(format!("the 202's event was routed to {path}")),
            None => NOT_A_REPLY.pass(format!("not routed within {:?}", ctx.quiet)),
        }
    });
    outcomes
}
