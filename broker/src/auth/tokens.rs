//! Static ingress tokens (`--ingress-tokens FILE`, `HERALD_INGRESS_TOKENS`): one
//! `<token> <subject>` pair per line (or per comma in the environment variable); blank lines
//! and lines starting with `#` are skipped. A presented token is compared with every known
//! one in constant time, so response timing does not reveal how much of a guess was right.

use subtle::ConstantTimeEq;

#[derive(Clone, Debug, Default)]
pub struct StaticTokens {
    entries: Vec<(String, String)>,
}

/// A line that is not `<token> <subject>`, or a token given twice.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("entry {entry}: {message}")]
pub struct TokensError {
    /// 1-based line (or comma-separated entry) number.
    pub entry: usize,
    pub message: String,
}

impl StaticTokens {
    /// Parses the file format (newline-separated) or the environment's (newlines or commas).
    pub fn parse(text: &str, commas: bool) -> Result<Self, TokensError> {
        let entries: Vec<&str> = if commas {
            text.split([',', '\n']).collect()
        } else {
            text.lines().collect()
        };
        let mut tokens = Self::default();
        for (i, line) in entries.into_iter().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |message: String| TokensError {
                entry: i + 1,
                message,
            };
            let mut words = line.split_whitespace();
            let (Some(token), Some(subject), None) = (words.next(), words.next(), words.next())
            else {
                return Err(error(
                    "expected `<token> <subject>` (two words)".to_string(),
                ));
            };
            if tokens.entries.iter().any(|(t, _)| t == token) {
                return Err(error(format!(
                    "the token of subject {subject:?} is given twice"
                )));
            }
            tokens
                .entries
                .push((token.to_string(), subject.to_string()));
        }
        Ok(tokens)
    }

    /// Adds `other`'s entries (the file's and the environment's together).
    pub fn extend(&mut self, other: StaticTokens) {
        self.entries.extend(other.entries);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The subject of `presented`, comparing it with every token (no early exit on a match).
    pub fn subject(&self, presented: &str) -> Option<&str> {
        let mut found = None;
        for (token, subject) in &self.entries {
            if bool::from(token.as_bytes().ct_eq(presented.as_bytes())) {
                found = Some(subject.as_str());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_and_finds_subjects() {
        let t = StaticTokens::parse(
            "# ops\n\ns3cret alice\n  other  system:serviceaccount:shop:app \n",
            false,
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.subject("s3cret"), Some("alice"));
        assert_eq!(t.subject("other"), Some("system:serviceaccount:shop:app"));
        assert_eq!(t.subject("s3cre"), None);
        assert_eq!(t.subject(""), None);
        let env = StaticTokens::parse("a x,b y", true).unwrap();
        assert_eq!(env.subject("b"), Some("y"));
    }

    #[test]
    fn bad_lines_are_named() {
        let e = StaticTokens::parse("ok alice\nlonely\n", false).unwrap_err();
        assert_eq!(e.entry, 2);
        assert!(e.to_string().contains("two words"), "{e}");
        let e = StaticTokens::parse("t a\nt b\n", false).unwrap_err();
        assert!(e.to_string().contains("given twice"), "{e}");
    }
}
