//! The manifests folder as GitOps users keep it, through a real Envoy: what kn's offline mode
//! writes (YAML and JSON, no Revision objects), and a static bootstrap that serves a folder
//! with no control plane.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{percent, Listener, Stack, REPO};

const EXTERNAL: Listener = Listener::External;

fn assert_share(counts: &BTreeMap<String, usize>, rev: &str, want: f64, tol: f64) {
    let got = percent(counts, rev);
    assert!(
        (got - want).abs() <= tol,
        "{rev}: {got:.1}% of requests, want {want}% ±{tol}: {counts:?}"
    );
}

/// Which revision answers each host of the kn example, and the split.
async fn assert_kn_routing(s: &Stack, listener: Listener) {
    let counts = s
        .distribution(listener, "shop.test-ns.example.com", &[], 2000)
        .await;
    assert_share(&counts, "shop-00001", 80.0, 5.0);
    assert_share(&counts, "shop-00002", 20.0, 5.0);
    assert_eq!(counts.len(), 2, "the 0 % latest gets nothing: {counts:?}");
    for (host, rev) in [
        ("v1-shop.test-ns.example.com", "shop-00001"),
        ("v2-shop.test-ns.example.com", "shop-00002"),
        ("candidate-shop.test-ns.example.com", "shop-00003"),
        ("gitopstest.test-ns.example.com", "gitopstest-00001"),
    ] {
        let r = s.request(listener, host, &[]).await.expect(host);
        assert_eq!((r.status, r.revision()), (200, rev), "{host}: {:?}", r.body);
        assert_eq!(r.header("knative-serving-revision"), Some(rev), "{host}");
    }
}

fn revision(name: &str, service: &str) -> String {
    format!(
        "apiVersion: serving.knative.dev/v1\nkind: Revision\nmetadata:\n  name: {name}\n  namespace: test-ns\n  labels:\n    serving.knative.dev/service: {service}\n    serving.knative.dev/configuration: {service}\nspec:\n  containers:\n  - image: knativesamples/helloworld\nstatus:\n  conditions:\n  - type: Ready\n    status: \"True\"\n"
    )
}

/// kn's files alone route: the Revisions are implied (the template's name, the traffic's
/// names), 80/20 and the tag hosts; without EndpointSlices they answer 503 and start
/// answering once the slices are added. With the Revision objects a cluster would export
/// beside them, the folder routes identically (same resources, same answers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kn_offline_folder_routes_implied_revisions() {
    let s = Stack::start("kn-offline", true).await;
    s.assert_no_rejections().await;
    assert_kn_routing(&s, EXTERNAL).await;

    // Without EndpointSlices (exactly kn's files): routed, 503; with them again: 200.
    let endpoints = std::fs::read_to_string(s.manifests.join("endpoints.yaml")).unwrap();
    std::fs::remove_file(s.manifests.join("endpoints.yaml")).unwrap();
    let host = "gitopstest.test-ns.example.com";
    s.wait_until("503 without endpoints", Duration::from_secs(10), || async {
        s.request(EXTERNAL, host, &[]).await.map(|r| r.status) == Ok(503)
    })
    .await;
    std::fs::write(s.manifests.join("endpoints.yaml"), &endpoints).unwrap();
    s.wait_until("200 with endpoints", Duration::from_secs(10), || async {
        s.request(EXTERNAL, host, &[]).await.map(|r| r.status) == Ok(200)
    })
    .await;
    assert_kn_routing(&s, EXTERNAL).await;

    // The same folder plus Revision objects: the rendered resources are the same...
    let example = Path::new(REPO).join("examples/kn-offline");
    let exported = tempfile::tempdir().unwrap();
    // (Ports kept: the two renders are compared.)
    let mut same_ports = (19100..19200).map(|p| (p, p)).collect();
    common::copy_example(&example, exported.path(), &mut same_ports);
    let revisions: Vec<String> = [
        ("gitopstest-00001", "gitopstest"),
        ("shop-00001", "shop"),
        ("shop-00002", "shop"),
        ("shop-00003", "shop"),
    ]
    .iter()
    .map(|(n, svc)| revision(n, svc))
    .collect();
    std::fs::write(
        exported.path().join("revisions.yaml"),
        revisions.join("---\n"),
    )
    .unwrap();
    let (code, out, _) = knative_xds(&["validate", "--manifests", path(exported.path())]);
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.contains("implied"),
        "the Revision objects are read: {out}"
    );
    assert_eq!(render(exported.path()), render(&example));
    // ...and a gateway started on it answers the same.
    drop(s);
    let with_revisions = Stack::start_dir(exported.path(), false).await;
    with_revisions.assert_no_rejections().await;
    assert_kn_routing(&with_revisions, EXTERNAL).await;
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn knative_xds(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_knative-xds"))
        .args(args)
        .output()
        .expect("run knative-xds");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `render`'s resources, by type and name (without versions).
fn render(dir: &Path) -> BTreeMap<String, BTreeMap<String, serde_json::Value>> {
    let (code, out, err) = knative_xds(&["render", "--manifests", path(dir)]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut by_type = BTreeMap::new();
    for (ty, items) in v.as_object().unwrap() {
        let items = (items.as_array().unwrap().iter())
            .map(|i| {
                (
                    i["name"].as_str().unwrap().to_owned(),
                    i["resource"].clone(),
                )
            })
            .collect();
        by_type.insert(ty.clone(), items);
    }
    by_type
}

/// `render -o bootstrap`: a real Envoy on that file alone, with no control plane, routes
/// the traffic example as the served gateway does: the same split, tag hosts and headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_bootstrap_routes_like_serve() {
    let mut s = Stack::start("traffic-example", false).await;
    let port = common::free_port();
    let (code, out, err) = knative_xds(&[
        "render",
        "--manifests",
        s.manifests.to_str().unwrap(),
        "-o",
        "bootstrap",
        "--listener-address",
        "127.0.0.1",
        "--external-port",
        &port.to_string(),
        "--internal-port",
        &common::free_port().to_string(),
    ]);
    assert_eq!(code, 0, "{err}");
    let bootstrap: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    s.start_static_envoy(bootstrap).await;
    let fixed = Listener::Port(port);

    let host = "traffic-example.default.example.com";
    for listener in [EXTERNAL, fixed] {
        let counts = s.distribution(listener, host, &[], 2000).await;
        assert_share(&counts, "traffic-example-00001", 80.0, 5.0);
        assert_share(&counts, "traffic-example-00002", 20.0, 5.0);
        assert_eq!(counts.len(), 2, "{counts:?}");
    }
    for host in [
        "v1-traffic-example.default.example.com",
        "v2-traffic-example.default.example.com",
        "latest-traffic-example.default.example.com",
        "V2-Traffic-Example.default.example.com",
        "nope.example.com",
    ] {
        let served = s.request(EXTERNAL, host, &[]).await.expect(host);
        let fixed = s.request(fixed, host, &[]).await.expect(host);
        assert_eq!(
            (
                served.status,
                served.revision(),
                served.header("knative-serving-revision")
            ),
            (
                fixed.status,
                fixed.revision(),
                fixed.header("knative-serving-revision")
            ),
            "{host}"
        );
    }
    assert_eq!(
        s.request(fixed, "v2-traffic-example.default.example.com", &[])
            .await
            .unwrap()
            .revision(),
        "traffic-example-00002"
    );
}
