//! State shared by the pipeline, the ADS streams and the admin endpoints.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use serde::Serialize;
use tokio::sync::watch;

use crate::sources::manifests::FileError;
use crate::translate::Rejection;
use crate::xds::connection::ConnectionStatus;
use crate::xds::{ResourceType, Snapshot};

/// What the last translation found wrong.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub rejections: Vec<Rejection>,
    pub file_errors: Vec<FileError>,
    pub config_errors: Vec<String>,
}

/// One connected Envoy.
#[derive(Debug, Clone, Serialize)]
pub struct ProxyInfo {
    pub node_id: String,
    pub node_cluster: String,
    pub address: Option<SocketAddr>,
    pub protocol: &'static str,
    pub connected_since: SystemTime,
    pub status: ConnectionStatus,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    pub responses: [AtomicU64; 4],
    pub nacks: [AtomicU64; 4],
    pub bytes_sent: AtomicU64,
    pub snapshots: AtomicU64,
    pub translations: AtomicU64,
}

impl Counters {
    pub fn index(ty: ResourceType) -> usize {
        ResourceType::ORDERED
            .iter()
            .position(|t| *t == ty)
            .unwrap_or(0)
    }
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

pub struct Shared {
    /// `None` until the first complete snapshot: streams wait for it, so an Envoy that
    /// connects early is never sent an empty config.
    pub snapshot: watch::Sender<Option<Arc<Snapshot>>>,
    pub report: RwLock<Arc<Report>>,
    pub proxies: Mutex<BTreeMap<u64, ProxyInfo>>,
    pub next_connection: AtomicU64,
    pub counters: Counters,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            snapshot: watch::channel(None).0,
            report: RwLock::new(Arc::new(Report::default())),
            proxies: Mutex::new(BTreeMap::new()),
            next_connection: AtomicU64::new(1),
            counters: Counters::default(),
        }
    }
}

impl Shared {
    pub fn current(&self) -> Option<Arc<Snapshot>> {
        self.snapshot.borrow().clone()
    }

    pub fn is_ready(&self) -> bool {
        self.snapshot.borrow().is_some()
    }

    pub fn report(&self) -> Arc<Report> {
        self.report.read().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn set_report(&self, report: Report) {
        if let Ok(mut r) = self.report.write() {
            *r = Arc::new(report);
        }
    }

    pub fn proxies(&self) -> Vec<ProxyInfo> {
        self.proxies
            .lock()
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default()
    }
}
