//! `judge()`: every Ingress of one class in, per Ingress what is served and why the rest
//! is not. The proxy compiles exactly what it says is served; the operator turns the same
//! verdicts into Events, Ingress status and the instance's counts.
//!
//! ```text
//!  Ingresses ─▶ of the class? ─▶ served namespace? ──no──▶ NamespaceNotServed
//!                                       │
//!  hosts of every Ingress of the class in a served namespace (valid or not), oldest first
//!        ─▶ owners: a host belongs to the namespace of its oldest Ingress; a wildcard owns
//!           the hosts under it that no older Ingress of another namespace names
//!                                       │
//!  each Ingress, oldest first ─▶ check() ──problems──▶ Invalid
//!        ─▶ per rule: host-less? only at home ─▶ host owned or shared with us? ─▶ host+path
//!           claim (the older Ingress wins) ─▶ served rule
//!        ─▶ defaultBackend: only at home ─▶ claim ─▶ served
//!        ─▶ TLS hosts: certificates only from the host's owner namespace
//! ```
//!
//! "At home" is the instance's own namespace, or one the platform trusts with catch-alls.
//! A host's owner is decided from every Ingress of the class in a served namespace, even
//! invalid ones: an owner whose Ingress is briefly broken (a Service being replaced) does
//! not hand its host to whoever asks next.

use std::collections::{BTreeSet, HashMap, HashSet, hash_map};
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;

use crate::check::{Checked, Limits, MAX_PROBLEMS, Problem, TlsHost};
use crate::class::belongs_to_class;
use crate::conflict::{Claims, Conflict, Contested, IngressKey};
use crate::host::HostPattern;
use crate::memo::{Memo, Prepared};

/// On an Ingress of a host's owner namespace: the namespaces (comma-separated) that may
/// add paths to the hosts this Ingress names. Certificates and catch-alls are not shared.
pub const SHARE_HOST_ANNOTATION: &str = "portico.dev/share-host-with";

/// What the platform decides for an instance (never the tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantPolicy {
    /// A host belongs to the namespace of its oldest Ingress. Off: any served namespace
    /// may add paths to any host, as ingress-nginx merged them, for an instance whose
    /// namespaces trust each other.
    pub host_ownership: bool,
    /// Namespaces, besides the instance's own, whose `defaultBackend` and host-less rules
    /// are served.
    pub catch_all_namespaces: BTreeSet<String>,
}

impl Default for TenantPolicy {
    fn default() -> Self {
        TenantPolicy {
            host_ownership: true,
            catch_all_namespaces: BTreeSet::new(),
        }
    }
}

/// The instance whose Ingresses are judged.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub class: &'a str,
    /// Whether the IngressClass is the cluster default ([`crate::is_default_class`]).
    pub is_default_class: bool,
    pub instance_namespace: &'a str,
    pub served_namespaces: &'a BTreeSet<String>,
    pub policy: &'a TenantPolicy,
    pub limits: &'a Limits,
}

impl Scope<'_> {
    fn at_home(&self, namespace: &str) -> bool {
        namespace == self.instance_namespace || self.policy.catch_all_namespaces.contains(namespace)
    }
}

/// A catch-all an Ingress outside the instance's namespace asked for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CatchAll {
    DefaultBackend,
    HostlessRules,
}

/// Why (part of) an Ingress is not served. The text is what users read in Events and logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// The instance does not serve the Ingress's namespace (no consent).
    NamespaceNotServed(String),
    /// The Ingress cannot be served at all.
    Invalid(Problem),
    /// An older Ingress holds the same host+path (or the default backend).
    Conflict(Conflict<IngressKey>),
    /// The host belongs to another namespace, which does not share it with this one.
    HostNotOwned {
        host: HostPattern,
        owner: IngressKey,
    },
    /// A catch-all from a namespace that is not the instance's own (or trusted).
    CatchAll {
        what: CatchAll,
        instance_namespace: String,
    },
    /// A certificate for a host that belongs to another namespace: not served.
    CertificateNotOwned {
        host: HostPattern,
        owner: IngressKey,
    },
    /// A canary rule without a primary Ingress for the same host and path in its
    /// namespace (or with one that already has a canary there).
    CanaryWithoutPrimary {
        host: HostPattern,
        path: String,
        /// The Ingress already holding the path when it is not a primary of this
        /// namespace (another namespace's shared path, or another canary).
        taken_by: Option<IngressKey>,
    },
}

impl Rejection {
    /// The Event reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::NamespaceNotServed(_) => "NamespaceNotServed",
            Rejection::Invalid(_) => "IngressRejected",
            Rejection::Conflict(_) => "IngressConflict",
            Rejection::HostNotOwned { .. } => "HostNotOwned",
            Rejection::CatchAll { .. } => "CatchAllNotAllowed",
            Rejection::CertificateNotOwned { .. } => "CertificateNotOwned",
            Rejection::CanaryWithoutPrimary { .. } => "CanaryWithoutPrimary",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::NamespaceNotServed(ns) => {
                write!(f, "namespace {ns} is not served by this IngressClass")
            }
            Rejection::Invalid(problem) => write!(f, "{problem}"),
            Rejection::Conflict(conflict) => write!(f, "{conflict}"),
            Rejection::HostNotOwned { host, owner } => write!(
                f,
                "host {host} belongs to namespace {} (its oldest Ingress is {owner}); rules for it \
                 are not served unless an Ingress there names this namespace in {SHARE_HOST_ANNOTATION}",
                owner.namespace
            ),
            Rejection::CatchAll {
                what,
                instance_namespace,
            } => write!(
                f,
                "{} served only from the instance's namespace {instance_namespace} (or one the \
                 platform trusts); not served",
                match what {
                    CatchAll::DefaultBackend => "defaultBackend is",
                    CatchAll::HostlessRules => "rules without a host are",
                }
            ),
            Rejection::CanaryWithoutPrimary {
                host,
                path,
                taken_by,
            } => match taken_by {
                None => write!(
                    f,
                    "canary rule host {host} path {path:?} has no primary Ingress for the same \
                     host and path in its namespace; not served"
                ),
                Some(other) => write!(
                    f,
                    "canary rule host {host} path {path:?}: the path is held by {other}, which \
                     is not a primary Ingress of this namespace without a canary; not served"
                ),
            },
            Rejection::CertificateNotOwned { host, owner } => write!(
                f,
                "spec.tls for host {host} ignored: the host belongs to namespace {} (its oldest \
                 Ingress is {owner}), and only its certificates are served",
                owner.namespace
            ),
        }
    }
}

/// The verdict on one Ingress of the class.
#[derive(Debug, Clone)]
pub struct Verdict<'a> {
    pub ingress: &'a Ingress,
    pub key: Arc<IngressKey>,
    /// What is served of it: the checked Ingress holding only the rules and the
    /// `defaultBackend` it won (`tls` stays as declared: it decides HTTPS redirects).
    /// `None` when it is invalid or its namespace is not served. When it won all it
    /// declared, this is the [`Memo`]'s own: the same `Arc` until the Ingress changes.
    pub checked: Option<Arc<Checked>>,
    /// The TLS hosts whose certificates are served from this Ingress.
    pub certificates: Vec<TlsHost>,
    /// Served, at least in part: it gets the instance's address.
    pub served: bool,
    /// At most [`MAX_PROBLEMS`] reasons, each an Event.
    pub rejections: Vec<Rejection>,
    /// Distinct reasons left out of `rejections`.
    pub omitted: usize,
    seen: HashSet<Rejection>,
    /// What it reads alone; `None` when its namespace is not served.
    prepared: Option<Arc<Prepared>>,
}

impl Verdict<'_> {
    /// The Secrets of its namespace it names ([`crate::auth::secrets_read`]); none when its
    /// namespace is not served.
    pub fn secrets_read(&self) -> impl Iterator<Item = &String> {
        self.prepared.iter().flat_map(|p| p.secrets.iter())
    }

    fn reject(&mut self, rejection: Rejection) {
        if !self.seen.insert(rejection.clone()) {
            return;
        }
        if self.rejections.len() < MAX_PROBLEMS {
            self.rejections.push(rejection);
        } else {
            self.omitted += 1;
        }
    }
}

/// The verdicts on a class's Ingresses, oldest first, and who owns each host.
#[derive(Debug, Default)]
pub struct Judgement<'a> {
    pub verdicts: Vec<Verdict<'a>>,
    owners: Owners,
    host_ownership: bool,
    default_backend: Option<IngressKey>,
}

impl Judgement<'_> {
    pub fn served(&self) -> impl Iterator<Item = &Verdict<'_>> {
        self.verdicts.iter().filter(|v| v.served)
    }

    pub fn rejected(&self) -> impl Iterator<Item = &Verdict<'_>> {
        self.verdicts.iter().filter(|v| !v.served)
    }

    /// The Ingress whose namespace owns `host`.
    pub fn owner(&self, host: &HostPattern) -> Option<&IngressKey> {
        self.owners.of(host)
    }

    /// Whether a request for `host` that matches none of its paths may be answered by the
    /// class's default backend: only when both belong to the same namespace (a tenant's
    /// host is never answered by another namespace's catch-all; it gets 404).
    pub fn default_backend_serves(&self, host: &HostPattern) -> bool {
        let Some(default) = &self.default_backend else {
            return false;
        };
        !self.host_ownership
            || matches!(host, HostPattern::Any)
            || self
                .owner(host)
                .is_some_and(|o| o.namespace == default.namespace)
    }
}

/// Owner of each exact and wildcard host. Claim in [`oldest_first`](crate::conflict::oldest_first) order.
#[derive(Debug, Default)]
struct Owners {
    exact: HashMap<Arc<str>, Arc<IngressKey>>,
    wildcard: HashMap<Arc<str>, Arc<IngressKey>>,
}

impl Owners {
    fn claim(&mut self, host: &HostPattern, by: &Arc<IngressKey>) {
        match host {
            HostPattern::Exact(h) => {
                if let hash_map::Entry::Vacant(free) = self.exact.entry(h.clone()) {
                    // An older wildcard's namespace owns the hosts under it.
                    let owner = suffix(h).and_then(|s| self.wildcard.get(s)).unwrap_or(by);
                    free.insert(owner.clone());
                }
            }
            HostPattern::Wildcard(s) => {
                self.wildcard.entry(s.clone()).or_insert_with(|| by.clone());
            }
            HostPattern::Any => {}
        }
    }

    fn of(&self, host: &HostPattern) -> Option<&IngressKey> {
        match host {
            HostPattern::Exact(h) => self.exact.get(&**h).map(AsRef::as_ref),
            HostPattern::Wildcard(s) => self.wildcard.get(&**s).map(AsRef::as_ref),
            HostPattern::Any => None,
        }
    }

    /// The owner of the wildcard `*.<suffix>`.
    fn of_wildcard(&self, suffix: &str) -> Option<&IngressKey> {
        self.wildcard.get(suffix).map(AsRef::as_ref)
    }
}

/// What follows an exact host's first label: the suffix of the wildcard that covers it.
pub(crate) fn suffix(host: &str) -> Option<&str> {
    host.split_once('.').map(|(_, s)| s)
}

/// The namespaces an Ingress shares its hosts with ([`SHARE_HOST_ANNOTATION`]).
pub fn share_host_with(ingress: &Ingress) -> Result<BTreeSet<String>, Problem> {
    let Some(value) = ingress
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SHARE_HOST_ANNOTATION))
    else {
        return Ok(BTreeSet::new());
    };
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|ns| {
            if crate::check::is_dns_label(ns) {
                Ok(ns.to_owned())
            } else {
                Err(Problem::ShareHostAnnotation(ns.to_owned()))
            }
        })
        .collect()
}

/// Judges the Ingresses of `scope`'s class among `ingresses` (any order, any class).
/// `services(namespace, name)` finds a Service.
pub fn judge<'a, 's>(
    scope: &Scope<'_>,
    ingresses: impl IntoIterator<Item = &'a Ingress>,
    services: impl Fn(&str, &str) -> Option<&'s Service>,
) -> Judgement<'a> {
    judge_with(&mut Memo::default(), scope, ingresses, services)
}

/// [`judge`], reusing what `memo` remembers of the Ingresses that have not changed since
/// its last judgement (hold one `Memo` per instance).
pub fn judge_with<'a, 's>(
    memo: &mut Memo,
    scope: &Scope<'_>,
    ingresses: impl IntoIterator<Item = &'a Ingress>,
    services: impl Fn(&str, &str) -> Option<&'s Service>,
) -> Judgement<'a> {
    let of_class: Vec<&'a Ingress> = ingresses
        .into_iter()
        .filter(|i| belongs_to_class(i, scope.class, scope.is_default_class))
        .collect();
    // Oldest first ([`oldest_first`](crate::conflict::oldest_first)), sorted on keys
    // copied out once, the time by value, so that most comparisons read no Ingress (at
    // 10,000 in hash order, reading them was most of the sort's time). Names decide only
    // among Ingresses of the same second: input already in namespace/name order (a store
    // keyed by it) is only sorted stably by time, which gives the same order.
    type Key<'i> = (
        Option<k8s_openapi::jiff::Timestamp>,
        Option<&'i str>,
        Option<&'i str>,
    );
    let mut keyed: Vec<(Key<'a>, &'a Ingress)> = of_class
        .into_iter()
        .map(|i| {
            let m = &i.metadata;
            let time = m.creation_timestamp.as_ref().map(|t| t.0);
            ((time, m.namespace.as_deref(), m.name.as_deref()), i)
        })
        .collect();
    if keyed.is_sorted_by(|a, b| (a.0.1, a.0.2) <= (b.0.1, b.0.2)) {
        keyed.sort_by_key(|(key, _)| key.0);
    } else {
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
    }
    let of_class: Vec<&'a Ingress> = keyed.into_iter().map(|(_, i)| i).collect();
    // Each Ingress of a served namespace as it reads alone; `None`: not served.
    memo.begin(scope.limits);
    let of_class: Vec<(&'a Ingress, Option<Arc<Prepared>>)> = of_class
        .into_iter()
        .map(|i| {
            let ns = i.metadata.namespace.as_deref().unwrap_or_default();
            let prepared = scope
                .served_namespaces
                .contains(ns)
                .then(|| memo.prepare(i, |name| services(ns, name), scope.limits));
            (i, prepared)
        })
        .collect();
    memo.end();
    let served = || of_class.iter().filter_map(|(_, p)| p.as_ref());

    // Who owns each host, and whom the owners share it with.
    let mut owners = Owners {
        exact: HashMap::with_capacity(of_class.len()),
        wildcard: HashMap::new(),
    };
    for p in served() {
        for host in &p.hosts {
            owners.claim(host, &p.key);
        }
    }
    let mut shares: HashMap<&HostPattern, BTreeSet<String>> = HashMap::new();
    for p in served() {
        let Ok(guests) = &p.guests else {
            continue;
        };
        if guests.is_empty() {
            continue;
        }
        let ns = &p.key.namespace;
        for host in &p.hosts {
            if owners.of(host).is_some_and(|o| o.namespace == *ns) {
                shares
                    .entry(host)
                    .or_default()
                    .extend(guests.iter().cloned());
            }
        }
    }
    let may_add_paths = |host: &HostPattern, ns: &str| -> Result<(), IngressKey> {
        let Some(owner) = owners.of(host) else {
            return Ok(());
        };
        if owner.namespace == ns {
            return Ok(());
        }
        let shared = |h: &HostPattern| shares.get(h).is_some_and(|g| g.contains(ns));
        // An exact host owned through a wildcard is shared when the wildcard is.
        let via_wildcard = || match host {
            HostPattern::Exact(h) => suffix(h).is_some_and(|s| {
                owners
                    .of_wildcard(s)
                    .is_some_and(|w| w.namespace == owner.namespace)
                    && shared(&HostPattern::Wildcard(s.into()))
            }),
            _ => false,
        };
        if !shares.is_empty() && (shared(host) || via_wildcard()) {
            Ok(())
        } else {
            Err(owner.clone())
        }
    };

    // Canaries pair with the primary that holds their host+path, whatever their age:
    // primaries claim first. The claims borrow hosts, paths and keys from `of_class`.
    let is_canary = |p: &Option<Arc<Prepared>>| p.as_ref().is_some_and(|p| p.canary);
    let order = (0..of_class.len())
        .filter(|&i| !is_canary(&of_class[i].1))
        .chain((0..of_class.len()).filter(|&i| is_canary(&of_class[i].1)));
    let mut claims: Claims<'_, &IngressKey> = Claims::with_capacity(of_class.len());
    let mut out = Judgement {
        host_ownership: scope.policy.host_ownership,
        verdicts: Vec::with_capacity(of_class.len()),
        ..Judgement::default()
    };
    // A regex path's cache is interior mutability, but its hash and equality are the
    // pattern's text.
    #[allow(clippy::mutable_key_type)]
    let mut canary_of: HashMap<(&HostPattern, &crate::path::PathMatch), &IngressKey> =
        HashMap::new();
    let mut kept: Vec<bool> = Vec::new();
    for (ingress, prepared) in order.map(|i| &of_class[i]) {
        let ingress: &'a Ingress = ingress;
        let key = match prepared {
            Some(p) => p.key.clone(),
            None => Arc::new(IngressKey::of(ingress)),
        };
        let mut verdict = Verdict {
            ingress,
            key,
            checked: None,
            certificates: Vec::new(),
            served: false,
            rejections: Vec::new(),
            omitted: 0,
            seen: HashSet::new(),
            prepared: prepared.clone(),
        };
        let Some(prepared) = prepared else {
            let ns = verdict.key.namespace.clone();
            verdict.reject(Rejection::NamespaceNotServed(ns));
            out.verdicts.push(verdict);
            continue;
        };
        let key: &IngressKey = &prepared.key;
        let ns = key.namespace.as_str();
        let declared = match &prepared.checked {
            Ok(c) => c,
            Err(problems) => {
                for p in problems {
                    verdict.reject(Rejection::Invalid(p.clone()));
                }
                out.verdicts.push(verdict);
                continue;
            }
        };
        let (mut won, mut lost) = (false, false);
        // Which of the declared rules it won, in order (one buffer for all Ingresses).
        kept.clear();
        for rule in &declared.rules {
            let refused = match &rule.host {
                HostPattern::Any if !scope.at_home(ns) => Some(Rejection::CatchAll {
                    what: CatchAll::HostlessRules,
                    instance_namespace: scope.instance_namespace.to_owned(),
                }),
                host if scope.policy.host_ownership => {
                    may_add_paths(host, ns)
                        .err()
                        .map(|owner| Rejection::HostNotOwned {
                            host: host.clone(),
                            owner,
                        })
                }
                _ => None,
            };
            let allowed = match refused {
                Some(rejection) => Err(rejection),
                // A canary takes part of its primary's traffic instead of claiming.
                None if declared.canary.is_some() => {
                    let at = (&rule.host, &rule.path);
                    let primary = claims.holder(&rule.host, &rule.path).filter(|p| {
                        p.namespace == ns && canary_of.get(&at).is_none_or(|c| *c == key)
                    });
                    match primary {
                        Some(_) => {
                            canary_of.insert(at, key);
                            Ok(())
                        }
                        None => Err(Rejection::CanaryWithoutPrimary {
                            host: rule.host.clone(),
                            path: rule.path.as_str().to_owned(),
                            taken_by: canary_of
                                .get(&at)
                                .or_else(|| claims.holder(&rule.host, &rule.path))
                                .map(|k| (*k).clone()),
                        }),
                    }
                }
                None => claims
                    .route(&key, &rule.host, &rule.path)
                    .map_err(|winner| {
                        Rejection::Conflict(Conflict {
                            loser: key.clone(),
                            winner: winner.clone(),
                            contested: Contested::Route {
                                host: rule.host.clone(),
                                path: rule.path.clone(),
                            },
                        })
                    }),
            };
            match allowed {
                Ok(()) => {
                    won = true;
                    kept.push(true);
                }
                Err(rejection) => {
                    lost = true;
                    kept.push(false);
                    verdict.reject(rejection);
                }
            }
        }
        let mut keeps_default_backend = false;
        if declared.default_backend.is_some() {
            let allowed = if scope.at_home(ns) {
                claims.default_backend(&key).map_err(|winner| {
                    Rejection::Conflict(Conflict {
                        loser: key.clone(),
                        winner: winner.clone(),
                        contested: Contested::DefaultBackend,
                    })
                })
            } else {
                Err(Rejection::CatchAll {
                    what: CatchAll::DefaultBackend,
                    instance_namespace: scope.instance_namespace.to_owned(),
                })
            };
            match allowed {
                Ok(()) => {
                    won = true;
                    keeps_default_backend = true;
                    out.default_backend = Some(key.clone());
                }
                Err(rejection) => {
                    lost = true;
                    verdict.reject(rejection);
                }
            }
        }
        for tls in declared.tls.iter().filter(|t| t.secret.is_some()) {
            if matches!(tls.host, HostPattern::Any) {
                continue;
            }
            match owners.of(&tls.host) {
                Some(owner) if scope.policy.host_ownership && owner.namespace != ns => {
                    verdict.reject(Rejection::CertificateNotOwned {
                        host: tls.host.clone(),
                        owner: owner.clone(),
                    });
                }
                _ => verdict.certificates.push(tls.clone()),
            }
        }
        verdict.served = won || !lost;
        // What it lost leaves a copy without it; what won everything shares the Memo's.
        verdict.checked = Some(
            if kept.iter().all(|k| *k)
                && keeps_default_backend == declared.default_backend.is_some()
            {
                declared.clone()
            } else {
                let mut served = Checked::clone(declared);
                let mut won_rule = kept.iter().copied();
                served.rules.retain(|_| won_rule.next().unwrap_or(false));
                if !keeps_default_backend {
                    served.default_backend = None;
                }
                Arc::new(served)
            },
        );
        out.verdicts.push(verdict);
    }
    out.owners = owners;
    out
}

#[cfg(test)]
mod tests;
