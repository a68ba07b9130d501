//! Translation: the store's objects → Envoy resources. Pure: no I/O, no clock, no locks;
//! the same store (and history of last good translations) gives identical output.
//!
//! ```text
//! Service.serving ─(MakeRoute)─┐
//! Route ───────────────────────┼─► route::translate_route ──┐
//! DomainMapping ───────────────┴─► domain_mapping ──────────┼─► ir::Ingress ─► host conflicts ─► envoy::build
//!                     (an invalid object keeps its last good Ingress) ┘
//! ```

pub mod domain_mapping;
pub mod envoy;
pub mod explain;
pub mod ir;
pub mod kingress;
pub mod route;
pub mod status;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use crate::model::config::{
    ConfigError, KnativeConfig, CONFIG_DOMAIN, CONFIG_FEATURES, CONFIG_NETWORK,
};
use crate::model::{Kind, ObjectKey, ObjectRef, Store};

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
    /// Manifests mode: no Knative controller runs, so a Knative Service implies its Route.
    pub derive_routes_from_services: bool,
    /// Leave invalid endpoint addresses out of the config (always, except in tests that
    /// need Envoy to reject a config).
    pub check_endpoint_addresses: bool,
    /// Benchmark baseline (kourier's behaviour): every change re-translates everything and
    /// gives every resource a fresh version, so every type is resent.
    pub baseline_full_push: bool,
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
            derive_routes_from_services: true,
            check_endpoint_addresses: true,
            baseline_full_push: false,
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

/// Holds what must survive between translations: each object's last good Ingress and the
/// last good Knative config. Everything else is recomputed from the store.
#[derive(Debug, Clone, Default)]
pub struct Translator {
    pub options: Options,
    last_good: BTreeMap<ObjectRef, Arc<Ingress>>,
    last_config: Option<KnativeConfig>,
    /// Each Route's last result and the stamps of what it read: reused while none changed.
    route_cache: std::collections::HashMap<ObjectRef, CacheEntry>,
    /// The config the cache was built with.
    cache_config: Option<KnativeConfig>,
}

#[derive(Debug, Clone)]
struct CacheEntry {
    deps: Vec<(crate::model::store::Dep, Option<u64>)>,
    result: Result<Arc<Ingress>, Vec<Problem>>,
}

/// Everything a Route's translation reads from the store, for cache invalidation.
fn route_deps(
    origin: &ObjectRef,
    input: Option<&RouteInput>,
    result: &Result<Arc<Ingress>, Vec<Problem>>,
    cfg: &KnativeConfig,
) -> Vec<crate::model::store::Dep> {
    use crate::model::store::Dep;
    let ns = &origin.key.namespace;
    let key = |name: &str| ObjectKey::new(ns.clone(), name);
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
            for p in &rule.paths {
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
            last_good: BTreeMap::new(),
            last_config: None,
            route_cache: Default::default(),
            cache_config: None,
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

    /// Forgets cached per-Route results (the last good translations stay).
    pub fn clear_cache(&mut self) {
        self.route_cache.clear();
    }

    /// Translates the whole store.
    pub fn translate(&mut self, store: &Store) -> Output {
        let mut out = self.translate_ingresses(store);
        out.envoy = envoy::build_with(
            &out.ingresses,
            store,
            &self.options.listeners,
            self.options.check_endpoint_addresses,
        );
        out
    }

    /// [`Translator::translate`] without the Envoy resources (`envoy` is left empty): for
    /// callers that build them incrementally (`xds::build::IncrementalBuilder`).
    pub fn translate_ingresses(&mut self, store: &Store) -> Output {
        let (cfg, config_errors) = self.knative_config(store);
        let mut rejections = Vec::new();
        let mut accepted: BTreeMap<ObjectRef, Arc<Ingress>> = BTreeMap::new();
        let mut seen: BTreeSet<ObjectRef> = BTreeSet::new();

        // A config change can change any translation.
        if self.cache_config.as_ref() != Some(&cfg) {
            self.route_cache.clear();
            self.cache_config = Some(cfg.clone());
        }
        let mut cache = std::mem::take(&mut self.route_cache);
        let mut candidates: Vec<(
            ObjectRef,
            Option<&crate::model::objects::KService>,
            Option<&crate::model::objects::Route>,
        )> = Vec::new();
        let ingress_mode = self.options.ingress_class.is_some();
        if let Some(class) = self.options.ingress_class.clone() {
            self.translate_kingresses(
                store,
                &class,
                &mut cache,
                &mut accepted,
                &mut rejections,
                &mut seen,
            );
        }
        if self.options.derive_routes_from_services && !ingress_mode {
            for (key, svc) in &store.kservices {
                candidates.push((
                    ObjectRef {
                        kind: Kind::KService,
                        key: key.clone(),
                    },
                    Some(svc),
                    None,
                ));
            }
        }
        for (key, route) in store.routes.iter().filter(|_| !ingress_mode) {
            if self.options.derive_routes_from_services && store.kservices.contains_key(key) {
                rejections.push(Rejection {
                    object: ObjectRef {
                        kind: Kind::Route,
                        key: key.clone(),
                    },
                    reason: RejectReason::Invalid,
                    problems: vec![Problem::new(
                        "metadata.name",
                        format!("the Knative Service {key} owns the Route of this name; this Route is ignored"),
                    )],
                    serving_last_good: false,
                });
                continue;
            }
            candidates.push((
                ObjectRef {
                    kind: Kind::Route,
                    key: key.clone(),
                },
                None,
                Some(route),
            ));
        }
        for (origin, svc, route) in candidates {
            // Unchanged inputs: the previous result stands.
            let result = self.cached(&mut cache, &origin, store, || {
                let input = match (svc, route) {
                    (Some(svc), _) => RouteInput::from_kservice(svc),
                    (None, Some(route)) => Ok(RouteInput::from_route(route)),
                    (None, None) => Err(Vec::new()),
                };
                let result = match &input {
                    Ok(i) => route::translate_route(i, store, &cfg).map(Arc::new),
                    Err(p) => Err(p.clone()),
                };
                let deps = route_deps(&origin, input.as_ref().ok(), &result, &cfg);
                (result, deps)
            });
            seen.insert(origin.clone());
            self.settle(origin, result, &mut accepted, &mut rejections);
        }
        // DomainMappings point at Routes translated above.
        for dm in store.domain_mappings.values().filter(|_| !ingress_mode) {
            let origin = ObjectRef {
                kind: Kind::DomainMapping,
                key: ObjectKey::new(dm.metadata.namespace.clone(), dm.metadata.name.clone()),
            };
            let lookup = |key: &ObjectKey| {
                [Kind::KService, Kind::Route].into_iter().find_map(|kind| {
                    accepted
                        .get(&ObjectRef {
                            kind,
                            key: key.clone(),
                        })
                        .map(|i| (**i).clone())
                })
            };
            let result =
                domain_mapping::translate_domain_mapping(dm, store, &cfg, lookup).map(Arc::new);
            seen.insert(origin.clone());
            self.settle(origin, result, &mut accepted, &mut rejections);
        }
        self.last_good.retain(|k, _| seen.contains(k));

        let ingresses = resolve_host_conflicts(accepted, &mut rejections);
        if self.options.check_endpoint_addresses {
            for (key, slice) in &store.endpoint_slices {
                let problems = envoy::endpoint_slice_problems(slice);
                if !problems.is_empty() {
                    rejections.push(Rejection {
                        reason: RejectReason::Invalid,
                        object: ObjectRef {
                            kind: Kind::EndpointSlice,
                            key: key.clone(),
                        },
                        problems,
                        serving_last_good: false,
                    });
                }
            }
        }
        rejections.sort_by(|a, b| a.object.cmp(&b.object));
        Output {
            ingresses,
            envoy: EnvoyConfig::default(),
            rejections,
            config_errors,
        }
    }

    /// KIngress mode: every KIngress of our class, each re-translated only when it or a
    /// Service it names changed.
    fn translate_kingresses(
        &mut self,
        store: &Store,
        class: &str,
        cache: &mut std::collections::HashMap<ObjectRef, CacheEntry>,
        accepted: &mut BTreeMap<ObjectRef, Arc<Ingress>>,
        rejections: &mut Vec<Rejection>,
        seen: &mut BTreeSet<ObjectRef>,
    ) {
        use crate::model::store::Dep;
        for (key, k) in &store.kingresses {
            if kingress::class_of(k) != Some(class) {
                continue;
            }
            let origin = ObjectRef {
                kind: Kind::KIngress,
                key: key.clone(),
            };
            let result = self.cached(cache, &origin, store, || {
                let result = kingress::translate_kingress(k, store).map(Arc::new);
                let deps = std::iter::once(Dep::Object(Kind::KIngress, key.clone()))
                    .chain(
                        kingress::split_services(k)
                            .into_iter()
                            .map(|s| Dep::Object(Kind::Service, s)),
                    )
                    .collect();
                (result, deps)
            });
            seen.insert(origin.clone());
            self.settle(origin, result, accepted, rejections);
        }
    }

    /// An object's cached result while nothing it read changed; otherwise `compute`'s
    /// (result, what it read), remembered with the current stamps.
    fn cached(
        &mut self,
        cache: &mut std::collections::HashMap<ObjectRef, CacheEntry>,
        origin: &ObjectRef,
        store: &Store,
        compute: impl FnOnce() -> (
            Result<Arc<Ingress>, Vec<Problem>>,
            Vec<crate::model::store::Dep>,
        ),
    ) -> Result<Arc<Ingress>, Vec<Problem>> {
        if let Some(entry) = cache.remove(origin) {
            if entry.deps.iter().all(|(d, stamp)| store.stamp(d) == *stamp) {
                let r = entry.result.clone();
                self.route_cache.insert(origin.clone(), entry);
                return r;
            }
        }
        let (result, deps) = compute();
        let deps = deps
            .into_iter()
            .map(|d| {
                let stamp = store.stamp(&d);
                (d, stamp)
            })
            .collect();
        self.route_cache.insert(
            origin.clone(),
            CacheEntry {
                deps,
                result: result.clone(),
            },
        );
        result
    }

    /// Records a translation result, falling back to the last good one on failure.
    fn settle(
        &mut self,
        origin: ObjectRef,
        result: Result<Arc<Ingress>, Vec<Problem>>,
        accepted: &mut BTreeMap<ObjectRef, Arc<Ingress>>,
        rejections: &mut Vec<Rejection>,
    ) {
        match result {
            Ok(ing) => {
                self.last_good.insert(origin.clone(), ing.clone());
                accepted.insert(origin, ing);
            }
            Err(problems) => {
                let last = self.last_good.get(&origin).cloned();
                rejections.push(Rejection {
                    object: origin.clone(),
                    reason: RejectReason::Invalid,
                    problems,
                    serving_last_good: last.is_some(),
                });
                if let Some(ing) = last {
                    accepted.insert(origin, ing);
                }
            }
        }
    }
}

/// Gives every host to one owner: the oldest object (creation timestamp, then kind,
/// namespace and name) keeps it; a later object claiming a taken host is rejected whole,
/// so Envoy never sees a duplicate domain.
fn resolve_host_conflicts(
    accepted: BTreeMap<ObjectRef, Arc<Ingress>>,
    rejections: &mut Vec<Rejection>,
) -> Vec<Arc<Ingress>> {
    let mut order: Vec<Arc<Ingress>> = accepted.into_values().collect();
    order.sort_by(|a, b| {
        (a.creation_timestamp.as_str(), &a.origin).cmp(&(b.creation_timestamp.as_str(), &b.origin))
    });
    let mut owners: BTreeMap<String, ObjectRef> = BTreeMap::new();
    let mut out = Vec::with_capacity(order.len());
    for ing in order {
        let taken: Vec<Problem> =
            ing.hosts()
                .filter_map(|h| {
                    owners.get(h).filter(|o| **o != ing.origin).map(|o| {
                        Problem::new("hosts", format!("host {h:?} is already served by {o}"))
                    })
                })
                .collect();
        if !taken.is_empty() {
            rejections.retain(|r| r.object != ing.origin);
            rejections.push(Rejection {
                object: ing.origin.clone(),
                reason: RejectReason::HostConflict,
                problems: taken,
                serving_last_good: false,
            });
            continue;
        }
        for h in ing.hosts() {
            owners.insert(h.to_string(), ing.origin.clone());
        }
        out.push(ing);
    }
    out.sort_by(|a, b| a.origin.cmp(&b.origin));
    out
}
