//! Clocks (a leaf: the request path, the pool and the routes read them): wall-clock time as
//! jiff timestamps, for the access log and cookie expiry, and a coarse monotonic clock for
//! idle timeouts.

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

/// Milliseconds on the kernel's coarse monotonic clock: the time of its last tick (1-4 ms
/// old), read from the vDSO without the TSC. For what is timed in seconds and stamped on
/// every request: the downstream idle watch (on every read, write, request start and
/// request end) and the upstream pool's idle connections (at checkin and checkout), where
/// the precise clock cost about 150 instructions and a TSC read each time.
pub fn coarse_ms() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    t.tv_sec.unsigned_abs() * 1000 + t.tv_nsec.unsigned_abs() / 1_000_000
}

/// The time now as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`), appended to `out`: the
/// `Date` of an answer that has none. Formatted once a second per thread, from the coarse
/// wall clock (no TSC read per answer).
pub fn http_date(out: &mut Vec<u8>) {
    thread_local!(static CACHED: std::cell::RefCell<(i64, String)> =
        const { std::cell::RefCell::new((i64::MIN, String::new())) });
    let secs = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse).tv_sec;
    CACHED.with_borrow_mut(|(at, text)| {
        if *at != secs {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
            *text = httpdate::fmt_http_date(t);
            *at = secs;
        }
        out.extend_from_slice(text.as_bytes());
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_http_date_is_now_in_the_http_format() {
        let mut out = Vec::new();
        http_date(&mut out);
        let text = String::from_utf8(out).expect("ascii");
        let parsed = httpdate::parse_http_date(&text).expect("an HTTP date");
        let off = std::time::SystemTime::now()
            .duration_since(parsed)
            .unwrap_or_default();
        assert!(text.ends_with(" GMT") && text.len() == 29, "{text}");
        assert!(off < Duration::from_secs(2), "{text} is {off:?} old");
    }

    /// The coarse clock counts milliseconds, and lags the precise one by a tick at most.
    #[test]
    fn the_coarse_clock_counts_milliseconds() {
        let (a, start) = (coarse_ms(), std::time::Instant::now());
        std::thread::sleep(Duration::from_millis(200));
        let (b, took) = (coarse_ms(), start.elapsed().as_millis() as u64);
        assert!(
            b - a + 20 >= took && b - a <= took + 20,
            "the coarse clock moved {} ms while the precise one moved {took} ms",
            b - a
        );
    }
}
