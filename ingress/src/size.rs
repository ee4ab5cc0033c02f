//! Sizes in ingress-nginx's syntax (`client_max_body_size`, the `proxy-body-size`
//! annotation): a number of bytes with an optional `k`, `m` or `g` suffix (either case,
//! powers of 1024); `0` means no limit.

/// A size limit in bytes; `None` is "no limit" (`0`).
pub fn parse_size(s: &str) -> Result<Option<u64>, String> {
    let err = || {
        format!(
            "invalid size {s:?}: expected bytes with an optional k, m or g suffix, e.g. 1m or 512k (0 = no limit)"
        )
    };
    let t = s.trim();
    let (digits, unit) = match t.as_bytes().last() {
        Some(b'k' | b'K') => (&t[..t.len() - 1], 1u64 << 10),
        Some(b'm' | b'M') => (&t[..t.len() - 1], 1 << 20),
        Some(b'g' | b'G') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let n: u64 = digits.parse().map_err(|_| err())?;
    let bytes = n.checked_mul(unit).ok_or_else(err)?;
    Ok((bytes > 0).then_some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1m"), Ok(Some(1 << 20)));
        assert_eq!(parse_size("512K"), Ok(Some(512 << 10)));
        assert_eq!(parse_size("2g"), Ok(Some(2 << 30)));
        assert_eq!(parse_size("100"), Ok(Some(100)));
        assert_eq!(parse_size("0"), Ok(None));
        assert_eq!(parse_size("0m"), Ok(None));
        for bad in ["", "m", "1.5m", "-1", "1mb", "1 m", "99999999999999999999g"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }
}
