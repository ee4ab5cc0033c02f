//! Portico's Ingress rules in one place: which Ingresses belong to a class, what makes one
//! unservable, who owns a host, and who wins when two claim the same host and path. The
//! proxy compiles exactly what `judge()` serves; the operator turns the same verdicts into
//! Events, Ingress status and counts, since the proxy may not write to the API.
//!
//! ```text
//!  Ingresses + Services + Scope (class, namespaces, TenantPolicy) ─▶ judge()
//!     ─▶ class ─▶ served namespace ─▶ check() (typed rules, resolved ports) ─▶ host owner
//!     ─▶ Claims (host+path, defaultBackend; the older Ingress wins)
//!     ─▶ Verdict per Ingress: what is served, and each Rejection with its reason
//!  EndpointSlice address + EndpointPolicy ─▶ refused() ─▶ Refusal (never dialled)
//! ```
//!
//! No IO and no Kubernetes client: objects in, verdicts out.

pub mod affinity;
mod alone;
pub mod auth;
mod check;
mod class;
mod conflict;
pub mod cors;
mod endpoint;
mod host;
mod judge;
mod load_balance;
mod memo;
pub mod nginx;
mod path;
mod proxy_args;
mod size;
pub mod source_range;
pub mod traffic;

pub use alone::HostIndex;
pub use check::{
    BACKEND_TLS_CA_ANNOTATION, BACKEND_TLS_CA_CONFIGMAP_ANNOTATION,
    BACKEND_TLS_SERVER_NAME_ANNOTATION, Backend, BackendTls, CaSource, Checked,
    LOAD_BALANCE_ANNOTATION, Limits, MAX_PATHS_PER_INGRESS, MAX_PROBLEMS, Problem, Rule,
    SSL_REDIRECT_ANNOTATION, TlsHost, check, is_tls_app_protocol, validate,
};
pub use class::{
    DEFAULT_CLASS_ANNOTATION, LEGACY_CLASS_ANNOTATION, belongs_to_class, class_of, is_default_class,
};
pub use conflict::{Claims, Conflict, Contested, IngressKey, oldest_first};
pub use endpoint::{
    EndpointPolicy, METADATA_ADDRESSES, Refusal, SliceEndpoints, Usable, refused, slice_endpoints,
};
pub use host::HostPattern;
pub use judge::{
    CatchAll, Judgement, Rejection, SHARE_HOST_ANNOTATION, Scope, TenantPolicy, Verdict, judge,
    judge_with, share_host_with,
};
pub use load_balance::LoadBalance;
pub use memo::Memo;
pub use path::{MAX_PATH_LEN, PathKind, PathMatch};
pub use proxy_args::{
    Duration, EncodedSlashes, LogFormat, NamespacedName, ProxyArgs, Size, TlsVersion,
    UnderscoreHeaders,
};
pub use size::parse_size;
