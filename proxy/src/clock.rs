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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

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
