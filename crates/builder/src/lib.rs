//! Incremental snapshot building: the same resources as `translate::envoy::build` followed
//! by [`snapshot_from_envoy`], but an object whose Ingress did not change, and a backend
//! whose Service and EndpointSlices did not change, keep their encoded resources from the
//! previous build: nothing unchanged is rebuilt, re-encoded or re-hashed.

use std::collections::BTreeSet;

use foldhash::HashMap;

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use translate::ir::Backend;

use envoy_api::pb::envoy::config::route::v3::VirtualHost;
use prost::Message;
use xds::resource::{Resource, ResourceType, Served};
use xds::snapshot::{ResourceMap, Snapshot};
use xds::wire::{put_header, put_str};

use model::store::Dep;
use model::{Kind, ObjectKey, ObjectRef, Store};
use translate::envoy::{
    self, cluster_for, scoped_placeholders, scoped_resources_with, virtual_hosts, ListenerSettings,
    RouteLayout, EXTERNAL, INTERNAL,
};
use translate::ir::Ingress;
use translate::tls::{self, TlsPlan, EXTERNAL_TLS, INTERNAL_TLS};

/// Virtual hosts as (name, encoded bytes).
type EncodedHosts = Vec<(String, Vec<u8>)>;

/// Only encoded bytes are kept: decoded protos are many times larger. (Boxed slices, and
/// the per-listener layout's hosts boxed apart: one is kept per served object.)
struct CachedIngress {
    ingress: Arc<Ingress>,
    /// Per-listener layout: the virtual hosts of the external, internal, external HTTPS
    /// and internal HTTPS listeners.
    hosts: Option<Box<[EncodedHosts; 4]>>,
    /// Scoped layout: this object's RouteConfigurations, encoded. (Its scopes are not kept
    /// here, ~9 an object: their names follow from the Ingress.)
    routes: Box<[Arc<Resource>]>,
    /// The backends its splits use, each once.
    backends: Box<[Backend]>,
}

/// The store's stamps of a Service and of its set of EndpointSlices (never 0, so an absent
/// one costs no room).
type ServiceStamps = (Option<NonZeroU64>, Option<NonZeroU64>);

struct CachedBackend {
    /// The Service's stamps when built.
    stamps: ServiceStamps,
    cluster: Arc<Resource>,
    endpoints: Option<Arc<Resource>>,
    /// How many served objects use it.
    users: usize,
}

/// Remembers what it built last time and the resulting resource maps; see the module docs.
#[derive(Default)]
pub struct IncrementalBuilder {
    settings: Option<(ListenerSettings, bool)>,
    ingresses: HashMap<ObjectRef, CachedIngress>,
    backends: HashMap<Backend, CachedBackend>,
    /// Backends by their Service (namespace, name): what a Service or EndpointSlice change
    /// rebuilds.
    /// (A sorted `Vec`: nearly always one backend, and a `BTreeSet` node is ~0.5 KB.)
    by_service: HashMap<ObjectKey, Vec<Backend>>,
    /// The current resources of each type (persistent maps: a snapshot is an O(1) copy).
    maps: [ResourceMap; ResourceType::COUNT],
    /// Inserts (`Some`) and removals (`None`) not yet applied to `maps`, in order: applied
    /// together at the end of a build, so that a cold start's maps are built dense
    /// ([`xds::ordmap::apply`]).
    pending: [Vec<MapOp>; ResourceType::COUNT],
    /// Served objects that name certificates: what HTTPS planning reads (besides Secrets).
    tls_objects: std::collections::BTreeMap<ObjectRef, Arc<Ingress>>,
    planner: tls::Planner,
    /// The HTTPS side of the current snapshot.
    plan: TlsPlan,
    /// `plan` was made since the settings were set.
    planned: bool,
}

/// An insert (`Some`) or a removal (`None`) of the named resource.
type MapOp = (Arc<str>, Option<Arc<Resource>>);

/// A `RouteConfiguration` with only `name` (field 1) and `virtual_hosts` (field 2), encoded
/// from already encoded virtual hosts: the bytes prost gives for the same message.
fn route_configuration_bytes<'a>(name: &str, vhosts: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    put_str(1, name.as_bytes(), &mut out);
    for v in vhosts {
        put_header(2, v.len(), &mut out);
        out.extend_from_slice(v);
    }
    out
}

/// [`envoy::scope`] as a [`Resource::scope`], which keeps only the RouteConfiguration's
/// name (shared by the object's scopes) besides its own: a cold start makes ~9 per Route.
fn scope_resource(listener: &str, key: &str, route_config: &Arc<str>) -> Arc<Resource> {
    Resource::scope(
        xds::names::scope(listener, key).into(),
        key,
        route_config.clone(),
    )
}

fn encode_all<M: Served>(items: &[M], name: impl Fn(&M) -> &str) -> Vec<Arc<Resource>> {
    items.iter().map(|m| Resource::new(name(m), m)).collect()
}

impl IncrementalBuilder {
    pub fn new() -> IncrementalBuilder {
        IncrementalBuilder::default()
    }

    /// Builds the snapshot of `ingresses`, reusing whatever did not change since the
    /// previous call (it compares every object and backend: O(all), but nothing unchanged
    /// is re-encoded).
    /// `now` (Unix seconds) checks certificates' validity (`None`: not checked).
    pub fn build(
        &mut self,
        ingresses: &[Arc<Ingress>],
        store: &Store,
        settings: &ListenerSettings,
        check_addresses: bool,
        now: Option<i64>,
    ) -> Snapshot {
        self.configure(settings, check_addresses);
        self.compare_all(ingresses, store, Encoded::default(), now)
    }

    /// The HTTPS side of the last snapshot built: certificates served, and problems.
    pub fn tls_plan(&self) -> &TlsPlan {
        &self.plan
    }

    /// Applies whatever differs between the objects built and `ingresses`, and rebuilds
    /// every backend whose Service or EndpointSlices changed.
    fn compare_all(
        &mut self,
        ingresses: &[Arc<Ingress>],
        store: &Store,
        ahead: Encoded,
        now: Option<i64>,
    ) -> Snapshot {
        let mut changes: Vec<(ObjectRef, Option<Arc<Ingress>>)> = Vec::new();
        let mut present = foldhash::HashSet::default();
        for ing in ingresses {
            present.insert(&ing.origin);
            let same = self
                .ingresses
                .get(&ing.origin)
                .is_some_and(|c| Arc::ptr_eq(&c.ingress, ing) || c.ingress == *ing);
            if !same {
                changes.push((ing.origin.clone(), Some(ing.clone())));
            }
        }
        for origin in self.ingresses.keys() {
            if !present.contains(origin) {
                changes.push((origin.clone(), None));
            }
        }
        let services: Vec<ObjectKey> = self.by_service.keys().cloned().collect();
        self.apply(changes, services, None, store, ahead, now)
    }

    /// Brings the snapshot up to date with the translator's [`translate::Update`]:
    /// only the objects in `changed` and the backends of the Services in `dirty` (the
    /// store's changes; `None` for everything) are looked at. What [`encode_ahead`] encoded
    /// (`ahead`) is taken instead of encoding it again, for the same objects and layout.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        served: &imbl::OrdMap<ObjectRef, Arc<Ingress>>,
        changed: &BTreeSet<ObjectRef>,
        dirty: Option<&model::store::DepSet>,
        store: &Store,
        settings: &ListenerSettings,
        check_addresses: bool,
        ahead: Encoded,
        now: Option<i64>,
    ) -> Snapshot {
        let reset = self.configure(settings, check_addresses);
        let Some(dirty) = dirty.filter(|_| !reset) else {
            // New settings, or everything changed: every object and backend is compared.
            let all: Vec<Arc<Ingress>> = served.values().cloned().collect();
            return self.compare_all(&all, store, ahead, now);
        };
        let secrets: Vec<ObjectKey> = dirty
            .iter()
            .filter_map(|d| match d {
                Dep::Object(Kind::Secret, k) => Some(k.clone()),
                _ => None,
            })
            .collect();
        let changes = changed
            .iter()
            .map(|o| (o.clone(), served.get(o).cloned()))
            .collect();
        let services = dirty
            .iter()
            .filter_map(|d| match d {
                Dep::Object(Kind::Service, k) | Dep::ServiceSlices(k) => Some(k.clone()),
                _ => None,
            })
            .collect();
        self.apply(changes, services, Some(secrets), store, ahead, now)
    }

    /// Starts over when the settings change; returns whether it did.
    fn configure(&mut self, settings: &ListenerSettings, check_addresses: bool) -> bool {
        if self.settings.as_ref().map(|(s, c)| (s, *c)) == Some((settings, check_addresses)) {
            return false;
        }
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
        for l in encode_all(&listeners, |l| &l.name) {
            self.insert(ResourceType::Listener, l);
        }
        if settings.layout == RouteLayout::Scoped {
            let (routes, scopes) = scoped_placeholders();
            for r in encode_all(&routes, |r| &r.name) {
                self.insert(ResourceType::Route, r);
            }
            for s in encode_all(&scopes, |s| &s.name) {
                self.insert(ResourceType::ScopedRoute, s);
            }
        }
        true
    }

    fn insert(&mut self, ty: ResourceType, r: Arc<Resource>) {
        self.pending[ty as usize].push((r.name.clone(), Some(r)));
    }

    fn remove(&mut self, ty: ResourceType, name: Arc<str>) {
        self.pending[ty as usize].push((name, None));
    }

    /// Applies object changes and rebuilds the backends of `services`; plans HTTPS again
    /// when an object naming certificates changed, a certificate's validity did by `now`,
    /// or Secrets changed (`secrets`: these; `None`: any may have): when only Secrets
    /// changed, only they are looked at.
    fn apply(
        &mut self,
        changes: Vec<(ObjectRef, Option<Arc<Ingress>>)>,
        services: Vec<ObjectKey>,
        secrets: Option<Vec<ObjectKey>>,
        store: &Store,
        mut ahead: Encoded,
        now: Option<i64>,
    ) -> Snapshot {
        let Some((settings, check_addresses)) = self.settings.clone() else {
            return Snapshot::default();
        };
        let scoped = settings.layout == RouteLayout::Scoped;
        let default_cert = settings.tls.default_secret.is_some();
        let mut replan = secrets.is_none()
            || !self.planned
            || self
                .plan
                .next_change
                .zip(now)
                .is_some_and(|(at, now)| now >= at);
        // Removals first: a host can move from one object to another in one change.
        let mut added = Vec::new();
        let mut objects_changed = false;
        for (origin, new) in changes {
            let had_tls = self.tls_objects.remove(&origin).is_some();
            if let Some(n) = new.as_ref().filter(|n| !n.tls.is_empty()) {
                self.tls_objects.insert(origin.clone(), n.clone());
                replan = true;
            }
            replan |= had_tls;
            if let Some(old) = self.ingresses.remove(&origin) {
                if new.as_ref().is_some_and(|n| Arc::ptr_eq(n, &old.ingress)) {
                    self.ingresses.insert(origin, old);
                    continue;
                }
                objects_changed = true;
                for r in &old.routes {
                    self.remove(ResourceType::Route, r.name.clone());
                }
                if scoped {
                    let vhosts = virtual_hosts(&old.ingress, true);
                    let (_, mut names) =
                        scoped_resources_with(&old.ingress, vhosts, |l, key, _| {
                            xds::names::scope(l, key)
                        });
                    let rc: Arc<str> = "".into();
                    names.extend(tls::https_scopes_with(
                        &old.ingress,
                        default_cert,
                        &rc,
                        |l, key, _| xds::names::scope(l, key),
                    ));
                    for n in names {
                        self.remove(ResourceType::ScopedRoute, n.into());
                    }
                }
                for b in &old.backends {
                    self.release(b);
                }
            }
            added.extend(new);
        }
        objects_changed |= !added.is_empty();
        // Encoding is pure and independent per object and per backend: on every core when
        // there is much of it (a cold start), after what was encoded ahead.
        let mut encoded = Vec::with_capacity(added.len());
        let mut rest = Vec::new();
        for ing in added {
            match ahead.take(&ing, scoped, default_cert) {
                Some(e) => encoded.push(e),
                None => rest.push(ing),
            }
        }
        drop(ahead); // what host ownership did not serve, before the big allocations
        encoded.extend(model::par::map(&rest, PARALLEL_MIN, |ing| {
            encode_ingress(ing.clone(), scoped, default_cert)
        }));
        let mut new_backends: Vec<Backend> = encoded
            .iter()
            .flat_map(|(c, _)| c.backends.iter())
            .filter(|b| !self.backends.contains_key(*b))
            .cloned()
            .collect();
        new_backends.sort();
        new_backends.dedup();
        let build = |b: &Backend| build_backend(b, store, check_addresses);
        // The objects' resources are filed, and the scope map rebuilt, while the new backends
        // are built: at a cold start on other threads, as both take long and this thread's
        // part would leave a core idle. (Nothing after this adds scopes.)
        let mut uses: Vec<Backend> = Vec::new();
        let file = |this: &mut Self| {
            for (c, scopes) in encoded {
                for r in &c.routes {
                    this.insert(ResourceType::Route, r.clone());
                }
                for s in scopes {
                    this.insert(ResourceType::ScopedRoute, s);
                }
                uses.extend(c.backends.iter().cloned());
                this.ingresses.insert(c.ingress.origin.clone(), c);
            }
            let scopes = ResourceType::ScopedRoute as usize;
            let ops = std::mem::take(&mut this.pending[scopes]);
            xds::ordmap::apply(&mut this.maps[scopes], ops);
        };
        let (built, ()) = model::par::beside(
            new_backends.len() >= 2 * PARALLEL_MIN,
            || model::par::map(&new_backends, PARALLEL_MIN, build),
            || file(self),
        );
        // The new clusters and CLAs go into their maps (at a cold start, when there are many,
        // on another thread) while this thread files the backends and counts their users.
        for c in &built {
            self.put_resources(c);
        }
        let (cla, cluster) = (
            ResourceType::Endpoint as usize,
            ResourceType::Cluster as usize,
        );
        let mut maps = [cla, cluster].map(|ty| {
            (
                std::mem::take(&mut self.maps[ty]),
                std::mem::take(&mut self.pending[ty]),
            )
        });
        let (maps, ()) = model::par::beside(
            new_backends.len() >= 2 * PARALLEL_MIN,
            || {
                for (map, ops) in &mut maps {
                    xds::ordmap::apply(map, std::mem::take(ops));
                }
                maps
            },
            || {
                for (b, c) in new_backends.iter().zip(built) {
                    let set = self.by_service.entry(service_key(b)).or_default();
                    if let Err(at) = set.binary_search(b) {
                        // Nearly always one backend per Service: room for one, not four.
                        set.reserve_exact(usize::from(set.is_empty()));
                        set.insert(at, b.clone());
                    }
                    self.backends.insert(b.clone(), c);
                }
                for b in &uses {
                    if let Some(cached) = self.backends.get_mut(b) {
                        cached.users += 1;
                    }
                }
            },
        );
        let [(cla_map, _), (cluster_map, _)] = maps;
        self.maps[cla] = cla_map;
        self.maps[cluster] = cluster_map;

        // Backends whose Service or EndpointSlices changed.
        for key in services {
            let Some(backends) = self.by_service.get(&key) else {
                continue;
            };
            let stamps = service_stamps(store, &key);
            let stale: Vec<Backend> = backends
                .iter()
                .filter(|b| self.backends.get(*b).is_some_and(|c| c.stamps != stamps))
                .cloned()
                .collect();
            for b in stale {
                let mut fresh = build_backend(&b, store, check_addresses);
                fresh.users = self.backends.get(&b).map_or(0, |c| c.users);
                self.put_backend(&b, fresh);
            }
        }

        let https_before: Vec<&'static str> = envoy::https_listener_names(&self.plan).collect();
        if replan {
            self.replan(&settings, store, now);
            self.planned = true;
        } else if let Some(changed) = secrets.filter(|s| !s.is_empty()) {
            self.update_secrets(&settings, store, now, &changed);
        }
        let https: Vec<&'static str> = envoy::https_listener_names(&self.plan).collect();

        if !scoped && (objects_changed || https != https_before) {
            // One RouteConfiguration per listener: reassembled from the cached virtual hosts.
            let mut all: [Vec<&(String, Vec<u8>)>; 4] = Default::default();
            for c in self.ingresses.values() {
                if let Some(hosts) = &c.hosts {
                    for (out, h) in all.iter_mut().zip(hosts.iter()) {
                        out.extend(h.iter());
                    }
                }
            }
            let names = [EXTERNAL, INTERNAL, EXTERNAL_TLS, INTERNAL_TLS];
            for (name, mut vhosts) in names.into_iter().zip(all) {
                if (name == EXTERNAL_TLS || name == INTERNAL_TLS) && !https.contains(&name) {
                    continue;
                }
                vhosts.sort_by(|a, b| a.0.cmp(&b.0));
                let rc = route_configuration_bytes(name, vhosts.iter().map(|(_, b)| b.as_slice()));
                let r = Resource::from_encoded(name, ResourceType::Route, rc);
                self.pending[ResourceType::Route as usize].push((r.name.clone(), Some(r)));
            }
        }

        for (map, ops) in self.maps.iter_mut().zip(&mut self.pending) {
            xds::ordmap::apply(map, std::mem::take(ops));
        }
        let [clusters, endpoints, secrets, listeners, scoped_routes, routes] = self.maps.clone();
        let mut s = Snapshot::new(clusters, endpoints, listeners, routes);
        *s.resources_mut(ResourceType::ScopedRoute) = scoped_routes;
        *s.resources_mut(ResourceType::Secret) = secrets;
        s
    }

    /// Only Secrets changed: the planner updates the plan for those when it can (a
    /// rotation), else plans again.
    fn update_secrets(
        &mut self,
        settings: &ListenerSettings,
        store: &Store,
        now: Option<i64>,
        changed: &[ObjectKey],
    ) {
        let mut plan = std::mem::take(&mut self.plan);
        if !self.planner.update_secrets(&mut plan, store, changed, now) {
            self.plan = plan;
            return self.replan(settings, store, now);
        }
        for key in changed {
            let name = tls::secret_name(key);
            if let Some(c) = plan.secrets.get(&name) {
                self.insert(ResourceType::Secret, secret_resource(&name, c));
            }
        }
        self.plan = plan;
    }

    /// Plans HTTPS again and files what changed: Secrets, the HTTPS listeners, and (when
    /// a listener comes or goes) its scope placeholder or RouteConfiguration.
    fn replan(&mut self, settings: &ListenerSettings, store: &Store, now: Option<i64>) {
        let https_before: Vec<&'static str> = envoy::https_listener_names(&self.plan).collect();
        let plan = self.planner.plan(
            self.tls_objects.values().map(|i| &**i),
            store,
            &settings.tls,
            now,
        );
        for (name, c) in &plan.secrets {
            if self.plan.secrets.get(name) != Some(c) {
                self.insert(ResourceType::Secret, secret_resource(name, c));
            }
        }
        let gone: Vec<Arc<str>> = self
            .plan
            .secrets
            .keys()
            .filter(|n| !plan.secrets.contains_key(*n))
            .cloned()
            .collect();
        for name in gone {
            self.remove(ResourceType::Secret, name);
        }
        let chains_changed =
            plan.external != self.plan.external || plan.internal != self.plan.internal;
        if chains_changed {
            for l in envoy::https_listeners(settings, &plan) {
                let r = Resource::new(l.name.as_str(), &l);
                self.insert(ResourceType::Listener, r);
            }
        }
        let https: Vec<&'static str> = envoy::https_listener_names(&plan).collect();
        let scoped = settings.layout == RouteLayout::Scoped;
        for name in [EXTERNAL_TLS, INTERNAL_TLS] {
            let (was, is) = (https_before.contains(&name), https.contains(&name));
            if was && !is {
                self.remove(ResourceType::Listener, name.into());
                if scoped {
                    let (rc, scope) = envoy::scoped_placeholder(name);
                    let name: Arc<str> = xds::names::into_internal(scope.name).into();
                    self.remove(ResourceType::ScopedRoute, name);
                    self.remove(ResourceType::Route, rc.name.into());
                } else {
                    self.remove(ResourceType::Route, name.into());
                }
            }
            if is && !was && scoped {
                let (rc, scope) = envoy::scoped_placeholder(name);
                self.insert(
                    ResourceType::ScopedRoute,
                    Resource::new(scope.name.as_str(), &scope),
                );
                self.insert(ResourceType::Route, Resource::new(rc.name.as_str(), &rc));
            }
        }
        self.plan = plan;
    }

    fn release(&mut self, b: &Backend) {
        let Some(c) = self.backends.get_mut(b) else {
            return;
        };
        c.users -= 1;
        if c.users > 0 {
            return;
        }
        if let Some(c) = self.backends.remove(b) {
            self.remove(ResourceType::Cluster, c.cluster.name.clone());
            if let Some(e) = &c.endpoints {
                self.remove(ResourceType::Endpoint, e.name.clone());
            }
        }
        let key = service_key(b);
        if let Some(set) = self.by_service.get_mut(&key) {
            set.retain(|x| x != b);
            if set.is_empty() {
                self.by_service.remove(&key);
            }
        }
    }

    fn put_backend(&mut self, b: &Backend, c: CachedBackend) {
        self.put_resources(&c);
        self.backends.insert(b.clone(), c);
    }

    /// A backend's cluster and CLA (or the CLA's removal) as pending map ops.
    fn put_resources(&mut self, c: &CachedBackend) {
        self.insert(ResourceType::Cluster, c.cluster.clone());
        match &c.endpoints {
            Some(e) => self.insert(ResourceType::Endpoint, e.clone()),
            None => self.remove(ResourceType::Endpoint, c.cluster.name.clone()),
        }
    }
}

/// Objects encoded before [`IncrementalBuilder::update`] by [`encode_ahead`], by the
/// address of their `Arc<Ingress>`: taken for that very object in the same layout only.
#[derive(Default)]
pub struct Encoded {
    scoped: bool,
    default_cert: bool,
    by_object: HashMap<usize, (CachedIngress, Vec<Arc<Resource>>)>,
}

impl Encoded {
    fn take(
        &mut self,
        ing: &Arc<Ingress>,
        scoped: bool,
        default_cert: bool,
    ) -> Option<(CachedIngress, Vec<Arc<Resource>>)> {
        if self.scoped != scoped || self.default_cert != default_cert {
            return None;
        }
        // The entry holds its `Arc`, so no other object can have had this address meanwhile.
        let e = self.by_object.remove(&(Arc::as_ptr(ing) as usize))?;
        Arc::ptr_eq(&e.0.ingress, ing).then_some(e)
    }
}

/// Encodes `ingresses` one after the other until `done` is set (at a cold start, on the
/// core the translator leaves idle while it settles host ownership).
pub fn encode_ahead(
    ingresses: &[Arc<Ingress>],
    settings: &ListenerSettings,
    done: &AtomicBool,
) -> Encoded {
    let scoped = settings.layout == RouteLayout::Scoped;
    let default_cert = settings.tls.default_secret.is_some();
    let mut by_object = HashMap::default();
    for ing in ingresses {
        if done.load(Ordering::Relaxed) {
            break;
        }
        by_object.insert(
            Arc::as_ptr(ing) as usize,
            encode_ingress(ing.clone(), scoped, default_cert),
        );
    }
    Encoded {
        scoped,
        default_cert,
        by_object,
    }
}

/// One object's resources, encoded: its cache record, and its scopes (which the record does
/// not keep).
fn encode_ingress(
    ing: Arc<Ingress>,
    scoped: bool,
    default_cert: bool,
) -> (CachedIngress, Vec<Arc<Resource>>) {
    let vhosts = virtual_hosts(&ing, scoped);
    let (routes, scopes, hosts) = if scoped {
        let (r, mut s) = scoped_resources_with(&ing, vhosts, scope_resource);
        if default_cert || !ing.tls.is_empty() {
            // The HTTPS listeners' scopes point at the object's RouteConfiguration too
            // (sharing its name).
            let name = envoy::scoped_route_config_name(&ing);
            let rc = s
                .iter()
                .filter_map(|s| s.route_config())
                .find(|n| ***n == *name)
                .cloned()
                .unwrap_or_else(|| name.into());
            s.extend(tls::https_scopes_with(
                &ing,
                default_cert,
                &rc,
                scope_resource,
            ));
        }
        // Each RouteConfiguration shares its name with the scopes that point at it.
        let routes = r
            .iter()
            .map(|rc| {
                let shared = s
                    .iter()
                    .filter_map(|s| s.route_config())
                    .find(|n| ***n == *rc.name);
                match shared {
                    Some(name) => Resource::new(name.clone(), rc),
                    None => Resource::new(rc.name.as_str(), rc),
                }
            })
            .collect();
        (routes, s, None)
    } else {
        let encode = |v: &[VirtualHost]| {
            v.iter()
                .map(|h| (h.name.clone(), h.encode_to_vec()))
                .collect()
        };
        let (ext_tls, int_tls) = tls::https_virtual_hosts(&ing, default_cert);
        (
            Vec::new(),
            Vec::new(),
            Some(Box::new([
                encode(&vhosts.0),
                encode(&vhosts.1),
                encode(&ext_tls),
                encode(&int_tls),
            ])),
        )
    };
    let backends: BTreeSet<&Backend> = ing.backends().collect();
    let backends = backends.into_iter().cloned().collect();
    let cached = CachedIngress {
        ingress: ing,
        hosts,
        routes: routes.into(),
        backends,
    };
    (cached, scopes)
}

/// A checked certificate as its SDS resource.
fn secret_resource(name: &Arc<str>, c: &tls::Checked) -> Arc<Resource> {
    Resource::new(name.clone(), &tls::secret(name, c))
}

/// Below this many objects (or backends) per core, encoding stays on one thread.
const PARALLEL_MIN: usize = 256;

/// The Service a backend is a port of.
fn service_key(b: &Backend) -> ObjectKey {
    ObjectKey::new(b.namespace.clone(), b.service.clone())
}

fn service_stamps(store: &Store, key: &ObjectKey) -> ServiceStamps {
    (
        store
            .stamp(&Dep::Object(Kind::Service, key.clone()))
            .and_then(NonZeroU64::new),
        store
            .stamp(&Dep::ServiceSlices(key.clone()))
            .and_then(NonZeroU64::new),
    )
}

/// A backend's encoded cluster and endpoints, with no users yet.
fn build_backend(b: &Backend, store: &Store, check_addresses: bool) -> CachedBackend {
    let key = service_key(b);
    let stamps = service_stamps(store, &key);
    let (cluster, cla) = cluster_for(b, store.services.get(&key), store, check_addresses);
    // The cluster and its endpoints share one name string (a pair for every backend).
    let name: Arc<str> = cluster.name.as_str().into();
    CachedBackend {
        stamps,
        endpoints: cla.map(|c| {
            if c.cluster_name == *name {
                Resource::new(name.clone(), &c)
            } else {
                Resource::new(c.cluster_name.clone(), &c)
            }
        }),
        cluster: Resource::new(name, &cluster),
        users: 0,
    }
}

/// Encodes a full translation's resources (`render`'s oracle; `serve` uses [`IncrementalBuilder`]). A resource whose content did not change keeps the
/// previous snapshot's `Arc`, so unchanged bytes are shared, never duplicated.
pub fn snapshot_from_envoy(cfg: &translate::EnvoyConfig, previous: Option<&Snapshot>) -> Snapshot {
    fn encode<M: Served>(
        ty: ResourceType,
        items: &[M],
        name: impl Fn(&M) -> &str,
        previous: Option<&Snapshot>,
    ) -> ResourceMap {
        items
            .iter()
            .map(|m| {
                let fresh = Resource::new(name(m), m);
                let shared = previous
                    .and_then(|p| p.get(ty, &fresh.name))
                    .filter(|old| old.version == fresh.version)
                    .cloned()
                    .unwrap_or(fresh);
                (shared.name.clone(), shared)
            })
            .collect()
    }
    let mut s = Snapshot::new(
        encode(ResourceType::Cluster, &cfg.clusters, |c| &c.name, previous),
        encode(
            ResourceType::Endpoint,
            &cfg.endpoints,
            |c| &c.cluster_name,
            previous,
        ),
        encode(
            ResourceType::Listener,
            &cfg.listeners,
            |l| &l.name,
            previous,
        ),
        encode(ResourceType::Route, &cfg.routes, |r| &r.name, previous),
    );
    *s.resources_mut(ResourceType::ScopedRoute) = encode(
        ResourceType::ScopedRoute,
        &cfg.scoped_routes,
        |s| &s.name,
        previous,
    );
    *s.resources_mut(ResourceType::Secret) =
        encode(ResourceType::Secret, &cfg.secrets, |s| &s.name, previous);
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::objects::{Route, TrafficTarget};
    use model::{Kind, Object};
    use translate::{Options, Translator};

    /// The reference: the same translation history, nothing cached, nothing incremental.
    fn full(t: &mut Translator, store: &Store) -> Snapshot {
        t.clear_cache();
        let out = t.translate(store);
        snapshot_from_envoy(&out.envoy, None)
    }

    fn names(s: &Snapshot) -> Vec<(String, String)> {
        ResourceType::ORDERED
            .iter()
            .flat_map(|t| {
                s.resources(*t)
                    .values()
                    .map(|r| (r.name.to_string(), r.version.to_string()))
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
            None,
        )
    }

    fn load(example: &str) -> Store {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(example);
        model::testing::load_dir(&dir)
    }

    /// What is encoded ahead (beside the translator's host ownership) gives the snapshot
    /// encoding everything here gives: all of it, part of it, in the wrong layout (not
    /// taken), or for equal objects that are not the ones served (not taken).
    #[test]
    fn encoded_ahead_gives_the_same_snapshot() {
        use model::testing::{load, random_change};
        use workload::{generate, SplitMix64};
        let mut store = load(&generate(700, 9).files);
        let (mut rng, mut removed) = (SplitMix64::new(5), Vec::new());
        for _ in 0..150 {
            random_change(&mut store, &mut rng, &mut removed);
        }
        store.take_dirty();
        for layout in [RouteLayout::Scoped, RouteLayout::PerListener] {
            let other = match layout {
                RouteLayout::Scoped => RouteLayout::PerListener,
                RouteLayout::PerListener => RouteLayout::Scoped,
            };
            let mut options = Options::default();
            options.listeners.layout = layout;
            let (update, early) =
                Translator::new(options.clone()).update_with(&store, None, |early, _| early);
            let early = early.expect("a cold start's objects are computed ahead");
            assert!(early.len() > 500, "{} computed ahead", early.len());
            let build = |ahead: Encoded| {
                names(&IncrementalBuilder::new().update(
                    &update.served,
                    &update.changed,
                    None,
                    &store,
                    &options.listeners,
                    options.check_endpoint_addresses,
                    ahead,
                    None,
                ))
            };
            let want = build(Encoded::default());
            let go = AtomicBool::new(false);
            let mut other_settings = options.listeners.clone();
            other_settings.layout = other;
            let (layout, other) = (&options.listeners, &other_settings);
            let copies: Vec<Arc<Ingress>> = early.iter().map(|i| Arc::new((**i).clone())).collect();
            for (what, ahead) in [
                ("all", encode_ahead(&early, layout, &go)),
                ("half", encode_ahead(&early[..early.len() / 2], layout, &go)),
                ("other layout", encode_ahead(&early, other, &go)),
                ("copies", encode_ahead(&copies, layout, &go)),
            ] {
                assert!(!ahead.by_object.is_empty(), "{what}");
                assert!(build(ahead) == want, "{layout:?}, {what} ahead");
            }
            let done = AtomicBool::new(true);
            assert!(encode_ahead(&early, layout, &done).by_object.is_empty());
        }
    }

    #[test]
    fn scopes_encoded_by_hand_are_prost_bytes() {
        let long = format!("{}.example.com", "a".repeat(200));
        for (listener, key, rc) in [
            (EXTERNAL, "hello.default.example.com", "Route/default/hello"),
            (INTERNAL, long.as_str(), "Service/ns/x"),
            (INTERNAL, "bücher.example", ""),
        ] {
            let want = Resource::new(
                envoy::scope_name(listener, key),
                &envoy::scope(listener, key, rc),
            );
            let got = scope_resource(listener, key, &rc.into());
            assert_eq!(*got.value(), *want.value(), "{key}");
            assert_eq!(got.value_len(), want.value_len(), "{key}");
            assert_eq!(got.version, want.version, "{key}");
            assert_eq!(got.name, want.name, "{key}");
            assert_eq!(
                xds::names::wire(&got.name),
                envoy::scope_name(listener, key)
            );
            // A name that does not end with its key: stored as its bytes, the same bytes.
            let other = Resource::scope(xds::names::scope(listener, key).into(), "x", rc.into());
            let mut msg = envoy::scope(listener, "x", rc);
            msg.name = envoy::scope_name(listener, key);
            assert_eq!(other, Resource::new(msg.name.clone(), &msg), "{key}");
        }
    }

    /// One turn of the serve loop: the store's changes through the translator and the builder.
    fn serve_step(
        b: &mut IncrementalBuilder,
        t: &mut Translator,
        store: &mut Store,
        listeners: &ListenerSettings,
    ) -> Snapshot {
        let dirty = store.take_dirty();
        let u = t.update(store, dirty.as_ref());
        b.update(
            &u.served,
            &u.changed,
            dirty.as_ref(),
            store,
            listeners,
            true,
            Encoded::default(),
            None,
        )
    }

    /// Large enough that the builder encodes on every core: same resources as a full build.
    #[test]
    fn parallel_build_equals_full_build() {
        let store = model::testing::load(&workload::generate(1_100, 7).files);
        let mut t = Translator::new(Options::default());
        let mut reference = Translator::new(Options::default());
        let mut b = IncrementalBuilder::new();
        assert_eq!(
            names(&incremental(&mut b, &mut t, &store)),
            names(&full(&mut reference, &store))
        );
    }

    /// Change-driven updates (the translator's `changed` and the store's dirty set, as the
    /// serve loop runs them) give exactly the resources a full translation and build give,
    /// through random changes of every kind, in both layouts.
    #[test]
    fn updates_equal_full_builds_through_random_changes() {
        use model::testing::{load, random_change};
        use workload::{generate, SplitMix64};
        for layout in [RouteLayout::Scoped, RouteLayout::PerListener] {
            for seed in 1..=3 {
                let mut options = Options::default();
                options.listeners.layout = layout;
                let mut store = load(&generate(30, seed).files);
                let mut t = Translator::new(options.clone());
                let mut reference = Translator::new(options.clone());
                let mut b = IncrementalBuilder::new();
                let mut rng = SplitMix64::new(seed);
                let mut removed = Vec::new();
                let mut last = String::new();
                for step in 0..250 {
                    let got = serve_step(&mut b, &mut t, &mut store, &options.listeners);
                    let want = full(&mut reference, &store);
                    assert_eq!(
                        names(&got),
                        names(&want),
                        "{layout:?} seed {seed} step {step} after {last}"
                    );
                    last = random_change(&mut store, &mut rng, &mut removed);
                }
            }
        }
    }

    /// HTTPS through changes (certificates added, rotated, removed, named and no longer
    /// named, a default certificate) gives exactly the full build's resources, both layouts.
    #[test]
    fn tls_updates_equal_full_builds() {
        use model::objects::DomainMappingTls;
        let cert = |name: &str| {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
            (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
        };
        let secret = |ns: &str, name: &str, (crt, key): (String, String)| {
            model::testing::tls_secret(ns, name, &crt, &key)
        };
        let dm_key = ObjectKey::new("default", "app.example.org");
        for layout in [RouteLayout::Scoped, RouteLayout::PerListener] {
            for default_cert in [false, true] {
                let mut options = Options::default();
                options.listeners.layout = layout;
                if default_cert {
                    options.listeners.tls.default_secret =
                        Some(ObjectKey::new("knative-serving", "wildcard"));
                }
                let mut store = load("domain-mapping");
                store.take_dirty();
                let mut t = Translator::new(options.clone());
                let mut reference = Translator::new(options.clone());
                let mut b = IncrementalBuilder::new();
                let with_tls = |store: &Store, secret: Option<&str>| {
                    let mut dm = store.domain_mappings[&dm_key].clone();
                    dm.spec.tls = secret.map(|s| DomainMappingTls {
                        secret_name: s.into(),
                    });
                    Object::DomainMapping(dm)
                };
                type Step<'a> = (&'a str, Box<dyn Fn(&mut Store) + 'a>);
                let steps: Vec<Step<'_>> = vec![
                    ("nothing", Box::new(|_| {})),
                    (
                        "name app-tls",
                        Box::new(|s| s.apply(with_tls(s, Some("app-tls")))),
                    ),
                    (
                        "add app-tls",
                        Box::new(|s| {
                            s.apply(secret("default", "app-tls", cert("app.example.org")))
                        }),
                    ),
                    (
                        "add wildcard",
                        Box::new(|s| {
                            s.apply(secret("knative-serving", "wildcard", cert("*.example.com")))
                        }),
                    ),
                    (
                        "rotate app-tls",
                        Box::new(|s| {
                            s.apply(secret("default", "app-tls", cert("app.example.org")))
                        }),
                    ),
                    (
                        "name other",
                        Box::new(|s| s.apply(with_tls(s, Some("other")))),
                    ),
                    (
                        "add other",
                        Box::new(|s| s.apply(secret("default", "other", cert("app.example.org")))),
                    ),
                    ("unname", Box::new(|s| s.apply(with_tls(s, None)))),
                    (
                        "name app-tls again",
                        Box::new(|s| s.apply(with_tls(s, Some("app-tls")))),
                    ),
                    (
                        "delete app-tls",
                        Box::new(|s| {
                            s.delete(Kind::Secret, &ObjectKey::new("default", "app-tls"));
                        }),
                    ),
                    (
                        "delete the DomainMapping",
                        Box::new(|s| {
                            s.delete(
                                Kind::DomainMapping,
                                &ObjectKey::new("default", "app.example.org"),
                            );
                        }),
                    ),
                    (
                        "delete wildcard",
                        Box::new(|s| {
                            s.delete(Kind::Secret, &ObjectKey::new("knative-serving", "wildcard"));
                        }),
                    ),
                ];
                for (what, step) in steps {
                    step(&mut store);
                    let got = serve_step(&mut b, &mut t, &mut store, &options.listeners);
                    let want = full(&mut reference, &store);
                    assert_eq!(
                        names(&got),
                        names(&want),
                        "{layout:?} default {default_cert}: after {what}"
                    );
                }
            }
        }
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
                    metadata: model::objects::ObjectMeta {
                        name: "extra".into(),
                        namespace: rev.namespace.clone(),
                        ..Default::default()
                    },
                    spec: model::objects::RouteSpec {
                        traffic: vec![TrafficTarget {
                            revision_name: Some(rev.name.to_string()),
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
                r.status = Some(model::objects::Status {
                    conditions: [model::objects::Condition {
                        type_: "Ready".into(),
                        status: "False".into(),
                        ..Default::default()
                    }]
                    .into(),
                    ..Default::default()
                });
                store.apply(Object::Revision(r.clone()));
                check(&store, &mut b, &mut t, "revision unready");
                r.status = None;
                r.metadata.name = format!("{}-new", r.metadata.name).into();
                r.metadata
                    .labels
                    .insert(translate::route::CONFIGURATION_GENERATION_LABEL, "99");
                store.apply(Object::Revision(r));
                check(&store, &mut b, &mut t, "newer revision");
                let mut cm = store.config_maps.values().next().unwrap().clone();
                if &*cm.metadata.name == "config-domain" {
                    cm.data = [("other.org".to_string(), String::new())].into();
                    store.apply(Object::ConfigMap(cm));
                    check(&store, &mut b, &mut t, "domain changed");
                }
            }
        }
    }

    /// The translation's scope names are the ones the server keeps in short form (`xds::names`).
    #[test]
    fn our_scope_names_match_the_translation() {
        use translate::envoy::{scope_name, scopes_locator};
        use xds::names::{internal, scope, wire};
        assert_eq!(
            wire(&scope("external", "a.b")),
            scope_name("external", "a.b")
        );
        assert_eq!(internal(&scopes_locator("internal")), "\u{1}internal/*");
    }
}
