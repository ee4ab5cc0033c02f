//! Safe endpoints: the addresses the proxy never dials, whatever an EndpointSlice says.
//!
//! ```text
//!  EndpointSlice ─▶ slice_endpoints(slice, port name) ─▶ (SocketAddr, Usable) per address
//!                                                          │
//!  EndpointPolicy (denied CIDRs, own addresses) ──▶ refused(addr, policy)
//!                                                          ├─▶ None: may be dialled
//!                                                          └─▶ Some(Refusal): dropped
//!  proxy: drops refused endpoints (log, metric)   operator: Warning Event on the Ingress
//! ```
//!
//! Whoever may write an EndpointSlice for a selector-less Service can make it name any
//! address. The proxy dials from its own pod, so without this rule a tenant could use it to
//! reach what the tenant cannot reach itself: the proxy's own admin port, loopback services
//! of the proxy pod, the cloud metadata service (and the node credentials it hands out), the
//! kubelet and the control plane. The apiserver already refuses loopback, link-local and
//! unspecified addresses in EndpointSlices (`ValidateEndpointIP`); the rule here does not
//! rely on that, and adds what the apiserver lets through.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// Cloud metadata services that answer on ordinary (not link-local) addresses, or on the
/// well-known link-local one: AWS, GCP, Azure, OpenStack and most others
/// (169.254.169.254), AWS over IPv6 (fd00:ec2::254), GCP over IPv6 (fd20:ce::254),
/// Alibaba Cloud (100.100.100.200), Azure's WireServer (168.63.129.16).
pub const METADATA_ADDRESSES: [IpAddr; 5] = [
    IpAddr::V4(Ipv4Addr::new(169, 254, 169, 254)),
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)),
    IpAddr::V6(Ipv6Addr::new(0xfd20, 0x00ce, 0, 0, 0, 0, 0, 0x0254)),
    IpAddr::V4(Ipv4Addr::new(100, 100, 100, 200)),
    IpAddr::V4(Ipv4Addr::new(168, 63, 129, 16)),
];

/// What, besides the fixed classes below, a proxy must not dial.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointPolicy {
    /// Ranges the platform denies: node, control-plane and other infrastructure networks
    /// (`--denied-endpoint-cidrs`).
    pub denied: Vec<IpNet>,
    /// The proxy pod's own addresses, refused on every port: its admin port and anything
    /// else listening in the pod would otherwise be one EndpointSlice away.
    pub own: Vec<IpAddr>,
}

/// Why an endpoint address is refused. `Display` is the text users read (log, Event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 0.0.0.0/8 or `::`: means "this host" when dialled.
    Unspecified,
    /// 127.0.0.0/8 or `::1`.
    Loopback,
    /// A cloud metadata service (`METADATA_ADDRESSES`).
    Metadata,
    /// 169.254.0.0/16 or fe80::/10.
    LinkLocal,
    /// 224.0.0.0/4 or ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// One of the proxy pod's own addresses.
    Own,
    /// Inside a range the platform denies.
    Denied(IpNet),
}

impl Refusal {
    /// A short, fixed label (for metrics and structured logs).
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Unspecified => "unspecified",
            Refusal::Loopback => "loopback",
            Refusal::Metadata => "metadata",
            Refusal::LinkLocal => "link-local",
            Refusal::Multicast => "multicast",
            Refusal::Broadcast => "broadcast",
            Refusal::Own => "own",
            Refusal::Denied(_) => "denied",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Unspecified => f.write_str("an unspecified address (0.0.0.0/8, ::)"),
            Refusal::Loopback => f.write_str("a loopback address (127.0.0.0/8, ::1)"),
            Refusal::Metadata => f.write_str("a cloud metadata service address"),
            Refusal::LinkLocal => f.write_str("a link-local address (169.254.0.0/16, fe80::/10)"),
            Refusal::Multicast => f.write_str("a multicast address"),
            Refusal::Broadcast => f.write_str("the broadcast address"),
            Refusal::Own => f.write_str("an address of the proxy pod itself"),
            Refusal::Denied(net) => {
                write!(f, "in {net}, a range the platform denies to endpoints")
            }
        }
    }
}

/// Whether the proxy must not dial `addr`, and why. Every port of a refused address is
/// refused: the rules are about where a connection lands, not which service answers.
/// An IPv4 address carried in IPv6 (IPv4-mapped `::ffff:a.b.c.d`, or NAT64's well-known
/// prefix `64:ff9b::/96`, which a NAT64 gateway turns back into IPv4) is judged as the
/// IPv4 address too.
pub fn refused(addr: SocketAddr, policy: &EndpointPolicy) -> Option<Refusal> {
    let ip = addr.ip();
    let embedded = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().or_else(|| nat64_embedded(v6)),
        IpAddr::V4(_) => None,
    };
    std::iter::once(ip)
        .chain(embedded.map(IpAddr::V4))
        .find_map(|ip| fixed_class(ip).or_else(|| by_policy(ip, policy)))
}

/// The IPv4 address in a NAT64 well-known-prefix address (RFC 6052: `64:ff9b::/96`).
fn nat64_embedded(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]).then(|| {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    })
}

fn fixed_class(ip: IpAddr) -> Option<Refusal> {
    if METADATA_ADDRESSES.contains(&ip) {
        return Some(Refusal::Metadata);
    }
    match ip {
        IpAddr::V4(v4) => {
            if v4.octets()[0] == 0 {
                Some(Refusal::Unspecified)
            } else if v4.is_loopback() {
                Some(Refusal::Loopback)
            } else if v4.is_link_local() {
                Some(Refusal::LinkLocal)
            } else if v4.is_multicast() {
                Some(Refusal::Multicast)
            } else if v4.is_broadcast() {
                Some(Refusal::Broadcast)
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_unspecified() {
                Some(Refusal::Unspecified)
            } else if v6.is_loopback() {
                Some(Refusal::Loopback)
            } else if v6.is_unicast_link_local() {
                Some(Refusal::LinkLocal)
            } else if v6.is_multicast() {
                Some(Refusal::Multicast)
            } else {
                None
            }
        }
    }
}

fn by_policy(ip: IpAddr, policy: &EndpointPolicy) -> Option<Refusal> {
    if policy.own.contains(&ip) {
        return Some(Refusal::Own);
    }
    policy
        .denied
        .iter()
        .find(|net| net.contains(&ip))
        .map(|net| Refusal::Denied(*net))
}

/// Whether the proxy may send requests to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usable {
    /// `ready`: used.
    Ready,
    /// `serving` and `terminating`: used only when a Service port has no ready endpoint.
    Terminating,
}

/// The TCP socket addresses that `slice` gives the Service port named `port_name` (`""`
/// for an unnamed port), with how each may be used. Endpoints neither ready nor serving,
/// addresses that do not parse, FQDN slices and slices without that port give nothing.
pub fn slice_endpoints(slice: &EndpointSlice, port_name: &str) -> Vec<(SocketAddr, Usable)> {
    if slice.address_type != "IPv4" && slice.address_type != "IPv6" {
        return Vec::new();
    }
    let Some(port) = slice
        .ports
        .iter()
        .flatten()
        .find(|p| {
            p.name.as_deref().unwrap_or("") == port_name
                && p.protocol.as_deref().unwrap_or("TCP") == "TCP"
        })
        .and_then(|p| p.port)
        .and_then(|p| u16::try_from(p).ok())
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ep in &slice.endpoints {
        let cond = ep.conditions.as_ref();
        let ready = cond.and_then(|c| c.ready).unwrap_or(true);
        let serving = cond.and_then(|c| c.serving).unwrap_or(ready);
        let terminating = cond.and_then(|c| c.terminating).unwrap_or(false);
        let usable = if ready {
            Usable::Ready
        } else if serving && terminating {
            Usable::Terminating
        } else {
            continue;
        };
        for a in &ep.addresses {
            if let Ok(ip) = a.parse::<IpAddr>() {
                out.push((SocketAddr::new(ip, port), usable));
            }
        }
    }
    out
}

/// What an EndpointSlice gives each of its Service ports: [`slice_endpoints`] for every
/// port name it has, and all a proxy needs to keep of the slice (a few hundred bytes
/// instead of the few KiB of the object).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SliceEndpoints {
    /// Per port name, what `slice_endpoints` gives it; names that give nothing are left out.
    ports: Box<[PortEndpoints]>,
}

/// A port name and its endpoints.
type PortEndpoints = (Box<str>, Box<[(SocketAddr, Usable)]>);

impl SliceEndpoints {
    pub fn of(slice: &EndpointSlice) -> Self {
        let mut ports: Vec<PortEndpoints> = Vec::new();
        for p in slice.ports.iter().flatten() {
            let name = p.name.as_deref().unwrap_or("");
            if ports.iter().any(|(n, _)| &**n == name) {
                continue;
            }
            let endpoints = slice_endpoints(slice, name);
            if !endpoints.is_empty() {
                ports.push((name.into(), endpoints.into()));
            }
        }
        SliceEndpoints {
            ports: ports.into(),
        }
    }

    /// The endpoints of the port named `port_name`: `slice_endpoints(slice, port_name)`.
    pub fn port(&self, port_name: &str) -> &[(SocketAddr, Usable)] {
        self.ports
            .iter()
            .find(|(n, _)| &**n == port_name)
            .map_or(&[], |(_, e)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> EndpointPolicy {
        EndpointPolicy {
            denied: vec![
                "10.0.0.0/24".parse().expect("cidr"),
                "2001:db8:1::/48".parse().expect("cidr"),
            ],
            own: vec![
                "10.244.1.7".parse().expect("ip"),
                "fd00:10:244::7".parse().expect("ip"),
            ],
        }
    }

    fn judge(addr: &str) -> Option<Refusal> {
        refused(addr.parse().expect("socket address"), &policy())
    }

    #[test]
    fn every_class_of_address_is_judged() {
        let denied_v4 = Refusal::Denied("10.0.0.0/24".parse().expect("cidr"));
        let denied_v6 = Refusal::Denied("2001:db8:1::/48".parse().expect("cidr"));
        let table: &[(&str, Option<Refusal>)] = &[
            // Ordinary pod addresses pass.
            ("10.244.1.8:8080", None),
            ("10.0.1.1:80", None),
            ("[fd00:10:244::8]:8080", None),
            ("[2001:db8:2::1]:443", None),
            ("192.168.1.1:80", None),
            // Class E (240.0.0.0/4) is used for pods by some clusters: only the broadcast
            // address in it is refused.
            ("240.0.0.1:80", None),
            ("255.255.255.255:80", Some(Refusal::Broadcast)),
            ("0.0.0.0:80", Some(Refusal::Unspecified)),
            ("0.1.2.3:80", Some(Refusal::Unspecified)),
            ("[::]:80", Some(Refusal::Unspecified)),
            ("127.0.0.1:80", Some(Refusal::Loopback)),
            ("127.255.0.9:9090", Some(Refusal::Loopback)),
            ("[::1]:80", Some(Refusal::Loopback)),
            ("169.254.0.1:80", Some(Refusal::LinkLocal)),
            ("169.254.255.255:80", Some(Refusal::LinkLocal)),
            ("[fe80::1]:80", Some(Refusal::LinkLocal)),
            ("[febf::1]:80", Some(Refusal::LinkLocal)),
            ("169.254.169.254:80", Some(Refusal::Metadata)),
            ("[fd00:ec2::254]:80", Some(Refusal::Metadata)),
            ("[fd20:ce::254]:80", Some(Refusal::Metadata)),
            ("100.100.100.200:80", Some(Refusal::Metadata)),
            ("168.63.129.16:32526", Some(Refusal::Metadata)),
            // Neighbours of the metadata addresses are ordinary.
            ("100.100.100.201:80", None),
            ("168.63.129.17:80", None),
            ("[fd00:ec2::253]:80", None),
            ("224.0.0.1:80", Some(Refusal::Multicast)),
            ("239.1.2.3:80", Some(Refusal::Multicast)),
            ("[ff02::1]:80", Some(Refusal::Multicast)),
            ("[ff0e::1]:80", Some(Refusal::Multicast)),
            // The proxy's own addresses, on any port.
            ("10.244.1.7:80", Some(Refusal::Own)),
            ("10.244.1.7:9090", Some(Refusal::Own)),
            ("10.244.1.7:1", Some(Refusal::Own)),
            ("[fd00:10:244::7]:443", Some(Refusal::Own)),
            // Denied ranges, both edges.
            ("10.0.0.0:80", Some(denied_v4)),
            ("10.0.0.255:80", Some(denied_v4)),
            ("10.0.1.0:80", None),
            ("[2001:db8:1:ffff::1]:80", Some(denied_v6)),
            // IPv4 inside IPv6 is judged as IPv4.
            ("[::ffff:127.0.0.1]:80", Some(Refusal::Loopback)),
            ("[::ffff:169.254.169.254]:80", Some(Refusal::Metadata)),
            ("[::ffff:10.244.1.7]:80", Some(Refusal::Own)),
            ("[::ffff:10.0.0.9]:80", Some(denied_v4)),
            ("[::ffff:10.244.1.8]:80", None),
            ("[64:ff9b::a9fe:a9fe]:80", Some(Refusal::Metadata)),
            ("[64:ff9b::7f00:1]:80", Some(Refusal::Loopback)),
            ("[64:ff9b::a00:5]:80", Some(denied_v4)),
            ("[64:ff9b::af4:108]:80", None),
            // Only the well-known NAT64 prefix embeds IPv4.
            ("[64:ff9c::7f00:1]:80", None),
        ];
        let mut wrong = Vec::new();
        for (addr, want) in table {
            let got = judge(addr);
            if got != *want {
                wrong.push(format!("{addr}: want {want:?}, got {got:?}"));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn without_a_policy_only_the_fixed_classes_are_refused() {
        let none = EndpointPolicy::default();
        assert_eq!(refused("10.244.1.7:80".parse().expect("addr"), &none), None);
        assert_eq!(refused("10.0.0.1:80".parse().expect("addr"), &none), None);
        assert_eq!(
            refused("127.0.0.1:80".parse().expect("addr"), &none),
            Some(Refusal::Loopback)
        );
    }

    #[test]
    fn reasons_read_as_sentences() {
        assert_eq!(
            Refusal::Denied("10.0.0.0/24".parse().expect("cidr")).to_string(),
            "in 10.0.0.0/24, a range the platform denies to endpoints"
        );
        assert_eq!(
            Refusal::Own.to_string(),
            "an address of the proxy pod itself"
        );
        assert_eq!(Refusal::LinkLocal.label(), "link-local");
    }

    fn slice(
        address_type: &str,
        ports: serde_json::Value,
        endpoints: serde_json::Value,
    ) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"namespace": "a", "name": "s"},
            "addressType": address_type,
            "ports": ports,
            "endpoints": endpoints,
        }))
        .expect("slice")
    }

    #[test]
    fn slice_endpoints_follow_port_names_protocols_and_conditions() {
        let s = slice(
            "IPv4",
            json!([{"name": "http", "port": 8080}, {"name": "dns", "port": 53, "protocol": "UDP"}, {"port": 9000}]),
            json!([
                {"addresses": ["10.244.0.1"]},
                {"addresses": ["10.244.0.2", "10.244.0.3"], "conditions": {"ready": true}},
                {"addresses": ["10.244.0.4"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["10.244.0.5"], "conditions": {"ready": false, "serving": false, "terminating": true}},
                {"addresses": ["10.244.0.6"], "conditions": {"ready": false}},
                {"addresses": ["not-an-ip"]},
            ]),
        );
        let addr = |last: u8, port: u16| SocketAddr::from(([10, 244, 0, last], port));
        assert_eq!(
            slice_endpoints(&s, "http"),
            vec![
                (addr(1, 8080), Usable::Ready),
                (addr(2, 8080), Usable::Ready),
                (addr(3, 8080), Usable::Ready),
                (addr(4, 8080), Usable::Terminating),
            ]
        );
        assert_eq!(slice_endpoints(&s, "")[0], (addr(1, 9000), Usable::Ready));
        assert!(slice_endpoints(&s, "dns").is_empty(), "UDP port");
        assert!(slice_endpoints(&s, "grpc").is_empty(), "no such port");
        let fqdn = slice(
            "FQDN",
            json!([{"name": "http", "port": 80}]),
            json!([{"addresses": ["localhost"]}]),
        );
        assert!(slice_endpoints(&fqdn, "http").is_empty());
    }

    /// What a proxy keeps of a slice answers every port name as the slice itself does.
    #[test]
    fn kept_slice_endpoints_are_the_slice_s() {
        let s = slice(
            "IPv4",
            json!([{"name": "http", "port": 8080}, {"name": "dns", "port": 53, "protocol": "UDP"},
                   {"name": "dns", "port": 5353}, {"port": 9000}, {"name": "http", "port": 1}]),
            json!([
                {"addresses": ["10.244.0.1"]},
                {"addresses": ["10.244.0.4"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["10.244.0.6"], "conditions": {"ready": false}},
            ]),
        );
        let kept = SliceEndpoints::of(&s);
        for name in ["http", "dns", "", "grpc"] {
            assert_eq!(kept.port(name), slice_endpoints(&s, name), "port {name:?}");
        }
        assert_eq!(kept.port("dns").len(), 2, "the TCP port of the name");
        let fqdn = slice(
            "FQDN",
            json!([{"name": "http", "port": 80}]),
            json!([{"addresses": ["localhost"]}]),
        );
        assert_eq!(SliceEndpoints::of(&fqdn), SliceEndpoints::default());
    }
}
