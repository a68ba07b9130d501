//! Helpers for tests elsewhere in the workspace (behind the `testing` feature): a store
//! from a generated workload's files, and random changes of every kind to compare
//! change-driven work with a full look.

use std::collections::BTreeMap;
use std::path::Path;

use workload::SplitMix64;

use crate::objects::{
    ClusterDomainClaim, ClusterDomainClaimSpec, Condition, DomainMapping, DomainMappingSpec,
    KReference, ObjectMeta, Route, RouteSpec, Status,
};
use crate::{Kind, Object, ObjectKey, Store};

fn pick<T: Clone>(rng: &mut SplitMix64, items: &[T]) -> Option<T> {
    (!items.is_empty()).then(|| items[rng.below(items.len() as u64) as usize].clone())
}

fn meta(namespace: &str, name: &str, created: u64) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        namespace: namespace.into(),
        creation_timestamp: Some(format!("2026-01-01T00:00:{:02}Z", created % 60).into()),
        ..Default::default()
    }
}

/// The store of every `*.yaml` file in `dir` and its subfolders (an example folder).
pub fn load_dir(dir: &Path) -> Store {
    fn collect(dir: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read the folder")
            .map(|e| e.expect("a folder entry").path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                collect(&p, out);
            } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                let text = std::fs::read_to_string(&p).expect("read a manifest");
                out.push((p.display().to_string(), text));
            }
        }
    }
    let mut files = Vec::new();
    collect(dir, &mut files);
    load(&files)
}

/// The store of a workload's files.
pub fn load(files: &[(String, String)]) -> Store {
    let mut store = Store::new();
    for (path, text) in files {
        if let Ok(objects) = crate::parse::parse_file(Path::new(path), text) {
            for o in objects {
                store.apply(o);
            }
        }
    }
    store
}

/// One random change to a store of a generated workload, of any kind: deletions and
/// restorations (`removed` keeps what was deleted), Revisions turning (un)ready, splits,
/// tags and creation times, Routes shadowed by Services, DomainMappings (some onto a
/// Service's own host: host conflicts), broken EndpointSlices, and the domain (a config
/// change). Returns what it did. For tests that compare incremental work with a full look.
pub fn random_change(store: &mut Store, rng: &mut SplitMix64, removed: &mut Vec<Object>) -> String {
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
                .is_none_or(|s| s.conditions.iter().any(|c| &*c.status == "True"));
            r.status = Some(Status {
                conditions: [Condition {
                    type_: "Ready".into(),
                    status: if ready { "False" } else { "True" }.into(),
                    ..Default::default()
                }]
                .into(),
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
                    namespace: target.namespace.to_string(),
                },
            }));
            store.apply(Object::DomainMapping(DomainMapping {
                metadata: meta(&target.namespace, &name, rng.below(60)),
                spec: DomainMappingSpec {
                    ref_: KReference {
                        api_version: "serving.knative.dev/v1".into(),
                        kind: "Service".into(),
                        name: target.name.to_string(),
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
                e.addresses = [if rng.chance(50) { "bad" } else { "10.9.9.9" }.into()].into();
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

/// A `kubernetes.io/tls` Secret holding `crt` and `key` (PEM), for tests of HTTPS.
pub fn tls_secret(namespace: &str, name: &str, crt: &str, key: &str) -> Object {
    use crate::objects::{PrivateKey, Secret, SECRET_TYPE_TLS};
    let mut s = Secret {
        type_: SECRET_TYPE_TLS.into(),
        tls_crt: Some(crt.as_bytes().into()),
        tls_key: Some(PrivateKey(key.as_bytes().into())),
        ..Default::default()
    };
    s.metadata.namespace = namespace.into();
    s.metadata.name = name.into();
    Object::Secret(s)
}
