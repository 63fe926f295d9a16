//! Built-in functions (spec section 3.5 plus the casting functions): name and arity
//! resolution at parse time, parameter types, and the implementations.

use crate::casts::{self, CastMode};
use crate::error::EvalError;
use crate::value::{Value, ValueType};

/// A resolved built-in function overload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Builtin {
    Int,
    Bool,
    String,
    IsInt,
    IsBool,
    IsString,
    Abs,
    Length,
    Concat,
    ConcatWs,
    Lower,
    Upper,
    Trim,
    Left,
    Right,
    Substring,
    SubstringLen,
}

/// What a parameter accepts: any value as is (cast functions), or a type to cast to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Param {
    Any,
    Typed(ValueType),
}

impl Builtin {
    /// Finds the overload of upper-cased `name` taking `arity` arguments.
    pub(crate) fn resolve(name: &str, arity: usize) -> Option<Builtin> {
        use Builtin::*;
        let found = match (name, arity) {
            ("INT", 1) => Int,
            ("BOOL", 1) => Bool,
            ("STRING", 1) => String,
            ("IS_INT", 1) => IsInt,
            ("IS_BOOL", 1) => IsBool,
            ("IS_STRING", 1) => IsString,
            ("ABS", 1) => Abs,
            ("LENGTH", 1) => Length,
            ("CONCAT", _) => Concat,
            ("CONCAT_WS", n) if n >= 1 => ConcatWs,
            ("LOWER", 1) => Lower,
            ("UPPER", 1) => Upper,
            ("TRIM", 1) => Trim,
            ("LEFT", 2) => Left,
            ("RIGHT", 2) => Right,
            ("SUBSTRING", 2) => Substring,
            ("SUBSTRING", 3) => SubstringLen,
            _ => return None,
        };
        Some(found)
    }

    /// Type the `index`th argument is implicitly cast to.
    pub(crate) fn param(self, index: usize) -> Param {
        use Builtin::*;
        let t = match (self, index) {
            (Int | Bool | String | IsInt | IsBool | IsString, _) => return Param::Any,
            (Abs, _) => ValueType::Integer,
            (Left | Right | Substring | SubstringLen, i) if i >= 1 => ValueType::Integer,
            _ => ValueType::String,
        };
        Param::Typed(t)
    }

    /// The function's return type; its zero value is returned when an argument fails.
    pub(crate) fn return_type(self) -> ValueType {
        use Builtin::*;
        match self {
            Int | Abs | Length => ValueType::Integer,
            Bool | IsInt | IsBool | IsString => ValueType::Boolean,
            String | Concat | ConcatWs | Lower | Upper | Trim | Left | Right | Substring
            | SubstringLen => ValueType::String,
        }
    }

    /// Runs the function on arguments already cast to their parameter types. Errors are
    /// pushed to `errors`; a value is always returned.
    pub(crate) fn call(self, args: &[Value], errors: &mut Vec<EvalError>) -> Value {
        use Builtin::*;
        let mut fail = |e: EvalError, v: Value| {
            errors.push(e);
            v
        };
        match (self, args) {
            (Int, [x]) => match casts::to_integer(x, CastMode::Explicit) {
                Ok(i) => Value::Integer(i),
                Err(e) => fail(e, Value::Integer(0)),
            },
            (Bool, [x]) => match casts::to_boolean(x, CastMode::Explicit) {
                Ok(b) => Value::Boolean(b),
                Err(e) => fail(e, Value::Boolean(false)),
            },
            (String, [x]) => Value::String(casts::to_string(x)),
            (IsInt, [x]) => Value::Boolean(casts::to_integer(x, CastMode::Explicit).is_ok()),
            (IsBool, [x]) => Value::Boolean(casts::to_boolean(x, CastMode::Explicit).is_ok()),
            // Every value casts to String, so this only tells a missing attribute apart.
            (IsString, [_]) => Value::Boolean(true),
            (Abs, [Value::Integer(x)]) => match x.checked_abs() {
                Some(a) => Value::Integer(a),
                None => fail(
                    EvalError::Math(format!("ABS({x}) overflows a 32-bit integer")),
                    Value::Integer(i32::MAX),
                ),
            },
            (Length, [Value::String(s)]) => {
                // Saturate: a string longer than i32::MAX characters cannot be a CE attribute anyway.
                Value::Integer(i32::try_from(s.chars().count()).unwrap_or(i32::MAX))
            }
            (Concat, parts) => Value::String(parts.iter().map(casts::to_string).collect()),
            (ConcatWs, [Value::String(sep), parts @ ..]) => Value::String(
                parts
                    .iter()
                    .map(casts::to_string)
                    .collect::<Vec<_>>()
                    .join(sep),
            ),
            (Lower, [Value::String(s)]) => Value::String(s.to_lowercase()),
            (Upper, [Value::String(s)]) => Value::String(s.to_uppercase()),
            (Trim, [Value::String(s)]) => Value::String(s.trim().to_owned()),
            (Left | Right, [Value::String(s), Value::Integer(n)]) => {
                let Ok(n) = usize::try_from(*n) else {
                    let name = if self == Left { "LEFT" } else { "RIGHT" };
                    return fail(
                        EvalError::FunctionEvaluation(format!("{name}: length {n} is negative")),
                        Value::String(s.clone()),
                    );
                };
                let len = s.chars().count();
                let kept: std::string::String = if self == Left {
                    s.chars().take(n).collect()
                } else {
                    s.chars().skip(len.saturating_sub(n)).collect()
                };
                Value::String(kept)
            }
            (Substring, [Value::String(s), Value::Integer(pos)]) => {
                match substring(s, *pos, None) {
                    Ok(v) => Value::String(v),
                    Err(e) => fail(e, Value::String(std::string::String::new())),
                }
            }
            (SubstringLen, [Value::String(s), Value::Integer(pos), Value::Integer(len)]) => {
                match substring(s, *pos, Some(*len)) {
                    Ok(v) => Value::String(v),
                    Err(e) => fail(e, Value::String(std::string::String::new())),
                }
            }
            // Unreachable: the evaluator casts arguments to the declared parameter types.
            _ => fail(
                EvalError::Generic(format!("internal: bad arguments for {self:?}")),
                self.return_type().zero(),
            ),
        }
    }
}

/// SUBSTRING: 1-based `pos`, negative counts from the end, 0 gives "".
fn substring(s: &str, pos: i32, len: Option<i32>) -> Result<String, EvalError> {
    // i64 keeps every intermediate value exact for any i32 inputs.
    let count = i64::try_from(s.chars().count()).unwrap_or(i64::MAX);
    let pos = i64::from(pos);
    if pos > count || pos < -count {
        return Err(EvalError::FunctionEvaluation(format!(
            "SUBSTRING: position {pos} is outside a string of length {count}"
        )));
    }
    if let Some(len) = len.filter(|l| *l < 0) {
        return Err(EvalError::FunctionEvaluation(format!(
            "SUBSTRING: length {len} is negative"
        )));
    }
    if pos == 0 {
        return Ok(String::new());
    }
    let start = if pos > 0 { pos - 1 } else { count + pos };
    let take = len.map_or(count, i64::from);
    let start = usize::try_from(start).unwrap_or(0);
    let take = usize::try_from(take).unwrap_or(usize::MAX);
    Ok(s.chars().skip(start).take(take).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: &[Value]) -> (Value, Vec<&'static str>) {
        let f = Builtin::resolve(name, args.len()).expect("function exists");
        let mut errors = Vec::new();
        let v = f.call(args, &mut errors);
        (v, errors.iter().map(EvalError::kind).collect())
    }

    fn s(v: &str) -> Value {
        Value::from(v)
    }

    #[test]
    fn resolution_by_arity() {
        assert_eq!(Builtin::resolve("SUBSTRING", 2), Some(Builtin::Substring));
        assert_eq!(
            Builtin::resolve("SUBSTRING", 3),
            Some(Builtin::SubstringLen)
        );
        assert_eq!(Builtin::resolve("SUBSTRING", 1), None);
        assert_eq!(Builtin::resolve("CONCAT", 0), Some(Builtin::Concat));
        assert_eq!(Builtin::resolve("CONCAT_WS", 0), None);
        assert_eq!(Builtin::resolve("CONCAT_WS", 5), Some(Builtin::ConcatWs));
        assert_eq!(Builtin::resolve("NOPE", 1), None);
    }

    #[test]
    fn string_functions() {
        assert_eq!(call("LENGTH", &[s("héllo")]).0, Value::Integer(5));
        assert_eq!(call("CONCAT", &[s("a"), s("b")]).0, s("ab"));
        assert_eq!(call("CONCAT_WS", &[s("-"), s("a"), s("b")]).0, s("a-b"));
        assert_eq!(call("CONCAT_WS", &[s("-")]).0, s(""));
        assert_eq!(call("LOWER", &[s("ÀB")]).0, s("àb"));
        assert_eq!(call("UPPER", &[s("àb")]).0, s("ÀB"));
        assert_eq!(call("TRIM", &[s("\u{2003} a \t\n")]).0, s("a"));
        assert_eq!(call("LEFT", &[s("héllo"), 2.into()]).0, s("hé"));
        assert_eq!(call("RIGHT", &[s("héllo"), 4.into()]).0, s("éllo"));
        assert_eq!(call("RIGHT", &[s("abc"), i32::MAX.into()]).0, s("abc"));
        assert_eq!(
            call("LEFT", &[s("abc"), (-1).into()]),
            (s("abc"), vec!["functionEvaluation"])
        );
    }

    #[test]
    fn substring_edges() {
        assert_eq!(call("SUBSTRING", &[s("abc"), 3.into()]).0, s("c"));
        assert_eq!(call("SUBSTRING", &[s("abc"), (-3).into()]).0, s("abc"));
        assert_eq!(call("SUBSTRING", &[s(""), 0.into()]), (s(""), vec![]));
        assert_eq!(
            call("SUBSTRING", &[s("abc"), 1.into(), i32::MAX.into()]).0,
            s("abc")
        );
        assert_eq!(
            call("SUBSTRING", &[s("abc"), 1.into(), (-1).into()]),
            (s(""), vec!["functionEvaluation"])
        );
        assert_eq!(
            call("SUBSTRING", &[s("abc"), i32::MIN.into()]),
            (s(""), vec!["functionEvaluation"])
        );
        assert_eq!(call("SUBSTRING", &[s("abc"), 2.into(), 0.into()]).0, s(""));
    }

    #[test]
    fn casting_and_math_functions() {
        assert_eq!(call("INT", &[s("12")]).0, Value::Integer(12));
        assert_eq!(call("INT", &[s("x")]), (Value::Integer(0), vec!["cast"]));
        assert_eq!(call("BOOL", &[5.into()]).0, Value::Boolean(true));
        assert_eq!(call("STRING", &[true.into()]).0, s("true"));
        assert_eq!(call("IS_INT", &[s("12")]).0, Value::Boolean(true));
        assert_eq!(call("IS_INT", &[s("1x")]), (Value::Boolean(false), vec![]));
        assert_eq!(call("IS_BOOL", &[s("TRUE")]).0, Value::Boolean(true));
        assert_eq!(call("IS_BOOL", &[s("yes")]).0, Value::Boolean(false));
        assert_eq!(call("IS_STRING", &[1.into()]).0, Value::Boolean(true));
        assert_eq!(call("ABS", &[(-3).into()]).0, Value::Integer(3));
        assert_eq!(
            call("ABS", &[i32::MIN.into()]),
            (Value::Integer(i32::MAX), vec!["math"])
        );
    }

    #[test]
    fn param_types() {
        assert_eq!(Builtin::Left.param(0), Param::Typed(ValueType::String));
        assert_eq!(Builtin::Left.param(1), Param::Typed(ValueType::Integer));
        assert_eq!(Builtin::Concat.param(7), Param::Typed(ValueType::String));
        assert_eq!(Builtin::Int.param(0), Param::Any);
    }
}
