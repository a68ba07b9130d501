//! A real etcd + kube-apiserver (v1.20.2, built by `scripts/kube-env.sh`) on free loopback ports,
//! with the project's CRDs from `tests/crds/` installed, for the Kubernetes-source tests.
//!
//! Binaries come from `$KUBEBUILDER_ASSETS` (a folder with `etcd` and `kube-apiserver`, the envtest
//! convention) or from the folder `scripts/kube-env.sh` fills:
//! `${XDG_CACHE_HOME:-$HOME/.cache}/knative-xds/kube-1.20.2/`. `kubectl`, `curl` and `etcdctl` are
//! run as child processes. Every environment has its own temp folder (etcd data, certificates,
//! tokens, kubeconfigs, logs); dropping the `KubeEnv` kills both servers.
//!
//! What 1.20 does not have, see ../shared/docs/test-environment.md: no controllers run (no
//! garbage collection, namespaces stay `Terminating`, nobody writes Knative status), only
//! discovery.k8s.io/v1beta1 is built in (`KubeOptions::endpointslice_v1_crd` swaps it for a v1
//! CRD), and `watcher::Config::streaming_lists()` is refused.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::free_port;

const KUBE_VERSION: &str = "1.20.2";
const POLL: Duration = Duration::from_millis(50);
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The one CRD that is applied only on request (see `KubeOptions::endpointslice_v1_crd`).
const ENDPOINTSLICE_V1_CRD: &str = "endpointslices-v1.yaml";

/// User name of `KubeEnv::limited_token`: authenticated, in no group, so it may do only what a
/// test grants it with RBAC.
pub(crate) const LIMITED_USER: &str = "knative-xds-test";

#[derive(Clone, Copy, Debug)]
pub(crate) struct KubeOptions {
    /// `false` runs the apiserver with `--watch-cache=false`: watches and lists then read etcd
    /// directly, so `KubeEnv::etcd_compact` makes old resource versions answer 410 Gone.
    pub watch_cache: bool,
    /// Disables the built-in `discovery.k8s.io/v1beta1` and installs
    /// `tests/crds/endpointslices-v1.yaml`, so EndpointSlices are served as v1 (as on 1.21+).
    pub endpointslice_v1_crd: bool,
}

impl Default for KubeOptions {
    fn default() -> Self {
        KubeOptions {
            watch_cache: true,
            endpointslice_v1_crd: false,
        }
    }
}

pub(crate) struct KubeEnv {
    /// Kubeconfig of the admin user (group `system:masters`).
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:<port>`.
    pub server: String,
    /// Bearer token of the admin user.
    pub token: String,
    /// Bearer token of `LIMITED_USER` (no groups, no RBAC grants until a test adds some).
    pub limited_token: String,
    /// The apiserver's self-signed serving certificate (with its CA), written by `--cert-dir`.
    pub ca_cert: PathBuf,
    /// `http://127.0.0.1:<port>` of this env's etcd.
    pub etcd_endpoint: String,
    pub opts: KubeOptions,
    pub dir: tempfile::TempDir,
    assets: PathBuf,
    apiserver_args: Vec<String>,
    etcd: Option<Child>,
    apiserver: Option<Child>,
}

/// The folder holding `etcd` and `kube-apiserver`.
pub(crate) fn kube_assets() -> PathBuf {
    let ok = |d: &Path| d.join("etcd").exists() && d.join("kube-apiserver").exists();
    if let Some(d) = std::env::var_os("KUBEBUILDER_ASSETS").filter(|d| !d.is_empty()) {
        let d = PathBuf::from(d);
        if ok(&d) {
            return d;
        }
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    let d = cache
        .join("knative-xds")
        .join(format!("kube-{KUBE_VERSION}"));
    assert!(
        ok(&d),
        "kube-apiserver/etcd not found in $KUBEBUILDER_ASSETS nor in {}: run scripts/kube-env.sh \
         (it installs etcd and builds kube-apiserver {KUBE_VERSION} into that folder)",
        d.display()
    );
    d
}

/// A hard-to-guess token (no rand crate: std's randomly seeded hasher).
fn random_token() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut s = String::new();
    for i in 0..2u64 {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(i);
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        );
        h.write_u32(std::process::id());
        s.push_str(&format!("{:016x}", h.finish()));
    }
    s
}

fn tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn check(what: &str, out: Output) -> Output {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl KubeEnv {
    /// Starts etcd and kube-apiserver on free 127.0.0.1 ports, applies `tests/crds/*.yaml` and
    /// waits until the CRDs are established and their list endpoints answer.
    pub(crate) fn start(opts: KubeOptions) -> KubeEnv {
        let t0 = Instant::now();
        let assets = kube_assets();
        let dir = tempfile::Builder::new()
            .prefix("knative-xds-kube.")
            .tempdir()
            .expect("temp dir");
        let d = dir.path().to_path_buf();

        // Service-account signing key pair (EC: generated at once, where RSA takes a while).
        let sa_key = d.join("sa.key");
        let sa_pub = d.join("sa.pub");
        check(
            "openssl ecparam -genkey",
            run(Command::new("openssl")
                .args([
                    "ecparam",
                    "-name",
                    "prime256v1",
                    "-genkey",
                    "-noout",
                    "-out",
                ])
                .arg(&sa_key)),
        );
        check(
            "openssl ec -pubout",
            run(Command::new("openssl")
                .arg("ec")
                .arg("-in")
                .arg(&sa_key)
                .arg("-pubout")
                .arg("-out")
                .arg(&sa_pub)),
        );

        // Static tokens: admin (system:masters) and a user in no group.
        let token = random_token();
        let limited_token = random_token();
        let tokens = d.join("tokens.csv");
        std::fs::write(
            &tokens,
            format!(
                "{token},admin,admin-uid,\"system:masters\"\n\
                 {limited_token},{LIMITED_USER},{LIMITED_USER}-uid\n"
            ),
        )
        .unwrap();

        let cert_dir = d.join("certs");
        let mut env = KubeEnv {
            kubeconfig: d.join("kubeconfig"),
            server: String::new(),
            token,
            limited_token,
            ca_cert: cert_dir.join("apiserver.crt"),
            etcd_endpoint: String::new(),
            opts,
            dir,
            assets,
            apiserver_args: Vec::new(),
            etcd: None,
            apiserver: None,
        };

        env.start_etcd();

        let port = free_port();
        env.server = format!("https://127.0.0.1:{port}");
        let mut args: Vec<String> = vec![
            format!("--etcd-servers={}", env.etcd_endpoint),
            format!("--secure-port={port}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--cert-dir={}", cert_dir.display()),
            format!("--token-auth-file={}", tokens.display()),
            "--authorization-mode=RBAC".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", sa_pub.display()),
            format!("--service-account-signing-key-file={}", sa_key.display()),
            "--service-cluster-ip-range=10.96.0.0/24".into(),
            "--disable-admission-plugins=ServiceAccount".into(),
        ];
        if !opts.watch_cache {
            args.push("--watch-cache=false".into());
        }
        if opts.endpointslice_v1_crd {
            args.push("--runtime-config=discovery.k8s.io/v1beta1=false".into());
        }
        env.apiserver_args = args;
        let kubeconfig = env.kubeconfig_for(&env.token.clone());
        std::fs::rename(kubeconfig, &env.kubeconfig).unwrap();

        env.start_apiserver();
        let t_api = t0.elapsed();
        env.install_crds();
        eprintln!(
            "kube env: apiserver {} ready in {:.2?}, CRDs in {:.2?} more (dir {})",
            env.server,
            t_api,
            t0.elapsed() - t_api,
            env.dir.path().display()
        );
        env
    }

    fn etcdctl_bin(&self) -> PathBuf {
        let local = self.assets.join("etcdctl");
        if local.exists() {
            local
        } else {
            PathBuf::from("etcdctl")
        }
    }

    fn start_etcd(&mut self) {
        let d = self.dir.path().to_path_buf();
        // A free port can be taken by someone else before etcd binds it: retry with new ones.
        for attempt in 1..=3 {
            let (client, peer) = (free_port(), free_port());
            let c = format!("http://127.0.0.1:{client}");
            let p = format!("http://127.0.0.1:{peer}");
            let log = d.join("etcd.log");
            let _ = std::fs::remove_dir_all(d.join("etcd"));
            let child = Command::new(self.assets.join("etcd"))
                .arg("--name=test")
                .arg(format!("--data-dir={}", d.join("etcd").display()))
                .arg(format!("--listen-client-urls={c}"))
                .arg(format!("--advertise-client-urls={c}"))
                .arg(format!("--listen-peer-urls={p}"))
                .arg(format!("--initial-advertise-peer-urls={p}"))
                .arg(format!("--initial-cluster=test={p}"))
                // One member: a short election timeout makes it leader sooner than the default.
                .arg("--heartbeat-interval=20")
                .arg("--election-timeout=100")
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&log).unwrap())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot start {}: {e}", self.assets.join("etcd").display())
                });
            self.etcd = Some(child);
            self.etcd_endpoint = c.clone();
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if let Some(status) = self.etcd.as_mut().unwrap().try_wait().unwrap() {
                    self.etcd = None;
                    if attempt < 3 {
                        break;
                    }
                    panic!("etcd exited ({status}):\n{}", tail(&log, 30));
                }
                let out = run(Command::new("curl")
                    .args(["-s", "--max-time", "2"])
                    .arg(format!("{c}/health")));
                if String::from_utf8_lossy(&out.stdout).contains("\"health\":\"true\"") {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "etcd not healthy after {START_TIMEOUT:?}:\n{}",
                    tail(&log, 30)
                );
                std::thread::sleep(POLL);
            }
        }
    }

    /// Kills only the apiserver (SIGKILL; etcd keeps running, so does all data).
    pub(crate) fn stop_apiserver(&mut self) {
        if let Some(mut c) = self.apiserver.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the apiserver again with the same flags and port, and waits for `/readyz`.
    pub(crate) fn start_apiserver(&mut self) {
        assert!(self.apiserver.is_none(), "apiserver already running");
        let log = self.dir.path().join("apiserver.log");
        // Append: a restart keeps the earlier run's log.
        let file = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap()
        };
        let bin = self.assets.join("kube-apiserver");
        let child = Command::new(&bin)
            .args(&self.apiserver_args)
            .stdin(Stdio::null())
            .stdout(file())
            .stderr(file())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        self.apiserver = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.apiserver.as_mut().unwrap().try_wait().unwrap() {
                self.apiserver = None;
                panic!("kube-apiserver exited ({status}):\n{}", tail(&log, 40));
            }
            let (code, body) = self.get("/readyz");
            if code == 200 && body.trim() == "ok" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "kube-apiserver not ready after {START_TIMEOUT:?} (last {code}: {body}):\n{}",
                tail(&log, 40)
            );
            std::thread::sleep(POLL);
        }
    }

    /// Whether the apiserver process is running.
    pub(crate) fn apiserver_running(&self) -> bool {
        self.apiserver.is_some()
    }

    /// `GET <server><path>` as admin: (HTTP status, body); status 0 when nothing answered.
    pub(crate) fn get(&self, path: &str) -> (u16, String) {
        self.get_as(&self.token, path)
    }

    /// `GET <server><path>` with a bearer token: (HTTP status, body); 0 when nothing answered.
    pub(crate) fn get_as(&self, token: &str, path: &str) -> (u16, String) {
        let out = run(Command::new("curl")
            .args(["-sk", "--max-time", "5", "-w", "\n%{http_code}", "-H"])
            .arg(format!("Authorization: Bearer {token}"))
            .arg(format!("{}{path}", self.server)));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        match text.rsplit_once('\n') {
            Some((body, code)) => (code.trim().parse().unwrap_or(0), body.to_string()),
            None => (text.trim().parse().unwrap_or(0), String::new()),
        }
    }

    /// Runs `kubectl` with this env's admin kubeconfig (and a private discovery cache).
    pub(crate) fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with(&self.kubeconfig, args, None)
    }

    /// `kubectl` with another kubeconfig (e.g. `kubeconfig_for(&env.limited_token)`), optional
    /// stdin.
    pub(crate) fn kubectl_with(
        &self,
        kubeconfig: &Path,
        args: &[&str],
        stdin: Option<&str>,
    ) -> Output {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            // kubectl caches discovery per host:port for hours; ports are reused by later envs
            // with other API sets.
            .arg("--cache-dir")
            .arg(self.dir.path().join("kubectl-cache"))
            .args(args)
            .env_remove("KUBECONFIG");
        let Some(input) = stdin else {
            return run(&mut cmd);
        };
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl");
        {
            use std::io::Write;
            let mut w = child.stdin.take().unwrap();
            w.write_all(input.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    /// `kubectl apply -f -`; panics with kubectl's output on failure.
    pub(crate) fn apply_yaml(&self, yaml: &str) {
        let out = self.kubectl_with(&self.kubeconfig, &["apply", "-f", "-"], Some(yaml));
        check(&format!("kubectl apply of\n{yaml}\n"), out);
    }

    /// `kubectl <args>`, panicking with its output when it fails; returns stdout.
    pub(crate) fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = check(&format!("kubectl {}", args.join(" ")), self.kubectl(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes a kubeconfig for `token` into the env's folder and returns its path. The server
    /// certificate is verified against `ca_cert`.
    /// Applies deploy/rbac.yaml and grants its `knative-xds` ClusterRole (everything but
    /// Secrets) to `LIMITED_USER`; returns a kubeconfig as that user.
    pub(crate) fn as_deploy_role(&self) -> PathBuf {
        let rbac = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/rbac.yaml");
        let _ = self.kubectl(&["create", "namespace", "knative-xds"]);
        self.kubectl_ok(&["apply", "-f", rbac.to_str().unwrap()]);
        self.kubectl_ok(&[
            "create",
            "clusterrolebinding",
            "knative-xds-test",
            "--clusterrole=knative-xds",
            &format!("--user={LIMITED_USER}"),
        ]);
        self.kubeconfig_for(&self.limited_token)
    }

    pub(crate) fn kubeconfig_for(&self, token: &str) -> PathBuf {
        let user = if token == self.token {
            "admin"
        } else if token == self.limited_token {
            LIMITED_USER
        } else {
            "user"
        };
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {
                "server": self.server,
                "certificate-authority": self.ca_cert,
            }}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": user, "namespace": "default"}}],
            "current-context": "test",
        });
        let mut n = 0;
        let path = loop {
            let p = self.dir.path().join(format!("kubeconfig-{user}-{n}"));
            if !p.exists() {
                break p;
            }
            n += 1;
        };
        std::fs::write(&path, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        path
    }

    /// The current etcd revision.
    pub(crate) fn etcd_revision(&self) -> i64 {
        let out = check(
            "etcdctl endpoint status",
            run(Command::new(self.etcdctl_bin())
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={}", self.etcd_endpoint))
                .args(["endpoint", "status", "-w", "json"])),
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("etcdctl json");
        v[0]["Status"]["header"]["revision"]
            .as_i64()
            .unwrap_or_else(|| panic!("no revision in {v}"))
    }

    /// `etcdctl compact <current revision>`: every older resourceVersion is gone (410 on watch
    /// from it when the apiserver runs with `watch_cache: false`). Returns that revision.
    pub(crate) fn etcd_compact(&self) -> i64 {
        let rev = self.etcd_revision();
        check(
            "etcdctl compact",
            run(Command::new(self.etcdctl_bin())
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={}", self.etcd_endpoint))
                .args(["compact", &rev.to_string(), "--physical"])),
        );
        rev
    }

    /// Applies `tests/crds/*.yaml` (the EndpointSlice v1 CRD only when asked), waits for
    /// `Established`, then until each CRD's list endpoint answers 200.
    fn install_crds(&self) {
        let crds = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/crds");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&crds)
            .unwrap_or_else(|e| panic!("{}: {e}", crds.display()))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .filter(|p| {
                self.opts.endpointslice_v1_crd
                    || p.file_name().is_none_or(|n| n != ENDPOINTSLICE_V1_CRD)
            })
            .collect();
        files.sort();
        let mut args: Vec<String> = vec!["apply".into(), "-o".into(), "name".into()];
        for f in &files {
            args.push("-f".into());
            args.push(f.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let names = self.kubectl_ok(&args);
        let names: Vec<&str> = names.split_whitespace().collect();

        // Established (what `kubectl wait --for condition=established` checks; one request per
        // poll instead of a kubectl run, which alone is slow to start).
        let deadline = Instant::now() + START_TIMEOUT;
        let crd_names: Vec<&str> = names
            .iter()
            .map(|n| n.rsplit('/').next().unwrap())
            .collect();
        let items = loop {
            let (code, body) = self.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions");
            let items: Vec<serde_json::Value> = if code == 200 {
                let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                v["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|c| {
                        crd_names.contains(&c["metadata"]["name"].as_str().unwrap_or(""))
                            && c["status"]["conditions"].as_array().is_some_and(|cs| {
                                cs.iter()
                                    .any(|c| c["type"] == "Established" && c["status"] == "True")
                            })
                    })
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            };
            if items.len() == crd_names.len() {
                break items;
            }
            assert!(
                Instant::now() < deadline,
                "CRDs not established after {START_TIMEOUT:?}: {} of {:?} ({code})",
                items.len(),
                crd_names
            );
            std::thread::sleep(POLL);
        };

        // "Established" can precede the list endpoint being served.
        let mut paths = Vec::new();
        for crd in items {
            let group = crd["spec"]["group"].as_str().unwrap();
            let plural = crd["spec"]["names"]["plural"].as_str().unwrap();
            for ver in crd["spec"]["versions"].as_array().unwrap() {
                if ver["served"].as_bool() == Some(true) {
                    let ver = ver["name"].as_str().unwrap();
                    paths.push(format!("/apis/{group}/{ver}/{plural}?limit=1"));
                }
            }
        }
        for p in paths {
            loop {
                let (code, body) = self.get(&p);
                if code == 200 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "CRD list endpoint {p} not served: {code} {body}"
                );
                std::thread::sleep(POLL);
            }
        }
    }
}

impl Drop for KubeEnv {
    fn drop(&mut self) {
        self.stop_apiserver();
        if let Some(mut c) = self.etcd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::env::var_os("KUBE_ENV_KEEP").is_some() {
            let d = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            eprintln!("kube env: kept {}", d.keep().display());
        }
    }
}
