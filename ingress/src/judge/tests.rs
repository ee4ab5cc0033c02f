//! The judgement, table by table: each case is a set of Ingresses (as a tenant would write
//! them) and what must come out for each.

use super::*;
use serde_json::{Value, json};

const T0: &str = "2026-01-01T00:00:00Z";
const T1: &str = "2026-01-02T00:00:00Z";
const T2: &str = "2026-01-03T00:00:00Z";

fn ingress(key: &str, created: &str, annotations: Value, spec: Value) -> Ingress {
    let (ns, name) = key.split_once('/').expect("ns/name");
    serde_json::from_value(json!({
        "metadata": {"namespace": ns, "name": name, "creationTimestamp": created,
                     "annotations": annotations},
        "spec": spec,
    }))
    .expect("ingress")
}

fn paths(host: &str, list: &[(&str, &str)]) -> Value {
    let paths: Vec<Value> = list
        .iter()
        .map(|(kind, path)| {
            json!({"path": path, "pathType": kind,
                   "backend": {"service": {"name": "web", "port": {"number": 80}}}})
        })
        .collect();
    if host.is_empty() {
        json!({"http": {"paths": paths}})
    } else {
        json!({"host": host, "http": {"paths": paths}})
    }
}

/// An Ingress of class `web` with one host and Prefix paths.
fn site(key: &str, created: &str, host: &str, prefixes: &[&str]) -> Ingress {
    let list: Vec<_> = prefixes.iter().map(|p| ("Prefix", *p)).collect();
    ingress(
        key,
        created,
        json!({}),
        json!({"ingressClassName": "web", "rules": [paths(host, &list)]}),
    )
}

fn shared(mut ing: Ingress, with: &str) -> Ingress {
    ing.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(SHARE_HOST_ANNOTATION.into(), with.into());
    ing
}

fn with_tls(mut ing: Ingress, host: &str, secret: &str) -> Ingress {
    ing.spec.as_mut().expect("spec").tls = Some(vec![
        serde_json::from_value(json!({"hosts": [host], "secretName": secret})).expect("tls"),
    ]);
    ing
}

fn default_backend(key: &str, created: &str) -> Ingress {
    ingress(
        key,
        created,
        json!({}),
        json!({"ingressClassName": "web",
               "defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}}),
    )
}

fn web_service() -> Service {
    serde_json::from_value(json!({"metadata": {"name": "web"},
                                  "spec": {"ports": [{"port": 80}]}}))
    .expect("service")
}

struct Case {
    name: &'static str,
    ingresses: Vec<Ingress>,
    policy: TenantPolicy,
    /// Per Ingress of the class: `ns/name`, served, the rejection reasons.
    want: Vec<(&'static str, bool, Vec<&'static str>)>,
    /// The served rules, `ns/name host path`, in claim order.
    routes: Vec<&'static str>,
}

impl Case {
    fn new(name: &'static str, ingresses: Vec<Ingress>) -> Self {
        Case {
            name,
            ingresses,
            policy: TenantPolicy::default(),
            want: vec![],
            routes: vec![],
        }
    }
}

fn run<'a>(ingresses: &'a [Ingress], policy: &TenantPolicy) -> Judgement<'a> {
    let served: BTreeSet<String> = ["home", "a", "b", "c"].map(String::from).into();
    let svc = web_service();
    let scope = Scope {
        class: "web",
        is_default_class: false,
        instance_namespace: "home",
        served_namespaces: &served,
        policy,
        limits: &Limits::default(),
    };
    judge(&scope, ingresses, |_, name| (name == "web").then_some(&svc))
}

fn routes(j: &Judgement<'_>) -> Vec<String> {
    j.served()
        .flat_map(|v| {
            let c = v.checked.as_ref().expect("served is checked");
            c.rules
                .iter()
                .map(move |r| format!("{} {} {}", v.key, r.host, r.path.as_str()))
                .chain(
                    c.default_backend
                        .iter()
                        .map(move |_| format!("{} default", v.key)),
                )
        })
        .collect()
}

#[test]
fn ownership_conflicts_and_catch_alls() {
    let trusting = TenantPolicy {
        catch_all_namespaces: ["a".to_owned()].into(),
        ..TenantPolicy::default()
    };
    let cases = vec![
        Case {
            want: vec![
                ("a/old", true, vec![]),
                ("a/new", true, vec!["IngressConflict"]),
                ("a/twin", false, vec!["IngressConflict"]),
            ],
            routes: vec!["a/old x.com /app", "a/new x.com /new"],
            ..Case::new(
                "within a namespace the oldest Ingress wins a host+path; age, then name",
                vec![
                    site("a/new", T1, "X.com", &["/app", "/new"]),
                    site("a/twin", T0, "x.com", &["/app"]),
                    site("a/old", T0, "x.com", &["/app"]),
                ],
            )
        },
        Case {
            want: vec![
                ("a/owner", true, vec![]),
                ("b/longer", false, vec!["HostNotOwned"]),
                ("b/exact", false, vec!["HostNotOwned"]),
                ("b/sub", false, vec!["HostNotOwned"]),
                ("b/mixed", true, vec!["HostNotOwned"]),
            ],
            routes: vec!["a/owner x.com /", "b/mixed own.com /"],
            ..Case::new(
                "another namespace cannot add to a host, whatever its paths or path types",
                vec![
                    site("a/owner", T0, "x.com", &["/"]),
                    site("b/longer", T1, "x.com", &["/api"]),
                    ingress(
                        "b/exact",
                        T1,
                        json!({}),
                        json!({"ingressClassName": "web",
                               "rules": [paths("x.com", &[("Exact", "/")])]}),
                    ),
                    site("b/sub", T1, "x.com", &["/a/b/c"]),
                    ingress(
                        "b/mixed",
                        T1,
                        json!({}),
                        json!({"ingressClassName": "web", "rules": [
                            paths("x.com", &[("Prefix", "/x")]),
                            paths("own.com", &[("Prefix", "/")])]}),
                    ),
                ],
            )
        },
        Case {
            want: vec![
                ("b/exact-old", true, vec![]),
                ("a/wild", true, vec![]),
                ("b/exact-new", false, vec!["HostNotOwned"]),
                ("c/wild", false, vec!["HostNotOwned"]),
            ],
            routes: vec!["b/exact-old api.ex.com /", "a/wild *.ex.com /"],
            ..Case::new(
                "a wildcard owns the hosts under it that no older Ingress of another namespace names",
                vec![
                    site("a/wild", T1, "*.ex.com", &["/"]),
                    site("b/exact-old", T0, "api.ex.com", &["/"]),
                    site("b/exact-new", T2, "www.ex.com", &["/"]),
                    site("c/wild", T2, "*.ex.com", &["/c"]),
                ],
            )
        },
        Case {
            want: vec![
                ("a/owner", true, vec![]),
                ("a/wild", true, vec![]),
                ("b/guest", true, vec![]),
                ("b/same-path", false, vec!["IngressConflict"]),
                ("c/other", false, vec!["HostNotOwned"]),
                ("c/wild-guest", true, vec![]),
            ],
            routes: vec![
                "a/owner x.com /",
                "a/wild *.ex.com /",
                "b/guest x.com /b",
                "c/wild-guest api.ex.com /c",
            ],
            ..Case::new(
                "the owner shares a host by annotation; a wildcard's share covers the hosts under it",
                vec![
                    shared(site("a/owner", T0, "x.com", &["/"]), "b"),
                    shared(site("a/wild", T0, "*.ex.com", &["/"]), "c"),
                    site("b/guest", T1, "x.com", &["/b"]),
                    site("b/same-path", T1, "x.com", &["/"]),
                    site("c/other", T1, "x.com", &["/c"]),
                    site("c/wild-guest", T1, "api.ex.com", &["/c"]),
                ],
            )
        },
        Case {
            want: vec![
                ("b/first", true, vec![]),
                ("a/second", false, vec!["HostNotOwned"]),
                ("c/guest", false, vec!["HostNotOwned"]),
            ],
            routes: vec!["b/first x.com /"],
            ..Case::new(
                "a share from a namespace that does not own the host grants nothing",
                vec![
                    site("b/first", T0, "x.com", &["/"]),
                    shared(site("a/second", T1, "x.com", &["/a"]), "c"),
                    site("c/guest", T2, "x.com", &["/c"]),
                ],
            )
        },
        Case {
            want: vec![
                ("b/hostless", false, vec!["CatchAllNotAllowed"]),
                ("b/default", false, vec!["CatchAllNotAllowed"]),
                ("home/default", true, vec![]),
                ("home/hostless", true, vec![]),
            ],
            routes: vec!["home/default default", "home/hostless (any host) /"],
            ..Case::new(
                "defaultBackend and host-less rules count only from the instance's namespace",
                vec![
                    site("b/hostless", T0, "", &["/"]),
                    default_backend("b/default", T0),
                    default_backend("home/default", T1),
                    site("home/hostless", T1, "", &["/"]),
                ],
            )
        },
        Case {
            policy: trusting.clone(),
            want: vec![
                ("a/default", true, vec![]),
                ("b/default", false, vec!["CatchAllNotAllowed"]),
                ("home/default", false, vec!["IngressConflict"]),
            ],
            routes: vec!["a/default default"],
            ..Case::new(
                "a namespace the platform trusts may hold the catch-all",
                vec![
                    default_backend("a/default", T0),
                    default_backend("b/default", T0),
                    default_backend("home/default", T1),
                ],
            )
        },
        Case {
            policy: TenantPolicy {
                host_ownership: false,
                ..TenantPolicy::default()
            },
            want: vec![
                ("a/owner", true, vec![]),
                ("b/other", true, vec!["IngressConflict"]),
            ],
            routes: vec!["a/owner x.com /", "b/other x.com /b"],
            ..Case::new(
                "with ownership off (platform policy) namespaces merge paths; oldest wins a path",
                vec![
                    site("a/owner", T0, "x.com", &["/"]),
                    site("b/other", T1, "x.com", &["/", "/b"]),
                ],
            )
        },
        Case {
            want: vec![
                ("a/broken", false, vec!["IngressRejected"]),
                ("b/taker", false, vec!["HostNotOwned"]),
                ("z/elsewhere", false, vec!["NamespaceNotServed"]),
                ("a/bad-share", false, vec!["IngressRejected"]),
            ],
            routes: vec![],
            ..Case::new(
                "a briefly broken owner keeps its host; unserved namespaces own nothing",
                vec![
                    ingress(
                        "a/broken",
                        T0,
                        json!({}),
                        json!({"ingressClassName": "web", "rules": [{"host": "x.com", "http": {"paths": [
                            {"path": "/", "pathType": "Prefix",
                             "backend": {"service": {"name": "gone", "port": {"number": 80}}}}]}}]}),
                    ),
                    site("b/taker", T1, "x.com", &["/"]),
                    site("z/elsewhere", T0, "y.com", &["/"]),
                    shared(
                        site("a/bad-share", T2, "y.com", &["/"]),
                        "b,Not_A_Namespace",
                    ),
                ],
            )
        },
    ];
    let canary = |key: &str, created: &str, host: &str, path: &str| {
        let mut ing = site(key, created, host, &[path]);
        ing.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .extend([
                (
                    "nginx.ingress.kubernetes.io/canary".to_owned(),
                    "true".to_owned(),
                ),
                (
                    "nginx.ingress.kubernetes.io/canary-weight".to_owned(),
                    "20".to_owned(),
                ),
            ]);
        ing
    };
    let mut cases = cases;
    let aliased = |key: &str, created: &str, host: &str, aliases: &str| {
        let mut ing = site(key, created, host, &["/"]);
        ing.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(
                "nginx.ingress.kubernetes.io/server-alias".to_owned(),
                aliases.to_owned(),
            );
        ing
    };
    cases.push(Case {
        want: vec![
            ("a/owner", true, vec![]),
            ("b/aliases", true, vec!["HostNotOwned"]),
            ("c/late", false, vec!["HostNotOwned"]),
        ],
        routes: vec![
            "a/owner owned.com /",
            "b/aliases b.com /",
            "b/aliases alias.com /",
        ],
        ..Case::new(
            "server-alias hosts go through host ownership like any host",
            vec![
                site("a/owner", T0, "owned.com", &["/"]),
                aliased("b/aliases", T1, "b.com", "alias.com, owned.com"),
                // The alias was named first: it belongs to b now.
                site("c/late", T2, "alias.com", &["/"]),
            ],
        )
    });
    cases.push(Case {
        want: vec![
            ("a/primary", true, vec![]),
            ("a/canary", true, vec![]),
            ("a/second-canary", false, vec!["CanaryWithoutPrimary"]),
            ("a/orphan", false, vec!["CanaryWithoutPrimary"]),
            ("b/guest-canary", false, vec!["CanaryWithoutPrimary"]),
        ],
        routes: vec!["a/primary x.com /", "a/canary x.com /"],
        ..Case::new(
            "a canary pairs with the primary of its host+path in its namespace, older or not",
            vec![
                shared(site("a/primary", T1, "x.com", &["/"]), "b"),
                canary("a/canary", T0, "x.com", "/"),
                canary("a/second-canary", T2, "x.com", "/"),
                canary("a/orphan", T0, "x.com", "/nothing-here"),
                canary("b/guest-canary", T2, "x.com", "/"),
            ],
        )
    });
    for case in cases {
        let j = run(&case.ingresses, &case.policy);
        let got: Vec<(String, bool, Vec<&str>)> = j
            .verdicts
            .iter()
            .map(|v| {
                (
                    v.key.to_string(),
                    v.served,
                    v.rejections.iter().map(Rejection::reason).collect(),
                )
            })
            .collect();
        let mut want: Vec<(String, bool, Vec<&str>)> = case
            .want
            .iter()
            .map(|(k, s, r)| ((*k).to_owned(), *s, r.clone()))
            .collect();
        let mut sorted_got = got.clone();
        sorted_got.sort();
        want.sort();
        assert_eq!(sorted_got, want, "{}", case.name);
        assert_eq!(routes(&j), case.routes, "{}", case.name);
    }
}

#[test]
fn certificates_come_only_from_the_hosts_owner() {
    let all = [
        with_tls(
            shared(site("a/owner", T0, "x.com", &["/"]), "b"),
            "x.com",
            "a-cert",
        ),
        with_tls(site("b/guest", T1, "x.com", &["/b"]), "x.com", "b-cert"),
        with_tls(site("b/own", T1, "b.com", &["/"]), "b.com", "b-cert"),
    ];
    let j = run(&all, &TenantPolicy::default());
    let certs: Vec<(String, String)> = j
        .served()
        .flat_map(|v| {
            v.certificates
                .iter()
                .map(|t| (v.key.to_string(), t.secret.clone().unwrap_or_default()))
        })
        .collect();
    assert_eq!(
        certs,
        [
            ("a/owner".to_owned(), "a-cert".to_owned()),
            ("b/own".to_owned(), "b-cert".to_owned())
        ]
    );
    let guest = j
        .verdicts
        .iter()
        .find(|v| v.key.name == "guest")
        .expect("guest");
    assert!(guest.served, "a shared host's guest serves its paths");
    assert_eq!(
        guest.rejections[0].to_string(),
        "spec.tls for host x.com ignored: the host belongs to namespace a (its oldest Ingress \
         is a/owner), and only its certificates are served"
    );
    // TLS hosts count as claims: a certificate cannot stake out a host before its owner.
    let all = [
        with_tls(site("b/tls-only", T0, "b.com", &["/"]), "x.com", "b-cert"),
        site("a/late", T1, "x.com", &["/"]),
    ];
    let j = run(&all, &TenantPolicy::default());
    let late = j
        .verdicts
        .iter()
        .find(|v| v.key.name == "late")
        .expect("late");
    assert!(!late.served, "b named x.com first, in spec.tls");
}

#[test]
fn a_tenants_host_is_never_answered_by_another_namespaces_default_backend() {
    let all = [
        default_backend("home/default", T0),
        site("home/site", T0, "home.com", &["/x"]),
        site("a/site", T0, "a.com", &["/x"]),
    ];
    let j = run(&all, &TenantPolicy::default());
    let h = |s: &str| HostPattern::parse(s).expect("host");
    assert!(j.default_backend_serves(&h("home.com")));
    assert!(!j.default_backend_serves(&h("a.com")));
    assert!(j.default_backend_serves(&HostPattern::Any));
    let merged = TenantPolicy {
        host_ownership: false,
        ..TenantPolicy::default()
    };
    assert!(run(&all, &merged).default_backend_serves(&h("a.com")));
}

#[test]
fn messages_name_the_owner_and_the_way_out() {
    let all = [
        site("a/owner", T0, "x.com", &["/"]),
        site("b/taker", T1, "x.com", &["/"]),
        default_backend("b/default", T1),
    ];
    let j = run(&all, &TenantPolicy::default());
    let notes: Vec<String> = j
        .verdicts
        .iter()
        .flat_map(|v| v.rejections.iter().map(ToString::to_string))
        .collect();
    assert_eq!(
        notes,
        [
            "defaultBackend is served only from the instance's namespace home (or one the \
             platform trusts); not served",
            "host x.com belongs to namespace a (its oldest Ingress is a/owner); rules for it are \
             not served unless an Ingress there names this namespace in portico.dev/share-host-with",
        ]
    );
}

#[test]
fn a_hostile_ingress_gets_a_bounded_list_of_reasons() {
    let mut all: Vec<Ingress> = (0..20)
        .map(|i| site(&format!("a/own-{i}"), T0, &format!("h{i}.com"), &["/"]))
        .collect();
    let rules: Vec<Value> = (0..20)
        .map(|i| {
            let list: Vec<(&str, String)> = (0..5).map(|p| ("Prefix", format!("/p{p}"))).collect();
            let list: Vec<(&str, &str)> = list.iter().map(|(k, p)| (*k, p.as_str())).collect();
            paths(&format!("h{i}.com"), &list)
        })
        .collect();
    all.push(ingress(
        "b/hostile",
        T1,
        json!({}),
        json!({"ingressClassName": "web", "rules": rules}),
    ));
    let j = run(&all, &TenantPolicy::default());
    let hostile = j.verdicts.last().expect("hostile");
    assert!(!hostile.served);
    assert_eq!(
        hostile.rejections.len(),
        MAX_PROBLEMS,
        "one per host, bounded"
    );
    assert_eq!(hostile.omitted, 10);
}

#[test]
fn class_membership() {
    let mut legacy = site("a/legacy", T0, "l.com", &["/"]);
    legacy.spec.as_mut().expect("spec").ingress_class_name = None;
    legacy
        .metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(crate::LEGACY_CLASS_ANNOTATION.into(), "web".into());
    let mut classless = site("a/classless", T0, "c.com", &["/"]);
    classless.spec.as_mut().expect("spec").ingress_class_name = None;
    let mut other = site("a/other", T0, "o.com", &["/"]);
    other.spec.as_mut().expect("spec").ingress_class_name = Some("other".into());
    let all = [legacy, classless, other];
    let names = |default: bool| {
        let served: BTreeSet<String> = ["a".to_owned()].into();
        let scope = Scope {
            class: "web",
            is_default_class: default,
            instance_namespace: "a",
            served_namespaces: &served,
            policy: &TenantPolicy::default(),
            limits: &Limits::default(),
        };
        let j = judge(&scope, &all, |_, _| None);
        j.verdicts
            .iter()
            .map(|v| v.key.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(false), ["legacy"]);
    assert_eq!(names(true), ["classless", "legacy"]);
}

/// Verdicts come oldest first, then by namespace/name, whatever order the Ingresses are
/// handed over in (in name order, as a store holds them, or not).
#[test]
fn verdicts_are_oldest_first_in_any_input_order() {
    let mut all = Vec::new();
    for (k, ns) in ["c", "a", "b"].iter().enumerate() {
        for n in 0..4 {
            let created = [T0, T1, T2][(k + n) % 3];
            all.push(site(
                &format!("{ns}/s{n}"),
                created,
                &format!("h{k}{n}.test"),
                &["/"],
            ));
        }
    }
    let mut expected = all.clone();
    expected.sort_by(crate::oldest_first);
    let order = |j: &Judgement<'_>| -> Vec<String> {
        j.verdicts.iter().map(|v| v.key.to_string()).collect()
    };
    let want: Vec<String> = expected
        .iter()
        .map(|i| IngressKey::of(i).to_string())
        .collect();
    let by_name = {
        let mut v = all.clone();
        v.sort_by_key(|i| (i.metadata.namespace.clone(), i.metadata.name.clone()));
        v
    };
    let reversed: Vec<Ingress> = by_name.iter().rev().cloned().collect();
    for input in [&all, &by_name, &reversed] {
        assert_eq!(order(&run(input, &TenantPolicy::default())), want);
    }
}

/// [`crate::HostIndex`]'s claim, held against whole judgements: an Ingress it says stands
/// alone gets, among the others, the verdict it gets judged by itself, and leaves theirs
/// as they are without it. Random Ingresses over a few related hosts (exact, wildcards
/// over them, a deeper host), shares, canaries, TLS, catch-alls and an unserved namespace.
#[test]
fn an_ingress_that_stands_alone_is_judged_the_same_alone() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    let hosts = [
        "x.t", "y.t", "*.t", "a.x.t", "*.x.t", "z.u", "*.u", "q.v", "", "X.T.",
    ];
    let times = [T0, T1, T2];
    let served: BTreeSet<String> = ["a", "b"].map(String::from).into();
    let svc = web_service();
    let policy = TenantPolicy::default();
    let scope = Scope {
        class: "web",
        is_default_class: false,
        instance_namespace: "a",
        served_namespaces: &served,
        policy: &policy,
        limits: &Limits::default(),
    };
    let services = |_: &str, name: &str| (name == "web").then_some(&svc);
    // What a verdict says, comparable across judgements.
    let said = |v: &Verdict<'_>| {
        format!(
            "{} served={} {:?} +{} {:?} {:?}",
            v.key, v.served, v.rejections, v.omitted, v.certificates, v.checked
        )
    };
    let (mut alone, mut entangled) = (0, 0);
    for round in 0..600 {
        let mut all: Vec<Ingress> = (0..1 + next(7))
            .map(|i| {
                let ns = ["a", "b", "c"][next(3)];
                let rules: Vec<Value> = (0..1 + next(2))
                    .map(|_| {
                        let path = ["/", "/p"][next(2)];
                        paths(hosts[next(hosts.len())], &[("Prefix", path)])
                    })
                    .collect();
                let mut spec = json!({"ingressClassName": "web", "rules": rules});
                if next(6) == 0 {
                    spec["defaultBackend"] =
                        json!({"service": {"name": "web", "port": {"number": 80}}});
                }
                let mut ing = ingress(
                    &format!("{ns}/i{round}-{i}"),
                    times[next(3)],
                    json!({}),
                    spec,
                );
                if next(4) == 0 {
                    ing = shared(ing, ["a", "b"][next(2)]);
                }
                if next(5) == 0 {
                    ing.metadata
                        .annotations
                        .get_or_insert_with(Default::default)
                        .insert("nginx.ingress.kubernetes.io/canary".into(), "true".into());
                }
                if next(4) == 0 {
                    ing = with_tls(ing, hosts[next(hosts.len() - 2)], "cert");
                }
                ing
            })
            .collect();
        let x = all.pop().expect("one at least");
        let mut index = crate::HostIndex::default();
        for i in &all {
            if served.contains(i.metadata.namespace.as_deref().unwrap_or_default()) {
                index.add(i);
            }
        }
        if !index.stands_alone(&x) {
            entangled += 1;
            continue;
        }
        alone += 1;
        let without = judge(&scope, &all, services);
        let by_itself = judge(&scope, [&x], services);
        let with: Vec<Ingress> = all.iter().cloned().chain([x.clone()]).collect();
        let together = judge(&scope, &with, services);
        for v in &together.verdicts {
            let want = if v.key.name == x.metadata.name.clone().unwrap_or_default() {
                &by_itself.verdicts[0]
            } else {
                without
                    .verdicts
                    .iter()
                    .find(|w| w.key == v.key)
                    .expect("judged without x too")
            };
            assert_eq!(said(v), said(want), "round {round}");
        }
        // Undoing the count leaves the index as it was without them.
        for i in &all {
            if served.contains(i.metadata.namespace.as_deref().unwrap_or_default()) {
                index.remove(i);
            }
        }
        assert!(
            index.stands_alone(&site("a/probe", T0, "x.t", &["/"])),
            "round {round}"
        );
    }
    assert!(
        alone > 100 && entangled > 100,
        "{alone} alone, {entangled} entangled"
    );
}
