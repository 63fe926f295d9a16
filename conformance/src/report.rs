//! The results as a table for people and as JSON for machines.

use crate::check::{Level, Outcome, Verdict};
use std::fmt::Write;

/// A fixed-width table, one check a line, sorted by id, with a closing count.
pub fn table(outcomes: &[Outcome]) -> String {
    let mut rows: Vec<&Outcome> = outcomes.iter().collect();
    rows.sort_by_key(|o| o.check.id);
    let width = rows
        .iter()
        .map(|o| o.check.id.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<6} {:<6} {:<width$} DETAIL",
        "RESULT", "LEVEL", "CHECK"
    );
    for o in &rows {
        let verdict = match o.verdict {
            Verdict::Pass => "pass",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "skip",
        };
        let detail: String = o.detail.chars().take(200).collect();
        let _ = writeln!(
            out,
            "{verdict:<6} {:<6} {:<width$} {} - {detail}",
            o.check.level.as_str(),
            o.check.id,
            o.check.section
        );
    }
    let count = |v: Verdict, l: Option<Level>| {
        outcomes
            .iter()
            .filter(|o| o.verdict == v && l.is_none_or(|l| o.check.level == l))
            .count()
    };
    let _ = writeln!(
        out,
        "{} passed, {} failed ({} MUST, {} SHOULD), {} skipped",
        count(Verdict::Pass, None),
        count(Verdict::Fail, None),
        count(Verdict::Fail, Some(Level::Must)),
        count(Verdict::Fail, Some(Level::Should)),
        count(Verdict::Skip, None),
    );
    out
}

/// Whether a MUST failed.
pub fn must_failed(outcomes: &[Outcome]) -> bool {
    outcomes
        .iter()
        .any(|o| o.verdict == Verdict::Fail && o.check.level == Level::Must)
}

pub fn json(outcomes: &[Outcome]) -> String {
    serde_json::to_string_pretty(outcomes).unwrap_or_else(|e| format!("\"{e}\""))
}
