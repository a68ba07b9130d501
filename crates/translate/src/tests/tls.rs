//! HTTPS planning: which certificate each host gets, and what happens when one is bad,
//! missing, rotated, expired or not yet valid.

use std::sync::Arc;

use model::{Kind, Object, ObjectKey, ObjectRef, Store};
use rcgen::{CertificateParams, KeyPair};

use crate::ir::{Ingress, Rule, Tls, Visibility};
use crate::tls::{Planner, TlsPlan, TlsSettings};

/// A self-signed P-256 certificate for `names`, valid between the two Unix times.
fn cert(names: &[&str], from: i64, until: i64) -> (String, String) {
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.not_before = rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(from as u64);
    p.not_after = rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(until as u64);
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    (p.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

fn secret(ns: &str, name: &str, (crt, key): &(String, String)) -> Object {
    model::testing::tls_secret(ns, name, crt, key)
}

/// A DomainMapping-like object serving `host` externally, with `secret` for it.
fn ingress(kind: Kind, name: &str, hosts: &[&str], tls: &[(&[&str], &str)]) -> Ingress {
    Ingress {
        origin: ObjectRef {
            kind,
            key: ObjectKey::new("ns", name),
        },
        generation: None,
        creation_timestamp: String::new(),
        http_option: Default::default(),
        rules: vec![Rule {
            hosts: hosts.iter().map(|h| Arc::from(*h)).collect(),
            visibility: Visibility::ExternalIP,
            paths: Arc::new([]),
        }],
        tls: tls
            .iter()
            .map(|(hosts, secret)| Tls {
                hosts: hosts.iter().map(|h| Arc::from(*h)).collect(),
                secret: ObjectKey::new("ns", *secret),
            })
            .collect(),
    }
}

const DAY: i64 = 86_400;
const NOW: i64 = 1_900_000_000;

fn plan(p: &mut Planner, ings: &[Ingress], store: &Store, now: i64) -> TlsPlan {
    p.plan(ings, store, &TlsSettings::default(), Some(now))
}

fn chains(plan: &TlsPlan) -> Vec<(String, Vec<String>)> {
    plan.external
        .iter()
        .map(|c| {
            (
                c.secret.to_string(),
                c.server_names.iter().map(|h| h.to_string()).collect(),
            )
        })
        .collect()
}

#[test]
fn one_chain_per_secret_its_hosts_by_sni() {
    let good = cert(&["a.example.com", "b.example.com"], NOW - DAY, NOW + DAY);
    let mut store = Store::new();
    store.apply(secret("ns", "ab", &good));
    let ings = [
        ingress(
            Kind::KIngress,
            "k",
            &["a.example.com", "b.example.com"],
            &[(&["a.example.com", "b.example.com"], "ab")],
        ),
        ingress(Kind::DomainMapping, "d", &["c.example.com"], &[]),
    ];
    let p = plan(&mut Planner::new(), &ings, &store, NOW);
    assert_eq!(
        chains(&p),
        [(
            "ns/ab".to_string(),
            vec!["a.example.com".to_string(), "b.example.com".to_string()]
        )]
    );
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    assert_eq!(p.secrets.len(), 1);
    assert_eq!(p.next_change, Some(NOW + DAY), "plan again when it expires");
    assert_eq!(p.named.len(), 1);
}

#[test]
fn bad_missing_expired_and_early_certificates_harm_only_their_hosts() {
    let good = cert(&["good.example.com"], NOW - DAY, NOW + DAY);
    let other = cert(&["x"], NOW - DAY, NOW + DAY);
    let mut store = Store::new();
    store.apply(secret("ns", "good", &good));
    store.apply(secret("ns", "mismatch", &(good.0.clone(), other.1.clone())));
    store.apply(secret(
        "ns",
        "expired",
        &cert(&["e"], NOW - 2 * DAY, NOW - DAY),
    ));
    store.apply(secret(
        "ns",
        "early",
        &cert(&["f"], NOW + DAY, NOW + 2 * DAY),
    ));
    let ings = [
        ingress(
            Kind::DomainMapping,
            "good",
            &["good.example.com"],
            &[(&["good.example.com"], "good")],
        ),
        ingress(
            Kind::DomainMapping,
            "mismatch",
            &["m.example.com"],
            &[(&["m.example.com"], "mismatch")],
        ),
        ingress(
            Kind::DomainMapping,
            "expired",
            &["e.example.com"],
            &[(&["e.example.com"], "expired")],
        ),
        ingress(
            Kind::DomainMapping,
            "early",
            &["f.example.com"],
            &[(&["f.example.com"], "early")],
        ),
        ingress(
            Kind::DomainMapping,
            "missing",
            &["g.example.com"],
            &[(&["g.example.com"], "missing")],
        ),
    ];
    let mut planner = Planner::new();
    let p = plan(&mut planner, &ings, &store, NOW);
    assert_eq!(
        chains(&p),
        [("ns/good".to_string(), vec!["good.example.com".to_string()])]
    );
    let problems: Vec<(String, String)> = p
        .problems
        .iter()
        .map(|p| (p.object.key.name.to_string(), p.problem.message.clone()))
        .collect();
    let want = [
        ("early", "Secret ns/early: tls.crt: not valid before 2030-03-18T17:46:40Z; its hosts are not served over HTTPS"),
        ("expired", "Secret ns/expired: tls.crt: expired at 2030-03-16T17:46:40Z; its hosts are not served over HTTPS"),
        ("mismatch", "Secret ns/mismatch: tls.key: does not match the certificate in tls.crt; its hosts are not served over HTTPS"),
        ("missing", "Secret ns/missing not found; its hosts are not served over HTTPS"),
    ];
    assert_eq!(problems.len(), want.len(), "{problems:#?}");
    for (name, message) in want {
        assert!(
            problems.contains(&(name.to_string(), message.to_string())),
            "{name}: {problems:#?}"
        );
    }
    for p in &p.problems {
        assert_eq!(p.problem.field, "spec.tls.secretName");
    }
    // The early one becomes valid (within the skew) at its notBefore: planned again then.
    assert_eq!(p.next_change, Some(NOW + DAY - certs::NOT_BEFORE_SKEW));
    let later = plan(&mut planner, &ings, &store, NOW + DAY - 200);
    let served: Vec<String> = chains(&later).into_iter().map(|(s, _)| s).collect();
    assert_eq!(served, ["ns/early", "ns/good"]);
    assert_eq!(
        later.next_change,
        Some(NOW + DAY),
        "when the good one expires"
    );
    // And once the good one expires, it is no longer served.
    let gone = plan(&mut planner, &ings, &store, NOW + DAY);
    let served: Vec<String> = chains(&gone).into_iter().map(|(s, _)| s).collect();
    assert_eq!(served, ["ns/early"]);
}

#[test]
fn a_bad_rotation_keeps_the_last_good_certificate_a_delete_does_not() {
    let first = cert(&["a.example.com"], NOW - DAY, NOW + DAY);
    let mut store = Store::new();
    store.apply(secret("ns", "a", &first));
    let ings = [ingress(
        Kind::DomainMapping,
        "a",
        &["a.example.com"],
        &[(&["a.example.com"], "a")],
    )];
    let mut planner = Planner::new();
    let p = plan(&mut planner, &ings, &store, NOW);
    let served = p.secrets["ns/a"].crt.clone();
    // Rotated to a certificate whose key does not match: the last good one stays.
    let other = cert(&["a.example.com"], NOW - DAY, NOW + DAY);
    store.apply(secret("ns", "a", &(other.0.clone(), first.1.clone())));
    let p = plan(&mut planner, &ings, &store, NOW);
    assert_eq!(
        p.secrets["ns/a"].crt, served,
        "the last good certificate is served"
    );
    assert!(p.problems[0].kept_last_good);
    assert!(p.problems[0]
        .problem
        .message
        .contains("last good certificate"));
    assert!(p.served[0].last_good);
    // Fixed: the new one.
    store.apply(secret("ns", "a", &other));
    let p = plan(&mut planner, &ings, &store, NOW);
    assert_eq!(&*p.secrets["ns/a"].crt, other.0.as_bytes());
    assert!(p.problems.is_empty());
    // Deleted: not served, no last good.
    store.delete(Kind::Secret, &ObjectKey::new("ns", "a"));
    let p = plan(&mut planner, &ings, &store, NOW);
    assert!(p.secrets.is_empty());
    assert!(!p.problems[0].kept_last_good);
}

#[test]
fn default_certificate_is_the_last_chain_and_a_host_gets_one_certificate() {
    let wildcard = cert(&["*.example.com"], NOW - DAY, NOW + DAY);
    let own = cert(&["a.example.com"], NOW - DAY, NOW + DAY);
    let mut store = Store::new();
    store.apply(secret("ns", "wildcard", &wildcard));
    store.apply(secret("ns", "own", &own));
    store.apply(secret("ns", "second", &own));
    let ings = [ingress(
        Kind::KIngress,
        "k",
        &["a.example.com"],
        &[(&["a.example.com"], "own"), (&["a.example.com"], "second")],
    )];
    let settings = TlsSettings {
        default_secret: Some(ObjectKey::new("ns", "wildcard")),
        ..TlsSettings::default()
    };
    let p = Planner::new().plan(&ings, &store, &settings, Some(NOW));
    assert_eq!(
        chains(&p),
        [
            ("ns/own".to_string(), vec!["a.example.com".to_string()]),
            ("ns/wildcard".to_string(), vec![]),
        ]
    );
    assert_eq!(p.problems.len(), 1, "{:?}", p.problems);
    assert_eq!(p.problems[0].problem.field, "spec.tls[1].hosts");
    // Without a certificate, the default one is reported against the Secret itself.
    let p = Planner::new().plan(&ings, &Store::new(), &settings, Some(NOW));
    assert!(p.external.is_empty());
    let default_problem = p
        .problems
        .iter()
        .find(|p| p.object.kind == Kind::Secret)
        .unwrap();
    assert_eq!(default_problem.problem.field, "--default-tls-secret");
}

#[test]
fn a_rotation_updates_the_plan_in_place_as_a_full_plan_would() {
    let first = cert(&["a.example.com"], NOW - DAY, NOW + DAY);
    let mut store = Store::new();
    store.apply(secret("ns", "a", &first));
    store.apply(secret("ns", "b", &first));
    let ings = [
        ingress(
            Kind::DomainMapping,
            "a",
            &["a.example.com"],
            &[(&["a.example.com"], "a")],
        ),
        ingress(
            Kind::KIngress,
            "b",
            &["b.example.com"],
            &[(&["b.example.com"], "b")],
        ),
    ];
    let mut planner = Planner::new();
    let mut p = plan(&mut planner, &ings, &store, NOW);
    let a = ObjectKey::new("ns", "a");
    // A good rotation: in place, as a full plan has it.
    let second = cert(&["a.example.com"], NOW - DAY, NOW + 2 * DAY);
    store.apply(secret("ns", "a", &second));
    assert!(planner.update_secrets(&mut p, &store, std::slice::from_ref(&a), Some(NOW)));
    let full = plan(&mut Planner::new(), &ings, &store, NOW);
    assert_eq!(
        (&p.external, &p.secrets, &p.problems),
        (&full.external, &full.secrets, &full.problems)
    );
    // A bad one: the last good stays, reported against the object naming it.
    store.apply(secret("ns", "a", &(second.0.clone(), first.1.clone())));
    assert!(planner.update_secrets(&mut p, &store, std::slice::from_ref(&a), Some(NOW)));
    assert_eq!(&*p.secrets["ns/a"].crt, second.0.as_bytes());
    assert_eq!(p.problems.len(), 1);
    assert_eq!(p.problems[0].object.key.name.as_ref(), "a");
    assert_eq!(p.problems[0].problem.field, "spec.tls.secretName");
    assert!(p.problems[0].kept_last_good);
    // Fixed again: the problem goes.
    store.apply(secret("ns", "a", &second));
    assert!(planner.update_secrets(&mut p, &store, std::slice::from_ref(&a), Some(NOW)));
    assert!(p.problems.is_empty());
    // Deleted: it stops being served, which changes the chains: a full plan is needed.
    store.delete(Kind::Secret, &a);
    assert!(!planner.update_secrets(&mut p, &store, std::slice::from_ref(&a), Some(NOW)));
}
