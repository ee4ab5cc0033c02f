//! Portico operator: turns each `IngressController` into an isolated proxy fleet.
//!
//! ```text
//!  IngressController ─┐
//!  Deployment, Service, SA, PDB, HPA (owned) ─┤
//!  Roles, RoleBindings, ClusterRoles (labelled) ─┼─▶ controller::reconcile ─▶ resources::* (pure)
//!  Namespaces (consent, labels) ─┤                    │
//!  Ingresses, IngressClasses, Services ─┤            ├─▶ apply (server-side, RBAC first)
//!  hand-written + proxy EndpointSlices ─┘            ├─▶ status (instance + Ingress loadBalancer)
//!                                                     ├─▶ verdict (portico-ingress rules ─▶ Events)
//!                                                     └─▶ endpoints (refused endpoints ─▶ Events)
//! ```

pub mod admin;
pub mod api;
pub mod apply;
pub mod controller;
pub mod crd;
pub mod endpoints;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod migrate;
pub mod policy;
pub mod resources;
pub mod status;
pub mod tenancy;
pub mod verdict;

pub use error::{Error, Result};
pub mod runtime;
