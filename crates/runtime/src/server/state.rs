//! State shared by the pipeline, the gRPC services and the admin endpoints.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Instant, SystemTime};

use serde::Serialize;
use tokio::sync::watch;

use super::metrics::Metrics;
use crate::sources::manifests::FileError;
use model::ObjectRef;
use translate::{Ingress, Rejection};
use xds::stream::ConnectionStatus;
use xds::Snapshot;

/// What the last translation found wrong.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub rejections: Vec<Rejection>,
    /// Certificates that are not served as their objects ask.
    pub certificates: Vec<translate::tls::TlsProblem>,
    pub file_errors: Vec<FileError>,
    pub config_errors: Vec<String>,
}

/// Translation state of one Knative object (for `ListObjects`); kept for every object, so
/// the object itself is only the map's key, and the rest is 24 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectState {
    /// 0 when the object has none.
    pub generation: i64,
    pub state: State,
    /// Why it is rejected or stale (nearly every object has none).
    pub problems: Option<Arc<Vec<String>>>,
}

/// Where an object stands in translation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Its translation is served.
    Served,
    /// Its last good translation is served; the current one is rejected.
    Stale,
    /// Nothing of it is served.
    Rejected,
    /// Read by other objects' translations; serves nothing itself.
    Input,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Served => "served",
            State::Stale => "stale",
            State::Rejected => "rejected",
            State::Input => "input",
        }
    }
}

/// The first host of each rule and the clusters an Ingress routes to, sorted (for
/// `ListObjects`: derived when asked, not kept for every object).
pub fn hosts_and_clusters(ing: &translate::Ingress) -> (Vec<String>, Vec<String>) {
    let hosts = ing
        .rules
        .iter()
        .filter_map(|r| r.hosts.first().map(|h| h.to_string()))
        .collect();
    let mut clusters: Vec<String> = ing.backends().map(|b| b.cluster_name()).collect();
    clusters.sort();
    clusters.dedup();
    (hosts, clusters)
}

/// What the inspection API reads: the served Ingresses and every object's state.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub ingresses: imbl::OrdMap<ObjectRef, Arc<Ingress>>,
    pub objects: imbl::OrdMap<ObjectRef, ObjectState>,
}

/// One connected Envoy.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyInfo {
    pub node_id: String,
    pub node_cluster: String,
    pub address: Option<SocketAddr>,
    pub protocol: &'static str,
    /// Unix time in milliseconds.
    pub connected_since_ms: i64,
    /// Has ACKed everything of the current snapshot.
    pub in_sync: bool,
    /// Filled on demand by [`Shared::proxies_with_status`] (copying it is linear in the
    /// resources, so streams do not keep a copy current).
    pub status: ConnectionStatus,
    /// Asks the stream for its current status.
    #[serde(skip)]
    pub status_request:
        Option<tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<ConnectionStatus>>>,
    #[serde(skip)]
    pub node: envoy_api::pb::envoy::config::core::v3::Node,
}

/// Tracks when every proxy connected at publication has ACKed a snapshot.
#[derive(Debug, Default)]
struct Convergence {
    /// Identity of the snapshot being waited for (its `Arc` address).
    snapshot: usize,
    seen_at: Option<Instant>,
    waiting: BTreeSet<u64>,
}

pub struct Shared {
    /// `None` until the first complete snapshot: streams wait for it, so an Envoy that
    /// connects early is never sent an empty config.
    pub snapshot: watch::Sender<Option<Arc<Snapshot>>>,
    pub report: RwLock<Arc<Report>>,
    pub view: RwLock<Arc<View>>,
    pub proxies: Mutex<BTreeMap<u64, ProxyInfo>>,
    pub next_connection: AtomicU64,
    pub metrics: Metrics,
    convergence: Mutex<Convergence>,
    /// Per connection, the id of the newest snapshot it has applied completely.
    applied: Mutex<BTreeMap<u64, u64>>,
    /// KIngress mode: what the status writer reports, from the pipeline.
    pub kingress: RwLock<Arc<translate::status::IngressStates>>,
    /// Wakes the status writer: a translation or an Envoy's progress changed readiness.
    pub status_changed: tokio::sync::Notify,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            snapshot: watch::channel(None).0,
            report: RwLock::new(Arc::new(Report::default())),
            view: RwLock::new(Arc::new(View::default())),
            proxies: Mutex::new(BTreeMap::new()),
            next_connection: AtomicU64::new(1),
            metrics: Metrics::new(),
            convergence: Mutex::new(Convergence::default()),
            applied: Mutex::new(BTreeMap::new()),
            kingress: RwLock::new(Default::default()),
            status_changed: tokio::sync::Notify::new(),
        }
    }
}

pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Shared {
    pub fn current(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.borrow().clone()
    }

    pub fn is_ready(&self) -> bool {
        self.snapshot.borrow().is_some()
    }

    /// Publishes a snapshot; `seen_at` is when the change behind it was noticed, for the
    /// convergence histogram.
    pub fn publish(&self, snapshot: Snapshot, seen_at: Instant) {
        let snap = Arc::new(snapshot.published_after(self.current().as_deref()));
        if let Ok(mut c) = self.convergence.lock() {
            c.snapshot = Arc::as_ptr(&snap) as usize;
            c.seen_at = Some(seen_at);
            c.waiting = self
                .proxies
                .lock()
                .map(|p| p.keys().copied().collect())
                .unwrap_or_default();
            if c.waiting.is_empty() {
                c.seen_at = None;
            }
        }
        for ty in xds::ResourceType::ORDERED {
            self.metrics
                .resources
                .get_or_create(&super::metrics::Metrics::type_label(ty.short_name()))
                .set(snap.resources(ty).len() as i64);
        }
        self.snapshot.send_replace(Some(snap));
        self.metrics.snapshots.inc();
    }

    /// Whether this connection has been published in the proxy registry.
    pub fn has_proxy(&self, connection: u64) -> bool {
        self.proxies
            .lock()
            .map(|p| p.contains_key(&connection))
            .unwrap_or(false)
    }

    /// Whether convergence of the current snapshot still waits for this connection.
    pub fn awaits(&self, connection: u64) -> bool {
        self.convergence
            .lock()
            .map(|c| c.waiting.contains(&connection))
            .unwrap_or(false)
    }

    /// A connection finished applying `snapshot` (everything ACKed).
    pub fn proxy_synced(&self, connection: u64, snapshot: &Arc<Snapshot>) {
        let Ok(mut c) = self.convergence.lock() else {
            return;
        };
        if c.snapshot != Arc::as_ptr(snapshot) as usize || !c.waiting.remove(&connection) {
            return;
        }
        if c.waiting.is_empty() {
            if let Some(seen) = c.seen_at.take() {
                self.metrics
                    .convergence_seconds
                    .observe(seen.elapsed().as_secs_f64());
            }
        }
    }

    /// The newest snapshot id the connection has applied completely (0: none yet).
    pub fn applied_snapshot(&self, connection: u64) -> u64 {
        self.applied
            .lock()
            .map(|a| a.get(&connection).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    pub fn proxy_applied(&self, connection: u64, snapshot: u64) {
        if let Ok(mut a) = self.applied.lock() {
            a.insert(connection, snapshot);
        }
        self.status_changed.notify_one();
    }

    /// The oldest snapshot every connected Envoy has applied; `None` with no Envoy
    /// connected (nothing can be called ready then).
    pub fn applied_by_all(&self) -> Option<u64> {
        let proxies: Vec<u64> = self
            .proxies
            .lock()
            .map(|p| p.keys().copied().collect())
            .unwrap_or_default();
        let applied = self.applied.lock().ok()?;
        proxies
            .iter()
            .map(|id| applied.get(id).copied().unwrap_or(0))
            .min()
    }

    pub fn kingress_states(&self) -> Arc<translate::status::IngressStates> {
        self.kingress.read().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn set_kingress_states(&self, states: translate::status::IngressStates) {
        if let Ok(mut r) = self.kingress.write() {
            *r = Arc::new(states);
        }
        self.status_changed.notify_one();
    }

    /// A connection went away: nobody waits for it any more.
    pub fn proxy_gone(&self, connection: u64) {
        if let Ok(mut a) = self.applied.lock() {
            a.remove(&connection);
        }
        self.status_changed.notify_one();
        if let Ok(mut p) = self.proxies.lock() {
            p.remove(&connection);
            self.metrics.connected_proxies.set(p.len() as i64);
        }
        if let Ok(mut c) = self.convergence.lock() {
            if c.waiting.remove(&connection) && c.waiting.is_empty() {
                if let Some(seen) = c.seen_at.take() {
                    self.metrics
                        .convergence_seconds
                        .observe(seen.elapsed().as_secs_f64());
                }
            }
        }
    }

    pub fn report(&self) -> Arc<Report> {
        self.report.read().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn set_report(&self, report: Report) {
        if let Ok(mut r) = self.report.write() {
            *r = Arc::new(report);
        }
    }

    pub fn view(&self) -> Arc<View> {
        self.view.read().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn set_view(&self, view: View) {
        if let Ok(mut r) = self.view.write() {
            *r = Arc::new(view);
        }
    }

    /// Every connected Envoy with its full status, asked of each stream (at most 2 s
    /// for one that does not answer; it is then listed without).
    pub async fn proxies_with_status(&self) -> Vec<ProxyInfo> {
        let mut proxies = self.proxies();
        let requests: Vec<_> = proxies.iter().map(|p| p.status_request.clone()).collect();
        let asks = requests.into_iter().map(|tx| async move {
            let tx = tx?;
            let (reply, rx) = tokio::sync::oneshot::channel();
            tx.send(reply).await.ok()?;
            tokio::time::timeout(std::time::Duration::from_secs(2), rx)
                .await
                .ok()?
                .ok()
        });
        let statuses = futures::future::join_all(asks.collect::<Vec<_>>()).await;
        for (p, status) in proxies.iter_mut().zip(statuses) {
            if let Some(s) = status {
                p.status = s;
            }
        }
        proxies
    }

    pub fn proxies(&self) -> Vec<ProxyInfo> {
        self.proxies
            .lock()
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default()
    }
}
