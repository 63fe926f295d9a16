//! Runtime values of CESQL: the three primitive types (Integer, String, Boolean),
//! their zero values and their human-readable forms.

use std::fmt;

/// A CESQL value: one of the three primitive types of the spec (section 3.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    /// A 32-bit signed integer.
    Integer(i32),
    /// A sequence of Unicode characters.
    String(String),
    /// `true` or `false`.
    Boolean(bool),
}

/// The type of a [`Value`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// 32-bit signed integer.
    Integer,
    /// Unicode string.
    String,
    /// Boolean.
    Boolean,
}

impl Value {
    /// The type of this value.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::Integer(_) => ValueType::Integer,
            Value::String(_) => ValueType::String,
            Value::Boolean(_) => ValueType::Boolean,
        }
    }

    /// Type and value, for error messages: `String 'abc'`, `Integer 10`, `Boolean true`.
    pub(crate) fn describe(&self) -> String {
        match self {
            // Debug quoting keeps control characters and quotes readable in logs.
            Value::String(s) => format!("String {s:?}"),
            Value::Integer(i) => format!("Integer {i}"),
            Value::Boolean(b) => format!("Boolean {b}"),
        }
    }
}

impl ValueType {
    /// The zero ("default") value of the type (spec section 3.1): `0`, `""`, `false`.
    pub fn zero(self) -> Value {
        match self {
            ValueType::Integer => Value::Integer(0),
            ValueType::String => Value::String(String::new()),
            ValueType::Boolean => Value::Boolean(false),
        }
    }
}

/// Prints the value as CESQL's `STRING()` cast would: `10`, `true`, `abc` (no quotes).
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Integer(i) => write!(f, "{i}"),
            Value::String(s) => f.write_str(s),
            Value::Boolean(b) => write!(f, "{b}"),
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueType::Integer => "Integer",
            ValueType::String => "String",
            ValueType::Boolean => "Boolean",
        })
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Integer(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Boolean(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::String(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::String(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_string_cast_form() {
        assert_eq!(Value::Integer(-5).to_string(), "-5");
        assert_eq!(Value::Boolean(true).to_string(), "true");
        assert_eq!(Value::from("a'b").to_string(), "a'b");
    }

    #[test]
    fn zero_values() {
        assert_eq!(ValueType::Integer.zero(), Value::Integer(0));
        assert_eq!(ValueType::String.zero(), Value::String(String::new()));
        assert_eq!(ValueType::Boolean.zero(), Value::Boolean(false));
    }

    #[test]
    fn describe_names_type_and_value() {
        assert_eq!(Value::from("abc").describe(), "String \"abc\"");
        assert_eq!(Value::Integer(3).describe(), "Integer 3");
    }
}
