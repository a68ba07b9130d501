//! The serve loop's core: source changes → store → translation → snapshot → publish, with
//! cluster retention (make-before-break on removal), problem reports and the inspection view.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::server::state::{ObjectState, State, View};
use crate::server::Shared;
use crate::sources::kube::Change;
use crate::sources::manifests::{FileError, Manifests};
use model::config::ConfigError;
use model::store::Dep;
use model::{Kind, ObjectRef, Store};
use translate::{Rejection, Translator, Update};
use xds::{Resource, ResourceType, Snapshot};

pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// How long a cluster (and its endpoints) that no route uses any more stays in the
/// snapshot: make-before-break on removal, so an Envoy still applying the new routes never
/// routes to a cluster it has already dropped.
pub const CLUSTER_RETENTION: Duration = Duration::from_secs(10);

/// Where the objects come from.
pub enum Source {
    Manifests(Manifests),
    /// Kubernetes: the store, and which watches have listed at least once.
    Kube {
        store: Store,
        watches: usize,
        listed: BTreeSet<usize>,
    },
}

impl Source {
    pub fn store(&self) -> &Store {
        match self {
            Source::Manifests(m) => &m.store,
            Source::Kube { store, .. } => store,
        }
    }

    fn store_mut(&mut self) -> &mut Store {
        match self {
            Source::Manifests(m) => &mut m.store,
            Source::Kube { store, .. } => store,
        }
    }

    fn file_of(&self, r: &model::ObjectRef) -> Option<&Path> {
        match self {
            Source::Manifests(m) => m.file_of(r),
            Source::Kube { .. } => None,
        }
    }

    fn file_errors(&self) -> Vec<FileError> {
        match self {
            Source::Manifests(m) => m.errors(),
            Source::Kube { .. } => Vec::new(),
        }
    }
}

/// The serve loop's state: translate on change, publish if different.
pub struct Pipeline {
    pub source: Source,
    translator: Translator,
    pub shared: Arc<Shared>,
    logged: BTreeSet<String>,
    /// The latest translation, before retained clusters are added.
    translated: Option<Snapshot>,
    /// Clusters and endpoints removed by a translation, kept until their deadline.
    retained: BTreeMap<(ResourceType, Arc<str>), (Arc<Resource>, Instant)>,
    /// When the change behind the latest translation was noticed.
    seen_at: Instant,
    /// The bench crate's baseline (kourier's behaviour): every change re-translates
    /// everything and gives every resource a fresh version, so every type is resent. Only
    /// `serve_on_baseline` (the `baseline` feature) sets it.
    full_push: bool,
    /// Rebuilds so far (salts versions in the baseline).
    serial: u64,
    /// Keeps the encoded resources of unchanged objects between rebuilds.
    builder: builder::IncrementalBuilder,
    /// KIngress mode: per KIngress, the generation served, the first snapshot with it (and
    /// with its certificates), and whether its certificates are served.
    served_since: std::collections::HashMap<model::ObjectKey, (i64, u64, bool)>,
    /// Every Knative object's translation state (kept up to date per change).
    objects: imbl::OrdMap<ObjectRef, ObjectState>,
    /// How many objects of each kind are in each state (for `/metrics`).
    counts: BTreeMap<(Kind, State), i64>,
}

impl Pipeline {
    pub fn new(
        source: Source,
        translator: Translator,
        shared: Arc<Shared>,
        full_push: bool,
    ) -> Pipeline {
        Pipeline {
            source,
            translator,
            shared,
            logged: BTreeSet::new(),
            translated: None,
            retained: BTreeMap::new(),
            seen_at: Instant::now(),
            full_push,
            serial: 0,
            builder: Default::default(),
            served_since: Default::default(),
            objects: Default::default(),
            counts: Default::default(),
        }
    }

    /// Manifests: reads changed files; translates if any object changed.
    pub fn reload(&mut self) -> std::io::Result<()> {
        self.reload_changed(&crate::sources::watch::Changed::Everything)
    }

    /// [`Pipeline::reload`] looking only at the files the watcher reported, when it could.
    pub fn reload_changed(
        &mut self,
        changed: &crate::sources::watch::Changed,
    ) -> std::io::Result<()> {
        let started = Instant::now();
        let Source::Manifests(m) = &mut self.source else {
            return Ok(());
        };
        let partial = match changed {
            crate::sources::watch::Changed::Paths(paths) => m.reload_paths(paths),
            crate::sources::watch::Changed::Everything => None,
        };
        let reload = match partial {
            Some(r) => r,
            None => {
                self.shared.metrics.relists.inc();
                m.reload()?
            }
        };
        let first = !self.shared.is_ready();
        if reload.changed == 0 && !first {
            // A file changed without changing any object, or a file broke: report only.
            self.report(None);
            return Ok(());
        }
        self.rebuild(started, reload.changed);
        Ok(())
    }

    /// Kubernetes: applies a batch of watch changes; translates once every watch has
    /// listed and something changed.
    pub fn apply(&mut self, changes: Vec<Change>, started: Instant) {
        let Source::Kube {
            store,
            watches,
            listed,
        } = &mut self.source
        else {
            return;
        };
        let mut changed = 0;
        for c in changes {
            if let Change::Replace { watch, .. } = &c {
                // Secret watches (ids past the kinds') start later; they do not hold back
                // the first snapshot.
                if *watch < *watches {
                    listed.insert(*watch);
                }
                self.shared.metrics.relists.inc();
            } else {
                self.shared.metrics.watch_events.inc();
            }
            if crate::sources::kube::apply(store, c) {
                changed += 1;
            }
        }
        let all_listed = listed.len() >= *watches;
        if all_listed && (changed > 0 || !self.shared.is_ready()) {
            self.rebuild(started, changed);
        }
    }

    fn rebuild(&mut self, started: Instant, objects_changed: usize) {
        let translating = Instant::now();
        // Without the feature the baseline's branch is compiled out.
        let baseline = cfg!(feature = "baseline") && self.full_push;
        let dirty = self.source.store_mut().take_dirty();
        let store = self.source.store();
        let o = &self.translator.options;
        let (listeners, check) = (o.listeners.clone(), o.check_endpoint_addresses);
        // The baseline (kourier's behaviour) looks at everything on every change.
        // At a cold start the objects' resources are encoded while host ownership is settled.
        let (mut update, ahead) = self.translator.update_with(
            store,
            dirty.as_ref().filter(|_| !baseline),
            |early, done| (!baseline).then(|| builder::encode_ahead(&early, &listeners, done)),
        );
        let now = Some(super::unix_now());
        let metrics = &self.shared.metrics;
        metrics
            .translation_seconds
            .observe(started.elapsed().as_secs_f64());
        let translate_ms = ms(translating.elapsed());
        let encoding = Instant::now();
        let snapshot = if baseline {
            self.serial += 1;
            let served: Vec<Arc<translate::Ingress>> = update.served.values().cloned().collect();
            let plan = translate::tls::Planner::new().plan(
                served.iter().map(|i| &**i),
                store,
                &listeners.tls,
                now,
            );
            let envoy = translate::envoy::build_with(&served, store, &listeners, check, &plan);
            builder::snapshot_from_envoy(&envoy, None).salted(self.serial)
        } else {
            self.builder.update(
                &update.served,
                &update.changed,
                dirty.as_ref(),
                store,
                &listeners,
                check,
                ahead.flatten().unwrap_or_default(),
                now,
            )
        };
        metrics
            .snapshot_build_seconds
            .observe(encoding.elapsed().as_secs_f64());
        // After a full translation these list every object, and what comes next (the view,
        // the readers index) is where a cold start peaks: freed now. (A full view update
        // looks at every object anyway.)
        update.changed = BTreeSet::new();
        if update.full {
            update.touched = BTreeSet::new();
        }
        self.seen_at = started;
        let now = Instant::now();
        if let Some(prev) = &self.translated {
            for ty in [ResourceType::Cluster, ResourceType::Endpoint] {
                for d in prev.resources(ty).diff(snapshot.resources(ty)) {
                    if let imbl::ordmap::DiffItem::Remove(name, res) = d {
                        self.retained
                            .entry((ty, name.clone()))
                            .or_insert((res.clone(), now + CLUSTER_RETENTION));
                    }
                }
            }
        }
        let build_ms = ms(encoding.elapsed());
        self.translated = Some(snapshot);
        if self.publish() {
            // elapsed: since the change was noticed (reading it included).
            info!(
                objects_changed,
                routes = update.served.len(),
                elapsed_ms = ms(started.elapsed()),
                read_ms = ms(translating.duration_since(started)),
                translate_ms,
                build_ms,
                "published snapshot"
            );
        }
        // What the translation put off until the snapshot was out.
        self.translator.catch_up();
        self.update_view(&update, dirty.as_ref());
        if let Some(class) = self.translator.options.ingress_class.clone() {
            self.update_kingress_states(&class, &update);
        }
        self.report(Some((update.rejections, update.config_errors)));
    }

    /// Brings every object's translation state up to date: all of them after a full
    /// translation, otherwise only those the update touched.
    fn update_view(&mut self, update: &Update, dirty: Option<&model::store::DepSet>) {
        let store = self.source.store();
        let derive = self.translator.options.no_controller;
        // Each object to look at with its new state (filled in below), in key order, in one
        // buffer: after a full translation that is every object, and `ordmap::apply` then
        // rebuilds the view dense.
        let mut ops: Vec<(ObjectRef, Option<ObjectState>)> = if update.full {
            let mut all: Vec<ObjectRef> = self.objects.keys().cloned().collect();
            all.extend(VIEW_KINDS.iter().flat_map(|k| {
                store
                    .keys(*k)
                    .into_iter()
                    .map(|key| ObjectRef { kind: *k, key })
            }));
            all.sort();
            all.dedup();
            all.into_iter().map(|r| (r, None)).collect()
        } else {
            let mut some = update.touched.clone();
            some.extend(dirty.into_iter().flatten().filter_map(|d| match d {
                Dep::Object(kind, key) => Some(ObjectRef {
                    kind: *kind,
                    key: key.clone(),
                }),
                _ => None,
            }));
            some.into_iter().map(|r| (r, None)).collect()
        };
        for (r, new) in &mut ops {
            *new = object_state(store, &update.served, &update.rejections, r, derive);
            if let Some(old) = self.objects.get(r) {
                *self.counts.entry((r.kind, old.state)).or_default() -= 1;
            }
            if let Some(new) = &new {
                *self.counts.entry((r.kind, new.state)).or_default() += 1;
            }
        }
        xds::ordmap::apply(&mut self.objects, ops);
        let objects = &self.shared.metrics.objects;
        objects.clear();
        for ((kind, state), n) in &self.counts {
            if *n != 0 {
                objects
                    .get_or_create(&crate::server::metrics::ObjectLabels {
                        kind: kind.display_name().to_string(),
                        state: state.as_str().to_string(),
                    })
                    .set(*n);
            }
        }
        self.shared.set_view(View {
            ingresses: update.served.clone(),
            objects: self.objects.clone(),
        });
    }

    /// KIngress mode: what each KIngress' status should build on — served since which
    /// snapshot, or why not — for the status writer.
    fn update_kingress_states(&mut self, class: &str, update: &Update) {
        use translate::status::{IngressState, IngressStates, Outcome};
        let current = self.shared.current().map(|s| s.id()).unwrap_or(0);
        let served: std::collections::HashMap<&model::ObjectKey, Option<i64>> = update
            .served
            .values()
            .filter(|i| i.origin.kind == Kind::KIngress)
            .map(|i| (&i.origin.key, i.generation))
            .collect();
        let rejected: std::collections::HashMap<&model::ObjectKey, _> = update
            .rejections
            .iter()
            .filter(|r| r.object.kind == Kind::KIngress)
            .map(|r| (&r.object.key, r))
            .collect();
        let mut states = IngressStates::default();
        let plan = self.builder.tls_plan();
        for (key, k) in &self.source.store().kingresses {
            if translate::kingress::class_of(k) != Some(class) {
                continue;
            }
            let generation = k.metadata.generation.unwrap_or(0);
            let tls = tls_status(plan, key, k);
            let tls_ok = tls.as_ref().is_none_or(|t| t.unserved.is_none());
            let outcome = if let Some(r) = rejected.get(key) {
                Outcome::Rejected {
                    reason: r.reason,
                    message: r
                        .problems
                        .iter()
                        .map(|p| format!("{}: {}", p.field, p.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                }
            } else if served
                .get(key)
                .is_some_and(|g| g.unwrap_or(0) == generation)
            {
                // Served since the first snapshot with this generation and, when it names
                // certificates, with all of them.
                let since = match self.served_since.get(key) {
                    Some((g, s, ok)) if *g == generation && (*ok || !tls_ok) => *s,
                    _ => {
                        self.served_since
                            .insert(key.clone(), (generation, current, tls_ok));
                        current
                    }
                };
                Outcome::Served {
                    since_snapshot: since,
                }
            } else {
                continue;
            };
            states.entries.insert(
                key.clone(),
                IngressState {
                    generation,
                    outcome,
                    current: k.status.clone(),
                    tls,
                },
            );
        }
        self.served_since
            .retain(|k, _| states.entries.contains_key(k));
        self.shared.set_kingress_states(states);
    }

    /// Publishes the latest translation plus the retained clusters that have not expired;
    /// returns whether anything changed.
    pub fn publish(&mut self) -> bool {
        let Some(base) = &self.translated else {
            return false;
        };
        let now = Instant::now();
        self.retained.retain(|(ty, name), (_, deadline)| {
            *deadline > now && !base.resources(*ty).contains_key(name)
        });
        let mut snapshot = base.clone();
        for ((ty, name), (res, _)) in &self.retained {
            snapshot
                .resources_mut(*ty)
                .insert(name.clone(), res.clone());
        }
        let previous = self.shared.current();
        if previous
            .as_deref()
            .is_some_and(|p| p.same_versions(&snapshot))
        {
            return false;
        }
        self.shared.publish(snapshot, self.seen_at);
        true
    }

    /// The Secrets the served objects (and `--default-tls-secret`) name.
    pub fn named_secrets(&self) -> &BTreeSet<model::ObjectKey> {
        &self.builder.tls_plan().named
    }

    /// Drops Secrets no longer named from the store (their watches stopped).
    pub fn forget_secrets(&mut self, keys: Vec<model::ObjectKey>) {
        for k in keys {
            self.source.store_mut().delete(Kind::Secret, &k);
        }
    }

    /// When the next retained cluster expires, or a certificate's validity changes.
    pub fn next_expiry(&self) -> Option<Instant> {
        let retained = self.retained.values().map(|(_, d)| *d).min();
        retained.into_iter().chain(self.tls_change()).min()
    }

    /// When a served or named certificate's validity next changes (it expires, or becomes
    /// valid): HTTPS is planned again then.
    fn tls_change(&self) -> Option<Instant> {
        let at = self.builder.tls_plan().next_change?;
        let wait = at.saturating_sub(super::unix_now()).max(0) as u64;
        // A second late, so the certificate is past its boundary when checked.
        Some(Instant::now() + Duration::from_secs(wait.saturating_add(1)))
    }

    /// A deadline of [`Pipeline::next_expiry`] passed.
    pub fn on_timer(&mut self) {
        let due = self
            .builder
            .tls_plan()
            .next_change
            .is_some_and(|at| super::unix_now() >= at);
        if due && self.shared.is_ready() {
            self.rebuild(Instant::now(), 0);
        } else {
            self.publish();
        }
    }

    /// Logs each problem once (when it appears) and publishes the report.
    fn report(&mut self, translation: Option<(Vec<Rejection>, Vec<ConfigError>)>) {
        let mut report = (*self.shared.report()).clone();
        report.file_errors = self.source.file_errors();
        if let Some((rejections, config_errors)) = translation {
            report.config_errors = config_errors.iter().map(|e| e.to_string()).collect();
            report.rejections = rejections;
            let plan = self.builder.tls_plan();
            report.certificates = plan.problems.clone();
            let metrics = &self.shared.metrics;
            metrics.certificate_expiry.clear();
            for s in &plan.served {
                let label = crate::server::metrics::SecretLabel {
                    secret: s.secret.to_string(),
                };
                metrics
                    .certificate_expiry
                    .get_or_create(&label)
                    .set(s.info.not_after);
            }
            metrics.certificate_problems.set(plan.problems.len() as i64);
        }
        // Each problem is logged once, when it appears, with structured fields.
        let mut now = BTreeSet::new();
        for e in &report.file_errors {
            let key = format!("file {e}");
            if !self.logged.contains(&key) {
                warn!(file = %e.path.display(), line = e.line, error = %e.message, "file error (its previous objects are kept): {e}");
            }
            now.insert(key);
        }
        for e in &report.config_errors {
            let key = format!("config {e}");
            if !self.logged.contains(&key) {
                warn!(error = %e, "config error (the last good config is kept): {e}");
            }
            now.insert(key);
        }
        for c in &report.certificates {
            let key = format!(
                "certificate {} {} {}",
                c.object, c.problem.field, c.problem.message
            );
            if !self.logged.contains(&key) {
                let file = self
                    .source
                    .file_of(&c.object)
                    .map(|f| f.display().to_string());
                warn!(
                    object = %c.object,
                    file = file.as_deref().unwrap_or(""),
                    field = %c.problem.field,
                    "certificate not served: {}: {}: {}", c.object, c.problem.field, c.problem.message
                );
            }
            now.insert(key);
        }
        for r in &report.rejections {
            let key = format!("object {r}");
            if !self.logged.contains(&key) {
                let file = self
                    .source
                    .file_of(&r.object)
                    .map(|f| f.display().to_string());
                warn!(
                    object = %r.object,
                    file = file.as_deref().unwrap_or(""),
                    serving_last_good = r.serving_last_good,
                    "rejected: {r}"
                );
            }
            now.insert(key);
        }
        self.logged = now;
        self.shared
            .metrics
            .file_errors
            .set(report.file_errors.len() as i64);
        self.shared.set_report(report);
    }
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Whether a KIngress' `spec.tls` is served, and if not why (its certificate problems).
fn tls_status(
    plan: &translate::tls::TlsPlan,
    key: &model::ObjectKey,
    k: &model::objects::KIngress,
) -> Option<translate::status::TlsStatus> {
    let hosts = translate::kingress::tls_hosts(k);
    if hosts.is_empty() {
        return None;
    }
    let object = ObjectRef {
        kind: Kind::KIngress,
        key: key.clone(),
    };
    let served = plan.served_hosts.get(&object);
    let missing: Vec<&str> = hosts
        .iter()
        .map(|h| h.as_str())
        .filter(|h| served.is_none_or(|s| !s.iter().any(|x| x.eq_ignore_ascii_case(h))))
        .collect();
    let unserved = (!missing.is_empty()).then(|| {
        let why: Vec<String> = plan
            .problems
            .iter()
            .filter(|p| p.object == object)
            .map(|p| format!("{}: {}", p.problem.field, p.problem.message))
            .collect();
        let why = if why.is_empty() {
            "its Secret is not read yet".to_string()
        } else {
            why.join("; ")
        };
        format!("{} not served over HTTPS: {why}", missing.join(", "))
    });
    Some(translate::status::TlsStatus { hosts, unserved })
}

/// The kinds listed in the inspection view.
const VIEW_KINDS: [Kind; 5] = [
    Kind::KService,
    Kind::Route,
    Kind::DomainMapping,
    Kind::Configuration,
    Kind::Revision,
];

/// One Knative object's translation state, for the inspection API and `/metrics`; `None`
/// when the store does not hold it (or it is not a kind the view lists).
pub fn object_state(
    store: &Store,
    served: &imbl::OrdMap<ObjectRef, Arc<translate::Ingress>>,
    rejections: &[Rejection],
    object: &ObjectRef,
    services_make_routes: bool,
) -> Option<ObjectState> {
    let key = &object.key;
    let (generation, produces) = match object.kind {
        Kind::KService => (
            store.kservices.get(key)?.metadata.generation,
            services_make_routes,
        ),
        Kind::Route => (store.routes.get(key)?.metadata.generation, true),
        Kind::DomainMapping => (store.domain_mappings.get(key)?.metadata.generation, true),
        Kind::Configuration => (store.configurations.get(key)?.metadata.generation, false),
        Kind::Revision => (store.revisions.get(key)?.metadata.generation, false),
        _ => return None,
    };
    let ing = served.get(object);
    let rej = rejections
        .binary_search_by(|r| r.object.cmp(object))
        .ok()
        .map(|i| &rejections[i]);
    let state = match (ing, rej) {
        (Some(_), Some(_)) => State::Stale,
        (None, Some(_)) => State::Rejected,
        (Some(_), None) => State::Served,
        (None, None) if produces => State::Rejected,
        (None, None) => State::Input,
    };
    Some(ObjectState {
        problems: rej.map(|r| {
            Arc::new(
                r.problems
                    .iter()
                    .map(|p| format!("{}: {}", p.field, p.message))
                    .collect(),
            )
        }),
        generation: generation.unwrap_or(0),
        state,
    })
}
