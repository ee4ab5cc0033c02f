//! Conflicts: two Ingresses of one class claiming the same host and path (or both having a
//! `defaultBackend`). The oldest wins: creationTimestamp, then namespace/name. The loser
//! keeps whatever else it claims. `judge()` makes the claims.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::hash::Hash;

use k8s_openapi::api::networking::v1::Ingress;

use crate::host::HostPattern;
use crate::path::PathMatch;

/// `namespace/name` of an Ingress.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IngressKey {
    pub namespace: String,
    pub name: String,
}

impl IngressKey {
    pub fn of(ingress: &Ingress) -> Self {
        IngressKey {
            namespace: ingress.metadata.namespace.clone().unwrap_or_default(),
            name: ingress.metadata.name.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for IngressKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The order in which Ingresses claim routes: oldest first, then by namespace/name.
pub fn oldest_first(a: &Ingress, b: &Ingress) -> Ordering {
    a.metadata
        .creation_timestamp
        .cmp(&b.metadata.creation_timestamp)
        .then_with(|| a.metadata.namespace.cmp(&b.metadata.namespace))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// What two Ingresses both claimed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Contested {
    Route { host: HostPattern, path: PathMatch },
    DefaultBackend,
}

/// `loser` asked for `contested`, which the older `winner` holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Conflict<K> {
    pub loser: K,
    pub winner: K,
    pub contested: Contested,
}

impl<K: fmt::Display> fmt::Display for Conflict<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.contested {
            Contested::Route { host, path } => write!(
                f,
                "host {host} path {:?} ({:?}) conflicts with older Ingress {}; not served",
                path.as_str(),
                path.kind,
                self.winner
            ),
            Contested::DefaultBackend => write!(
                f,
                "defaultBackend ignored, older Ingress {} has one",
                self.winner
            ),
        }
    }
}

/// Who holds each host+path and the default backend. Claim in [`oldest_first`] order. The
/// claims borrow their hosts and paths from the rules that make them.
#[derive(Debug)]
pub struct Claims<'r, K> {
    routes: HashMap<(&'r HostPattern, &'r PathMatch), K>,
    default_backend: Option<K>,
}

impl<K> Default for Claims<'_, K> {
    fn default() -> Self {
        Claims {
            routes: HashMap::new(),
            default_backend: None,
        }
    }
}

impl<'r, K: Clone + Eq> Claims<'r, K> {
    /// Room for `routes` host+path claims without growing.
    pub fn with_capacity(routes: usize) -> Self {
        Claims {
            routes: HashMap::with_capacity(routes),
            default_backend: None,
        }
    }

    /// Claims a host+path for `owner`; `Err(holder)` when another Ingress holds it. The same
    /// Ingress naming a path twice is no conflict (its first rule stays).
    pub fn route(
        &mut self,
        owner: &K,
        host: &'r HostPattern,
        path: &'r PathMatch,
    ) -> Result<(), K> {
        match self.routes.entry((host, path)) {
            Entry::Occupied(held) if held.get() != owner => Err(held.get().clone()),
            Entry::Occupied(_) => Ok(()),
            Entry::Vacant(free) => {
                free.insert(owner.clone());
                Ok(())
            }
        }
    }

    /// Who holds a host+path, if anyone.
    pub fn holder(&self, host: &'r HostPattern, path: &'r PathMatch) -> Option<&K> {
        self.routes.get(&(host, path))
    }

    /// Claims the class's default backend for `owner`; `Err(holder)` when another has it.
    pub fn default_backend(&mut self, owner: &K) -> Result<(), K> {
        match &self.default_backend {
            Some(holder) if holder != owner => Err(holder.clone()),
            Some(_) => Ok(()),
            None => {
                self.default_backend = Some(owner.clone());
                Ok(())
            }
        }
    }
}
