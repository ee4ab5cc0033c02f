//! Endpoint sets and load balancing.
//!
//! ```text
//! EndpointSlice events ─▶ Backend.endpoints (ArcSwap<EndpointSet>, replaced whole)
//! Route ─▶ Arc<Backend> ─▶ load() once per request ─▶ Policy::pick(set, request key)
//! ```
//!
//! A `Backend` is one Service port. Routes of every snapshot share the same `Arc<Backend>`
//! for a given Service port, so endpoint churn swaps one `EndpointSet` in place and never
//! rebuilds routes. A request loads the set once and uses that same set for its pick and
//! its retries, so it never sees a half-applied change. `Endpoint`s keep their identity
//! (and so their in-flight count and ejection) across sets with the same address.

mod policy;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

pub use policy::{AFFINITY_COOKIE, Pick, PickKey, Policy};

/// How long an endpoint that failed to connect is skipped.
pub const EJECTION_TIME: Duration = Duration::from_secs(10);

/// One Service port of one Service: `namespace/service:port-name` (`""` for an unnamed port).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendKey {
    pub namespace: String,
    pub service: String,
    pub port_name: String,
}

impl BackendKey {
    pub fn new(namespace: &str, service: &str, port_name: &str) -> Self {
        BackendKey {
            namespace: namespace.into(),
            service: service.into(),
            port_name: port_name.into(),
        }
    }
}

impl std::fmt::Display for BackendKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}:{}", self.namespace, self.service, self.port_name)
    }
}

#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    in_flight: AtomicU32,
    /// Woken when a request on this endpoint ends (for requests waiting for a slot).
    released: tokio::sync::Notify,
    /// Milliseconds since the epoch until which the endpoint is skipped; 0 = healthy.
    ejected_until_ms: AtomicU64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Endpoint {
    pub fn new(addr: SocketAddr) -> Self {
        Endpoint {
            addr,
            in_flight: AtomicU32::new(0),
            released: tokio::sync::Notify::new(),
            ejected_until_ms: AtomicU64::new(0),
        }
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request until the guard drops.
    pub fn start_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Counts a request unless `max` are in flight already. An HTTP/1.1 request in flight
    /// holds one upstream connection, so this caps the connections in use per endpoint.
    pub fn try_start_request(self: &Arc<Self>, max: u32) -> Option<InFlight> {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| InFlight(self.clone()))
    }

    /// Counts a request once fewer than `max` are in flight, waiting at most `wait`.
    pub async fn start_request_within(
        self: &Arc<Self>,
        max: u32,
        wait: Duration,
    ) -> Option<InFlight> {
        if let Some(f) = self.try_start_request(max) {
            return Some(f);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let released = self.released.notified();
            // Registered first, then checked: a release in between is not missed.
            if let Some(f) = self.try_start_request(max) {
                return Some(f);
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return self.try_start_request(max);
            }
        }
    }

    /// Passive ejection after a failed connect.
    pub fn eject(&self, for_how_long: Duration) {
        self.ejected_until_ms.store(
            now_ms() + for_how_long.as_millis() as u64,
            Ordering::Relaxed,
        );
    }

    pub fn is_ejected(&self) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && now_ms() < until
    }

    /// A successful connect ends an ejection early.
    pub fn mark_healthy(&self) {
        if self.ejected_until_ms.load(Ordering::Relaxed) != 0 {
            self.ejected_until_ms.store(0, Ordering::Relaxed);
        }
    }
}

/// Decrements the endpoint's in-flight count on drop.
#[derive(Debug)]
pub struct InFlight(Arc<Endpoint>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.released.notify_one();
    }
}

/// The usable endpoints of a backend at one moment.
#[derive(Debug, Default)]
pub struct EndpointSet {
    pub endpoints: Vec<Arc<Endpoint>>,
    /// True when these are serving-but-terminating endpoints (no ready ones existed).
    pub terminating_fallback: bool,
}

impl EndpointSet {
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }
}

/// One Service port: its current endpoints and balancing state.
#[derive(Debug)]
pub struct Backend {
    pub key: BackendKey,
    endpoints: ArcSwap<EndpointSet>,
    rr: AtomicUsize,
}

impl Backend {
    pub fn new(key: BackendKey) -> Self {
        Backend {
            key,
            endpoints: ArcSwap::from_pointee(EndpointSet::default()),
            rr: AtomicUsize::new(0),
        }
    }

    /// The current set; load once per request.
    pub fn endpoints(&self) -> Arc<EndpointSet> {
        self.endpoints.load_full()
    }

    /// Replaces the set, reusing `Endpoint`s whose address did not change (keeps their
    /// in-flight counts and ejections). Returns whether anything changed.
    pub fn update(&self, addrs: Vec<SocketAddr>, terminating_fallback: bool) -> bool {
        let old = self.endpoints.load();
        let mut addrs = addrs;
        addrs.sort();
        addrs.dedup();
        let unchanged = old.terminating_fallback == terminating_fallback
            && old.endpoints.len() == addrs.len()
            && old.endpoints.iter().zip(&addrs).all(|(e, a)| e.addr == *a);
        if unchanged {
            return false;
        }
        let endpoints = addrs
            .into_iter()
            .map(
                |a| match old.endpoints.binary_search_by(|e| e.addr.cmp(&a)) {
                    Ok(i) => old.endpoints[i].clone(),
                    Err(_) => Arc::new(Endpoint::new(a)),
                },
            )
            .collect();
        self.endpoints.store(Arc::new(EndpointSet {
            endpoints,
            terminating_fallback,
        }));
        true
    }

    pub(crate) fn next_rr(&self) -> usize {
        self.rr.fetch_add(1, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 244, 0, i], 8080))
    }

    #[test]
    fn update_keeps_endpoint_identity() {
        let b = Backend::new(BackendKey::new("ns", "svc", "http"));
        assert!(b.update(vec![addr(2), addr(1)], false));
        let first = b.endpoints();
        let _guard = first.endpoints[0].start_request();
        assert!(
            !b.update(vec![addr(1), addr(2)], false),
            "same set is no change"
        );
        assert!(b.update(vec![addr(1), addr(3)], false));
        let second = b.endpoints();
        assert!(Arc::ptr_eq(&first.endpoints[0], &second.endpoints[0]));
        assert_eq!(second.endpoints[0].in_flight(), 1);
        // The old set is still whole for whoever loaded it.
        assert_eq!(first.endpoints.len(), 2);
        assert_eq!(first.endpoints[1].addr, addr(2));
    }

    #[test]
    fn ejection_expires() {
        let e = Endpoint::new(addr(1));
        assert!(!e.is_ejected());
        e.eject(Duration::from_secs(60));
        assert!(e.is_ejected());
        e.mark_healthy();
        assert!(!e.is_ejected());
        e.eject(Duration::from_millis(0));
        assert!(!e.is_ejected());
    }
}
