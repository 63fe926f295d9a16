//! Events in every shape a sender may use (binary and structured, 1.0 and 0.3, batches,
//! percent-encoded, quoted and non-ASCII attributes, typed extensions, JSON and opaque data,
//! 64 KiB, trace context) through one plain Trigger, each compared on arrival with what was
//! sent: attributes as strings, data byte for byte.

use crate::adapter::TriggerSpec;
use crate::check::{must, should, Check, Outcome, Tally};
use crate::ctx::{describe, Ctx, Message, SOURCE};
use crate::sink::Recorded;
use crate::wire::{self, json_tokens, WireData};
use base64::Engine;
use std::collections::BTreeMap;

const BINARY: Check = must(
    "data-plane.protocol.binary",
    "data-plane §Minimum supported protocol",
    "a binary-mode 1.0 event is accepted and delivered",
);
const STRUCTURED: Check = must(
    "data-plane.protocol.structured",
    "data-plane §Minimum supported protocol",
    "a structured-mode 1.0 event is accepted and delivered",
);
const V03: Check = should(
    "data-plane.protocol.v03",
    "http-binding §3 (CloudEvents 0.3)",
    "0.3 events (binary, structured) are accepted and delivered as 0.3",
);
const BATCH: Check = should(
    "http-binding.3.3.batch",
    "http-binding §3.3 Batched Content Mode",
    "a JSON batch is accepted and each of its events delivered",
);
const POST: Check = must(
    "data-plane.verbs.post",
    "data-plane §HTTP Verbs",
    "deliveries use POST",
);
const PREFER: Check = must(
    "data-plane.reply.prefer-header",
    "data-plane §Derived (Reply) Events",
    "deliveries to a Trigger's subscriber carry Prefer: reply",
);
const DATA_BINARY_JSON: Check = must(
    "control-plane.routing.data.binary-json",
    "control-plane §Content Based Routing (MUST NOT modify event data)",
    "binary-mode JSON data (whitespace, trailing newline) delivered byte for byte",
);
const DATA_OCTETS: Check = must(
    "control-plane.routing.data.binary-octets",
    "control-plane §Content Based Routing (MUST NOT modify event data)",
    "binary-mode opaque data (every byte value) delivered byte for byte",
);
const DATA_STRUCTURED_JSON: Check = must(
    "control-plane.routing.data.structured-json",
    "control-plane §Content Based Routing (MUST NOT modify event data)",
    "structured JSON data keeps its numbers (big integers, decimals) and key order",
);
const DATA_BASE64: Check = must(
    "json-format.3.1.2.data-base64",
    "json-format §3.1.2 Payload Deserialization",
    "data_base64 is delivered as the same bytes",
);
const NO_INVENTED_CT: Check = must(
    "json-format.3.1.1.no-datacontenttype",
    "json-format §3.1.1 Payload Serialization",
    "binary data without a datacontenttype gets none",
);
const IMPLIED_JSON: Check = should(
    "json-format.3.1.2.implied-json",
    "json-format §3.1.2 Payload Deserialization",
    "data without datacontenttype is re-serialised as application/json",
);
const REQUIRED: Check = must(
    "ce.attributes.required",
    "CloudEvents §Required Attributes (data-plane: duplicates are told by source and id)",
    "id, source, type and specversion arrive unchanged",
);
const OPTIONAL: Check = should(
    "ce.attributes.optional",
    "CloudEvents §Notational Conventions (intermediaries SHOULD forward OPTIONAL attributes)",
    "time, subject, dataschema and extensions arrive as sent",
);
const DECODE: Check = must(
    "http-binding.3.1.3.2.decode",
    "http-binding §3.1.3.2 HTTP Header Values",
    "ce-* header values are percent-decoded (upper, lower case, unnecessary escapes)",
);
const QUOTED: Check = must(
    "http-binding.3.1.3.2.quoted",
    "http-binding §3.1.3.2 HTTP Header Values",
    "double-quoted ce-* header values are unescaped",
);
const ENCODE: Check = must(
    "http-binding.3.1.3.2.encode",
    "http-binding §3.1.3.2 HTTP Header Values",
    "delivered ce-* headers are percent-encoded printable ASCII",
);
const NON_ASCII: Check = must(
    "http-binding.3.1.3.2.non-ascii",
    "http-binding §3.1.3.2 HTTP Header Values",
    "non-ASCII attribute values arrive unchanged",
);
const TYPED: Check = must(
    "json-format.2.2.typed-extensions",
    "json-format §2.2 Type System Mapping",
    "integer and boolean extensions keep their canonical string form",
);
const SIZE: Check = must(
    "ce.size.64kib",
    "CloudEvents §Size Limits (intermediaries MUST forward 64 KiB)",
    "a 64 KiB event is accepted and delivered intact",
);
const TRACEPARENT: Check = should(
    "w3c.trace-context.propagated",
    "data-plane §Observability; W3C Trace Context",
    "a traceparent header on ingress continues (same trace id) on delivery",
);
const TRACE_EXTENSION: Check = should(
    "ce.distributed-tracing.extension",
    "CloudEvents Distributed Tracing §Using (carry the starting trace)",
    "the traceparent extension arrives unchanged",
);

const TOPIC: &str = "fidelity";
const PATH: &str = "/fidelity";

pub fn triggers(ctx: &Ctx) -> Vec<TriggerSpec> {
    vec![ctx.trigger("fidelity", TOPIC, PATH, None)]
}

/// What a delivery's data must be.
enum Expected {
    /// Exactly these bytes (binary-mode deliveries), or the same JSON tokens when a JSON body
    /// comes back as a structured `data` member.
    Bytes(Vec<u8>),
    /// The same JSON text up to whitespace between tokens.
    Json(String),
}

/// One event sent and what must arrive.
struct Case {
    name: &'static str,
    id: String,
    message: Message,
    /// Every attribute sent, as a string.
    attrs: BTreeMap<String, String>,
    data: Option<Expected>,
    accept: Check,
    /// Where differences in attributes other than the required ones count.
    attr_check: Check,
    data_check: Check,
}

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const TRACE_A: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const TRACE_B: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

fn cases(ctx: &Ctx) -> Vec<Case> {
    let ty = ctx.ty(TOPIC);
    let base = |id: &str| {
        attrs(&[
            ("specversion", "1.0"),
            ("id", id),
            ("source", SOURCE),
            ("type", &ty),
        ])
    };
    let with = |mut m: BTreeMap<String, String>, more: &[(&str, &str)]| {
        m.extend(attrs(more));
        m
    };
    let mut cases = Vec::new();

    let id = ctx.id("binary-json");
    let body = b"{\"world\": \"hello\"}\n".to_vec();
    cases.push(Case {
        name: "binary JSON",
        message: Message::binary(&id, &ty)
            .header("ce-time", "2018-04-05T03:56:24Z")
            .header("ce-subject", "order-42")
            .header("ce-dataschema", "https://example.com/schema/order")
            .header("ce-region", "eu")
            .data("application/json", body.clone()),
        attrs: with(
            base(&id),
            &[
                ("time", "2018-04-05T03:56:24Z"),
                ("subject", "order-42"),
                ("dataschema", "https://example.com/schema/order"),
                ("region", "eu"),
                ("datacontenttype", "application/json"),
            ],
        ),
        data: Some(Expected::Bytes(body)),
        accept: BINARY,
        attr_check: OPTIONAL,
        data_check: DATA_BINARY_JSON,
        id,
    });

    let id = ctx.id("binary-octets");
    let body: Vec<u8> = (0..4).flat_map(|_| 0..=255u8).collect();
    cases.push(Case {
        name: "binary octets",
        message: Message::binary(&id, &ty).data("application/octet-stream", body.clone()),
        attrs: with(
            base(&id),
            &[("datacontenttype", "application/octet-stream")],
        ),
        data: Some(Expected::Bytes(body)),
        accept: BINARY,
        attr_check: OPTIONAL,
        data_check: DATA_OCTETS,
        id,
    });

    let id = ctx.id("structured-json");
    let data = r#"{"zeta": 1, "alpha": 123456789012345678901234567890, "pi": 3.14159265358979323846, "list": [1.0, 2.50, "ünï"]}"#;
    cases.push(Case {
        name: "structured JSON",
        message: Message::structured(format!(
            r#"{{"specversion": "1.0", "id": "{id}", "source": "{SOURCE}", "type": "{ty}",
               "time": "2018-04-05T03:56:24.123456789Z", "subject": "order-43",
               "datacontenttype": "application/json", "data": {data}}}"#
        )),
        attrs: with(
            base(&id),
            &[
                ("time", "2018-04-05T03:56:24.123456789Z"),
                ("subject", "order-43"),
                ("datacontenttype", "application/json"),
            ],
        ),
        data: Some(Expected::Json(data.into())),
        accept: STRUCTURED,
        attr_check: OPTIONAL,
        data_check: DATA_STRUCTURED_JSON,
        id,
    });

    let id = ctx.id("structured-base64");
    let bytes = vec![0u8, 159, 146, 150, 255, b'{', b'\n'];
    let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    cases.push(Case {
        name: "structured data_base64",
        message: Message::structured(format!(
            r#"{{"specversion":"1.0","id":"{id}","source":"{SOURCE}","type":"{ty}","data_base64":"{b64}"}}"#
        )),
        attrs: base(&id),
        data: Some(Expected::Bytes(bytes)),
        accept: STRUCTURED,
        attr_check: NO_INVENTED_CT,
        data_check: DATA_BASE64,
        id,
    });

    let id = ctx.id("structured-string");
    cases.push(Case {
        name: "structured string data",
        message: Message::structured(format!(
            r#"{{"specversion":"1.0","id":"{id}","source":"{SOURCE}","type":"{ty}","data":"hello world"}}"#
        )),
        attrs: with(base(&id), &[("datacontenttype", "application/json")]),
        data: Some(Expected::Json("\"hello world\"".into())),
        accept: STRUCTURED,
        attr_check: IMPLIED_JSON,
        data_check: IMPLIED_JSON,
        id,
    });

    let id = ctx.id("percent");
    cases.push(Case {
        name: "percent-encoded",
        message: Message::binary(&id, &ty)
            .header("ce-subject", "Euro%20%E2%82%AC%20%F0%9F%98%80")
            .header("ce-exlower", "caf%c3%a9")
            .header("ce-exneedless", "%41bc"),
        attrs: with(
            base(&id),
            &[
                ("subject", "Euro \u{20ac} \u{1f600}"),
                ("exlower", "caf\u{e9}"),
                ("exneedless", "Abc"),
            ],
        ),
        data: None,
        accept: BINARY,
        attr_check: DECODE,
        data_check: DECODE,
        id,
    });

    let id = ctx.id("quoted");
    cases.push(Case {
        name: "quoted",
        message: Message::binary(&id, &ty).header("ce-subject", r#""a \"quoted\" value""#),
        attrs: with(base(&id), &[("subject", r#"a "quoted" value"#)]),
        data: None,
        accept: BINARY,
        attr_check: QUOTED,
        data_check: QUOTED,
        id,
    });

    let id = ctx.id("non-ascii");
    let text = "ünïcødé ☃ 😀 \"q\" 100% a\tb";
    let json_text = serde_json::to_string(text).expect("a string serialises");
    cases.push(Case {
        name: "non-ASCII structured",
        message: Message::structured(format!(
            r#"{{"specversion":"1.0","id":"{id}","source":"{SOURCE}","type":"{ty}","subject":{json_text},"exnote":{json_text}}}"#
        )),
        attrs: with(base(&id), &[("subject", text), ("exnote", text)]),
        data: None,
        accept: STRUCTURED,
        attr_check: NON_ASCII,
        data_check: NON_ASCII,
        id,
    });

    let id = ctx.id("typed");
    cases.push(Case {
        name: "typed extensions",
        message: Message::structured(format!(
            r#"{{"specversion":"1.0","id":"{id}","source":"{SOURCE}","type":"{ty}","exint":42,"exneg":-7,"exbool":true,"exfalse":false}}"#
        )),
        attrs: with(
            base(&id),
            &[("exint", "42"), ("exneg", "-7"), ("exbool", "true"), ("exfalse", "false")],
        ),
        data: None,
        accept: STRUCTURED,
        attr_check: TYPED,
        data_check: TYPED,
        id,
    });

    let id = ctx.id("trace");
    cases.push(Case {
        name: "trace context",
        message: Message::binary(&id, &ty)
            .header("traceparent", TRACE_A)
            .header("ce-traceparent", TRACE_B),
        attrs: with(base(&id), &[("traceparent", TRACE_B)]),
        data: None,
        accept: BINARY,
        attr_check: TRACE_EXTENSION,
        data_check: TRACE_EXTENSION,
        id,
    });

    let id = ctx.id("v03-binary");
    let mut v03 = base(&id);
    v03.insert("specversion".into(), "0.3".into());
    cases.push(Case {
        name: "0.3 binary",
        message: Message::binary(&id, &ty)
            .without("ce-specversion")
            .header("ce-specversion", "0.3")
            .header("ce-subject", "old")
            .data("text/plain", "plain text"),
        attrs: with(
            v03.clone(),
            &[("subject", "old"), ("datacontenttype", "text/plain")],
        ),
        data: Some(Expected::Bytes(b"plain text".to_vec())),
        accept: V03,
        attr_check: V03,
        data_check: V03,
        id,
    });

    let id = ctx.id("v03-structured");
    let mut v03 = base(&id);
    v03.insert("specversion".into(), "0.3".into());
    cases.push(Case {
        name: "0.3 structured",
        message: Message::structured(format!(
            r#"{{"specversion":"0.3","id":"{id}","source":"{SOURCE}","type":"{ty}","datacontenttype":"application/json","data":{{"v":3}}}}"#
        )),
        attrs: with(v03, &[("datacontenttype", "application/json")]),
        data: Some(Expected::Json(r#"{"v":3}"#.into())),
        accept: V03,
        attr_check: V03,
        data_check: V03,
        id,
    });

    let id = ctx.id("size");
    let body: Vec<u8> = (0..63 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    cases.push(Case {
        name: "64 KiB",
        message: Message::binary(&id, &ty).data("application/octet-stream", body.clone()),
        attrs: with(
            base(&id),
            &[("datacontenttype", "application/octet-stream")],
        ),
        data: Some(Expected::Bytes(body)),
        accept: SIZE,
        attr_check: SIZE,
        data_check: SIZE,
        id,
    });
    cases
}

/// The two events of the batch; sent together in one request.
fn batch(ctx: &Ctx) -> (Message, Vec<Case>) {
    let ty = ctx.ty(TOPIC);
    let mut cases = Vec::new();
    let mut items = Vec::new();
    for n in 1..=2 {
        let id = ctx.id(&format!("batch-{n}"));
        items.push(format!(
            r#"{{"specversion":"1.0","id":"{id}","source":"{SOURCE}","type":"{ty}","subject":"item {n}","datacontenttype":"text/plain","data":"item {n}"}}"#
        ));
        cases.push(Case {
            name: "batch",
            message: Message::raw(wire::BATCH, Vec::new()),
            attrs: attrs(&[
                ("specversion", "1.0"),
                ("id", &id),
                ("source", SOURCE),
                ("type", &ty),
                ("subject", &format!("item {n}")),
                ("datacontenttype", "text/plain"),
            ]),
            data: Some(Expected::Bytes(format!("item {n}").into_bytes())),
            accept: BATCH,
            attr_check: BATCH,
            data_check: BATCH,
            id,
        });
    }
    let body = format!("[{}]", items.join(","));
    (Message::raw(wire::BATCH, body.into_bytes()), cases)
}

pub async fn run(ctx: &Ctx) -> Vec<Outcome> {
    let mut tally = Tally::default();
    let mut sent = Vec::new();
    for case in cases(ctx) {
        let answer = ctx.send(&case.message).await;
        sent.push((case, answer));
    }
    let (message, batch_cases) = batch(ctx);
    let answer = ctx.send(&message).await;
    for case in batch_cases {
        sent.push((case, answer.clone()));
    }
    let arrivals = futures::future::join_all(
        sent.iter()
            .map(|(case, _)| ctx.sink.wait_event(PATH, &case.id, ctx.timeout)),
    )
    .await;
    for ((case, answer), got) in sent.iter().zip(arrivals) {
        judge(ctx, &mut tally, case, answer, got);
    }
    tally.into_outcomes()
}

fn judge(
    ctx: &Ctx,
    tally: &mut Tally,
    case: &Case,
    answer: &Result<crate::ctx::Answered, String>,
    got: Option<Recorded>,
) {
    let accepted = answer.as_ref().is_ok_and(|a| a.accepted());
    if !accepted {
        tally.bad(
            case.accept,
            format!("{}: answered {}", case.name, describe(answer)),
        );
        return;
    }
    let Some(got) = got else {
        let why = format!(
            "{}: accepted ({}) but not delivered within {:?}",
            case.name,
            describe(answer),
            ctx.timeout
        );
        tally.bad(case.accept, why.clone());
        if case.attr_check.id != case.accept.id {
            tally.bad(case.attr_check, why);
        }
        return;
    };
    tally.ok(case.accept);
    tally.verdict_of(POST, got.method == http::Method::POST, || {
        format!("{}: delivered with {}", case.name, got.method)
    });
    let prefer = got
        .headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("reply")));
    tally.verdict_of(PREFER, prefer, || {
        format!("{}: no Prefer: reply", case.name)
    });
    encoding(tally, case, &got);
    if case.attr_check.id == TRACE_EXTENSION.id {
        trace_header(tally, &got);
    }
    let event = match &got.event {
        Ok(Some(e)) => e,
        Ok(None) => {
            tally.bad(
                case.attr_check,
                format!("{}: delivery is not a CloudEvent", case.name),
            );
            return;
        }
        Err(e) => {
            tally.bad(
                case.attr_check,
                format!("{}: delivery does not parse: {e}", case.name),
            );
            return;
        }
    };
    let mut required = Vec::new();
    let mut other = Vec::new();
    for (name, want) in &case.attrs {
        let have = event.attr(name);
        if have != Some(want.as_str()) {
            let problem = format!("{}: {name} sent {want:?}, delivered {have:?}", case.name);
            if ["specversion", "id", "source", "type"].contains(&name.as_str()) {
                required.push(problem);
            } else {
                other.push(problem);
            }
        }
    }
    if case.attr_check.id == NO_INVENTED_CT.id {
        if let Some(ct) = event.attr("datacontenttype") {
            other.push(format!("{}: datacontenttype {ct:?} was added", case.name));
        }
    }
    tally.record(REQUIRED, required);
    tally.record(case.attr_check, other);
    if let Some(want) = &case.data {
        let problem = same_data(want, event.data.as_ref()).err();
        tally.record(
            case.data_check,
            problem
                .map(|p| format!("{}: {p}", case.name))
                .into_iter()
                .collect(),
        );
    }
}

/// Every ce-* header of a binary-mode delivery is printable ASCII with space, `"` and `%`
/// only as escapes (a `%` must start one).
fn encoding(tally: &mut Tally, case: &Case, got: &Recorded) {
    let mut problems = Vec::new();
    for (name, value) in &got.headers {
        if !name.as_str().starts_with("ce-") {
            continue;
        }
        let raw = value.as_bytes();
        let printable = raw.iter().all(|b| (0x21..=0x7e).contains(b) && *b != b'"');
        let escapes_ok = raw.iter().enumerate().all(|(i, b)| {
            *b != b'%'
                || raw
                    .get(i + 1..i + 3)
                    .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
        });
        if !printable || !escapes_ok {
            problems.push(format!(
                "{}: header {name} is {:?}",
                case.name,
                String::from_utf8_lossy(raw)
            ));
        }
    }
    tally.record(ENCODE, problems);
}

/// The W3C `traceparent` header on the delivery continues trace A.
fn trace_header(tally: &mut Tally, got: &Recorded) {
    let trace_id = |tp: &str| tp.split('-').nth(1).map(str::to_string);
    let want = trace_id(TRACE_A);
    match got.header("traceparent") {
        Some(tp) if trace_id(tp) == want => tally.ok(TRACEPARENT),
        Some(tp) => tally.bad(
            TRACEPARENT,
            format!("delivered traceparent {tp:?}, not trace {want:?}"),
        ),
        None => tally.bad(TRACEPARENT, "no traceparent header on the delivery"),
    }
}

fn same_data(want: &Expected, got: Option<&WireData>) -> Result<(), String> {
    let Some(got) = got else {
        return Err("data missing".into());
    };
    let show = |b: &[u8]| {
        let s = String::from_utf8_lossy(b);
        let short: String = s.chars().take(80).collect();
        if s.chars().count() > 80 {
            format!("{short:?}... ({} bytes)", b.len())
        } else {
            format!("{short:?}")
        }
    };
    let same = match (want, got) {
        (Expected::Bytes(w), WireData::Bytes(g)) => w == g,
        (Expected::Bytes(w), WireData::Json(g)) => json_tokens(w) == json_tokens(g.as_bytes()),
        (Expected::Bytes(w), WireData::Text(g)) => w == g.as_bytes(),
        (Expected::Json(w), g) => json_tokens(w.as_bytes()) == json_tokens(&g.bytes()),
    };
    if same {
        return Ok(());
    }
    let want = match want {
        Expected::Bytes(b) => b.clone(),
        Expected::Json(s) => s.clone().into_bytes(),
    };
    Err(format!(
        "data sent {}, delivered {}",
        show(&want),
        show(&got.bytes())
    ))
}
