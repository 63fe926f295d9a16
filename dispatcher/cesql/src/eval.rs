//! Evaluation of a parsed [`Expr`] against an event, in the spec's "complete evaluation"
//! mode: every error is collected and evaluation goes on.
//!
//! Error model (the one that satisfies both the spec and every TCK case):
//! - The operator or function that raises an error returns the value the spec prescribes
//!   for it (`5 / 0` is 0, `ABS(-2147483648)` is 2147483647, a failed implicit cast
//!   yields the target type's zero value and the operator goes on: `NOT 10` is `true`).
//! - An operator or function one of whose operands raised an error (a missing attribute
//!   included) returns the zero value of its own return type without computing anything
//!   (`missing / 0` is 0 with only a missingAttribute error; `true AND (1 != 1 / 0)` is
//!   `false`), though its other operands are still evaluated, to collect their errors.
//! - AND and OR short-circuit: the right operand is not evaluated when the left one
//!   decides the result. IN stops at the first matching element, like a chain of ORs.

use crate::ast::{ArithOp, CmpOp, Expr, LogicOp};
use crate::casts::{self, CastMode};
use crate::error::EvalError;
use crate::functions::Param;
use crate::value::{Value, ValueType};
use crate::{Evaluation, EventAttributes};

/// Evaluates `expr` against `event`.
pub(crate) fn evaluate(expr: &Expr, event: &dyn EventAttributes) -> Evaluation {
    let mut evaluator = Evaluator {
        event,
        errors: Vec::new(),
    };
    let value = evaluator.eval(expr);
    Evaluation {
        value,
        errors: evaluator.errors,
    }
}

struct Evaluator<'a> {
    event: &'a dyn EventAttributes,
    errors: Vec<EvalError>,
}

impl Evaluator<'_> {
    /// Evaluates an operand; the flag tells whether it raised any error.
    fn operand(&mut self, expr: &Expr) -> (Value, bool) {
        let before = self.errors.len();
        let value = self.eval(expr);
        (value, self.errors.len() > before)
    }

    /// Implicit cast to Integer; a failure is recorded and yields 0.
    fn int(&mut self, value: &Value) -> i32 {
        casts::to_integer(value, CastMode::Implicit).unwrap_or_else(|e| {
            self.errors.push(e);
            0
        })
    }

    /// Implicit cast to Boolean; a failure is recorded and yields false.
    fn bool(&mut self, value: &Value) -> bool {
        casts::to_boolean(value, CastMode::Implicit).unwrap_or_else(|e| {
            self.errors.push(e);
            false
        })
    }

    /// Implicit cast to `target`; a failure is recorded and yields its zero value.
    fn cast(&mut self, value: &Value, target: ValueType) -> Value {
        casts::cast(value, target, CastMode::Implicit).unwrap_or_else(|e| {
            self.errors.push(e);
            target.zero()
        })
    }

    fn eval(&mut self, expr: &Expr) -> Value {
        match expr {
            Expr::Literal(value) => value.clone(),
            Expr::Attribute(name) => match self.event.attribute(name) {
                Some(value) => value,
                None => {
                    self.errors.push(EvalError::MissingAttribute(name.clone()));
                    // The spec's default when the expected type is unknown: Boolean.
                    Value::Boolean(false)
                }
            },
            Expr::Exists(name) => Value::Boolean(self.event.has_attribute(name)),
            Expr::Not(inner) => {
                let (value, failed) = self.operand(inner);
                Value::Boolean(!failed && !self.bool(&value))
            }
            Expr::Negate(inner) => {
                let (value, failed) = self.operand(inner);
                if failed {
                    return Value::Integer(0);
                }
                let x = self.int(&value);
                Value::Integer(x.checked_neg().unwrap_or_else(|| {
                    // Same answer as the spec gives for ABS(-2147483648).
                    self.errors.push(EvalError::Math(format!(
                        "-({x}) overflows a 32-bit integer"
                    )));
                    i32::MAX
                }))
            }
            Expr::Arith { op, left, right } => {
                let (l, left_failed) = self.operand(left);
                let (r, right_failed) = self.operand(right);
                if left_failed || right_failed {
                    return Value::Integer(0);
                }
                let (a, b) = (self.int(&l), self.int(&r));
                Value::Integer(self.arith(*op, a, b))
            }
            Expr::Cmp { op, left, right } => {
                let (l, left_failed) = self.operand(left);
                let (r, right_failed) = self.operand(right);
                if left_failed || right_failed {
                    return Value::Boolean(false);
                }
                Value::Boolean(self.compare(*op, &l, &r))
            }
            Expr::Logic { op, operands } => Value::Boolean(self.logic(*op, operands)),
            Expr::Like {
                operand,
                pattern,
                negated,
            } => {
                let (value, failed) = self.operand(operand);
                // Casting to String never fails, so LIKE raises no error of its own.
                Value::Boolean(!failed && pattern.matches(&casts::to_string(&value)) != *negated)
            }
            Expr::In {
                operand,
                set,
                negated,
            } => Value::Boolean(self.in_set(operand, set, *negated)),
            Expr::Call {
                name,
                function: None,
                args,
            } => {
                self.errors
                    .push(EvalError::MissingFunction(name.clone(), args.len()));
                Value::Boolean(false)
            }
            Expr::Call {
                function: Some(function),
                args,
                ..
            } => {
                let mut values = Vec::with_capacity(args.len());
                let mut failed = false;
                for arg in args {
                    let (value, arg_failed) = self.operand(arg);
                    failed |= arg_failed;
                    values.push(value);
                }
                if failed {
                    return function.return_type().zero();
                }
                for (index, value) in values.iter_mut().enumerate() {
                    if let Param::Typed(target) = function.param(index) {
                        *value = self.cast(value, target);
                    }
                }
                function.call(&values, &mut self.errors)
            }
        }
    }

    /// Integer arithmetic; overflow saturates (like the spec's ABS) with a math error,
    /// division and modulo by zero give 0 with a math error.
    fn arith(&mut self, op: ArithOp, a: i32, b: i32) -> i32 {
        let result = match op {
            ArithOp::Add => a.checked_add(b),
            ArithOp::Sub => a.checked_sub(b),
            ArithOp::Mul => a.checked_mul(b),
            ArithOp::Div | ArithOp::Rem if b == 0 => {
                self.errors.push(EvalError::Math(format!(
                    "{a} {} 0: division by zero",
                    op.symbol()
                )));
                return 0;
            }
            // Rust's `/` and `%` truncate toward zero, the spec's definition.
            ArithOp::Div => a.checked_div(b),
            // i32::MIN % -1 is mathematically 0; wrapping_rem returns it without overflow.
            ArithOp::Rem => Some(a.wrapping_rem(b)),
        };
        result.unwrap_or_else(|| {
            self.errors.push(EvalError::Math(format!(
                "{a} {} {b} overflows a 32-bit integer",
                op.symbol()
            )));
            match op {
                ArithOp::Add => a.saturating_add(b),
                ArithOp::Sub => a.saturating_sub(b),
                ArithOp::Mul => a.saturating_mul(b),
                ArithOp::Div | ArithOp::Rem => a.saturating_div(b),
            }
        })
    }

    /// `=`/`!=` cast the left value to the right one's type (spec 3.7: the ambiguous
    /// operator is chosen by the right operand's type); ordering compares integers.
    fn compare(&mut self, op: CmpOp, l: &Value, r: &Value) -> bool {
        match op {
            CmpOp::Eq | CmpOp::NotEq => {
                let l = self.cast(l, r.value_type());
                (l == *r) == (op == CmpOp::Eq)
            }
            CmpOp::Lt | CmpOp::LtEq | CmpOp::Gt | CmpOp::GtEq => {
                let (a, b) = (self.int(l), self.int(r));
                match op {
                    CmpOp::Lt => a < b,
                    CmpOp::LtEq => a <= b,
                    CmpOp::Gt => a > b,
                    _ => a >= b,
                }
            }
        }
    }

    /// A flattened chain, evaluated exactly as the left-nested binary operators it stands for.
    fn logic(&mut self, op: LogicOp, operands: &[Expr]) -> bool {
        let Some((first, rest)) = operands.split_first() else {
            return false;
        };
        let start = self.errors.len();
        let (value, mut left_failed) = self.operand(first);
        // A failed operand counts as its zero value, without a second (cast) error.
        let mut left = !left_failed && self.bool(&value);
        for right_expr in rest {
            let short_circuit = match op {
                LogicOp::And => !left,
                LogicOp::Or => left,
                LogicOp::Xor => false,
            };
            let result = if short_circuit {
                left && !left_failed
            } else {
                let (value, right_failed) = self.operand(right_expr);
                let right = !right_failed && self.bool(&value);
                if left_failed || right_failed {
                    false
                } else {
                    match op {
                        LogicOp::And => left && right,
                        LogicOp::Or => left || right,
                        LogicOp::Xor => left != right,
                    }
                }
            };
            // The node just computed is the left operand of the next one.
            left_failed = self.errors.len() > start;
            left = result && !left_failed;
        }
        left
    }

    /// `x [NOT] IN (y1, ...)`: each element cast to x's type and compared as by `=`.
    fn in_set(&mut self, operand: &Expr, set: &[Expr], negated: bool) -> bool {
        let (x, x_failed) = self.operand(operand);
        if x_failed {
            return false;
        }
        let target = x.value_type();
        let mut failed = false;
        let mut found = false;
        for element in set {
            let before = self.errors.len();
            let (value, element_failed) = self.operand(element);
            let matched = !element_failed && self.cast(&value, target) == x;
            if self.errors.len() > before {
                // Like `x = y1 OR x = y2 ...`: after a failure every element is still
                // evaluated, but the result is false.
                failed = true;
            } else if matched && !failed {
                found = true;
                break;
            }
        }
        !failed && found != negated
    }
}
