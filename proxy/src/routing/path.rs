//! Path matches: `Exact` (whole path, case-sensitive) and element-wise `Prefix`;
//! `ImplementationSpecific` is documented as `Prefix`. They live in `portico-ingress`, so
//! that the operator rejects exactly the paths the proxy cannot serve.

pub use portico_ingress::{MAX_PATH_LEN, PathKind, PathMatch};
