//! Which Ingresses of a class can change each other's verdicts. [`judge()`](crate::judge)
//! relates Ingresses only through the hosts they name (who owns one, whom it is shared
//! with, who holds a host+path, which canary pairs with which primary, whose certificate
//! is served) and through the catch-alls (host-less rules and `defaultBackend`). An
//! Ingress none of whose hosts another judged Ingress names, or relates to through a
//! wildcard, and that asks for no catch-all, *stands alone*: among the others it gets the
//! verdict it gets judged by itself, and theirs are what they are without it. The
//! operator judges such an Ingress alone instead of judging 10,000 again.
//!
//! ```text
//!  HostIndex: every host of the judged Ingresses (served namespaces), counted
//!     exact  a.example.com ─┐ related: the same exact host, or
//!     by suffix example.com ├─ an exact host and the wildcard over it (*.example.com),
//!     wildcard  example.com ┘ or the same wildcard
//!  stands_alone(x) = no catch-all in x, and none of x's hosts related to a counted one
//! ```
//!
//! The index is conservative: it may call an Ingress entangled that is not (then it is
//! judged with the others, as always), never the reverse. `judge/tests.rs` holds the
//! claim against whole judgements of random Ingresses.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;

use crate::host::HostPattern;
use crate::judge::suffix;
use crate::memo::declared_hosts;

/// The hosts of the Ingresses judged in served namespaces, counted (see the module docs).
#[derive(Debug, Default, Clone)]
pub struct HostIndex {
    exact: HashMap<Arc<str>, u32>,
    /// Exact hosts by what follows their first label: the wildcard that would own them.
    under: HashMap<Arc<str>, u32>,
    /// Wildcards by suffix.
    wildcard: HashMap<Arc<str>, u32>,
}

impl HostIndex {
    /// Counts the hosts `ingress` names.
    pub fn add(&mut self, ingress: &Ingress) {
        for host in declared_hosts(ingress) {
            self.count(&host, true);
        }
    }

    /// Uncounts the hosts `ingress` names (an Ingress [`add`](Self::add)ed before).
    pub fn remove(&mut self, ingress: &Ingress) {
        for host in declared_hosts(ingress) {
            self.count(&host, false);
        }
    }

    /// Whether `ingress` (not counted) stands alone among the counted Ingresses.
    pub fn stands_alone(&self, ingress: &Ingress) -> bool {
        !asks_for_catch_all(ingress)
            && declared_hosts(ingress).all(|host| match &host {
                HostPattern::Exact(h) => {
                    !self.exact.contains_key(h)
                        && suffix(h).is_none_or(|s| !self.wildcard.contains_key(s))
                }
                HostPattern::Wildcard(s) => {
                    !self.wildcard.contains_key(s) && !self.under.contains_key(s)
                }
                HostPattern::Any => false,
            })
    }

    fn count(&mut self, host: &HostPattern, up: bool) {
        let step = |map: &mut HashMap<Arc<str>, u32>, key: &Arc<str>| {
            if up {
                *map.entry(key.clone()).or_default() += 1;
            } else if let Some(count) = map.get_mut(key) {
                *count -= 1;
                if *count == 0 {
                    map.remove(key);
                }
            }
        };
        match host {
            HostPattern::Exact(h) => {
                step(&mut self.exact, h);
                if let Some(s) = suffix(h) {
                    step(&mut self.under, &s.into());
                }
            }
            HostPattern::Wildcard(s) => step(&mut self.wildcard, s),
            HostPattern::Any => {}
        }
    }
}

/// A `defaultBackend`, or a rule whose host is empty (any host) or does not parse.
fn asks_for_catch_all(ingress: &Ingress) -> bool {
    let Some(spec) = &ingress.spec else {
        return false;
    };
    spec.default_backend.is_some()
        || spec.rules.iter().flatten().any(|r| {
            !matches!(
                HostPattern::parse(r.host.as_deref().unwrap_or("")),
                Ok(HostPattern::Exact(_) | HostPattern::Wildcard(_))
            )
        })
}
