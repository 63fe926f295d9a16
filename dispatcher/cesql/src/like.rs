//! LIKE patterns (spec section 3.4.3): compiled once at parse time into tokens, then
//! matched against strings character by character.

/// One element of a compiled pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    /// Exactly this character (case sensitive).
    Char(char),
    /// `_`: any single character.
    One,
    /// `%`: any run of characters, possibly empty.
    Many,
}

/// A compiled LIKE pattern; keeps its source text for pretty-printing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LikePattern {
    source: String,
    pieces: Vec<Piece>,
}

impl LikePattern {
    /// Compiles a pattern: `%` and `_` are wildcards, `\%` and `\_` match them literally,
    /// and a backslash before anything else is an ordinary character (as in the spec).
    pub(crate) fn new(source: String) -> Self {
        let mut pieces = Vec::new();
        let mut chars = source.chars().peekable();
        while let Some(c) = chars.next() {
            let piece = match c {
                '\\' => match chars.next_if(|&n| n == '%' || n == '_') {
                    Some(escaped) => Piece::Char(escaped),
                    None => Piece::Char('\\'),
                },
                '_' => Piece::One,
                // Consecutive `%` are equivalent to one; merging keeps matching linear-ish.
                '%' if pieces.last() == Some(&Piece::Many) => continue,
                '%' => Piece::Many,
                c => Piece::Char(c),
            };
            pieces.push(piece);
        }
        LikePattern { source, pieces }
    }

    /// The pattern as written (after string-literal unescaping).
    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// The literal characters before the first wildcard, and whether the pattern is only
    /// those (no wildcard at all). For indexing filters by prefix.
    pub(crate) fn literal_prefix(&self) -> (String, bool) {
        let mut prefix = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Char(c) => prefix.push(*c),
                _ => return (prefix, false),
            }
        }
        (prefix, true)
    }

    /// Whether `text` matches the whole pattern. Greedy scan with backtracking to the last
    /// `%`: O(len(text) * len(pattern)) worst case, no recursion.
    pub(crate) fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let (mut ti, mut pi) = (0usize, 0usize);
        // Position after the last `%` seen and the text index it is currently matched up to.
        let mut backtrack: Option<(usize, usize)> = None;
        while let Some(&t) = text.get(ti) {
            match self.pieces.get(pi) {
                Some(Piece::Many) => {
                    pi += 1;
                    backtrack = Some((pi, ti));
                }
                Some(Piece::One) => {
                    pi += 1;
                    ti += 1;
                }
                Some(Piece::Char(c)) if *c == t => {
                    pi += 1;
                    ti += 1;
                }
                _ => match backtrack {
                    Some((bp, bt)) => {
                        // Let the last `%` swallow one more character and retry.
                        pi = bp;
                        ti = bt + 1;
                        backtrack = Some((bp, bt + 1));
                    }
                    None => return false,
                },
            }
        }
        self.pieces
            .get(pi..)
            .is_some_and(|rest| rest.iter().all(|p| *p == Piece::Many))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn like(text: &str, pattern: &str) -> bool {
        LikePattern::new(pattern.to_owned()).matches(text)
    }

    #[test]
    fn wildcards() {
        assert!(like("abc", "abc"));
        assert!(!like("abcd", "abc"));
        assert!(like("azzzbzzzc", "a%b%c"));
        assert!(like("", "%"));
        assert!(like("", "%%"));
        assert!(!like("", "_"));
        assert!(like("ab", "_b%"));
        assert!(like("abcd1", "_b%"));
        assert!(!like("b", "_b%"));
        assert!(!like("aBc", "_b%"));
        assert!(like(".ab.cde.", ".%.%."));
        assert!(!like("ab.cde", ".%.%."));
        assert!(like("aaab", "%ab"));
        assert!(like("abab", "%ab"));
        assert!(!like("abac", "%ab"));
    }

    #[test]
    fn escapes() {
        assert!(like("abc%", r"abc\%"));
        assert!(!like("abcd", r"abc\%"));
        assert!(like("a_b", r"a\_b"));
        assert!(!like("azb", r"a\_b"));
        assert!(like(r"ab\c", r"ab\c"));
        assert!(like(r"a\", r"a\"));
        assert!(like("abc123123%456_dzf", r"abc%123\%456\_d_f"));
    }

    #[test]
    fn unicode_is_per_character() {
        assert!(like("é", "_"));
        assert!(like("😀x", "_x"));
        assert!(like("ÀÉ", "%É"));
    }
}
