//! Configuration: Kubernetes objects in, one immutable `Snapshot` out.
//!
//! ```text
//!  watchers (kube-runtime, backoff; one per served namespace and kind)
//!    IngressClass (own, by name) ─┐
//!    Ingress / Service ───────────┼─▶ Store (plain maps; apply/delete, no IO)
//!    Secret (by name, referenced) ┘        │ paced (pace.rs)
//!                                          ▼
//!                        build(&Store, &Params, &mut caches) ─▶ Snapshot ─▶ ArcSwap
//!    EndpointSlice ─▶ Store ─▶ Backends::refresh(service) ─▶ Backend.endpoints (ArcSwap)
//! ```
//!
//! Route changes rebuild the whole snapshot (pure, from the store); endpoint changes only
//! replace the endpoint set of the affected Service ports, which snapshots share.

pub mod build;
pub mod pace;
pub mod store;
pub mod watch;

use std::sync::Arc;

use crate::routing::RouteTable;
use crate::tls::CertTable;

/// The key of the store's objects lives in the leaf module `key`; re-exported for the
/// modules that name it through `config`.
pub use crate::key::ObjectKey;

/// Everything one request needs, immutable once built.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Increases with every successful build (metric `portico_config_generation`).
    pub generation: u64,
    pub routes: RouteTable,
    pub certs: CertTable,
    /// Ingresses served and skipped in this build.
    pub ingresses_served: usize,
    pub ingresses_skipped: usize,
}

pub type SharedSnapshot = Arc<arc_swap::ArcSwap<Snapshot>>;

/// Handshakes read the certificates of the snapshot in force.
impl crate::tls::CurrentCerts for arc_swap::ArcSwap<Snapshot> {
    fn resolve(&self, server_name: Option<&str>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.load().certs.resolve(server_name)
    }

    fn asks_client_cert(&self, server_name: Option<&str>) -> bool {
        self.load().certs.asks_client_cert(server_name)
    }
}
