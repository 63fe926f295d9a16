//! Property tests: parsing never panics and reports in-bounds positions, the pretty-printer
//! round-trips, and evaluation never panics, on arbitrary text, token soup and generated
//! well-formed expressions.

use std::collections::HashMap;

use herald_cesql::{Expression, Value};
use proptest::prelude::*;

const IDENTS: &[&str] = &[
    "id", "source", "type", "seq", "flag", "count", "missing", "x1",
];
const FUNCTIONS: &[&str] = &[
    "int",
    "BOOL",
    "String",
    "IS_INT",
    "is_bool",
    "IS_STRING",
    "abs",
    "LENGTH",
    "concat",
    "CONCAT_WS",
    "lower",
    "UPPER",
    "trim",
    "LEFT",
    "right",
    "substring",
    "NOPE",
];

/// Events with a few fixed attributes and some random ones.
fn event_strategy() -> impl Strategy<Value = HashMap<String, Value>> {
    let value = prop_oneof![
        any::<i32>().prop_map(Value::Integer),
        any::<bool>().prop_map(Value::Boolean),
        ".{0,8}".prop_map(Value::String),
        "-?[0-9]{1,10}".prop_map(Value::String),
        Just(Value::from("TRUE")),
    ];
    prop::collection::hash_map(
        prop::sample::select(IDENTS).prop_map(str::to_owned),
        value,
        0..6,
    )
}

fn fixed_event() -> HashMap<String, Value> {
    [
        ("id", Value::from("abc")),
        ("source", Value::from("https://x/y")),
        ("type", Value::from("t")),
        ("seq", Value::from("42")),
        ("count", Value::Integer(-7)),
        ("flag", Value::Boolean(true)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Randomly re-cases an ASCII keyword or name.
fn recase(word: &str, mask: u32) -> String {
    word.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 32) & 1 == 1 {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect()
}

/// A string literal for `s`, in either quote style, escaped for the lexer.
fn quote(s: &str, double: bool) -> String {
    let q = if double { '"' } else { '\'' };
    let mut out = String::from(q);
    for c in s.chars() {
        if c == q || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push(q);
    out
}

fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i32>().prop_map(|i| i.to_string()),
        (0..1000i32).prop_map(|i| format!("+{i}")),
        (r#"[a-z'"\\%_ ]{0,6}|.{0,4}"#, any::<bool>()).prop_map(|(s, d)| quote(&s, d)),
        (prop::sample::select(&["true", "false"][..]), any::<u32>())
            .prop_map(|(w, m)| recase(w, m)),
        (prop::sample::select(IDENTS), any::<u32>()).prop_map(|(w, m)| recase(w, m)),
        (prop::sample::select(IDENTS), any::<u32>())
            .prop_map(|(w, m)| format!("{} {w}", recase("exists", m))),
    ]
}

/// Well-formed expression text; sub-expressions are sometimes parenthesized, sometimes not,
/// so precedence interactions are exercised too.
fn expression_text() -> impl Strategy<Value = String> {
    leaf().prop_recursive(5, 48, 4, |inner| {
        let maybe_paren =
            (inner.clone(), any::<bool>()).prop_map(|(e, p)| if p { format!("({e})") } else { e });
        let binops = prop::sample::select(
            &[
                "+", "-", "*", "/", "%", "=", "!=", "<>", "<", "<=", ">", ">=", "AND", "or", "Xor",
            ][..],
        );
        prop_oneof![
            (maybe_paren.clone(), binops, maybe_paren.clone())
                .prop_map(|(l, op, r)| format!("{l} {op} {r}")),
            (
                prop::sample::select(&["NOT", "not", "-"][..]),
                maybe_paren.clone()
            )
                .prop_map(|(op, e)| format!("{op} {e}")),
            (
                maybe_paren.clone(),
                any::<bool>(),
                r"[a-z%_\\]{0,5}",
                any::<bool>()
            )
                .prop_map(|(e, neg, p, d)| format!(
                    "{e} {}LIKE {}",
                    if neg { "NOT " } else { "" },
                    quote(&p, d)
                )),
            (
                maybe_paren.clone(),
                any::<bool>(),
                prop::collection::vec(inner.clone(), 1..4)
            )
                .prop_map(|(e, neg, set)| format!(
                    "{e} {}IN ({})",
                    if neg { "NOT " } else { "" },
                    set.join(", ")
                )),
            (
                prop::sample::select(FUNCTIONS),
                prop::collection::vec(inner.clone(), 0..4)
            )
                .prop_map(|(f, args)| format!("{f}({})", args.join(", "))),
            inner.prop_map(|e| format!("({e})")),
        ]
    })
}

/// Token soup: mostly valid tokens in random order, with or without spaces.
fn token_soup() -> impl Strategy<Value = String> {
    let token = prop::sample::select(
        &[
            "(",
            ")",
            ",",
            "+",
            "-",
            "*",
            "/",
            "%",
            "=",
            "!=",
            "<>",
            "<",
            "<=",
            ">",
            ">=",
            "!",
            "AND",
            "or",
            "XOR",
            "NOT",
            "LIKE",
            "EXISTS",
            "IN",
            "TRUE",
            "false",
            "0",
            "1",
            "2147483647",
            "2147483648",
            "'a'",
            "\"b\"",
            "'%\\_'",
            "'",
            "\"",
            "\\",
            "id",
            "Missing",
            "x_y",
            "abs",
            "CONCAT",
            "substring",
            "é",
            "\n",
            "_",
        ][..],
    );
    (prop::collection::vec(token, 0..24), any::<bool>())
        .prop_map(|(tokens, spaced)| tokens.join(if spaced { " " } else { "" }))
}

/// Every successful parse must print to text that parses back to an equal expression
/// with the same canonical text and the same evaluation result.
fn check_round_trip(text: &str, event: &HashMap<String, Value>) -> Result<(), TestCaseError> {
    match Expression::parse(text) {
        Ok(expr) => {
            let printed = expr.to_string();
            let reparsed = Expression::parse(&printed).map_err(|e| {
                TestCaseError::fail(format!("{text:?} printed as {printed:?}: {e}"))
            })?;
            prop_assert_eq!(&reparsed, &expr, "{:?} printed as {:?}", text, printed);
            prop_assert_eq!(reparsed.to_string(), printed);
            let evaluation = expr.evaluate(event);
            prop_assert_eq!(reparsed.evaluate(event), evaluation.clone());
            prop_assert_eq!(
                expr.matches(event),
                evaluation.errors.is_empty() && evaluation.value == Value::Boolean(true)
            );
        }
        Err(e) => {
            prop_assert!(
                e.position <= text.len(),
                "position {} past {}",
                e.position,
                text.len()
            );
            prop_assert!(text.is_char_boundary(e.position));
            prop_assert!(e.line >= 1 && e.column >= 1);
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// (a) + (c): arbitrary text never panics; errors point inside the input.
    #[test]
    fn arbitrary_text(text in any::<String>(), event in event_strategy()) {
        check_round_trip(&text, &event)?;
    }

    /// (a) + (c) on inputs much more likely to get past the lexer.
    #[test]
    fn token_soup_text(text in token_soup(), event in event_strategy()) {
        check_round_trip(&text, &event)?;
    }

    /// (b) + (c): generated well-formed expressions parse, round-trip through the printer
    /// and evaluate without panicking.
    #[test]
    fn generated_expressions(text in expression_text(), event in event_strategy()) {
        prop_assert!(Expression::parse(&text).is_ok(), "{:?}: {:?}", text, Expression::parse(&text).err());
        check_round_trip(&text, &event)?;
        check_round_trip(&text, &fixed_event())?;
    }
}

/// Deep nesting is rejected cleanly instead of overflowing the stack, in a thread with the
/// default 2 MiB test stack and an unoptimized build.
#[test]
fn deepest_accepted_expressions_evaluate() {
    let depth = herald_cesql::MAX_DEPTH;
    let unary = "NOT -".repeat(depth / 2 - 1) + "1";
    let nested_calls = "ABS(".repeat(depth - 1) + "-1" + &")".repeat(depth - 1);
    let left_chain = vec!["1"; depth].join(" - ");
    let mixed = (0..depth / 2).fold(String::from("x1"), |acc, i| {
        if i % 2 == 0 {
            format!("({acc}) AND x1")
        } else {
            format!("({acc}) OR x1")
        }
    });
    for text in [unary, nested_calls, left_chain, mixed] {
        let expr = Expression::parse(&text).unwrap_or_else(|e| panic!("{e}"));
        let _ = expr.evaluate(&fixed_event());
        assert_eq!(Expression::parse(&expr.to_string()).as_ref(), Ok(&expr));
        // One more level is refused.
        let deeper = format!("NOT ({text})");
        if let Err(e) = Expression::parse(&format!("-({deeper})")) {
            assert!(e.message.contains("nested"), "{e}");
        }
    }
}
