//! Wiring: sources → store → translation → snapshot → ADS, and the `render`/`validate`
//! commands, which run the same pipeline once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tracing::{error, info};

use crate::server::grpc::{Csds, Inspect};
use crate::server::{admin, ads::AdsService, lazy::Lazy, Shared};
use crate::sources::kube::{self as kube_source, KubeOptions};
use crate::sources::manifests::Manifests;
use crate::sources::watch::{Changed, FolderWatch};
use model::{Kind, ObjectRef};
use translate::{Options, Output, Translator};
use xds::Snapshot;

/// Loads a folder once and translates it (what `validate` needs).
pub fn translate_once(dir: &Path, options: Options) -> anyhow::Result<(Manifests, Output)> {
    let mut manifests = Manifests::new(dir);
    manifests
        .reload()
        .with_context(|| format!("reading manifests folder {}", dir.display()))?;
    let output = Translator::new(options).translate_ingresses(&manifests.store);
    Ok((manifests, output))
}

/// Loads a folder once, translates it and builds the snapshot `serve` would send.
pub fn load_once(dir: &Path, options: Options) -> anyhow::Result<(Manifests, Output, Snapshot)> {
    let (manifests, output) = translate_once(dir, options.clone())?;
    // The builder `serve` uses, so `render` shows the very bytes Envoy would be sent.
    let snapshot = builder::IncrementalBuilder::new().build(
        &output.ingresses,
        &manifests.store,
        &options.listeners,
        options.check_endpoint_addresses,
        Some(unix_now()),
    );
    Ok((manifests, output, snapshot))
}

/// Now, in Unix seconds: certificates are checked against it.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// One thing `validate` reports: where (file, line, object, field) and what.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// `Kind namespace/name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Finding {
    /// One line: `file:line: object: field: message`, leaving out what is not known.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(l)) => write!(f, "{}:{l}: ", file.display())?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            _ => {}
        }
        if let Some(o) = &self.object {
            write!(f, "{o}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// What `validate` finds in a folder.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Findings {
    /// What Knative (or the API server) would reject, or cannot be read.
    pub errors: Vec<Finding>,
    /// Served, but likely not what was meant: Revisions implied, backends without
    /// endpoints, objects defined twice.
    pub warnings: Vec<Finding>,
    /// Files that are not manifests, so were not read.
    pub skipped: Vec<PathBuf>,
}

/// Everything wrong or doubtful in a folder, each finding with the file it came from, with
/// the translation's `options` (endpoint addresses checked or not; the HTTPS settings).
pub fn findings(manifests: &Manifests, output: &Output, options: &Options) -> Findings {
    let check_addresses = options.check_endpoint_addresses;
    let mut out = Findings {
        skipped: manifests.skipped().to_vec(),
        ..Findings::default()
    };
    let file_of = |r: &ObjectRef| manifests.file_of(r).map(Path::to_path_buf);
    for e in manifests.errors() {
        out.errors.push(Finding {
            file: Some(e.path),
            line: e.line,
            object: None,
            field: None,
            message: e.message,
        });
    }
    for e in &output.config_errors {
        out.errors.push(Finding {
            file: None,
            line: None,
            object: Some(format!("ConfigMap {}", e.config_map)),
            field: Some(format!("data.{}", e.key)),
            message: e.message.clone(),
        });
    }
    // Certificates: the same planning `serve` does, at this moment.
    let plan = translate::tls::Planner::new().plan(
        output.ingresses.iter().map(|i| &**i),
        &manifests.store,
        &options.listeners.tls,
        Some(unix_now()),
    );
    for p in plan.problems {
        out.errors.push(Finding {
            file: file_of(&p.object),
            line: None,
            object: Some(p.object.to_string()),
            field: Some(p.problem.field),
            message: p.problem.message,
        });
    }
    for r in &output.rejections {
        for p in &r.problems {
            let mut message = p.message.clone();
            if r.serving_last_good {
                message.push_str(" (still serving its last good translation)");
            }
            out.errors.push(Finding {
                file: file_of(&r.object),
                line: None,
                object: Some(r.object.to_string()),
                field: Some(p.field.clone()),
                message,
            });
        }
    }
    // A warning about an object, found in its file.
    let about = |r: &ObjectRef, message: String| Finding {
        file: file_of(r),
        line: None,
        object: Some(r.to_string()),
        field: None,
        message,
    };
    for (r, files) in manifests.duplicates() {
        let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        let message = format!(
            "defined in several files ({}); the first is used",
            files.join(", ")
        );
        out.warnings.push(about(&r, message));
    }
    let store = &manifests.store;
    let mut without_endpoints = std::collections::BTreeSet::new();
    for ing in &output.ingresses {
        if matches!(ing.origin.kind, Kind::Route | Kind::KService) {
            for rev in translate::route::implied_revisions(ing, store) {
                let message = format!(
                    "Revision {rev:?} is implied (no Revision object; no controller runs here \
                     to make one)"
                );
                out.warnings.push(about(&ing.origin, message));
            }
        }
        let backends = ing.rules.iter().flat_map(|r| r.paths.iter());
        for s in backends.flat_map(|p| p.splits.iter()) {
            let b = &s.backend;
            if !translate::envoy::backend_has_endpoints(b, store, check_addresses) {
                without_endpoints.insert((ing.origin.clone(), b.service.clone()));
            }
        }
    }
    for (origin, service) in without_endpoints {
        let message = format!(
            "{service:?} has no ready endpoints (no EndpointSlice for it): its requests get 503"
        );
        out.warnings.push(about(&origin, message));
    }
    out
}

pub mod pipeline;

use pipeline::{sleep_until, Pipeline, Source};

/// Where `serve` reads objects from.
#[derive(Debug, Clone)]
pub enum SourceConfig {
    Manifests(PathBuf),
    Kube(KubeOptions),
}

/// Settings for `serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub source: SourceConfig,
    pub xds_address: SocketAddr,
    pub admin_address: SocketAddr,
    pub options: Options,
    /// KIngress mode with Kubernetes: write status (leader only).
    pub status: Option<crate::sources::kube_status::StatusSettings>,
    /// TLS (mTLS with a client CA) on the xDS port.
    pub xds_tls: Option<crate::server::tls::XdsTls>,
}

/// Runs the control plane until `shutdown` resolves.
pub async fn serve(
    cfg: ServeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let xds = tokio::net::TcpListener::bind(cfg.xds_address)
        .await
        .with_context(|| format!("binding the xDS address {}", cfg.xds_address))?;
    let admin = tokio::net::TcpListener::bind(cfg.admin_address)
        .await
        .with_context(|| format!("binding the admin address {}", cfg.admin_address))?;
    serve_on(cfg, xds, admin, shutdown).await
}

/// [`serve`] on listeners already bound (the addresses in `cfg` are then only reported):
/// a program that picks free ports holds them from the pick on, so nothing else (an
/// outgoing connection's local port, say) can take them before the server binds.
pub async fn serve_on(
    cfg: ServeConfig,
    xds: tokio::net::TcpListener,
    admin_listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_in_mode(cfg, xds, admin_listener, shutdown, false).await
}

/// [`serve_on`] as kourier behaves, for the bench crate's comparisons (the `baseline`
/// feature, which the `knative-xds` binary does not enable): every change re-translates
/// everything and gives every resource a fresh version, so every type is resent.
#[cfg(feature = "baseline")]
pub async fn serve_on_baseline(
    cfg: ServeConfig,
    xds: tokio::net::TcpListener,
    admin_listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_in_mode(cfg, xds, admin_listener, shutdown, true).await
}

async fn serve_in_mode(
    cfg: ServeConfig,
    xds: tokio::net::TcpListener,
    admin_listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    full_push: bool,
) -> anyhow::Result<()> {
    let shared = Arc::new(Shared::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let translator = Translator::new(cfg.options.clone());

    // The servers run from the start: `/readyz` says "not ready" (rather than refusing
    // connections) while the first snapshot is being built, and answers "ready" the moment
    // it is published.
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
    let stopped = async move {
        let _ = stop.changed().await;
    };
    let server_task = match &cfg.xds_tls {
        Some(tls) => {
            // A configuration that does not load stops the start: better than serving
            // plaintext, or nothing, by surprise.
            let first = tls.load().context("xDS TLS")?;
            info!(client_ca = tls.client_ca.is_some(), "xDS port: TLS");
            let incoming = crate::server::tls::incoming(xds, tls.clone(), first);
            tokio::spawn(grpc.serve_with_incoming_shutdown(incoming, stopped))
        }
        None => tokio::spawn(grpc.serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(xds),
            stopped,
        )),
    };
    let started = start_source(&cfg, translator, shared.clone(), stop_rx.clone(), full_push).await;
    let pipeline_task = match started {
        Ok(task) => task,
        Err(e) => {
            server_task.abort();
            admin_task.abort();
            return Err(e);
        }
    };

    // ADS streams never end by themselves: after the stop signal, give them a moment and
    // then exit, so a SIGTERM always ends the process (Envoys reconnect elsewhere and keep
    // their config meanwhile).
    let mut stop = stop_rx.clone();
    let deadline = async move {
        let _ = stop.changed().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        r = server_task => r.context("xDS server task")?.context("xDS server")?,
        _ = deadline => info!("closing the remaining ADS streams"),
    }
    pipeline_task.abort();
    admin_task.abort();
    Ok(())
}

/// Loads the source (the first snapshot) and starts the task that follows its changes.
async fn start_source(
    cfg: &ServeConfig,
    translator: Translator,
    shared: Arc<Shared>,
    stop_rx: tokio::sync::watch::Receiver<bool>,
    full_push: bool,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let task = match &cfg.source {
        SourceConfig::Manifests(dir) => {
            info!(xds = %cfg.xds_address, admin = %cfg.admin_address, manifests = %dir.display(), "knative-xds serving");
            let mut pipeline = Pipeline::new(
                Source::Manifests(Manifests::new(dir)),
                translator,
                shared.clone(),
                full_push,
            );
            // Off the async workers: the servers keep answering meanwhile.
            let (mut pipeline, loaded) = tokio::task::spawn_blocking(move || {
                let loaded = pipeline.reload();
                (pipeline, loaded)
            })
            .await
            .context("loading the manifests")?;
            loaded.with_context(|| format!("reading manifests folder {}", dir.display()))?;
            // Watched only now: a watch during the first read doubles the work of every file
            // opened (the kernel queues an event per open and close, the watcher thread reads
            // them). What changed meanwhile is found by looking at everything once more
            // (unchanged files are skipped by size and modification time).
            // Serving goes on without a watch (say, at the inotify watch limit): then the
            // folder is looked at every `POLL`.
            let mut watch = FolderWatch::new(dir).unwrap_or_else(|e| {
                error!(error = %e, dir = %dir.display(), "watching the manifests folder failed; looking at it every {} s instead", crate::sources::watch::POLL.as_secs());
                FolderWatch::polling()
            });
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let mut changed = Some(Changed::Everything);
                loop {
                    if let Some(changed) = changed.take() {
                        if let Err(e) = pipeline.reload_changed(&changed) {
                            error!(error = %e, "reading manifests folder failed; keeping the current config");
                        }
                    }
                    let expiry = pipeline.next_expiry();
                    tokio::select! {
                        c = watch.changed() => {
                            pipeline.shared.metrics.watch_events.inc();
                            changed = Some(c);
                        }
                        _ = sleep_until(expiry) => pipeline.on_timer(),
                        _ = stop.changed() => break,
                    }
                }
            })
        }
        SourceConfig::Kube(opts) => {
            let client = kube::Client::try_default()
                .await
                .context("connecting to Kubernetes (in-cluster config or $KUBECONFIG)")?;
            let es_version = kube_source::endpoint_slice_version(&client).await;
            let specs = kube_source::watch_specs(opts, &es_version);
            info!(xds = %cfg.xds_address, admin = %cfg.admin_address, watches = specs.len(), endpoint_slices = %es_version, "knative-xds serving from Kubernetes");
            let (tx, rx) = tokio::sync::mpsc::channel(1024);
            let mut pipeline = Pipeline::new(
                Source::Kube {
                    store: Default::default(),
                    watches: specs.len(),
                    listed: Default::default(),
                },
                translator,
                shared.clone(),
                full_push,
            );
            let first_secret_watch = specs.len();
            for (id, spec) in specs.into_iter().enumerate() {
                tokio::spawn(kube_source::run_watch(client.clone(), id, spec, tx.clone()));
            }
            let mut secrets =
                kube_source::SecretWatches::new(client.clone(), tx.clone(), first_secret_watch);
            if let Some(settings) = cfg.status.clone() {
                tokio::spawn(crate::sources::kube_status::run(
                    client.clone(),
                    shared.clone(),
                    settings,
                    stop_rx.clone(),
                ));
            }
            drop(tx);
            let mut stop = stop_rx.clone();
            tokio::spawn(async move {
                let mut rx = rx;
                loop {
                    let expiry = pipeline.next_expiry();
                    tokio::select! {
                        first = rx.recv() => {
                            let Some(first) = first else { break };
                            let started = Instant::now();
                            let batch = coalesce(&mut rx, first, started).await;
                            pipeline.apply(batch, started);
                            let stopped = secrets.sync(pipeline.named_secrets());
                            pipeline.forget_secrets(stopped);
                        }
                        _ = sleep_until(expiry) => pipeline.on_timer(),
                        _ = stop.changed() => break,
                    }
                }
            })
        }
    };

    Ok(task)
}

/// How long open ADS streams get after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// A burst of watch events becomes one translation: gathers changes until the channel has
/// been quiet for `COALESCE_QUIET`, or `COALESCE_MAX` after the first, so a single change
/// still reaches Envoy in milliseconds.
const COALESCE_QUIET: Duration = Duration::from_millis(5);
const COALESCE_MAX: Duration = Duration::from_millis(100);

async fn coalesce(
    rx: &mut tokio::sync::mpsc::Receiver<kube_source::Change>,
    first: kube_source::Change,
    started: Instant,
) -> Vec<kube_source::Change> {
    let mut batch = vec![first];
    loop {
        let left = COALESCE_MAX.saturating_sub(started.elapsed());
        match tokio::time::timeout(COALESCE_QUIET.min(left), rx.recv()).await {
            Ok(Some(c)) => batch.push(c),
            _ => return batch,
        }
    }
}

const CSDS: &str = "envoy.service.status.v3.ClientStatusDiscoveryService";
const INSPECT: &str = "knative_xds.v1.Inspect";

/// gRPC reflection of every service we serve, with the Envoy API (for `Any` payloads).
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(xds::json::descriptor_set())
        .register_encoded_file_descriptor_set(crate::api::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name(AdsService::NAME)
        .with_service_name(CSDS)
        .with_service_name(INSPECT)
        .with_service_name("grpc.health.v1.Health")
}

/// Every gRPC service of the xDS port: ADS, CSDS, our Inspect API, health, reflection.
async fn grpc_services(shared: Arc<Shared>) -> anyhow::Result<tonic::transport::server::Router> {
    use envoy_api::pb::envoy::service::status::v3::client_status_discovery_service_server::ClientStatusDiscoveryServiceServer;

    let (health, health_service) = tonic_health::server::health_reporter();
    // The port only opens after the first snapshot, so everything is serving from the start.
    for name in ["", AdsService::NAME, CSDS, INSPECT] {
        health
            .set_service_status(name, tonic_health::ServingStatus::Serving)
            .await;
    }
    // Built on grpcurl's first request: see `Lazy`.
    let reflection_v1 = Lazy::new(|| reflection().build_v1().map_err(|e| e.to_string()));
    let reflection_v1alpha = Lazy::new(|| reflection().build_v1alpha().map_err(|e| e.to_string()));
    Ok(tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(AdsService::new(shared.clone(), 64 << 20))
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

#[cfg(test)]
mod tests {
    /// Reflection is built on first use, so the start no longer proves its inputs decode.
    #[test]
    fn reflection_builds_from_the_compiled_in_descriptors() {
        super::reflection().build_v1().expect("v1");
        super::reflection().build_v1alpha().expect("v1alpha");
    }

    /// What `knative-xds validate` does: every generated object is accepted, before and
    /// after changes.
    #[test]
    fn validate_accepts_the_workload_and_its_changes() {
        let w = workload::generate(400, 11);
        let dir = tempfile::tempdir().unwrap();
        w.write_to(dir.path()).unwrap();
        let (manifests, output) =
            super::translate_once(dir.path(), translate::Options::default()).expect("loads");
        let found = super::findings(&manifests, &output, &translate::Options::default());
        assert!(found.errors.is_empty(), "{found:#?}");
        assert!(found.warnings.is_empty(), "{found:#?}");
        assert_eq!(output.rejections.len(), 0);
        assert_eq!(manifests.store.kservices.len(), 400);
        let mapped = w.domain_mappings();
        // One Ingress per Knative Service and per DomainMapping.
        assert_eq!(output.ingresses.len(), 400 + mapped);
        for i in 0..40 {
            let (path, text) = w.change(i);
            std::fs::write(dir.path().join(path), text).unwrap();
        }
        let (manifests, output) =
            super::translate_once(dir.path(), translate::Options::default()).unwrap();
        let found = super::findings(&manifests, &output, &translate::Options::default());
        assert!(found.errors.is_empty(), "{found:#?}");
        assert!(found.warnings.is_empty(), "{found:#?}");
    }
}
