//! End to end through a real Envoy: each example folder served by `knative-xds serve`, with
//! both bootstraps (SotW and Delta ADS), real HTTP traffic, and live edits of the files.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{percent, Listener, Stack, REPO};

const EXTERNAL: Listener = Listener::External;
const INTERNAL: Listener = Listener::Internal;

fn step(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(REPO).join("examples/steps").join(path)).unwrap()
}

fn assert_share(
    counts: &std::collections::BTreeMap<String, usize>,
    rev: &str,
    want: f64,
    tol: f64,
) {
    let got = percent(counts, rev);
    assert!(
        (got - want).abs() <= tol,
        "{rev}: {got:.1}% of requests, want {want}% ±{tol}: {counts:?}"
    );
}

async fn traffic_example(delta: bool, scoped: bool) {
    let s = Stack::start_layout("traffic-example", delta, scoped).await;
    let host = "traffic-example.default.example.com";

    // 80/20 split over 2,000 requests, within ±5 points; the 0 % latest gets nothing.
    let counts = s.distribution(EXTERNAL, host, &[], 2000).await;
    assert_share(&counts, "traffic-example-00001", 80.0, 5.0);
    assert_share(&counts, "traffic-example-00002", 20.0, 5.0);
    assert_eq!(counts.values().sum::<usize>(), 2000);
    assert_eq!(counts.len(), 2, "only 00001 and 00002 answer: {counts:?}");

    // Tag hosts reach only their revision, even the 0 % one.
    for (tag, rev) in [("v1", "00001"), ("v2", "00002"), ("latest", "00003")] {
        let counts = s
            .distribution(
                EXTERNAL,
                &format!("{tag}-traffic-example.default.example.com"),
                &[],
                50,
            )
            .await;
        assert_eq!(
            counts.get(&format!("traffic-example-{rev}")),
            Some(&50),
            "{tag}: {counts:?}"
        );
    }

    // Tag-header routing is off here: the header is ignored and the split applies.
    let counts = s
        .distribution(EXTERNAL, host, &[("Knative-Serving-Tag", "v2")], 200)
        .await;
    assert!(counts.contains_key("traffic-example-00001"), "{counts:?}");

    // The upstream sees Knative's headers with the right values, overwriting bogus ones.
    for _ in 0..20 {
        let r = s
            .request(
                EXTERNAL,
                host,
                &[
                    ("Knative-Serving-Revision", "bogus"),
                    ("Knative-Serving-Namespace", "bogus"),
                ],
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Knative-Serving-Revision"), Some(r.revision()));
        assert_eq!(r.header("Knative-Serving-Namespace"), Some("default"));
    }

    // Hosts match case-insensitively and with a port.
    assert_eq!(
        s.status(EXTERNAL, "Traffic-Example.Default.Example.COM")
            .await,
        200
    );
    assert_eq!(s.status(EXTERNAL, &format!("{host}:8080")).await, 200);
    // Unknown host: 404.
    assert_eq!(s.status(EXTERNAL, "nope.default.example.com").await, 404);
    // The Route's cluster-local names: internal listener only.
    for h in [
        "traffic-example.default",
        "traffic-example.default.svc",
        "traffic-example.default.svc.cluster.local",
    ] {
        assert_eq!(
            s.status(EXTERNAL, h).await,
            404,
            "{h} on the external listener"
        );
        assert_eq!(
            s.status(INTERNAL, h).await,
            200,
            "{h} on the internal listener"
        );
    }
    // External hosts are served on the internal listener too.
    assert_eq!(s.status(INTERNAL, host).await, 200);

    // Live change under ~50 requests/s: 80/10/10, zero failed requests, within 1 s.
    let (stop, traffic) = s.background_traffic(host);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = s.routes_version().await;
    let written = Instant::now();
    s.write_manifest(
        "service.yaml",
        &step("traffic-example/service-80-10-10.yaml"),
    );
    let took = s
        .wait_until(
            "Envoy to take the new routes",
            Duration::from_secs(5),
            || async { s.routes_version().await != before },
        )
        .await;
    let switched = written.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (sent, failures) = traffic.await.unwrap();
    eprintln!("split switched on Envoy {switched:?} after the write (poll {took:?}); {sent} requests during the change");
    assert!(
        failures.is_empty(),
        "failed requests during the change: {failures:?}"
    );
    assert!(sent >= 30, "background traffic ran ({sent} requests)");
    assert!(
        switched < Duration::from_secs(1),
        "change took {switched:?}"
    );
    let counts = s.distribution(EXTERNAL, host, &[], 2000).await;
    assert_share(&counts, "traffic-example-00001", 80.0, 5.0);
    assert_share(&counts, "traffic-example-00002", 10.0, 5.0);
    assert_share(&counts, "traffic-example-00003", 10.0, 5.0);

    // Dropping revisions from the traffic removes their clusters: make-before-break, so
    // not one request fails while Envoy moves over.
    let (stop, traffic) = s.background_traffic(host);
    let latest_only = step("traffic-example/service-80-10-10.yaml");
    let cut = latest_only.find("  traffic:").expect("traffic block");
    s.write_manifest(
        "service.yaml",
        &format!(
            "{}  traffic:\n    - latestRevision: true\n      percent: 100\n",
            &latest_only[..cut]
        ),
    );
    s.wait_until(
        "all traffic on the latest revision",
        Duration::from_secs(5),
        || async {
            s.distribution(EXTERNAL, host, &[], 20)
                .await
                .get("traffic-example-00003")
                == Some(&20)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (_, failures) = traffic.await.unwrap();
    assert!(
        failures.is_empty(),
        "failed requests while clusters were removed: {failures:?}"
    );
    assert_eq!(
        s.status(EXTERNAL, "v1-traffic-example.default.example.com")
            .await,
        404
    );

    // Removing the Service makes its hosts 404.
    std::fs::remove_file(s.manifests.join("service.yaml")).unwrap();
    s.wait_until(
        "the removed Service's hosts to 404",
        Duration::from_secs(5),
        || async { s.status(EXTERNAL, host).await == 404 },
    )
    .await;
    assert_eq!(
        s.status(EXTERNAL, "v1-traffic-example.default.example.com")
            .await,
        404
    );
    assert_eq!(
        s.status(INTERNAL, "traffic-example.default.svc.cluster.local")
            .await,
        404
    );
    s.assert_no_rejections().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_example_sotw() {
    traffic_example(false, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_example_scoped_sotw() {
    traffic_example(false, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_example_delta() {
    traffic_example(true, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_example_scoped_delta() {
    traffic_example(true, true).await;
}

async fn helloworld_go(delta: bool, scoped: bool) {
    let s = Stack::start_layout("helloworld-go", delta, scoped).await;
    let host = "helloworld-go.default.example.com";
    let counts = s.distribution(EXTERNAL, host, &[], 1000).await;
    assert_share(&counts, "helloworld-go-00001", 50.0, 6.0);
    assert_share(&counts, "helloworld-go-00002", 50.0, 6.0);

    // The flag is on: the tag header picks the revision, on both listeners.
    for (tag, rev) in [("a", "helloworld-go-00001"), ("b", "helloworld-go-00002")] {
        for listener in [EXTERNAL, INTERNAL] {
            let counts = s
                .distribution(listener, host, &[("Knative-Serving-Tag", tag)], 40)
                .await;
            assert_eq!(counts.get(rev), Some(&40), "tag {tag}: {counts:?}");
        }
        let r = s
            .request(EXTERNAL, host, &[("Knative-Serving-Tag", tag)])
            .await
            .unwrap();
        assert_eq!(
            r.header("Knative-Serving-Default-Route"),
            None,
            "tag path sets no Default-Route"
        );
    }
    // An unknown or empty tag falls back to the split, marked as the default route.
    for tag in ["nope", ""] {
        let counts = s
            .distribution(EXTERNAL, host, &[("Knative-Serving-Tag", tag)], 200)
            .await;
        assert!(
            counts.contains_key("helloworld-go-00001")
                && counts.contains_key("helloworld-go-00002"),
            "tag {tag:?}: {counts:?}"
        );
        let r = s
            .request(EXTERNAL, host, &[("Knative-Serving-Tag", tag)])
            .await
            .unwrap();
        assert_eq!(r.header("Knative-Serving-Default-Route"), Some("true"));
    }
    // Tag hosts set Knative-Serving-Tag, overwriting what the client sent.
    let r = s
        .request(
            EXTERNAL,
            "b-helloworld-go.default.example.com",
            &[("Knative-Serving-Tag", "a")],
        )
        .await
        .unwrap();
    assert_eq!(r.revision(), "helloworld-go-00002");
    assert_eq!(r.header("Knative-Serving-Tag"), Some("b"));
    s.assert_no_rejections().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helloworld_go_sotw() {
    helloworld_go(false, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helloworld_go_scoped_sotw() {
    helloworld_go(false, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helloworld_go_delta() {
    helloworld_go(true, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helloworld_go_scoped_delta() {
    helloworld_go(true, true).await;
}

async fn blue_green_demo(delta: bool, scoped: bool) {
    let s = Stack::start_layout("blue-green-demo", delta, scoped).await;
    let host = "blue-green-demo.default.example.com";
    let blue = "blue-green-demo-00001";
    let green = "blue-green-demo-00002";
    // Step 1: all blue; green reachable on its tag host only.
    let counts = s.distribution(EXTERNAL, host, &[], 100).await;
    assert_eq!(counts.get(blue), Some(&100), "{counts:?}");
    let counts = s
        .distribution(EXTERNAL, "v2-blue-green-demo.default.example.com", &[], 20)
        .await;
    assert_eq!(counts.get(green), Some(&20), "{counts:?}");

    // Step 2: 50/50.
    let (stop, traffic) = s.background_traffic(host);
    s.write_manifest("route.yaml", &step("blue-green-demo/route-50-50.yaml"));
    s.wait_until("green to get traffic", Duration::from_secs(5), || async {
        s.get(EXTERNAL, host).await.revision() == green
    })
    .await;
    let counts = s.distribution(EXTERNAL, host, &[], 1000).await;
    assert_share(&counts, blue, 50.0, 6.0);
    assert_share(&counts, green, 50.0, 6.0);

    // Step 3: all green; blue only on the v1 tag host; the v2 tag host is gone.
    s.write_manifest("route.yaml", &step("blue-green-demo/route-0-100.yaml"));
    s.wait_until(
        "the v2 tag host to go away",
        Duration::from_secs(5),
        || async {
            s.status(EXTERNAL, "v2-blue-green-demo.default.example.com")
                .await
                == 404
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    let (_, failures) = traffic.await.unwrap();
    assert!(
        failures.is_empty(),
        "failed requests during the rollout: {failures:?}"
    );
    let counts = s.distribution(EXTERNAL, host, &[], 100).await;
    assert_eq!(counts.get(green), Some(&100), "{counts:?}");
    let counts = s
        .distribution(EXTERNAL, "v1-blue-green-demo.default.example.com", &[], 20)
        .await;
    assert_eq!(counts.get(blue), Some(&20), "{counts:?}");
    s.assert_no_rejections().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_demo_sotw() {
    blue_green_demo(false, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_demo_scoped_sotw() {
    blue_green_demo(false, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_demo_delta() {
    blue_green_demo(true, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_demo_scoped_delta() {
    blue_green_demo(true, true).await;
}

async fn cluster_local(delta: bool, scoped: bool) {
    let s = Stack::start_layout("cluster-local", delta, scoped).await;
    for h in [
        "private-app.internal",
        "private-app.internal.svc",
        "private-app.internal.svc.cluster.local",
    ] {
        assert_eq!(s.status(EXTERNAL, h).await, 404, "{h} must not be public");
        let r = s.get(INTERNAL, h).await;
        assert_eq!(r.status, 200, "{h} on the internal listener");
        assert_eq!(r.revision(), "private-app-00001");
    }
    // A cluster-local Route has no external domain at all.
    assert_eq!(
        s.status(EXTERNAL, "private-app.internal.example.com").await,
        404
    );
    assert_eq!(
        s.status(INTERNAL, "private-app.internal.example.com").await,
        404
    );
    // The public app next to it is public.
    let r = s.get(EXTERNAL, "public-app.default.example.com").await;
    assert_eq!((r.status, r.revision()), (200, "public-app-00001"));
    s.assert_no_rejections().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_local_sotw() {
    cluster_local(false, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_local_scoped_sotw() {
    cluster_local(false, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_local_delta() {
    cluster_local(true, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_local_scoped_delta() {
    cluster_local(true, true).await;
}

async fn domain_mapping(delta: bool, scoped: bool) {
    let s = Stack::start_layout("domain-mapping", delta, scoped).await;
    let r = s.get(EXTERNAL, "app.example.org").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.revision(), "hello-00001");
    assert_eq!(
        r.host(),
        "hello.default.svc.cluster.local",
        "host rewritten to the target"
    );
    assert_eq!(r.header("K-Original-Host"), Some("app.example.org"));
    assert_eq!(r.header("Knative-Serving-Revision"), Some("hello-00001"));
    // With a port, and the Service's own host still works.
    assert_eq!(s.status(EXTERNAL, "app.example.org:80").await, 200);
    assert_eq!(
        s.get(EXTERNAL, "hello.default.example.com")
            .await
            .revision(),
        "hello-00001"
    );
    assert_eq!(s.status(EXTERNAL, "other.example.org").await, 404);

    // Without the ClusterDomainClaim the mapping is rejected (Knative: DomainClaimed False)
    // but, as in Knative, what was served stays served, and the log says so.
    let dm = std::fs::read_to_string(s.manifests.join("domain-mapping.yaml")).unwrap();
    let without_claim: Vec<&str> = dm
        .split("\n---\n")
        .filter(|d| !d.contains("kind: ClusterDomainClaim"))
        .collect();
    s.write_manifest("domain-mapping.yaml", &without_claim.join("\n---\n"));
    s.wait_until(
        "the rejection to be logged",
        Duration::from_secs(5),
        || async {
            let log = s.read_log("control-plane");
            log.contains("DomainMapping default/app.example.org")
                && log.contains("still serving its last good translation")
        },
    )
    .await;
    assert_eq!(
        s.get(EXTERNAL, "app.example.org").await.revision(),
        "hello-00001"
    );
    // Deleting the DomainMapping stops serving the domain.
    std::fs::remove_file(s.manifests.join("domain-mapping.yaml")).unwrap();
    s.wait_until(
        "the deleted mapping's domain to 404",
        Duration::from_secs(5),
        || async { s.status(EXTERNAL, "app.example.org").await == 404 },
    )
    .await;
    assert_eq!(
        s.get(EXTERNAL, "hello.default.example.com")
            .await
            .revision(),
        "hello-00001"
    );
    s.assert_no_rejections().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_mapping_sotw() {
    domain_mapping(false, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_mapping_scoped_sotw() {
    domain_mapping(false, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_mapping_delta() {
    domain_mapping(true, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domain_mapping_scoped_delta() {
    domain_mapping(true, true).await;
}

/// `serve` on a folder with bad objects serves the good one; a good object that breaks
/// keeps serving its last good translation and the log says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_keeps_serving_what_is_valid() {
    let src = std::path::Path::new(REPO).join("tests/fixtures/bad-input");
    let s = Stack::start_dir(&src, false).await;
    let host = "good.default.example.com";
    assert_eq!(s.get(EXTERNAL, host).await.revision(), "good-00001");
    assert_eq!(s.status(EXTERNAL, "split90.default.example.com").await, 404);
    // No controller runs on a folder: the Revision it names is implied, and without
    // endpoints answers 503, as Knative does while a revision has no pods.
    assert_eq!(
        s.status(EXTERNAL, "missingrev.default.example.com").await,
        503
    );
    let log = s.read_log("control-plane");
    for what in ["split90", "duptag", "latestconflict", "malformed.yaml"] {
        assert!(log.contains(what), "{what} not reported in the log:\n{log}");
    }

    // Break the good Route: it keeps being served from its last good translation.
    let good = std::fs::read_to_string(s.manifests.join("good.yaml")).unwrap();
    s.write_manifest(
        "good.yaml",
        &good.replacen("percent: 100", "percent: 90", 1),
    );
    s.wait_until("the broken Route to be reported", Duration::from_secs(5), || async {
        s.read_log("control-plane")
            .contains("Route default/good: spec.traffic: Traffic targets sum to 90, want 100 (still serving its last good translation)")
    })
    .await;
    assert_eq!(s.get(EXTERNAL, host).await.revision(), "good-00001");

    // A half-written file keeps its objects too.
    s.write_manifest(
        "good.yaml",
        "apiVersion: serving.knative.dev/v1\nkind: Route\nmetadata: [\n",
    );
    s.wait_until(
        "the file error to be reported",
        Duration::from_secs(5),
        || async { s.read_log("control-plane").contains("good.yaml") },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.get(EXTERNAL, host).await.revision(), "good-00001");
    s.assert_no_rejections().await;
}

/// Envoy keeps serving while the control plane is down; after a restart, a delta Envoy's
/// `initial_resource_versions` match our content versions, so nothing unchanged is resent.
async fn control_plane_restart(scoped: bool) {
    let mut s = Stack::start_layout("traffic-example", true, scoped).await;
    let host = "traffic-example.default.example.com";
    let rx = "cluster.xds_cluster.upstream_cx_rx_bytes_total";
    let first: u64 = s.stat(rx).await.unwrap().parse().unwrap();

    s.stop_control_plane();
    s.wait_until("Envoy to notice", Duration::from_secs(10), || async {
        s.stat("control_plane.connected_state").await.as_deref() == Some("0")
    })
    .await;
    let counts = s.distribution(EXTERNAL, host, &[], 100).await;
    assert_eq!(counts.values().sum::<usize>(), 100);
    assert!(
        counts.keys().all(|k| k.starts_with("traffic-example-")),
        "served while down: {counts:?}"
    );

    let before: u64 = s.stat(rx).await.unwrap().parse().unwrap();
    s.restart_control_plane().await;
    s.wait_until("Envoy to reconnect", Duration::from_secs(15), || async {
        s.stat("control_plane.connected_state").await.as_deref() == Some("1")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after: u64 = s.stat(rx).await.unwrap().parse().unwrap();
    eprintln!(
        "initial config: {first} B; after reconnect: {} B",
        after - before
    );
    // What the new server sent, per type: nothing of CDS/EDS/LDS/RDS content.
    let proxies = s.admin_json("/debug/proxies").await;
    for t in proxies[0]["status"]["types"].as_array().unwrap() {
        let name = t["type_name"].as_str().unwrap();
        if name == "EDS" || name == "RDS" {
            assert_eq!(t["responses"], 0, "{name} resent after reconnect: {t}");
        }
    }
    if scoped {
        // Envoy reports no versions for a glob (scope set) subscription, so the scopes —
        // small, but most of this example's bytes: one route configuration per object
        // against a scope per host and listener — are the one thing resent; the route
        // configurations are not.
        assert!(
            (after - before) * 10 < first * 7,
            "reconnect downloaded {} B of {first} B",
            after - before
        );
    } else {
        assert!(
            after - before < 1024 && (after - before) * 10 < first,
            "reconnect downloaded {} B (initial config {first} B)",
            after - before
        );
    }
    assert_eq!(s.get(EXTERNAL, host).await.status, 200);
    s.assert_no_rejections().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_restart_resends_nothing_unchanged_delta() {
    control_plane_restart(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_restart_resends_only_scopes_scoped_delta() {
    control_plane_restart(true).await;
}

/// How many times every connected Envoy has converged (the control plane's histogram).
async fn convergences(s: &Stack) -> u64 {
    s.metrics()
        .await
        .lines()
        .find_map(|l| l.strip_prefix("knative_xds_convergence_seconds_count "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Benchmark (prints figures, asserts only that changes arrive): a real Envoy (delta) with
/// `BENCH_ROUTES` (default 10,000) generated Routes from the manifests source. Per change (one
/// Service's split, written as an editor does): file write → the control plane saw every
/// Envoy ACK it, and the bytes the Envoy itself received for it
/// (`cluster.xds_cluster.upstream_cx_rx_bytes_total`).
/// `cargo test --release --test e2e -- --ignored --nocapture bench_routes_file_write_to_envoy_ack`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_routes_file_write_to_envoy_ack() {
    let routes: usize = std::env::var("BENCH_ROUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let changes = 30;
    let w = workload::generate(routes, 1);
    let src = tempfile::tempdir().unwrap();
    w.write_to(src.path()).unwrap();
    let t = Instant::now();
    let s = Stack::start_dir(src.path(), true).await;
    eprintln!(
        "{routes} Routes: control plane + Envoy ready in {:?}",
        t.elapsed()
    );
    let rx = || async {
        s.stat("cluster.xds_cluster.upstream_cx_rx_bytes_total")
            .await
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let mut took = Vec::new();
    let mut bytes = Vec::new();
    for i in 0..changes {
        let count = convergences(&s).await;
        let before = rx().await;
        let (path, text) = w.change(i);
        let start = Instant::now();
        s.write_manifest(&path, &text);
        loop {
            if convergences(&s).await > count {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "change {i} never arrived"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        took.push(start.elapsed().as_secs_f64() * 1e3);
        // Let the ACKs' own traffic settle; then count what Envoy received.
        tokio::time::sleep(Duration::from_millis(200)).await;
        bytes.push((rx().await - before) as f64);
    }
    eprintln!(
        "per change (ms): {:?}",
        took.iter().map(|t| t.round()).collect::<Vec<_>>()
    );
    let took = bench::Percentiles::of(&took);
    let bytes = bench::Percentiles::of(&bytes);
    eprintln!(
        "{routes} Routes, {changes} changes: file write → Envoy ACKed p50 {:.0} ms, p99 {:.0} ms, \
         max {:.0} ms; bytes Envoy received per change: median {}, max {}",
        took.p50, took.p99, took.max, bytes.p50, bytes.max
    );
    s.assert_no_rejections().await;
}
