//! Error types: [`ParseError`] for text that is not a valid CESQL expression, and
//! [`EvalError`] for the spec's evaluation error kinds (section 3.3).

/// The expression text is not valid CESQL. `position` is a byte offset into the text
/// (the text's length for errors at its end); `line` and `column` are 1-based, the
/// column counted in characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    /// Byte offset of the offending token in the expression text.
    pub position: usize,
    /// 1-based line of `position`.
    pub line: usize,
    /// 1-based column (in characters) of `position`.
    pub column: usize,
    /// What was wrong, naming the offending token.
    pub message: String,
}

impl ParseError {
    /// Builds an error at byte `position` of `input`, computing line and column.
    pub(crate) fn at(input: &str, position: usize, message: impl Into<String>) -> Self {
        // Clamp and step back to a char boundary so slicing below can never panic.
        let mut position = position.min(input.len());
        while !input.is_char_boundary(position) {
            position -= 1;
        }
        let before = input.get(..position).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        ParseError {
            position,
            line,
            column,
            message: message.into(),
        }
    }

    /// The TCK's error kind for parse errors: `"parse"`.
    pub fn kind(&self) -> &'static str {
        "parse"
    }
}

/// An error raised while evaluating an expression. Evaluation never stops on one: the
/// operator that raised it returns the value the spec prescribes and evaluation goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// Division or modulo by zero, integer overflow.
    #[error("math error: {0}")]
    Math(String),
    /// A value could not be cast to the type an operator or function needs.
    #[error("cast error: {0}")]
    Cast(String),
    /// No function with this name (upper-cased) takes this many arguments.
    #[error("missing function: no function {0} taking {1} argument(s)")]
    MissingFunction(String, usize),
    /// A built-in function was called with arguments outside its domain.
    #[error("function evaluation error: {0}")]
    FunctionEvaluation(String),
    /// The event has no attribute of this name.
    #[error("missing attribute: the event has no attribute '{0}'")]
    MissingAttribute(String),
    /// Any other error.
    #[error("error: {0}")]
    Generic(String),
}

impl EvalError {
    /// The TCK's name for this kind of error: `math`, `cast`, `missingFunction`,
    /// `functionEvaluation`, `missingAttribute` or `generic`.
    pub fn kind(&self) -> &'static str {
        match self {
            EvalError::Math(_) => "math",
            EvalError::Cast(_) => "cast",
            EvalError::MissingFunction(..) => "missingFunction",
            EvalError::FunctionEvaluation(_) => "functionEvaluation",
            EvalError::MissingAttribute(_) => "missingAttribute",
            EvalError::Generic(_) => "generic",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        let e = ParseError::at("ab\ncdé f", 8, "x");
        assert_eq!((e.line, e.column), (2, 5));
        assert_eq!(e.to_string(), "line 2, column 5: x");
        let e = ParseError::at("abc", 99, "end");
        assert_eq!((e.position, e.line, e.column), (3, 1, 4));
        // Inside a multi-byte char: moved back to its start.
        let e = ParseError::at("é", 1, "mid");
        assert_eq!(e.position, 0);
    }

    #[test]
    fn kinds() {
        assert_eq!(EvalError::Math(String::new()).kind(), "math");
        assert_eq!(
            EvalError::MissingFunction("F".into(), 0).kind(),
            "missingFunction"
        );
        assert_eq!(
            EvalError::MissingAttribute("a".into()).kind(),
            "missingAttribute"
        );
        assert_eq!(ParseError::at("", 0, "").kind(), "parse");
    }
}
