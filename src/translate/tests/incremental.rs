//! Incremental updates (`Translator::update` with the store's dirty set) give exactly what
//! looking at every object gives, through random changes of every kind: deletions and
//! restorations, Revisions turning unready, splits, Routes shadowed by Services, host
//! conflicts with DomainMappings, broken EndpointSlices and domain config changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::model::objects::{
    ClusterDomainClaim, ClusterDomainClaimSpec, Condition, DomainMapping, DomainMappingSpec,
    KReference, ObjectMeta, Route, RouteSpec, Status,
};
use crate::model::{Kind, Object, ObjectKey, ObjectRef, Store};
use crate::translate::{Ingress, Options, Translator};
use crate::workload::{generate, SplitMix64};

fn load(files: &[(String, String)]) -> Store {
    let mut store = Store::new();
    for (path, text) in files {
        for o in crate::sources::manifests::parse_file(std::path::Path::new(path), text).unwrap() {
            store.apply(o);
        }
    }
    store
}

fn pick<T: Clone>(rng: &mut SplitMix64, items: &[T]) -> Option<T> {
    (!items.is_empty()).then(|| items[rng.below(items.len() as u64) as usize].clone())
}

fn meta(namespace: &str, name: &str, created: u64) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        namespace: namespace.into(),
        creation_timestamp: Some(format!("2026-01-01T00:00:{:02}Z", created % 60)),
        ..Default::default()
    }
}

/// One random change to the store.
fn mutate(store: &mut Store, rng: &mut SplitMix64, removed: &mut Vec<Object>) -> String {
    let kservices = store.keys(Kind::KService);
    match rng.below(10) {
        0 | 1 => {
            let kind = pick(rng, &Kind::ALL).unwrap();
            let Some(key) = pick(rng, &store.keys(kind)) else {
                return "nothing".into();
            };
            removed.extend(store.get(kind, &key));
            store.delete(kind, &key);
            format!("delete {kind} {key}")
        }
        2 => match pick(rng, removed) {
            Some(o) => {
                let r = o.object_ref();
                store.apply(o);
                format!("restore {r}")
            }
            None => "nothing".into(),
        },
        3 => {
            let Some(key) = pick(rng, &store.keys(Kind::Revision)) else {
                return "nothing".into();
            };
            let mut r = store.revisions[&key].clone();
            let ready = r
                .status
                .as_ref()
                .is_none_or(|s| s.conditions.iter().any(|c| c.status == "True"));
            r.status = Some(Status {
                conditions: vec![Condition {
                    type_: "Ready".into(),
                    status: if ready { "False" } else { "True" }.into(),
                    ..Default::default()
                }],
                ..Default::default()
            });
            store.apply(Object::Revision(r));
            format!("revision {key} ready={}", !ready)
        }
        4 => {
            // A split change, a new tag, or a new creation time (host conflict order).
            let Some(key) = pick(rng, &kservices) else {
                return "nothing".into();
            };
            let mut k = store.kservices[&key].clone();
            match rng.below(3) {
                0 => {
                    for t in &mut k.spec.traffic {
                        t.percent = t.percent.map(|_| 0);
                    }
                    if let Some(t) = k.spec.traffic.first_mut() {
                        t.percent = Some(100);
                    }
                }
                1 => {
                    if let Some(t) = k.spec.traffic.first_mut() {
                        t.tag = Some(format!("t{}", rng.below(3)));
                    }
                }
                _ => k.metadata.creation_timestamp = Some("2025-01-01T00:00:00Z".into()),
            }
            store.apply(Object::KService(k));
            format!("kservice {key} changed")
        }
        5 => {
            // A Route shadowed by (or taking the name of) a Knative Service.
            let Some(key) = pick(rng, &kservices) else {
                return "nothing".into();
            };
            let traffic = store.kservices[&key].spec.traffic.clone();
            store.apply(Object::Route(Route {
                metadata: meta(&key.namespace, &key.name, rng.below(60)),
                spec: RouteSpec { traffic },
            }));
            format!("route {key}")
        }
        6 | 7 => {
            // A DomainMapping: sometimes onto a Service's own host (a host conflict).
            let Some(target) = pick(rng, &kservices) else {
                return "nothing".into();
            };
            let Some(owner) = pick(rng, &kservices) else {
                return "nothing".into();
            };
            let name = if rng.chance(50) {
                format!("{}.{}.example.com", owner.name, owner.namespace)
            } else {
                format!("m{}.example.org", rng.below(4))
            };
            store.apply(Object::ClusterDomainClaim(ClusterDomainClaim {
                metadata: meta("", &name, 0),
                spec: ClusterDomainClaimSpec {
                    namespace: target.namespace.clone(),
                },
            }));
            store.apply(Object::DomainMapping(DomainMapping {
                metadata: meta(&target.namespace, &name, rng.below(60)),
                spec: DomainMappingSpec {
                    ref_: KReference {
                        api_version: "serving.knative.dev/v1".into(),
                        kind: "Service".into(),
                        name: target.name.clone(),
                        namespace: None,
                    },
                    tls: None,
                },
            }));
            format!("domain mapping {name} → {target}")
        }
        8 => {
            let Some(key) = pick(rng, &store.keys(Kind::EndpointSlice)) else {
                return "nothing".into();
            };
            let mut s = store.endpoint_slices[&key].clone();
            if let Some(e) = s.endpoints.first_mut() {
                e.addresses = vec![if rng.chance(50) { "bad" } else { "10.9.9.9" }.into()];
            }
            store.apply(Object::EndpointSlice(s));
            format!("slice {key}")
        }
        _ => {
            // The domain (a config change: everything is re-examined).
            let key = ObjectKey::new("knative-serving", "config-domain");
            let Some(mut cm) = store.config_maps.get(&key).cloned() else {
                return "nothing".into();
            };
            let domain = if rng.chance(50) {
                "example.com"
            } else {
                "example.net"
            };
            cm.data = BTreeMap::from([(domain.to_string(), String::new())]);
            store.apply(Object::ConfigMap(cm));
            format!("domain {domain}")
        }
    }
}

type Served = BTreeMap<ObjectRef, Arc<Ingress>>;

fn served(m: &imbl::OrdMap<ObjectRef, Arc<Ingress>>) -> Served {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[test]
fn incremental_update_equals_full_look_through_random_changes() {
    for seed in 1..=4 {
        let w = generate(40, seed);
        let mut store = load(&w.files);
        let mut rng = SplitMix64::new(seed);
        let mut inc = Translator::new(Options::default());
        let mut reference = Translator::new(Options::default());
        store.take_dirty();
        let mut previous = served(&inc.update(&store, None).served);
        reference.update(&store, None);
        let mut removed = Vec::new();
        let mut history = Vec::new();
        // (host conflicts, last good served, broken slices, shadowed Routes) seen.
        let mut seen = [false; 4];
        for step in 0..400 {
            history.push(mutate(&mut store, &mut rng, &mut removed));
            let dirty = store.take_dirty();
            let got = inc.update(&store, Some(&dirty));
            let want = reference.update(&store, None);
            let now = served(&got.served);
            let ctx = || {
                format!(
                    "seed {seed} step {step}; changes: {:?}",
                    &history[history.len().saturating_sub(5)..]
                )
            };
            let want_served = served(&want.served);
            let differ: Vec<&ObjectRef> = now
                .keys()
                .chain(want_served.keys())
                .filter(|o| now.get(*o) != want_served.get(*o))
                .collect();
            assert!(
                differ.is_empty(),
                "served differs for {differ:?}: got {:?}, want {:?}; rejections got {:?} want {:?}; {}",
                differ.first().and_then(|o| now.get(*o)).map(|i| &i.rules[0].paths),
                differ.first().and_then(|o| want_served.get(*o)).map(|i| &i.rules[0].paths),
                got.rejections.iter().filter(|r| differ.contains(&&r.object)).map(|r| r.to_string()).collect::<Vec<_>>(),
                want.rejections.iter().filter(|r| differ.contains(&&r.object)).map(|r| r.to_string()).collect::<Vec<_>>(),
                ctx()
            );
            let brief = |r: &[crate::translate::Rejection]| -> Vec<String> {
                r.iter().map(|r| format!("{:?} {r}", r.reason)).collect()
            };
            assert_eq!(brief(&got.rejections), brief(&want.rejections), "{}", ctx());
            // Every origin whose served Ingress differs is reported changed.
            for (o, i) in &now {
                if previous.get(o).is_none_or(|p| p != i) {
                    assert!(got.changed.contains(o), "{o} not reported; {}", ctx());
                }
            }
            for o in previous.keys().filter(|o| !now.contains_key(*o)) {
                assert!(
                    got.changed.contains(o),
                    "removed {o} not reported; {}",
                    ctx()
                );
            }
            previous = now;
            for r in &got.rejections {
                seen[0] |= r.reason == crate::translate::RejectReason::HostConflict;
                seen[1] |= r.serving_last_good;
                seen[2] |= r.object.kind == Kind::EndpointSlice;
                seen[3] |= r.object.kind == Kind::Route;
            }
        }
        assert_eq!(
            seen, [true; 4],
            "seed {seed}: every kind of rejection came up"
        );
        assert!(
            !previous.is_empty() && removed.len() > 20,
            "the changes kept something to serve and removed objects"
        );
    }
}
