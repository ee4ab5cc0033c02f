//! The load-balancing algorithm names of `--load-balance` and the
//! `portico.dev/load-balance` annotation.

use std::str::FromStr;

/// Longest header name `http::HeaderName` accepts.
const MAX_HEADER_NAME_LEN: usize = (1 << 16) - 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadBalance {
    RoundRobin,
    LeastRequest,
    Cookie,
    ClientIp,
    /// Consistent hash on this request header (a valid HTTP header name, as written).
    Header(String),
    /// Consistent hash on the request's path and query (ingress-nginx `$request_uri`).
    Uri,
    /// Consistent hash on this cookie's value (ingress-nginx `$cookie_<name>`).
    CookieValue(String),
}

impl FromStr for LoadBalance {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "round-robin" => Ok(LoadBalance::RoundRobin),
            "least-request" => Ok(LoadBalance::LeastRequest),
            "cookie" => Ok(LoadBalance::Cookie),
            "client-ip" => Ok(LoadBalance::ClientIp),
            "uri" => Ok(LoadBalance::Uri),
            other if other.starts_with("cookie:") => {
                let name = &other["cookie:".len()..];
                if !name.is_empty()
                    && name.len() <= 256
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && !b"=;,\"".contains(&b))
                {
                    Ok(LoadBalance::CookieValue(name.to_string()))
                } else {
                    Err(format!(
                        "invalid cookie name {name:?} in load-balance {s:?}"
                    ))
                }
            }
            other => match other.strip_prefix("header:") {
                Some(name) if !name.is_empty() => {
                    if is_header_name(name) {
                        Ok(LoadBalance::Header(name.to_string()))
                    } else {
                        Err(format!(
                            "invalid header name {name:?} in load-balance {s:?}"
                        ))
                    }
                }
                _ => Err(format!(
                    "unknown load-balance {s:?}: expected round-robin, least-request, cookie, client-ip, uri, header:<Header-Name> or cookie:<name>"
                )),
            },
        }
    }
}

/// An RFC 9110 token, which is what `http::HeaderName::from_bytes` accepts.
fn is_header_name(name: &str) -> bool {
    name.len() <= MAX_HEADER_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            " least-request ".parse::<LoadBalance>(),
            Ok(LoadBalance::LeastRequest)
        );
        assert_eq!(
            "header:X-User".parse::<LoadBalance>(),
            Ok(LoadBalance::Header("X-User".into()))
        );
        assert!("header:".parse::<LoadBalance>().is_err());
        assert!("header:bad header".parse::<LoadBalance>().is_err());
        assert!("header:a:b".parse::<LoadBalance>().is_err());
        assert!("random".parse::<LoadBalance>().is_err());
        assert_eq!("uri".parse::<LoadBalance>(), Ok(LoadBalance::Uri));
        assert_eq!(
            "cookie:session".parse::<LoadBalance>(),
            Ok(LoadBalance::CookieValue("session".into()))
        );
        assert!("cookie:".parse::<LoadBalance>().is_err());
    }
}
