//! A complete, immutable set of resources for every type: what the server serves right now.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::resource::{Resource, ResourceType};

/// Resources of one type by name: ordered (iteration, and so responses, are deterministic)
/// and persistent, so a snapshot that differs from the previous one in a few resources
/// shares the rest of its structure (clone is O(1), comparing two is O(the difference)).
/// Keyed by the resource's own name (the same `Arc`).
pub type ResourceMap = imbl::OrdMap<Arc<str>, Arc<Resource>>;

/// Every resource of every type at one point in time. Cheap to share (`Arc<Snapshot>`);
/// resources that did not change between two snapshots are the same `Arc`s.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// Identity of this content (not compared): lets a connection skip re-examining a
    /// snapshot it has already synced against.
    id: SnapshotId,
    clusters: ResourceMap,
    endpoints: ResourceMap,
    secrets: ResourceMap,
    listeners: ResourceMap,
    scoped_routes: ResourceMap,
    routes: ResourceMap,
    /// Set at publication: what changed since the snapshot published before, so each
    /// stream examines only those names (not compared).
    lineage: Lineage,
    /// Per type, the digest of every resource's name and version, computed once (not
    /// compared).
    versions: TypeVersions,
}

/// Names (per type, sorted) that differ from the parent snapshot: added, changed or removed.
#[derive(Debug)]
pub struct Changes {
    pub parent: u64,
    names: [Vec<String>; ResourceType::COUNT],
}

impl Changes {
    pub fn names(&self, ty: ResourceType) -> &[String] {
        &self.names[ty as usize]
    }
}

#[derive(Debug, Clone, Default)]
struct Lineage(Option<Arc<Changes>>);

impl PartialEq for Lineage {
    fn eq(&self, _: &Lineage) -> bool {
        true
    }
}

#[derive(Debug, Clone, Default)]
struct TypeVersions([std::sync::OnceLock<String>; ResourceType::COUNT]);

impl PartialEq for TypeVersions {
    fn eq(&self, _: &TypeVersions) -> bool {
        true
    }
}

/// A process-unique number per snapshot content; equal for clones, never compared.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotId(u64);

impl SnapshotId {
    fn fresh() -> SnapshotId {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        SnapshotId(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
    }
}

impl Default for SnapshotId {
    fn default() -> Self {
        SnapshotId::fresh()
    }
}

impl PartialEq for SnapshotId {
    fn eq(&self, _: &SnapshotId) -> bool {
        true
    }
}

impl Snapshot {
    /// See [`SnapshotId`].
    pub fn id(&self) -> u64 {
        self.id.0
    }

    pub fn new(
        clusters: ResourceMap,
        endpoints: ResourceMap,
        listeners: ResourceMap,
        routes: ResourceMap,
    ) -> Snapshot {
        Snapshot {
            id: SnapshotId::fresh(),
            clusters,
            endpoints,
            secrets: ResourceMap::new(),
            listeners,
            scoped_routes: ResourceMap::new(),
            routes,
            lineage: Lineage::default(),
            versions: TypeVersions::default(),
        }
    }

    /// Marks this snapshot as published after `previous`: a fresh id (ids grow in
    /// publication order) and the names that changed since.
    pub fn published_after(mut self, previous: Option<&Snapshot>) -> Snapshot {
        self.id = SnapshotId::fresh();
        self.lineage = Lineage(previous.map(|p| {
            Arc::new(Changes {
                parent: p.id(),
                names: ResourceType::ORDERED
                    .map(|ty| changed_names(p.resources(ty), self.resources(ty))),
            })
        }));
        self
    }

    /// What changed since the snapshot published before this one, if known.
    pub fn lineage_changes(&self) -> Option<&Changes> {
        self.lineage.0.as_deref()
    }

    /// What changed since snapshot `id`, if this snapshot was published right after it.
    pub fn changes_since(&self, id: u64) -> Option<&Changes> {
        self.lineage.0.as_deref().filter(|c| c.parent == id)
    }

    /// [`aggregate_version`] of every resource of a type, computed once per snapshot.
    pub fn type_version(&self, ty: ResourceType) -> &str {
        self.versions.0[ty as usize].get_or_init(|| aggregate_version(self.resources(ty).values()))
    }

    pub fn resources(&self, ty: ResourceType) -> &ResourceMap {
        match ty {
            ResourceType::Cluster => &self.clusters,
            ResourceType::Endpoint => &self.endpoints,
            ResourceType::Secret => &self.secrets,
            ResourceType::Listener => &self.listeners,
            ResourceType::ScopedRoute => &self.scoped_routes,
            ResourceType::Route => &self.routes,
        }
    }

    pub fn resources_mut(&mut self, ty: ResourceType) -> &mut ResourceMap {
        self.id = SnapshotId::fresh();
        self.lineage = Lineage::default();
        self.versions = TypeVersions::default();
        match ty {
            ResourceType::Cluster => &mut self.clusters,
            ResourceType::Endpoint => &mut self.endpoints,
            ResourceType::Secret => &mut self.secrets,
            ResourceType::Listener => &mut self.listeners,
            ResourceType::ScopedRoute => &mut self.scoped_routes,
            ResourceType::Route => &mut self.routes,
        }
    }

    pub fn get(&self, ty: ResourceType, name: &str) -> Option<&Arc<Resource>> {
        self.resources(ty).get(name)
    }

    /// Total number of resources of all types.
    pub fn len(&self) -> usize {
        ResourceType::ORDERED
            .iter()
            .map(|t| self.resources(*t).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Names added, removed or with another version between two maps: O(the difference),
/// as the maps share the structure of what did not change.
fn changed_names(old: &ResourceMap, new: &ResourceMap) -> Vec<String> {
    use imbl::ordmap::DiffItem;
    old.diff(new)
        .filter_map(|d| match d {
            DiffItem::Add(n, _) | DiffItem::Remove(n, _) => Some(n.to_string()),
            DiffItem::Update { old, new } => {
                (old.1.version != new.1.version).then(|| new.0.to_string())
            }
        })
        .collect()
}

/// The SotW `version_info` for a set of resources: a digest of their names and versions,
/// so every replica and every restart names the same content with the same version.
pub fn aggregate_version<'a>(resources: impl IntoIterator<Item = &'a Arc<Resource>>) -> String {
    let mut h = Sha256::new();
    for r in resources {
        let (prefix, rest) = super::names::wire_parts(&r.name);
        h.update(prefix.as_bytes());
        h.update(rest.as_bytes());
        h.update([0]);
        h.update(r.version.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    super::resource::hex(&digest[..8])
}

impl Snapshot {
    /// Same names and versions for every type (cheap: compares digests, not bytes).
    pub fn same_versions(&self, other: &Snapshot) -> bool {
        ResourceType::ORDERED
            .iter()
            .all(|t| changed_names(self.resources(*t), other.resources(*t)).is_empty())
    }
}

impl Snapshot {
    /// Every resource with a version no other snapshot has (benchmark baseline: kourier
    /// versions whole snapshots with a random UUID, so every change resends everything).
    pub fn salted(&self, salt: u64) -> Snapshot {
        let mut out = self.clone();
        for ty in ResourceType::ORDERED {
            let salted = out
                .resources(ty)
                .iter()
                .map(|(name, r)| {
                    let version = super::resource::content_version(
                        format!("{}/{salt}", r.version).as_bytes(),
                    );
                    let mut r = (**r).clone();
                    r.version = version;
                    let r = Arc::new(r);
                    (name.clone(), r)
                })
                .collect();
            *out.resources_mut(ty) = salted;
        }
        out
    }
}
