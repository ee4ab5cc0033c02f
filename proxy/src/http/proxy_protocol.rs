//! The PROXY protocol (HAProxy's, versions 1 and 2) on the listeners: a load balancer in
//! front tells the proxy who the client is before the first byte of TLS or HTTP.
//!
//! When the instance turns it on (`spec.http.proxyProtocol`), every connection must open
//! with a valid header, or it is closed: a connection that could skip it could claim any
//! address by other means. The header's source address becomes the connection's peer, so
//! source ranges, rate limits, trusted `X-Forwarded-For` and logs all key on it. A `LOCAL`
//! (v2) or `UNKNOWN` (v1) header, a load balancer's own health check, keeps the real peer.
//!
//! The header is peeked, then exactly its bytes are read, so nothing after it is consumed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 header is at most 107 bytes; v2 with TLVs is bounded here.
const MAX_HEADER: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("not a PROXY protocol header")]
    Invalid,
    #[error("PROXY protocol header longer than {MAX_HEADER} bytes")]
    TooLong,
    #[error("connection closed before the PROXY protocol header ended")]
    Closed,
    #[error("reading the PROXY protocol header: {0}")]
    Io(String),
}

#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// The header's length and the client it names (`None`: keep the peer).
    Complete(usize, Option<SocketAddr>),
    Incomplete,
}

/// Reads the PROXY header at the start of `stream`: the client it names, or `None` for
/// a health check's header. The caller bounds the time.
pub async fn accept(stream: &mut TcpStream) -> Result<Option<SocketAddr>, Error> {
    let mut buf = vec![0u8; MAX_HEADER];
    loop {
        let n = stream
            .peek(&mut buf)
            .await
            .map_err(|e| Error::Io(e.to_string()))?;
        if n == 0 {
            return Err(Error::Closed);
        }
        match parse(&buf[..n])? {
            Parsed::Complete(len, source) => {
                stream
                    .read_exact(&mut buf[..len])
                    .await
                    .map_err(|e| Error::Io(e.to_string()))?;
                return Ok(source);
            }
            Parsed::Incomplete if n == MAX_HEADER => return Err(Error::TooLong),
            // The rest of the header is on its way (peek returns what is there at once).
            Parsed::Incomplete => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

fn parse(buf: &[u8]) -> Result<Parsed, Error> {
    if buf.len() < V2_SIGNATURE.len() {
        let sig_prefix = V2_SIGNATURE.starts_with(buf);
        let v1_prefix = b"PROXY ".starts_with(&buf[..buf.len().min(6)]);
        return if sig_prefix || v1_prefix {
            Ok(Parsed::Incomplete)
        } else {
            Err(Error::Invalid)
        };
    }
    if buf.starts_with(V2_SIGNATURE) {
        parse_v2(buf)
    } else if buf.starts_with(b"PROXY ") {
        parse_v1(buf)
    } else {
        Err(Error::Invalid)
    }
}

/// `PROXY TCP4 <src> <dst> <sport> <dport>\r\n` (or `TCP6`, or `UNKNOWN ...`).
fn parse_v1(buf: &[u8]) -> Result<Parsed, Error> {
    let Some(end) = buf.windows(2).take(107).position(|w| w == b"\r\n") else {
        return if buf.len() >= 107 {
            Err(Error::Invalid)
        } else {
            Ok(Parsed::Incomplete)
        };
    };
    let line = std::str::from_utf8(&buf[..end]).map_err(|_| Error::Invalid)?;
    let parts: Vec<&str> = line.split(' ').collect();
    let source = match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => None,
        ["PROXY", proto @ ("TCP4" | "TCP6"), src, dst, sport, dport] => {
            let src: IpAddr = src.parse().map_err(|_| Error::Invalid)?;
            let _: IpAddr = dst.parse().map_err(|_| Error::Invalid)?;
            if src.is_ipv4() != (*proto == "TCP4") {
                return Err(Error::Invalid);
            }
            let port = |p: &str| {
                (p.len() <= 5 && !p.starts_with('0') || p == "0")
                    .then(|| p.parse::<u16>().ok())
                    .flatten()
                    .ok_or(Error::Invalid)
            };
            let sport = port(sport)?;
            port(dport)?;
            Some(SocketAddr::new(src, sport))
        }
        _ => return Err(Error::Invalid),
    };
    Ok(Parsed::Complete(end + 2, source))
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, Error> {
    if buf.len() < 16 {
        return Ok(Parsed::Incomplete);
    }
    let (ver_cmd, family) = (buf[12], buf[13]);
    if ver_cmd >> 4 != 2 {
        return Err(Error::Invalid);
    }
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let total = 16 + len;
    if total > MAX_HEADER {
        return Err(Error::TooLong);
    }
    if buf.len() < total {
        return Ok(Parsed::Incomplete);
    }
    let body = &buf[16..total];
    let source = match ver_cmd & 0x0f {
        // LOCAL: the balancer itself (a health check).
        0 => None,
        1 => match family {
            // TCP over IPv4: src, dst, sport, dport.
            0x11 => {
                let a = body.get(..12).ok_or(Error::Invalid)?;
                let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
                Some(SocketAddr::new(ip.into(), u16::from_be_bytes([a[8], a[9]])))
            }
            0x21 => {
                let a = body.get(..36).ok_or(Error::Invalid)?;
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&a[..16]);
                let ip = Ipv6Addr::from(octets);
                Some(SocketAddr::new(
                    ip.into(),
                    u16::from_be_bytes([a[32], a[33]]),
                ))
            }
            // UDP or UNIX sockets, or unspecified: nothing to key on but the peer.
            _ => None,
        },
        _ => return Err(Error::Invalid),
    };
    Ok(Parsed::Complete(total, source))
}

/// A v1 header for `source` (tests, the bench's load balancer stand-in).
pub fn v1_header(source: SocketAddr, destination: SocketAddr) -> String {
    let proto = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {proto} {} {} {} {}\r\n",
        source.ip(),
        destination.ip(),
        source.port(),
        destination.port()
    )
}

/// A v2 `PROXY` header for IPv4 `source` (tests).
pub fn v2_header(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    match (source, destination) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            out.extend([0x21, 0x11, 0, 12]);
            out.extend(s.ip().octets());
            out.extend(d.ip().octets());
            out.extend(s.port().to_be_bytes());
            out.extend(d.port().to_be_bytes());
        }
        (s, d) => {
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.extend([0x21, 0x21, 0, 36]);
            out.extend(v6(s).octets());
            out.extend(v6(d).octets());
            out.extend(s.port().to_be_bytes());
            out.extend(d.port().to_be_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn v1_and_v2_headers_name_the_client() {
        let (src, dst) = (addr("203.0.113.7:5555"), addr("10.0.0.1:80"));
        let v1 = v1_header(src, dst);
        let mut buf = v1.clone().into_bytes();
        buf.extend(b"GET / HTTP/1.1\r\n");
        assert_eq!(parse(&buf), Ok(Parsed::Complete(v1.len(), Some(src))));
        let v2 = v2_header(src, dst);
        assert_eq!(parse(&v2), Ok(Parsed::Complete(v2.len(), Some(src))));
        let six = addr("[2001:db8::1]:4000");
        let v2 = v2_header(six, addr("[2001:db8::2]:443"));
        assert_eq!(parse(&v2), Ok(Parsed::Complete(v2.len(), Some(six))));
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), Ok(Parsed::Complete(15, None)));
        let mut local = V2_SIGNATURE.to_vec();
        local.extend([0x20, 0x00, 0, 0]);
        assert_eq!(parse(&local), Ok(Parsed::Complete(16, None)));
    }

    #[test]
    fn partial_headers_wait_and_bad_ones_are_refused() {
        let v1 = v1_header(addr("203.0.113.7:5555"), addr("10.0.0.1:80"));
        assert_eq!(parse(&v1.as_bytes()[..10]), Ok(Parsed::Incomplete));
        assert_eq!(
            parse(&v2_header(addr("1.2.3.4:1"), addr("5.6.7.8:2"))[..14]),
            Ok(Parsed::Incomplete)
        );
        for bad in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 80\r\n",
            b"PROXY TCP4 ::1 5.6.7.8 1 80\r\n",
            b"PROXY TCP4 1.2.3.4\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let mut v3 = V2_SIGNATURE.to_vec();
        v3.extend([0x31, 0x11, 0, 12]);
        assert_eq!(parse(&v3), Err(Error::Invalid));
    }
}
