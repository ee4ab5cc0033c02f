//! ingress-nginx's `session-cookie-*` annotations: the attributes of the cookie that
//! `affinity: cookie` sets (Portico's consistent hash on its own token). A value that
//! cannot be read is ignored with a notice; the default attribute applies.

/// The affinity cookie's attributes; `None`: Portico's default (`portico-affinity`,
/// `Path=/`, `HttpOnly`, a session cookie).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionCookie {
    pub name: Option<String>,
    pub path: Option<String>,
    /// Seconds.
    pub max_age: Option<u64>,
    /// Seconds from when the cookie is set (ingress-nginx's form), sent as `Expires`.
    pub expires: Option<u64>,
    pub same_site: Option<SameSite>,
    pub secure: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    None,
    Lax,
    Strict,
}

impl SameSite {
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::None => "None",
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
        }
    }
}

impl SessionCookie {
    pub fn is_default(&self) -> bool {
        *self == SessionCookie::default()
    }
}

/// The annotation `name` (without the prefix) with `value` applied: `None` when `name` is
/// not one of them, `Some(false)` when the value is not understood.
pub fn read(name: &str, value: &str, cookie: &mut SessionCookie) -> Option<bool> {
    let ok = match name {
        "session-cookie-name" => set(
            &mut cookie.name,
            (!value.is_empty() && value.bytes().all(is_token_byte)).then(|| value.to_owned()),
        ),
        "session-cookie-path" => set(
            &mut cookie.path,
            (value.starts_with('/')
                && value
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b';' && b != b','))
            .then(|| value.to_owned()),
        ),
        "session-cookie-max-age" => set(&mut cookie.max_age, value.parse().ok()),
        "session-cookie-expires" => set(&mut cookie.expires, value.parse().ok()),
        "session-cookie-samesite" => set(
            &mut cookie.same_site,
            match value.to_ascii_lowercase().as_str() {
                "none" => Some(SameSite::None),
                "lax" => Some(SameSite::Lax),
                "strict" => Some(SameSite::Strict),
                _ => None,
            },
        ),
        "session-cookie-secure" => set(
            &mut cookie.secure,
            match value {
                "true" => Some(true),
                "false" => Some(false),
                _ => None,
            },
        ),
        _ => return None,
    };
    Some(ok)
}

fn set<T>(field: &mut Option<T>, value: Option<T>) -> bool {
    let ok = value.is_some();
    if ok {
        *field = value;
    }
    ok
}

/// RFC 6265's cookie-name: an RFC 9110 token.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_and_bad_values() {
        let mut c = SessionCookie::default();
        for (n, v) in [
            ("session-cookie-name", "route"),
            ("session-cookie-path", "/app"),
            ("session-cookie-max-age", "3600"),
            ("session-cookie-expires", "7200"),
            ("session-cookie-samesite", "Strict"),
            ("session-cookie-secure", "true"),
        ] {
            assert_eq!(read(n, v, &mut c), Some(true), "{n}");
        }
        assert_eq!(c.name.as_deref(), Some("route"));
        assert_eq!(c.same_site, Some(SameSite::Strict));
        let before = c.clone();
        for (n, v) in [
            ("session-cookie-name", "a b"),
            ("session-cookie-name", "a=b"),
            ("session-cookie-path", "/x; Domain=evil"),
            ("session-cookie-path", "app"),
            ("session-cookie-max-age", "-1"),
            ("session-cookie-samesite", "sometimes"),
            ("session-cookie-secure", "yes"),
        ] {
            assert_eq!(read(n, v, &mut c), Some(false), "{n}={v}");
        }
        assert_eq!(c, before, "bad values change nothing");
        assert_eq!(read("affinity", "cookie", &mut c), None);
    }
}
