//! The compiled form of an expression (abstract syntax tree) and its pretty-printer.
//! Printing adds only the parentheses needed, so the output re-parses to an equal tree.

use std::fmt;

use crate::functions::Builtin;
use crate::like::LikePattern;
use crate::value::Value;

/// `* / % + -` on integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArithOp {
    Mul,
    Div,
    Rem,
    Add,
    Sub,
}

/// `= != < <= > >=` (`<>` parses as `!=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

/// `AND OR XOR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogicOp {
    And,
    Or,
    Xor,
}

/// An expression node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Expr {
    Literal(Value),
    /// An event attribute, lower-cased.
    Attribute(String),
    /// `EXISTS name`, name lower-cased.
    Exists(String),
    Not(Box<Expr>),
    Negate(Box<Expr>),
    Arith {
        op: ArithOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    Cmp {
        op: CmpOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    /// A left-associative chain of one logic operator (`a OR b OR c`), at least two operands;
    /// flattening keeps long generated filters shallow.
    Logic {
        op: LogicOp,
        operands: Vec<Expr>,
    },
    Like {
        operand: Box<Expr>,
        pattern: LikePattern,
        negated: bool,
    },
    In {
        operand: Box<Expr>,
        set: Vec<Expr>,
        negated: bool,
    },
    /// A function call; `name` is upper-cased, `function` is None when no built-in has
    /// this name and arity (a MissingFunction error at evaluation, per the TCK).
    Call {
        name: String,
        function: Option<Builtin>,
        args: Vec<Expr>,
    },
}

impl Expr {
    /// Calls of functions no built-in provides, as `NAME/arity`, in source order.
    pub(crate) fn missing_functions(&self, out: &mut Vec<String>) {
        match self {
            Expr::Literal(_) | Expr::Attribute(_) | Expr::Exists(_) => {}
            Expr::Not(e) | Expr::Negate(e) => e.missing_functions(out),
            Expr::Arith { left, right, .. } | Expr::Cmp { left, right, .. } => {
                left.missing_functions(out);
                right.missing_functions(out);
            }
            Expr::Logic { operands, .. } => operands.iter().for_each(|e| e.missing_functions(out)),
            Expr::Like { operand, .. } => operand.missing_functions(out),
            Expr::In { operand, set, .. } => {
                operand.missing_functions(out);
                set.iter().for_each(|e| e.missing_functions(out));
            }
            Expr::Call {
                name,
                function,
                args,
            } => {
                if function.is_none() {
                    out.push(format!("{name}/{}", args.len()));
                }
                args.iter().for_each(|e| e.missing_functions(out));
            }
        }
    }
}

/// Binding strength, loosest first; the parser implements the same table (spec 3.6).
pub(crate) mod prec {
    pub const LOGIC: u8 = 1;
    pub const CMP: u8 = 2;
    pub const ADD: u8 = 3;
    pub const MUL: u8 = 4;
    /// LIKE and IN, which apply left to right after a unary operand.
    pub const POSTFIX: u8 = 5;
    pub const UNARY: u8 = 6;
    pub const PRIMARY: u8 = 7;
}

impl ArithOp {
    pub(crate) fn precedence(self) -> u8 {
        match self {
            ArithOp::Mul | ArithOp::Div | ArithOp::Rem => prec::MUL,
            ArithOp::Add | ArithOp::Sub => prec::ADD,
        }
    }

    pub(crate) fn symbol(self) -> &'static str {
        match self {
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
            ArithOp::Rem => "%",
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
        }
    }
}

impl CmpOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::NotEq => "!=",
            CmpOp::Lt => "<",
            CmpOp::LtEq => "<=",
            CmpOp::Gt => ">",
            CmpOp::GtEq => ">=",
        }
    }
}

impl LogicOp {
    pub(crate) fn keyword(self) -> &'static str {
        match self {
            LogicOp::And => "AND",
            LogicOp::Or => "OR",
            LogicOp::Xor => "XOR",
        }
    }
}

impl Expr {
    fn precedence(&self) -> u8 {
        match self {
            Expr::Logic { .. } => prec::LOGIC,
            Expr::Cmp { .. } => prec::CMP,
            Expr::Arith { op, .. } => op.precedence(),
            Expr::Like { .. } | Expr::In { .. } => prec::POSTFIX,
            Expr::Not(_) | Expr::Negate(_) => prec::UNARY,
            Expr::Literal(_) | Expr::Attribute(_) | Expr::Exists(_) | Expr::Call { .. } => {
                prec::PRIMARY
            }
        }
    }

    /// Prints `self`, parenthesized when it binds looser than `min`.
    fn fmt_at(&self, f: &mut fmt::Formatter<'_>, min: u8) -> fmt::Result {
        if self.precedence() < min {
            write!(f, "({self})")
        } else {
            write!(f, "{self}")
        }
    }
}

/// Writes a single-quoted literal that the lexer reads back as exactly `s`.
fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("'")?;
    for c in s.chars() {
        match c {
            '\'' => f.write_str("\\'")?,
            '\\' => f.write_str("\\\\")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("'")
}

fn write_list(f: &mut fmt::Formatter<'_>, items: &[Expr]) -> fmt::Result {
    f.write_str("(")?;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    f.write_str(")")
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Literal(Value::Integer(i)) => write!(f, "{i}"),
            Expr::Literal(Value::Boolean(b)) => f.write_str(if *b { "TRUE" } else { "FALSE" }),
            Expr::Literal(Value::String(s)) => write_quoted(f, s),
            Expr::Attribute(name) => f.write_str(name),
            Expr::Exists(name) => write!(f, "EXISTS {name}"),
            Expr::Not(inner) => {
                f.write_str("NOT ")?;
                inner.fmt_at(f, prec::UNARY)
            }
            // `-5` would re-parse as the literal -5, so a negated integer literal keeps parens.
            Expr::Negate(inner) if matches!(**inner, Expr::Literal(Value::Integer(_))) => {
                write!(f, "-({inner})")
            }
            Expr::Negate(inner) => {
                f.write_str("-")?;
                inner.fmt_at(f, prec::UNARY)
            }
            Expr::Arith { op, left, right } => {
                left.fmt_at(f, op.precedence())?;
                write!(f, " {} ", op.symbol())?;
                right.fmt_at(f, op.precedence() + 1)
            }
            Expr::Cmp { op, left, right } => {
                left.fmt_at(f, prec::CMP)?;
                write!(f, " {} ", op.symbol())?;
                right.fmt_at(f, prec::CMP + 1)
            }
            Expr::Logic { op, operands } => {
                for (i, operand) in operands.iter().enumerate() {
                    if i > 0 {
                        write!(f, " {} ", op.keyword())?;
                    }
                    // Nested chains always get parens: explicit grouping of mixed AND/OR
                    // reads the same under any precedence convention.
                    operand.fmt_at(f, prec::LOGIC + 1)?;
                }
                Ok(())
            }
            Expr::Like {
                operand,
                pattern,
                negated,
            } => {
                operand.fmt_at(f, prec::POSTFIX)?;
                f.write_str(if *negated { " NOT LIKE " } else { " LIKE " })?;
                write_quoted(f, pattern.source())
            }
            Expr::In {
                operand,
                set,
                negated,
            } => {
                operand.fmt_at(f, prec::POSTFIX)?;
                f.write_str(if *negated { " NOT IN " } else { " IN " })?;
                write_list(f, set)
            }
            Expr::Call { name, args, .. } => {
                f.write_str(name)?;
                write_list(f, args)
            }
        }
    }
}
