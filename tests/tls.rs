//! HTTPS end to end: certificates from `kubernetes.io/tls` Secrets in a manifests folder,
//! served by a real Envoy over SDS, checked by a TLS client that trusts only the test CA and
//! reports which certificate the server presented (as `openssl s_client` would).

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::tls::{https_get, secret_yaml, Leaf, TestCa};
use common::{free_port, Listener, Stack, REPO};

const HELLO: &str = "hello.default.example.com";
const APP: &str = "app.example.org";

/// The folder's `certs.yaml`: the wildcard default certificate (its certificate's and its
/// key's leaf) and app.example.org's, as Secrets.
fn certs_yaml(wildcard: (&Leaf, &Leaf), app: (&Leaf, &Leaf)) -> String {
    format!(
        "{}---\n{}",
        secret_yaml(
            "knative-serving",
            "wildcard",
            &wildcard.0.cert_pem,
            &wildcard.1.key_pem
        ),
        secret_yaml("default", "app-tls", &app.0.cert_pem, &app.1.key_pem)
    )
}

/// The domain-mapping example with a wildcard default certificate for `*.default.example.com`
/// and the DomainMapping's own certificate for app.example.org.
struct TlsStack {
    s: Stack,
    https: u16,
    ca: TestCa,
    wildcard: Leaf,
    app: Leaf,
}

async fn start(delta: bool, extra: &[&str]) -> TlsStack {
    start_with_files(delta, extra, &[]).await
}

/// [`start`] with more files in the folder.
async fn start_with_files(delta: bool, extra: &[&str], files: &[(&str, &str)]) -> TlsStack {
    let ca = TestCa::new();
    let wildcard = ca.leaf(&["*.default.example.com"], 30);
    let app = ca.leaf(&[APP], 30);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("example");
    std::fs::create_dir_all(&src).unwrap();
    for e in std::fs::read_dir(std::path::Path::new(REPO).join("examples/domain-mapping")).unwrap()
    {
        let p = e.unwrap().path();
        std::fs::copy(&p, src.join(p.file_name().unwrap())).unwrap();
    }
    // The DomainMapping names its own certificate.
    let dm = std::fs::read_to_string(src.join("domain-mapping.yaml")).unwrap();
    let dm = dm.replace(
        "    name: hello\n",
        "    name: hello\n  tls:\n    secretName: app-tls\n",
    );
    assert!(dm.contains("secretName: app-tls"));
    std::fs::write(src.join("domain-mapping.yaml"), dm).unwrap();
    for (name, text) in files {
        std::fs::write(src.join(name), text).unwrap();
    }
    std::fs::write(
        src.join("certs.yaml"),
        certs_yaml((&wildcard, &wildcard), (&app, &app)),
    )
    .unwrap();
    let https = free_port();
    let port = https.to_string();
    let mut args = vec![
        "--external-https-port",
        &port,
        "--default-tls-secret",
        "knative-serving/wildcard",
    ];
    args.extend_from_slice(extra);
    let s = Stack::start_dir_with(&src, delta, &args).await;
    let t = TlsStack {
        s,
        https,
        ca,
        wildcard,
        app,
    };
    t.wait_https(HELLO, &t.wildcard.der).await;
    t
}

impl TlsStack {
    /// Waits until a handshake for `host` presents `cert`.
    async fn wait_https(&self, host: &str, cert: &[u8]) {
        let start = Instant::now();
        loop {
            let r = https_get(self.https, host, &self.ca.pem()).await;
            if r.as_ref().is_ok_and(|r| r.peer == cert && r.status == 200) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "{host}: not served with the expected certificate: {r:?}\ncontrol plane:\n{}\nEnvoy:\n{}",
                self.s.read_log("control-plane"),
                common::tail_lines(&self.s.read_log("envoy"), 30)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn sni_default_and_own_certificate(delta: bool) {
    let t = start(delta, &[]).await;
    let ca = t.ca.pem();

    // The Route's host: the default wildcard certificate, the revision answers, h2 offered.
    let r = https_get(t.https, HELLO, &ca).await.unwrap();
    assert_eq!((r.status, r.revision()), (200, "hello-00001"), "{r:?}");
    assert_eq!(
        r.peer, t.wildcard.der,
        "{HELLO} gets the wildcard certificate"
    );
    assert_eq!(r.alpn.as_deref(), Some(&b"http/1.1"[..]));

    // The DomainMapping's host: its own certificate, chosen by SNI.
    let r = https_get(t.https, APP, &ca).await.unwrap();
    assert_eq!((r.status, r.revision()), (200, "hello-00001"), "{r:?}");
    assert_eq!(r.peer, t.app.der, "{APP} gets its own certificate");

    // Plain HTTP still serves both (http-protocol Enabled).
    assert_eq!(
        t.s.get(Listener::External, HELLO).await.revision(),
        "hello-00001"
    );
    assert_eq!(
        t.s.get(Listener::External, APP).await.revision(),
        "hello-00001"
    );

    // A host no one serves: handshake with the default certificate, then 404.
    let r = https_get(t.https, "nobody.default.example.com", &ca)
        .await
        .unwrap();
    assert_eq!(r.status, 404, "{r:?}");

    // A cluster-local host is not reachable through the external HTTPS listener.
    let r = https_get(t.https, "hello.default.svc.cluster.local", &ca).await;
    assert!(
        r.is_err(),
        "no certificate names it, so the handshake fails: {r:?}"
    );

    // The expiry of each certificate served, for alerts.
    let metrics = t.s.metrics().await;
    for (secret, leaf) in [
        ("default/app-tls", &t.app),
        ("knative-serving/wildcard", &t.wildcard),
    ] {
        let line = format!(
            "knative_xds_certificate_expiry_timestamp_seconds{{secret=\"{secret}\"}} {}",
            leaf.not_after
        );
        assert!(metrics.contains(&line), "{line} not in:\n{metrics}");
    }
    assert!(
        metrics.contains("knative_xds_certificate_problems 0"),
        "{metrics}"
    );

    t.s.assert_no_rejections().await;
    let sds = t.s.nonzero_stats("^sds\\..*update_success$").await;
    assert_eq!(sds.len(), 2, "both secrets came over SDS: {sds:?}");
    assert!(
        t.s.nonzero_stats("init_fetch_timeout").await.is_empty(),
        "no secret waited for its fetch timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn https_by_sni_sotw() {
    sni_default_and_own_certificate(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn https_by_sni_delta() {
    sni_default_and_own_certificate(true).await;
}

/// A rotation under ~50 HTTPS requests a second, each on a new connection: new handshakes
/// see the new certificate within 2 s, and no request fails. Then a rotation to a key that
/// does not match keeps the last good certificate; a bad DomainMapping Secret harms only its
/// own host, and `validate` names it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_under_traffic_and_bad_secrets() {
    let t = Arc::new(start(true, &[]).await);
    let ca = t.ca.pem();
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = Arc::new(Mutex::new(Vec::<(Instant, Vec<u8>)>::new()));
    let sent = Arc::new(AtomicUsize::new(0));
    let traffic = {
        let (t, ca, stop, failures, seen, sent) = (
            t.clone(),
            ca.clone(),
            stop.clone(),
            failures.clone(),
            seen.clone(),
            sent.clone(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                sent.fetch_add(1, Ordering::Relaxed);
                match https_get(t.https, APP, &ca).await {
                    Ok(r) if r.status == 200 && r.revision() == "hello-00001" => {
                        seen.lock().unwrap().push((Instant::now(), r.peer));
                    }
                    Ok(r) => failures
                        .lock()
                        .unwrap()
                        .push(format!("{} {:?}", r.status, r.body)),
                    Err(e) => failures.lock().unwrap().push(e),
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Rotate app-tls to a new certificate.
    let next = t.ca.leaf(&[APP], 30);
    let rotated_at = Instant::now();
    t.s.write_manifest(
        "certs.yaml",
        &certs_yaml((&t.wildcard, &t.wildcard), (&next, &next)),
    );
    let switched = loop {
        let first_new = seen
            .lock()
            .unwrap()
            .iter()
            .find(|(_, p)| *p == next.der)
            .map(|(at, _)| *at);
        if let Some(at) = first_new {
            break at.duration_since(rotated_at);
        }
        assert!(
            rotated_at.elapsed() < Duration::from_secs(10),
            "rotation never seen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    {
        // Once the new one is seen, no handshake gets the old one again.
        let seen = seen.lock().unwrap();
        let first = seen.iter().position(|(_, p)| *p == next.der).unwrap();
        assert!(
            seen[first..].iter().all(|(_, p)| *p == next.der),
            "old certificate after the new one"
        );
    }
    assert!(
        switched < Duration::from_secs(2),
        "new certificate after {switched:?}"
    );

    // A rotation to a key of another certificate: Envoy keeps serving the last good one.
    let other = t.ca.leaf(&[APP], 30);
    t.s.write_manifest(
        "certs.yaml",
        &certs_yaml((&t.wildcard, &t.wildcard), (&next, &other)),
    );
    let start = Instant::now();
    let report = loop {
        let report = t.s.admin_json("/debug/rejections").await;
        if report["certificates"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
        {
            break report;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no certificate problem: {report}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let problem = &report["certificates"][0];
    assert_eq!(problem["object"]["name"], APP, "{report}");
    assert_eq!(
        problem["problem"]["field"], "spec.tls.secretName",
        "{report}"
    );
    let message = problem["problem"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("tls.key: does not match the certificate in tls.crt")
            && message.contains("last good certificate"),
        "{message}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    traffic.await.unwrap();
    let failures = failures.lock().unwrap().clone();
    let sent = sent.load(Ordering::Relaxed);
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {failures:?}",
        failures.len()
    );
    assert!(sent > 100, "only {sent} requests");
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        last.1, next.der,
        "the last good certificate is still served"
    );
    t.s.assert_no_rejections().await;

    // validate names the object, the field and the Secret's field; exit 1.
    let out = Command::new(env!("CARGO_BIN_EXE_knative-xds"))
        .args([
            "validate",
            "--default-tls-secret",
            "knative-serving/wildcard",
        ])
        .arg("--manifests")
        .arg(&t.s.manifests)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("DomainMapping default/app.example.org: spec.tls.secretName: Secret default/app-tls: tls.key: does not match the certificate in tls.crt"),
        "{stdout}"
    );

    // A Secret with a bad key from the start (a restart has no last good one): only that
    // host loses its certificate (its SNI gets the wildcard, which does not name it); the
    // Route's host is unaffected.
    let mut t = Arc::try_unwrap(t).ok().expect("traffic task done");
    t.s.restart_control_plane().await;
    let start = Instant::now();
    loop {
        let r = https_get(t.https, APP, &ca).await;
        if r.as_ref().is_err_and(|e| e.contains("handshake")) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{APP} still served: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = https_get(t.https, HELLO, &ca).await.unwrap();
    assert_eq!((r.status, r.peer == t.wildcard.der), (200, true));
    assert_eq!(
        t.s.get(Listener::External, APP).await.revision(),
        "hello-00001"
    );

    // After that restart (Envoy reconnected with the versions it has), a renewed default
    // certificate still arrives, and no secret waited for its fetch timeout.
    let renewed = t.ca.leaf(&["*.default.example.com"], 30);
    t.s.write_manifest(
        "certs.yaml",
        &certs_yaml((&renewed, &renewed), (&next, &other)),
    );
    t.wait_https(HELLO, &renewed.der).await;
    assert!(
        t.s.nonzero_stats("init_fetch_timeout").await.is_empty(),
        "a secret waited for its fetch timeout"
    );
    t.s.assert_no_rejections().await;
}

/// No private key in any output: `render`, `validate`, the debug endpoints, CSDS, the
/// Inspect API and the logs show the certificate, never the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn private_keys_never_shown() {
    let t = start(false, &[]).await;
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    // The key as PEM text, and as the base64 of that text (proto3 JSON's bytes).
    let keys = [
        t.wildcard.key_body(),
        t.app.key_body(),
        b64(&t.wildcard.key_pem),
        b64(&t.app.key_pem),
    ];
    let mut outputs: Vec<(String, String)> = Vec::new();
    for path in [
        "/debug/snapshot",
        "/debug/rejections",
        "/debug/proxies",
        "/metrics",
    ] {
        outputs.push((
            path.into(),
            t.s.get_text(&format!("http://127.0.0.1:{}{path}", t.s.admin_port))
                .await,
        ));
    }
    let snapshot =
        t.s.get_text(&format!(
            "http://127.0.0.1:{}/debug/snapshot",
            t.s.admin_port
        ))
        .await;
    assert!(
        snapshot.contains("[redacted]"),
        "the key is shown as redacted"
    );
    assert!(
        snapshot.contains(&b64(&t.app.cert_pem)[..60]),
        "the certificate itself is shown"
    );
    for args in [
        vec!["render"],
        vec!["render", "-o", "yaml"],
        vec!["render", "-o", "bootstrap"],
        vec!["validate"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_knative-xds"))
            .args(&args)
            .args(["--default-tls-secret", "knative-serving/wildcard"])
            .arg("--manifests")
            .arg(&t.s.manifests)
            .output()
            .unwrap();
        outputs.push((
            args.join(" "),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ));
    }
    outputs.push((
        "CSDS".into(),
        t.s.grpcurl(&[
            "-d",
            "{}",
            "ADDR",
            "envoy.service.status.v3.ClientStatusDiscoveryService/FetchClientStatus",
        ]),
    ));
    outputs.push(("control-plane log".into(), t.s.read_log("control-plane")));
    for (what, text) in &outputs {
        for k in &keys {
            // Any 40 characters of the key's base64 (and so its PEM) would give it away.
            for i in (0..k.len().saturating_sub(40)).step_by(40) {
                assert!(!text.contains(&k[i..i + 40]), "{what} shows a private key");
            }
        }
    }
    let csds = &outputs.iter().find(|(w, _)| w == "CSDS").unwrap().1;
    assert!(
        csds.contains("[redacted]") && csds.contains("app-tls"),
        "CSDS lists the secrets, redacted:\n{}",
        &csds[..csds.len().min(3000)]
    );
}

/// config-network's `http-protocol`: `Redirected` answers plain HTTP on the external
/// listener with a 301 to the HTTPS URL; `Disabled` serves HTTPS only (plain: 404). Either
/// way HTTPS serves, and the internal listener is not affected.
async fn http_protocol(value: &str, delta: bool) {
    let network = format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: config-network\n  namespace: knative-serving\ndata:\n  http-protocol: {value}\n");
    let t = start_with_files(delta, &[], &[("network.yaml", &network)]).await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for host in [HELLO, APP] {
        let r = no_redirects
            .get(t.s.url(Listener::External, "/some/path?q=1"))
            .header("Host", host)
            .send()
            .await
            .unwrap();
        if value == "Redirected" {
            assert_eq!(r.status().as_u16(), 301, "{host}");
            assert_eq!(
                r.headers()["location"].to_str().unwrap(),
                format!("https://{host}/some/path?q=1")
            );
        } else {
            assert_eq!(r.status().as_u16(), 404, "{host}");
        }
        let r = https_get(t.https, host, &t.ca.pem()).await.unwrap();
        assert_eq!(
            (r.status, r.revision()),
            (200, "hello-00001"),
            "{host}: {r:?}"
        );
    }
    let internal =
        t.s.get(Listener::Internal, "hello.default.svc.cluster.local")
            .await;
    assert_eq!(internal.revision(), "hello-00001");
    t.s.assert_no_rejections().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_redirected_to_https() {
    http_protocol("Redirected", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_disabled_serves_https_only() {
    http_protocol("Disabled", true).await;
}

/// The xDS port over mutual TLS: an Envoy with a client certificate is served; a plaintext
/// client and a TLS client without a certificate are refused; a new server certificate is
/// used by new connections while Envoy's stream carries on (and keeps taking changes).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn xds_over_mutual_tls() {
    const SERVER: &str = "knative-xds.knative-xds.svc";
    let ca = TestCa::new();
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path();
    std::fs::write(dir.join("ca.crt"), ca.pem()).unwrap();
    ca.leaf(&[SERVER], 1).write(dir, "server");
    ca.client_leaf("knative-gateway-1").write(dir, "tls");
    let path = |f: &str| dir.join(f).to_str().unwrap().to_string();
    let (cert, key, client_ca) = (path("server.crt"), path("server.key"), path("ca.crt"));
    let mut s = Stack::start_with_bootstrap(
        &std::path::Path::new(REPO).join("examples/helloworld-go"),
        "bootstrap-delta-mtls.yaml",
        vec![(
            "/etc/knative-xds/xds-tls".into(),
            dir.to_str().unwrap().into(),
        )],
        &[
            "--xds-tls-cert",
            &cert,
            "--xds-tls-key",
            &key,
            "--xds-tls-client-ca",
            &client_ca,
        ],
    )
    .await;
    let host = "helloworld-go.default.example.com";
    let counts = s.distribution(Listener::External, host, &[], 20).await;
    assert_eq!(counts.values().sum::<usize>(), 20);
    assert!(
        counts.keys().all(|k| k.starts_with("helloworld-go-0000")),
        "{counts:?}"
    );

    let grpcurl = |args: &[&str]| {
        let out = Command::new(std::path::Path::new(REPO).join(".venv/bin/grpcurl"))
            .args(args)
            .arg(format!("127.0.0.1:{}", s.xds_port))
            .arg("list")
            .output()
            .expect("grpcurl (scripts/install-envoy.sh installs it)");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = grpcurl(&["-plaintext"]);
    assert!(!ok, "plaintext served: {out}");
    let (ok, out) = grpcurl(&["-cacert", &client_ca, "-servername", SERVER]);
    assert!(!ok, "served without a client certificate: {out}");
    let client = [
        "-cacert",
        &client_ca,
        "-servername",
        SERVER,
        "-cert",
        &path("tls.crt"),
        "-key",
        &path("tls.key"),
    ];
    let (ok, out) = grpcurl(&client);
    assert!(
        ok && out.contains("envoy.service.discovery.v3.AggregatedDiscoveryService"),
        "{out}"
    );

    // Rotate the server certificate: new handshakes see it (openssl s_client), Envoy's
    // stream is the same one, and a change still reaches Envoy through it.
    let proxies = |s: &Stack| {
        let s = s.admin_port;
        async move {
            let text = reqwest::get(format!("http://127.0.0.1:{s}/debug/proxies"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            v.as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p["address"].to_string(),
                        p["connected_since_ms"].to_string(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let before = proxies(&s).await;
    assert_eq!(before.len(), 1, "{before:?}");
    let renewed = ca.leaf(&[SERVER], 2);
    renewed.write(dir, "server");
    let start = Instant::now();
    loop {
        let out = Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{}", s.xds_port),
                "-servername",
                SERVER,
            ])
            .args(["-cert", &path("tls.crt"), "-key", &path("tls.key")])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let pem: String = text
            .lines()
            .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
            .take_while(|l| !l.starts_with("-----END CERTIFICATE"))
            .skip(1)
            .collect();
        let renewed_body: String = renewed
            .cert_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        if !pem.is_empty() && pem == renewed_body {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "new handshakes never got the renewed certificate:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(proxies(&s).await, before, "Envoy's stream was dropped");
    s.write_manifest(
        "extra.yaml",
        "apiVersion: serving.knative.dev/v1\nkind: Route\nmetadata:\n  name: extra\n  namespace: default\nspec:\n  traffic:\n  - revisionName: helloworld-go-00001\n    percent: 100\n",
    );
    s.wait_until(
        "the new Route to answer through Envoy",
        Duration::from_secs(10),
        || async {
            s.request(Listener::External, "extra.default.example.com", &[])
                .await
                .is_ok_and(|r| r.revision() == "helloworld-go-00001")
        },
    )
    .await;
    assert_eq!(proxies(&s).await, before, "Envoy's stream was dropped");
    s.assert_no_rejections().await;

    // knative-xds status over the same mTLS: with the client certificate it lists the
    // Envoy; without one the server refuses it.
    let (code, out, err) = s.cli(&[
        "status",
        "-o",
        "json",
        "--tls-ca",
        &client_ca,
        "--tls-server-name",
        SERVER,
        "--tls-cert",
        &path("tls.crt"),
        "--tls-key",
        &path("tls.key"),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("knative-gateway-1"), "{out}");
    let (code, out, err) = s.cli(&[
        "status",
        "--tls-ca",
        &client_ca,
        "--tls-server-name",
        SERVER,
    ]);
    assert_ne!(code, 0, "served without a client certificate: {out}");
    assert!(!err.is_empty());
    s.stop_envoy();
}

/// `--mode ingress` from a folder: a KIngress' `spec.tls` for an external host and for a
/// cluster-local one. Each is served by SNI on its own HTTPS listener (external, internal),
/// and neither on the other's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kingress_tls_external_and_cluster_local_listeners() {
    const EXT: &str = "shop.example.com";
    const LOCAL: &str = "shop.default.svc.cluster.local";
    let ca = TestCa::new();
    let (ext, local) = (ca.leaf(&[EXT], 1), ca.leaf(&[LOCAL], 1));
    let dir = tempfile::tempdir().unwrap();
    let kingress = format!(
        r#"apiVersion: networking.internal.knative.dev/v1alpha1
kind: Ingress
metadata:
  name: shop
  namespace: default
  annotations:
    networking.knative.dev/ingress.class: knative-xds.ingress.networking.knative.dev
spec:
  tls:
  - hosts: [{EXT}]
    secretName: shop-external
    secretNamespace: default
  - hosts: [{LOCAL}]
    secretName: shop-local
    secretNamespace: default
  rules:
  - hosts: [{EXT}]
    visibility: ExternalIP
    http:
      paths:
      - splits:
        - {{serviceName: shop, serviceNamespace: default, servicePort: 80, percent: 100}}
  - hosts: [{LOCAL}]
    visibility: ClusterLocal
    http:
      paths:
      - splits:
        - {{serviceName: shop, serviceNamespace: default, servicePort: 80, percent: 100}}
---
apiVersion: v1
kind: Service
metadata:
  name: shop
  namespace: default
spec:
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: shop-1
  namespace: default
  labels:
    kubernetes.io/service-name: shop
addressType: IPv4
endpoints:
- addresses: [127.0.0.1]
  conditions: {{ready: true}}
ports:
- name: http
  port: 19161
  protocol: TCP
"#
    );
    std::fs::write(dir.path().join("shop.yaml"), kingress).unwrap();
    std::fs::write(
        dir.path().join("certs.yaml"),
        format!(
            "{}---\n{}",
            secret_yaml("default", "shop-external", &ext.cert_pem, &ext.key_pem),
            secret_yaml("default", "shop-local", &local.cert_pem, &local.key_pem)
        ),
    )
    .unwrap();
    let (p_ext, p_int) = (free_port(), free_port());
    let (a, b) = (p_ext.to_string(), p_int.to_string());
    let s = Stack::start_dir_with(
        dir.path(),
        true,
        &[
            "--mode",
            "ingress",
            "--external-https-port",
            &a,
            "--internal-https-port",
            &b,
        ],
    )
    .await;
    let pem = ca.pem();
    let start = Instant::now();
    while https_get(p_ext, EXT, &pem).await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}",
            s.read_log("control-plane")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = https_get(p_ext, EXT, &pem).await.unwrap();
    assert_eq!((r.status, r.peer == ext.der), (200, true), "{r:?}");
    assert_eq!(r.body["host"], EXT, "{r:?}");
    let r = https_get(p_int, LOCAL, &pem).await.unwrap();
    assert_eq!((r.status, r.peer == local.der), (200, true), "{r:?}");
    // Each host only on its own listener: no certificate names it on the other.
    assert!(https_get(p_ext, LOCAL, &pem).await.is_err());
    assert!(https_get(p_int, EXT, &pem).await.is_err());
    s.assert_no_rejections().await;
}
