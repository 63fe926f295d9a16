//! What a check is: a stable id, the spec section it comes from, its RFC 2119 level, and
//! what it found.

use serde::Serialize;

/// RFC 2119 level of the requirement a check verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Level {
    #[serde(rename = "MUST")]
    Must,
    #[serde(rename = "SHOULD")]
    Should,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Must => "MUST",
            Level::Should => "SHOULD",
        }
    }
}

/// One requirement.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Check {
    /// Stable, dotted: the spec, its section, the case (`data-plane.retry.408`).
    pub id: &'static str,
    /// Where the requirement is written.
    pub section: &'static str,
    pub level: Level,
    pub title: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    /// Not checked (the adapter cannot set it up, or the tool was not told the limit).
    Skip,
}

/// A check with what it found.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    #[serde(flatten)]
    pub check: Check,
    pub verdict: Verdict,
    pub detail: String,
}

impl Check {
    pub fn pass(self, detail: impl Into<String>) -> Outcome {
        self.outcome(Verdict::Pass, detail)
    }

    pub fn fail(self, detail: impl Into<String>) -> Outcome {
        self.outcome(Verdict::Fail, detail)
    }

    pub fn skip(self, detail: impl Into<String>) -> Outcome {
        self.outcome(Verdict::Skip, detail)
    }

    /// Pass when `ok`, else fail; the detail either way.
    pub fn verdict(self, ok: bool, detail: impl Into<String>) -> Outcome {
        if ok {
            self.pass(detail)
        } else {
            self.fail(detail)
        }
    }

    fn outcome(self, verdict: Verdict, detail: impl Into<String>) -> Outcome {
        Outcome {
            check: self,
            verdict,
            detail: detail.into(),
        }
    }
}

/// Shorthand for the check tables in `checks/*`.
pub const fn must(id: &'static str, section: &'static str, title: &'static str) -> Check {
    Check {
        id,
        section,
        level: Level::Must,
        title,
    }
}

pub const fn should(id: &'static str, section: &'static str, title: &'static str) -> Check {
    Check {
        id,
        section,
        level: Level::Should,
        title,
    }
}

/// Collects, per check, how many cases it saw and what went wrong in each, for checks that
/// span several events.
#[derive(Default)]
pub struct Tally {
    entries: Vec<(Check, usize, Vec<String>)>,
    /// What a passing check says instead of its case count.
    notes: Vec<(&'static str, String)>,
}

impl Tally {
    fn entry(&mut self, check: Check) -> &mut (Check, usize, Vec<String>) {
        let i = match self.entries.iter().position(|(c, _, _)| c.id == check.id) {
            Some(i) => i,
            None => {
                self.entries.push((check, 0, Vec::new()));
                self.entries.len() - 1
            }
        };
        &mut self.entries[i]
    }

    /// One case of `check` held.
    pub fn ok(&mut self, check: Check) {
        self.entry(check).1 += 1;
    }

    /// One case of `check` failed, for `why`.
    pub fn bad(&mut self, check: Check, why: impl Into<String>) {
        let e = self.entry(check);
        e.1 += 1;
        e.2.push(why.into());
    }

    /// `ok` when `holds`, else `bad` with `why()`.
    pub fn verdict_of(&mut self, check: Check, holds: bool, why: impl FnOnce() -> String) {
        if holds {
            self.ok(check);
        } else {
            self.bad(check, why());
        }
    }

    /// `ok` or `bad` by whether `problems` is empty.
    pub fn record(&mut self, check: Check, problems: Vec<String>) {
        if problems.is_empty() {
            self.ok(check);
        } else {
            self.bad(check, problems.join("; "));
        }
    }

    /// What `check` reports when it passes (a measurement, say).
    pub fn note(&mut self, check: Check, note: impl Into<String>) {
        self.notes.push((check.id, note.into()));
    }

    pub fn into_outcomes(self) -> Vec<Outcome> {
        let notes = self.notes;
        self.entries
            .into_iter()
            .map(|(check, cases, problems)| {
                if problems.is_empty() {
                    let s = if cases == 1 { "" } else { "s" };
                    let note = notes.iter().find(|(id, _)| *id == check.id);
                    check.pass(match note {
                        Some((_, n)) => n.clone(),
                        None => format!("{cases} case{s}"),
                    })
                } else {
                    check.fail(problems.join("; "))
                }
            })
            .collect()
    }
}
