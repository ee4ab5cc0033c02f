//! Portico operator: turns each `IngressController` into an isolated proxy fleet.
//!
//! ```text
//!  IngressController ─┐
//!  Deployment, Service, SA, PDB, HPA (labelled) ─┤
//!  Roles, RoleBindings, ClusterRoles (labelled) ─┤   stores (one watch per kind,
//!  Namespaces (consent, labels) ─┤                 ─▶ read by reconcile) ─▶ controller::reconcile
//!  Ingresses, IngressClasses, Services ─┤            ├─▶ resources::* (pure)
//!  hand-written + proxy EndpointSlices ─┘            ├─▶ apply (server-side, RBAC first)
//!                                                     ├─▶ status (instance + Ingress loadBalancer)
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
pub mod stores;
pub mod tenancy;
pub mod verdict;

pub use error::{Error, Result};
pub mod runtime;
