//! Judges the untrusted parts of a request that routing depends on: the path of an
//! origin-form request target and the Host.
//!
//! Routing matches rules against a path, and upstreams interpret paths their own way. If the
//! proxy matched the raw string, an attacker could reach a protected `/admin` through
//! `/x/../admin`, `//admin`, `/%61dmin` or `/./admin`: the rule for `/admin` would not see
//! them, the upstream would. So the path is brought to one canonical spelling first
//! (RFC 3986 §6.2.2: decode unreserved escapes, uppercase the others, remove dot segments,
//! plus merging `//`), and spellings with no safe canonical form (control characters,
//! broken escapes, encoded slashes) are refused. Host values are held to what a DNS name or
//! IP literal can be.
//!
//! Everything here is pure and runs on every request: a path or host that is already
//! canonical costs one byte scan and no allocation.

use std::borrow::Cow;
use std::net::Ipv6Addr;

/// How strict [`normalize_path`] is about encoded separators.
#[derive(Debug, Clone, Copy, Default)]
pub struct PathOptions {
    /// Keep `%2F` and `%5C` as they are (encoded, not a separator) instead of refusing them.
    pub allow_encoded_slashes: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("request target is not origin-form (must start with '/')")]
    NotOriginForm,
    #[error("control character in path")]
    ControlCharacter,
    #[error("malformed percent-encoding in path")]
    BadPercentEncoding,
    #[error("encoded slash or backslash in path")]
    EncodedSlash,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("no host")]
    Empty,
    #[error("invalid host: {0}")]
    Invalid(&'static str),
}

/// Normalizes the path of an origin-form request target (the path only, no query).
///
/// The result starts with `/`, has no `//` and no `.` or `..` segment, keeps a trailing
/// slash, and is a fixed point: normalizing it again returns it borrowed and unchanged.
pub fn normalize_path(raw: &str, opts: PathOptions) -> Result<Cow<'_, str>, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    // One scan: refuse raw bytes that are never acceptable, and note whether the slow path
    // is needed. It runs to the end before any escape is judged, so a raw control character
    // or backslash is reported ahead of an escape problem.
    let mut escapes = false; // some escape is not in canonical form
    let mut segments = false; // some `//`, `.` or `..` to remove
    let mut seg_start = 1;
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        match b {
            b'/' => {
                segments |= matches!(&bytes[seg_start..i], b"" | b"." | b"..");
                seg_start = i + 1;
            }
            b'%' => escapes |= !is_canonical_escape(bytes.get(i + 1..i + 3), opts),
            // Some upstreams (IIS, Windows file servers) treat `\` as `/`.
            b'\\' if !opts.allow_encoded_slashes => return Err(PathError::EncodedSlash),
            // Raw non-ASCII is refused too: a valid client percent-encodes it.
            0..=0x1F | 0x7F..=0xFF => return Err(PathError::ControlCharacter),
            _ => {}
        }
    }
    segments |= matches!(&bytes[seg_start..], b"." | b"..");

    if escapes {
        // Decoding can create dot segments (`%2e%2e`), so segments are always looked at.
        let decoded = decode_escapes(raw, opts)?;
        Ok(Cow::Owned(remove_dot_segments(&decoded)))
    } else if segments {
        Ok(Cow::Owned(remove_dot_segments(raw)))
    } else {
        Ok(Cow::Borrowed(raw))
    }
}

/// Whether the two bytes after a `%` are an escape that decoding would leave as it is.
fn is_canonical_escape(hex: Option<&[u8]>, opts: PathOptions) -> bool {
    let Some(&[hi, lo]) = hex else {
        return false;
    };
    // Lowercase hex is not canonical (RFC 3986 §6.2.2.1): the slow path uppercases it.
    let upper_hex = |b: u8| -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    };
    let (Some(hi), Some(lo)) = (upper_hex(hi), upper_hex(lo)) else {
        return false;
    };
    let v = (hi << 4) | lo;
    !(is_control(v) || is_unreserved(v) || (is_slash(v) && !opts.allow_encoded_slashes))
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7F
}

/// RFC 3986 §2.3: these mean the same encoded or not, so they are always decoded.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_slash(b: u8) -> bool {
    b == b'/' || b == b'\\'
}

/// Decodes unreserved escapes and uppercases the others. Never decodes `%25`, so the
/// result is not decoded twice by anyone who trusts it.
fn decode_escapes(raw: &str, opts: PathOptions) -> Result<String, PathError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(pos) = rest.find('%') {
        out.push_str(&rest[..pos]);
        let Some(&[hi, lo]) = rest.as_bytes().get(pos + 1..pos + 3) else {
            return Err(PathError::BadPercentEncoding);
        };
        let (Some(hi), Some(lo)) = (hex_value(hi), hex_value(lo)) else {
            return Err(PathError::BadPercentEncoding);
        };
        let v = (hi << 4) | lo;
        if is_control(v) {
            // A decoded control character is as bad as a raw one.
            return Err(PathError::ControlCharacter);
        } else if is_unreserved(v) {
            out.push(char::from(v));
        } else if is_slash(v) && !opts.allow_encoded_slashes {
            // Upstreams disagree on whether `%2F` separates segments; refusing is the only
            // answer that cannot route one way and be served another.
            return Err(PathError::EncodedSlash);
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(hi)]));
            out.push(char::from(HEX[usize::from(lo)]));
        }
        // The two bytes after `%` are ASCII hex digits, so this is a char boundary.
        rest = &rest[pos + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Merges runs of `/` and removes dot segments (RFC 3986 §5.2.4) from a path that starts
/// with `/`. A last `.`, `..` or empty segment leaves a trailing `/`; `..` stops at the root.
fn remove_dot_segments(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut segs = path.split('/').skip(1).peekable();
    while let Some(seg) = segs.next() {
        match seg {
            // Empty segments are merged away; `.` stays where it is.
            "" | "." => {}
            ".." => {
                let parent = out.rfind('/').unwrap_or(0);
                out.truncate(parent);
            }
            _ => {
                out.push('/');
                out.push_str(seg);
                continue;
            }
        }
        if segs.peek().is_none() {
            out.push('/');
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Validates a Host header value or URI authority (RFC 3986 `host [ ":" port ]`, no userinfo)
/// and returns the host lowercased, without the port and without one trailing dot.
/// IPv6 literals keep their brackets: "[::1]:80" -> "[::1]".
///
/// Borrows (a slice of `raw`) whenever nothing needs lowercasing.
pub fn validate_host(raw: &str) -> Result<Cow<'_, str>, HostError> {
    if raw.is_empty() {
        return Err(HostError::Empty);
    }
    // `user@host` in an authority is how "http://trusted@evil/" fools a reader that stops
    // at the first host-looking part. A Host never carries userinfo.
    if raw.as_bytes().contains(&b'@') {
        return Err(HostError::Invalid("userinfo"));
    }
    let (host, upper) = if raw.starts_with('[') {
        ip_literal(raw)?
    } else {
        reg_name(raw)?
    };
    Ok(if upper {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    })
}

/// `"[" IPv6address "]" [ ":" port ]`. Returns the bracketed host and whether it has
/// uppercase letters.
fn ip_literal(raw: &str) -> Result<(&str, bool), HostError> {
    let close = raw
        .find(']')
        .ok_or(HostError::Invalid("unclosed IP literal"))?;
    let inner = &raw[1..close];
    // IPvFuture ("[v1.x]") names nothing anyone can connect to.
    if inner.starts_with(['v', 'V']) {
        return Err(HostError::Invalid("IPvFuture literal"));
    }
    // Also refuses zone identifiers ("%25eth0"): they are local to the proxy's host.
    if inner.parse::<Ipv6Addr>().is_err() {
        return Err(HostError::Invalid("IPv6 literal"));
    }
    match &raw[close + 1..] {
        "" => {}
        after => port(
            after
                .strip_prefix(':')
                .ok_or(HostError::Invalid("text after IP literal"))?,
        )?,
    }
    let host = &raw[..=close];
    Ok((host, host.bytes().any(|b| b.is_ascii_uppercase())))
}

/// `reg-name [ ":" port ]`, restricted to DNS-name characters. Percent-encoding and
/// sub-delims are legal in an RFC 3986 reg-name, but no real DNS name needs them, and they
/// are how host-confusion attacks are spelled (`%61.test` or `a.test!b` read differently by
/// the router, a TLS check and an upstream). Returns the name without port and trailing
/// dot, and whether it has uppercase letters.
fn reg_name(raw: &str) -> Result<(&str, bool), HostError> {
    const MAX_NAME_LEN: usize = 253;
    let bytes = raw.as_bytes();
    let mut upper = false;
    let mut end = bytes.len();
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'~' => {}
            b'A'..=b'Z' => upper = true,
            b'.' => {
                if i == 0 || bytes[i - 1] == b'.' {
                    return Err(HostError::Invalid("empty label"));
                }
            }
            b':' => {
                end = i;
                break;
            }
            _ => return Err(HostError::Invalid("character not allowed in host name")),
        }
    }
    if end < bytes.len() {
        port(&raw[end + 1..])?;
    }
    // "a.test." is the fully qualified "a.test": one name, one routing key.
    let name = &raw[..end];
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err(HostError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(HostError::Invalid("host name too long"));
    }
    Ok((name, upper))
}

/// RFC 3986 `port = *DIGIT`, held to what TCP can use. Empty is allowed ("a.test:").
fn port(p: &str) -> Result<(), HostError> {
    const BAD: HostError = HostError::Invalid("port");
    if p.is_empty() {
        return Ok(());
    }
    if p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BAD);
    }
    match p.parse::<u32>() {
        Ok(n) if n <= 65535 => Ok(()),
        _ => Err(BAD),
    }
}

/// Percent-encodes all but RFC 3986's unreserved characters (nginx's `$escaped_request_uri`
/// leaves `/` too: so does this).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use portico_ingress::{PathKind, PathMatch};
    use proptest::prelude::*;

    const STRICT: PathOptions = PathOptions {
        allow_encoded_slashes: false,
    };
    const LAX: PathOptions = PathOptions {
        allow_encoded_slashes: true,
    };

    fn check_paths(opts: PathOptions, cases: &[(&str, Result<&str, PathError>)]) {
        for (raw, want) in cases {
            let got = normalize_path(raw, opts);
            assert_eq!(got.as_deref(), want.as_deref(), "{raw:?} with {opts:?}");
        }
    }

    #[test]
    fn attack_spellings_reach_the_same_path() {
        check_paths(
            STRICT,
            &[
                ("/x/../admin", Ok("/admin")),
                ("//admin", Ok("/admin")),
                ("/%61dmin", Ok("/admin")),
                ("/./admin", Ok("/admin")),
                ("/%2e%2e/admin", Ok("/admin")),
                ("/%2E./admin", Ok("/admin")),
                ("/%2e/admin", Ok("/admin")),
                ("/x/%2E%2E/%61dmin", Ok("/admin")),
                ("/a/%2e%2e%2fadmin", Err(PathError::EncodedSlash)),
                ("/a\\..\\admin", Err(PathError::EncodedSlash)),
                ("/a%5c..%5cadmin", Err(PathError::EncodedSlash)),
                ("/a%00b", Err(PathError::ControlCharacter)),
                ("/a%zz", Err(PathError::BadPercentEncoding)),
                ("/a%4", Err(PathError::BadPercentEncoding)),
            ],
        );
    }

    #[test]
    fn origin_form_only() {
        check_paths(
            STRICT,
            &[
                ("", Err(PathError::NotOriginForm)),
                ("*", Err(PathError::NotOriginForm)),
                ("http://x/", Err(PathError::NotOriginForm)),
                ("a/b", Err(PathError::NotOriginForm)),
                ("%2F", Err(PathError::NotOriginForm)),
            ],
        );
    }

    #[test]
    fn raw_bytes() {
        check_paths(
            STRICT,
            &[
                ("/a\tb", Err(PathError::ControlCharacter)),
                ("/a\nb", Err(PathError::ControlCharacter)),
                ("/a\0", Err(PathError::ControlCharacter)),
                ("/a\x7f", Err(PathError::ControlCharacter)),
                ("/caf\u{e9}", Err(PathError::ControlCharacter)),
                ("/a\\b", Err(PathError::EncodedSlash)),
                // Rule 2 is judged over the whole path before any escape.
                ("/%zz\x01", Err(PathError::ControlCharacter)),
                ("/%00\\", Err(PathError::EncodedSlash)),
                ("/a b", Ok("/a b")),
            ],
        );
        check_paths(
            LAX,
            &[
                ("/a\\..\\admin", Ok("/a\\..\\admin")),
                ("/a\\b/..", Ok("/")),
                ("/a\x01", Err(PathError::ControlCharacter)),
            ],
        );
    }

    #[test]
    fn percent_encoding() {
        check_paths(
            STRICT,
            &[
                ("/a%", Err(PathError::BadPercentEncoding)),
                ("/a%g0", Err(PathError::BadPercentEncoding)),
                ("/a%0g", Err(PathError::BadPercentEncoding)),
                ("/%%41", Err(PathError::BadPercentEncoding)),
                ("/a%1F", Err(PathError::ControlCharacter)),
                ("/a%1f", Err(PathError::ControlCharacter)),
                ("/a%7F", Err(PathError::ControlCharacter)),
                ("/a%0A", Err(PathError::ControlCharacter)),
                ("/%7e", Ok("/~")),
                ("/%7E%2D%2e%5f%41%7a%30", Ok("/~-._Az0")),
                ("/%c3%a9", Ok("/%C3%A9")),
                ("/%20", Ok("/%20")),
                ("/%3f%23", Ok("/%3F%23")),
                // `%25` is never decoded, so nothing is decoded twice.
                ("/%25", Ok("/%25")),
                ("/%2561dmin", Ok("/%2561dmin")),
                ("/a%2Fb", Err(PathError::EncodedSlash)),
                ("/a%2fb", Err(PathError::EncodedSlash)),
                ("/a%5Cb", Err(PathError::EncodedSlash)),
            ],
        );
        check_paths(
            LAX,
            &[
                ("/a%2fb", Ok("/a%2Fb")),
                ("/a%5cb", Ok("/a%5Cb")),
                ("/a%2F..", Ok("/a%2F..")),
                // An encoded slash is not a separator: `..%2F` is an ordinary segment.
                ("/a/%2e%2e%2fadmin", Ok("/a/..%2Fadmin")),
                ("/a/%2E%2E%2F", Ok("/a/..%2F")),
            ],
        );
    }

    #[test]
    fn slashes_and_dot_segments() {
        check_paths(
            STRICT,
            &[
                ("/", Ok("/")),
                ("//", Ok("/")),
                ("/a/b", Ok("/a/b")),
                ("/a//b///c", Ok("/a/b/c")),
                ("/a//", Ok("/a/")),
                ("/a/", Ok("/a/")),
                ("/a/b/..", Ok("/a/")),
                ("/a/.", Ok("/a/")),
                ("/a/./", Ok("/a/")),
                ("/a/..", Ok("/")),
                ("/.", Ok("/")),
                ("/..", Ok("/")),
                ("/../", Ok("/")),
                ("/../../a", Ok("/a")),
                ("/a/./b/../c", Ok("/a/c")),
                ("/a/b/../../../c/", Ok("/c/")),
                ("/a/.//b", Ok("/a/b")),
                ("/.well-known/acme", Ok("/.well-known/acme")),
                ("/..a/b./...", Ok("/..a/b./...")),
            ],
        );
    }

    #[test]
    fn canonical_paths_are_borrowed() {
        for raw in ["/", "/a/b/", "/caf%C3%A9", "/.well-known/x", "/a%20b/~c"] {
            let out = normalize_path(raw, STRICT).expect("valid path");
            assert!(matches!(out, Cow::Borrowed(s) if s == raw), "{raw:?}");
        }
        let out = normalize_path("/a%2Fb", LAX).expect("valid path");
        assert!(matches!(out, Cow::Borrowed("/a%2Fb")));
    }

    #[test]
    fn hosts() {
        let cases: &[(&str, Result<&str, HostError>)] = &[
            ("a.test", Ok("a.test")),
            ("A.Test:8080", Ok("a.test")),
            ("a.test.", Ok("a.test")),
            ("A.TEST.:443", Ok("a.test")),
            ("a.test:", Ok("a.test")),
            ("a.test:65535", Ok("a.test")),
            ("[::1]:80", Ok("[::1]")),
            ("[::1]", Ok("[::1]")),
            ("[::1]:", Ok("[::1]")),
            ("[2001:DB8::A]", Ok("[2001:db8::a]")),
            ("[::ffff:10.0.0.1]", Ok("[::ffff:10.0.0.1]")),
            ("10.0.0.1", Ok("10.0.0.1")),
            ("10.0.0.1:8080", Ok("10.0.0.1")),
            ("xn--bcher-kva.example", Ok("xn--bcher-kva.example")),
            ("_acme.a-b~c.test", Ok("_acme.a-b~c.test")),
            ("", Err(HostError::Empty)),
            (":80", Err(HostError::Empty)),
            ("evil@a.test", Err(HostError::Invalid("userinfo"))),
            ("a.test:80@evil", Err(HostError::Invalid("userinfo"))),
            ("a.test:99999", Err(HostError::Invalid("port"))),
            ("a.test:123456", Err(HostError::Invalid("port"))),
            ("a.test:8o", Err(HostError::Invalid("port"))),
            ("a.test:80:80", Err(HostError::Invalid("port"))),
            ("a.test:+80", Err(HostError::Invalid("port"))),
            (
                "a test",
                Err(HostError::Invalid("character not allowed in host name")),
            ),
            (
                " a.test",
                Err(HostError::Invalid("character not allowed in host name")),
            ),
            (
                "%61.test",
                Err(HostError::Invalid("character not allowed in host name")),
            ),
            (
                "a!.test",
                Err(HostError::Invalid("character not allowed in host name")),
            ),
            (
                "b\u{fc}cher.test",
                Err(HostError::Invalid("character not allowed in host name")),
            ),
            ("a..test", Err(HostError::Invalid("empty label"))),
            (".a.test", Err(HostError::Invalid("empty label"))),
            ("a.test..", Err(HostError::Invalid("empty label"))),
            (".", Err(HostError::Invalid("empty label"))),
            ("[v1.x]", Err(HostError::Invalid("IPvFuture literal"))),
            ("[::1", Err(HostError::Invalid("unclosed IP literal"))),
            ("[::g]", Err(HostError::Invalid("IPv6 literal"))),
            ("[10.0.0.1]", Err(HostError::Invalid("IPv6 literal"))),
            ("[fe80::1%25eth0]", Err(HostError::Invalid("IPv6 literal"))),
            ("[::1]x", Err(HostError::Invalid("text after IP literal"))),
            ("[::1]:99999", Err(HostError::Invalid("port"))),
        ];
        for (raw, want) in cases {
            assert_eq!(validate_host(raw).as_deref(), want.as_deref(), "{raw:?}");
        }
    }

    #[test]
    fn host_length() {
        let max = "a".repeat(253);
        assert_eq!(validate_host(&max).as_deref(), Ok(max.as_str()));
        assert_eq!(
            validate_host(&format!("{max}.")).as_deref(),
            Ok(max.as_str())
        );
        assert_eq!(
            validate_host(&"a".repeat(254)),
            Err(HostError::Invalid("host name too long"))
        );
    }

    #[test]
    fn lowercase_hosts_are_borrowed() {
        for raw in ["a.test", "a.test:8080", "a.test.", "[::1]:80"] {
            let out = validate_host(raw).expect("valid host");
            assert!(matches!(out, Cow::Borrowed(_)), "{raw:?}");
        }
    }

    const SEGMENTS: &[&str] = &[
        "", ".", "..", "a", "b", "%2e", "%2E%2e", "%61", "x%20y", "~", "%7E",
    ];

    fn paths() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::collection::vec(prop::sample::select(SEGMENTS), 0..10)
                .prop_map(|segs| format!("/{}", segs.join("/"))),
            "[ -~]{0,40}".prop_map(|s| format!("/{s}")),
        ]
    }

    fn prefix_match(prefix: &str, path: &str) -> bool {
        PathMatch::new(PathKind::Prefix, prefix)
            .expect("valid prefix")
            .matches(path)
    }

    /// Whether `s` has an escape that a canonical path would have decoded.
    fn has_unreserved_escape(s: &str) -> bool {
        s.as_bytes().windows(3).any(|w| {
            w[0] == b'%'
                && std::str::from_utf8(&w[1..])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .is_some_and(is_unreserved)
        })
    }

    proptest! {
        #[test]
        fn normalized_paths_are_canonical(raw in paths(), lax in any::<bool>()) {
            let opts = PathOptions { allow_encoded_slashes: lax };
            if let Ok(out) = normalize_path(&raw, opts) {
                // (a) a fixed point, and recognised as one without allocating.
                let again = normalize_path(&out, opts).expect("normalized path is valid");
                prop_assert!(matches!(again, Cow::Borrowed(_)), "{raw:?} -> {out:?} re-allocated");
                prop_assert_eq!(&again, &out);
                // (b) the shape the router may assume.
                prop_assert!(out.starts_with('/'));
                prop_assert!(!out.contains("//"), "{raw:?} -> {out:?}");
                prop_assert!(
                    out.split('/').all(|s| s != "." && s != ".."),
                    "{raw:?} -> {out:?}"
                );
                // (c) a Prefix rule decides the same on the path and on its normal form.
                for p in ["/a", "/a/b"] {
                    prop_assert_eq!(prefix_match(p, &out), prefix_match(p, &again), "{}", p);
                }
                prop_assert!(!has_unreserved_escape(&out), "{raw:?} -> {out:?}");
            }
        }
    }
}
