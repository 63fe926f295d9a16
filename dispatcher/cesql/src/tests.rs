//! Evaluation tests per operator family, through the public API.

use super::*;

fn event() -> HashMap<String, Value> {
    [
        ("specversion", Value::from("1.0")),
        ("id", Value::from("id-1")),
        ("source", Value::from("https://example.com/src")),
        ("type", Value::from("com.example.created")),
        ("seq", Value::from("10")),
        ("count", Value::Integer(3)),
        ("flag", Value::Boolean(true)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Value and error kinds of `text` evaluated against [`event`].
fn run(text: &str) -> (Value, Vec<&'static str>) {
    let expr = Expression::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    let evaluation = expr.evaluate(&event());
    let kinds = evaluation.errors.iter().map(EvalError::kind).collect();
    (evaluation.value, kinds)
}

fn ok(text: &str) -> Value {
    let (value, errors) = run(text);
    assert!(errors.is_empty(), "{text}: unexpected errors {errors:?}");
    value
}

fn int(v: i32) -> Value {
    Value::Integer(v)
}

fn boolean(v: bool) -> Value {
    Value::Boolean(v)
}

fn string(v: &str) -> Value {
    Value::from(v)
}

#[test]
fn arithmetic() {
    assert_eq!(ok("4 * 2 + 4 / 2"), int(10));
    assert_eq!(ok("-7 / 2"), int(-3));
    assert_eq!(ok("-7 % 2"), int(-1));
    assert_eq!(ok("7 % -2"), int(1));
    assert_eq!(ok("seq + count"), int(13));
    assert_eq!(ok("'5' * TRUE"), int(5));
    assert_eq!(ok("-2147483648 % -1"), int(0));
    assert_eq!(run("5 / 0"), (int(0), vec!["math"]));
    assert_eq!(run("'x' + 1"), (int(1), vec!["cast"]));
}

#[test]
fn overflow_saturates_with_math_error() {
    assert_eq!(run("2147483647 + 1"), (int(i32::MAX), vec!["math"]));
    assert_eq!(run("-2147483648 - 1"), (int(i32::MIN), vec!["math"]));
    assert_eq!(run("65536 * 65536"), (int(i32::MAX), vec!["math"]));
    assert_eq!(run("-2147483648 / -1"), (int(i32::MAX), vec!["math"]));
    assert_eq!(run("-(-2147483648)"), (int(i32::MAX), vec!["math"]));
}

#[test]
fn unary() {
    assert_eq!(ok("--10"), int(10));
    assert_eq!(ok("-seq"), int(-10));
    assert_eq!(ok("-TRUE"), int(-1));
    assert_eq!(ok("NOT flag"), boolean(false));
    assert_eq!(ok("NOT 'false'"), boolean(true));
    assert_eq!(run("NOT 10"), (boolean(true), vec!["cast"]));
    assert_eq!(
        run("NOT missing"),
        (boolean(false), vec!["missingAttribute"])
    );
    assert_eq!(run("-missing"), (int(0), vec!["missingAttribute"]));
}

#[test]
fn comparison() {
    assert_eq!(ok("seq = 10"), boolean(true));
    assert_eq!(ok("10 = seq"), boolean(true));
    assert_eq!(ok("seq < 9"), boolean(false));
    assert_eq!(ok("'9' < seq"), boolean(true));
    assert_eq!(ok("count >= 3 AND count <= 3"), boolean(true));
    assert_eq!(ok("'abc' <> 'ABC'"), boolean(true));
    assert_eq!(ok("TRUE = 'true'"), boolean(true));
    assert_eq!(ok("TRUE = 'TRUE'"), boolean(false));
    assert_eq!(ok("'TRUE' = TRUE"), boolean(true));
    assert_eq!(run("'a' < 1"), (boolean(true), vec!["cast"]));
    assert_eq!(
        run("missing = 2"),
        (boolean(false), vec!["missingAttribute"])
    );
}

#[test]
fn logic() {
    assert_eq!(ok("TRUE XOR FALSE"), boolean(true));
    assert_eq!(ok("TRUE XOR TRUE XOR TRUE"), boolean(true));
    assert_eq!(ok("FALSE AND (1 / 0 = 0)"), boolean(false));
    assert_eq!(ok("TRUE OR (1 / 0 = 0)"), boolean(true));
    assert_eq!(run("TRUE AND (1 != 1 / 0)"), (boolean(false), vec!["math"]));
    assert_eq!(run("FALSE XOR (1 / 0 = 0)"), (boolean(false), vec!["math"]));
    assert_eq!(ok("'true' AND 'TRUE'"), boolean(true));
    // Left to right at one level: (FALSE AND TRUE) OR TRUE.
    assert_eq!(ok("FALSE AND TRUE OR TRUE"), boolean(true));
    // An error in an earlier link makes the whole chain false, later links still run.
    assert_eq!(
        run("missing OR TRUE OR (1 / 0 = 0)"),
        (boolean(false), vec!["missingAttribute", "math"])
    );
    assert_eq!(
        run("(missing = 1) OR (1 / 0 = 0)"),
        (boolean(false), vec!["missingAttribute", "math"])
    );
    assert_eq!(run("10 AND TRUE"), (boolean(false), vec!["cast"]));
}

#[test]
fn like_operator() {
    assert_eq!(ok("type LIKE 'com.%.created'"), boolean(true));
    assert_eq!(ok("type NOT LIKE 'com.%'"), boolean(false));
    assert_eq!(ok("count LIKE '_'"), boolean(true));
    assert_eq!(ok("flag LIKE 'tr%'"), boolean(true));
    assert_eq!(ok("'50%' LIKE '50\\%'"), boolean(true));
    assert_eq!(
        run("missing NOT LIKE 'x'"),
        (boolean(false), vec!["missingAttribute"])
    );
}

#[test]
fn in_operator() {
    assert_eq!(ok("count IN (1, 2, 3)"), boolean(true));
    assert_eq!(ok("seq IN (10)"), boolean(true));
    assert_eq!(ok("seq IN (11, 12)"), boolean(false));
    assert_eq!(ok("seq IN ('10')"), boolean(true));
    assert_eq!(ok("count NOT IN ('1', '2')"), boolean(true));
    assert_eq!(ok("TRUE IN ('true')"), boolean(true));
    // Stops at the first match, so a later bad element raises nothing.
    assert_eq!(ok("1 IN (1, 'x')"), boolean(true));
    assert_eq!(run("1 IN ('x', 1)"), (boolean(false), vec!["cast"]));
    assert_eq!(
        run("1 NOT IN (missing)"),
        (boolean(false), vec!["missingAttribute"])
    );
    assert_eq!(
        run("missing IN (1)"),
        (boolean(false), vec!["missingAttribute"])
    );
}

#[test]
fn exists_and_attributes() {
    assert_eq!(ok("EXISTS id"), boolean(true));
    assert_eq!(ok("EXISTS Subject"), boolean(false));
    assert_eq!(ok("NOT EXISTS subject"), boolean(true));
    assert_eq!(ok("COUNT"), int(3));
    assert_eq!(run("subject"), (boolean(false), vec!["missingAttribute"]));
}

#[test]
fn functions() {
    assert_eq!(ok("length(source)"), int(23));
    assert_eq!(ok("Concat(id, '/', count)"), string("id-1/3"));
    assert_eq!(ok("LEFT(type, seq)"), string("com.exampl"));
    assert_eq!(ok("SUBSTRING(type, -7)"), string("created"));
    assert_eq!(ok("SUBSTRING(type, 5, '7')"), string("example"));
    assert_eq!(ok("ABS(-seq)"), int(10));
    assert_eq!(ok("IS_INT(seq) AND NOT IS_INT(type)"), boolean(true));
    assert_eq!(ok("IS_BOOL(flag)"), boolean(true));
    assert_eq!(ok("IS_STRING(1)"), boolean(true));
    assert_eq!(ok("INT(seq) + 1"), int(11));
    assert_eq!(run("ABS('x')"), (int(0), vec!["cast"]));
    assert_eq!(run("LENGTH(missing)"), (int(0), vec!["missingAttribute"]));
    assert_eq!(
        run("IS_INT(missing)"),
        (boolean(false), vec!["missingAttribute"])
    );
    assert_eq!(
        run("NOPE(1 / 0)"),
        (boolean(false), vec!["missingFunction"])
    );
    assert_eq!(
        run("LEFT('abc', -1) = 'abc'"),
        (boolean(false), vec!["functionEvaluation"])
    );
    let err = Expression::parse("nope(1, 2)").unwrap().evaluate(&event());
    assert_eq!(
        err.errors[0].to_string(),
        "missing function: no function NOPE taking 2 argument(s)"
    );
}

#[test]
fn matches_requires_true_without_errors() {
    let e = event();
    assert!(Expression::parse("count = 3").unwrap().matches(&e));
    assert!(!Expression::parse("count").unwrap().matches(&e));
    assert!(!Expression::parse("'true'").unwrap().matches(&e));
    assert!(!Expression::parse("NOT 10").unwrap().matches(&e));
    assert!(Expression::parse("count = 3 OR missing = 1")
        .unwrap()
        .matches(&e));
    assert!(!Expression::parse("missing = 1 OR count = 3")
        .unwrap()
        .matches(&e));
}

#[test]
fn display_round_trips() {
    for text in [
        "a = 1 AND (b OR c) XOR NOT d",
        "-(-5) + -5 - -(x) * (3 % y)",
        "CONCAT_WS('\\'', \"\\\"\", 'a\\\\b') LIKE 'x\\_%'",
        "x NOT IN (1, (2 + 3), EXISTS y) IN (TRUE)",
        "NOT NOT -x",
    ] {
        let first = Expression::parse(text).unwrap();
        let printed = first.to_string();
        let second: Expression = printed.parse().unwrap();
        assert_eq!(first, second, "{text} -> {printed}");
        assert_eq!(printed, second.to_string());
    }
}

#[test]
fn expression_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + fmt::Debug>() {}
    check::<Expression>();
    check::<Evaluation>();
}
