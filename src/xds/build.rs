//! Incremental snapshot building: the same resources as `translate::envoy::build` followed
//! by [`Snapshot::from_envoy`], but an object whose Ingress did not change, and a backend
//! whose Service and EndpointSlices did not change, keep their encoded resources from the
//! previous build: nothing unchanged is rebuilt, re-encoded or re-hashed.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::resource::{Resource, ResourceType};
use super::snapshot::{ResourceMap, Snapshot};
use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use prost::{Message, Name};

use crate::model::store::Dep;
use crate::model::{Kind, ObjectKey, ObjectRef, Store};
use crate::translate::envoy::{
    self, cluster_for, scoped_placeholders, scoped_resources, virtual_hosts, ListenerSettings,
    RouteLayout, EXTERNAL, INTERNAL,
};
use crate::translate::ir::{Backend, Ingress};

/// Only encoded bytes are kept: decoded protos are many times larger.
struct CachedIngress {
    ingress: Arc<Ingress>,
    /// Per-listener layout: (external, internal) virtual hosts as (name, encoded bytes).
    hosts: (Vec<(String, Vec<u8>)>, Vec<(String, Vec<u8>)>),
    /// Scoped layout: this object's RouteConfigurations and scopes, encoded.
    routes: Vec<Arc<Resource>>,
    scopes: Vec<Arc<Resource>>,
}

struct CachedBackend {
    /// The store's stamps of the Service and of its set of EndpointSlices when built.
    stamps: (Option<u64>, Option<u64>),
    cluster: Arc<Resource>,
    endpoints: Option<Arc<Resource>>,
}

/// Remembers what it built last time; see the module docs.
#[derive(Default)]
pub struct IncrementalBuilder {
    settings: Option<(ListenerSettings, bool)>,
    listeners: Vec<Arc<Resource>>,
    placeholders: Vec<(ResourceType, Arc<Resource>)>,
    ingresses: HashMap<ObjectRef, CachedIngress>,
    backends: HashMap<Backend, CachedBackend>,
}

/// A `RouteConfiguration` with only `name` (field 1) and `virtual_hosts` (field 2), encoded
/// from already encoded virtual hosts: the bytes prost gives for the same message.
fn route_configuration_bytes<'a>(name: &str, vhosts: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    use prost::encoding::{encode_key, encode_varint, WireType};
    let mut out = Vec::new();
    if !name.is_empty() {
        encode_key(1, WireType::LengthDelimited, &mut out);
        encode_varint(name.len() as u64, &mut out);
        out.extend_from_slice(name.as_bytes());
    }
    for v in vhosts {
        encode_key(2, WireType::LengthDelimited, &mut out);
        encode_varint(v.len() as u64, &mut out);
        out.extend_from_slice(v);
    }
    out
}

fn encode_all<M: prost::Message + prost::Name>(
    items: &[M],
    name: impl Fn(&M) -> &str,
) -> Vec<Arc<Resource>> {
    items.iter().map(|m| Resource::new(name(m), m)).collect()
}

impl IncrementalBuilder {
    pub fn new() -> IncrementalBuilder {
        IncrementalBuilder::default()
    }

    pub fn build(
        &mut self,
        ingresses: &[Arc<Ingress>],
        store: &Store,
        settings: &ListenerSettings,
        check_addresses: bool,
    ) -> Snapshot {
        if self.settings.as_ref().map(|(s, c)| (s, *c)) != Some((settings, check_addresses)) {
            *self = IncrementalBuilder::default();
            self.settings = Some((settings.clone(), check_addresses));
            let listeners = [
                envoy::listener(
                    EXTERNAL,
                    &settings.bind_address,
                    settings.external_port,
                    settings.layout,
                ),
                envoy::listener(
                    INTERNAL,
                    &settings.bind_address,
                    settings.internal_port,
                    settings.layout,
                ),
            ];
            self.listeners = encode_all(&listeners, |l| &l.name);
            if settings.layout == RouteLayout::Scoped {
                let (routes, scopes) = scoped_placeholders();
                for r in encode_all(&routes, |r| &r.name) {
                    self.placeholders.push((ResourceType::Route, r));
                }
                for s in encode_all(&scopes, |s| &s.name) {
                    self.placeholders.push((ResourceType::ScopedRoute, s));
                }
            }
        }
        let scoped = settings.layout == RouteLayout::Scoped;

        // Objects: reuse what an unchanged Ingress produced.
        let mut previous = std::mem::take(&mut self.ingresses);
        let mut backends: BTreeSet<&Backend> = BTreeSet::new();
        for ing in ingresses {
            backends.extend(ing.backends());
            let cached = match previous.remove(&ing.origin) {
                // The translator hands back the same Arc for an unchanged object.
                Some(c) if Arc::ptr_eq(&c.ingress, ing) || c.ingress == *ing => c,
                _ => {
                    let vhosts = virtual_hosts(ing);
                    let (routes, scopes, hosts) = if scoped {
                        let (r, s) = scoped_resources(ing, &vhosts);
                        let (r, s) = (encode_all(&r, |r| &r.name), encode_all(&s, |s| &s.name));
                        (r, s, Default::default())
                    } else {
                        let encode = |v: &[VirtualHost]| {
                            v.iter()
                                .map(|h| (h.name.clone(), h.encode_to_vec()))
                                .collect()
                        };
                        (
                            Vec::new(),
                            Vec::new(),
                            (encode(&vhosts.0), encode(&vhosts.1)),
                        )
                    };
                    CachedIngress {
                        ingress: Arc::clone(ing),
                        hosts,
                        routes,
                        scopes,
                    }
                }
            };
            self.ingresses.insert(ing.origin.clone(), cached);
        }

        // Backends: reuse while their Service and EndpointSlices are unchanged.
        let mut previous = std::mem::take(&mut self.backends);
        let mut clusters = ResourceMap::new();
        let mut endpoints = ResourceMap::new();
        for b in backends {
            let key = ObjectKey::new(b.namespace.clone(), b.service.clone());
            let stamps = (
                store.stamp(&Dep::Object(Kind::Service, key.clone())),
                store.stamp(&Dep::ServiceSlices(key.clone())),
            );
            let cached = match previous.remove(b) {
                Some(c) if c.stamps == stamps => c,
                _ => {
                    let service = store.services.get(&key);
                    let (cluster, cla) = cluster_for(b, service, store, check_addresses);
                    CachedBackend {
                        stamps,
                        cluster: Resource::new(cluster.name.clone(), &cluster),
                        endpoints: cla.map(|c| Resource::new(c.cluster_name.clone(), &c)),
                    }
                }
            };
            clusters.insert(cached.cluster.name.clone(), cached.cluster.clone());
            if let Some(e) = &cached.endpoints {
                endpoints.insert(e.name.clone(), e.clone());
            }
            self.backends.insert(b.clone(), cached);
        }

        let listeners: ResourceMap = self
            .listeners
            .iter()
            .map(|l| (l.name.clone(), l.clone()))
            .collect();
        let mut routes = ResourceMap::new();
        if scoped {
            let mut scopes = ResourceMap::new();
            for (ty, r) in &self.placeholders {
                match ty {
                    ResourceType::ScopedRoute => scopes.insert(r.name.clone(), r.clone()),
                    _ => routes.insert(r.name.clone(), r.clone()),
                };
            }
            for c in self.ingresses.values() {
                routes.extend(c.routes.iter().map(|r| (r.name.clone(), r.clone())));
                scopes.extend(c.scopes.iter().map(|s| (s.name.clone(), s.clone())));
            }
            let mut s = Snapshot::new(clusters, endpoints, listeners, routes);
            *s.resources_mut(ResourceType::ScopedRoute) = scopes;
            s
        } else {
            // One RouteConfiguration per listener: reassembled from the cached virtual hosts.
            let mut external = Vec::new();
            let mut internal = Vec::new();
            for ing in ingresses {
                if let Some(c) = self.ingresses.get(&ing.origin) {
                    external.extend(c.hosts.0.iter());
                    internal.extend(c.hosts.1.iter());
                }
            }
            external.sort_by(|a, b| a.0.cmp(&b.0));
            internal.sort_by(|a, b| a.0.cmp(&b.0));
            for (name, vhosts) in [(EXTERNAL, external), (INTERNAL, internal)] {
                let rc = route_configuration_bytes(name, vhosts.iter().map(|(_, b)| b.as_slice()));
                routes.insert(
                    name.to_string(),
                    Resource::from_encoded(name, RouteConfiguration::type_url(), rc),
                );
            }
            Snapshot::new(clusters, endpoints, listeners, routes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::objects::{Route, TrafficTarget};
    use crate::model::{Kind, Object};
    use crate::sources::manifests::Manifests;
    use crate::translate::{Options, Translator};

    /// The reference: the same translation history, nothing cached, nothing incremental.
    fn full(t: &mut Translator, store: &Store) -> Snapshot {
        t.clear_cache();
        let out = t.translate(store);
        Snapshot::from_envoy(&out.envoy, None)
    }

    fn names(s: &Snapshot) -> Vec<(String, String)> {
        ResourceType::ORDERED
            .iter()
            .flat_map(|t| {
                s.resources(*t)
                    .values()
                    .map(|r| (r.name.clone(), r.version.clone()))
            })
            .collect()
    }

    fn incremental(b: &mut IncrementalBuilder, t: &mut Translator, store: &Store) -> Snapshot {
        let out = t.translate_ingresses(store);
        b.build(
            &out.ingresses,
            store,
            &t.options.listeners,
            t.options.check_endpoint_addresses,
        )
    }

    fn load(example: &str) -> Store {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("examples")
            .join(example);
        let mut m = Manifests::new(dir);
        m.reload().unwrap();
        m.store
    }

    /// The incremental builder gives exactly the full build's resources, for every example,
    /// both layouts, across a sequence of changes.
    #[test]
    fn incremental_build_equals_full_build_through_changes() {
        for layout in [RouteLayout::Scoped, RouteLayout::PerListener] {
            for example in [
                "traffic-example",
                "helloworld-go",
                "blue-green-demo",
                "cluster-local",
                "domain-mapping",
            ] {
                let mut options = Options::default();
                options.listeners.layout = layout;
                let mut store = load(example);
                let mut t = Translator::new(options.clone());
                let mut reference = Translator::new(options.clone());
                let mut b = IncrementalBuilder::new();
                let mut check =
                    |store: &Store, b: &mut IncrementalBuilder, t: &mut Translator, step: &str| {
                        let inc = incremental(b, t, store);
                        let want = full(&mut reference, store);
                        assert_eq!(names(&inc), names(&want), "{example} {layout:?} {step}");
                        assert!(!inc.is_empty());
                    };
                check(&store, &mut b, &mut t, "initial");
                // A new Route, then a changed one, then a removed EndpointSlice and Service.
                let rev = store.revisions.keys().next().unwrap().clone();
                let route = Route {
                    metadata: crate::model::objects::ObjectMeta {
                        name: "extra".into(),
                        namespace: rev.namespace.clone(),
                        ..Default::default()
                    },
                    spec: crate::model::objects::RouteSpec {
                        traffic: vec![TrafficTarget {
                            revision_name: Some(rev.name.clone()),
                            percent: Some(100),
                            tag: Some("t".into()),
                            ..Default::default()
                        }],
                    },
                };
                store.apply(Object::Route(route.clone()));
                check(&store, &mut b, &mut t, "route added");
                let mut changed = route;
                changed.spec.traffic[0].tag = Some("u".into());
                store.apply(Object::Route(changed));
                check(&store, &mut b, &mut t, "route changed");
                if let Some(k) = store.endpoint_slices.keys().next().cloned() {
                    store.delete(Kind::EndpointSlice, &k);
                    check(&store, &mut b, &mut t, "slice removed");
                }
                if let Some(k) = store.services.keys().next().cloned() {
                    store.delete(Kind::Service, &k);
                    check(&store, &mut b, &mut t, "service removed");
                }
                store.delete(Kind::Route, &ObjectKey::new(rev.namespace.clone(), "extra"));
                check(&store, &mut b, &mut t, "route removed");
                // A Revision stops being ready; a new one appears; the domain changes.
                let mut r = store.revisions.values().next().unwrap().clone();
                r.status = Some(crate::model::objects::Status {
                    conditions: vec![crate::model::objects::Condition {
                        type_: "Ready".into(),
                        status: "False".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                });
                store.apply(Object::Revision(r.clone()));
                check(&store, &mut b, &mut t, "revision unready");
                r.status = None;
                r.metadata.name = format!("{}-new", r.metadata.name);
                r.metadata.labels.insert(
                    crate::translate::route::CONFIGURATION_GENERATION_LABEL.into(),
                    "99".into(),
                );
                store.apply(Object::Revision(r));
                check(&store, &mut b, &mut t, "newer revision");
                let mut cm = store.config_maps.values().next().unwrap().clone();
                if cm.metadata.name == "config-domain" {
                    cm.data = [("other.org".to_string(), String::new())].into();
                    store.apply(Object::ConfigMap(cm));
                    check(&store, &mut b, &mut t, "domain changed");
                }
            }
        }
    }
}
