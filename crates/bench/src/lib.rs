//! Load harness (test and benchmark tooling, not used by the server): runs the real server
//! in-process on a generated workload ([`workload`]), connects many ADS clients that
//! behave like Envoy, applies changes one at a time by rewriting a manifest file, and
//! measures what each change costs.
//!
//! Clients (each on its own HTTP/2 connection, like separate Envoys):
//! - SotW: request CDS and LDS (wildcard); EDS for every EDS cluster; SRDS for the scope
//!   sets of the listeners (`srds_resources_locator`) and RDS for the listeners'
//!   `rds.route_config_name` plus every scope's `route_configuration_name`. Every response is
//!   ACKed with its `version_info` and nonce and the current name list, as Envoy does.
//!   CDS, LDS and SRDS responses are the complete state; EDS and RDS responses add to it.
//! - Delta: the same subscriptions as subscribe/unsubscribe lists; ACK with the nonce.
//!
//! Per client and type the harness keeps each resource's version (a hash of the server's
//! version string over delta, of the resource bytes over SotW) by name hash; names are
//! interned once for the whole process, so 1,000 clients of 10,000 Routes fit in memory.
//!
//! A change: the harness publishes a probe (the RouteConfiguration that carries the changed
//! Service on the internal listener, found through the Envoy config itself: the listener's
//! RDS name, or the scope whose key is the Service's cluster-local host), writes the file
//! (write + rename) and waits until every client has received a new version of that
//! RouteConfiguration. Bytes are counted per client between two changes (encoded length of
//! every response).
//!
//! The server runs on its own tokio runtime: its CPU time is that runtime's threads only
//! (`/proc/self/task/<tid>/stat`); the clients run on another runtime in the same process
//! (so `peak_rss_mb` includes them; `rss_before_clients_mb` does not).

pub mod cold_start;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hasher;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use envoy_api::pb::envoy::config::core::v3::Node;
use envoy_api::pb::envoy::config::listener::v3::{filter, Listener};
use envoy_api::pb::envoy::config::route::v3::{
    scoped_route_configuration::key::fragment, ScopedRouteConfiguration,
};
use envoy_api::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager::RouteSpecifier, scoped_routes::ConfigSpecifier, HttpConnectionManager,
};
use envoy_api::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_api::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_api::pb::google::protobuf::Any;
use prost::Message;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use runtime::app::{ServeConfig, SourceConfig};
use translate::envoy::{RouteLayout, INTERNAL};
use translate::Options;
use workload::{self, Workload};
use xds::names::glob_prefix;
use xds::stream::Protocol;
use xds::{ResourceType, Snapshot};

/// Incremental (the server as it is) or baseline (kourier's behaviour).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Incremental,
    /// One RouteConfiguration per listener, every change re-translates everything and gives
    /// every resource a fresh version, so every type is resent (`runtime::app::serve_on_baseline`).
    Baseline,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub routes: usize,
    pub clients: usize,
    pub changes: usize,
    pub protocol: Protocol,
    pub mode: Mode,
    /// Route layout in incremental mode (baseline always uses one RouteConfiguration per
    /// listener, like kourier).
    pub layout: RouteLayout,
    pub seed: u64,
    /// Worker threads of the server's runtime and of the clients' runtime.
    pub server_threads: usize,
    pub client_threads: usize,
    /// How long all clients may take to get the initial config.
    pub initial_timeout: Duration,
    /// How long all clients may take to receive one change.
    pub change_timeout: Duration,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            routes: 1000,
            clients: 100,
            changes: 50,
            protocol: Protocol::Delta,
            mode: Mode::Incremental,
            layout: RouteLayout::default(),
            seed: 1,
            server_threads: 2,
            client_threads: 2,
            initial_timeout: Duration::from_secs(900),
            change_timeout: Duration::from_secs(120),
        }
    }
}

impl LoadConfig {
    /// The server's options for this run.
    pub fn options(&self) -> Options {
        let mut o = Options::default();
        match self.mode {
            Mode::Incremental => o.listeners.layout = self.layout,
            Mode::Baseline => o.listeners.layout = RouteLayout::PerListener,
        }
        o
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles.
    pub fn of(values: &[f64]) -> Percentiles {
        if values.is_empty() {
            return Percentiles::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Percentiles {
            p50: round3(rank(0.50)),
            p99: round3(rank(0.99)),
            max: round3(v[v.len() - 1]),
            mean: round3(v.iter().sum::<f64>() / v.len() as f64),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MeanMax {
    pub mean: f64,
    pub max: f64,
}

/// Whether every client ended with exactly the server's final resources.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FinalCheck {
    /// Clients whose resources (names and versions, every type) equal the expected ones:
    /// over delta the server's `/debug/snapshot`, over SotW (which carries no per-resource
    /// versions) the content of a fresh render of the final folder.
    pub clients_matching: usize,
    /// The server's `/debug/snapshot` has the names of a fresh render of the final folder
    /// (and, in incremental mode, the same versions).
    pub server_matches_render: bool,
    /// The first difference found, if any.
    pub first_difference: Option<String>,
}

/// One run's figures (printed as JSON by `examples/xds-load.rs`).
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub routes: usize,
    pub clients: usize,
    pub changes: usize,
    pub protocol: Protocol,
    pub mode: Mode,
    pub layout: &'static str,
    /// Resources served at the start, by type.
    pub resources: BTreeMap<&'static str, usize>,
    /// Server start → first snapshot (`/readyz` turns 200).
    pub cold_start_ms: f64,
    /// Clients start connecting → every client has the complete initial config.
    pub initial_sync_ms: f64,
    pub initial_bytes_per_client: f64,
    /// Per change: file written → every client has received the changed RouteConfiguration.
    pub change_to_all_received_ms: Percentiles,
    /// Per change and client: bytes of every response received between two changes.
    pub bytes_per_change_per_client: MeanMax,
    /// CPU of the server's runtime threads over the whole run (start, initial sync, changes).
    pub server_cpu_seconds: f64,
    /// CPU of the server's runtime threads per change (changes phase only).
    pub server_cpu_ms_per_change: f64,
    /// CPU of the whole process (server, clients and harness).
    pub process_cpu_seconds: f64,
    /// Resident set right after the first snapshot, before any client connects.
    pub rss_before_clients_mb: f64,
    /// Resident set once every client has the initial config (server and clients).
    pub rss_after_initial_sync_mb: f64,
    /// Peak resident set of the process (server and clients), before the final check.
    pub peak_rss_mb: f64,
    pub final_check: FinalCheck,
}

/// Runs one load test (blocking; builds its own runtimes). Errors when the server fails,
/// a client's stream fails, or a change does not reach every client in time.
pub fn run(cfg: &LoadConfig) -> anyhow::Result<LoadReport> {
    anyhow::ensure!(
        cfg.routes > 0 && cfg.clients > 0,
        "routes and clients must be > 0"
    );
    let work = workload::generate(cfg.routes, cfg.seed);
    let dir = temp_dir()?;
    work.write_to(dir.path()).context("writing the workload")?;
    let options = cfg.options();
    let process_cpu_start = process_cpu_seconds();
    // The peak of this run, not of an earlier one in the same process.
    let _ = std::fs::write("/proc/self/clear_refs", "5");

    let server_tids = Arc::new(Mutex::new(Vec::<u32>::new()));
    let server_rt = {
        let tids = server_tids.clone();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cfg.server_threads.max(1))
            .thread_name("xds-server")
            .thread_keep_alive(Duration::from_secs(3600))
            .on_thread_start(move || {
                if let Some(tid) = current_tid() {
                    if let Ok(mut t) = tids.lock() {
                        t.push(tid);
                    }
                }
            })
            .enable_all()
            .build()
            .context("building the server runtime")?
    };
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.client_threads.max(1))
        .thread_name("xds-clients")
        .enable_all()
        .build()
        .context("building the clients' runtime")?;

    // Bound here and handed over: a port picked, let go and bound again later can meanwhile
    // become the local port of one of the many connections that tests running beside this
    // one open.
    let bind = || -> anyhow::Result<(std::net::TcpListener, SocketAddr)> {
        let l = std::net::TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
        l.set_nonblocking(true)?;
        let a = l.local_addr()?;
        Ok((l, a))
    };
    let ((xds, xds_address), (admin, admin_address)) = (bind()?, bind()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let mode = cfg.mode;
    let config = ServeConfig {
        source: SourceConfig::Manifests(dir.path().to_path_buf()),
        xds_address,
        admin_address,
        options: options.clone(),
        status: None,
        xds_tls: None,
    };
    // Why the server stopped, if it stops before it is ready.
    let failure: Arc<Mutex<Option<String>>> = Arc::default();
    let failed = failure.clone();
    let server = server_rt.spawn(async move {
        let listeners = (
            tokio::net::TcpListener::from_std(xds),
            tokio::net::TcpListener::from_std(admin),
        );
        let served = match listeners {
            (Ok(xds), Ok(admin)) => {
                let stop = async move {
                    let _ = stop_rx.await;
                };
                match mode {
                    Mode::Incremental => runtime::app::serve_on(config, xds, admin, stop).await,
                    Mode::Baseline => {
                        runtime::app::serve_on_baseline(config, xds, admin, stop).await
                    }
                }
            }
            (Err(e), _) | (_, Err(e)) => Err(e.into()),
        };
        if let Err(e) = &served {
            *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("{e:#}"));
        }
        served
    });

    let result = client_rt.block_on(async {
        wait_ready(admin_address, &server, Duration::from_secs(600))
            .await
            .map_err(|e| match failure.lock().ok().and_then(|f| f.clone()) {
                Some(why) => anyhow!("{e}: {why}"),
                None => e,
            })?;
        let cold_start_ms = ms(started.elapsed());
        let rss_before_clients_mb = proc_status_mb("VmRSS:");
        drive(
            cfg,
            &work,
            dir.path(),
            &options,
            xds_address,
            admin_address,
            &server_tids,
            cold_start_ms,
            rss_before_clients_mb,
        )
        .await
    });

    let _ = stop_tx.send(());
    let _ =
        client_rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), server).await });
    client_rt.shutdown_timeout(Duration::from_secs(5));
    server_rt.shutdown_timeout(Duration::from_secs(5));
    let mut report = result?;
    report.process_cpu_seconds = round3(process_cpu_seconds() - process_cpu_start);
    Ok(report)
}

/// Everything after the server is ready: clients, changes, final check.
#[allow(clippy::too_many_arguments)]
async fn drive(
    cfg: &LoadConfig,
    work: &Workload,
    dir: &Path,
    options: &Options,
    xds_address: SocketAddr,
    admin_address: SocketAddr,
    server_tids: &Mutex<Vec<u32>>,
    cold_start_ms: f64,
    rss_before_clients_mb: f64,
) -> anyhow::Result<LoadReport> {
    let server_cpu =
        || thread_cpu_seconds(&server_tids.lock().map(|t| t.clone()).unwrap_or_default());

    // What the clients must end up with, and where each change shows: a fresh render.
    let initial = render(dir, options)?;
    let resolver = Resolver::new(&initial, &options.cluster_domain)?;
    let mut expected_counts = [0usize; ResourceType::COUNT];
    let mut resources = BTreeMap::new();
    for (i, ty) in ResourceType::ORDERED.into_iter().enumerate() {
        expected_counts[i] = initial.resources(ty).len();
        resources.insert(ty.short_name(), expected_counts[i]);
    }
    drop(initial);

    let (probe_tx, probe_rx) = watch::channel::<Option<Arc<Probe>>>(None);
    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<Event>();
    let shared = Arc::new(ClientShared {
        interner: Interner::default(),
        bytes: (0..cfg.clients).map(|_| AtomicU64::new(0)).collect(),
        expected_counts,
        connect: tokio::sync::Semaphore::new(64),
    });
    let states: Vec<Arc<Mutex<ClientState>>> = (0..cfg.clients)
        .map(|_| Arc::new(Mutex::new(ClientState::default())))
        .collect();

    // Connect every client and wait for the complete initial config.
    let sync_started = Instant::now();
    let mut tasks = Vec::with_capacity(cfg.clients);
    for (idx, state) in states.iter().enumerate() {
        let client = Client {
            idx,
            protocol: cfg.protocol,
            shared: shared.clone(),
            state: state.clone(),
            probe: probe_rx.clone(),
            events: events_tx.clone(),
        };
        tasks.push(tokio::spawn(async move {
            let events = client.events.clone();
            if let Err(e) = client.run(xds_address).await {
                let _ = events.send(Event::Failed {
                    client: idx,
                    error: format!("{e:#}"),
                });
            }
        }));
    }
    let _abort = AbortOnDrop(tasks);
    let mut synced = vec![false; cfg.clients];
    let mut left = cfg.clients;
    let deadline = Instant::now() + cfg.initial_timeout;
    while left > 0 {
        match next_event(&mut events_rx, deadline).await? {
            Event::Initial { client } if !synced[client] => {
                synced[client] = true;
                left -= 1;
            }
            _ => {}
        }
    }
    let initial_sync_ms = ms(sync_started.elapsed());
    let rss_after_initial_sync_mb = proc_status_mb("VmRSS:");
    let initial_bytes: u64 = shared.bytes.iter().map(|b| b.load(Ordering::Relaxed)).sum();

    // Changes, one at a time.
    let cpu_before_changes = server_cpu();
    let mut latencies = Vec::with_capacity(cfg.changes);
    let mut per_change_bytes: Vec<u64> = Vec::with_capacity(cfg.changes * cfg.clients);
    let mut boundary: Vec<u64> = shared
        .bytes
        .iter()
        .map(|b| b.load(Ordering::Relaxed))
        .collect();
    for i in 0..cfg.changes {
        let (path, text) = work.change(i);
        let (ns, name) = work.changed_service(i);
        let watched = resolver
            .watched(&ns, &name)
            .with_context(|| format!("no RouteConfiguration carries {ns}/{name}"))?;
        if i > 0 {
            take_bytes(&shared, &mut boundary, &mut per_change_bytes);
        }
        let id = i as u64 + 1;
        probe_tx.send_replace(Some(Arc::new(Probe {
            id,
            ty: ResourceType::Route,
            name: name_hash(watched.as_bytes()),
        })));
        let written = Instant::now();
        write_atomically(&dir.join(&path), &text)?;
        let deadline = written + cfg.change_timeout;
        let mut got = vec![false; cfg.clients];
        let mut left = cfg.clients;
        let mut last = written;
        while left > 0 {
            match next_event(&mut events_rx, deadline).await {
                Ok(Event::Received { client, probe, at }) if probe == id && !got[client] => {
                    got[client] = true;
                    left -= 1;
                    last = last.max(at);
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(e.context(format!(
                        "change {i} ({path}, route configuration {watched}): {left} of {} clients did not receive it",
                        cfg.clients
                    )))
                }
            }
        }
        latencies.push(ms(last - written));
    }
    if cfg.changes > 0 {
        // Let the last change's stragglers (ACK-triggered responses) arrive.
        tokio::time::sleep(Duration::from_millis(100)).await;
        take_bytes(&shared, &mut boundary, &mut per_change_bytes);
    }
    let cpu_after_changes = server_cpu();
    let peak_rss_mb = proc_status_mb("VmHWM:");

    let final_check = final_check(cfg, dir, options, admin_address, &states).await?;
    let bytes_mean = if per_change_bytes.is_empty() {
        0.0
    } else {
        per_change_bytes.iter().sum::<u64>() as f64 / per_change_bytes.len() as f64
    };
    Ok(LoadReport {
        routes: cfg.routes,
        clients: cfg.clients,
        changes: cfg.changes,
        protocol: cfg.protocol,
        mode: cfg.mode,
        layout: match options.listeners.layout {
            RouteLayout::PerListener => "per-listener",
            RouteLayout::Scoped => "scoped",
        },
        resources,
        cold_start_ms,
        initial_sync_ms,
        initial_bytes_per_client: round3(initial_bytes as f64 / cfg.clients as f64),
        change_to_all_received_ms: Percentiles::of(&latencies),
        bytes_per_change_per_client: MeanMax {
            mean: round3(bytes_mean),
            max: per_change_bytes.iter().copied().max().unwrap_or(0) as f64,
        },
        server_cpu_seconds: round3(server_cpu()),
        server_cpu_ms_per_change: if cfg.changes == 0 {
            0.0
        } else {
            round3((cpu_after_changes - cpu_before_changes) * 1000.0 / cfg.changes as f64)
        },
        process_cpu_seconds: 0.0,
        rss_before_clients_mb,
        rss_after_initial_sync_mb,
        peak_rss_mb,
        final_check,
    })
}

fn take_bytes(shared: &ClientShared, boundary: &mut [u64], out: &mut Vec<u64>) {
    for (b, counter) in boundary.iter_mut().zip(&shared.bytes) {
        let now = counter.load(Ordering::Relaxed);
        out.push(now - *b);
        *b = now;
    }
}

/// Waits (bounded) until every client holds exactly the expected final resources.
async fn final_check(
    cfg: &LoadConfig,
    dir: &Path,
    options: &Options,
    admin: SocketAddr,
    states: &[Arc<Mutex<ClientState>>],
) -> anyhow::Result<FinalCheck> {
    let rendered = render(dir, options)?;
    let served = debug_snapshot(admin).await?;
    let first_difference = difference_from_render(&rendered, &served, cfg.mode == Mode::Baseline);
    let server_matches_render = first_difference.is_none();
    // name hash → version hash, per type, as the clients keep them.
    let expected: [HashMap<u64, u64>; ResourceType::COUNT] =
        std::array::from_fn(|i| match cfg.protocol {
            Protocol::Delta => served[i]
                .iter()
                .map(|(n, v)| (name_hash(n.as_bytes()), name_hash(v.as_bytes())))
                .collect(),
            Protocol::Sotw => rendered
                .resources(ResourceType::ORDERED[i])
                .values()
                .map(|r| {
                    let name = xds::names::wire(&r.name);
                    (name_hash(name.as_bytes()), content_hash(&r.value()))
                })
                .collect(),
        });
    drop(rendered);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut matching = 0;
        let mut difference = None;
        for (idx, st) in states.iter().enumerate() {
            let Ok(st) = st.lock() else { continue };
            match ResourceType::ORDERED
                .iter()
                .enumerate()
                .find(|(i, _)| st.held[*i] != expected[*i])
            {
                None => matching += 1,
                Some((i, ty)) => {
                    difference.get_or_insert_with(|| {
                        let wrong = st.held[i]
                            .iter()
                            .filter(|(n, v)| expected[i].get(n) != Some(v))
                            .count();
                        format!(
                            "client {idx} {}: holds {} ({wrong} not as expected), expected {}",
                            ty.short_name(),
                            st.held[i].len(),
                            expected[i].len()
                        )
                    });
                }
            }
        }
        if matching == states.len() || Instant::now() > deadline {
            return Ok(FinalCheck {
                clients_matching: matching,
                server_matches_render,
                first_difference: first_difference.or(difference),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The Envoy resources a fresh `render` of `dir` gives.
fn render(dir: &Path, options: &Options) -> anyhow::Result<Snapshot> {
    let (_, _, snapshot) = runtime::app::load_once(dir, options.clone())?;
    Ok(snapshot)
}

/// How what the server serves (its `/debug/snapshot`) differs from a render, if it does: the
/// first type whose names (and, unless `any_version`, versions) differ.
fn difference_from_render(
    rendered: &Snapshot,
    served: &[BTreeMap<String, String>; ResourceType::COUNT],
    any_version: bool,
) -> Option<String> {
    ResourceType::ORDERED
        .into_iter()
        .zip(served)
        .find_map(|(ty, s)| {
            let r = rendered.resources(ty);
            let same = r.len() == s.len()
                && r.iter().all(|(name, res)| {
                    s.get(&*xds::names::wire(name))
                        .is_some_and(|v| any_version || **v == *res.version)
                });
            (!same).then(|| {
                format!(
                    "server {}: {} resources served, {} rendered",
                    ty.short_name(),
                    s.len(),
                    r.len()
                )
            })
        })
}

/// Finds the RouteConfiguration that carries a Knative Service on the internal listener,
/// the way Envoy would: the listener's RDS name, or (scoped routes) the scope whose key is
/// the Service's cluster-local host.
struct Resolver {
    cluster_domain: String,
    internal_rds: Option<String>,
    scopes: HashMap<String, String>,
}

impl Resolver {
    fn new(snap: &Snapshot, cluster_domain: &str) -> anyhow::Result<Resolver> {
        let mut out = Resolver {
            cluster_domain: cluster_domain.to_string(),
            internal_rds: None,
            scopes: HashMap::new(),
        };
        let listener = snap
            .get(ResourceType::Listener, INTERNAL)
            .ok_or_else(|| anyhow!("no listener {INTERNAL:?} in the snapshot"))?;
        let listener = Listener::decode(&*listener.value())?;
        for (ty, name) in listener_refs(&listener) {
            match ty {
                ResourceType::Route => out.internal_rds = Some(name),
                ResourceType::ScopedRoute => {
                    let name = xds::names::into_internal(name);
                    let prefix = glob_prefix(&name).unwrap_or(&name);
                    for (n, r) in snap.resources(ResourceType::ScopedRoute) {
                        if !n.starts_with(prefix) {
                            continue;
                        }
                        let s = ScopedRouteConfiguration::decode(&*r.value())?;
                        if let Some(fragment::Type::StringKey(key)) = s
                            .key
                            .as_ref()
                            .and_then(|k| k.fragments.first())
                            .and_then(|f| f.r#type.clone())
                        {
                            out.scopes.insert(key, s.route_configuration_name);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    fn watched(&self, ns: &str, name: &str) -> Option<String> {
        let host = format!("{name}.{ns}.svc.{}", self.cluster_domain);
        self.scopes
            .get(&host)
            .cloned()
            .or_else(|| self.internal_rds.clone())
    }
}

/// The resources a listener makes Envoy subscribe to: RDS names and SRDS scope sets.
fn listener_refs(l: &Listener) -> Vec<(ResourceType, String)> {
    let mut out = Vec::new();
    for fc in &l.filter_chains {
        for f in &fc.filters {
            let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
                continue;
            };
            if !any.type_url.ends_with(".HttpConnectionManager") {
                continue;
            }
            let Ok(hcm) = HttpConnectionManager::decode(any.value.as_slice()) else {
                continue;
            };
            match hcm.route_specifier {
                Some(RouteSpecifier::Rds(rds)) => {
                    out.push((ResourceType::Route, rds.route_config_name))
                }
                Some(RouteSpecifier::ScopedRoutes(sr)) => match sr.config_specifier {
                    Some(ConfigSpecifier::ScopedRds(srds)) => {
                        out.push((ResourceType::ScopedRoute, srds.srds_resources_locator))
                    }
                    Some(ConfigSpecifier::ScopedRouteConfigurationsList(list)) => {
                        for s in list.scoped_route_configurations {
                            out.push((ResourceType::Route, s.route_configuration_name));
                        }
                    }
                    None => {}
                },
                _ => {}
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Clients

/// What the harness is waiting for: a new version of one resource.
#[derive(Debug)]
struct Probe {
    id: u64,
    ty: ResourceType,
    name: u64,
}

#[derive(Debug)]
enum Event {
    Initial {
        client: usize,
    },
    Received {
        client: usize,
        probe: u64,
        at: Instant,
    },
    Failed {
        client: usize,
        error: String,
    },
}

async fn next_event(
    rx: &mut mpsc::UnboundedReceiver<Event>,
    deadline: Instant,
) -> anyhow::Result<Event> {
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, rx.recv()).await {
        Ok(Some(Event::Failed { client, error })) => bail!("client {client} failed: {error}"),
        Ok(Some(e)) => Ok(e),
        Ok(None) => bail!("every client is gone"),
        Err(_) => bail!("timed out"),
    }
}

struct ClientShared {
    interner: Interner,
    /// Encoded bytes of every response, per client.
    bytes: Vec<AtomicU64>,
    expected_counts: [usize; ResourceType::COUNT],
    /// Bounds concurrent connection attempts.
    connect: tokio::sync::Semaphore,
}

/// One process-wide copy of each resource name the clients subscribe to.
#[derive(Default)]
struct Interner(Mutex<HashSet<Arc<str>>>);

impl Interner {
    fn get(&self, s: &str) -> Arc<str> {
        let Ok(mut set) = self.0.lock() else {
            return Arc::from(s);
        };
        if let Some(a) = set.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        set.insert(a.clone());
        a
    }
}

/// Index of a type in [`ResourceType::ORDERED`].
fn ti(ty: ResourceType) -> usize {
    ResourceType::ORDERED
        .iter()
        .position(|t| *t == ty)
        .unwrap_or(0)
}

/// What one client holds, and what it subscribes to.
#[derive(Debug, Default)]
struct ClientState {
    /// Per type: name hash → version hash.
    held: [HashMap<u64, u64>; ResourceType::COUNT],
    /// Cluster name hash → the EDS name it needs (None: not an EDS cluster).
    clusters: HashMap<u64, Option<Arc<str>>>,
    /// Listener name hash → what it references.
    listeners: HashMap<u64, Vec<(ResourceType, Arc<str>)>>,
    /// Scope name hash → its RouteConfiguration.
    scopes: HashMap<u64, Arc<str>>,
    /// Per type (EDS, SRDS, RDS): subscribed name → how many resources reference it.
    refs: [HashMap<Arc<str>, u32>; ResourceType::COUNT],
    /// Subscription changes not yet sent: name → subscribe (true) / unsubscribe (false).
    pending: [HashMap<Arc<str>, bool>; ResourceType::COUNT],
    /// SotW: `version_info` and nonce of the latest response, per type.
    sotw_last: [(String, String); ResourceType::COUNT],
    /// Types requested at least once.
    requested: [bool; ResourceType::COUNT],
    initial_reported: bool,
    probe_id: u64,
    probe_before: Option<u64>,
    probe_done: bool,
}

impl ClientState {
    fn incref(&mut self, ty: ResourceType, name: Arc<str>) {
        let i = ti(ty);
        let n = self.refs[i].entry(name.clone()).or_insert(0);
        *n += 1;
        if *n == 1 {
            if self.pending[i].get(&name) == Some(&false) {
                self.pending[i].remove(&name);
            } else {
                self.pending[i].insert(name, true);
            }
        }
    }

    fn decref(&mut self, ty: ResourceType, name: &Arc<str>) {
        let i = ti(ty);
        let Some(n) = self.refs[i].get_mut(name) else {
            return;
        };
        *n -= 1;
        if *n == 0 {
            self.refs[i].remove(name);
            if self.pending[i].get(name) == Some(&true) {
                self.pending[i].remove(name);
            } else {
                self.pending[i].insert(name.clone(), false);
            }
        }
    }

    fn subscribed(&self, ty: ResourceType, name: &str) -> bool {
        self.refs[ti(ty)].contains_key(name)
    }

    /// Stores a resource and what it references. `body` is the encoded resource.
    fn upsert(
        &mut self,
        ty: ResourceType,
        name: &str,
        version: u64,
        body: &[u8],
        interner: &Interner,
    ) {
        let h = name_hash(name.as_bytes());
        if self.held[ti(ty)].insert(h, version) == Some(version) {
            return;
        }
        match ty {
            ResourceType::Cluster => {
                let cluster = peek::Cluster::decode(body).unwrap_or_default();
                let eds = (cluster.r#type == peek::EDS).then(|| {
                    let service = cluster
                        .eds_cluster_config
                        .map(|c| c.service_name)
                        .filter(|s| !s.is_empty());
                    interner.get(service.as_deref().unwrap_or(name))
                });
                if let Some(e) = &eds {
                    self.incref(ResourceType::Endpoint, e.clone());
                }
                if let Some(Some(old)) = self.clusters.insert(h, eds) {
                    self.decref(ResourceType::Endpoint, &old);
                }
            }
            ResourceType::Listener => {
                let refs: Vec<(ResourceType, Arc<str>)> = Listener::decode(body)
                    .map(|l| listener_refs(&l))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(t, n)| (t, interner.get(&n)))
                    .collect();
                for (t, n) in &refs {
                    self.incref(*t, n.clone());
                }
                for (t, n) in self.listeners.insert(h, refs).unwrap_or_default() {
                    self.decref(t, &n);
                }
            }
            ResourceType::ScopedRoute => {
                if let Ok(scope) = peek::Scope::decode(body) {
                    let rc = interner.get(&scope.route_configuration_name);
                    self.incref(ResourceType::Route, rc.clone());
                    if let Some(old) = self.scopes.insert(h, rc) {
                        self.decref(ResourceType::Route, &old);
                    }
                }
            }
            ResourceType::Endpoint | ResourceType::Secret | ResourceType::Route => {}
        }
    }

    fn remove(&mut self, ty: ResourceType, h: u64) {
        if self.held[ti(ty)].remove(&h).is_none() {
            return;
        }
        match ty {
            ResourceType::Cluster => {
                if let Some(Some(e)) = self.clusters.remove(&h) {
                    self.decref(ResourceType::Endpoint, &e);
                }
            }
            ResourceType::Listener => {
                for (t, n) in self.listeners.remove(&h).unwrap_or_default() {
                    self.decref(t, &n);
                }
            }
            ResourceType::ScopedRoute => {
                if let Some(rc) = self.scopes.remove(&h) {
                    self.decref(ResourceType::Route, &rc);
                }
            }
            ResourceType::Endpoint | ResourceType::Secret | ResourceType::Route => {}
        }
    }

    /// Takes the pending subscription changes of `ty` (dropping what is unsubscribed, as
    /// Envoy does); returns (subscribe, unsubscribe).
    fn take_pending(&mut self, ty: ResourceType) -> (Vec<String>, Vec<String>) {
        let i = ti(ty);
        let mut sub = Vec::new();
        let mut unsub = Vec::new();
        for (name, add) in std::mem::take(&mut self.pending[i]) {
            if add {
                sub.push(name.to_string());
            } else {
                // Dropping a scope set (glob) is not modelled: the workloads never do it.
                self.remove(ty, name_hash(name.as_bytes()));
                unsub.push(name.to_string());
            }
        }
        (sub, unsub)
    }

    fn names(&self, ty: ResourceType) -> Vec<String> {
        self.refs[ti(ty)].keys().map(|n| n.to_string()).collect()
    }

    /// Before applying a response: note the probed resource's version when a new probe
    /// started.
    fn probe_before(&mut self, probe: Option<&Probe>) {
        if let Some(p) = probe {
            if p.id != self.probe_id {
                self.probe_id = p.id;
                self.probe_before = self.held[ti(p.ty)].get(&p.name).copied();
                self.probe_done = false;
            }
        }
    }

    /// After applying a response: whether the probed resource has a new version now.
    fn probe_after(&mut self, probe: Option<&Probe>) -> Option<u64> {
        let p = probe?;
        if self.probe_done || p.id != self.probe_id {
            return None;
        }
        let now = self.held[ti(p.ty)].get(&p.name).copied();
        if now.is_some() && now != self.probe_before {
            self.probe_done = true;
            return Some(p.id);
        }
        None
    }

    fn complete(&self, expected: &[usize; ResourceType::COUNT]) -> bool {
        self.held.iter().zip(expected).all(|(h, n)| h.len() == *n)
    }
}

/// Types whose subscriptions follow from others, in the order Envoy requests them.
const DEPENDENT: [ResourceType; 3] = [
    ResourceType::Endpoint,
    ResourceType::ScopedRoute,
    ResourceType::Route,
];

struct Client {
    idx: usize,
    protocol: Protocol,
    shared: Arc<ClientShared>,
    state: Arc<Mutex<ClientState>>,
    probe: watch::Receiver<Option<Arc<Probe>>>,
    events: mpsc::UnboundedSender<Event>,
}

impl Client {
    async fn run(self, addr: SocketAddr) -> anyhow::Result<()> {
        let channel = {
            let _permit = self.shared.connect.acquire().await?;
            tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
                .connect_timeout(Duration::from_secs(30))
                .tcp_nodelay(true)
                .initial_stream_window_size(Some(16 << 20))
                .initial_connection_window_size(Some(16 << 20))
                .connect()
                .await
                .context("connecting")?
        };
        let client = AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        match self.protocol {
            Protocol::Sotw => self.sotw(client).await,
            Protocol::Delta => self.delta(client).await,
        }
    }

    fn node(&self) -> Node {
        Node {
            id: format!("load-client-{}", self.idx),
            cluster: "knative-xds-load".to_string(),
            ..Default::default()
        }
    }

    fn lock(&self) -> anyhow::Result<std::sync::MutexGuard<'_, ClientState>> {
        self.state
            .lock()
            .map_err(|_| anyhow!("client state lock poisoned"))
    }

    /// Counts the bytes, reports probe and initial-sync progress around `apply`.
    fn process<R>(
        &self,
        st: &mut ClientState,
        encoded_len: usize,
        apply: impl FnOnce(&mut ClientState) -> R,
    ) -> R {
        self.shared.bytes[self.idx].fetch_add(encoded_len as u64, Ordering::Relaxed);
        let probe = self.probe.borrow().clone();
        st.probe_before(probe.as_deref());
        let out = apply(st);
        if let Some(id) = st.probe_after(probe.as_deref()) {
            let _ = self.events.send(Event::Received {
                client: self.idx,
                probe: id,
                at: Instant::now(),
            });
        }
        if !st.initial_reported && st.complete(&self.shared.expected_counts) {
            st.initial_reported = true;
            let _ = self.events.send(Event::Initial { client: self.idx });
        }
        out
    }

    async fn sotw(
        self,
        mut client: AggregatedDiscoveryServiceClient<tonic::transport::Channel>,
    ) -> anyhow::Result<()> {
        let (tx, rx) = mpsc::unbounded_channel::<DiscoveryRequest>();
        for (k, ty) in [ResourceType::Cluster, ResourceType::Listener]
            .into_iter()
            .enumerate()
        {
            tx.send(DiscoveryRequest {
                node: (k == 0).then(|| self.node()),
                type_url: ty.type_url().to_string(),
                ..Default::default()
            })?;
        }
        {
            let mut st = self.lock()?;
            st.requested[ti(ResourceType::Cluster)] = true;
            st.requested[ti(ResourceType::Listener)] = true;
        }
        let mut stream = client
            .stream_aggregated_resources(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
            .await
            .context("opening the SotW stream")?
            .into_inner();
        while let Some(resp) = stream.message().await.context("SotW stream")? {
            let requests = {
                let mut st = self.lock()?;
                self.process(&mut st, resp.encoded_len(), |st| self.sotw_apply(st, &resp))
            };
            for r in requests {
                tx.send(r)?;
            }
        }
        bail!("the server closed the SotW stream")
    }

    /// Applies a SotW response; returns the requests to send (subscription changes, then
    /// the ACK).
    fn sotw_apply(&self, st: &mut ClientState, resp: &DiscoveryResponse) -> Vec<DiscoveryRequest> {
        let Some(ty) = ResourceType::from_type_url(&resp.type_url) else {
            return Vec::new();
        };
        let interner = &self.shared.interner;
        let complete_state = matches!(
            ty,
            ResourceType::Cluster | ResourceType::Listener | ResourceType::ScopedRoute
        );
        let mut seen = HashSet::with_capacity(if complete_state {
            resp.resources.len()
        } else {
            0
        });
        for any in &resp.resources {
            let Some(name) = resource_name(any) else {
                continue;
            };
            let name = name.as_str();
            if !complete_state && !st.subscribed(ty, name) {
                continue; // not asked for (any more)
            }
            let h = name_hash(name.as_bytes());
            if complete_state {
                seen.insert(h);
            }
            st.upsert(ty, name, content_hash(&any.value), &any.value, interner);
        }
        if complete_state {
            let gone: Vec<u64> = st.held[ti(ty)]
                .keys()
                .filter(|h| !seen.contains(h))
                .copied()
                .collect();
            for h in gone {
                st.remove(ty, h);
            }
        }
        st.sotw_last[ti(ty)] = (resp.version_info.clone(), resp.nonce.clone());
        let mut out = Vec::new();
        for dep in DEPENDENT {
            let (sub, unsub) = st.take_pending(dep);
            let i = ti(dep);
            // The ACK below carries the responding type's own (current) name list.
            if (sub.is_empty() && unsub.is_empty()) || dep == ty {
                continue;
            }
            if !st.requested[i] && st.refs[i].is_empty() {
                continue;
            }
            st.requested[i] = true;
            let (version_info, response_nonce) = st.sotw_last[i].clone();
            out.push(DiscoveryRequest {
                version_info,
                response_nonce,
                resource_names: st.names(dep),
                type_url: dep.type_url().to_string(),
                ..Default::default()
            });
        }
        out.push(DiscoveryRequest {
            version_info: resp.version_info.clone(),
            response_nonce: resp.nonce.clone(),
            resource_names: if ty.is_wildcard() {
                Vec::new()
            } else {
                st.names(ty)
            },
            type_url: resp.type_url.clone(),
            ..Default::default()
        });
        out
    }

    async fn delta(
        self,
        mut client: AggregatedDiscoveryServiceClient<tonic::transport::Channel>,
    ) -> anyhow::Result<()> {
        let (tx, rx) = mpsc::unbounded_channel::<DeltaDiscoveryRequest>();
        for (k, ty) in [ResourceType::Cluster, ResourceType::Listener]
            .into_iter()
            .enumerate()
        {
            tx.send(DeltaDiscoveryRequest {
                node: (k == 0).then(|| self.node()),
                type_url: ty.type_url().to_string(),
                ..Default::default()
            })?;
        }
        let mut stream = client
            .delta_aggregated_resources(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
            .await
            .context("opening the delta stream")?
            .into_inner();
        while let Some(resp) = stream.message().await.context("delta stream")? {
            let requests = {
                let mut st = self.lock()?;
                self.process(&mut st, resp.encoded_len(), |st| {
                    self.delta_apply(st, &resp)
                })
            };
            for r in requests {
                tx.send(r)?;
            }
        }
        bail!("the server closed the delta stream")
    }

    fn delta_apply(
        &self,
        st: &mut ClientState,
        resp: &DeltaDiscoveryResponse,
    ) -> Vec<DeltaDiscoveryRequest> {
        let Some(ty) = ResourceType::from_type_url(&resp.type_url) else {
            return Vec::new();
        };
        let interner = &self.shared.interner;
        for r in &resp.resources {
            let body = r
                .resource
                .as_ref()
                .map(|a| a.value.as_slice())
                .unwrap_or(&[]);
            st.upsert(ty, &r.name, name_hash(r.version.as_bytes()), body, interner);
        }
        for n in &resp.removed_resources {
            st.remove(ty, name_hash(n.as_bytes()));
        }
        let mut out = Vec::new();
        for dep in DEPENDENT {
            let (sub, unsub) = st.take_pending(dep);
            if sub.is_empty() && unsub.is_empty() {
                continue;
            }
            out.push(DeltaDiscoveryRequest {
                type_url: dep.type_url().to_string(),
                resource_names_subscribe: sub,
                resource_names_unsubscribe: unsub,
                ..Default::default()
            });
        }
        out.push(DeltaDiscoveryRequest {
            type_url: resp.type_url.clone(),
            response_nonce: resp.nonce.clone(),
            ..Default::default()
        });
        out
    }
}

/// Aborts the client tasks when the harness is done (or fails).
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

/// What the clients read of a resource, decoded by prost into messages holding only those
/// fields (prost skips the others): 1,000 clients decoding every resource whole would cost
/// the harness more than the server it measures.
mod peek {
    /// Field 1 of every served type: its name.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Named {
        #[prost(string, tag = "1")]
        pub name: String,
    }

    /// A Cluster's discovery type (`EDS` is 3) and the EDS service it names.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Cluster {
        #[prost(int32, tag = "2")]
        pub r#type: i32,
        #[prost(message, optional, tag = "3")]
        pub eds_cluster_config: Option<EdsClusterConfig>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct EdsClusterConfig {
        #[prost(string, tag = "2")]
        pub service_name: String,
    }

    /// A scope's RouteConfiguration.
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Scope {
        #[prost(string, tag = "2")]
        pub route_configuration_name: String,
    }

    pub(super) const EDS: i32 = 3;
}

fn resource_name(any: &Any) -> Option<String> {
    peek::Named::decode(any.value.as_slice())
        .ok()
        .map(|n| n.name)
}

/// 64-bit hash of a name (SipHash with fixed keys: the same in every client).
fn name_hash(b: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write(b);
    h.finish()
}

/// Fast 64-bit hash of resource bytes (8 bytes at a time), for SotW versions.
fn content_hash(b: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h: u64 = b.len() as u64;
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(K);
    }
    for &x in chunks.remainder() {
        h = (h.rotate_left(5) ^ u64::from(x)).wrapping_mul(K);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

// ---------------------------------------------------------------------------------------
// Process and server measurements, files, HTTP.

fn ms(d: Duration) -> f64 {
    round3(d.as_secs_f64() * 1000.0)
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn free_address() -> anyhow::Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?)
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// utime + stime (seconds) from a `/proc/.../stat` line.
fn stat_cpu_seconds(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime 14, stime 15 (1-based).
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn process_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| stat_cpu_seconds(&s))
        .unwrap_or(0.0)
}

fn thread_cpu_seconds(tids: &[u32]) -> f64 {
    tids.iter()
        .filter_map(|t| std::fs::read_to_string(format!("/proc/self/task/{t}/stat")).ok())
        .filter_map(|s| stat_cpu_seconds(&s))
        .sum()
}

fn current_tid() -> Option<u32> {
    let s = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// A `/proc/self/status` value in kB, as MB.
fn proc_status_mb(key: &str) -> f64 {
    status_mb(
        &std::fs::read_to_string("/proc/self/status").unwrap_or_default(),
        key,
    )
}

/// A value in kB of a `/proc/.../status` text, as MB (0 when absent).
fn status_mb(status: &str, key: &str) -> f64 {
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|kb| round3(kb / 1024.0))
        .unwrap_or(0.0)
}

/// Writes a file the way editors and `kubectl`-driven tools do: a hidden temporary file
/// (ignored by the manifests reader) renamed over the target.
fn write_atomically(path: &Path, text: &str) -> anyhow::Result<()> {
    let file = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("bad path {}", path.display()))?;
    let tmp = path.with_file_name(format!(".{file}.tmp"));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

/// A folder below the system temp dir, removed on drop.
fn temp_dir() -> anyhow::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("knative-xds-load-")
        .tempdir()
        .context("creating a temporary folder")
}

/// A GET to the admin server: its status and body.
async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, Vec<u8>)> {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(reqwest::Client::new);
    let resp = client.get(format!("http://{addr}{path}")).send().await?;
    let status = resp.status().as_u16();
    Ok((status, resp.bytes().await?.to_vec()))
}

async fn wait_ready(
    admin: SocketAddr,
    server: &tokio::task::JoinHandle<anyhow::Result<()>>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if server.is_finished() {
            bail!("the server stopped before it was ready");
        }
        if let Ok(Ok((200, _))) =
            tokio::time::timeout(Duration::from_secs(30), http_get(admin, "/readyz")).await
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the server was not ready within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The server's `/debug/snapshot`: per type (in [`ResourceType::ORDERED`]), name → version.
async fn debug_snapshot(
    admin: SocketAddr,
) -> anyhow::Result<[BTreeMap<String, String>; ResourceType::COUNT]> {
    let (status, body) = http_get(admin, "/debug/snapshot").await?;
    anyhow::ensure!(status == 200, "/debug/snapshot answered {status}");
    let v: serde_json::Value = serde_json::from_slice(&body).context("/debug/snapshot JSON")?;
    Ok(std::array::from_fn(|i| {
        v.get(ResourceType::ORDERED[i].short_name())
            .and_then(|a| a.as_array())
            .map(|items| {
                items
                    .iter()
                    .filter_map(|r| {
                        Some((
                            r.get("name")?.as_str()?.to_string(),
                            r.get("version")?.as_str()?.to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peeked_names_and_references_match_prost() {
        let w = workload::generate(60, 5);
        let dir = temp_dir().unwrap();
        w.write_to(dir.path()).unwrap();
        for layout in [RouteLayout::Scoped, RouteLayout::PerListener] {
            let mut options = Options::default();
            options.listeners.layout = layout;
            let snap = render(dir.path(), &options).unwrap();
            for ty in ResourceType::ORDERED {
                for (name, r) in snap.resources(ty) {
                    let name = xds::names::wire(name);
                    assert_eq!(resource_name(&r.any()).as_deref(), Some(&*name), "{ty:?}");
                }
            }
            for r in snap.resources(ResourceType::Cluster).values() {
                let c = envoy_api::pb::envoy::config::cluster::v3::Cluster::decode(&*r.value())
                    .unwrap();
                let eds = matches!(
                    c.cluster_discovery_type,
                    Some(envoy_api::pb::envoy::config::cluster::v3::cluster::ClusterDiscoveryType::Type(3))
                );
                let peeked = peek::Cluster::decode(&*r.value()).unwrap();
                assert_eq!(peeked.r#type == peek::EDS, eds);
                let service = c.eds_cluster_config.map(|e| e.service_name);
                assert_eq!(peeked.eds_cluster_config.map(|e| e.service_name), service);
            }
            for r in snap.resources(ResourceType::ScopedRoute).values() {
                let s = ScopedRouteConfiguration::decode(&*r.value()).unwrap();
                assert_eq!(
                    peek::Scope::decode(&*r.value())
                        .unwrap()
                        .route_configuration_name,
                    s.route_configuration_name
                );
            }
            let resolver = Resolver::new(&snap, "cluster.local").unwrap();
            let (ns, name) = w.changed_service(0);
            let rc = resolver.watched(&ns, &name).unwrap();
            assert!(snap.get(ResourceType::Route, &rc).is_some(), "{rc}");
        }
    }

    #[test]
    fn malformed_protobuf_is_not_a_panic() {
        for b in [&[0x0a, 0xff][..], &[0xff; 12], &[0x0a, 0x05, b'a'], &[0x0b]] {
            assert!(peek::Named::decode(b).is_err());
            assert!(peek::Cluster::decode(b).is_err());
        }
        let named = peek::Named::decode(&[0x10, 0x01, 0x0a, 0x01, b'x'][..]).unwrap();
        assert_eq!(named.name, "x");
        let cluster = peek::Cluster::decode(&[0x10, 0x07, 0x0a, 0x01, b'x'][..]).unwrap();
        assert_eq!(cluster.r#type, 7);
    }

    #[test]
    fn percentiles_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let p = Percentiles::of(&v);
        assert_eq!((p.p50, p.p99, p.max), (50.0, 99.0, 100.0));
        assert_eq!(Percentiles::of(&[3.0]).p99, 3.0);
    }

    #[test]
    fn proc_stat_parsing() {
        let line = "123 (tokio (runtime)) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0";
        assert_eq!(stat_cpu_seconds(line), Some(300.0 / clock_ticks()));
    }
}
