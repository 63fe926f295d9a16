//! Type casting between CESQL primitive types (spec section 3.7), both the explicit casts
//! of the `INT`/`BOOL`/`STRING` functions and the implicit casts operators apply.

use crate::error::EvalError;
use crate::value::{Value, ValueType};

/// Whether a cast was asked for by the user (`BOOL(x)`) or applied by an operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CastMode {
    /// `INT()`, `BOOL()`, `STRING()`, `IS_*()`: every cast of the spec table is allowed.
    Explicit,
    /// Operators and typed function parameters. Integer -> Boolean is refused here: the
    /// TCK (`NOT 10` gives `true` and a cast error) predates v1 adding that cast, and only
    /// the explicit `BOOL()` is tested for it.
    Implicit,
}

/// Casts `value` to Integer. On failure the caller uses the zero value `0`.
pub(crate) fn to_integer(value: &Value, _mode: CastMode) -> Result<i32, EvalError> {
    match value {
        Value::Integer(i) => Ok(*i),
        Value::Boolean(b) => Ok(i32::from(*b)),
        // i32's parser accepts exactly an optional sign and base-10 digits, as the spec says.
        Value::String(s) => s.parse::<i32>().map_err(|_| {
            EvalError::Cast(format!(
                "cannot cast {} to Integer: not a 32-bit base-10 integer",
                value.describe()
            ))
        }),
    }
}

/// Casts `value` to Boolean. On failure the caller uses the zero value `false`.
pub(crate) fn to_boolean(value: &Value, mode: CastMode) -> Result<bool, EvalError> {
    match value {
        Value::Boolean(b) => Ok(*b),
        Value::Integer(i) => match mode {
            CastMode::Explicit => Ok(*i != 0),
            CastMode::Implicit => Err(EvalError::Cast(format!(
                "cannot implicitly cast {} to Boolean (use BOOL() for an explicit cast)",
                value.describe()
            ))),
        },
        Value::String(s) => {
            // ASCII case folding is exact here: no non-ASCII character lower-cases into "true"/"false".
            if s.eq_ignore_ascii_case("true") {
                Ok(true)
            } else if s.eq_ignore_ascii_case("false") {
                Ok(false)
            } else {
                Err(EvalError::Cast(format!(
                    "cannot cast {} to Boolean: expected 'true' or 'false'",
                    value.describe()
                )))
            }
        }
    }
}

/// Casts `value` to String; never fails.
pub(crate) fn to_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Casts `value` to `target`; on failure returns the error (the caller substitutes the zero value).
pub(crate) fn cast(value: &Value, target: ValueType, mode: CastMode) -> Result<Value, EvalError> {
    match target {
        ValueType::Integer => to_integer(value, mode).map(Value::Integer),
        ValueType::Boolean => to_boolean(value, mode).map(Value::Boolean),
        ValueType::String => Ok(Value::String(to_string(value))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CastMode::{Explicit, Implicit};

    #[test]
    fn string_to_integer() {
        assert_eq!(to_integer(&"42".into(), Implicit), Ok(42));
        assert_eq!(to_integer(&"+42".into(), Implicit), Ok(42));
        assert_eq!(to_integer(&"-2147483648".into(), Implicit), Ok(i32::MIN));
        for bad in [
            "",
            " 1",
            "1 ",
            "2147483648",
            "1.5",
            "abc",
            "+",
            "--1",
            "0x10",
        ] {
            let err = to_integer(&bad.into(), Explicit).unwrap_err();
            assert_eq!(err.kind(), "cast", "{bad:?}");
        }
    }

    #[test]
    fn boolean_and_integer() {
        assert_eq!(to_integer(&true.into(), Implicit), Ok(1));
        assert_eq!(to_integer(&false.into(), Implicit), Ok(0));
        assert_eq!(to_boolean(&0.into(), Explicit), Ok(false));
        assert_eq!(to_boolean(&(-50).into(), Explicit), Ok(true));
        assert_eq!(to_boolean(&10.into(), Implicit).unwrap_err().kind(), "cast");
    }

    #[test]
    fn string_to_boolean() {
        assert_eq!(to_boolean(&"TRUE".into(), Implicit), Ok(true));
        assert_eq!(to_boolean(&"fAlSe".into(), Implicit), Ok(false));
        assert!(to_boolean(&"yes".into(), Explicit).is_err());
        assert!(to_boolean(&"true ".into(), Explicit).is_err());
    }

    #[test]
    fn to_string_forms() {
        assert_eq!(to_string(&(-1).into()), "-1");
        assert_eq!(to_string(&false.into()), "false");
        assert_eq!(
            cast(&7.into(), ValueType::String, Implicit),
            Ok(Value::from("7"))
        );
    }

    #[test]
    fn error_message_names_the_value() {
        let err = to_integer(&"ABC".into(), Explicit).unwrap_err();
        assert!(err.to_string().contains("\"ABC\""), "{err}");
    }
}
