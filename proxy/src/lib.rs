//! Portico proxy: serves the Ingresses of one IngressClass.
//!
//! ```text
//! config (watch → store → build → Snapshot in ArcSwap)
//!    │                                   ▲ read per request / per TLS handshake
//!    ▼                                   │
//! http (accept → proxy phases → upstream client) ── routing (host, path) ── lb (endpoints)
//! tls (SNI resolver)   admin (/metrics /healthz /readyz)   health   metrics   key (ObjectKey, a leaf)
//! ```

pub mod access;
pub mod admin;
pub mod cli;
pub mod clock;
pub mod config;
pub mod health;
pub mod http;
pub mod key;
pub mod lb;
pub mod metrics;
pub mod routing;
pub mod serve;
pub mod tls;
pub mod upstream;
