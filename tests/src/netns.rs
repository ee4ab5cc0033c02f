//! The private network namespace the traffic tests run in.
//!
//! `tests/netns.sh` (used by `just test` and `just demo`) enters a new user and network
//! namespace with `unshare -rn`, brings up `lo` and adds `10.244.0.1/16` to it, so every
//! 10.244.x.y is a local address that only this run can reach: backends and proxies listen on
//! "pod" addresses there, and EndpointSlices (which refuse loopback) can publish them.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU32, Ordering};

/// Set by tests/netns.sh inside the namespace it created.
pub const ENV: &str = "PORTICO_TEST_NETNS";

/// Fails the calling test, with the reason, unless it runs inside the test network namespace.
pub fn require() {
    assert!(
        std::env::var(ENV).as_deref() == Ok("1"),
        "this test sends traffic to 10.244.x.y pod addresses and must run inside the private \
         network namespace made by tests/netns.sh: run `just test` (or `tests/netns.sh cargo test ...`)"
    );
    std::net::TcpListener::bind((Ipv4Addr::new(10, 244, 0, 1), 0))
        .expect("10.244.0.1 is not local: tests/netns.sh did not set up the namespace's loopback");
}

/// A fresh pod-like address, 10.244.<n>.<m>, distinct within this test process.
pub fn pod_ip() -> IpAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // Skip .0 and .255 so every address looks like an ordinary host.
    let third = 1 + (n / 250) % 250;
    let fourth = 1 + n % 250;
    IpAddr::V4(Ipv4Addr::new(10, 244, third as u8, fourth as u8))
}
