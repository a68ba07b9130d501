//! KIngress → intermediate model (`--mode ingress`): Knative's defaults and validation, the
//! probe paths and their hash (checked against Go's encoding/json), first-rule-wins hosts,
//! status conditions.

use serde_json::json;

use crate::ir::Visibility;
use crate::kingress::{probe_hash, translate_kingress, HASH_HEADER};
use crate::status::{desired_status, needs_write, IngressState, LoadBalancers, Outcome, TlsStatus};
use crate::{Options, RejectReason, Translator};
use model::objects::KIngress;
use model::{Object, Store};

fn kingress(spec: serde_json::Value) -> KIngress {
    serde_json::from_value(json!({
        "metadata": {"name": "hello", "namespace": "default", "generation": 3,
                     "annotations": {"networking.knative.dev/ingress.class": "knative-xds.ingress.networking.knative.dev"}},
        "spec": spec,
    }))
    .unwrap()
}

fn split(name: &str, port: serde_json::Value, percent: i64) -> serde_json::Value {
    json!({"serviceNamespace": "default", "serviceName": name, "servicePort": port, "percent": percent,
           "appendHeaders": {"Knative-Serving-Revision": name}})
}

fn basic() -> KIngress {
    kingress(
        json!({"rules": [{"hosts": ["Hello.Example.com"], "visibility": "ExternalIP",
        "http": {"paths": [{"splits": [split("hello-1", json!(80), 100)]}]}}]}),
    )
}

#[test]
fn probe_hash_matches_go_encoding_json_byte_for_byte() {
    // Vectors hashed by Go 1.19's encoding/json (tests/fixtures/kingress-hash/expected.tsv):
    // field order, omitempty, null vs [] for absent slices, sorted keys, HTML escaping.
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/kingress-hash");
    let expected = std::fs::read_to_string(dir.join("expected.tsv")).unwrap();
    let mut checked = 0;
    for line in expected.lines() {
        let (file, hash) = line.split_once('\t').unwrap();
        if file.starts_with("15-") {
            // \b and \f: Go 1.19 writes \u0008/\u000c, Go ≥ 1.22 (today's Knative) \b/\f as we do.
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap();
        let mut k: KIngress = serde_json::from_value(json!({"spec": v["spec"]})).unwrap();
        k.metadata.namespace = v["namespace"].as_str().unwrap().into();
        k.metadata.name = v["name"].as_str().unwrap().into();
        assert_eq!(probe_hash(&k), hash, "{file}");
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} vectors");
}

#[test]
fn hash_changes_with_spec_namespace_and_name() {
    let a = basic();
    let mut b = a.clone();
    b.metadata.name = "other".into();
    let mut c = a.clone();
    c.spec.http_option = "Redirected".into();
    assert_ne!(probe_hash(&a), probe_hash(&b));
    assert_ne!(probe_hash(&a), probe_hash(&c));
    assert_eq!(probe_hash(&a), probe_hash(&a.clone()));
}

#[test]
fn probe_paths_come_first_and_set_the_hash() {
    let k = kingress(
        json!({"rules": [{"hosts": ["a.example.com"], "http": {"paths": [
            {"path": "/foo", "splits": [split("foo", json!(80), 0)]},
            {"splits": [split("catch", json!(80), 0)]},
        ]}}]}),
    );
    let ing = translate_kingress(&k, &Store::new()).unwrap();
    let paths = &ing.rules[0].paths;
    assert_eq!(paths.len(), 4);
    let hash = probe_hash(&k);
    for (i, prefix) in ["/foo", "/"].iter().enumerate() {
        let probe = &paths[i];
        assert_eq!(probe.prefix, *prefix);
        assert_eq!(probe.headers.get(HASH_HEADER), Some("override"));
        assert_eq!(probe.append_headers.get(HASH_HEADER), Some(hash.as_str()));
        let normal = &paths[i + 2];
        assert_eq!(normal.prefix, *prefix);
        assert!(normal.headers.is_empty() && !normal.append_headers.contains_key(HASH_HEADER));
        // A single split without percent means 100.
        assert_eq!(normal.splits[0].percent, 100);
    }
}

#[test]
fn defaults_visibility_lowercases_hosts_and_keeps_split_headers() {
    let ing = translate_kingress(&basic(), &Store::new()).unwrap();
    assert_eq!(super::strs(&ing.rules[0].hosts), vec!["hello.example.com"]);
    assert_eq!(ing.rules[0].visibility, Visibility::ExternalIP);
    let s = &ing.rules[0].paths[1].splits[0];
    assert_eq!(s.backend.cluster_name(), "default/hello-1:80");
    assert_eq!(
        s.append_headers.get("Knative-Serving-Revision").unwrap(),
        "hello-1"
    );
    assert_eq!(ing.generation, Some(3));
}

#[test]
fn first_rule_wins_a_host_named_twice() {
    let k = kingress(json!({"rules": [
        {"hosts": ["a.example.com"], "http": {"paths": [{"splits": [split("one", json!(80), 100)]}]}},
        {"hosts": ["a.example.com", "b.example.com"], "visibility": "ClusterLocal",
         "http": {"paths": [{"splits": [split("two", json!(80), 100)]}]}},
    ]}));
    let ing = translate_kingress(&k, &Store::new()).unwrap();
    assert_eq!(super::strs(&ing.rules[0].hosts), vec!["a.example.com"]);
    assert_eq!(super::strs(&ing.rules[1].hosts), vec!["b.example.com"]);
}

#[test]
fn named_service_ports_resolve_through_the_service() {
    let k = kingress(
        json!({"rules": [{"hosts": ["a.example.com"], "http": {"paths": [
        {"splits": [split("svc", json!("web"), 100)]}]}}]}),
    );
    let err = translate_kingress(&k, &Store::new()).unwrap_err();
    assert_eq!(
        err[0].field,
        "spec.rules[0].http.paths[0].splits[0].servicePort"
    );
    assert!(err[0].message.contains("not found"), "{}", err[0].message);
    let mut store = Store::new();
    store.apply(
        Object::decode(
            model::Kind::Service,
            json!({"metadata": {"name": "svc", "namespace": "default"},
                   "spec": {"ports": [{"name": "web", "port": 63, "targetPort": 8063}]}}),
        )
        .unwrap(),
    );
    let ing = translate_kingress(&k, &store).unwrap();
    assert_eq!(ing.rules[0].paths[0].splits[0].backend.port, 63);
}

#[test]
fn knative_validation_errors_name_the_field() {
    let cases = [
        (json!({}), "spec.rules", "missing"),
        (
            json!({"rules": [{"hosts": ["a.b"]}]}),
            "spec.rules[0].http",
            "missing",
        ),
        (
            json!({"rules": [{"hosts": ["a.b"], "http": {"paths": []}}]}),
            "spec.rules[0].http.paths",
            "missing",
        ),
        (
            json!({"rules": [{"hosts": ["a.b"], "http": {"paths": [{}]}}]}),
            "spec.rules[0].http.paths[0].splits",
            "missing",
        ),
        (
            json!({"rules": [{"hosts": ["a.b"], "http": {"paths": [{"splits": [split("x", json!(80), 60), split("y", json!(80), 30)]}]}}]}),
            "spec.rules[0].http.paths[0].splits",
            "must total to 100",
        ),
        (
            json!({"rules": [{"hosts": ["a.b"], "http": {"paths": [{"splits": [split("x", json!(80), 120)]}]}}]}),
            "spec.rules[0].http.paths[0].splits[0].percent",
            "100",
        ),
        (
            json!({"rules": [{"hosts": ["a.b"], "http": {"paths": [{"splits": [
            {"serviceNamespace": "elsewhere", "serviceName": "x", "servicePort": 80}]}]}}]}),
            "spec.rules[0].http.paths[0].splits[0].serviceNamespace",
            "namespace",
        ),
        (
            json!({"rules": [{"hosts": ["a.b"], "visibility": "Public", "http": {"paths": [{"splits": [split("x", json!(80), 100)]}]}}]}),
            "spec.rules[0].visibility",
            "invalid value",
        ),
        (
            json!({"httpOption": "Sometimes", "rules": [{"hosts": ["a.b"], "http": {"paths": [{"splits": [split("x", json!(80), 100)]}]}}]}),
            "spec.httpOption",
            "invalid value",
        ),
        (
            json!({"rules": [{"hosts": ["a.b"], "http": {"paths": [{"appendHeaders": {"Host": "x"}, "splits": [split("x", json!(80), 100)]}]}}]}),
            "spec.rules[0].http.paths[0].appendHeaders[Host]",
            "rewriteHost",
        ),
        (
            json!({"rules": [{"hosts": ["a.b:8080"], "http": {"paths": [{"splits": [split("x", json!(80), 100)]}]}}]}),
            "spec.rules[0].hosts[0]",
            "port",
        ),
        (
            json!({"tls": [{"hosts": ["a.b"]}], "rules": [{"hosts": ["a.b"], "http": {"paths": [{"splits": [split("x", json!(80), 100)]}]}}]}),
            "spec.tls[0].secretName",
            "missing",
        ),
    ];
    for (spec, field, msg) in cases {
        let problems = translate_kingress(&kingress(spec.clone()), &Store::new()).unwrap_err();
        assert!(
            problems
                .iter()
                .any(|p| p.field == field && p.message.contains(msg)),
            "{spec}: {problems:?}"
        );
    }
}

fn translator() -> Translator {
    Translator::new(Options {
        ingress_class: Some(crate::kingress::DEFAULT_CLASS.to_string()),
        no_controller: false,
        ..Options::default()
    })
}

#[test]
fn only_our_class_is_served_and_routes_are_ignored_in_ingress_mode() {
    let mut store = Store::new();
    let mut ours = basic();
    ours.metadata.name = "ours".into();
    let mut theirs = basic();
    theirs.metadata.name = "theirs".into();
    theirs.spec.rules[0].hosts = vec!["theirs.example.com".into()];
    theirs.metadata.annotations.insert(
        crate::kingress::CLASS_ANNOTATION,
        "kourier.ingress.networking.knative.dev",
    );
    let mut unannotated = theirs.clone();
    unannotated.metadata.name = "none".into();
    unannotated.metadata.annotations.clear();
    for k in [ours, theirs, unannotated] {
        store.apply(Object::KIngress(k));
    }
    store.apply(Object::Route(super::mk_route(
        "r",
        vec![super::to_revision("r-1", 100)],
    )));
    let out = translator().translate(&store);
    let served: Vec<String> = out
        .ingresses
        .iter()
        .map(|i| i.origin.key.name.to_string())
        .collect();
    assert_eq!(served, vec!["ours"]);
    assert!(out.rejections.is_empty(), "{:?}", out.rejections);
}

#[test]
fn the_older_kingress_keeps_a_contested_host() {
    let mut store = Store::new();
    let mut old = basic();
    old.metadata.name = "old".into();
    old.metadata.creation_timestamp = Some("2026-01-01T00:00:00Z".into());
    let mut new = basic();
    new.metadata.name = "new".into();
    new.metadata.creation_timestamp = Some("2026-02-01T00:00:00Z".into());
    store.apply(Object::KIngress(new));
    store.apply(Object::KIngress(old));
    let out = translator().translate(&store);
    assert_eq!(out.ingresses.len(), 1);
    assert_eq!(&*out.ingresses[0].origin.key.name, "old");
    assert_eq!(&*out.rejections[0].object.key.name, "new");
    assert_eq!(out.rejections[0].reason, RejectReason::HostConflict);
}

fn lbs() -> LoadBalancers {
    LoadBalancers {
        public_domain: "gw.knative-xds.svc.cluster.local".into(),
        private_domain: "gw-internal.knative-xds.svc.cluster.local".into(),
    }
}

fn cond<'a>(status: &'a serde_json::Value, ty: &str) -> &'a serde_json::Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == ty)
        .unwrap()
}

#[test]
fn ready_only_once_every_envoy_applied_the_generation() {
    let state = IngressState {
        generation: 4,
        outcome: Outcome::Served { since_snapshot: 10 },
        current: None,
        tls: None,
    };
    let now = "2026-11-23T10:00:00Z";
    for (applied, want) in [
        (None, "Unknown"),
        (Some(9), "Unknown"),
        (Some(10), "True"),
        (Some(11), "True"),
    ] {
        let s = desired_status(&state, applied, &lbs(), now);
        assert_eq!(cond(&s, "Ready")["status"], want, "applied {applied:?}");
        assert_eq!(cond(&s, "NetworkConfigured")["status"], "True");
        assert_eq!(s["observedGeneration"], 4);
        assert_eq!(
            s.get("publicLoadBalancer").is_some(),
            want == "True",
            "load balancers only when ready"
        );
    }
    let ready = desired_status(&state, Some(10), &lbs(), now);
    assert_eq!(
        ready["privateLoadBalancer"]["ingress"][0]["domainInternal"],
        "gw-internal.knative-xds.svc.cluster.local"
    );
    // Written once: the same state later needs no write and keeps the transition time.
    let again = IngressState {
        current: Some(ready.clone()),
        ..state.clone()
    };
    let later = desired_status(&again, Some(12), &lbs(), "2026-11-23T11:00:00Z");
    assert!(!needs_write(Some(&ready), &later));
    assert_eq!(cond(&later, "Ready")["lastTransitionTime"], now);
    // Ready sticks to its generation: Envoys going away do not flap it...
    let gone = desired_status(&again, None, &lbs(), now);
    assert_eq!(cond(&gone, "Ready")["status"], "True");
    // ...but a new generation waits for them again.
    let next = IngressState {
        generation: 5,
        outcome: Outcome::Served { since_snapshot: 20 },
        ..again
    };
    assert_eq!(
        cond(&desired_status(&next, Some(12), &lbs(), now), "Ready")["status"],
        "Unknown"
    );
}

#[test]
fn conflicts_invalid_specs_and_tls_are_reported() {
    let now = "2026-11-23T10:00:00Z";
    let conflict = IngressState {
        generation: 1,
        outcome: Outcome::Rejected {
            reason: RejectReason::HostConflict,
            message: "host \"a\" is already served by x".into(),
        },
        current: None,
        tls: None,
    };
    let s = desired_status(&conflict, Some(100), &lbs(), now);
    assert_eq!(cond(&s, "LoadBalancerReady")["reason"], "DomainConflict");
    assert_eq!(cond(&s, "Ready")["status"], "False");
    let invalid = IngressState {
        outcome: Outcome::Rejected {
            reason: RejectReason::Invalid,
            message: "spec.rules: missing field(s)".into(),
        },
        ..conflict.clone()
    };
    let s = desired_status(&invalid, Some(100), &lbs(), now);
    assert_eq!(cond(&s, "NetworkConfigured")["status"], "False");
    assert!(cond(&s, "Ready")["message"]
        .as_str()
        .unwrap()
        .contains("spec.rules"));
    // spec.tls served: TLSServed True, Ready as usual.
    let served = IngressState {
        outcome: Outcome::Served { since_snapshot: 1 },
        tls: Some(TlsStatus {
            hosts: vec!["a.example.com".into()],
            unserved: None,
        }),
        ..conflict
    };
    let s = desired_status(&served, Some(1), &lbs(), now);
    assert_eq!(cond(&s, "Ready")["status"], "True");
    assert_eq!(cond(&s, "TLSServed")["status"], "True");
    assert_eq!(cond(&s, "TLSServed")["severity"], "Warning");
    // Not served (its Secret is missing): not Ready until it is, and TLSServed says why.
    let why = "spec.tls[0].secretName: Secret ns/cert not found";
    let pending = IngressState {
        tls: Some(TlsStatus {
            hosts: vec!["a.example.com".into()],
            unserved: Some(why.into()),
        }),
        ..served.clone()
    };
    let s = desired_status(&pending, Some(1), &lbs(), now);
    assert_eq!(cond(&s, "Ready")["status"], "Unknown");
    assert_eq!(cond(&s, "LoadBalancerReady")["reason"], "TLSNotReady");
    let t = cond(&s, "TLSServed");
    assert_eq!(
        (t["status"].as_str(), t["message"].as_str()),
        (Some("False"), Some(why))
    );
    // Once Ready, a Secret going bad later does not take Ready away (HTTP still serves).
    let ready = desired_status(&served, Some(1), &lbs(), now);
    let later = IngressState {
        current: Some(ready),
        ..pending
    };
    let s = desired_status(&later, Some(1), &lbs(), now);
    assert_eq!(cond(&s, "Ready")["status"], "True");
    assert_eq!(cond(&s, "TLSServed")["status"], "False");
}
