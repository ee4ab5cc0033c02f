//! ingress-nginx's `whitelist-source-range` (or `allowlist-source-range`) and
//! `denylist-source-range`: which client addresses may reach an Ingress at all. The
//! client is the connection's peer, or the `X-Forwarded-For` address when the peer is a
//! trusted proxy (`--trusted-proxy-cidrs`), as for every forwarded header.

use std::net::IpAddr;

use ipnet::IpNet;

/// Client address ranges for one Ingress; empty lists mean no restriction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceRanges {
    /// Only these may reach it (`whitelist-source-range`).
    pub allow: Vec<IpNet>,
    /// These may not (`denylist-source-range`); checked before `allow`.
    pub deny: Vec<IpNet>,
}

impl SourceRanges {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Whether `client` may reach the Ingress. An IPv4 client seen as IPv4-mapped IPv6
    /// is judged as IPv4.
    pub fn permits(&self, client: IpAddr) -> bool {
        let client = match client {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(client, IpAddr::V4),
            v4 => v4,
        };
        if self.deny.iter().any(|n| n.contains(&client)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&client))
    }
}

/// A range list as ingress-nginx takes it: comma-separated CIDRs or bare addresses.
/// `Err` names the first entry that is neither.
pub fn parse(value: &str) -> Result<Vec<IpNet>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| s.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_deny_and_mapped_addresses() {
        let r = SourceRanges {
            allow: parse("10.0.0.0/8, 192.168.1.7, fd00::/8").expect("ranges"),
            deny: parse("10.9.0.0/16").expect("ranges"),
        };
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(r.permits(ip("10.1.2.3")));
        assert!(!r.permits(ip("10.9.1.1")), "deny wins");
        assert!(r.permits(ip("192.168.1.7")));
        assert!(!r.permits(ip("192.168.1.8")));
        assert!(r.permits(ip("fd00::1")));
        assert!(r.permits(ip("::ffff:10.1.2.3")), "mapped IPv4");
        assert!(!r.permits(ip("8.8.8.8")));
        assert!(SourceRanges::default().permits(ip("8.8.8.8")));
        assert_eq!(parse("10.0.0.0/33"), Err("10.0.0.0/33".to_owned()));
        assert_eq!(parse("nope, 10.0.0.1"), Err("nope".to_owned()));
    }
}
