//! Fuzz target: parse arbitrary text, then evaluate it against a fixed event and check the
//! pretty-printer round-trip. Any panic (or a broken invariant) is a finding.
#![no_main]

use std::collections::HashMap;

use herald_cesql::{Expression, Value};
use libfuzzer_sys::fuzz_target;

fn event() -> HashMap<String, Value> {
    [
        ("specversion", Value::from("1.0")),
        ("id", Value::from("abc")),
        ("source", Value::from("https://example.com/x")),
        ("type", Value::from("com.example.t")),
        ("seq", Value::from("42")),
        ("count", Value::Integer(i32::MIN)),
        ("flag", Value::Boolean(true)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Expression::parse(text) {
        Ok(expr) => {
            let event = event();
            let evaluation = expr.evaluate(&event);
            let printed = expr.to_string();
            let reparsed = Expression::parse(&printed)
                .unwrap_or_else(|e| panic!("{text:?} printed as {printed:?} fails: {e}"));
            assert_eq!(reparsed, expr, "{text:?} printed as {printed:?}");
            assert_eq!(reparsed.evaluate(&event), evaluation);
        }
        Err(e) => assert!(e.position <= text.len() && text.is_char_boundary(e.position)),
    }
});
