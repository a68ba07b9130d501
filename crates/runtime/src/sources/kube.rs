//! The Kubernetes source: one kube-rs watcher per kind (and namespace, when limited),
//! feeding the same store as the manifests source.
//!
//! A relist (`Init` … `InitDone`, at start and after a 410 or a reconnect) is buffered and
//! handed over as one [`Change::Replace`], so the store swaps atomically and a relist never
//! looks like "everything was deleted". Objects that fail to decode are logged and skipped;
//! their previous version stays.

use std::collections::BTreeSet;

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use model::{Kind, Object, ObjectKey, ObjectRef, Store};

/// What a watcher tells the pipeline.
#[derive(Debug)]
pub enum Change {
    Apply(Box<Object>),
    Delete(ObjectRef),
    /// The complete list of one watch (a kind, in one namespace or all): replaces what the
    /// store holds in that scope.
    Replace {
        watch: usize,
        kind: Kind,
        namespace: Option<String>,
        /// Only these names (a watch by name): other objects of the kind stay.
        names: Option<BTreeSet<String>>,
        objects: Vec<Object>,
    },
}

/// One watch: a kind, its API resource, and the namespace it is limited to.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    pub kind: Kind,
    pub resource: ApiResource,
    pub namespace: Option<String>,
    /// Only objects with these names (ConfigMaps: Knative's three).
    pub names: Option<BTreeSet<String>>,
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// Options of the Kubernetes source.
#[derive(Debug, Clone, Default)]
pub struct KubeOptions {
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    pub system_namespace: String,
    /// Also watch Knative Services (manifests-like derivation is off in a cluster, but the
    /// inspection API lists them).
    pub kinds: Vec<Kind>,
}

/// Picks `discovery.k8s.io/v1` EndpointSlices, or `v1beta1` where only that is served.
pub async fn endpoint_slice_version(client: &Client) -> String {
    match kube::discovery::group(client, "discovery.k8s.io").await {
        Ok(g) => {
            let versions = g.versions().map(str::to_string).collect::<Vec<_>>();
            if versions.iter().any(|v| v == "v1") {
                "v1".into()
            } else if versions.iter().any(|v| v == "v1beta1") {
                "v1beta1".into()
            } else {
                "v1".into()
            }
        }
        Err(e) => {
            warn!(error = %e, "API discovery for discovery.k8s.io failed; assuming EndpointSlice v1");
            "v1".into()
        }
    }
}

/// The watches for `kinds`, one per namespace when limited.
pub fn watch_specs(opts: &KubeOptions, endpoint_slice_version: &str) -> Vec<WatchSpec> {
    let mut specs = Vec::new();
    let scopes: Vec<Option<String>> = if opts.namespaces.is_empty() {
        vec![None]
    } else {
        opts.namespaces.iter().cloned().map(Some).collect()
    };
    for kind in &opts.kinds {
        let (res, cluster_scoped) = match kind {
            Kind::KService => (
                resource("serving.knative.dev", "v1", "Service", "services"),
                false,
            ),
            Kind::Route => (
                resource("serving.knative.dev", "v1", "Route", "routes"),
                false,
            ),
            Kind::Configuration => (
                resource(
                    "serving.knative.dev",
                    "v1",
                    "Configuration",
                    "configurations",
                ),
                false,
            ),
            Kind::Revision => (
                resource("serving.knative.dev", "v1", "Revision", "revisions"),
                false,
            ),
            Kind::DomainMapping => (
                resource(
                    "serving.knative.dev",
                    "v1beta1",
                    "DomainMapping",
                    "domainmappings",
                ),
                false,
            ),
            Kind::ClusterDomainClaim => (
                resource(
                    "networking.internal.knative.dev",
                    "v1alpha1",
                    "ClusterDomainClaim",
                    "clusterdomainclaims",
                ),
                true,
            ),
            Kind::Service => (resource("", "v1", "Service", "services"), false),
            Kind::Secret => (resource("", "v1", "Secret", "secrets"), false),
            Kind::KIngress => (super::kube_status::kingress_resource(), false),
            Kind::EndpointSlice => (
                resource(
                    "discovery.k8s.io",
                    endpoint_slice_version,
                    "EndpointSlice",
                    "endpointslices",
                ),
                false,
            ),
            Kind::ConfigMap => {
                specs.push(WatchSpec {
                    kind: *kind,
                    resource: resource("", "v1", "ConfigMap", "configmaps"),
                    namespace: Some(opts.system_namespace.clone()),
                    names: Some(
                        ["config-domain", "config-network", "config-features"]
                            .into_iter()
                            .map(String::from)
                            .collect(),
                    ),
                });
                continue;
            }
        };
        if cluster_scoped {
            specs.push(WatchSpec {
                kind: *kind,
                resource: res,
                namespace: None,
                names: None,
            });
            continue;
        }
        for ns in &scopes {
            specs.push(WatchSpec {
                kind: *kind,
                resource: res.clone(),
                namespace: ns.clone(),
                names: None,
            });
        }
    }
    specs
}

/// Decodes a watched object into the model; `None` (logged) when it does not fit.
fn decode(kind: Kind, obj: DynamicObject) -> Option<Object> {
    let name = format!(
        "{}/{}",
        obj.metadata.namespace.as_deref().unwrap_or(""),
        obj.metadata.name.as_deref().unwrap_or("")
    );
    let value = match serde_json::to_value(&obj) {
        Ok(v) => v,
        Err(e) => {
            warn!(%kind, object = %name, error = %e, "cannot read object; skipped");
            return None;
        }
    };
    match Object::decode(kind, value) {
        Ok(o) => Some(o),
        Err(e) => {
            warn!(%kind, object = %name, error = %e, "cannot read object; skipped (its previous version stays)");
            None
        }
    }
}

/// Runs one watch until the receiver is gone. Errors are retried with backoff and never
/// reach the store.
pub async fn run_watch(client: Client, id: usize, spec: WatchSpec, tx: mpsc::Sender<Change>) {
    let api: Api<DynamicObject> = match &spec.namespace {
        Some(ns) => Api::namespaced_with(client, ns, &spec.resource),
        None => Api::all_with(client, &spec.resource),
    };
    let mut config = watcher::Config::default();
    if let Some(names) = &spec.names {
        if names.len() == 1 {
            if let Some(n) = names.first() {
                config = config.fields(&format!("metadata.name={n}"));
            }
        }
    }
    let wanted = |o: &DynamicObject| {
        spec.names.as_ref().is_none_or(|n| {
            o.metadata
                .name
                .as_ref()
                .is_some_and(|name| n.contains(name))
        })
    };
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut buffer: Option<Vec<Object>> = None;
    while let Some(event) = stream.next().await {
        let change = match event {
            Ok(Event::Init) => {
                debug!(kind = %spec.kind, "relist started");
                buffer = Some(Vec::new());
                continue;
            }
            Ok(Event::InitApply(o)) => {
                if wanted(&o) {
                    if let (Some(buf), Some(obj)) = (buffer.as_mut(), decode(spec.kind, o)) {
                        buf.push(obj);
                    }
                }
                continue;
            }
            Ok(Event::InitDone) => {
                let objects = buffer.take().unwrap_or_default();
                info!(kind = %spec.kind, namespace = spec.namespace.as_deref().unwrap_or("*"), objects = objects.len(), "listed");
                Change::Replace {
                    watch: id,
                    kind: spec.kind,
                    namespace: spec.namespace.clone(),
                    names: spec.names.clone(),
                    objects,
                }
            }
            Ok(Event::Apply(o)) => {
                if !wanted(&o) {
                    continue;
                }
                match decode(spec.kind, o) {
                    Some(obj) => Change::Apply(Box::new(obj)),
                    None => continue,
                }
            }
            Ok(Event::Delete(o)) => {
                if !wanted(&o) {
                    continue;
                }
                let key = ObjectKey::new(
                    if spec.kind == Kind::ClusterDomainClaim {
                        String::new()
                    } else {
                        o.metadata.namespace.clone().unwrap_or_default()
                    },
                    o.metadata.name.clone().unwrap_or_default(),
                );
                Change::Delete(ObjectRef {
                    kind: spec.kind,
                    key,
                })
            }
            Err(e) => {
                warn!(kind = %spec.kind, error = %e, "watch error; retrying (the current config stays)");
                continue;
            }
        };
        if tx.send(change).await.is_err() {
            return;
        }
    }
}

/// Applies a change to the store; returns whether anything changed.
pub fn apply(store: &mut Store, change: Change) -> bool {
    match change {
        Change::Apply(obj) => store.apply_if_changed(*obj),
        Change::Delete(r) => store.delete(r.kind, &r.key),
        Change::Replace {
            kind,
            namespace,
            names,
            objects,
            ..
        } => {
            let keep: BTreeSet<ObjectKey> = objects.iter().map(Object::key).collect();
            let existing = store.keys(kind);
            // A first list of many: the store's maps are rebuilt full once it is in.
            let compact = objects.len() >= 1024 && existing.is_empty();
            let mut changed = false;
            for key in existing {
                let in_scope = match &namespace {
                    Some(ns) => *key.namespace == **ns,
                    None => true,
                } && names.as_ref().is_none_or(|n| n.contains(&*key.name));
                if in_scope && !keep.contains(&key) {
                    changed |= store.delete(kind, &key);
                }
            }
            for obj in objects {
                changed |= store.apply_if_changed(obj);
            }
            if compact {
                store.compact();
            }
            changed
        }
    }
}

/// The Secrets the served objects name, each read by a watch of its own name: the control
/// plane never lists or holds any other Secret, and RBAC can grant exactly these
/// (`resourceNames`: a list or watch with a `metadata.name` field selector is authorized
/// against it).
pub struct SecretWatches {
    client: Client,
    tx: mpsc::Sender<Change>,
    /// Watch ids from here on (the pipeline counts only the kinds' watches as listed).
    next_id: usize,
    running: std::collections::BTreeMap<ObjectKey, tokio::task::AbortHandle>,
}

impl SecretWatches {
    pub fn new(client: Client, tx: mpsc::Sender<Change>, first_id: usize) -> SecretWatches {
        SecretWatches {
            client,
            tx,
            next_id: first_id,
            running: Default::default(),
        }
    }

    /// Starts a watch for each Secret newly `wanted` and stops those no longer wanted;
    /// returns the stopped ones (their Secrets should leave the store).
    pub fn sync(&mut self, wanted: &BTreeSet<ObjectKey>) -> Vec<ObjectKey> {
        let stopped: Vec<ObjectKey> = self
            .running
            .keys()
            .filter(|k| !wanted.contains(*k))
            .cloned()
            .collect();
        for k in &stopped {
            if let Some(h) = self.running.remove(k) {
                h.abort();
            }
            debug!(secret = %k, "no longer named; watch stopped");
        }
        for k in wanted {
            if self.running.contains_key(k) || k.namespace.is_empty() {
                continue;
            }
            let spec = WatchSpec {
                kind: Kind::Secret,
                resource: resource("", "v1", "Secret", "secrets"),
                namespace: Some(k.namespace.to_string()),
                names: Some([k.name.to_string()].into_iter().collect()),
            };
            let id = self.next_id;
            self.next_id += 1;
            let task = tokio::spawn(run_watch(self.client.clone(), id, spec, self.tx.clone()));
            self.running.insert(k.clone(), task.abort_handle());
            debug!(secret = %k, "named; watching it");
        }
        stopped
    }
}

impl Drop for SecretWatches {
    fn drop(&mut self) {
        for h in self.running.values() {
            h.abort();
        }
    }
}
