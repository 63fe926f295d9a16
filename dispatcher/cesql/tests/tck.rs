//! Runs the CloudEvents SQL TCK (YAML files in `CESQL_TCK_DIR`, default
//! `../../../shared/cesql-tck` from the crate) and requires every case to pass.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use herald_cesql::{Expression, Value};
use serde::Deserialize;

#[derive(Deserialize)]
struct Suite {
    name: String,
    tests: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Case {
    name: String,
    expression: String,
    result: Option<serde_yaml::Value>,
    error: Option<String>,
    event: Option<serde_json::Value>,
    event_overrides: Option<serde_json::Value>,
}

/// The TCK directory, or None (after a notice) when it is absent outside CI.
fn tck_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("CESQL_TCK_DIR") {
        return Some(PathBuf::from(dir));
    }
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/cesql-tck");
    if default.is_dir() {
        return Some(default);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CESQL TCK not found at {} and CESQL_TCK_DIR is unset",
        default.display()
    );
    eprintln!(
        "notice: CESQL TCK not found at {}; set CESQL_TCK_DIR to run it",
        default.display()
    );
    None
}

/// A CloudEvents JSON attribute value as CESQL sees it.
fn json_to_value(json: &serde_json::Value) -> Value {
    match json {
        serde_json::Value::Bool(b) => Value::Boolean(*b),
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Number(n) => n
            .as_i64()
            .and_then(|i| i32::try_from(i).ok())
            .map_or_else(|| Value::String(n.to_string()), Value::Integer),
        other => Value::String(other.to_string()),
    }
}

/// Attributes of the case's event (CloudEvents JSON format, `data*` ignored) plus overrides.
fn build_event(case: &Case) -> HashMap<String, Value> {
    let default = serde_json::json!({
        "specversion": "1.0",
        "id": "tck-id",
        "source": "https://tck.example/source",
        "type": "tck.type",
    });
    let mut attributes = HashMap::new();
    for object in [
        case.event.as_ref().unwrap_or(&default),
        case.event_overrides
            .as_ref()
            .unwrap_or(&serde_json::Value::Null),
    ] {
        if let serde_json::Value::Object(map) = object {
            for (name, value) in map {
                if name == "data" || name == "data_base64" || value.is_null() {
                    continue;
                }
                attributes.insert(name.to_lowercase(), json_to_value(value));
            }
        }
    }
    attributes
}

fn expected_value(yaml: &serde_yaml::Value) -> Option<Value> {
    match yaml {
        serde_yaml::Value::Bool(b) => Some(Value::Boolean(*b)),
        serde_yaml::Value::Number(n) => n
            .as_i64()
            .and_then(|i| i32::try_from(i).ok())
            .map(Value::Integer),
        serde_yaml::Value::String(s) => Some(Value::String(s.clone())),
        _ => None,
    }
}

/// Runs one case; Err describes the mismatch.
fn run_case(case: &Case) -> Result<(), String> {
    let expected_error = case.error.as_deref();
    let expression = match Expression::parse(&case.expression) {
        Ok(expression) => expression,
        Err(e) if expected_error == Some("parse") => {
            return if e.position <= case.expression.len() {
                Ok(())
            } else {
                Err(format!("parse error position {} past the end", e.position))
            };
        }
        Err(e) => return Err(format!("unexpected parse error: {e}")),
    };
    if expected_error == Some("parse") {
        return Err(format!("expected a parse error, parsed as {expression}"));
    }
    // The pretty-printed form must mean the same thing.
    let reparsed = Expression::parse(&expression.to_string())
        .map_err(|e| format!("printed form {expression} does not re-parse: {e}"))?;
    if reparsed != expression {
        return Err(format!("printed form {expression} re-parses differently"));
    }
    let evaluation = expression.evaluate(&build_event(case));
    if let Some(result) = &case.result {
        let expected = expected_value(result).ok_or_else(|| format!("bad result {result:?}"))?;
        if evaluation.value != expected {
            return Err(format!(
                "expected {expected:?}, got {:?} ({:?})",
                evaluation.value, evaluation.errors
            ));
        }
    }
    let kinds: Vec<&str> = evaluation.errors.iter().map(|e| e.kind()).collect();
    match expected_error {
        None if !kinds.is_empty() => Err(format!("unexpected errors {:?}", evaluation.errors)),
        Some(kind) if kinds.is_empty() || kinds.iter().any(|k| *k != kind) => Err(format!(
            "expected only {kind} errors, got {:?}",
            evaluation.errors
        )),
        _ => Ok(()),
    }
}

#[test]
fn tck() {
    let Some(dir) = tck_dir() else { return };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no YAML files in {}", dir.display());

    let mut table = BTreeMap::new();
    let mut failures = Vec::new();
    let (mut passed, mut total) = (0, 0);
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable TCK file");
        let suite: Suite =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let name = file
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let mut file_passed = 0;
        for case in &suite.tests {
            match run_case(case) {
                Ok(()) => file_passed += 1,
                Err(why) => failures.push(format!(
                    "{name} / {} / {:?}: {why}",
                    case.name, case.expression
                )),
            }
        }
        passed += file_passed;
        total += suite.tests.len();
        table.insert(name, (suite.name, file_passed, suite.tests.len()));
    }
    println!("CESQL TCK ({})", dir.display());
    for (file, (_suite, ok, all)) in &table {
        println!("{file}: {ok}/{all}");
    }
    println!("total: {passed}/{total} cases in {} files", files.len());
    for failure in &failures {
        println!("FAIL {failure}");
    }
    assert!(
        failures.is_empty(),
        "{} of {total} TCK cases failed",
        failures.len()
    );
}
