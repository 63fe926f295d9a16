//! Necessary conditions of an expression on string attributes (see [`Expression::guard`]):
//! `type = 'a'`, `type LIKE 'a.%'`, `type IN ('a', 'b')`, combined through AND (any one
//! conjunct's guard will do) and OR (every disjunct needs one; their union).
//!
//! [`Expression::guard`]: crate::Expression::guard

use crate::ast::{CmpOp, Expr, LogicOp};
use crate::value::Value;

/// A test on one attribute's string value.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttributeTest {
    /// The attribute is exactly this string.
    Equals(String, String),
    /// The attribute starts with this non-empty string.
    StartsWith(String, String),
}

/// Context attributes every event carries as a String, so CESQL compares them as strings
/// exactly as an index would. Extensions are left out: a typed one (integer, boolean) is
/// compared after a cast, which an index of strings would not reproduce.
fn is_string_attribute(name: &str) -> bool {
    matches!(
        name,
        "id" | "source" | "type" | "subject" | "datacontenttype"
    )
}

pub(crate) fn of(expr: &Expr) -> Option<Vec<AttributeTest>> {
    match expr {
        Expr::Cmp {
            op: CmpOp::Eq,
            left,
            right,
        } => match (&**left, &**right) {
            (Expr::Attribute(a), Expr::Literal(Value::String(s)))
            | (Expr::Literal(Value::String(s)), Expr::Attribute(a))
                if is_string_attribute(a) =>
            {
                Some(vec![AttributeTest::Equals(a.clone(), s.clone())])
            }
            _ => None,
        },
        Expr::Like {
            operand,
            pattern,
            negated: false,
        } => match &**operand {
            Expr::Attribute(a) if is_string_attribute(a) => {
                let (prefix, whole) = pattern.literal_prefix();
                if whole {
                    Some(vec![AttributeTest::Equals(a.clone(), prefix)])
                } else if prefix.is_empty() {
                    None
                } else {
                    Some(vec![AttributeTest::StartsWith(a.clone(), prefix)])
                }
            }
            _ => None,
        },
        Expr::In {
            operand,
            set,
            negated: false,
        } => match &**operand {
            Expr::Attribute(a) if is_string_attribute(a) => set
                .iter()
                .map(|e| match e {
                    Expr::Literal(Value::String(s)) => {
                        Some(AttributeTest::Equals(a.clone(), s.clone()))
                    }
                    _ => None,
                })
                .collect(),
            _ => None,
        },
        Expr::Logic {
            op: LogicOp::And,
            operands,
        } => operands.iter().find_map(of),
        Expr::Logic {
            op: LogicOp::Or,
            operands,
        } => {
            let mut all = Vec::new();
            for operand in operands {
                all.extend(of(operand)?);
            }
            Some(all)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::AttributeTest::{Equals, StartsWith};
    use crate::Expression;

    fn guard(text: &str) -> Option<Vec<super::AttributeTest>> {
        Expression::parse(text).unwrap().guard()
    }

    #[test]
    fn equality_like_and_in_on_string_attributes_are_guards() {
        assert_eq!(
            guard("type = 'a'"),
            Some(vec![Equals("type".into(), "a".into())])
        );
        assert_eq!(
            guard("'a' = type"),
            Some(vec![Equals("type".into(), "a".into())])
        );
        assert_eq!(
            guard("source LIKE '/shop/%'"),
            Some(vec![StartsWith("source".into(), "/shop/".into())])
        );
        assert_eq!(
            guard("type LIKE 'a\\%'"),
            Some(vec![Equals("type".into(), "a%".into())])
        );
        assert_eq!(
            guard("type IN ('a', 'b')"),
            Some(vec![
                Equals("type".into(), "a".into()),
                Equals("type".into(), "b".into())
            ])
        );
    }

    #[test]
    fn and_takes_one_conjunct_or_needs_every_disjunct() {
        assert_eq!(
            guard("amount > 3 AND type = 'a'"),
            Some(vec![Equals("type".into(), "a".into())])
        );
        assert_eq!(
            guard("type = 'a' OR (source LIKE '/o/%' AND id = 'x')"),
            Some(vec![
                Equals("type".into(), "a".into()),
                StartsWith("source".into(), "/o/".into())
            ])
        );
        assert_eq!(guard("type = 'a' OR amount > 3"), None);
    }

    #[test]
    fn what_an_index_could_get_wrong_has_no_guard() {
        // Typed extensions compare after casts; negations and wildcards up front say nothing.
        assert_eq!(guard("region = 'eu'"), None);
        assert_eq!(guard("NOT type = 'a'"), None);
        assert_eq!(guard("type != 'a'"), None);
        assert_eq!(guard("type NOT LIKE 'a%'"), None);
        assert_eq!(guard("type LIKE '%a'"), None);
        assert_eq!(guard("type = 'a' XOR source = 'b'"), None);
        assert_eq!(guard("type IN ('a', id)"), None);
    }
}
