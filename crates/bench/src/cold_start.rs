//! Cold start of the real binary: `knative-xds serve --manifests DIR` as its own process,
//! timed from the spawn until `/readyz` answers 200 (the first snapshot is served), with its
//! resident set, run several times in a row.
//!
//! The probe is one process polling every 2 ms over a plain TCP connection (little CPU
//! per poll). A shell loop of `curl` and `sleep` forks two processes per poll, which takes a
//! large share of a core: on a machine with few cores that is time taken from the server it
//! measures.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde::Serialize;

use super::{free_address, round3, status_mb, temp_dir};
use runtime::sources::manifests::collect_manifest_files;
use workload;
use xds::{ResourceType, Snapshot};

/// The `knative-xds` binary beside an example's (`target/<profile>/examples/<name>` →
/// `target/<profile>/knative-xds`), unless `given`.
pub fn server_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(s) = given {
        return Ok(s);
    }
    std::env::current_exe()?
        .parent()
        .and_then(|examples| examples.parent())
        .map(|profile| profile.join("knative-xds"))
        .ok_or_else(|| anyhow!("cannot tell where the server binary is: --server"))
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ColdStartConfig {
    /// The `knative-xds` binary.
    pub server: PathBuf,
    /// A manifests folder; `None`: a generated workload of `routes` Routes.
    pub dir: Option<PathBuf>,
    pub routes: usize,
    pub seed: u64,
    pub runs: usize,
    /// How long one start may take before the run fails.
    pub timeout: Duration,
    /// How long after `/readyz` the resident set is read (the steady figure).
    pub settle: Duration,
}

impl Default for ColdStartConfig {
    fn default() -> Self {
        ColdStartConfig {
            server: PathBuf::from("knative-xds"),
            dir: None,
            routes: 10_000,
            seed: 1,
            runs: 10,
            timeout: Duration::from_secs(120),
            settle: Duration::from_secs(1),
        }
    }
}

/// One start.
#[derive(Debug, Clone, Serialize)]
pub struct ColdStartRun {
    /// Spawn → `/readyz` 200.
    pub ready_ms: f64,
    /// The server's own figures from its `published snapshot` log line (since it started
    /// reading): reading and parsing, translating, encoding.
    pub read_ms: Option<f64>,
    pub translate_ms: Option<f64>,
    pub build_ms: Option<f64>,
    /// CPU (user + system) of the server at `/readyz`, in clock ticks' resolution.
    pub cpu_ms: f64,
    /// `VmHWM` and `VmRSS` (MiB) `settle` after `/readyz`.
    pub peak_rss_mib: f64,
    pub rss_mib: f64,
    /// Resources the server served then, by type (its `/debug/snapshot`).
    pub resources: std::collections::BTreeMap<&'static str, usize>,
    /// How they differed from a render of the folder (`knative-xds render`, in this
    /// process), if they did: names and versions, every type.
    pub difference_from_render: Option<String>,
}

/// Median, least and greatest of the runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    fn of(values: &[f64]) -> Spread {
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let Some((&min, &max)) = v.first().zip(v.last()) else {
            return Spread::default();
        };
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Spread {
            median: round3(median),
            min: round3(min),
            max: round3(max),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ColdStartReport {
    pub server: String,
    pub files: usize,
    pub megabytes: f64,
    pub ready_ms: Spread,
    pub under_1s: usize,
    /// Runs whose first snapshot was the folder's render, all of it.
    pub matching_render: usize,
    pub peak_rss_mib: Spread,
    pub rss_mib: Spread,
    pub runs: Vec<ColdStartRun>,
}

/// Runs `cfg.runs` cold starts one after the other.
pub fn run(cfg: &ColdStartConfig) -> anyhow::Result<ColdStartReport> {
    anyhow::ensure!(cfg.runs > 0, "runs must be > 0");
    anyhow::ensure!(
        cfg.server.is_file(),
        "no server binary at {} (build it first: cargo build --release)",
        cfg.server.display()
    );
    let generated;
    let dir = match &cfg.dir {
        Some(d) => d.as_path(),
        None => {
            generated = temp_dir()?;
            workload::generate(cfg.routes, cfg.seed).write_to(generated.path())?;
            generated.path()
        }
    };
    let (files, bytes) = folder_size(dir)?;
    // What the first snapshot must hold: all of the folder, not a part of it.
    let rendered = super::render(dir, &translate::Options::default())?;
    let mut runs = Vec::with_capacity(cfg.runs);
    for _ in 0..cfg.runs {
        runs.push(start(cfg, dir, &rendered)?);
    }
    let of = |f: fn(&ColdStartRun) -> f64| Spread::of(&runs.iter().map(f).collect::<Vec<_>>());
    Ok(ColdStartReport {
        server: cfg.server.display().to_string(),
        files,
        megabytes: round3(bytes as f64 / 1e6),
        ready_ms: of(|r| r.ready_ms),
        under_1s: runs.iter().filter(|r| r.ready_ms < 1000.0).count(),
        matching_render: runs
            .iter()
            .filter(|r| r.difference_from_render.is_none())
            .count(),
        peak_rss_mib: of(|r| r.peak_rss_mib),
        rss_mib: of(|r| r.rss_mib),
        runs,
    })
}

/// Kills the server however the run ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One cold start, tried again (twice at most) when the server could not bind its ports:
/// they were free when picked, but the server is another process, and until it binds them
/// a connection of any other program may take one as its local port.
fn start(cfg: &ColdStartConfig, dir: &Path, rendered: &Snapshot) -> anyhow::Result<ColdStartRun> {
    let mut tries = 1;
    loop {
        match start_once(cfg, dir, rendered) {
            Err(e) if tries < 3 && format!("{e:#}").contains("error: binding the") => tries += 1,
            done => return done,
        }
    }
}

fn start_once(
    cfg: &ColdStartConfig,
    dir: &Path,
    rendered: &Snapshot,
) -> anyhow::Result<ColdStartRun> {
    let (xds, admin) = (free_address()?, free_address()?);
    let log = temp_dir()?;
    let log_file = std::fs::File::create(log.path().join("server.log"))?;
    let mut command = Command::new(&cfg.server);
    command
        .arg("serve")
        .arg("--manifests")
        .arg(dir)
        .args(["--xds-address", &xds.to_string()])
        .args(["--admin-address", &admin.to_string()])
        .args(["--log-format", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file);
    // As `deploy/control-plane.yaml` runs it (the allocator's first arena is otherwise
    // committed before `main` can say otherwise); a value already set wins.
    if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none() {
        command.env("MIMALLOC_ARENA_EAGER_COMMIT", "0");
    }
    let started = Instant::now();
    let mut server = Server(
        command
            .spawn()
            .with_context(|| format!("starting {}", cfg.server.display()))?,
    );
    let pid = server.0.id();
    loop {
        if ready(admin) {
            break;
        }
        if let Some(status) = server.0.try_wait()? {
            bail!(
                "the server exited ({status}) before it was ready: {}",
                tail(&log.path().join("server.log"))
            );
        }
        if started.elapsed() > cfg.timeout {
            bail!("the server was not ready within {:?}", cfg.timeout);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let ready_ms = round3(started.elapsed().as_secs_f64() * 1000.0);
    let cpu_ms = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| super::stat_cpu_seconds(&s))
        .map_or(0.0, |s| round3(s * 1000.0));
    std::thread::sleep(cfg.settle);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let (peak_rss_mib, rss_mib) = (status_mb(&status, "VmHWM:"), status_mb(&status, "VmRSS:"));
    // After the resident set is read: a large `/debug/snapshot` takes memory to answer.
    let served = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(super::debug_snapshot(admin))?;
    let resources = ResourceType::ORDERED
        .iter()
        .zip(&served)
        .map(|(ty, m)| (ty.short_name(), m.len()))
        .collect();
    drop(server);
    let phases = published_phases(&std::fs::read_to_string(log.path().join("server.log"))?);
    let phase = |k: &str| phases.as_ref().and_then(|p| p.get(k)?.as_f64());
    Ok(ColdStartRun {
        ready_ms,
        read_ms: phase("read_ms"),
        translate_ms: phase("translate_ms"),
        build_ms: phase("build_ms"),
        cpu_ms,
        peak_rss_mib,
        rss_mib,
        resources,
        difference_from_render: super::difference_from_render(rendered, &served, false),
    })
}

/// Whether `/readyz` answers 200: one request on a fresh connection (the admin server
/// closes it after the response).
fn ready(admin: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&admin, Duration::from_secs(1)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// The fields of the first `published snapshot` line of a JSON log.
fn published_phases(log: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| {
            let fields = v.get("fields")?.as_object()?;
            (fields.get("message")?.as_str()? == "published snapshot").then(|| fields.clone())
        })
}

/// The last lines of the server's log, for an error.
fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}

/// The YAML files the server reads below `dir`, and their bytes.
fn folder_size(dir: &Path) -> anyhow::Result<(usize, u64)> {
    let mut files = Vec::new();
    collect_manifest_files(dir, &mut files, &mut Vec::new())
        .with_context(|| format!("reading {}", dir.display()))?;
    if files.is_empty() {
        return Err(anyhow!("no YAML files below {}", dir.display()));
    }
    let bytes = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    Ok((files.len(), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_median_min_max() {
        assert_eq!(Spread::of(&[]), Spread::default());
        let s = Spread::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        assert_eq!(Spread::of(&[4.0, 1.0, 2.0, 3.0]).median, 2.5);
    }

    #[test]
    fn the_published_line_gives_the_phases() {
        let log = concat!(
            "{\"level\":\"INFO\",\"fields\":{\"message\":\"reading\"}}\n",
            "not json\n",
            "{\"level\":\"INFO\",\"fields\":{\"message\":\"published snapshot\",\"read_ms\":12.5,\"build_ms\":3.0}}\n",
        );
        let p = published_phases(log).unwrap();
        assert_eq!(p.get("read_ms").and_then(|v| v.as_f64()), Some(12.5));
        assert!(published_phases("{\"fields\":{\"message\":\"x\"}}").is_none());
    }
}
