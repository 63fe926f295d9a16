//! Lexer: turns CESQL text into tokens carrying byte positions. Owns keyword recognition
//! (case-insensitive), integer-literal scanning and string-literal unescaping.

use crate::error::ParseError;

/// Token kinds. Words that are not keywords stay raw: the parser decides whether they name
/// an attribute or a function (a function name is followed by `(`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenKind {
    LParen,
    RParen,
    Comma,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    And,
    Or,
    Xor,
    Not,
    Like,
    Exists,
    In,
    True,
    False,
    /// Unsigned digits; saturates at `u64::MAX` so the parser can report out-of-range literals.
    Integer(u64),
    /// Already unescaped contents of a quoted string.
    String(String),
    /// Letters, digits and underscores that are not a keyword, as written.
    Word(String),
    Eof,
}

/// A token and the byte offset where its text starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub start: usize,
}

impl TokenKind {
    /// How the token is named in parse error messages.
    pub(crate) fn describe(&self) -> String {
        let sym = |s: &str| format!("'{s}'");
        match self {
            TokenKind::LParen => sym("("),
            TokenKind::RParen => sym(")"),
            TokenKind::Comma => sym(","),
            TokenKind::Plus => sym("+"),
            TokenKind::Minus => sym("-"),
            TokenKind::Star => sym("*"),
            TokenKind::Slash => sym("/"),
            TokenKind::Percent => sym("%"),
            TokenKind::Eq => sym("="),
            TokenKind::NotEq => sym("!="),
            TokenKind::Lt => sym("<"),
            TokenKind::LtEq => sym("<="),
            TokenKind::Gt => sym(">"),
            TokenKind::GtEq => sym(">="),
            TokenKind::And => "keyword AND".into(),
            TokenKind::Or => "keyword OR".into(),
            TokenKind::Xor => "keyword XOR".into(),
            TokenKind::Not => "keyword NOT".into(),
            TokenKind::Like => "keyword LIKE".into(),
            TokenKind::Exists => "keyword EXISTS".into(),
            TokenKind::In => "keyword IN".into(),
            TokenKind::True => "TRUE".into(),
            TokenKind::False => "FALSE".into(),
            TokenKind::Integer(n) => format!("integer {n}"),
            TokenKind::String(s) => format!("string {s:?}"),
            TokenKind::Word(w) => format!("'{w}'"),
            TokenKind::Eof => "end of input".into(),
        }
    }
}

/// Splits `input` into tokens, ending with an `Eof` token at `input.len()`.
pub(crate) fn tokenize(input: &str) -> Result<Vec<Token>, ParseError> {
    let mut tokens = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        chars.next();
        let mut next_is = |expected: char| chars.next_if(|&(_, c)| c == expected).is_some();
        let kind = match c {
            '(' => TokenKind::LParen,
            ')' => TokenKind::RParen,
            ',' => TokenKind::Comma,
            '+' => TokenKind::Plus,
            '-' => TokenKind::Minus,
            '*' => TokenKind::Star,
            '/' => TokenKind::Slash,
            '%' => TokenKind::Percent,
            '=' => TokenKind::Eq,
            '!' if next_is('=') => TokenKind::NotEq,
            '!' => return Err(ParseError::at(input, start, "expected '=' after '!'")),
            '<' if next_is('=') => TokenKind::LtEq,
            '<' if next_is('>') => TokenKind::NotEq,
            '<' => TokenKind::Lt,
            '>' if next_is('=') => TokenKind::GtEq,
            '>' => TokenKind::Gt,
            '\'' | '"' => lex_string(input, start, c, &mut chars)?,
            c if is_word_char(c) => {
                let mut end = start + c.len_utf8();
                while let Some((i, c)) = chars.next_if(|&(_, c)| is_word_char(c)) {
                    end = i + c.len_utf8();
                }
                classify_word(input.get(start..end).unwrap_or(""))
            }
            other => {
                return Err(ParseError::at(
                    input,
                    start,
                    format!("unexpected character {other:?}"),
                ))
            }
        };
        tokens.push(Token { kind, start });
    }
    tokens.push(Token {
        kind: TokenKind::Eof,
        start: input.len(),
    });
    Ok(tokens)
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// All digits: an integer literal; a keyword (any case): that keyword; else a raw word.
fn classify_word(word: &str) -> TokenKind {
    if word.bytes().all(|b| b.is_ascii_digit()) {
        // Saturating: any value past i32's range is rejected by the parser anyway.
        let n = word.bytes().fold(0u64, |acc, b| {
            acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
        });
        return TokenKind::Integer(n);
    }
    const KEYWORDS: [(&str, TokenKind); 9] = [
        ("AND", TokenKind::And),
        ("OR", TokenKind::Or),
        ("XOR", TokenKind::Xor),
        ("NOT", TokenKind::Not),
        ("LIKE", TokenKind::Like),
        ("EXISTS", TokenKind::Exists),
        ("IN", TokenKind::In),
        ("TRUE", TokenKind::True),
        ("FALSE", TokenKind::False),
    ];
    KEYWORDS
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(word))
        .map_or_else(|| TokenKind::Word(word.to_owned()), |(_, t)| t.clone())
}

/// Scans a string literal opened by `quote` at `start`. Escapes: `\<quote>` and a doubled
/// quote give the quote, `\\` gives one backslash; any other `\x` is kept as written so
/// LIKE patterns keep their `\%` and `\_`.
fn lex_string(
    input: &str,
    start: usize,
    quote: char,
    chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
) -> Result<TokenKind, ParseError> {
    let unterminated = || ParseError::at(input, start, "unterminated string literal");
    let mut value = String::new();
    loop {
        let (_, c) = chars.next().ok_or_else(unterminated)?;
        if c == '\\' {
            let (_, escaped) = chars.next().ok_or_else(unterminated)?;
            if escaped != quote && escaped != '\\' {
                value.push('\\');
            }
            value.push(escaped);
        } else if c == quote {
            if chars.next_if(|&(_, c)| c == quote).is_none() {
                return Ok(TokenKind::String(value));
            }
            value.push(quote);
        } else {
            value.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TokenKind as T;

    fn kinds(input: &str) -> Vec<TokenKind> {
        tokenize(input)
            .unwrap()
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    #[test]
    fn operators() {
        assert_eq!(
            kinds("= != <> < <= > >= + - * / % ( ) ,"),
            vec![
                T::Eq,
                T::NotEq,
                T::NotEq,
                T::Lt,
                T::LtEq,
                T::Gt,
                T::GtEq,
                T::Plus,
                T::Minus,
                T::Star,
                T::Slash,
                T::Percent,
                T::LParen,
                T::RParen,
                T::Comma,
                T::Eof
            ]
        );
        assert_eq!(kinds("a<>b").len(), 4);
    }

    #[test]
    fn keywords_are_case_insensitive() {
        assert_eq!(
            kinds("and Or xOR not LIKE exists In true FALSE"),
            vec![
                T::And,
                T::Or,
                T::Xor,
                T::Not,
                T::Like,
                T::Exists,
                T::In,
                T::True,
                T::False,
                T::Eof
            ]
        );
    }

    #[test]
    fn words_and_integers() {
        assert_eq!(
            kinds("abc CONCAT_WS 123 1abc"),
            vec![
                T::Word("abc".into()),
                T::Word("CONCAT_WS".into()),
                T::Integer(123),
                T::Word("1abc".into()),
                T::Eof
            ]
        );
        assert_eq!(kinds("99999999999999999999999")[0], T::Integer(u64::MAX));
        // The sign is an operator token; the parser folds it into the literal.
        assert_eq!(kinds("-5"), vec![T::Minus, T::Integer(5), T::Eof]);
    }

    #[test]
    fn strings_and_escapes() {
        assert_eq!(kinds(r#"'a"b\'c'"#)[0], T::String(r#"a"b'c"#.into()));
        assert_eq!(kinds(r#""a'b\"c""#)[0], T::String(r#"a'b"c"#.into()));
        assert_eq!(kinds(r"'ab\c'")[0], T::String(r"ab\c".into()));
        assert_eq!(kinds(r"'a\_b\%'")[0], T::String(r"a\_b\%".into()));
        assert_eq!(kinds(r"'a\\'")[0], T::String(r"a\".into()));
        assert_eq!(kinds("'it''s'")[0], T::String("it's".into()));
        assert_eq!(kinds("''")[0], T::String(String::new()));
        assert_eq!(kinds("'é😀'")[0], T::String("é😀".into()));
    }

    #[test]
    fn positions() {
        let toks = tokenize("a  = 'x'").unwrap();
        let starts: Vec<usize> = toks.iter().map(|t| t.start).collect();
        assert_eq!(starts, vec![0, 3, 5, 8]);
    }

    #[test]
    fn errors() {
        for (input, pos, msg) in [
            ("'abc", 0, "unterminated"),
            ("x = \"a\\", 4, "unterminated"),
            ("a ! b", 2, "'='"),
            ("a # b", 2, "unexpected character"),
            ("é", 0, "unexpected character"),
        ] {
            let err = tokenize(input).unwrap_err();
            assert_eq!(err.position, pos, "{input}");
            assert!(err.message.contains(msg), "{input}: {}", err.message);
        }
    }
}
