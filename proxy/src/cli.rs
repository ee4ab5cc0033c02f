//! The proxy's command line is `portico_ingress::ProxyArgs`: one typed struct that the
//! operator renders and the proxy parses (docs/contracts.md). This turns its shared types
//! into the proxy's own.

use std::net::{IpAddr, Ipv4Addr};

use portico_ingress::EndpointPolicy;
pub use portico_ingress::ProxyArgs as Args;

use crate::config::ObjectKey;
use crate::lb::Policy;

/// The address every listener binds: `--bind-address`, else every address.
pub fn bind_address(args: &Args) -> IpAddr {
    args.bind_address
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// `--load-balance` as the proxy's policy.
pub fn load_balance(args: &Args) -> Result<Policy, String> {
    Policy::try_from(args.load_balance.clone())
}

/// The endpoints this pod never dials besides the fixed ranges: `--denied-endpoint-cidrs`
/// and its own addresses (`POD_IPS`, and a specific `--bind-address`).
pub fn endpoint_policy(args: &Args) -> EndpointPolicy {
    let mut own = args.pod_ips.clone();
    own.extend(args.bind_address.filter(|ip| !ip.is_unspecified()));
    own.sort();
    own.dedup();
    EndpointPolicy {
        denied: args.denied_endpoint_cidrs.clone(),
        own,
    }
}

/// `--default-certificate` as a store key.
pub fn default_certificate(args: &Args) -> Option<ObjectKey> {
    args.default_certificate
        .as_ref()
        .map(|n| ObjectKey::new(&n.namespace, &n.name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn contract_flags_parse() {
        let a = Args::try_parse_from([
            "portico-proxy",
            "--ingress-class=team-a",
            "--instance-namespace=a",
            "--namespaces=a,b",
            "--http-port=8080",
            "--load-balance=header:X-User",
            "--trusted-proxy-cidrs=10.0.0.0/8,192.168.0.0/16",
            "--default-certificate=a/default-cert",
            "--ssl-redirect=false",
            "--hsts=true",
            "--drain-period=1s",
        ])
        .expect("parse");
        assert_eq!(a.namespaces, vec!["a", "b"]);
        assert_eq!(a.http_port, 8080);
        assert!(!a.ssl_redirect);
        assert!(a.hsts);
        assert_eq!(a.trusted_proxy_cidrs.len(), 2);
        assert_eq!(
            default_certificate(&a),
            Some(ObjectKey::new("a", "default-cert"))
        );
        assert!(matches!(load_balance(&a), Ok(Policy::Header(_))));
        assert_eq!(a.drain_period.get(), std::time::Duration::from_secs(1));
        assert_eq!(bind_address(&a), IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    }

    #[test]
    fn the_endpoint_policy_holds_the_denied_ranges_and_this_pods_addresses() {
        let a = Args::try_parse_from([
            "portico-proxy",
            "--ingress-class=c",
            "--instance-namespace=a",
            "--namespaces=a",
            "--denied-endpoint-cidrs=10.0.0.0/24,fd00:1::/64",
            "--pod-ips=10.244.1.7,fd00:10:244::7",
            "--bind-address=10.244.1.7",
        ])
        .expect("parse");
        let p = endpoint_policy(&a);
        assert_eq!(p.denied.len(), 2);
        assert_eq!(
            p.own,
            vec![
                "10.244.1.7".parse::<IpAddr>().expect("ip"),
                "fd00:10:244::7".parse().expect("ip"),
            ]
        );
        // The default bind address is every interface, which names no address.
        let a = Args::try_parse_from([
            "portico-proxy",
            "--ingress-class=c",
            "--instance-namespace=a",
            "--namespaces=a",
        ])
        .expect("parse");
        assert!(endpoint_policy(&a).own.is_empty());
        assert!(endpoint_policy(&a).denied.is_empty());
        assert!(
            Args::try_parse_from([
                "portico-proxy",
                "--ingress-class=c",
                "--instance-namespace=a",
                "--namespaces=a",
                "--denied-endpoint-cidrs=10.0.0.0/33",
            ])
            .is_err(),
            "a bad CIDR fails the start"
        );
    }
}
