//! The index of one Broker's Trigger filters: each event is looked up once by the attribute
//! values the filters need (`type = a`, `type` starting with `a.`, from exact, prefix, legacy
//! and CESQL filters alike, see [`Filter::guard`]), and only the candidates it finds, plus
//! the filters with no such test, are evaluated. 1,000 Triggers on other types cost a few
//! hash look-ups per event instead of 1,000 evaluations.

use crate::filter::Filter;
use herald_cesql::AttributeTest;
use herald_channels::WireEvent;
use std::collections::HashMap;

/// One indexed member: its position in the index's member list, and whether passing the
/// indexed test is its whole filter (then it is not evaluated).
#[derive(Clone, Copy, Debug)]
struct Candidate {
    member: usize,
    precise: bool,
}

/// Members by a prefix of one attribute, with the prefix lengths in use, so an event's value
/// is looked up once per distinct length rather than once per member.
#[derive(Default)]
struct Prefixes {
    by_prefix: HashMap<String, Vec<Candidate>>,
    lengths: Vec<usize>,
}

pub(crate) struct FilterIndex {
    filters: Vec<Option<Filter>>,
    exact: HashMap<String, HashMap<String, Vec<Candidate>>>,
    prefix: HashMap<String, Prefixes>,
    /// Members evaluated for every event (no guard).
    rest: Vec<usize>,
    /// Per member: the event it was last proposed for, so a member indexed under several
    /// tests is evaluated once.
    seen: Vec<u64>,
    stamp: u64,
    /// Filters the index evaluated, for tests and metrics.
    pub(crate) evaluations: u64,
}

impl FilterIndex {
    /// The index of `filters` (by member position; `None` passes everything).
    pub(crate) fn new(filters: Vec<Option<Filter>>) -> Self {
        let mut index = FilterIndex {
            exact: HashMap::new(),
            prefix: HashMap::new(),
            rest: Vec::new(),
            seen: vec![0; filters.len()],
            stamp: 0,
            evaluations: 0,
            filters: Vec::new(),
        };
        for (member, filter) in filters.iter().enumerate() {
            let Some((tests, precise)) = filter.as_ref().and_then(Filter::guard) else {
                index.rest.push(member);
                continue;
            };
            let candidate = Candidate { member, precise };
            for test in tests {
                match test {
                    AttributeTest::Equals(name, value) => index
                        .exact
                        .entry(name)
                        .or_default()
                        .entry(value)
                        .or_default()
                        .push(candidate),
                    AttributeTest::StartsWith(name, prefix) => {
                        let p = index.prefix.entry(name).or_default();
                        if !p.lengths.contains(&prefix.len()) {
                            p.lengths.push(prefix.len());
                        }
                        p.by_prefix.entry(prefix).or_default().push(candidate);
                    }
                }
            }
        }
        index.filters = filters;
        index
    }

    /// Appends to `out` the members whose filter matches `event`, each once.
    pub(crate) fn matching(&mut self, event: &WireEvent, out: &mut Vec<usize>) {
        self.stamp += 1;
        let propose = |index: &mut Self, c: Candidate, out: &mut Vec<usize>| {
            if index.seen[c.member] == index.stamp {
                return;
            }
            index.seen[c.member] = index.stamp;
            if c.precise || index.evaluate(c.member, event) {
                out.push(c.member);
            }
        };
        let mut found = Vec::new();
        for (name, values) in &self.exact {
            if let Some(value) = event.attribute(name) {
                if let Some(cs) = values.get(value.as_ref()) {
                    found.extend_from_slice(cs);
                }
            }
        }
        for (name, prefixes) in &self.prefix {
            if let Some(value) = event.attribute(name) {
                for &len in &prefixes.lengths {
                    if let Some(head) = value.get(..len) {
                        if let Some(cs) = prefixes.by_prefix.get(head) {
                            found.extend_from_slice(cs);
                        }
                    }
                }
            }
        }
        for c in found {
            propose(self, c, out);
        }
        for i in 0..self.rest.len() {
            let member = self.rest[i];
            propose(
                self,
                Candidate {
                    member,
                    precise: false,
                },
                out,
            );
        }
    }

    fn evaluate(&mut self, member: usize, event: &WireEvent) -> bool {
        match &self.filters[member] {
            Some(f) => {
                self.evaluations += 1;
                f.matches(event)
            }
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_core::{SubscriptionsApiFilter, TriggerSpec};

    fn filter(yaml: &str) -> Option<Filter> {
        let filters: Vec<SubscriptionsApiFilter> = serde_yaml::from_str(yaml).unwrap();
        Some(
            Filter::compile(&TriggerSpec {
                filters,
                ..Default::default()
            })
            .unwrap(),
        )
    }

    fn event(ty: &str, source: &str) -> WireEvent {
        use cloudevents::{EventBuilder, EventBuilderV10};
        EventBuilderV10::new()
            .id("1")
            .source(source)
            .ty(ty)
            .extension("region", "eu")
            .build()
            .unwrap()
            .into()
    }

    /// The bench's Broker: 1,000 Triggers on other types (half prefix, half CESQL) and one
    /// on the event's type.
    fn bench_filters() -> Vec<Option<Filter>> {
        let mut filters: Vec<_> = (0..1000)
            .map(|i| {
                if i % 2 == 0 {
                    filter(&format!("- prefix: {{type: bench.other.{i}.}}"))
                } else {
                    filter(&format!(
                        "- cesql: \"type = 'bench.other.{i}' OR (source LIKE '/other/%' AND id = 'x{i}')\""
                    ))
                }
            })
            .collect();
        filters.push(filter("- exact: {type: bench.event}"));
        filters
    }

    #[test]
    fn non_matching_filters_are_not_evaluated() {
        let mut index = FilterIndex::new(bench_filters());
        let before = crate::filter::tests::evaluations();
        let mut out = Vec::new();
        for _ in 0..100 {
            out.clear();
            index.matching(&event("bench.event", "/bench"), &mut out);
            assert_eq!(out, [1000]);
        }
        assert_eq!(index.evaluations, 0);
        assert_eq!(crate::filter::tests::evaluations(), before);
        // A candidate is evaluated: this source passes the CESQL guard of Trigger 1 only.
        out.clear();
        index.matching(&event("bench.other.1", "/other/a"), &mut out);
        assert_eq!(out, [1]);
        assert_eq!(
            index.evaluations, 500,
            "every CESQL filter's LIKE guard passes"
        );
    }

    #[test]
    fn the_index_agrees_with_evaluating_every_filter() {
        let filters: Vec<Option<Filter>> = vec![
            None,
            filter("- exact: {type: a}"),
            filter("- prefix: {type: a.}"),
            filter("- prefix: {type: a.b}"),
            filter("[{prefix: {type: a}}, {exact: {region: us}}]"),
            filter("- any: [{exact: {type: b}}, {prefix: {source: /x}}]"),
            filter("- suffix: {type: .c}"),
            filter("- not: {exact: {type: a}}"),
            filter(r#"- cesql: "type IN ('a', 'a.c') AND region = 'eu'""#),
            filter(r#"- cesql: "type LIKE 'a._' OR source = '/y'""#),
            filter("- exact: {region: eu}"),
        ];
        let events = [
            event("a", "/s"),
            event("a.b", "/s"),
            event("a.bc", "/x1"),
            event("a.c", "/y"),
            event("b", "/s"),
            event("ä", "/s"),
        ];
        let mut index = FilterIndex::new(filters.clone());
        for e in &events {
            let want: Vec<usize> = filters
                .iter()
                .enumerate()
                .filter(|(_, f)| f.as_ref().is_none_or(|f| f.matches(e)))
                .map(|(i, _)| i)
                .collect();
            let mut got = Vec::new();
            index.matching(e, &mut got);
            got.sort_unstable();
            assert_eq!(got, want, "event type {}", e.ty());
        }
    }
}
