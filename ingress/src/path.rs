//! Path matches: `Exact` (whole path, case-sensitive) and element-wise `Prefix`.
//! `ImplementationSpecific` is documented as `Prefix`. `Regex` is ingress-nginx's regular
//! expression path (`use-regex`, `rewrite-target`): nginx's `location ~* "^<path>"`.

use std::sync::Arc;

use crate::Problem;

/// Longest accepted path in a rule.
pub const MAX_PATH_LEN: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathKind {
    Exact,
    Prefix,
    /// Treated as `Prefix` (documented); regular expressions only with ingress-nginx's
    /// `use-regex` or `rewrite-target` (then the path is a `Regex`).
    ImplementationSpecific,
    /// ingress-nginx's regular expression path: case-insensitive, anchored at the start
    /// only (nginx `location ~* "^<path>"`). Never from `pathType`.
    Regex,
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
            PathKind::Prefix | PathKind::ImplementationSpecific | PathKind::Regex => 1,
        }
    }
}

/// A validated path match. For prefixes, `path` has no trailing `/` (except `/` itself), so
/// `/aaa/bbb/` and `/aaa/bbb` behave the same. Two equal `PathMatch`es of one host are a
/// conflict.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathMatch {
    pub kind: PathKind,
    /// Shared, not copied: every build hands each route's path to a new table.
    path: Arc<str>,
    /// For `Regex`: `^<path>`, compiled once (when the Ingress is checked).
    regex: Option<PathRegex>,
}

/// Longest regular expression path accepted: a pattern is compiled for every Ingress
/// update, so its cost stays bounded (with the compiled size limits below).
pub const MAX_REGEX_PATH_LEN: usize = 1024;
/// Compiled size limits for one path regex (the regex crate's `size_limit` and lazy DFA
/// cache), so that a hostile pattern such as `(a{1000}){1000}` is refused, not built.
const REGEX_SIZE_LIMIT: usize = 1 << 18;
const REGEX_DFA_SIZE_LIMIT: usize = 1 << 18;

/// A compiled path regex, equal (and hashed) by its source: two paths with the same text
/// are the same claim.
#[derive(Debug, Clone)]
pub struct PathRegex(Arc<regex::Regex>);

impl PartialEq for PathRegex {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for PathRegex {}

impl std::hash::Hash for PathRegex {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.as_str().hash(state);
    }
}

impl PathMatch {
    pub fn new(kind: PathKind, path: &str) -> Result<PathMatch, Problem> {
        if kind == PathKind::Regex {
            return PathMatch::regex(path);
        }
        validate(path)?;
        let path = match kind {
            PathKind::Exact | PathKind::Regex => path.into(),
            PathKind::Prefix | PathKind::ImplementationSpecific => {
                let trimmed = path.trim_end_matches('/');
                if trimmed.is_empty() {
                    "/".into()
                } else {
                    trimmed.into()
                }
            }
        };
        // Prefix and ImplementationSpecific are the same match: compare them as equal.
        let kind = if kind == PathKind::ImplementationSpecific {
            PathKind::Prefix
        } else {
            kind
        };
        Ok(PathMatch {
            kind,
            path,
            regex: None,
        })
    }

    /// ingress-nginx's regular expression path: `path` as nginx's `location ~* "^<path>"`
    /// would match it (case-insensitive, anchored at the start only), in the syntax of the
    /// Rust `regex` crate (no look-around or back-references, unlike PCRE). A pattern that
    /// does not compile within the size limits is a problem of its Ingress.
    pub fn regex(path: &str) -> Result<PathMatch, Problem> {
        check_text(path)?;
        if path.len() > MAX_REGEX_PATH_LEN {
            return Err(Problem::PathTooLong(MAX_REGEX_PATH_LEN));
        }
        let compiled = regex::RegexBuilder::new(&format!("^{path}"))
            .case_insensitive(true)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(REGEX_DFA_SIZE_LIMIT)
            .nest_limit(64)
            .build()
            .map_err(|e| Problem::RegexPathInvalid(path.to_string(), regex_error(&e)))?;
        Ok(PathMatch {
            kind: PathKind::Regex,
            path: path.into(),
            regex: Some(PathRegex(Arc::new(compiled))),
        })
    }

    /// This path as ingress-nginx treats every path of a host on which one Ingress uses
    /// regular expressions: `^<path>`, case-insensitive, whatever its `pathType`. `None`
    /// when the literal path is not a valid pattern (it then keeps its own match).
    pub fn as_regex(&self) -> Option<PathMatch> {
        match self.kind {
            PathKind::Regex => Some(self.clone()),
            _ => PathMatch::regex(&self.path).ok(),
        }
    }

    /// The capture groups of a `Regex` path on `request_path`, when it matches.
    pub fn captures<'p>(&self, request_path: &'p str) -> Option<regex::Captures<'p>> {
        self.regex.as_ref()?.0.captures(request_path)
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
            PathKind::Regex => self
                .regex
                .as_ref()
                .is_some_and(|r| r.0.is_match(request_path)),
            PathKind::Exact => request_path == &*self.path,
            PathKind::Prefix | PathKind::ImplementationSpecific => {
                if &*self.path == "/" {
                    return true;
                }
                match request_path.strip_prefix(&*self.path) {
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
    check_text(path)?;
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

/// What every path must be, regular expression or not.
fn check_text(path: &str) -> Result<(), Problem> {
    if !path.starts_with('/') {
        return Err(Problem::PathNotAbsolute(path.to_string()));
    }
    if path.len() > MAX_PATH_LEN {
        return Err(Problem::PathTooLong(MAX_PATH_LEN));
    }
    if let Some(c) = path.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(Problem::PathCharacter(path.to_string(), c));
    }
    Ok(())
}

/// The regex crate's message, on one line, bounded (it quotes the pattern).
fn regex_error(e: &regex::Error) -> String {
    let text = match e {
        regex::Error::CompiledTooBig(_) => "too large once compiled".to_string(),
        other => other.to_string(),
    };
    let line = text.lines().last().unwrap_or_default().trim();
    line.chars().take(200).collect()
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
    fn regex_paths_are_nginx_location_tilde_star() {
        let p = PathMatch::regex("/api/v[0-9]+(/|$)(.*)").expect("regex");
        assert_eq!(p.kind, PathKind::Regex);
        assert!(p.matches("/api/v1"));
        assert!(p.matches("/API/V2/users"), "case-insensitive, as ~*");
        assert!(!p.matches("/api/v1x"));
        let short = PathMatch::regex("/api").expect("regex");
        assert!(short.matches("/apis/x"), "anchored at the start only");
        assert!(!p.matches("/x/api/v1"));
        let caps = p.captures("/api/v12/users/7").expect("captures");
        assert_eq!(caps.get(2).map(|m| m.as_str()), Some("users/7"));
        assert!(matches!(
            PathMatch::regex("/a(b"),
            Err(Problem::RegexPathInvalid(_, _))
        ));
        assert!(
            matches!(
                PathMatch::regex("/(?=x)"),
                Err(Problem::RegexPathInvalid(_, _))
            ),
            "look-around is PCRE, not the regex crate"
        );
        assert!(
            matches!(
                PathMatch::regex("/(((a{100}){100}){100})"),
                Err(Problem::RegexPathInvalid(_, m)) if m.contains("too large")
            ),
            "bounded compile"
        );
        assert!(PathMatch::regex(&format!("/{}", "a".repeat(MAX_REGEX_PATH_LEN))).is_err());
        assert!(PathMatch::regex("relative").is_err());
        // A literal path of a host that uses regex paths becomes `^<path>` too.
        let lit = PathMatch::new(PathKind::Exact, "/foo").expect("p");
        let as_re = lit.as_regex().expect("regex");
        assert!(as_re.matches("/foobar") && as_re.matches("/FOO"));
        assert_eq!(as_re, PathMatch::regex("/foo").expect("regex"));
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
