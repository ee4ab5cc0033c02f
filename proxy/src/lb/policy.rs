//! Balancing algorithms. Grammar (docs/contracts.md): `round-robin`, `least-request`,
//! `cookie`, `client-ip`, `header:<Header-Name>`.
//!
//! Consistent hashing uses rendezvous (highest random weight) hashing: each key picks the
//! endpoint with the highest `hash(key, endpoint)`, so removing an endpoint moves only the
//! keys that were on it, and no ring has to be rebuilt on endpoint churn.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use http::HeaderName;
use portico_ingress::LoadBalance;

use super::{Backend, Endpoint, EndpointSet};

/// Cookie set by `cookie` affinity when the client has none.
pub const AFFINITY_COOKIE: &str = "portico-affinity";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    RoundRobin,
    /// Least request with the power of two random choices.
    LeastRequest,
    /// Consistent hash on an affinity cookie; the proxy sets it when absent.
    Cookie,
    /// Consistent hash on the client IP.
    ClientIp,
    /// Consistent hash on a request header; round robin when the header is absent.
    Header(HeaderName),
    /// Consistent hash on the request's path and query.
    Uri,
    /// Consistent hash on a named cookie's value; round robin when it is absent.
    CookieValue(String),
}

impl FromStr for Policy {
    type Err = String;

    /// The grammar lives in `portico-ingress`, which the operator validates annotations with.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Policy::try_from(s.parse::<LoadBalance>()?)
    }
}

impl TryFrom<LoadBalance> for Policy {
    type Error = String;

    fn try_from(lb: LoadBalance) -> Result<Self, Self::Error> {
        Ok(match lb {
            LoadBalance::RoundRobin => Policy::RoundRobin,
            LoadBalance::LeastRequest => Policy::LeastRequest,
            LoadBalance::Cookie => Policy::Cookie,
            LoadBalance::ClientIp => Policy::ClientIp,
            LoadBalance::Header(name) => HeaderName::from_bytes(name.as_bytes())
                .map(Policy::Header)
                .map_err(|_| format!("invalid header name {name:?}"))?,
            LoadBalance::Uri => Policy::Uri,
            LoadBalance::CookieValue(name) => Policy::CookieValue(name),
        })
    }
}

/// What a request offers for hashing.
#[derive(Debug, Default, Clone, Copy)]
pub struct PickKey<'a> {
    pub cookie: Option<&'a str>,
    /// The hashed value of `header`, `uri` and `cookie:<name>` policies.
    pub header: Option<&'a str>,
    pub client_ip: Option<IpAddr>,
}

#[derive(Debug)]
pub struct Pick {
    pub endpoint: Arc<Endpoint>,
    /// `cookie` affinity: a new cookie value for the response.
    pub set_cookie: Option<String>,
}

impl Policy {
    /// Picks an endpoint of `set` (loaded once by the caller), skipping `exclude` (endpoints
    /// already tried by this request) and ejected endpoints, unless that leaves nothing.
    pub fn pick(
        &self,
        backend: &Backend,
        set: &EndpointSet,
        key: &PickKey<'_>,
        exclude: &[SocketAddr],
    ) -> Option<Pick> {
        let eps = &set.endpoints;
        if eps.is_empty() {
            return None;
        }
        let fresh = |e: &Arc<Endpoint>| !exclude.contains(&e.addr);
        let healthy = |e: &Arc<Endpoint>| fresh(e) && !e.is_ejected();
        let usable: &dyn Fn(&Arc<Endpoint>) -> bool = if eps.iter().any(healthy) {
            &healthy
        } else if eps.iter().any(fresh) {
            &fresh
        } else {
            return None;
        };
        let plain = |endpoint: Arc<Endpoint>| {
            Some(Pick {
                endpoint,
                set_cookie: None,
            })
        };
        match self {
            Policy::RoundRobin => plain(round_robin(backend, eps, usable)?),
            Policy::LeastRequest => plain(least_request(eps, usable)?),
            Policy::ClientIp => match key.client_ip {
                Some(ip) => plain(rendezvous(ip.to_string().as_bytes(), eps, usable)?),
                None => plain(round_robin(backend, eps, usable)?),
            },
            Policy::Header(_) | Policy::Uri | Policy::CookieValue(_) => match key.header {
                Some(v) => plain(rendezvous(v.as_bytes(), eps, usable)?),
                None => plain(round_robin(backend, eps, usable)?),
            },
            Policy::Cookie => match key.cookie {
                Some(v) => plain(rendezvous(v.as_bytes(), eps, usable)?),
                None => {
                    let token = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
                    let endpoint = rendezvous(token.as_bytes(), eps, usable)?;
                    Some(Pick {
                        endpoint,
                        set_cookie: Some(token),
                    })
                }
            },
        }
    }
}

fn round_robin(
    backend: &Backend,
    eps: &[Arc<Endpoint>],
    usable: &dyn Fn(&Arc<Endpoint>) -> bool,
) -> Option<Arc<Endpoint>> {
    let n = eps.len();
    let start = backend.next_rr();
    (0..n)
        .map(|i| &eps[(start + i) % n])
        .find(|e| usable(e))
        .cloned()
}

fn least_request(
    eps: &[Arc<Endpoint>],
    usable: &dyn Fn(&Arc<Endpoint>) -> bool,
) -> Option<Arc<Endpoint>> {
    let n = eps.len();
    // Two distinct random usable endpoints; the one with fewer requests in flight wins.
    let start = fastrand::usize(..n);
    let a = (0..n).map(|i| (start + i) % n).find(|i| usable(&eps[*i]))?;
    if n == 1 {
        return Some(eps[a].clone());
    }
    let offset = 1 + fastrand::usize(..n - 1);
    let b = (0..n)
        .map(|i| (a + offset + i) % n)
        .find(|i| *i != a && usable(&eps[*i]));
    Some(match b {
        Some(b) if eps[b].in_flight() < eps[a].in_flight() => eps[b].clone(),
        _ => eps[a].clone(),
    })
}

fn rendezvous(
    key: &[u8],
    eps: &[Arc<Endpoint>],
    usable: &dyn Fn(&Arc<Endpoint>) -> bool,
) -> Option<Arc<Endpoint>> {
    let key_hash = fnv1a(FNV_OFFSET, key);
    eps.iter()
        .filter(|e| usable(e))
        .max_by_key(|e| mix(fnv1a(key_hash, e.addr.to_string().as_bytes())))
        .cloned()
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// splitmix64 finalizer: spreads FNV's weak low bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::super::BackendKey;
    use super::*;
    use std::collections::{HashMap, HashSet};
    use std::time::Duration;

    fn backend(n: u8) -> Backend {
        let b = Backend::new(BackendKey::new("ns", "svc", ""));
        b.update(
            (1..=n)
                .map(|i| SocketAddr::from(([10, 244, 0, i], 80)))
                .collect(),
            false,
        );
        b
    }

    fn pick(p: &Policy, b: &Backend, key: &PickKey<'_>) -> Pick {
        p.pick(b, &b.endpoints(), key, &[]).expect("pick")
    }

    #[test]
    fn grammar() {
        assert_eq!("round-robin".parse(), Ok(Policy::RoundRobin));
        assert_eq!("least-request".parse(), Ok(Policy::LeastRequest));
        assert_eq!("cookie".parse(), Ok(Policy::Cookie));
        assert_eq!("client-ip".parse(), Ok(Policy::ClientIp));
        assert_eq!(
            "header:X-User".parse(),
            Ok(Policy::Header(HeaderName::from_static("x-user")))
        );
        assert!("header:".parse::<Policy>().is_err());
        assert!("header:bad header".parse::<Policy>().is_err());
        assert!("random".parse::<Policy>().is_err());
    }

    #[test]
    fn round_robin_reaches_all() {
        let b = backend(10);
        let seen: HashSet<_> = (0..10)
            .map(|_| {
                pick(&Policy::RoundRobin, &b, &PickKey::default())
                    .endpoint
                    .addr
            })
            .collect();
        assert_eq!(seen.len(), 10);
    }

    #[test]
    fn skips_ejected_and_excluded() {
        let b = backend(3);
        let set = b.endpoints();
        set.endpoints[0].eject(Duration::from_secs(60));
        let exclude = [set.endpoints[1].addr];
        for _ in 0..10 {
            let p = Policy::RoundRobin
                .pick(&b, &set, &PickKey::default(), &exclude)
                .expect("pick");
            assert_eq!(p.endpoint.addr, set.endpoints[2].addr);
        }
        // Everything ejected: still pick (better than a certain 503).
        for e in &set.endpoints {
            e.eject(Duration::from_secs(60));
        }
        assert!(
            Policy::RoundRobin
                .pick(&b, &set, &PickKey::default(), &[])
                .is_some()
        );
        // Everything tried: nothing left.
        let all: Vec<_> = set.endpoints.iter().map(|e| e.addr).collect();
        assert!(
            Policy::RoundRobin
                .pick(&b, &set, &PickKey::default(), &all)
                .is_none()
        );
    }

    #[test]
    fn least_request_avoids_busy_endpoint() {
        let b = backend(2);
        let set = b.endpoints();
        let _busy: Vec<_> = (0..5).map(|_| set.endpoints[0].start_request()).collect();
        let mut counts: HashMap<SocketAddr, usize> = HashMap::new();
        for _ in 0..200 {
            *counts
                .entry(
                    pick(&Policy::LeastRequest, &b, &PickKey::default())
                        .endpoint
                        .addr,
                )
                .or_default() += 1;
        }
        // Two distinct choices: with two endpoints the idle one always wins.
        let idle = counts.get(&set.endpoints[1].addr).copied().unwrap_or(0);
        assert_eq!(idle, 200, "idle endpoint got {idle}/200");
    }

    #[test]
    fn cookie_affinity_is_sticky_and_set_when_absent() {
        let b = backend(10);
        let first = pick(&Policy::Cookie, &b, &PickKey::default());
        let token = first.set_cookie.expect("cookie set");
        for _ in 0..20 {
            let p = pick(
                &Policy::Cookie,
                &b,
                &PickKey {
                    cookie: Some(&token),
                    ..Default::default()
                },
            );
            assert_eq!(p.endpoint.addr, first.endpoint.addr);
            assert!(p.set_cookie.is_none());
        }
    }

    #[test]
    fn consistent_hash_moves_only_keys_of_removed_endpoint() {
        let b = backend(10);
        let keys: Vec<String> = (0..500).map(|i| format!("user-{i}")).collect();
        let policy = Policy::Header(HeaderName::from_static("x-user"));
        let before: Vec<_> = keys
            .iter()
            .map(|k| {
                pick(
                    &policy,
                    &b,
                    &PickKey {
                        header: Some(k),
                        ..Default::default()
                    },
                )
                .endpoint
                .addr
            })
            .collect();
        let removed = SocketAddr::from(([10, 244, 0, 3], 80));
        b.update(
            (1..=10u8)
                .filter(|i| *i != 3)
                .map(|i| SocketAddr::from(([10, 244, 0, i], 80)))
                .collect(),
            false,
        );
        for (k, old) in keys.iter().zip(&before) {
            let new = pick(
                &policy,
                &b,
                &PickKey {
                    header: Some(k),
                    ..Default::default()
                },
            )
            .endpoint
            .addr;
            if *old != removed {
                assert_eq!(new, *old, "key {k} moved although its endpoint stayed");
            }
        }
        // Spread: every endpoint gets some keys.
        let distinct: HashSet<_> = before.iter().collect();
        assert_eq!(distinct.len(), 10);
    }

    #[test]
    fn client_ip_hash_is_stable() {
        let b = backend(5);
        let ip: IpAddr = "10.1.2.3".parse().expect("ip");
        let a = pick(
            &Policy::ClientIp,
            &b,
            &PickKey {
                client_ip: Some(ip),
                ..Default::default()
            },
        )
        .endpoint
        .addr;
        for _ in 0..10 {
            assert_eq!(
                pick(
                    &Policy::ClientIp,
                    &b,
                    &PickKey {
                        client_ip: Some(ip),
                        ..Default::default()
                    }
                )
                .endpoint
                .addr,
                a
            );
        }
    }
}
