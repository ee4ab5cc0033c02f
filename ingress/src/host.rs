//! Host patterns: exact, one-label wildcard (`*.foo.com`), or any host.

use std::sync::Arc;

use crate::Problem;

/// A rule's host, normalized to lowercase without a trailing dot. The name is shared, not
/// copied: a judgement and a build hold each of 10,000 hosts in several maps.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    Exact(Arc<str>),
    /// The suffix after `*.`.
    Wildcard(Arc<str>),
    Any,
}

impl HostPattern {
    /// Parses an Ingress rule host; `""` means any host.
    pub fn parse(host: &str) -> Result<HostPattern, Problem> {
        let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() {
            return Ok(HostPattern::Any);
        }
        let (wild, rest) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, host.as_str()),
        };
        let valid = !rest.is_empty()
            && rest.len() <= 253
            && rest.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return Err(Problem::InvalidHost(host));
        }
        Ok(if wild {
            HostPattern::Wildcard(rest.into())
        } else {
            HostPattern::Exact(rest.into())
        })
    }

    /// Whether a normalized request host falls under this pattern.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => **h == *host,
            HostPattern::Wildcard(suffix) => {
                host.split_once('.').is_some_and(|(_, s)| s == &**suffix)
            }
            HostPattern::Any => true,
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(s) => write!(f, "*.{s}"),
            HostPattern::Any => f.write_str("(any host)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_match() {
        assert_eq!(HostPattern::parse(""), Ok(HostPattern::Any));
        assert_eq!(
            HostPattern::parse("Foo.COM."),
            Ok(HostPattern::Exact("foo.com".into()))
        );
        let w = HostPattern::parse("*.foo.com").expect("wildcard");
        assert!(w.matches("bar.foo.com"));
        assert!(!w.matches("baz.bar.foo.com"));
        assert!(!w.matches("foo.com"));
        assert!(HostPattern::parse("foo..com").is_err());
        assert!(HostPattern::parse("a.*.com").is_err());
        assert!(HostPattern::parse("white space.com").is_err());
    }
}
