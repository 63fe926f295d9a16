//! # herald-cesql
//!
//! The CloudEvents SQL expression language (CESQL v1) for Herald's Trigger filters:
//! [`Expression::parse`] compiles the text once into a tree, then
//! [`Expression::evaluate`] / [`Expression::matches`] run it against any number of
//! events without re-parsing.
//!
//! ```
//! use herald_cesql::{Expression, Value};
//! use std::collections::HashMap;
//!
//! let filter = Expression::parse("type LIKE 'com.example.%' AND int(hop) < 10").unwrap();
//! let event: HashMap<String, Value> = [
//!     ("type".to_string(), Value::from("com.example.created")),
//!     ("hop".to_string(), Value::from("3")),
//! ]
//! .into();
//! assert!(filter.matches(&event));
//! ```
//!
//! Modules: `lexer` (tokens), `parser` (grammar, precedence, limits), `ast` (tree and
//! pretty-printer), `eval` (evaluation and error model), `functions` (built-ins),
//! `casts` (type casting), `like` (LIKE patterns), `value` (values), `error` (errors).

mod ast;
mod casts;
mod error;
mod eval;
mod functions;
mod guard;
mod lexer;
mod like;
mod parser;
mod value;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;
use std::str::FromStr;

pub use error::{EvalError, ParseError};
pub use guard::AttributeTest;
pub use parser::MAX_DEPTH;
pub use value::{Value, ValueType};

/// Read access to a CloudEvent's context attributes and extensions.
pub trait EventAttributes {
    /// The attribute's value; `name` is lower-case. None when the event lacks it.
    /// Attributes of types CESQL lacks (URI, timestamp, binary) are given as String.
    fn attribute(&self, name: &str) -> Option<Value>;

    /// Whether the event has the attribute (`EXISTS`); override to avoid building the value.
    fn has_attribute(&self, name: &str) -> bool {
        self.attribute(name).is_some()
    }
}

impl<S: BuildHasher> EventAttributes for HashMap<String, Value, S> {
    fn attribute(&self, name: &str) -> Option<Value> {
        self.get(name).cloned()
    }

    fn has_attribute(&self, name: &str) -> bool {
        self.contains_key(name)
    }
}

impl EventAttributes for BTreeMap<String, Value> {
    fn attribute(&self, name: &str) -> Option<Value> {
        self.get(name).cloned()
    }

    fn has_attribute(&self, name: &str) -> bool {
        self.contains_key(name)
    }
}

/// A compiled CESQL expression. Cheap to share across threads; evaluating never panics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expression {
    root: ast::Expr,
}

/// The result of evaluating an expression: its value and every error raised on the way
/// (the value is then the one the spec prescribes for the failure, often a zero value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// The expression's value.
    pub value: Value,
    /// Errors raised during evaluation, in order; empty on success.
    pub errors: Vec<EvalError>,
}

impl Evaluation {
    /// True when no error occurred.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

impl Expression {
    /// Parses and compiles `text`. Unknown functions are not parse errors: per the TCK they
    /// raise a MissingFunction error at evaluation.
    pub fn parse(text: &str) -> Result<Expression, ParseError> {
        parser::parse(text).map(|root| Expression { root })
    }

    /// The functions it calls that no built-in provides (`NAME/arity`): legal CESQL, but every
    /// evaluation of such a call fails, so a control plane should report them.
    pub fn missing_functions(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.root.missing_functions(&mut out);
        out
    }

    /// Tests of which at least one passes whenever the expression matches, where it implies
    /// some (`None` otherwise): an event passing none of them cannot match, so a Broker can
    /// index its Triggers' filters and evaluate only the candidates.
    pub fn guard(&self) -> Option<Vec<AttributeTest>> {
        guard::of(&self.root)
    }

    /// Evaluates the expression against `event`, collecting every error.
    pub fn evaluate(&self, event: &dyn EventAttributes) -> Evaluation {
        eval::evaluate(&self.root, event)
    }

    /// The Trigger filter decision (spec 1.2): true only when the value is `Boolean(true)`
    /// and no error occurred. A non-Boolean result is no match; it is not cast.
    pub fn matches(&self, event: &dyn EventAttributes) -> bool {
        let evaluation = self.evaluate(event);
        evaluation.errors.is_empty() && evaluation.value == Value::Boolean(true)
    }
}

/// Pretty-prints the expression in canonical form (upper-case keywords and functions,
/// single-quoted strings, minimal parentheses); the output parses back to an equal one.
impl fmt::Display for Expression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.root.fmt(f)
    }
}

impl FromStr for Expression {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Expression::parse(text)
    }
}

#[cfg(test)]
mod tests;
