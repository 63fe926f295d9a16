//! Parser: precedence climbing over the lexer's tokens into an [`Expr`] tree. Owns the
//! grammar (spec sections 2 and 3.6), identifier/function-name rules, integer-literal
//! range checks, LIKE-pattern compilation, function resolution and the nesting limit.
//!
//! Precedence, tightest first: function calls and atoms; unary `NOT` and `-`; LIKE and IN
//! (postfix, left to right); `* / %`; `+ -`; comparisons; `AND OR XOR` (one level). Binary
//! operators of equal precedence group left to right, as spec section 3.6 says.

use crate::ast::{prec, ArithOp, CmpOp, Expr, LogicOp};
use crate::error::ParseError;
use crate::functions::Builtin;
use crate::lexer::{tokenize, Token, TokenKind};
use crate::like::LikePattern;
use crate::value::Value;

/// Deepest nesting accepted, in tree levels and in brackets/unary operators; bounds the
/// recursion of parsing, evaluation, printing and dropping so no input can overflow the stack.
pub const MAX_DEPTH: usize = 64;

/// A parsed node and the depth of its subtree.
type Parsed = Result<(Expr, usize), ParseError>;

/// Parses a whole expression.
pub(crate) fn parse(input: &str) -> Result<Expr, ParseError> {
    let tokens = tokenize(input)?;
    let mut parser = Parser {
        input,
        tokens,
        pos: 0,
        nesting: 0,
    };
    let (expr, _) = parser.expression()?;
    let next = parser.peek();
    if next.kind != TokenKind::Eof {
        return Err(parser.error_at(
            next.start,
            format!(
                "expected an operator or end of input but found {}",
                next.kind.describe()
            ),
        ));
    }
    Ok(expr)
}

struct Parser<'a> {
    input: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    /// Current recursion depth through brackets and unary operators.
    nesting: usize,
}

/// The binary operator a token stands for, with its precedence.
#[derive(Clone, Copy)]
enum BinOp {
    Arith(ArithOp),
    Cmp(CmpOp),
    Logic(LogicOp),
}

fn binary_op(kind: &TokenKind) -> Option<(BinOp, u8)> {
    let op = match kind {
        TokenKind::Star => BinOp::Arith(ArithOp::Mul),
        TokenKind::Slash => BinOp::Arith(ArithOp::Div),
        TokenKind::Percent => BinOp::Arith(ArithOp::Rem),
        TokenKind::Plus => BinOp::Arith(ArithOp::Add),
        TokenKind::Minus => BinOp::Arith(ArithOp::Sub),
        TokenKind::Eq => BinOp::Cmp(CmpOp::Eq),
        TokenKind::NotEq => BinOp::Cmp(CmpOp::NotEq),
        TokenKind::Lt => BinOp::Cmp(CmpOp::Lt),
        TokenKind::LtEq => BinOp::Cmp(CmpOp::LtEq),
        TokenKind::Gt => BinOp::Cmp(CmpOp::Gt),
        TokenKind::GtEq => BinOp::Cmp(CmpOp::GtEq),
        TokenKind::And => BinOp::Logic(LogicOp::And),
        TokenKind::Or => BinOp::Logic(LogicOp::Or),
        TokenKind::Xor => BinOp::Logic(LogicOp::Xor),
        _ => return None,
    };
    let level = match op {
        BinOp::Arith(a) => a.precedence(),
        BinOp::Cmp(_) => prec::CMP,
        BinOp::Logic(_) => prec::LOGIC,
    };
    Some((op, level))
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        self.peek_at(0)
    }

    /// The token `offset` places ahead; the final Eof repeats past the end.
    fn peek_at(&self, offset: usize) -> &Token {
        let index = self.pos.saturating_add(offset);
        self.tokens
            .get(index)
            .or_else(|| self.tokens.last())
            .unwrap_or(&EOF)
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        token
    }

    fn error_at(&self, position: usize, message: impl Into<String>) -> ParseError {
        ParseError::at(self.input, position, message)
    }

    fn expect(&mut self, kind: TokenKind, what: &str) -> Result<Token, ParseError> {
        let token = self.advance();
        if token.kind == kind {
            Ok(token)
        } else {
            Err(self.error_at(
                token.start,
                format!("expected {what} but found {}", token.kind.describe()),
            ))
        }
    }

    /// Wraps a new node, rejecting trees deeper than [`MAX_DEPTH`].
    fn node(&self, expr: Expr, depth: usize, at: usize) -> Parsed {
        if depth > MAX_DEPTH {
            return Err(self.error_at(
                at,
                format!("expression nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok((expr, depth))
    }

    /// Runs `f` one recursion level deeper, failing past [`MAX_DEPTH`] before recursing.
    fn nested<T>(
        &mut self,
        at: usize,
        f: impl FnOnce(&mut Self) -> Result<T, ParseError>,
    ) -> Result<T, ParseError> {
        if self.nesting >= MAX_DEPTH {
            return Err(self.error_at(
                at,
                format!("expression nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        self.nesting += 1;
        let result = f(self);
        self.nesting -= 1;
        result
    }

    fn expression(&mut self) -> Parsed {
        self.binary(prec::LOGIC)
    }

    /// Precedence climbing: operands bound by operators of at least `min` precedence.
    fn binary(&mut self, min: u8) -> Parsed {
        let (mut left, mut depth) = self.postfix()?;
        while let Some((op, level)) = binary_op(&self.peek().kind) {
            if level < min {
                break;
            }
            let at = self.advance().start;
            // level + 1 for the right operand makes equal-precedence operators left-associative.
            let right = self.binary(level + 1)?;
            (left, depth) = self.combine(op, (left, depth), right, at)?;
        }
        Ok((left, depth))
    }

    /// Builds `left op right`; kept out of `binary` so the recursion's frames stay small.
    fn combine(
        &self,
        op: BinOp,
        (left, left_depth): (Expr, usize),
        (right, right_depth): (Expr, usize),
        at: usize,
    ) -> Parsed {
        let depth = left_depth.max(right_depth) + 1;
        match op {
            BinOp::Arith(op) => self.node(
                Expr::Arith {
                    op,
                    left: Box::new(left),
                    right: Box::new(right),
                },
                depth,
                at,
            ),
            BinOp::Cmp(op) => self.node(
                Expr::Cmp {
                    op,
                    left: Box::new(left),
                    right: Box::new(right),
                },
                depth,
                at,
            ),
            BinOp::Logic(op) => match left {
                // Extend a chain of the same operator instead of nesting.
                Expr::Logic {
                    op: chain_op,
                    mut operands,
                } if chain_op == op => {
                    operands.push(right);
                    let depth = left_depth.max(right_depth + 1);
                    self.node(Expr::Logic { op, operands }, depth, at)
                }
                left => self.node(
                    Expr::Logic {
                        op,
                        operands: vec![left, right],
                    },
                    depth,
                    at,
                ),
            },
        }
    }

    /// A unary operand followed by any number of `[NOT] LIKE 'pattern'` / `[NOT] IN (...)`.
    fn postfix(&mut self) -> Parsed {
        let mut parsed = self.unary()?;
        loop {
            let negated = self.peek().kind == TokenKind::Not;
            let keyword = self.peek_at(usize::from(negated)).kind.clone();
            parsed = match keyword {
                TokenKind::Like => self.like(parsed, negated)?,
                TokenKind::In => self.in_set(parsed, negated)?,
                _ if negated => return Err(self.not_without_like_or_in()),
                _ => return Ok(parsed),
            };
        }
    }

    /// `[NOT] LIKE 'pattern'` after `operand`; the pattern must be a string literal.
    fn like(&mut self, (operand, depth): (Expr, usize), negated: bool) -> Parsed {
        if negated {
            self.advance();
        }
        let at = self.advance().start;
        let token = self.advance();
        let TokenKind::String(pattern) = token.kind else {
            return Err(self.error_at(
                token.start,
                format!(
                    "the LIKE pattern must be a string literal but found {}",
                    token.kind.describe()
                ),
            ));
        };
        let like = Expr::Like {
            operand: Box::new(operand),
            pattern: LikePattern::new(pattern),
            negated,
        };
        self.node(like, depth + 1, at)
    }

    /// `[NOT] IN (y1, ...)` after `operand`.
    fn in_set(&mut self, (operand, depth): (Expr, usize), negated: bool) -> Parsed {
        if negated {
            self.advance();
        }
        let at = self.advance().start;
        let (set, set_depth) = self.nested(at, |p| p.list(false, "IN"))?;
        let in_set = Expr::In {
            operand: Box::new(operand),
            set,
            negated,
        };
        self.node(in_set, depth.max(set_depth) + 1, at)
    }

    #[cold]
    fn not_without_like_or_in(&self) -> ParseError {
        let after = self.peek_at(1);
        self.error_at(
            after.start,
            format!(
                "expected LIKE or IN after NOT but found {}",
                after.kind.describe()
            ),
        )
    }

    /// `NOT x`, `-x`, signed integer literals, or a primary expression.
    fn unary(&mut self) -> Parsed {
        let token = self.peek().clone();
        match token.kind {
            TokenKind::Not => {
                self.advance();
                let (inner, depth) = self.nested(token.start, Self::unary)?;
                self.node(Expr::Not(Box::new(inner)), depth + 1, token.start)
            }
            TokenKind::Minus | TokenKind::Plus => {
                if let TokenKind::Integer(n) = self.peek_at(1).kind {
                    // A sign directly on digits is part of the literal (spec 2.2), which is
                    // what makes -2147483648 expressible.
                    self.advance();
                    self.advance();
                    let negative = token.kind == TokenKind::Minus;
                    return self.integer(n, negative, token.start);
                }
                if token.kind == TokenKind::Plus {
                    return Err(self.error_at(
                        token.start,
                        "unary '+' is only allowed directly before an integer literal",
                    ));
                }
                self.advance();
                let (inner, depth) = self.nested(token.start, Self::unary)?;
                self.node(Expr::Negate(Box::new(inner)), depth + 1, token.start)
            }
            _ => self.primary(),
        }
    }

    fn integer(&self, digits: u64, negative: bool, at: usize) -> Parsed {
        let value = i64::try_from(digits)
            .ok()
            .map(|v| if negative { -v } else { v })
            .and_then(|v| i32::try_from(v).ok());
        match value {
            Some(v) => Ok((Expr::Literal(Value::Integer(v)), 1)),
            None => Err(self.error_at(
                at,
                "integer literal out of the 32-bit range -2147483648..2147483647",
            )),
        }
    }

    fn primary(&mut self) -> Parsed {
        let token = self.advance();
        match token.kind {
            TokenKind::Integer(n) => self.integer(n, false, token.start),
            TokenKind::String(s) => Ok((Expr::Literal(Value::String(s)), 1)),
            TokenKind::True => Ok((Expr::Literal(Value::Boolean(true)), 1)),
            TokenKind::False => Ok((Expr::Literal(Value::Boolean(false)), 1)),
            TokenKind::Exists => self.exists(),
            TokenKind::LParen => {
                let inner = self.nested(token.start, Self::expression)?;
                self.expect(TokenKind::RParen, "')'")?;
                Ok(inner)
            }
            TokenKind::Word(word) if self.peek().kind == TokenKind::LParen => {
                self.call(&word, token.start)
            }
            TokenKind::Word(word) => Ok((Expr::Attribute(self.identifier(&word, token.start)?), 1)),
            other => Err(self.error_at(
                token.start,
                format!("expected an expression but found {}", other.describe()),
            )),
        }
    }

    /// `EXISTS name`, after the keyword.
    fn exists(&mut self) -> Parsed {
        let token = self.advance();
        match token.kind {
            TokenKind::Word(word) => Ok((Expr::Exists(self.identifier(&word, token.start)?), 1)),
            other => Err(self.error_at(
                token.start,
                format!(
                    "expected an attribute name after EXISTS but found {}",
                    other.describe()
                ),
            )),
        }
    }

    /// `NAME(args...)`, resolved against the built-ins by name and arity.
    fn call(&mut self, word: &str, at: usize) -> Parsed {
        let Some(name) = function_name(word) else {
            return Err(self.error_at(
                at,
                format!("invalid function name '{word}': use letters and '_' only"),
            ));
        };
        let (args, depth) = self.nested(at, |p| p.list(true, "function"))?;
        let function = Builtin::resolve(&name, args.len());
        let call = Expr::Call {
            name,
            function,
            args,
        };
        self.node(call, depth + 1, at)
    }

    /// `( expr, expr, ... )`; returns the items and their greatest depth.
    fn list(&mut self, allow_empty: bool, what: &str) -> Result<(Vec<Expr>, usize), ParseError> {
        self.expect(TokenKind::LParen, "'('")?;
        let mut items = Vec::new();
        let mut depth = 0;
        if self.peek().kind == TokenKind::RParen {
            let close = self.advance();
            if allow_empty {
                return Ok((items, depth));
            }
            return Err(self.error_at(close.start, format!("the {what} set must not be empty")));
        }
        loop {
            let (item, d) = self.expression()?;
            items.push(item);
            depth = depth.max(d);
            let token = self.advance();
            match token.kind {
                TokenKind::Comma => continue,
                TokenKind::RParen => return Ok((items, depth)),
                other => {
                    return Err(self.error_at(
                        token.start,
                        format!("expected ',' or ')' but found {}", other.describe()),
                    ))
                }
            }
        }
    }

    /// Attribute names: letters and digits only (CloudEvents naming), lower-cased.
    fn identifier(&self, word: &str, at: usize) -> Result<String, ParseError> {
        if word.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(word.to_ascii_lowercase())
        } else {
            Err(self.error_at(
                at,
                format!("invalid attribute name '{word}': use letters and digits only"),
            ))
        }
    }
}

/// Function names: a letter then letters or '_' (spec 2.4), upper-cased for lookup.
fn function_name(word: &str) -> Option<String> {
    let mut bytes = word.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic());
    (first_ok && bytes.all(|b| b.is_ascii_alphabetic() || b == b'_'))
        .then(|| word.to_ascii_uppercase())
}

/// Fallback for `peek_at` on an (impossible) empty token list.
static EOF: Token = Token {
    kind: TokenKind::Eof,
    start: 0,
};

#[cfg(test)]
mod tests {
    use super::*;

    fn round(input: &str) -> String {
        parse(input)
            .unwrap_or_else(|e| panic!("{input}: {e}"))
            .to_string()
    }

    fn err(input: &str) -> ParseError {
        parse(input).expect_err(input)
    }

    #[test]
    fn atoms() {
        assert_eq!(parse("5").unwrap(), Expr::Literal(Value::Integer(5)));
        assert_eq!(parse("-5").unwrap(), Expr::Literal(Value::Integer(-5)));
        assert_eq!(parse("+5").unwrap(), Expr::Literal(Value::Integer(5)));
        assert_eq!(
            parse("-2147483648").unwrap(),
            Expr::Literal(Value::Integer(i32::MIN))
        );
        assert_eq!(parse("MyExt").unwrap(), Expr::Attribute("myext".into()));
        assert_eq!(
            parse("EXISTS SOURCE").unwrap(),
            Expr::Exists("source".into())
        );
        assert_eq!(parse("tRuE").unwrap(), Expr::Literal(Value::Boolean(true)));
    }

    #[test]
    fn precedence_and_associativity() {
        assert_eq!(round("4 * 2 + 4 / 2"), "4 * 2 + 4 / 2");
        assert_eq!(round("4 * (2 + 4) / 2"), "4 * (2 + 4) / 2");
        assert_eq!(round("1 - (2 - 3)"), "1 - (2 - 3)");
        assert_eq!(round("(1 - 2) - 3"), "1 - 2 - 3");
        assert_eq!(round("a = 1 AND b = 2"), "a = 1 AND b = 2");
        // AND, OR and XOR share one level and group left to right (spec 3.6).
        assert_eq!(round("a AND b OR c"), "(a AND b) OR c");
        assert_eq!(round("a OR b AND c"), "(a OR b) AND c");
        assert_eq!(round("a OR (b AND c)"), "a OR (b AND c)");
        assert_eq!(round("a or b or c or d"), "a OR b OR c OR d");
        // Unary operators bind tighter than everything but calls and atoms.
        assert_eq!(round("NOT a = b"), "NOT a = b");
        assert_eq!(round("NOT (a = b)"), "NOT (a = b)");
        assert_eq!(round("NOT a LIKE 'x'"), "NOT a LIKE 'x'");
        assert_eq!(round("-a * b"), "-a * b");
        assert_eq!(round("-(a * b)"), "-(a * b)");
        // LIKE and IN bind tighter than binary operators.
        assert_eq!(round("a + b LIKE 'x'"), "a + b LIKE 'x'");
        assert_eq!(round("(a + b) LIKE 'x'"), "(a + b) LIKE 'x'");
        assert_eq!(round("a IN (1) LIKE 'x'"), "a IN (1) LIKE 'x'");
        assert!(matches!(parse("NOT a = b").unwrap(), Expr::Cmp { .. }));
        assert!(matches!(parse("-a * b").unwrap(), Expr::Arith { .. }));
    }

    #[test]
    fn logic_chains_are_flat() {
        let Expr::Logic { operands, .. } = parse("a OR b OR c OR d").unwrap() else {
            panic!("not a chain")
        };
        assert_eq!(operands.len(), 4);
        // Long generated OR chains stay within the depth limit.
        let long = vec!["type = 'x'"; 1000].join(" OR ");
        assert!(parse(&long).is_ok());
    }

    #[test]
    fn negation_forms() {
        assert_eq!(round("--10"), "-(-10)");
        assert_eq!(round("-(10)"), "-(10)");
        assert_eq!(round("- -'10'"), "--'10'");
        assert_eq!(round("5 - -3"), "5 - -3");
        assert_eq!(round("5-3"), "5 - 3");
    }

    #[test]
    fn calls_like_in_exists() {
        assert_eq!(round("concat_ws(',', a, 'b')"), "CONCAT_WS(',', a, 'b')");
        assert_eq!(round("CONCAT()"), "CONCAT()");
        assert_eq!(round("x not like 'a\\%'"), "x NOT LIKE 'a\\\\%'");
        assert_eq!(round("x NOT IN (1, 'a', TRUE)"), "x NOT IN (1, 'a', TRUE)");
        assert_eq!(round("NOT EXISTS time"), "NOT EXISTS time");
        assert_eq!(round("\"it's\""), "'it\\'s'");
        let Expr::Call { function, .. } = parse("nope(1)").unwrap() else {
            panic!("not a call")
        };
        assert_eq!(function, None);
    }

    #[test]
    fn errors_name_position_and_token() {
        let e = err("ABC(");
        assert_eq!(e.position, 4);
        assert!(e.message.contains("end of input"), "{}", e.message);
        let e = err("(a = 1");
        assert_eq!(
            e.to_string(),
            "line 1, column 7: expected ')' but found end of input"
        );
        let e = err("x LIKE 123");
        assert_eq!(e.position, 7);
        assert!(e.message.contains("string literal"));
        assert!(err("x IN ()").message.contains("empty"));
        assert!(err("2147483648").message.contains("range"));
        assert!(err("-2147483649").message.contains("range"));
        assert!(err("my_ext = 1").message.contains("attribute name"));
        assert!(err("f1(2)").message.contains("function name"));
        assert!(err("a NOT b").message.contains("LIKE or IN"));
        assert!(err("").message.contains("end of input"));
        assert!(err("1 2").message.contains("integer 2"));
        assert!(err("EXISTS 5").message.contains("attribute name"));
        assert!(err("+a").message.contains("'+'"));
        assert!(err("a AND").message.contains("expression"));
        let e = err("a = 1\n  AND )");
        assert_eq!((e.line, e.column), (2, 7));
    }

    #[test]
    fn depth_is_limited() {
        let ok = format!(
            "{}1{}",
            "(".repeat(MAX_DEPTH - 1),
            ")".repeat(MAX_DEPTH - 1)
        );
        assert!(parse(&ok).is_ok());
        for deep in [
            format!("{}1{}", "(".repeat(100_000), ")".repeat(100_000)),
            "NOT ".repeat(100_000) + "TRUE",
            "-".repeat(100_000) + "1",
            vec!["1"; 10_000].join(" + "),
            "ABS(".repeat(10_000) + "1" + &")".repeat(10_000),
            "1 IN (".repeat(10_000) + "1" + &")".repeat(10_000),
            vec!["a"; 1000].join(" AND b OR "),
        ] {
            let e = err(&deep);
            assert!(e.message.contains("nested"), "{}", e.message);
            assert!(e.position <= deep.len());
        }
    }
}
