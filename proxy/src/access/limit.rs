//! ingress-nginx's rate limits (`limit-rps`, `limit-rpm`, `limit-connections`), per client
//! address and per proxy pod, in memory of a fixed size.
//!
//! ```text
//!  (Ingress, limit, client address) ─▶ keyed hash ─▶ set of 4 slots ─▶ GCRA: one
//!  "theoretical arrival time" per key; a full set gives up its slot with the least state
//! ```
//!
//! Requests: GCRA (the generic cell rate algorithm) keeps one timestamp per key and
//! allows `burst + 1` requests at once, then one per interval, as nginx's `limit_req`
//! with `nodelay`. The table is allocated once: a flood of distinct source addresses
//! replaces entries (those closest to a full allowance first) and never grows it; an
//! evicted client starts again with a full allowance.
//!
//! Concurrent requests: one counter per hash bucket, no keys. Two clients that share a
//! bucket share a limit (stricter for both, never looser); with 65,536 buckets and a
//! hash seeded per process, that is rare and not something a client can aim for.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

const SETS: usize = 16 * 1024;
const WAYS: usize = 4;
const CONNECTION_BUCKETS: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// The key's hash; 0 is a free slot.
    key: u64,
    /// Nanoseconds since `EPOCH` when the key's allowance is next full-minus-one.
    tat: u64,
}

/// The pod's rate-limit memory, shared by every route and listener.
pub struct Limiter {
    sets: Box<[Mutex<[Slot; WAYS]>]>,
    connections: Box<[AtomicU32]>,
    hasher: RandomState,
}

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ns() -> u64 {
    EPOCH.elapsed().as_nanos() as u64
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("entries", &(SETS * WAYS))
            .finish()
    }
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new()
    }
}

/// What a limit is for: an Ingress (by a hash of its key) and which of its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LimitId {
    pub ingress: u64,
    pub kind: u8,
}

impl Limiter {
    pub fn new() -> Limiter {
        Limiter {
            sets: (0..SETS)
                .map(|_| Mutex::new([Slot::default(); WAYS]))
                .collect(),
            connections: (0..CONNECTION_BUCKETS).map(|_| AtomicU32::new(0)).collect(),
            hasher: RandomState::new(),
        }
    }

    /// Entries the table holds at most (what bounds its memory).
    pub fn capacity(&self) -> usize {
        SETS * WAYS
    }

    fn hash(&self, id: LimitId, client: IpAddr) -> u64 {
        let mut h = self.hasher.build_hasher();
        id.hash(&mut h);
        client.hash(&mut h);
        h.finish().max(1)
    }

    /// One request of `client` against a rate of one per `interval` with `burst` extra:
    /// `Err` carries how long until the next would be allowed.
    pub fn request(
        &self,
        id: LimitId,
        client: IpAddr,
        interval: Duration,
        burst: u32,
    ) -> Result<(), Duration> {
        self.request_at(id, client, interval, burst, now_ns())
    }

    fn request_at(
        &self,
        id: LimitId,
        client: IpAddr,
        interval: Duration,
        burst: u32,
        now: u64,
    ) -> Result<(), Duration> {
        let key = self.hash(id, client);
        let interval = interval.as_nanos() as u64;
        let tolerance = interval.saturating_mul(u64::from(burst));
        let set = &self.sets[(key as usize) % SETS];
        let mut set = set.lock().unwrap_or_else(|e| e.into_inner());
        let slot = match set.iter().position(|s| s.key == key) {
            Some(i) => &mut set[i],
            None => {
                // The slot with the least state: free, or closest to a full allowance.
                let i = (0..WAYS).min_by_key(|&i| set[i].tat).unwrap_or(0);
                set[i] = Slot { key, tat: 0 };
                &mut set[i]
            }
        };
        let tat = slot.tat.max(now);
        if tat - now > tolerance {
            return Err(Duration::from_nanos(tat - now - tolerance));
        }
        slot.tat = tat + interval;
        Ok(())
    }

    /// One more request in flight for `client`, up to `max`; the guard ends it.
    pub fn connection(self: &Arc<Self>, id: LimitId, client: IpAddr, max: u32) -> Option<InFlight> {
        let bucket = (self.hash(id, client) as usize) % CONNECTION_BUCKETS;
        let counter = &self.connections[bucket];
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        Some(InFlight {
            limiter: self.clone(),
            bucket,
        })
    }
}

/// A request counted against `limit-connections` until dropped.
#[derive(Debug)]
pub struct InFlight {
    limiter: Arc<Limiter>,
    bucket: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.limiter.connections[self.bucket].fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: LimitId = LimitId {
        ingress: 7,
        kind: 0,
    };

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn burst_then_one_per_interval() {
        let l = Limiter::new();
        let ms = 1_000_000u64;
        let t0 = 1_000 * ms;
        let interval = Duration::from_millis(100);
        // burst 2: three at once, the fourth waits 100 ms.
        for _ in 0..3 {
            assert!(l.request_at(ID, ip(1), interval, 2, t0).is_ok());
        }
        let wait = l
            .request_at(ID, ip(1), interval, 2, t0)
            .expect_err("limited");
        assert_eq!(wait, Duration::from_millis(100));
        assert!(
            l.request_at(ID, ip(2), interval, 2, t0).is_ok(),
            "another client"
        );
        let other = LimitId {
            ingress: 8,
            kind: 0,
        };
        assert!(
            l.request_at(other, ip(1), interval, 2, t0).is_ok(),
            "another Ingress"
        );
        assert!(l.request_at(ID, ip(1), interval, 2, t0 + 100 * ms).is_ok());
        assert!(l.request_at(ID, ip(1), interval, 2, t0 + 100 * ms).is_err());
        // Over 10 s at 10/s: 100 allowed (plus the burst already spent).
        let allowed = (0..1000)
            .filter(|i| {
                l.request_at(ID, ip(1), interval, 2, t0 + 200 * ms + i * 10 * ms)
                    .is_ok()
            })
            .count();
        assert!((99..=101).contains(&allowed), "{allowed}");
    }

    #[test]
    fn a_flood_of_addresses_keeps_the_table_its_size_and_limited_clients_limited() {
        let l = Limiter::new();
        let interval = Duration::from_secs(1);
        let t0 = 1_000_000_000u64;
        // A client spends its whole burst; then 200,000 others each send one request.
        for _ in 0..6 {
            assert!(l.request_at(ID, ip(1), interval, 5, t0).is_ok());
        }
        for n in 2..200_002u32 {
            let _ = l.request_at(ID, ip(n), interval, 5, t0);
        }
        assert_eq!(l.sets.len() * WAYS, l.capacity());
        assert!(
            l.request_at(ID, ip(1), interval, 5, t0).is_err(),
            "a limited client keeps its state: the flood evicts entries with less"
        );
    }

    #[test]
    fn concurrent_requests_are_counted_and_released() {
        let l = Arc::new(Limiter::new());
        let a = l.connection(ID, ip(1), 2).expect("1");
        let _b = l.connection(ID, ip(1), 2).expect("2");
        assert!(l.connection(ID, ip(1), 2).is_none());
        drop(a);
        assert!(l.connection(ID, ip(1), 2).is_some());
    }
}
