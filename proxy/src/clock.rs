//! Wall-clock time as jiff timestamps, for the access log and cookie expiry (a leaf: the
//! request path and the routes both read it).

/// `secs` seconds from now (jiff without its `std` feature cannot read the clock itself).
pub fn timestamp_in(secs: u64) -> k8s_openapi::jiff::Timestamp {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        .saturating_add(u128::from(secs) * 1000);
    i64::try_from(millis)
        .ok()
        .and_then(|ms| k8s_openapi::jiff::Timestamp::from_millisecond(ms).ok())
        .unwrap_or(k8s_openapi::jiff::Timestamp::MAX)
}
