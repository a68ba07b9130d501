//! End-to-end harness: a copy of an example folder, the real `knative-xds serve`, the demo
//! upstreams and a real Envoy, all on free loopback ports.
#![allow(dead_code)]

pub(crate) mod kube;
pub(crate) mod tls;
#[allow(unused_imports)]
pub(crate) use demo_upstream::clients as upstream_clients;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The demo upstream, the binary of the workspace's `demo-upstream` crate, beside this
/// package's binary (`cargo test --workspace` builds both; a test run alone builds it here).
pub(crate) fn demo_upstream() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let dir = Path::new(env!("CARGO_BIN_EXE_knative-xds"))
            .parent()
            .expect("a binary's folder");
        let bin = dir.join(format!("demo-upstream{}", std::env::consts::EXE_SUFFIX));
        if !bin.exists() {
            let release = dir.ends_with("release").then_some("--release");
            let ok = Command::new(env!("CARGO"))
                .args(["build", "-q", "-p", "demo-upstream"])
                .args(release)
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok && bin.exists(),
                "build demo-upstream: cargo build -p demo-upstream"
            );
        }
        bin
    })
    .clone()
}

/// A port nobody listens on right now, below Linux's ephemeral range (32768+): a port the
/// kernel picked for us could be handed out again as the source port of some outgoing
/// connection before our process binds it. Each test process walks its own stretch.
pub(crate) fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20000;
    const SPAN: u32 = 12000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id().wrapping_mul(7919)) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..{}", LOW + SPAN)
}

/// The Envoy binary: `$ENVOY_BIN`, or the one `scripts/install-envoy.sh` put in `.venv`.
pub(crate) fn envoy_bin() -> PathBuf {
    if let Ok(p) = std::env::var("ENVOY_BIN") {
        return PathBuf::from(p);
    }
    let direct = Path::new(REPO).join(".venv/lib/python3.11/site-packages/envoy/_bin/envoy");
    if direct.exists() {
        return direct;
    }
    let shim = Path::new(REPO).join(".venv/bin/envoy");
    assert!(
        shim.exists(),
        "Envoy not found: run scripts/install-envoy.sh (or set ENVOY_BIN)"
    );
    shim
}

/// Copies `src` to `dst`, giving every demo upstream port (`port: 191xx`) a free port so
/// tests can run side by side.
pub(crate) fn copy_example(src: &Path, dst: &Path, ports: &mut BTreeMap<u16, u16>) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_example(&e.path(), &to, ports);
        } else {
            let text = std::fs::read_to_string(e.path()).unwrap();
            std::fs::write(to, remap_ports(&text, ports)).unwrap();
        }
    }
}

pub(crate) fn remap_ports(text: &str, ports: &mut BTreeMap<u16, u16>) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let trimmed = line.trim_start().trim_start_matches("- ");
        match trimmed
            .strip_prefix("port: ")
            .and_then(|p| p.trim().parse::<u16>().ok())
            .filter(|p| (19100..19200).contains(p))
        {
            Some(p) => {
                let new = *ports.entry(p).or_insert_with(free_port);
                out.push_str(&line.replace(&p.to_string(), &new.to_string()));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

struct Proc {
    name: &'static str,
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which gateway listener a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Listener {
    External,
    Internal,
    /// Another gateway's listener on this port (a second Envoy).
    Port(u16),
}

/// What the demo upstream saw, plus the status.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: serde_json::Value,
}

impl Reply {
    pub(crate) fn revision(&self) -> &str {
        self.body["revision"].as_str().unwrap_or("")
    }
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.body["headers"][name.to_ascii_lowercase()].as_str()
    }
    pub(crate) fn host(&self) -> &str {
        self.body["host"].as_str().unwrap_or("")
    }
}

pub(crate) struct Stack {
    pub dir: tempfile::TempDir,
    pub manifests: PathBuf,
    pub xds_port: u16,
    pub admin_port: u16,
    pub external_port: u16,
    pub internal_port: u16,
    pub envoy_admin_port: u16,
    pub upstream_ports: BTreeMap<u16, u16>,
    pub client: reqwest::Client,
    procs: Vec<Proc>,
    cp_args: Vec<String>,
    /// Kubernetes mode: the kubeconfig the control plane uses (no `--manifests`).
    kubeconfig: Option<PathBuf>,
    /// Another bootstrap of `envoy/` than the delta or SotW one, and text replacements in it.
    bootstrap: Option<(&'static str, Vec<(String, String)>)>,
}

impl Stack {
    /// Starts control plane, upstreams and Envoy for a copy of `examples/<example>`.
    pub(crate) async fn start(example: &str, delta: bool) -> Stack {
        Self::start_dir(&Path::new(REPO).join("examples").join(example), delta).await
    }

    /// [`Stack::start`] with the scoped route layout (SRDS) or the default one.
    pub(crate) async fn start_layout(example: &str, delta: bool, scoped: bool) -> Stack {
        let args: &[&str] = if scoped {
            &["--route-layout", "scoped"]
        } else {
            &["--route-layout", "per-listener"]
        };
        Self::start_dir_with(&Path::new(REPO).join("examples").join(example), delta, args).await
    }

    pub(crate) async fn start_dir(src: &Path, delta: bool) -> Stack {
        Self::start_dir_with(src, delta, &[]).await
    }

    /// Like [`Stack::start_dir`], with extra `knative-xds serve` flags.
    pub(crate) async fn start_dir_with(src: &Path, delta: bool, cp_args: &[&str]) -> Stack {
        Self::start_full(src, delta, cp_args, None).await
    }

    /// Kubernetes mode: the control plane watches the apiserver of `kubeconfig`; the demo
    /// upstreams still come from (a port-remapped copy of) `src`, which the caller applies.
    pub(crate) async fn start_kube(
        src: &Path,
        delta: bool,
        kubeconfig: &Path,
        cp_args: &[&str],
    ) -> Stack {
        Self::start_full(src, delta, cp_args, Some(kubeconfig.to_path_buf())).await
    }

    /// Manifests mode with Envoy on `envoy/<file>`, after `replace`ments in its text.
    pub(crate) async fn start_with_bootstrap(
        src: &Path,
        file: &'static str,
        replace: Vec<(String, String)>,
        cp_args: &[&str],
    ) -> Stack {
        Self::start_any(src, false, cp_args, None, Some((file, replace))).await
    }

    async fn start_full(
        src: &Path,
        delta: bool,
        cp_args: &[&str],
        kubeconfig: Option<PathBuf>,
    ) -> Stack {
        Self::start_any(src, delta, cp_args, kubeconfig, None).await
    }

    async fn start_any(
        src: &Path,
        delta: bool,
        cp_args: &[&str],
        kubeconfig: Option<PathBuf>,
        bootstrap: Option<(&'static str, Vec<(String, String)>)>,
    ) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let manifests = dir.path().join("manifests");
        let mut upstream_ports = BTreeMap::new();
        copy_example(src, &manifests, &mut upstream_ports);
        let mut s = Stack {
            manifests,
            xds_port: free_port(),
            admin_port: free_port(),
            external_port: free_port(),
            internal_port: free_port(),
            envoy_admin_port: free_port(),
            upstream_ports,
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(16)
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            procs: Vec::new(),
            cp_args: cp_args.iter().map(|a| a.to_string()).collect(),
            kubeconfig,
            bootstrap,
            dir,
        };
        s.start_upstreams();
        s.start_control_plane();
        s.wait_http_ok(
            &format!("http://127.0.0.1:{}/readyz", s.admin_port),
            Duration::from_secs(20),
        )
        .await;
        s.start_envoy(delta);
        s.wait_envoy_ready().await;
        s
    }

    fn log(&self, name: &str) -> std::fs::File {
        std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap()
    }

    pub(crate) fn read_log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    fn start_upstreams(&mut self) {
        let child = Command::new(demo_upstream())
            .arg("--manifests")
            .arg(&self.manifests)
            .stdout(self.log("upstream"))
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start demo-upstream");
        self.procs.push(Proc {
            name: "demo-upstream",
            child,
        });
    }

    pub(crate) fn start_control_plane(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_knative-xds"));
        cmd.arg("serve");
        match &self.kubeconfig {
            Some(k) => {
                cmd.env("KUBECONFIG", k);
            }
            None => {
                cmd.arg("--manifests").arg(&self.manifests);
            }
        }
        let child = cmd
            .args(["--xds-address", &format!("127.0.0.1:{}", self.xds_port)])
            .args(["--admin-address", &format!("127.0.0.1:{}", self.admin_port)])
            .args(["--external-port", &self.external_port.to_string()])
            .args(["--internal-port", &self.internal_port.to_string()])
            .args(["--listener-address", "127.0.0.1"])
            .args(&self.cp_args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(self.log("control-plane"))
            .spawn()
            .expect("start knative-xds");
        self.procs.push(Proc {
            name: "knative-xds",
            child,
        });
    }

    /// Kills the control plane (Envoy keeps its config) and returns once it is gone.
    pub(crate) fn stop_control_plane(&mut self) {
        self.procs.retain(|p| p.name != "knative-xds");
    }

    /// Starts the control plane again on the same ports and waits until it is ready.
    pub(crate) async fn restart_control_plane(&mut self) {
        self.stop_control_plane();
        self.start_control_plane();
        self.wait_http_ok(
            &format!("http://127.0.0.1:{}/readyz", self.admin_port),
            Duration::from_secs(20),
        )
        .await;
    }

    /// Starts a second Envoy on a static bootstrap (no control plane): `bootstrap` is JSON,
    /// given an admin listener on a free port here; returns once it is ready.
    pub(crate) async fn start_static_envoy(&mut self, mut bootstrap: serde_json::Value) {
        let admin = free_port();
        bootstrap["admin"] = serde_json::json!({"address": {"socketAddress": {"address": "127.0.0.1", "portValue": admin}}});
        let path = self.dir.path().join("static-bootstrap.json");
        std::fs::write(&path, bootstrap.to_string()).unwrap();
        self.spawn_envoy("static-envoy", &path);
        let url = format!("http://127.0.0.1:{admin}/ready");
        let start = Instant::now();
        loop {
            if let Ok(r) = self.client.get(&url).send().await {
                if r.text().await.unwrap_or_default().trim() == "LIVE" {
                    return;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "static Envoy not ready:\n{}",
                tail_lines(&self.read_log("static-envoy"), 40)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops Envoy (it stops ACKing anything).
    pub(crate) fn stop_envoy(&mut self) {
        self.procs.retain(|p| p.name != "envoy");
    }

    /// Starts Envoy (again) and waits until it has listeners.
    pub(crate) async fn restart_envoy(&mut self, delta: bool) {
        self.stop_envoy();
        self.start_envoy(delta);
        self.wait_envoy_ready().await;
    }

    fn start_envoy(&mut self, delta: bool) {
        let (file, replace) = match &self.bootstrap {
            Some((file, replace)) => (*file, replace.clone()),
            None if delta => ("bootstrap-delta.yaml", Vec::new()),
            None => ("bootstrap.yaml", Vec::new()),
        };
        let mut text = std::fs::read_to_string(Path::new(REPO).join("envoy").join(file)).unwrap();
        for (from, to) in replace {
            assert!(text.contains(&from), "{file}: no {from:?}");
            text = text.replace(&from, &to);
        }
        assert_eq!(
            text.matches("port_value: 18000").count(),
            1,
            "{file}: one xDS port"
        );
        assert_eq!(
            text.matches("port_value: 9901").count(),
            1,
            "{file}: one admin port"
        );
        let text = text
            .replace(
                "port_value: 18000",
                &format!("port_value: {}", self.xds_port),
            )
            .replace(
                "port_value: 9901",
                &format!("port_value: {}", self.envoy_admin_port),
            );
        let path = self.dir.path().join(file);
        std::fs::write(&path, text).unwrap();
        self.spawn_envoy("envoy", &path);
    }

    /// Envoy on `bootstrap`, one worker, logging to `<name>.log`.
    fn spawn_envoy(&mut self, name: &'static str, bootstrap: &Path) {
        let child = Command::new(envoy_bin())
            .arg("-c")
            .arg(bootstrap)
            .args(["--disable-hot-restart", "--concurrency", "1", "-l", "info"])
            .arg("--log-path")
            .arg(self.dir.path().join(format!("{name}.log")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start envoy");
        self.procs.push(Proc { name, child });
    }

    async fn wait_http_ok(&self, url: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            if let Ok(r) = self.client.get(url).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(
                start.elapsed() < timeout,
                "{url} not ready after {timeout:?}\ncontrol plane log:\n{}",
                self.read_log("control-plane")
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_envoy_ready(&self) {
        let url = format!("http://127.0.0.1:{}/ready", self.envoy_admin_port);
        let start = Instant::now();
        loop {
            let live = match self.client.get(&url).send().await {
                Ok(r) => r.text().await.unwrap_or_default().trim() == "LIVE",
                Err(_) => false,
            };
            let listeners = self.stat("listener_manager.lds.update_success").await;
            if live && listeners.is_some_and(|v| v != "0") {
                return;
            }
            assert!(
                // Generous: with the benchmarks' thousands of Routes the first config is large.
                start.elapsed() < Duration::from_secs(120),
                "Envoy not ready\ncontrol plane log:\n{}\nEnvoy log (tail):\n{}",
                self.read_log("control-plane"),
                tail_lines(&self.read_log("envoy"), 40)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// One Envoy stat by exact name.
    pub(crate) async fn stat(&self, name: &str) -> Option<String> {
        let url = format!(
            "http://127.0.0.1:{}/stats?filter=^{}$",
            self.envoy_admin_port,
            name.replace('.', "\\.")
        );
        let text = self.client.get(url).send().await.ok()?.text().await.ok()?;
        text.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.strip_prefix(": "))
                .map(|v| v.trim().trim_matches('"').to_string())
        })
    }

    /// The versions of every route resource Envoy applied (RDS, and scopes with the scoped
    /// layout, where both listeners share each object's RouteConfiguration and so its
    /// subscription and stats): changes whenever the routes change.
    pub(crate) async fn routes_version(&self) -> String {
        let url = format!(
            "http://127.0.0.1:{}/stats?filter=^http\\.(external|internal)\\.(scoped_)?rds\\..*version_text$",
            self.envoy_admin_port
        );
        let text = self.get_text(&url).await;
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort();
        lines.join("\n")
    }

    /// Envoy's stats matching `filter` (a regex) that are not zero.
    pub(crate) async fn nonzero_stats(&self, filter: &str) -> Vec<String> {
        let url = format!(
            "http://127.0.0.1:{}/stats?filter={filter}",
            self.envoy_admin_port
        );
        let text = self.get_text(&url).await;
        text.lines()
            .filter(|l| !l.trim_end().ends_with(": 0"))
            .map(str::to_string)
            .collect()
    }

    /// Every `*update_rejected` counter of Envoy that is not zero.
    pub(crate) async fn rejections(&self) -> Vec<String> {
        self.nonzero_stats("update_rejected").await
    }

    /// Asserts Envoy never rejected our config.
    pub(crate) async fn assert_no_rejections(&self) {
        let r = self.rejections().await;
        assert!(
            r.is_empty(),
            "Envoy rejected config: {r:?}\n{}",
            self.read_log("envoy")
        );
    }

    /// `knative-xds <args>` against this stack's control plane (`--server` added).
    pub(crate) fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_knative-xds"))
            .args(args)
            .args(["--server", &format!("127.0.0.1:{}", self.xds_port)])
            .output()
            .expect("run knative-xds");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `grpcurl -plaintext <args>` against the xDS port; stdout parsed as JSON when it is.
    pub(crate) fn grpcurl(&self, args: &[&str]) -> String {
        let bin = Path::new(REPO).join(".venv/bin/grpcurl");
        let mut cmd = Command::new(&bin);
        cmd.arg("-plaintext");
        for a in args {
            cmd.arg(a.replace("ADDR", &format!("127.0.0.1:{}", self.xds_port)));
        }
        let out = cmd.output().unwrap_or_else(|e| {
            panic!(
                "{}: {e} (scripts/install-envoy.sh installs it)",
                bin.display()
            )
        });
        assert!(
            out.status.success(),
            "grpcurl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// ~50 requests/s to `host` on the external listener until the flag is set; the task
    /// returns how many were sent and every non-200 outcome.
    pub(crate) fn background_traffic(
        &self,
        host: &str,
    ) -> (
        std::sync::Arc<std::sync::atomic::AtomicBool>,
        tokio::task::JoinHandle<(usize, Vec<String>)>,
    ) {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let (client, url, flag) = (
            self.client.clone(),
            self.url(Listener::External, "/"),
            stop.clone(),
        );
        let host = host.to_string();
        let task = tokio::spawn(async move {
            let (mut sent, mut failures) = (0, Vec::new());
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            while !flag.load(Ordering::Relaxed) {
                tick.tick().await;
                sent += 1;
                match client.get(&url).header("Host", &host).send().await {
                    Ok(r) if r.status() == 200 => {}
                    Ok(r) => failures.push(format!("status {}", r.status())),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            (sent, failures)
        });
        (stop, task)
    }

    /// A JSON admin endpoint of the control plane (`/debug/...`).
    pub(crate) async fn admin_json(&self, path: &str) -> serde_json::Value {
        let text = self
            .get_text(&format!("http://127.0.0.1:{}{path}", self.admin_port))
            .await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
    }

    /// The control plane's `/metrics` text.
    pub(crate) async fn metrics(&self) -> String {
        self.get_text(&format!("http://127.0.0.1:{}/metrics", self.admin_port))
            .await
    }

    /// The body of a GET of `url` (panics if it cannot be fetched).
    pub(crate) async fn get_text(&self, url: &str) -> String {
        let resp = self.client.get(url).send().await;
        let resp = resp.unwrap_or_else(|e| panic!("GET {url}: {e}"));
        resp.text()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    pub(crate) fn url(&self, listener: Listener, path: &str) -> String {
        let port = match listener {
            Listener::External => self.external_port,
            Listener::Internal => self.internal_port,
            Listener::Port(p) => p,
        };
        format!("http://127.0.0.1:{port}{path}")
    }

    pub(crate) async fn request(
        &self,
        listener: Listener,
        host: &str,
        headers: &[(&str, &str)],
    ) -> Result<Reply, String> {
        let mut req = self
            .client
            .get(self.url(listener, "/"))
            .header("Host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        Ok(Reply { status, body })
    }

    pub(crate) async fn get(&self, listener: Listener, host: &str) -> Reply {
        self.request(listener, host, &[]).await.expect("request")
    }

    pub(crate) async fn status(&self, listener: Listener, host: &str) -> u16 {
        self.get(listener, host).await.status
    }

    /// Sends `n` requests (8 at a time) and counts answers by revision; any non-200 is
    /// counted under `"<status>"`.
    pub(crate) async fn distribution(
        &self,
        listener: Listener,
        host: &str,
        headers: &[(&str, &str)],
        n: usize,
    ) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        let mut done = 0;
        while done < n {
            let batch = (n - done).min(8);
            let futs = (0..batch).map(|_| self.request(listener, host, headers));
            for r in futures::future::join_all(futs).await {
                let key = match r {
                    Ok(r) if r.status == 200 => r.revision().to_string(),
                    Ok(r) => format!("<{}>", r.status),
                    Err(e) => format!("<error {e}>"),
                };
                *counts.entry(key).or_default() += 1;
            }
            done += batch;
        }
        counts
    }

    /// Writes (or replaces) a manifest file the way an editor would: write then rename,
    /// so the control plane never reads half a file.
    pub(crate) fn write_manifest(&self, rel: &str, text: &str) {
        let path = self.manifests.join(rel);
        let tmp = self
            .manifests
            .join(format!(".{}.tmp", rel.replace('/', "_")));
        let mut ports = self.upstream_ports.clone();
        std::fs::write(&tmp, remap_ports(text, &mut ports)).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }

    /// Waits until `f` holds, polling; returns how long it took.
    pub(crate) async fn wait_until<F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: F,
    ) -> Duration
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let start = Instant::now();
        loop {
            if f().await {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < timeout,
                "timed out after {timeout:?} waiting for {what}\ncontrol plane log:\n{}",
                self.read_log("control-plane")
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The last `n` lines of `text`.
pub(crate) fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Share of `key` in `counts`, in percent.
pub(crate) fn percent(counts: &BTreeMap<String, usize>, key: &str) -> f64 {
    let total: usize = counts.values().sum();
    100.0 * *counts.get(key).unwrap_or(&0) as f64 / total.max(1) as f64
}
