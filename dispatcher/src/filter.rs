//! Trigger filters, compiled once per Trigger: the legacy `filter.attributes` exact match and
//! the Subscriptions API `filters` dialect (exact, prefix, suffix, all, any, not, cesql).

use crate::attributes::{attribute, CesqlEvent};
use herald_cesql::AttributeTest;
use herald_channels::WireEvent;
use herald_core::{is_valid_attribute_name, SubscriptionsApiFilter, TriggerSpec};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct FilterError {
    /// Path of the offending filter, e.g. `spec.filters[0].all[1].exact`.
    pub field: String,
    pub message: String,
}

/// A compiled filter. Evaluation allocates nothing beyond attribute look-ups.
#[derive(Clone, Debug)]
pub enum Filter {
    /// Matches every event (an empty filter).
    Everything,
    /// Legacy `filter.attributes`: every listed attribute must exist and equal the value; an
    /// empty value matches any value of an attribute that exists.
    Attributes(Vec<(String, String)>),
    Exact(String, String),
    Prefix(String, String),
    Suffix(String, String),
    All(Vec<Filter>),
    Any(Vec<Filter>),
    Not(Box<Filter>),
    /// A CloudEvents SQL expression, compiled once; an evaluation error is a no-match.
    Cesql(herald_cesql::Expression),
}

impl Filter {
    /// Compiles a Trigger's filter; `filters` wins over the legacy `filter` when non-empty.
    pub fn compile(spec: &TriggerSpec) -> Result<Filter, FilterError> {
        if !spec.filters.is_empty() {
            return Self::compile_all(&spec.filters, "spec.filters");
        }
        match &spec.filter {
            Some(f) if !f.attributes.is_empty() => Ok(Filter::Attributes(
                f.attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            )),
            _ => Ok(Filter::Everything),
        }
    }

    /// Compiles a `filters` list (at `field`, for errors) that matches when all of them do,
    /// as a Trigger's or an EventPolicy's.
    pub fn compile_all(
        filters: &[SubscriptionsApiFilter],
        field: &str,
    ) -> Result<Filter, FilterError> {
        let all = filters
            .iter()
            .enumerate()
            .map(|(i, f)| compile_one(f, &format!("{field}[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Filter::All(all))
    }

    /// CESQL functions this filter calls that do not exist (`NAME/arity`).
    pub fn missing_functions(&self) -> Vec<String> {
        match self {
            Filter::Cesql(e) => e.missing_functions(),
            Filter::All(fs) | Filter::Any(fs) => {
                fs.iter().flat_map(|f| f.missing_functions()).collect()
            }
            Filter::Not(f) => f.missing_functions(),
            _ => Vec::new(),
        }
    }

    /// Tests of which at least one passes whenever the filter matches, and whether passing
    /// one is the whole filter; `None` when the filter implies no such test (it is then
    /// evaluated for every event). What a Broker's [`FilterIndex`](crate::fanout) keys on.
    pub fn guard(&self) -> Option<(Vec<AttributeTest>, bool)> {
        match self {
            Filter::Attributes(attrs) => {
                // `type` first: the attribute Triggers tell events apart by most often.
                let (name, want) = attrs
                    .iter()
                    .filter(|(_, want)| !want.is_empty())
                    .min_by_key(|(name, _)| name != "type")?;
                let test = AttributeTest::Equals(name.clone(), want.clone());
                Some((vec![test], attrs.len() == 1))
            }
            Filter::Exact(name, want) => Some((
                vec![AttributeTest::Equals(name.clone(), want.clone())],
                true,
            )),
            Filter::Prefix(name, want) if !want.is_empty() => Some((
                vec![AttributeTest::StartsWith(name.clone(), want.clone())],
                true,
            )),
            Filter::All(fs) if fs.len() == 1 => fs[0].guard(),
            Filter::All(fs) => fs
                .iter()
                .find_map(|f| f.guard())
                .map(|(tests, _)| (tests, false)),
            Filter::Any(fs) => {
                let mut all = Vec::new();
                for f in fs {
                    all.extend(f.guard()?.0);
                }
                Some((all, false))
            }
            Filter::Cesql(e) => e.guard().map(|tests| (tests, false)),
            Filter::Everything | Filter::Prefix(..) | Filter::Suffix(..) | Filter::Not(_) => None,
        }
    }

    pub fn matches(&self, event: &WireEvent) -> bool {
        #[cfg(test)]
        tests::count_evaluation();
        match self {
            Filter::Everything => true,
            Filter::Attributes(attrs) => attrs.iter().all(|(name, want)| {
                attribute(event, name).is_some_and(|have| want.is_empty() || *want == have)
            }),
            Filter::Exact(name, want) => attribute(event, name).is_some_and(|v| v == *want),
            Filter::Prefix(name, want) => {
                attribute(event, name).is_some_and(|v| v.starts_with(want.as_str()))
            }
            Filter::Suffix(name, want) => {
                attribute(event, name).is_some_and(|v| v.ends_with(want.as_str()))
            }
            Filter::All(fs) => fs.iter().all(|f| f.matches(event)),
            Filter::Any(fs) => fs.iter().any(|f| f.matches(event)),
            Filter::Not(f) => !f.matches(event),
            Filter::Cesql(e) => e.matches(&CesqlEvent(event)),
        }
    }
}

fn compile_one(f: &SubscriptionsApiFilter, field: &str) -> Result<Filter, FilterError> {
    let err = |field: String, message: String| FilterError { field, message };
    let mut dialects = Vec::new();
    if !f.exact.is_empty() {
        dialects.push("exact");
    }
    if !f.prefix.is_empty() {
        dialects.push("prefix");
    }
    if !f.suffix.is_empty() {
        dialects.push("suffix");
    }
    if !f.all.is_empty() {
        dialects.push("all");
    }
    if !f.any.is_empty() {
        dialects.push("any");
    }
    if f.not.is_some() {
        dialects.push("not");
    }
    if f.cesql.is_some() {
        dialects.push("cesql");
    }
    match dialects.as_slice() {
        [] => Ok(Filter::Everything),
        [_] => {
            if !f.exact.is_empty() {
                let (k, v) = single(&f.exact, &format!("{field}.exact"))?;
                Ok(Filter::Exact(k, v))
            } else if !f.prefix.is_empty() {
                let (k, v) = single(&f.prefix, &format!("{field}.prefix"))?;
                Ok(Filter::Prefix(k, v))
            } else if !f.suffix.is_empty() {
                let (k, v) = single(&f.suffix, &format!("{field}.suffix"))?;
                Ok(Filter::Suffix(k, v))
            } else if !f.all.is_empty() {
                nested(&f.all, &format!("{field}.all")).map(Filter::All)
            } else if !f.any.is_empty() {
                nested(&f.any, &format!("{field}.any")).map(Filter::Any)
            } else if let Some(not) = &f.not {
                compile_one(not, &format!("{field}.not")).map(|f| Filter::Not(Box::new(f)))
            } else {
                let text = f.cesql.as_deref().unwrap_or_default();
                herald_cesql::Expression::parse(text)
                    .map(Filter::Cesql)
                    .map_err(|e| {
                        err(
                            format!("{field}.cesql"),
                            format!("invalid CESQL expression {text:?}: {e}"),
                        )
                    })
            }
        }
        many => Err(err(
            field.to_string(),
            format!(
                "a filter sets exactly one dialect, found {}",
                many.join(", ")
            ),
        )),
    }
}

fn nested(fs: &[SubscriptionsApiFilter], field: &str) -> Result<Vec<Filter>, FilterError> {
    fs.iter()
        .enumerate()
        .map(|(i, f)| compile_one(f, &format!("{field}[{i}]")))
        .collect()
}

fn single(map: &BTreeMap<String, String>, field: &str) -> Result<(String, String), FilterError> {
    let mut it = map.iter();
    match (it.next(), it.next()) {
        (Some((k, v)), None) => {
            if !is_valid_attribute_name(k) {
                return Err(FilterError {
                    field: format!("{field}.{k}"),
                    message: "not a valid CloudEvents attribute name (lower-case a-z and 0-9)"
                        .into(),
                });
            }
            Ok((k.clone(), v.clone()))
        }
        _ => Err(FilterError {
            field: field.to_string(),
            message: format!("must hold exactly one attribute, found {}", map.len()),
        }),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use cloudevents::{EventBuilder, EventBuilderV10};
    use herald_core::TriggerFilter;
    use std::cell::Cell;

    thread_local! {
        static EVALUATIONS: Cell<u64> = const { Cell::new(0) };
    }

    /// Counts top-level and nested evaluations on this thread, for tests that a filter is
    /// not evaluated (current-thread runtimes only).
    pub(crate) fn count_evaluation() {
        EVALUATIONS.with(|c| c.set(c.get() + 1));
    }

    pub(crate) fn evaluations() -> u64 {
        EVALUATIONS.with(Cell::get)
    }

    fn event() -> WireEvent {
        EventBuilderV10::new()
            .id("1")
            .source("/shop/checkout")
            .ty("com.example.order.created")
            .extension("region", "eu")
            .extension("amount", 1500i64)
            .build()
            .unwrap()
            .into()
    }

    fn legacy(attrs: &[(&str, &str)]) -> Filter {
        let spec = TriggerSpec {
            filter: Some(TriggerFilter {
                attributes: attrs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }),
            ..Default::default()
        };
        Filter::compile(&spec).unwrap()
    }

    fn filters(yaml: &str) -> Result<Filter, FilterError> {
        let filters: Vec<SubscriptionsApiFilter> = serde_yaml::from_str(yaml).unwrap();
        Filter::compile(&TriggerSpec {
            filters,
            ..Default::default()
        })
    }

    #[test]
    fn empty_filter_matches_everything() {
        assert!(legacy(&[]).matches(&event()));
        assert!(Filter::compile(&TriggerSpec::default())
            .unwrap()
            .matches(&event()));
    }

    #[test]
    fn legacy_exact_match_on_attributes_and_extensions() {
        assert!(legacy(&[("type", "com.example.order.created")]).matches(&event()));
        assert!(
            legacy(&[("type", "com.example.order.created"), ("region", "eu")]).matches(&event())
        );
        assert!(legacy(&[("amount", "1500")]).matches(&event()));
        assert!(!legacy(&[("type", "com.example.order")]).matches(&event()));
        assert!(!legacy(&[("region", "us")]).matches(&event()));
        // A missing attribute never matches, even with the "any value" empty string.
        assert!(!legacy(&[("missing", "")]).matches(&event()));
        assert!(legacy(&[("region", "")]).matches(&event()));
    }

    #[test]
    fn dialect_operators() {
        let m = |y: &str| filters(y).unwrap().matches(&event());
        assert!(m("- exact: {type: com.example.order.created}"));
        assert!(!m("- exact: {type: com.example.order}"));
        assert!(m("- prefix: {type: com.example.}"));
        assert!(!m("- prefix: {type: org.}"));
        assert!(m("- suffix: {source: /checkout}"));
        assert!(!m("- suffix: {source: /cart}"));
        assert!(m("- all: [{exact: {region: eu}}, {prefix: {type: com.}}]"));
        assert!(!m("- all: [{exact: {region: eu}}, {prefix: {type: org.}}]"));
        assert!(m("- any: [{exact: {region: us}}, {prefix: {type: com.}}]"));
        assert!(!m("- any: [{exact: {region: us}}, {prefix: {type: org.}}]"));
        assert!(m("- not: {exact: {region: us}}"));
        assert!(!m("- not: {not: {exact: {region: us}}}"));
        // Several entries of `filters` must all match.
        assert!(!m("[{exact: {region: eu}}, {exact: {type: x}}]"));
    }

    #[test]
    fn cesql_filters_use_typed_extensions_and_treat_errors_as_no_match() {
        let m = |y: &str| filters(y).unwrap().matches(&event());
        assert!(m(r#"- cesql: "amount > 1000 AND region IN ('eu', 'us')""#));
        assert!(!m(r#"- cesql: "amount > 2000""#));
        assert!(m(
            r#"- cesql: "type LIKE 'com.example.%' AND EXISTS region""#
        ));
        // Division by zero and a missing attribute are evaluation errors: no match.
        assert!(!m(r#"- cesql: "amount / 0 = 0""#));
        assert!(!m(r#"- cesql: "missing = 'x'""#));
        // Nested inside the other dialects.
        assert!(m(
            r#"- all: [{prefix: {type: com.}}, {not: {cesql: "region = 'us'"}}]"#
        ));
    }

    #[test]
    fn invalid_cesql_is_rejected_at_compile_time_with_its_position() {
        let e = filters(r#"- any: [{exact: {type: a}}, {cesql: "type = 'a' AND (source"}]"#)
            .unwrap_err();
        assert_eq!(e.field, "spec.filters[0].any[1].cesql");
        assert!(e.message.contains("column"), "{e}");
    }

    #[test]
    fn filters_take_precedence_over_legacy_filter() {
        let spec = TriggerSpec {
            filter: Some(TriggerFilter {
                attributes: [("type".to_string(), "nope".to_string())].into(),
            }),
            filters: serde_yaml::from_str("- exact: {region: eu}").unwrap(),
            ..Default::default()
        };
        assert!(Filter::compile(&spec).unwrap().matches(&event()));
    }

    #[test]
    fn guards_are_implied_by_the_filter_and_precise_only_when_they_are_all_of_it() {
        use AttributeTest::{Equals, StartsWith};
        let g = |y: &str| filters(y).unwrap().guard();
        let eq = |a: &str, v: &str| Equals(a.into(), v.into());
        assert_eq!(g("- exact: {type: a}"), Some((vec![eq("type", "a")], true)));
        assert_eq!(
            g("- prefix: {type: a.}"),
            Some((vec![StartsWith("type".into(), "a.".into())], true))
        );
        assert_eq!(
            g("[{exact: {region: eu}}, {exact: {type: a}}]"),
            Some((vec![eq("region", "eu")], false))
        );
        assert_eq!(
            g("- any: [{exact: {type: a}}, {exact: {type: b}}]"),
            Some((vec![eq("type", "a"), eq("type", "b")], false))
        );
        assert_eq!(g("- any: [{exact: {type: a}}, {suffix: {type: b}}]"), None);
        assert_eq!(g("- not: {exact: {type: a}}"), None);
        assert_eq!(g("- prefix: {type: ''}"), None);
        assert_eq!(
            g(r#"- cesql: "type = 'a' AND amount > 3""#),
            Some((vec![eq("type", "a")], false))
        );
        assert_eq!(
            legacy(&[("type", "a"), ("region", "eu")]).guard(),
            Some((vec![eq("type", "a")], false))
        );
        assert_eq!(legacy(&[("type", "")]).guard(), None);
        assert_eq!(
            legacy(&[("type", "a")]).guard(),
            Some((vec![eq("type", "a")], true))
        );
    }

    #[test]
    fn invalid_filters_are_rejected_with_their_path() {
        let e = filters("- exact: {type: a, source: b}").unwrap_err();
        assert_eq!(e.field, "spec.filters[0].exact");
        let e = filters("- all: [{exact: {type: a}, prefix: {type: b}}]").unwrap_err();
        assert_eq!(e.field, "spec.filters[0].all[0]");
        assert!(e.message.contains("exact, prefix"), "{e}");
        let e = filters("- prefix: {Type: a}").unwrap_err();
        assert_eq!(e.field, "spec.filters[0].prefix.Type");
    }
}
