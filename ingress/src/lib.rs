//! Portico's Ingress rules in one place: what makes an Ingress unservable, and who wins when
//! two Ingresses of one class claim the same host and path. The proxy builds its routing
//! table from them (and skips what they reject); the operator applies the same rules to
//! publish Events and count rejected Ingresses, since the proxy may not write to the API.
//!
//! ```text
//!  Ingress + its namespace's Services ─▶ check() ─▶ Checked (typed rules, resolved ports)
//!                                               └─▶ Vec<Problem> (the Ingress is not served)
//!  Checked Ingresses of one class ─▶ oldest first ─▶ Claims (host+path, defaultBackend)
//!                                                      └─▶ Conflict (the newer one loses)
//!  EndpointSlice address + EndpointPolicy ─▶ refused() ─▶ Refusal (never dialled)
//! ```
//!
//! No IO and no Kubernetes client: objects in, verdicts out.

mod check;
mod conflict;
mod endpoint;
mod host;
mod load_balance;
mod path;
mod size;

pub use check::{
    BACKEND_TLS_CA_ANNOTATION, BACKEND_TLS_CA_CONFIGMAP_ANNOTATION,
    BACKEND_TLS_SERVER_NAME_ANNOTATION, Backend, BackendTls, CaSource, Checked,
    LOAD_BALANCE_ANNOTATION, Limits, MAX_PATHS_PER_INGRESS, MAX_PROBLEMS, Problem, Rule,
    SSL_REDIRECT_ANNOTATION, TlsHost, check, is_tls_app_protocol, validate,
};
pub use conflict::{Claims, Conflict, Contested, IngressKey, Resolution, conflicts, oldest_first};
pub use endpoint::{EndpointPolicy, METADATA_ADDRESSES, Refusal, Usable, refused, slice_endpoints};
pub use host::HostPattern;
pub use load_balance::LoadBalance;
pub use path::{MAX_PATH_LEN, PathKind, PathMatch};
pub use size::parse_size;
