//! One in-memory index of every object the sources delivered. Both sources (manifests and
//! Kubernetes) fill it the same way, so translation has one code path.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use super::objects::*;

/// The kinds knative-xds reads.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
pub enum Kind {
    KService,
    Route,
    Configuration,
    Revision,
    DomainMapping,
    ClusterDomainClaim,
    Service,
    EndpointSlice,
    ConfigMap,
    KIngress,
    /// Core Secrets holding certificates (only `kubernetes.io/tls` ones are served).
    Secret,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::KService,
        Kind::Route,
        Kind::Configuration,
        Kind::Revision,
        Kind::DomainMapping,
        Kind::ClusterDomainClaim,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::ConfigMap,
        Kind::KIngress,
        Kind::Secret,
    ];

    /// The kind as users write it, qualified where `kind` alone is ambiguous.
    pub fn display_name(self) -> &'static str {
        match self {
            Kind::KService => "Service.serving.knative.dev",
            Kind::Route => "Route",
            Kind::Configuration => "Configuration",
            Kind::Revision => "Revision",
            Kind::DomainMapping => "DomainMapping",
            Kind::ClusterDomainClaim => "ClusterDomainClaim",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::ConfigMap => "ConfigMap",
            Kind::KIngress => "Ingress.networking.internal.knative.dev",
            Kind::Secret => "Secret",
        }
    }

    /// Maps `apiVersion` + `kind` to a kind we read; `None` for kinds we ignore quietly.
    pub fn from_api(api_version: &str, kind: &str) -> Option<Kind> {
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        match (group, kind) {
            ("serving.knative.dev", "Service") => Some(Kind::KService),
            ("serving.knative.dev", "Route") => Some(Kind::Route),
            ("serving.knative.dev", "Configuration") => Some(Kind::Configuration),
            ("serving.knative.dev", "Revision") => Some(Kind::Revision),
            ("serving.knative.dev", "DomainMapping") => Some(Kind::DomainMapping),
            ("networking.internal.knative.dev", "ClusterDomainClaim") => {
                Some(Kind::ClusterDomainClaim)
            }
            ("", "Service") => Some(Kind::Service),
            ("discovery.k8s.io", "EndpointSlice") => Some(Kind::EndpointSlice),
            ("", "ConfigMap") => Some(Kind::ConfigMap),
            ("networking.internal.knative.dev", "Ingress") => Some(Kind::KIngress),
            ("", "Secret") => Some(Kind::Secret),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

/// Namespace and name; the namespace is empty for cluster-scoped objects.
///
/// Shared strings: a key is copied into the store's maps, stamps and change journal, the
/// translator's indexes and every result naming its object, and a copy costs no allocation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
pub struct ObjectKey {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<Arc<str>>, name: impl Into<Arc<str>>) -> ObjectKey {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// A kind and a key: names any object in reports.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
pub struct ObjectRef {
    pub kind: Kind,
    #[serde(flatten)]
    pub key: ObjectKey,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.key)
    }
}

/// Any object we read.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    KService(KService),
    Route(Route),
    Configuration(Configuration),
    Revision(Revision),
    DomainMapping(DomainMapping),
    ClusterDomainClaim(ClusterDomainClaim),
    Service(Service),
    EndpointSlice(EndpointSlice),
    ConfigMap(ConfigMap),
    KIngress(KIngress),
    Secret(Secret),
}

/// Why a document could not become an [`Object`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("{kind} {name}: {message}")]
    Invalid {
        kind: Kind,
        name: String,
        message: String,
    },
    #[error("{kind}: metadata.name is required")]
    MissingName { kind: Kind },
}

impl Object {
    /// Decodes a document whose `apiVersion`/`kind` map to `kind`. `default_namespace`
    /// fills an empty namespace of a namespaced object (as `kubectl apply` does).
    pub fn decode(kind: Kind, value: serde_json::Value) -> Result<Object, DecodeError> {
        let name = value
            .pointer("/metadata/name")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string();
        fn de<T: serde::de::DeserializeOwned>(
            kind: Kind,
            name: &str,
            v: serde_json::Value,
        ) -> Result<T, DecodeError> {
            serde_json::from_value(v).map_err(|e| DecodeError::Invalid {
                kind,
                name: name.to_string(),
                message: e.to_string(),
            })
        }
        let obj = match kind {
            Kind::KService => Object::KService(de(kind, &name, value)?),
            Kind::Route => Object::Route(de(kind, &name, value)?),
            Kind::Configuration => Object::Configuration(de(kind, &name, value)?),
            Kind::Revision => Object::Revision(de(kind, &name, value)?),
            Kind::DomainMapping => Object::DomainMapping(de(kind, &name, value)?),
            Kind::ClusterDomainClaim => Object::ClusterDomainClaim(de(kind, &name, value)?),
            Kind::Service => Object::Service(de(kind, &name, value)?),
            Kind::EndpointSlice => Object::EndpointSlice(de(kind, &name, value)?),
            Kind::ConfigMap => Object::ConfigMap(de(kind, &name, value)?),
            Kind::KIngress => Object::KIngress(de(kind, &name, value)?),
            Kind::Secret => Object::Secret(de(kind, &name, value)?),
        };
        obj.normalized()
    }

    pub fn kind(&self) -> Kind {
        match self {
            Object::KService(_) => Kind::KService,
            Object::Route(_) => Kind::Route,
            Object::Configuration(_) => Kind::Configuration,
            Object::Revision(_) => Kind::Revision,
            Object::DomainMapping(_) => Kind::DomainMapping,
            Object::ClusterDomainClaim(_) => Kind::ClusterDomainClaim,
            Object::Service(_) => Kind::Service,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::ConfigMap(_) => Kind::ConfigMap,
            Object::KIngress(_) => Kind::KIngress,
            Object::Secret(_) => Kind::Secret,
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Object::KService(o) => &o.metadata,
            Object::Route(o) => &o.metadata,
            Object::Configuration(o) => &o.metadata,
            Object::Revision(o) => &o.metadata,
            Object::DomainMapping(o) => &o.metadata,
            Object::ClusterDomainClaim(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::KIngress(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
        }
    }

    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::KService(o) => &mut o.metadata,
            Object::Route(o) => &mut o.metadata,
            Object::Configuration(o) => &mut o.metadata,
            Object::Revision(o) => &mut o.metadata,
            Object::DomainMapping(o) => &mut o.metadata,
            Object::ClusterDomainClaim(o) => &mut o.metadata,
            Object::Service(o) => &mut o.metadata,
            Object::EndpointSlice(o) => &mut o.metadata,
            Object::ConfigMap(o) => &mut o.metadata,
            Object::KIngress(o) => &mut o.metadata,
            Object::Secret(o) => &mut o.metadata,
        }
    }

    pub fn key(&self) -> ObjectKey {
        let m = self.meta();
        ObjectKey::new(m.namespace.clone(), m.name.clone())
    }

    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            kind: self.kind(),
            key: self.key(),
        }
    }
}

/// The objects of one kind by key: a `BTreeMap` whose values are boxed. A B-tree node holds
/// eleven entries and is often half full; unboxed, each entry would cost the whole object
/// (up to ~400 bytes) again in empty slots. Each object carries its [`Store::stamp`].
#[derive(Debug, Clone)]
pub struct Objects<T>(BTreeMap<ObjectKey, Box<Stamped<T>>>);

#[derive(Debug, Clone)]
pub struct Stamped<T> {
    stamp: u64,
    value: T,
}

/// A number never handed out before in this process, so stamps never repeat across stores
/// (a cache filled from one store must not mistake another store's objects for the ones it
/// saw). Never 0: a cache may use 0 for "absent".
fn next_stamp() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Stamps are not part of the value: two stores with the same objects are equal.
impl<T: PartialEq> PartialEq for Objects<T> {
    fn eq(&self, other: &Objects<T>) -> bool {
        self.iter().eq(other.iter())
    }
}

impl<T> Default for Objects<T> {
    fn default() -> Self {
        Objects(BTreeMap::new())
    }
}

impl<T> Objects<T> {
    pub fn get(&self, key: &ObjectKey) -> Option<&T> {
        self.0.get(key).map(|b| &b.value)
    }

    /// When the object last changed (`None`: not here).
    pub fn stamp(&self, key: &ObjectKey) -> Option<u64> {
        self.0.get(key).map(|b| b.stamp)
    }

    pub fn contains_key(&self, key: &ObjectKey) -> bool {
        self.0.contains_key(key)
    }

    /// Inserts or replaces the object, with a fresh stamp.
    pub fn insert(&mut self, key: ObjectKey, value: T) -> Option<T> {
        let stamp = next_stamp();
        let old = self.0.insert(key, Box::new(Stamped { stamp, value }));
        old.map(|b| b.value)
    }

    pub fn remove(&mut self, key: &ObjectKey) -> Option<T> {
        self.0.remove(key).map(|b| b.value)
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&ObjectKey, &T)> {
        self.0.iter().map(|(k, v)| (k, &v.value))
    }

    pub fn keys(&self) -> std::collections::btree_map::Keys<'_, ObjectKey, Box<Stamped<T>>> {
        self.0.keys()
    }

    pub fn range(
        &self,
        range: impl std::ops::RangeBounds<ObjectKey>,
    ) -> impl DoubleEndedIterator<Item = (&ObjectKey, &T)> {
        self.0.range(range).map(|(k, v)| (k, &v.value))
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &T> {
        self.0.values().map(|v| &v.value)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Rebuilds the map with full nodes (see [`Store::compact`]).
    fn compact(&mut self) {
        self.0 = std::mem::take(&mut self.0).into_iter().collect();
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<T> std::ops::Index<&ObjectKey> for Objects<T> {
    type Output = T;
    fn index(&self, key: &ObjectKey) -> &T {
        &self.0[key].value
    }
}

impl<'a, T> IntoIterator for &'a Objects<T> {
    type Item = (&'a ObjectKey, &'a T);
    type IntoIter = std::iter::Map<
        std::collections::btree_map::Iter<'a, ObjectKey, Box<Stamped<T>>>,
        fn((&'a ObjectKey, &'a Box<Stamped<T>>)) -> (&'a ObjectKey, &'a T),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, &v.value))
    }
}

/// Label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Every object by kind and key, with the one secondary index translation needs
/// (EndpointSlices by Service).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Store {
    pub kservices: Objects<KService>,
    pub routes: Objects<Route>,
    pub configurations: Objects<Configuration>,
    pub revisions: Objects<Revision>,
    pub domain_mappings: Objects<DomainMapping>,
    pub domain_claims: Objects<ClusterDomainClaim>,
    pub services: Objects<Service>,
    pub endpoint_slices: Objects<EndpointSlice>,
    pub config_maps: Objects<ConfigMap>,
    pub kingresses: Objects<KIngress>,
    pub secrets: Objects<Secret>,
    /// (namespace, service name) → EndpointSlice keys.
    slices_by_service: Index,
    /// (namespace, configuration name) → the keys of the Revisions labelled with it: a
    /// Configuration's latest ready Revision is found without walking its namespace.
    revisions_by_configuration: Index,
    /// What changed since the last [`Store::take_dirty`]: lets the serve loop translate
    /// only what a change touches.
    dirty: Dirty,
}

/// Not part of the store's value (two stores with the same objects are equal).
/// `None`: the store was empty at the last take (or never taken), so everything is new and
/// nothing is recorded (a cold start would otherwise hash every key into a set nobody reads).
#[derive(Debug, Clone, Default)]
struct Dirty(Option<DepSet>);

impl Dirty {
    fn mark(&mut self, dep: Dep) {
        if let Some(set) = &mut self.0 {
            set.insert(dep);
        }
    }
}

impl PartialEq for Dirty {
    fn eq(&self, _: &Dirty) -> bool {
        true
    }
}

/// A set of [`Dep`]s (what changed). A fast hasher: a cold start hashes every object's key
/// several times.
pub type DepSet = foldhash::HashSet<Dep>;

/// Something a translation reads, for change detection ([`Store::stamp`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dep {
    Object(Kind, ObjectKey),
    /// The Revisions labelled with a Configuration (namespace, configuration name).
    ConfigurationRevisions(ObjectKey),
    /// The EndpointSlices labelled with a Service (namespace, service name).
    ServiceSlices(ObjectKey),
}

const CONFIGURATION_LABEL: &str = "serving.knative.dev/configuration";

/// Keys grouped under another key, each group a sorted `Vec`: nearly always one entry, and
/// a `BTreeSet` node is ~0.5 KB.
type Index = BTreeMap<ObjectKey, Group>;

/// One group of an [`Index`], with the stamp of its last change (see [`Store::stamp`]).
#[derive(Debug, Clone, Default)]
struct Group {
    stamp: u64,
    keys: Vec<ObjectKey>,
}

/// Stamps are not part of the value, as for [`Objects`].
impl PartialEq for Group {
    fn eq(&self, other: &Group) -> bool {
        self.keys == other.keys
    }
}

/// The (namespace, configuration) group a Revision is indexed under: its label's.
fn configuration_of(key: &ObjectKey, r: &Revision) -> Option<ObjectKey> {
    let c = r.metadata.labels.get(CONFIGURATION_LABEL)?;
    Some(ObjectKey::new(key.namespace.clone(), c))
}

/// The (namespace, service) group an EndpointSlice is indexed under: its label's.
fn service_of(key: &ObjectKey, s: &EndpointSlice) -> Option<ObjectKey> {
    let svc = s.metadata.labels.get(SERVICE_NAME_LABEL)?;
    Some(ObjectKey::new(key.namespace.clone(), svc))
}

fn index_insert(index: &mut Index, at: ObjectKey, key: &ObjectKey) {
    let group = index.entry(at).or_default();
    group.stamp = next_stamp();
    if let Err(i) = group.keys.binary_search(key) {
        // Nearly always one key per group: room for one, not the four a first insert makes.
        group.keys.reserve_exact(usize::from(group.keys.is_empty()));
        group.keys.insert(i, key.clone());
    }
}

/// Marks a group changed (one of its objects changed).
fn index_touch(index: &mut Index, at: &ObjectKey) {
    if let Some(group) = index.get_mut(at) {
        group.stamp = next_stamp();
    }
}

/// The objects an index groups under (namespace, name), in key order.
fn indexed<'a, T>(
    index: &'a Index,
    objects: &'a Objects<T>,
    namespace: &str,
    name: &str,
) -> impl Iterator<Item = &'a T> + 'a {
    index
        .get(&ObjectKey::new(namespace, name))
        .into_iter()
        .flat_map(|g| &g.keys)
        .filter_map(|k| objects.get(k))
}

fn index_remove(index: &mut Index, at: &ObjectKey, key: &ObjectKey) {
    if let Some(group) = index.get_mut(at) {
        group.stamp = next_stamp();
        group.keys.retain(|k| k != key);
        if group.keys.is_empty() {
            index.remove(at);
        }
    }
}

/// Objects gathered for [`Store::load`], each boxed and stamped as it comes (the store
/// keeps the boxes), with the index entries they make. Each (kind, key) at most once.
#[derive(Debug, Default)]
pub struct Loaded {
    kservices: Vec<(ObjectKey, Box<Stamped<KService>>)>,
    routes: Vec<(ObjectKey, Box<Stamped<Route>>)>,
    configurations: Vec<(ObjectKey, Box<Stamped<Configuration>>)>,
    revisions: Vec<(ObjectKey, Box<Stamped<Revision>>)>,
    domain_mappings: Vec<(ObjectKey, Box<Stamped<DomainMapping>>)>,
    domain_claims: Vec<(ObjectKey, Box<Stamped<ClusterDomainClaim>>)>,
    services: Vec<(ObjectKey, Box<Stamped<Service>>)>,
    endpoint_slices: Vec<(ObjectKey, Box<Stamped<EndpointSlice>>)>,
    config_maps: Vec<(ObjectKey, Box<Stamped<ConfigMap>>)>,
    kingresses: Vec<(ObjectKey, Box<Stamped<KIngress>>)>,
    secrets: Vec<(ObjectKey, Box<Stamped<Secret>>)>,
    /// (configuration, revision) and (service, slice) pairs.
    by_configuration: Vec<(ObjectKey, ObjectKey)>,
    by_service: Vec<(ObjectKey, ObjectKey)>,
}

impl Loaded {
    /// `key` is `obj.key()`, as for [`Store::apply_keyed`].
    pub fn push(&mut self, key: ObjectKey, obj: Object) {
        debug_assert_eq!(key, obj.key());
        fn boxed<T>(value: T) -> Box<Stamped<T>> {
            Box::new(Stamped {
                stamp: next_stamp(),
                value,
            })
        }
        match obj {
            Object::KService(o) => self.kservices.push((key, boxed(o))),
            Object::Route(o) => self.routes.push((key, boxed(o))),
            Object::Configuration(o) => self.configurations.push((key, boxed(o))),
            Object::Revision(o) => {
                if let Some(at) = configuration_of(&key, &o) {
                    self.by_configuration.push((at, key.clone()));
                }
                self.revisions.push((key, boxed(o)));
            }
            Object::DomainMapping(o) => self.domain_mappings.push((key, boxed(o))),
            Object::ClusterDomainClaim(o) => self.domain_claims.push((key, boxed(o))),
            Object::Service(o) => self.services.push((key, boxed(o))),
            Object::EndpointSlice(o) => {
                if let Some(at) = service_of(&key, &o) {
                    self.by_service.push((at, key.clone()));
                }
                self.endpoint_slices.push((key, boxed(o)));
            }
            Object::ConfigMap(o) => self.config_maps.push((key, boxed(o))),
            Object::KIngress(o) => self.kingresses.push((key, boxed(o))),
            Object::Secret(o) => self.secrets.push((key, boxed(o))),
        }
    }
}

impl Store {
    pub fn new() -> Store {
        Store::default()
    }

    /// Inserts or replaces an object.
    pub fn apply(&mut self, obj: Object) {
        self.apply_keyed(obj.key(), obj)
    }

    /// [`Store::apply`] with the object's key already made (`obj.key()`): the store keeps
    /// that key, so a caller that holds it shares its strings.
    pub fn apply_keyed(&mut self, key: ObjectKey, obj: Object) {
        debug_assert_eq!(key, obj.key());
        let kind = obj.kind();
        if let Object::Revision(r) = &obj {
            // Both the Configuration it was labelled with and the one it is labelled with
            // now see their set of Revisions change; the index moves only on a relabel.
            let old = self.configuration_of_revision(&key);
            let new = configuration_of(&key, r);
            let index = &mut self.revisions_by_configuration;
            if old == new {
                if let Some(c) = &old {
                    index_touch(index, c);
                }
            } else {
                if let Some(old) = &old {
                    index_remove(index, old, &key);
                }
                if let Some(new) = &new {
                    index_insert(index, new.clone(), &key);
                }
            }
            let dirty = &mut self.dirty;
            old.into_iter()
                .for_each(|c| dirty.mark(Dep::ConfigurationRevisions(c)));
            new.into_iter()
                .for_each(|c| dirty.mark(Dep::ConfigurationRevisions(c)));
        }
        self.dirty.mark(Dep::Object(kind, key.clone()));
        match obj {
            Object::KService(o) => {
                self.kservices.insert(key, o);
            }
            Object::Route(o) => {
                self.routes.insert(key, o);
            }
            Object::Configuration(o) => {
                self.configurations.insert(key, o);
            }
            Object::Revision(o) => {
                self.revisions.insert(key, o);
            }
            Object::DomainMapping(o) => {
                self.domain_mappings.insert(key, o);
            }
            Object::ClusterDomainClaim(o) => {
                self.domain_claims.insert(key, o);
            }
            Object::Service(o) => {
                self.services.insert(key, o);
            }
            Object::EndpointSlice(o) => {
                self.delete(Kind::EndpointSlice, &key);
                if let Some(idx) = service_of(&key, &o) {
                    self.dirty.mark(Dep::ServiceSlices(idx.clone()));
                    index_insert(&mut self.slices_by_service, idx, &key);
                }
                self.endpoint_slices.insert(key, o);
            }
            Object::ConfigMap(o) => {
                self.config_maps.insert(key, o);
            }
            Object::KIngress(o) => {
                self.kingresses.insert(key, o);
            }
            Object::Secret(o) => {
                self.secrets.insert(key, o);
            }
        }
    }

    /// Fills a store that has no objects with `loaded` at once (a cold start): the store
    /// that applying each object in turn gives, but each map is built from its entries
    /// sorted, which costs one sort instead of a tree search per object and leaves the
    /// nodes full (see [`Store::compact`]). A store that records changes (it held objects at
    /// the last [`Store::take_dirty`]) takes them one by one.
    pub fn load(&mut self, loaded: Loaded) {
        let Loaded {
            kservices,
            routes,
            configurations,
            revisions,
            domain_mappings,
            domain_claims,
            services,
            endpoint_slices,
            config_maps,
            kingresses,
            secrets,
            by_configuration,
            by_service,
        } = loaded;
        if !self.is_empty() || self.dirty.0.is_some() {
            fn each<T>(
                items: Vec<(ObjectKey, Box<Stamped<T>>)>,
                wrap: fn(T) -> Object,
            ) -> impl Iterator<Item = (ObjectKey, Object)> {
                items.into_iter().map(move |(k, b)| (k, wrap(b.value)))
            }
            let all = each(kservices, Object::KService)
                .chain(each(routes, Object::Route))
                .chain(each(configurations, Object::Configuration))
                .chain(each(revisions, Object::Revision))
                .chain(each(domain_mappings, Object::DomainMapping))
                .chain(each(domain_claims, Object::ClusterDomainClaim))
                .chain(each(services, Object::Service))
                .chain(each(endpoint_slices, Object::EndpointSlice))
                .chain(each(config_maps, Object::ConfigMap))
                .chain(each(kingresses, Object::KIngress))
                .chain(each(secrets, Object::Secret));
            for (key, obj) in all {
                self.apply_keyed(key, obj);
            }
            return;
        }
        fn index(mut pairs: Vec<(ObjectKey, ObjectKey)>) -> Index {
            pairs.sort_unstable();
            pairs.dedup();
            let mut groups: Vec<(ObjectKey, Group)> = Vec::new();
            for (at, key) in pairs {
                match groups.last_mut() {
                    Some((last, group)) if *last == at => group.keys.push(key),
                    _ => groups.push((
                        at,
                        Group {
                            stamp: next_stamp(),
                            keys: vec![key],
                        },
                    )),
                }
            }
            groups.into_iter().collect()
        }
        // `BTreeMap`'s `FromIterator` sorts its entries, then builds bottom-up. The maps are
        // independent: the three largest kinds (a cold start's Revisions, EndpointSlices
        // and their index) are built on another thread when there are many objects.
        let many = revisions.len() + endpoint_slices.len() >= 4096;
        let ((revisions, endpoint_slices, slices_by_service), ()) = crate::par::beside(
            many,
            || {
                (
                    Objects(revisions.into_iter().collect()),
                    Objects(endpoint_slices.into_iter().collect()),
                    index(by_service),
                )
            },
            || {
                self.kservices = Objects(kservices.into_iter().collect());
                self.routes = Objects(routes.into_iter().collect());
                self.configurations = Objects(configurations.into_iter().collect());
                self.domain_mappings = Objects(domain_mappings.into_iter().collect());
                self.domain_claims = Objects(domain_claims.into_iter().collect());
                self.services = Objects(services.into_iter().collect());
                self.config_maps = Objects(config_maps.into_iter().collect());
                self.kingresses = Objects(kingresses.into_iter().collect());
                self.secrets = Objects(secrets.into_iter().collect());
                self.revisions_by_configuration = index(by_configuration);
            },
        );
        self.revisions = revisions;
        self.endpoint_slices = endpoint_slices;
        self.slices_by_service = slices_by_service;
    }

    /// Rebuilds every map with full nodes. A `BTreeMap` filled one entry at a time in key
    /// order (a folder read file by file) leaves its nodes about half full, and one built
    /// from an ordered sequence has them full, in much less room. For a store that has just
    /// been filled (a cold start); the content and the stamps do not change.
    pub fn compact(&mut self) {
        self.kservices.compact();
        self.routes.compact();
        self.configurations.compact();
        self.revisions.compact();
        self.domain_mappings.compact();
        self.domain_claims.compact();
        self.services.compact();
        self.endpoint_slices.compact();
        self.config_maps.compact();
        self.kingresses.compact();
        self.secrets.compact();
        for index in [
            &mut self.slices_by_service,
            &mut self.revisions_by_configuration,
        ] {
            *index = std::mem::take(index).into_iter().collect();
        }
    }

    /// Inserts or replaces an object unless an identical one is there; returns whether the
    /// store changed.
    pub fn apply_if_changed(&mut self, obj: Object) -> bool {
        self.apply_keyed_if_changed(obj.key(), obj)
    }

    /// [`Store::apply_if_changed`] with the object's key already made, as for
    /// [`Store::apply_keyed`].
    pub fn apply_keyed_if_changed(&mut self, key: ObjectKey, obj: Object) -> bool {
        let same = match &obj {
            Object::KService(o) => self.kservices.get(&key) == Some(o),
            Object::Route(o) => self.routes.get(&key) == Some(o),
            Object::Configuration(o) => self.configurations.get(&key) == Some(o),
            Object::Revision(o) => self.revisions.get(&key) == Some(o),
            Object::DomainMapping(o) => self.domain_mappings.get(&key) == Some(o),
            Object::ClusterDomainClaim(o) => self.domain_claims.get(&key) == Some(o),
            Object::Service(o) => self.services.get(&key) == Some(o),
            Object::EndpointSlice(o) => self.endpoint_slices.get(&key) == Some(o),
            Object::ConfigMap(o) => self.config_maps.get(&key) == Some(o),
            Object::KIngress(o) => self.kingresses.get(&key) == Some(o),
            Object::Secret(o) => self.secrets.get(&key) == Some(o),
        };
        if same {
            return false;
        }
        self.apply_keyed(key, obj);
        true
    }

    /// One object, cloned into an [`Object`].
    pub fn get(&self, kind: Kind, key: &ObjectKey) -> Option<Object> {
        match kind {
            Kind::KService => self.kservices.get(key).cloned().map(Object::KService),
            Kind::Route => self.routes.get(key).cloned().map(Object::Route),
            Kind::Configuration => self
                .configurations
                .get(key)
                .cloned()
                .map(Object::Configuration),
            Kind::Revision => self.revisions.get(key).cloned().map(Object::Revision),
            Kind::DomainMapping => self
                .domain_mappings
                .get(key)
                .cloned()
                .map(Object::DomainMapping),
            Kind::ClusterDomainClaim => self
                .domain_claims
                .get(key)
                .cloned()
                .map(Object::ClusterDomainClaim),
            Kind::Service => self.services.get(key).cloned().map(Object::Service),
            Kind::EndpointSlice => self
                .endpoint_slices
                .get(key)
                .cloned()
                .map(Object::EndpointSlice),
            Kind::ConfigMap => self.config_maps.get(key).cloned().map(Object::ConfigMap),
            Kind::KIngress => self.kingresses.get(key).cloned().map(Object::KIngress),
            Kind::Secret => self.secrets.get(key).cloned().map(Object::Secret),
        }
    }

    /// Whether the store holds this object.
    pub fn contains(&self, kind: Kind, key: &ObjectKey) -> bool {
        self.object_stamp(kind, key).is_some()
    }

    /// Keys of every object of a kind.
    pub fn keys(&self, kind: Kind) -> Vec<ObjectKey> {
        fn k<T>(m: &Objects<T>) -> Vec<ObjectKey> {
            m.keys().cloned().collect()
        }
        match kind {
            Kind::KService => k(&self.kservices),
            Kind::Route => k(&self.routes),
            Kind::Configuration => k(&self.configurations),
            Kind::Revision => k(&self.revisions),
            Kind::DomainMapping => k(&self.domain_mappings),
            Kind::ClusterDomainClaim => k(&self.domain_claims),
            Kind::Service => k(&self.services),
            Kind::EndpointSlice => k(&self.endpoint_slices),
            Kind::ConfigMap => k(&self.config_maps),
            Kind::KIngress => k(&self.kingresses),
            Kind::Secret => k(&self.secrets),
        }
    }

    /// Removes an object; returns whether it existed.
    pub fn delete(&mut self, kind: Kind, key: &ObjectKey) -> bool {
        if kind == Kind::Revision {
            if let Some(config) = self.configuration_of_revision(key) {
                index_remove(&mut self.revisions_by_configuration, &config, key);
                self.dirty.mark(Dep::ConfigurationRevisions(config));
            }
        }
        self.dirty.mark(Dep::Object(kind, key.clone()));
        match kind {
            Kind::KService => self.kservices.remove(key).is_some(),
            Kind::Route => self.routes.remove(key).is_some(),
            Kind::Configuration => self.configurations.remove(key).is_some(),
            Kind::Revision => self.revisions.remove(key).is_some(),
            Kind::DomainMapping => self.domain_mappings.remove(key).is_some(),
            Kind::ClusterDomainClaim => self.domain_claims.remove(key).is_some(),
            Kind::Service => self.services.remove(key).is_some(),
            Kind::EndpointSlice => {
                let Some(old) = self.endpoint_slices.remove(key) else {
                    return false;
                };
                if let Some(idx) = service_of(key, &old) {
                    index_remove(&mut self.slices_by_service, &idx, key);
                    self.dirty.mark(Dep::ServiceSlices(idx));
                }
                true
            }
            Kind::ConfigMap => self.config_maps.remove(key).is_some(),
            Kind::KIngress => self.kingresses.remove(key).is_some(),
            Kind::Secret => self.secrets.remove(key).is_some(),
        }
    }

    /// Everything that changed (objects applied or deleted, Revision and EndpointSlice
    /// sets) since the previous call; `None` for everything (the store was empty then, as
    /// before the first call).
    pub fn take_dirty(&mut self) -> Option<DepSet> {
        let next = (!self.is_empty()).then(DepSet::default);
        std::mem::replace(&mut self.dirty.0, next)
    }

    /// No objects at all.
    pub fn is_empty(&self) -> bool {
        self.kservices.is_empty()
            && self.routes.is_empty()
            && self.configurations.is_empty()
            && self.revisions.is_empty()
            && self.domain_mappings.is_empty()
            && self.domain_claims.is_empty()
            && self.services.is_empty()
            && self.endpoint_slices.is_empty()
            && self.config_maps.is_empty()
            && self.kingresses.is_empty()
            && self.secrets.is_empty()
    }

    /// The (namespace, configuration) a stored Revision is labelled with.
    fn configuration_of_revision(&self, key: &ObjectKey) -> Option<ObjectKey> {
        configuration_of(key, self.revisions.get(key)?)
    }

    /// A number that is new each time `dep` changes (an object applied, a group of Revisions
    /// or EndpointSlices changed); `None` while it does not exist. Lets translation tell,
    /// without comparing objects, whether its inputs changed. Kept beside each object and
    /// group rather than in a map of its own, which would hold every key a second time.
    pub fn stamp(&self, dep: &Dep) -> Option<u64> {
        match dep {
            Dep::Object(kind, key) => self.object_stamp(*kind, key),
            Dep::ConfigurationRevisions(c) => {
                self.revisions_by_configuration.get(c).map(|g| g.stamp)
            }
            Dep::ServiceSlices(s) => self.slices_by_service.get(s).map(|g| g.stamp),
        }
    }

    fn object_stamp(&self, kind: Kind, key: &ObjectKey) -> Option<u64> {
        match kind {
            Kind::KService => self.kservices.stamp(key),
            Kind::Route => self.routes.stamp(key),
            Kind::Configuration => self.configurations.stamp(key),
            Kind::Revision => self.revisions.stamp(key),
            Kind::DomainMapping => self.domain_mappings.stamp(key),
            Kind::ClusterDomainClaim => self.domain_claims.stamp(key),
            Kind::Service => self.services.stamp(key),
            Kind::EndpointSlice => self.endpoint_slices.stamp(key),
            Kind::ConfigMap => self.config_maps.stamp(key),
            Kind::KIngress => self.kingresses.stamp(key),
            Kind::Secret => self.secrets.stamp(key),
        }
    }

    /// The EndpointSlices of a Service, in name order.
    pub fn slices_for_service<'a>(
        &'a self,
        namespace: &str,
        service: &str,
    ) -> impl Iterator<Item = &'a EndpointSlice> + 'a {
        indexed(
            &self.slices_by_service,
            &self.endpoint_slices,
            namespace,
            service,
        )
    }

    /// The Revisions labelled with a Configuration, in name order.
    pub fn revisions_of_configuration<'a>(
        &'a self,
        namespace: &str,
        configuration: &str,
    ) -> impl Iterator<Item = &'a Revision> + 'a {
        indexed(
            &self.revisions_by_configuration,
            &self.revisions,
            namespace,
            configuration,
        )
    }

    /// Number of objects of every kind.
    pub fn counts(&self) -> BTreeMap<Kind, usize> {
        BTreeMap::from([
            (Kind::KService, self.kservices.len()),
            (Kind::Route, self.routes.len()),
            (Kind::Configuration, self.configurations.len()),
            (Kind::Revision, self.revisions.len()),
            (Kind::DomainMapping, self.domain_mappings.len()),
            (Kind::ClusterDomainClaim, self.domain_claims.len()),
            (Kind::Service, self.services.len()),
            (Kind::EndpointSlice, self.endpoint_slices.len()),
            (Kind::ConfigMap, self.config_maps.len()),
            (Kind::KIngress, self.kingresses.len()),
        ])
    }
}

/// What one object is deserialized from, whichever its kind: a YAML document (through a
/// reader) or a JSON value.
trait Source {
    type Error;
    fn read<T: serde::de::DeserializeOwned>(self) -> Result<T, Self::Error>;
}

struct YamlDocument<'a, R> {
    reader: &'a R,
    text: &'a str,
}

impl<R: crate::yaml::Reader> Source for YamlDocument<'_, R> {
    type Error = crate::yaml::Error;
    fn read<T: serde::de::DeserializeOwned>(self) -> Result<T, Self::Error> {
        self.reader.read(self.text)
    }
}

impl Source for serde_json::Value {
    type Error = String;
    /// The error names the field (`spec.traffic[0].percent: ...`).
    fn read<T: serde::de::DeserializeOwned>(self) -> Result<T, String> {
        serde_path_to_error::deserialize(self).map_err(|e| match e.path().to_string() {
            p if p == "." => e.into_inner().to_string(),
            p => format!("{p}: {}", e.into_inner()),
        })
    }
}

impl Object {
    /// Decodes one YAML document of a kind we read, keeping the line (relative to the
    /// document) in the error.
    pub fn decode_yaml(kind: Kind, text: &str) -> Result<Object, crate::yaml::Error> {
        Self::decode_yaml_with(kind, text, &crate::yaml::Shipped)
    }

    /// [`Object::decode_yaml`] with another reader (the benchmarks compare readers).
    pub fn decode_yaml_with(
        kind: Kind,
        text: &str,
        reader: &impl crate::yaml::Reader,
    ) -> Result<Object, crate::yaml::Error> {
        let obj = Object::of_kind(kind, YamlDocument { reader, text })?;
        obj.normalized().map_err(|e| crate::yaml::Error {
            line: None,
            message: e.to_string(),
        })
    }

    /// Decodes one object of a kind we read from a JSON value (a `*.json` manifest or an
    /// item of a `List`); the error names the field.
    pub fn decode_value(kind: Kind, value: serde_json::Value) -> Result<Object, String> {
        Object::of_kind(kind, value)?
            .normalized()
            .map_err(|e| e.to_string())
    }

    /// `source` deserialized as an object of `kind`.
    fn of_kind<S: Source>(kind: Kind, source: S) -> Result<Object, S::Error> {
        Ok(match kind {
            Kind::KService => Object::KService(source.read()?),
            Kind::Route => Object::Route(source.read()?),
            Kind::Configuration => Object::Configuration(source.read()?),
            Kind::Revision => Object::Revision(source.read()?),
            Kind::DomainMapping => Object::DomainMapping(source.read()?),
            Kind::ClusterDomainClaim => Object::ClusterDomainClaim(source.read()?),
            Kind::Service => Object::Service(source.read()?),
            Kind::EndpointSlice => Object::EndpointSlice(source.read()?),
            Kind::ConfigMap => Object::ConfigMap(source.read()?),
            Kind::KIngress => Object::KIngress(source.read()?),
            Kind::Secret => Object::Secret(source.read()?),
        })
    }

    /// Checks the name and fills an empty namespace with `default` (as `kubectl apply`
    /// does); cluster-scoped objects get none.
    pub fn normalized(mut self) -> Result<Object, DecodeError> {
        let kind = self.kind();
        if self.meta().name.is_empty() {
            return Err(DecodeError::MissingName { kind });
        }
        let meta = self.meta_mut();
        if kind == Kind::ClusterDomainClaim {
            meta.namespace = "".into();
        } else if meta.namespace.is_empty() {
            meta.namespace = "default".into();
        }
        Ok(self)
    }
}
