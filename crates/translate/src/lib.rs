//! Translation: the store's objects → Envoy resources. Pure: no I/O, no clock, no locks;
//! the same store (and history of last good translations) gives identical output.
//!
//! ```text
//! Service.serving ─(MakeRoute)─┐
//! Route ───────────────────────┼─► route::translate_route ──┐
//! DomainMapping ───────────────┴─► domain_mapping ──────────┼─► ir::Ingress ─► host conflicts ─► envoy::build
//!                     (an invalid object keeps its last good Ingress) ┘
//! ```

mod domain_mapping;
pub mod envoy;
pub mod explain;
mod hosts;
pub mod ir;
pub mod kingress;
pub mod route;
pub mod status;
#[cfg(test)]
mod tests;
pub mod tls;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Serialize;

use model::config::{ConfigError, KnativeConfig, CONFIG_DOMAIN, CONFIG_FEATURES, CONFIG_NETWORK};
use model::{Kind, ObjectKey, ObjectRef, Store};

pub use envoy::{EnvoyConfig, ListenerSettings};
pub use ir::Ingress;
use route::RouteInput;

/// What is wrong with an object: the field and Knative's message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Why an object is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RejectReason {
    /// The object itself is invalid.
    Invalid,
    /// Another (older) object serves one of its hosts.
    HostConflict,
}

/// An object that could not be translated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    pub object: ObjectRef,
    pub reason: RejectReason,
    pub problems: Vec<Problem>,
    /// The object's previous translation is still served.
    pub serving_last_good: bool,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}: {}", self.object, p.field, p.message)?;
        }
        if self.serving_last_good {
            f.write_str(" (still serving its last good translation)")?;
        }
        Ok(())
    }
}

/// Options that do not come from Knative's ConfigMaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub system_namespace: String,
    pub cluster_domain: String,
    pub listeners: ListenerSettings,
    /// Manifests mode: no Knative controller runs, so a Knative Service implies its Route,
    /// and Services', Configurations' templates and traffic imply their Revisions.
    pub no_controller: bool,
    /// Leave invalid endpoint addresses out of the config (always, except in tests that
    /// need Envoy to reject a config).
    pub check_endpoint_addresses: bool,
    /// KIngress mode: serve the KIngresses of this ingress class (and nothing else);
    /// `None` serves Routes, Services and DomainMappings.
    pub ingress_class: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            system_namespace: "knative-serving".to_string(),
            cluster_domain: "cluster.local".to_string(),
            listeners: ListenerSettings::default(),
            no_controller: true,
            check_endpoint_addresses: true,
            ingress_class: None,
        }
    }
}

/// One translation's result.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    /// Served Ingresses, ordered by origin.
    pub ingresses: Vec<Arc<Ingress>>,
    pub envoy: EnvoyConfig,
    pub rejections: Vec<Rejection>,
    pub config_errors: Vec<ConfigError>,
}

/// What [`Translator::update`] changed.
#[derive(Debug, Clone, Default)]
pub struct Update {
    /// Every served Ingress by origin (persistent: cheap to keep and to clone).
    pub served: imbl::OrdMap<ObjectRef, Arc<Ingress>>,
    /// Origins whose served Ingress was added, replaced or removed.
    pub changed: BTreeSet<ObjectRef>,
    /// Objects whose translation state may have changed (re-translated, or their
    /// rejection changed), plus every object the store reported changed.
    pub touched: BTreeSet<ObjectRef>,
    /// Every rejection, ordered by object.
    pub rejections: Vec<Rejection>,
    pub config_errors: Vec<ConfigError>,
    /// Everything was re-examined (first run, or the Knative config changed).
    pub full: bool,
}

/// Holds what must survive between translations: each object's last good Ingress, the
/// last good Knative config, and (for incremental updates) each object's result, what it
/// read, and who owns each host.
#[derive(Debug, Clone, Default)]
pub struct Translator {
    pub options: Options,
    last_good: BTreeMap<ObjectRef, Arc<Ingress>>,
    last_config: Option<KnativeConfig>,
    /// Each object's last result and the stamps of what it read: reused while none changed.
    route_cache: foldhash::HashMap<ObjectRef, CacheEntry>,
    /// Reverse of the cache's deps: who read what, by [`dep_key`], each reader by its
    /// cache entry's [`Origins`] number.
    readers: foldhash::HashMap<u64, Readers>,
    origins: Origins,
    /// `readers` lags the cache: a full pass (a cold start) leaves it to
    /// [`Translator::catch_up`], which the serve loop calls once the snapshot is out.
    readers_stale: bool,
    /// The config the cache was built with.
    cache_config: Option<KnativeConfig>,
    /// Every object we translate, with the Ingress it offers (possibly its last good one),
    /// before host conflicts.
    own: BTreeMap<ObjectRef, Option<Arc<Ingress>>>,
    /// Those objects' own rejections (kept apart, so a change lists them without walking
    /// every object).
    own_rejections: BTreeMap<ObjectRef, Rejection>,
    /// DomainMappings by the key of the Route or Knative Service they point at.
    dm_targets: foldhash::HashMap<ObjectKey, BTreeSet<ObjectRef>>,
    dm_target_of: foldhash::HashMap<ObjectRef, ObjectKey>,
    hosts: hosts::HostOwners,
    /// Below this many stale objects per core, translation stays on one thread.
    pub(crate) parallel_min: usize,
    /// EndpointSlices with invalid addresses.
    slice_problems: BTreeMap<ObjectKey, Rejection>,
}

use model::store::Dep;

/// An object's own result: the Ingress it offers (possibly its last good one) and its
/// rejection, before host conflicts.
type Own = (Option<Arc<Ingress>>, Option<Rejection>);

#[derive(Debug, Clone)]
struct CacheEntry {
    /// Its number among the readers (see [`Origins`]).
    id: u32,
    /// What it read and the stamp each had then ([`stamp_of`]).
    deps: Vec<(Dep, u64)>,
    result: Result<Arc<Ingress>, Vec<Problem>>,
}

/// Numbers for the objects in the cache, so the readers index holds 4 bytes a reader rather
/// than an `ObjectRef` (40): a number is given when an entry is cached and freed for reuse
/// when it is dropped, and no reader list holds it after that.
#[derive(Debug, Clone, Default)]
struct Origins {
    by_id: Vec<Option<ObjectRef>>,
    free: Vec<u32>,
}

impl Origins {
    fn add(&mut self, origin: &ObjectRef) -> u32 {
        match self.free.pop() {
            Some(id) => {
                self.by_id[id as usize] = Some(origin.clone());
                id
            }
            None => {
                // More than 4 billion cached objects at once cannot fit in memory anyway.
                let id = u32::try_from(self.by_id.len()).unwrap_or(u32::MAX);
                self.by_id.push(Some(origin.clone()));
                id
            }
        }
    }

    fn remove(&mut self, id: u32) {
        if let Some(slot) = self.by_id.get_mut(id as usize) {
            if slot.take().is_some() {
                self.free.push(id);
            }
        }
    }

    fn get(&self, id: u32) -> Option<&ObjectRef> {
        self.by_id.get(id as usize)?.as_ref()
    }

    fn clear(&mut self) {
        self.by_id.clear();
        self.free.clear();
    }
}

/// `dep`'s stamp, 0 while it does not exist (stamps start at 1): 8 bytes a dep, not 16.
fn stamp_of(store: &Store, dep: &Dep) -> u64 {
    store.stamp(dep).unwrap_or(0)
}

/// A translation and what it read, with the stamps it read (taken where it was computed:
/// on every core at a cold start).
type Computed = (Result<Arc<Ingress>, Vec<Problem>>, Vec<(Dep, u64)>);

/// The objects that read one input, by number: nearly always one, held inline (up to four
/// fit in the room the list takes anyway).
type Readers = smallvec::SmallVec<[u32; 4]>;

/// Where [`Translator`] files the readers of `dep`: a 64-bit digest of it rather than the
/// `Dep` itself (40 bytes, and every object reads several). Two inputs with one digest only
/// make a change look at an object too many, whose cache entry then shows that nothing it
/// read changed.
fn dep_key(dep: &Dep) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x6b6e_7864).hash_one(dep)
}

/// Records `id` among the readers of each of `deps`.
fn add_readings(readers: &mut foldhash::HashMap<u64, Readers>, id: u32, deps: &[(Dep, u64)]) {
    for (dep, _) in deps {
        let readers = readers.entry(dep_key(dep)).or_default();
        if !readers.contains(&id) {
            readers.push(id);
        }
    }
}

fn stamped(store: &Store, deps: Vec<Dep>) -> Vec<(Dep, u64)> {
    deps.into_iter()
        .map(|d| {
            let stamp = stamp_of(store, &d);
            (d, stamp)
        })
        .collect()
}

/// Translates one Route, Knative Service or KIngress; `None` when it is not ours. Pure (reads
/// only the store), so a cold start runs it on every core.
fn compute(
    options: &Options,
    store: &Store,
    cfg: &KnativeConfig,
    origin: &ObjectRef,
    ingress_mode: bool,
) -> Option<Computed> {
    let key = &origin.key;
    let derive = options.no_controller && !ingress_mode;
    let implied = options.no_controller;
    match origin.kind {
        Kind::KService if derive => {
            let svc = store.kservices.get(key)?;
            let input = RouteInput::from_kservice(svc);
            let result = match &input {
                Ok(i) => route::translate_route(i, store, cfg, implied).map(Arc::new),
                Err(p) => Err(p.clone()),
            };
            let deps = route_deps(origin, input.as_ref().ok(), &result, cfg);
            Some((result, stamped(store, deps)))
        }
        Kind::Route if !ingress_mode => {
            let route = store.routes.get(key)?;
            if owned_by_kservice(options, store, origin, ingress_mode) {
                return None;
            }
            let input = RouteInput::from_route(route);
            let result = route::translate_route(&input, store, cfg, implied).map(Arc::new);
            let deps = route_deps(origin, Some(&input), &result, cfg);
            Some((result, stamped(store, deps)))
        }
        Kind::KIngress => {
            let class = options.ingress_class.as_deref()?;
            let k = store.kingresses.get(key)?;
            if kingress::class_of(k) != Some(class) {
                return None;
            }
            let result = kingress::translate_kingress(k, store).map(Arc::new);
            let deps = std::iter::once(Dep::Object(Kind::KIngress, key.clone()))
                .chain(
                    kingress::split_services(k)
                        .into_iter()
                        .map(|s| Dep::Object(Kind::Service, s)),
                )
                .collect();
            Some((result, stamped(store, deps)))
        }
        _ => None,
    }
}

/// A Route that its Knative Service's translation stands for (the Route is ignored).
fn owned_by_kservice(
    options: &Options,
    store: &Store,
    origin: &ObjectRef,
    ingress_mode: bool,
) -> bool {
    origin.kind == Kind::Route
        && !ingress_mode
        && options.no_controller
        && store.routes.contains_key(&origin.key)
        && store.kservices.contains_key(&origin.key)
}

/// Everything a Route's translation reads from the store, for cache invalidation.
fn route_deps(
    origin: &ObjectRef,
    input: Option<&RouteInput>,
    result: &Result<Arc<Ingress>, Vec<Problem>>,
    cfg: &KnativeConfig,
) -> Vec<Dep> {
    let ns = &origin.key.namespace;
    // The names a Route reads are nearly all its own, its Configuration's (the same for a
    // Knative Service) and its Revisions' (which its backends hold): share those strings.
    let mut names: Vec<Arc<str>> = vec![origin.key.name.clone()];
    if let Ok(ing) = result {
        names.extend(ing.backends().map(|b| b.service.clone()));
    }
    let mut key = |name: &str| {
        let name = match names.iter().find(|n| ***n == *name) {
            Some(n) => n.clone(),
            None => {
                let n: Arc<str> = name.into();
                names.push(n.clone());
                n
            }
        };
        ObjectKey {
            namespace: ns.clone(),
            name,
        }
    };
    let mut deps = vec![
        Dep::Object(origin.kind, origin.key.clone()),
        // A Knative Service shadows a Route of its name.
        Dep::Object(Kind::KService, origin.key.clone()),
    ];
    if let Some(input) = input {
        for t in &input.traffic {
            if let Some(r) = t.revision_name.as_deref().filter(|r| !r.is_empty()) {
                deps.push(Dep::Object(Kind::Revision, key(r)));
            }
            let config = t
                .configuration_name
                .as_deref()
                .filter(|c| !c.is_empty())
                .or(if t.revision_name.as_deref().unwrap_or("").is_empty() {
                    input.service.as_deref()
                } else {
                    None
                });
            if let Some(c) = config {
                deps.push(Dep::Object(Kind::Configuration, key(c)));
                deps.push(Dep::Object(Kind::KService, key(c)));
                deps.push(Dep::ConfigurationRevisions(key(c)));
            }
        }
    }
    if let Ok(ing) = result {
        let suffix = format!(".{ns}.svc.{}", cfg.cluster_domain);
        for rule in &ing.rules {
            for p in rule.paths.iter() {
                for s in &p.splits {
                    deps.push(Dep::Object(Kind::Revision, key(&s.backend.service)));
                }
            }
            // Placeholder Services (visibility) are named after each host name.
            for h in &rule.hosts {
                if let Some(name) = h.strip_suffix(&suffix) {
                    deps.push(Dep::Object(Kind::Service, key(name)));
                }
            }
        }
    } else if let Some(input) = input {
        deps.push(Dep::Object(Kind::Service, key(&input.meta.name)));
    }
    deps.sort();
    deps.dedup();
    deps
}

impl Translator {
    pub fn new(options: Options) -> Translator {
        Translator {
            options,
            // A cold start (thousands stale) goes on every core; a change stays on one.
            parallel_min: 256,
            ..Default::default()
        }
    }

    fn knative_config(&mut self, store: &Store) -> (KnativeConfig, Vec<ConfigError>) {
        let cm = |name: &str| {
            store
                .config_maps
                .get(&ObjectKey::new(self.options.system_namespace.clone(), name))
        };
        match KnativeConfig::from_config_maps(
            &self.options.cluster_domain,
            cm(CONFIG_DOMAIN),
            cm(CONFIG_NETWORK),
            cm(CONFIG_FEATURES),
        ) {
            Ok(cfg) => {
                self.last_config = Some(cfg.clone());
                (cfg, Vec::new())
            }
            Err(errors) => (
                self.last_config
                    .clone()
                    .unwrap_or_else(|| KnativeConfig::defaults(&self.options.cluster_domain)),
                errors,
            ),
        }
    }

    /// Forgets cached per-object results (the last good translations stay), so the next
    /// translation recomputes every object.
    pub fn clear_cache(&mut self) {
        // Every reader entry comes from a cache entry.
        self.route_cache.clear();
        self.readers.clear();
        self.origins.clear();
        self.readers_stale = false;
    }

    /// Completes the bookkeeping a full pass put off (who read what, for the next change's
    /// update): not needed for that pass's result, so it is done after it is served. An
    /// update catches up first anyway.
    pub fn catch_up(&mut self) {
        if !std::mem::take(&mut self.readers_stale) {
            return;
        }
        self.readers.clear();
        for entry in self.route_cache.values() {
            add_readings(&mut self.readers, entry.id, &entry.deps);
        }
    }

    /// Translates the whole store.
    pub fn translate(&mut self, store: &Store) -> Output {
        let mut out = self.translate_ingresses(store);
        let plan = tls::Planner::new().plan(
            out.ingresses.iter().map(|i| &**i),
            store,
            &self.options.listeners.tls,
            None,
        );
        out.envoy = envoy::build_with(
            &out.ingresses,
            store,
            &self.options.listeners,
            self.options.check_endpoint_addresses,
            &plan,
        );
        out
    }

    /// [`Translator::translate`] without the Envoy resources (`envoy` is left empty): for
    /// callers that build them incrementally (`xds::build::IncrementalBuilder`).
    pub fn translate_ingresses(&mut self, store: &Store) -> Output {
        let u = self.update(store, None);
        self.catch_up();
        Output {
            ingresses: u.served.values().cloned().collect(),
            envoy: EnvoyConfig::default(),
            rejections: u.rejections,
            config_errors: u.config_errors,
        }
    }

    /// Brings the translation up to date with the store. With `dirty` (what changed since
    /// the previous update, from [`Store::take_dirty`]), only the objects that read
    /// something in it are re-translated; with `None`, every object is looked at (unchanged
    /// ones still come from the cache).
    pub fn update(&mut self, store: &Store, dirty: Option<&model::store::DepSet>) -> Update {
        self.update_with(store, dirty, |_, _| ()).0
    }

    /// [`Translator::update`], with work to do ahead on what it computes: when it computes
    /// many objects on every core (a cold start), `ahead_work` gets their results (each
    /// object's own, before host ownership, which may still reject some) on another thread
    /// while this one settles host ownership, and should return soon once `done` is set.
    /// (The caller encodes them meanwhile: that step would otherwise leave a core idle.)
    pub fn update_with<W: Send>(
        &mut self,
        store: &Store,
        dirty: Option<&model::store::DepSet>,
        ahead_work: impl FnOnce(Vec<Arc<Ingress>>, &AtomicBool) -> W + Send,
    ) -> (Update, Option<W>) {
        self.catch_up();
        let (cfg, config_errors) = self.knative_config(store);
        // A config change can change any translation.
        let mut dirty = dirty;
        if self.cache_config.as_ref() != Some(&cfg) {
            self.clear_cache();
            self.cache_config = Some(cfg.clone());
            dirty = None;
        }
        let ingress_mode = self.options.ingress_class.is_some();
        // A full pass links every object anew: who read what is rebuilt afterwards, at once.
        self.readers_stale = dirty.is_none();

        // Which objects to look at.
        let mut examine: BTreeSet<ObjectRef> = BTreeSet::new();
        let mut slices: BTreeSet<ObjectKey> = BTreeSet::new();
        let mut touched = BTreeSet::new();
        let oref = |kind, key: &ObjectKey| ObjectRef {
            kind,
            key: key.clone(),
        };
        match dirty {
            None => {
                // Collected at once: a set built from a list sorts it (here a few sorted
                // runs) and fills its nodes in one pass, instead of a search per insert.
                examine = (self.own.keys().cloned())
                    .chain(store.kservices.keys().map(|k| oref(Kind::KService, k)))
                    .chain(store.routes.keys().map(|k| oref(Kind::Route, k)))
                    .chain(store.kingresses.keys().map(|k| oref(Kind::KIngress, k)))
                    .chain((store.domain_mappings.keys()).map(|k| oref(Kind::DomainMapping, k)))
                    .collect();
                slices = (self.slice_problems.keys().cloned())
                    .chain(store.endpoint_slices.keys().cloned())
                    .collect();
            }
            Some(dirty) => {
                for d in dirty {
                    if let Some(readers) = self.readers.get(&dep_key(d)) {
                        let origins = &self.origins;
                        examine.extend(readers.iter().filter_map(|id| origins.get(*id).cloned()));
                    }
                    if let Dep::Object(kind, key) = d {
                        touched.insert(oref(*kind, key));
                        match kind {
                            Kind::KService => {
                                examine.insert(oref(Kind::KService, key));
                                examine.insert(oref(Kind::Route, key));
                            }
                            Kind::Route | Kind::DomainMapping | Kind::KIngress => {
                                examine.insert(oref(*kind, key));
                            }
                            Kind::EndpointSlice => {
                                slices.insert(key.clone());
                            }
                            _ => {}
                        }
                    }
                }
            }
        }

        // Translations are pure and independent: when many are stale (a cold start), they
        // are computed ahead on every core. (A change examines a few objects: not worth a
        // look at their freshness here as well as in `cached`.)
        let threshold = self.parallel_min.saturating_mul(2);
        let mut ahead: foldhash::HashMap<ObjectRef, Computed> = Default::default();
        if examine.len() >= threshold {
            let stale: Vec<&ObjectRef> = examine
                .iter()
                .filter(|o| o.kind != Kind::DomainMapping && !self.is_fresh(o, store))
                .collect();
            if stale.len() >= threshold {
                let options = &self.options;
                let computed = model::par::map(&stale, self.parallel_min, |o| {
                    compute(options, store, &cfg, o, ingress_mode)
                });
                ahead = stale
                    .into_iter()
                    .zip(computed)
                    .filter_map(|(o, c)| Some((o.clone(), c?)))
                    .collect();
            }
        }

        // What was computed ahead, for the caller's work beside host ownership (below).
        let early: Vec<Arc<Ingress>> = ahead
            .values()
            .filter_map(|(result, _)| result.as_ref().ok().cloned())
            .collect();

        // Routes, Knative Services and KIngresses; then DomainMappings, which read the
        // Routes' results. Then who serves each host.
        let settle = |this: &mut Self, touched: &mut BTreeSet<ObjectRef>| {
            let mut candidates = Vec::new();
            let mut dms: BTreeSet<ObjectRef> = BTreeSet::new();
            for origin in examine {
                if origin.kind == Kind::DomainMapping {
                    dms.insert(origin);
                    continue;
                }
                let own = this.examine(store, &cfg, &origin, ingress_mode, &mut ahead);
                if let Some(c) = this.record(&origin, own, touched) {
                    if matches!(origin.kind, Kind::KService | Kind::Route) {
                        if let Some(targets) = this.dm_targets.get(&origin.key) {
                            dms.extend(targets.iter().cloned());
                        }
                    }
                    candidates.push((origin, c));
                }
            }
            for origin in dms {
                let own = this.examine_domain_mapping(store, &cfg, &origin, ingress_mode);
                if let Some(c) = this.record(&origin, own, touched) {
                    candidates.push((origin, c));
                }
            }
            this.hosts.update(candidates)
        };
        let slices: Vec<ObjectKey> = if self.options.check_endpoint_addresses {
            slices.into_iter().collect()
        } else {
            Vec::new()
        };
        let parallel_min = self.parallel_min;
        let find_problems = |slices: &[ObjectKey]| {
            model::par::map(slices, parallel_min, |key| {
                store
                    .endpoint_slices
                    .get(key)
                    .map(envoy::endpoint_slice_problems)
                    .unwrap_or_default()
            })
        };
        // The slices' checks are independent of the rest: every slice at a cold start, on
        // other threads while this one settles the objects' results; then the caller's work
        // on the results computed ahead, until they are settled.
        let done = AtomicBool::new(false);
        let ((found, worked), changed) = model::par::beside(
            slices.len() >= parallel_min.saturating_mul(2) || !early.is_empty(),
            || {
                let found = find_problems(&slices);
                let worked = (!early.is_empty()).then(|| ahead_work(early, &done));
                (found, worked)
            },
            || {
                let changed = settle(self, &mut touched);
                done.store(true, Ordering::Relaxed);
                changed
            },
        );
        touched.extend(changed.iter().cloned());
        for (key, problems) in slices.into_iter().zip(found) {
            if problems.is_empty() {
                self.slice_problems.remove(&key);
            } else {
                self.slice_problems.insert(
                    key.clone(),
                    Rejection {
                        reason: RejectReason::Invalid,
                        object: oref(Kind::EndpointSlice, &key),
                        problems,
                        serving_last_good: false,
                    },
                );
            }
        }

        let update = Update {
            served: self.hosts.served().clone(),
            changed,
            touched,
            rejections: self.rejections(),
            config_errors,
            full: dirty.is_none(),
        };
        (update, worked)
    }

    /// Every rejection, ordered by object: a host conflict replaces the object's own.
    fn rejections(&self) -> Vec<Rejection> {
        let conflicts = self.hosts.rejected();
        let mut out: Vec<Rejection> = self
            .own_rejections
            .iter()
            .filter(|(o, _)| !conflicts.contains_key(*o))
            .map(|(_, r)| r)
            .chain(conflicts.values())
            .chain(self.slice_problems.values())
            .cloned()
            .collect();
        out.sort_by(|a, b| a.object.cmp(&b.object));
        out
    }

    /// Stores an object's own result; returns its candidate when that changed (the outer
    /// `Some`), for host ownership.
    fn record(
        &mut self,
        origin: &ObjectRef,
        own: Option<Own>,
        touched: &mut BTreeSet<ObjectRef>,
    ) -> Option<Option<Arc<Ingress>>> {
        let Some((candidate, rejection)) = own else {
            // No longer an object we translate.
            self.own_rejections.remove(origin);
            let old = self.own.remove(origin);
            self.forget(origin);
            touched.insert(origin.clone());
            return old.flatten().map(|_| None);
        };
        let old_rejection = match rejection {
            Some(r) => self.own_rejections.insert(origin.clone(), r),
            None => self.own_rejections.remove(origin),
        };
        let old = self.own.insert(origin.clone(), candidate.clone());
        let same = match (old.as_ref().and_then(Option::as_ref), &candidate) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        if !same || old.is_none() || old_rejection.as_ref() != self.own_rejections.get(origin) {
            touched.insert(origin.clone());
        }
        (!same).then_some(candidate)
    }

    fn forget(&mut self, origin: &ObjectRef) {
        self.last_good.remove(origin);
        self.uncache(origin);
        self.untarget(origin);
    }

    /// Drops an object's cache entry and its place among the readers of what it read.
    fn uncache(&mut self, origin: &ObjectRef) {
        let Some(entry) = self.route_cache.remove(origin) else {
            return;
        };
        self.origins.remove(entry.id);
        if self.readers_stale {
            return; // rebuilt from the cache later
        }
        for (dep, _) in entry.deps {
            let key = dep_key(&dep);
            if let Some(readers) = self.readers.get_mut(&key) {
                readers.retain(|id| *id != entry.id);
                if readers.is_empty() {
                    self.readers.remove(&key);
                }
            }
        }
    }

    fn untarget(&mut self, dm: &ObjectRef) {
        if let Some(target) = self.dm_target_of.remove(dm) {
            if let Some(set) = self.dm_targets.get_mut(&target) {
                set.remove(dm);
                if set.is_empty() {
                    self.dm_targets.remove(&target);
                }
            }
        }
    }

    /// One Route, Knative Service or KIngress: `None` when it is not ours to translate.
    /// `ahead`: translations already computed on every core (taken from it when used).
    fn examine(
        &mut self,
        store: &Store,
        cfg: &KnativeConfig,
        origin: &ObjectRef,
        ingress_mode: bool,
        ahead: &mut foldhash::HashMap<ObjectRef, Computed>,
    ) -> Option<Own> {
        let key = &origin.key;
        if owned_by_kservice(&self.options, store, origin, ingress_mode) {
            self.forget(origin);
            return Some((
                None,
                Some(Rejection {
                    object: origin.clone(),
                    reason: RejectReason::Invalid,
                    problems: vec![Problem::new(
                        "metadata.name",
                        format!("the Knative Service {key} owns the Route of this name; this Route is ignored"),
                    )],
                    serving_last_good: false,
                }),
            ));
        }
        let result = self.cached(origin, store, cfg, ingress_mode, ahead)?;
        Some(self.settle(origin, result))
    }

    /// One DomainMapping: re-translated whenever looked at (it reads the result of the
    /// Route it points at, which the cache's stamps do not cover).
    fn examine_domain_mapping(
        &mut self,
        store: &Store,
        cfg: &KnativeConfig,
        origin: &ObjectRef,
        ingress_mode: bool,
    ) -> Option<Own> {
        if ingress_mode {
            return None;
        }
        let dm = store.domain_mappings.get(&origin.key)?;
        let lookup = |key: &ObjectKey| {
            [Kind::KService, Kind::Route].into_iter().find_map(|kind| {
                self.own
                    .get(&ObjectRef {
                        kind,
                        key: key.clone(),
                    })
                    .and_then(Option::as_ref)
                    .map(|i| (**i).clone())
            })
        };
        let result = domain_mapping::translate_domain_mapping(dm, store, cfg, lookup).map(Arc::new);
        let target = ObjectKey::new(origin.key.namespace.clone(), dm.spec.ref_.name.clone());
        // What it read besides its target's result.
        let deps = vec![
            Dep::Object(Kind::DomainMapping, origin.key.clone()),
            Dep::Object(
                Kind::ClusterDomainClaim,
                ObjectKey::new("", origin.key.name.clone()),
            ),
            Dep::Object(Kind::Service, target.clone()),
        ];
        self.link(origin, stamped(store, deps), Err(Vec::new()));
        self.untarget(origin);
        self.dm_targets
            .entry(target.clone())
            .or_default()
            .insert(origin.clone());
        self.dm_target_of.insert(origin.clone(), target);
        Some(self.settle(origin, result))
    }

    fn link(
        &mut self,
        origin: &ObjectRef,
        deps: Vec<(Dep, u64)>,
        result: Result<Arc<Ingress>, Vec<Problem>>,
    ) {
        self.uncache(origin);
        let id = self.origins.add(origin);
        if !self.readers_stale {
            add_readings(&mut self.readers, id, &deps);
        }
        self.route_cache
            .insert(origin.clone(), CacheEntry { id, deps, result });
    }

    /// An object's translation: the cached one while nothing it read changed, else the one
    /// computed ahead (on every core) or computed now. `None` when it is not ours.
    fn cached(
        &mut self,
        origin: &ObjectRef,
        store: &Store,
        cfg: &KnativeConfig,
        ingress_mode: bool,
        ahead: &mut foldhash::HashMap<ObjectRef, Computed>,
    ) -> Option<Result<Arc<Ingress>, Vec<Problem>>> {
        if self.is_fresh(origin, store) {
            return self.route_cache.get(origin).map(|e| e.result.clone());
        }
        let (result, deps) = match ahead.remove(origin) {
            Some(computed) => computed,
            None => compute(&self.options, store, cfg, origin, ingress_mode)?,
        };
        self.link(origin, deps, result.clone());
        Some(result)
    }

    /// Whether the cached translation of `origin` read nothing that changed since.
    fn is_fresh(&self, origin: &ObjectRef, store: &Store) -> bool {
        self.route_cache.get(origin).is_some_and(|entry| {
            entry
                .deps
                .iter()
                .all(|(d, stamp)| stamp_of(store, d) == *stamp)
        })
    }

    /// A translation result, falling back to the last good one on failure: (the Ingress
    /// offered, the rejection).
    fn settle(&mut self, origin: &ObjectRef, result: Result<Arc<Ingress>, Vec<Problem>>) -> Own {
        match result {
            Ok(ing) => {
                self.last_good.insert(origin.clone(), ing.clone());
                (Some(ing), None)
            }
            Err(problems) => {
                let last = self.last_good.get(origin).cloned();
                let rejection = Rejection {
                    object: origin.clone(),
                    reason: RejectReason::Invalid,
                    problems,
                    serving_last_good: last.is_some(),
                };
                (last, Some(rejection))
            }
        }
    }
}
