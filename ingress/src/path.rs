//! Path matches: `Exact` (whole path, case-sensitive) and element-wise `Prefix`.
//! `ImplementationSpecific` is documented as `Prefix`.

use crate::Problem;

/// Longest accepted path in a rule.
pub const MAX_PATH_LEN: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathKind {
    Exact,
    Prefix,
    /// Treated as `Prefix` (documented); regular expressions are not supported.
    ImplementationSpecific,
}

impl PathKind {
    pub fn parse(s: &str) -> Result<PathKind, Problem> {
        match s {
            "Exact" => Ok(PathKind::Exact),
            "Prefix" => Ok(PathKind::Prefix),
            "ImplementationSpecific" => Ok(PathKind::ImplementationSpecific),
            other => Err(Problem::UnknownPathType(other.to_string())),
        }
    }

    /// Order at equal length: Exact first.
    pub fn rank(self) -> u8 {
        match self {
            PathKind::Exact => 0,
            PathKind::Prefix | PathKind::ImplementationSpecific => 1,
        }
    }
}

/// A validated path match. For prefixes, `path` has no trailing `/` (except `/` itself), so
/// `/aaa/bbb/` and `/aaa/bbb` behave the same. Two equal `PathMatch`es of one host are a
/// conflict.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathMatch {
    pub kind: PathKind,
    path: String,
}

impl PathMatch {
    pub fn new(kind: PathKind, path: &str) -> Result<PathMatch, Problem> {
        validate(path)?;
        let path = match kind {
            PathKind::Exact => path.to_string(),
            PathKind::Prefix | PathKind::ImplementationSpecific => {
                let trimmed = path.trim_end_matches('/');
                if trimmed.is_empty() {
                    "/".to_string()
                } else {
                    trimmed.to_string()
                }
            }
        };
        // Prefix and ImplementationSpecific are the same match: compare them as equal.
        let kind = if kind == PathKind::ImplementationSpecific {
            PathKind::Prefix
        } else {
            kind
        };
        Ok(PathMatch { kind, path })
    }

    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// Length that orders matches (longest first).
    pub fn match_len(&self) -> usize {
        self.path.len()
    }

    pub fn matches(&self, request_path: &str) -> bool {
        match self.kind {
            PathKind::Exact => request_path == self.path,
            PathKind::Prefix | PathKind::ImplementationSpecific => {
                if self.path == "/" {
                    return true;
                }
                match request_path.strip_prefix(self.path.as_str()) {
                    Some(rest) => rest.is_empty() || rest.starts_with('/'),
                    None => false,
                }
            }
        }
    }
}

/// Rejects paths that are not absolute, too long, carry control characters or look like
/// regular expressions (another controller's dialect we do not interpret).
fn validate(path: &str) -> Result<(), Problem> {
    if !path.starts_with('/') {
        return Err(Problem::PathNotAbsolute(path.to_string()));
    }
    if path.len() > MAX_PATH_LEN {
        return Err(Problem::PathTooLong(MAX_PATH_LEN));
    }
    if let Some(c) = path.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(Problem::PathCharacter(path.to_string(), c));
    }
    if let Some(c) = path.chars().find(|c| {
        matches!(
            c,
            '(' | ')' | '[' | ']' | '{' | '}' | '^' | '$' | '|' | '\\' | '*' | '?' | '#'
        )
    }) {
        return Err(Problem::RegexPath(path.to_string(), c));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert!(PathMatch::new(PathKind::Prefix, "foo").is_err());
        assert!(matches!(
            PathMatch::new(PathKind::ImplementationSpecific, "/api/(.*)"),
            Err(Problem::RegexPath(_, '('))
        ));
        assert!(PathMatch::new(PathKind::Prefix, "/a b").is_err());
        assert!(
            PathMatch::new(PathKind::Prefix, &format!("/{}", "a".repeat(MAX_PATH_LEN))).is_err()
        );
        assert!(PathMatch::new(PathKind::Prefix, "/a-b_c.d~e/%20/@:+,;=").is_ok());
        assert!(PathKind::parse("Regex").is_err());
    }

    #[test]
    fn prefix_normalization() {
        assert_eq!(
            PathMatch::new(PathKind::Prefix, "/aaa/bbb/")
                .expect("p")
                .as_str(),
            "/aaa/bbb"
        );
        assert_eq!(
            PathMatch::new(PathKind::Prefix, "//").expect("p").as_str(),
            "/"
        );
        assert_eq!(
            PathMatch::new(PathKind::Exact, "/foo/")
                .expect("p")
                .as_str(),
            "/foo/"
        );
        assert_eq!(
            PathMatch::new(PathKind::ImplementationSpecific, "/x").expect("p"),
            PathMatch::new(PathKind::Prefix, "/x/").expect("p")
        );
    }
}
