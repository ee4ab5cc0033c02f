//! When the config loop may build. A change is built at once unless builds have lately
//! taken more of the loop's time than the pauses between them: under a storm of changes,
//! builds take at most half the control thread's time (it shares the pod's CPU with the
//! traffic), each waiting as long as the builds before it overran.
//!
//! ```text
//!  credit += time not spent building (at most BURST)   credit -= each build's duration
//!  credit ≥ 0 ─▶ build at once      credit < 0 ─▶ build when it is back at 0
//! ```
//!
//! A fixed window after every build (the earlier design: 30 ms) delayed a change that came
//! soon after a long build by most of the window, even when builds were rare; the credit
//! delays only what would make builds the busier half of the loop's time.

use std::time::Duration;

use tokio::time::Instant;

/// Build time that may be spent back to back before builds are paced: a person or a
/// pipeline applying changes one after another at 10,000 Ingresses (about 30 ms a build)
/// has each built at once for a dozen or so; a controller rewriting Ingresses without
/// pause is paced within half a second.
pub const BURST: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    /// Build time that may still be spent at once, as of `since`; negative: owed.
    credit_ns: i128,
    /// When the last build ended (or the pacer started).
    since: Instant,
}

impl Pacer {
    pub fn new(now: Instant) -> Self {
        Pacer {
            credit_ns: BURST.as_nanos() as i128,
            since: now,
        }
    }

    /// The earliest a build wanted from `wanted` on may start.
    pub fn earliest(&self, wanted: Instant) -> Instant {
        match u64::try_from(-self.credit_ns) {
            Ok(owed) if owed > 0 => wanted.max(self.since + Duration::from_nanos(owed)),
            _ => wanted,
        }
    }

    /// A build started at `started` and took `took`.
    pub fn built(&mut self, started: Instant, took: Duration) {
        let idle = started.saturating_duration_since(self.since).as_nanos() as i128;
        let credit = (self.credit_ns + idle).min(BURST.as_nanos() as i128);
        self.credit_ns = credit - took.as_nanos() as i128;
        self.since = started + took;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_change_after_a_quiet_spell_or_a_short_build_is_built_at_once() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        assert_eq!(p.earliest(t0), t0);
        // Builds of 30 ms with 10 ms between them: the burst allowance covers a few.
        let mut at = t0;
        for _ in 0..4 {
            assert_eq!(p.earliest(at), at, "built at once");
            p.built(at, 30 * MS);
            at += 40 * MS;
        }
        // Builds of 1 ms (a small class) a millisecond apart never wait.
        let mut p = Pacer::new(t0);
        let mut at = t0;
        for _ in 0..1000 {
            assert_eq!(p.earliest(at), at);
            p.built(at, MS);
            at += 2 * MS;
        }
    }

    #[test]
    fn under_a_storm_builds_take_at_most_half_the_time() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        // A change is always waiting; each build takes 30 ms.
        let (mut at, mut building) = (t0, Duration::ZERO);
        for _ in 0..200 {
            let start = p.earliest(at);
            p.built(start, 30 * MS);
            building += 30 * MS;
            at = start + 30 * MS;
        }
        let elapsed = at - t0;
        // The burst allowance is the only excess over one half.
        assert!(
            building <= elapsed / 2 + BURST,
            "{building:?} of {elapsed:?} building"
        );
        assert!(
            building >= elapsed / 2 - 30 * MS,
            "not paced harder than half"
        );
    }

    #[test]
    fn the_wait_is_what_the_builds_overran() {
        let t0 = Instant::now();
        let mut p = Pacer::new(t0);
        // 50 ms of building at once beyond the allowance.
        p.built(t0, BURST + 50 * MS);
        let end = t0 + BURST + 50 * MS;
        assert_eq!(p.earliest(end), end + 50 * MS);
        // A change wanted later than that is built when wanted.
        assert_eq!(p.earliest(end + 80 * MS), end + 80 * MS);
    }
}
