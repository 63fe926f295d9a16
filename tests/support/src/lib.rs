//! Test support shared by the crates' test suites (a dev-dependency only): the rule that a
//! missing server fails a test under `CI=true` and skips it elsewhere, and a private tansu
//! broker per test, and an OTLP receiver.

pub mod disk;
pub mod otlp;
pub mod tansu;

/// Whether this run is CI's, where a test whose server is missing must fail, never skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// `Some(value)` when `got` holds one; otherwise fails the test under CI and returns `None`
/// with a notice naming the test and what it lacks.
pub fn required<T, E: std::fmt::Display>(test: &str, what: &str, got: Result<T, E>) -> Option<T> {
    match got {
        Ok(v) => Some(v),
        Err(e) if in_ci() => panic!("{test}: {what} is required in CI: {e}"),
        Err(e) => {
            eprintln!("skipping {test}: {what} is not available ({e})");
            None
        }
    }
}
