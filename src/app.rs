//! Wiring: sources → store → translation → snapshot → ADS, and the `render`/`validate`
//! commands, which run the same pipeline once.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tracing::{error, info, warn};

use crate::server::grpc::{Csds, Inspect};
use crate::server::state::{ObjectState, View};
use crate::server::{admin, ads::AdsService, Shared};
use crate::sources::manifests::Manifests;
use crate::sources::watch::FolderWatch;
use crate::translate::{Options, Output, Translator};
use crate::xds::{json::any_to_json, Resource, ResourceType, Snapshot};

/// Loads a folder once and translates it.
pub fn load_once(dir: &Path, options: Options) -> anyhow::Result<(Manifests, Output)> {
    let mut manifests = Manifests::new(dir);
    manifests
        .reload()
        .with_context(|| format!("reading manifests folder {}", dir.display()))?;
    let mut translator = Translator::new(options);
    let output = translator.translate(&manifests.store);
    Ok((manifests, output))
}

/// `render`: the resources that would be served, as JSON.
pub fn render_json(snapshot: &Snapshot) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for ty in ResourceType::ORDERED {
        let items: Vec<serde_json::Value> = snapshot
            .resources(ty)
            .values()
            .map(|r| {
                serde_json::json!({
                    "name": r.name,
                    "version": r.version,
                    "resource": any_to_json(&r.any).unwrap_or_else(|e| serde_json::json!({"error": e})),
                })
            })
            .collect();
        let key = match ty {
            ResourceType::Cluster => "clusters",
            ResourceType::Endpoint => "endpoints",
            ResourceType::Listener => "listeners",
            ResourceType::Route => "routes",
        };
        out.insert(key.into(), items.into());
    }
    serde_json::Value::Object(out)
}

/// Every problem in a folder, one line each, prefixed with the file it came from.
pub fn problems(manifests: &Manifests, output: &Output) -> Vec<String> {
    let mut lines = Vec::new();
    for e in manifests.errors() {
        lines.push(e.to_string());
    }
    for (r, files) in manifests.duplicates() {
        let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        lines.push(format!(
            "{r}: defined in several files ({}); the first is used",
            files.join(", ")
        ));
    }
    for e in &output.config_errors {
        lines.push(e.to_string());
    }
    for r in &output.rejections {
        match manifests.file_of(&r.object) {
            Some(f) => lines.push(format!("{}: {r}", f.display())),
            None => lines.push(r.to_string()),
        }
    }
    lines
}

/// Settings for `serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub manifests: PathBuf,
    pub xds_address: SocketAddr,
    pub admin_address: SocketAddr,
    pub options: Options,
}

/// Runs the control plane until `shutdown` resolves.
pub async fn serve(
    cfg: ServeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let shared = Arc::new(Shared::default());
    let xds = tokio::net::TcpListener::bind(cfg.xds_address)
        .await
        .with_context(|| format!("binding the xDS address {}", cfg.xds_address))?;
    let admin_listener = tokio::net::TcpListener::bind(cfg.admin_address)
        .await
        .with_context(|| format!("binding the admin address {}", cfg.admin_address))?;
    info!(xds = %cfg.xds_address, admin = %cfg.admin_address, manifests = %cfg.manifests.display(), "knative-xds serving");

    let mut watch = FolderWatch::new(&cfg.manifests)
        .with_context(|| format!("watching {}", cfg.manifests.display()))?;
    let mut pipeline = Pipeline::new(
        Manifests::new(&cfg.manifests),
        Translator::new(cfg.options.clone()),
        shared.clone(),
    );
    pipeline
        .step()
        .with_context(|| format!("reading manifests folder {}", cfg.manifests.display()))?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    let pipeline_task = {
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            loop {
                let expiry = pipeline.next_expiry();
                tokio::select! {
                    _ = watch.changed() => {
                        pipeline.shared.metrics.watch_events.inc();
                        if let Err(e) = pipeline.step() {
                            error!(error = %e, "reading manifests folder failed; keeping the current config");
                        }
                    }
                    _ = sleep_until(expiry) => {
                        pipeline.publish();
                    }
                    _ = stop.changed() => break,
                }
            }
        })
    };

    let admin_task = {
        let mut stop = stop_rx.clone();
        let app = admin::router(shared.clone());
        tokio::spawn(async move {
            axum::serve(admin_listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await
        })
    };

    let mut stop = stop_rx.clone();
    let grpc = grpc_services(shared.clone()).await?;
    grpc.serve_with_incoming_shutdown(
        tokio_stream::wrappers::TcpListenerStream::new(xds),
        async move {
            let _ = stop.changed().await;
        },
    )
    .await
    .context("xDS server")?;
    pipeline_task.abort();
    let _ = admin_task.await;
    Ok(())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// How long a cluster (and its endpoints) that no route uses any more stays in the
/// snapshot: make-before-break on removal, so an Envoy still applying the new routes never
/// routes to a cluster it has already dropped.
pub const CLUSTER_RETENTION: Duration = Duration::from_secs(10);

/// Every gRPC service of the xDS port: ADS, CSDS, our Inspect API, health, reflection.
async fn grpc_services(shared: Arc<Shared>) -> anyhow::Result<tonic::transport::server::Router> {
    use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
    use envoy_types::pb::envoy::service::status::v3::client_status_discovery_service_server::ClientStatusDiscoveryServiceServer;

    const ADS: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
    const CSDS: &str = "envoy.service.status.v3.ClientStatusDiscoveryService";
    const INSPECT: &str = "knative_xds.v1.Inspect";

    let (health, health_service) = tonic_health::server::health_reporter();
    // The port only opens after the first snapshot, so everything is serving from the start.
    for name in ["", ADS, CSDS, INSPECT] {
        health
            .set_service_status(name, tonic_health::ServingStatus::Serving)
            .await;
    }
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::xds::json::descriptor_set())
            .register_encoded_file_descriptor_set(crate::api::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(ADS)
            .with_service_name(CSDS)
            .with_service_name(INSPECT)
            .with_service_name("grpc.health.v1.Health")
    };
    let reflection_v1 = reflection().build_v1().context("gRPC reflection (v1)")?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .context("gRPC reflection (v1alpha)")?;
    Ok(tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(
            AggregatedDiscoveryServiceServer::new(AdsService::new(shared.clone()))
                .max_decoding_message_size(64 << 20),
        )
        .add_service(ClientStatusDiscoveryServiceServer::new(Csds::new(
            shared.clone(),
        )))
        .add_service(crate::api::inspect_server::InspectServer::new(
            Inspect::new(shared),
        ))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha))
}

/// One pass of the serve loop: reload changed files, translate, publish if different.
struct Pipeline {
    manifests: Manifests,
    translator: Translator,
    shared: Arc<Shared>,
    logged: BTreeSet<String>,
    /// The latest translation, before retained clusters are added.
    translated: Option<Snapshot>,
    /// Clusters and endpoints removed by a translation, kept until their deadline.
    retained: BTreeMap<(ResourceType, String), (Arc<Resource>, Instant)>,
    /// When the change behind the latest translation was noticed.
    seen_at: Instant,
}

impl Pipeline {
    fn new(manifests: Manifests, translator: Translator, shared: Arc<Shared>) -> Pipeline {
        Pipeline {
            manifests,
            translator,
            shared,
            logged: BTreeSet::new(),
            translated: None,
            retained: BTreeMap::new(),
            seen_at: Instant::now(),
        }
    }

    fn step(&mut self) -> std::io::Result<()> {
        let started = Instant::now();
        let reload = self.manifests.reload()?;
        self.shared.metrics.relists.inc();
        let first = !self.shared.is_ready();
        if reload.changed.is_empty() && !first {
            // A file changed without changing any object, or a file broke: report only.
            self.report(None);
            return Ok(());
        }
        let output = self.translator.translate(&self.manifests.store);
        let metrics = &self.shared.metrics;
        metrics
            .translation_seconds
            .observe(started.elapsed().as_secs_f64());
        let encoding = Instant::now();
        let snapshot = Snapshot::from_envoy(&output.envoy, self.translated.as_ref());
        metrics
            .snapshot_build_seconds
            .observe(encoding.elapsed().as_secs_f64());
        self.seen_at = started;
        let now = Instant::now();
        if let Some(prev) = &self.translated {
            for ty in [ResourceType::Cluster, ResourceType::Endpoint] {
                for (name, res) in prev.resources(ty) {
                    if !snapshot.resources(ty).contains_key(name) {
                        self.retained
                            .entry((ty, name.clone()))
                            .or_insert((res.clone(), now + CLUSTER_RETENTION));
                    }
                }
            }
        }
        self.translated = Some(snapshot);
        if self.publish() {
            info!(
                objects_changed = reload.changed.len(),
                files_read = reload.files_read,
                routes = output.ingresses.len(),
                elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                "published snapshot"
            );
        }
        let view = object_view(&self.manifests, &output);
        let mut counts: BTreeMap<(&str, &str), i64> = BTreeMap::new();
        for o in &view.objects {
            *counts
                .entry((o.object.kind.display_name(), o.state))
                .or_default() += 1;
        }
        let objects = &self.shared.metrics.objects;
        objects.clear();
        for ((kind, state), n) in counts {
            objects
                .get_or_create(&crate::server::metrics::ObjectLabels {
                    kind: kind.to_string(),
                    state: state.to_string(),
                })
                .set(n);
        }
        self.shared.set_view(view);
        self.report(Some(output));
        Ok(())
    }

    /// Publishes the latest translation plus the retained clusters that have not expired;
    /// returns whether anything changed.
    fn publish(&mut self) -> bool {
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

    /// When the next retained cluster expires.
    fn next_expiry(&self) -> Option<Instant> {
        self.retained.values().map(|(_, d)| *d).min()
    }

    /// Logs each problem once (when it appears) and publishes the report.
    fn report(&mut self, output: Option<Output>) {
        let mut report = (*self.shared.report()).clone();
        report.file_errors = self.manifests.errors();
        if let Some(output) = output {
            report.config_errors = output.config_errors.iter().map(|e| e.to_string()).collect();
            report.rejections = output.rejections;
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
        for r in &report.rejections {
            let key = format!("object {r}");
            if !self.logged.contains(&key) {
                let file = self.manifests.file_of(&r.object).map(|f| f.display().to_string());
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

/// Every Knative object's translation state, for the inspection API and `/metrics`.
pub fn object_view(manifests: &Manifests, output: &Output) -> View {
    use crate::model::{Kind, ObjectKey, ObjectRef};
    let store = &manifests.store;
    let rejected: BTreeMap<&ObjectRef, &crate::translate::Rejection> =
        output.rejections.iter().map(|r| (&r.object, r)).collect();
    let served: BTreeMap<&ObjectRef, &crate::translate::Ingress> =
        output.ingresses.iter().map(|i| (&i.origin, i)).collect();
    let mut objects = Vec::new();
    let mut add = |kind: Kind, key: &ObjectKey, generation: Option<i64>, produces: bool| {
        let object = ObjectRef {
            kind,
            key: key.clone(),
        };
        let ing = served.get(&object);
        let rej = rejected.get(&object);
        let state = match (ing, rej) {
            (Some(_), Some(_)) => "stale",
            (None, Some(_)) => "rejected",
            (Some(_), None) => "served",
            (None, None) if produces => "rejected",
            (None, None) => "input",
        };
        let mut clusters: Vec<String> = ing
            .map(|i| i.backends().map(|b| b.cluster_name()).collect())
            .unwrap_or_default();
        clusters.sort();
        clusters.dedup();
        objects.push(ObjectState {
            problems: rej
                .map(|r| {
                    r.problems
                        .iter()
                        .map(|p| format!("{}: {}", p.field, p.message))
                        .collect()
                })
                .unwrap_or_default(),
            virtual_hosts: ing
                .map(|i| {
                    i.rules
                        .iter()
                        .filter_map(|r| r.hosts.first().cloned())
                        .collect()
                })
                .unwrap_or_default(),
            clusters,
            object,
            generation,
            state,
        });
    };
    for (k, o) in &store.kservices {
        add(Kind::KService, k, o.metadata.generation, true);
    }
    for (k, o) in &store.routes {
        add(Kind::Route, k, o.metadata.generation, true);
    }
    for (k, o) in &store.domain_mappings {
        add(Kind::DomainMapping, k, o.metadata.generation, true);
    }
    for (k, o) in &store.configurations {
        add(Kind::Configuration, k, o.metadata.generation, false);
    }
    for (k, o) in &store.revisions {
        add(Kind::Revision, k, o.metadata.generation, false);
    }
    View {
        ingresses: output.ingresses.clone(),
        objects,
    }
}
