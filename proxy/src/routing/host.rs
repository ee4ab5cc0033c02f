//! Host patterns (exact, one-label wildcard `*.foo.com`, any host) come from
//! `portico-ingress`, which both binaries judge Ingresses by. Request hosts are validated and
//! normalized once, in `http::target::validate_host`.

pub use portico_ingress::HostPattern;
