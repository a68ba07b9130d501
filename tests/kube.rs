//! The Kubernetes source against a real kube-apiserver + etcd (built by
//! `scripts/kube-env.sh`) and a real Envoy: objects created through the API route exactly
//! as the same manifests do, changes arrive, and apiserver trouble never costs a request.

mod common;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::kube::{KubeEnv, KubeOptions};
use common::{percent, Listener, Stack, REPO};

const EXTERNAL: Listener = Listener::External;
const INTERNAL: Listener = Listener::Internal;
const HOST: &str = "traffic-example.default.example.com";

fn example() -> std::path::PathBuf {
    Path::new(REPO).join("examples/traffic-example")
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap()
}

/// Creates through the API what Knative's controllers would have made from the
/// traffic-example Service: its Revisions (Ready), Configuration (status set), Route (owned
/// by the Service), revision Services and EndpointSlices, and Knative's ConfigMaps.
fn create_traffic_example(env: &KubeEnv, dir: &Path, slice_version: &str) {
    let _ = env.kubectl(&["create", "namespace", "knative-serving"]);
    env.apply_yaml(&read(dir, "config.yaml"));
    env.apply_yaml(&read(dir, "service.yaml"));
    env.apply_yaml(&read(dir, "revisions.yaml"));
    env.apply_yaml(&read(dir, "endpoints.yaml").replace(
        "discovery.k8s.io/v1\n",
        &format!("discovery.k8s.io/{slice_version}\n"),
    ));
    for rev in [
        "traffic-example-00001",
        "traffic-example-00002",
        "traffic-example-00003",
    ] {
        patch_status(
            env,
            &format!("revisions/{rev}"),
            r#"{"status":{"observedGeneration":1,"conditions":[{"type":"Ready","status":"True"}]}}"#,
        );
    }
    env.apply_yaml(
        "apiVersion: serving.knative.dev/v1\nkind: Configuration\nmetadata:\n  name: traffic-example\n  namespace: default\n  labels:\n    serving.knative.dev/service: traffic-example\nspec:\n  template:\n    spec:\n      containers:\n      - image: ghcr.io/knative/helloworld-go:latest\n",
    );
    patch_status(
        env,
        "configurations/traffic-example",
        r#"{"status":{"latestReadyRevisionName":"traffic-example-00003","latestCreatedRevisionName":"traffic-example-00003"}}"#,
    );
    let uid = service_uid(env);
    env.apply_yaml(&route_yaml(
        &uid,
        &[
            ("v1", "traffic-example-00001", 80),
            ("v2", "traffic-example-00002", 20),
        ],
    ));
}

/// The uid of the traffic-example Knative Service (for the Route's owner reference).
fn service_uid(env: &KubeEnv) -> String {
    env.kubectl_ok(&[
        "get",
        "services.serving.knative.dev",
        "traffic-example",
        "-n",
        "default",
        "-o",
        "jsonpath={.metadata.uid}",
    ])
}

/// Writes a status the way Knative's controllers do (merge patch of the status
/// subresource; curl, so any kubectl version will do).
fn patch_status(env: &KubeEnv, resource: &str, body: &str) {
    merge_patch(env, &format!("{resource}/status"), body);
}

/// A JSON merge patch of a serving.knative.dev object in `default`, straight to the
/// apiserver (curl: no kubectl start-up, and any kubectl version will do).
fn merge_patch(env: &KubeEnv, path: &str, body: &str) {
    let out = std::process::Command::new("curl")
        .args([
            "-sk",
            "--fail",
            "-X",
            "PATCH",
            "-H",
            "Content-Type: application/merge-patch+json",
            "-H",
        ])
        .arg(format!("Authorization: Bearer {}", env.token))
        .args(["--data-binary", body])
        .arg(format!(
            "{}/apis/serving.knative.dev/v1/namespaces/default/{path}",
            env.server
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "PATCH of {path} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Route Knative's service reconciler makes (`MakeRoute`), with the given pinned
/// targets plus `latest` at 0 %.
fn route_yaml(service_uid: &str, pinned: &[(&str, &str, u32)]) -> String {
    let mut traffic = String::new();
    for (tag, rev, pct) in pinned {
        traffic.push_str(&format!(
            "  - tag: {tag}\n    revisionName: {rev}\n    percent: {pct}\n    latestRevision: false\n"
        ));
    }
    traffic.push_str("  - tag: latest\n    configurationName: traffic-example\n    latestRevision: true\n    percent: 0\n");
    format!(
        "apiVersion: serving.knative.dev/v1\nkind: Route\nmetadata:\n  name: traffic-example\n  namespace: default\n  labels:\n    serving.knative.dev/service: traffic-example\n  ownerReferences:\n  - apiVersion: serving.knative.dev/v1\n    kind: Service\n    name: traffic-example\n    uid: {service_uid}\n    controller: true\nspec:\n  traffic:\n{traffic}"
    )
}

async fn wait_routed(s: &Stack) {
    s.wait_until(
        "the Route to be served",
        Duration::from_secs(20),
        || async { s.get(EXTERNAL, HOST).await.status == 200 },
    )
    .await;
}

async fn routes_like_manifests(opts: KubeOptions, slice_version: &str) {
    let env = KubeEnv::start(opts);
    let s = Stack::start_kube(&example(), true, &env.kubeconfig, &[]).await;
    create_traffic_example(&env, &s.manifests, slice_version);
    wait_routed(&s).await;

    // The same behaviour as the manifests source.
    let counts = s.distribution(EXTERNAL, HOST, &[], 2000).await;
    for (rev, want) in [
        ("traffic-example-00001", 80.0),
        ("traffic-example-00002", 20.0),
    ] {
        let got = percent(&counts, rev);
        assert!(
            (got - want).abs() <= 5.0,
            "{rev}: {got}% want {want}%: {counts:?}"
        );
    }
    for (tag, rev) in [("v1", "00001"), ("v2", "00002"), ("latest", "00003")] {
        let r = s
            .get(
                EXTERNAL,
                &format!("{tag}-traffic-example.default.example.com"),
            )
            .await;
        assert_eq!(r.revision(), format!("traffic-example-{rev}"), "tag {tag}");
    }
    assert_eq!(
        s.status(EXTERNAL, "traffic-example.default.svc.cluster.local")
            .await,
        404
    );
    assert_eq!(
        s.status(INTERNAL, "traffic-example.default.svc.cluster.local")
            .await,
        200
    );
    assert_eq!(s.status(EXTERNAL, "nope.default.example.com").await, 404);

    // Updating the Route's traffic shifts the split.
    let uid = service_uid(&env);
    env.apply_yaml(&route_yaml(
        &uid,
        &[
            ("v1", "traffic-example-00001", 50),
            ("v2", "traffic-example-00002", 50),
        ],
    ));
    s.wait_until("the 50/50 split", Duration::from_secs(10), || async {
        let c = s.distribution(EXTERNAL, HOST, &[], 200).await;
        (percent(&c, "traffic-example-00002") - 50.0).abs() < 12.0
    })
    .await;

    // Changing an EndpointSlice changes the upstream, not the routes.
    let rds = s.routes_version().await;
    assert!(
        rds.contains("traffic-example"),
        "route versions visible: {rds}"
    );
    let v2_port = s.upstream_ports[&19102].to_string();
    let v1_port = s.upstream_ports[&19101].to_string();
    let slices = read(&s.manifests, "endpoints.yaml").replace(
        "discovery.k8s.io/v1\n",
        &format!("discovery.k8s.io/{slice_version}\n"),
    );
    let moved: Vec<String> = slices
        .split("\n---\n")
        .filter(|d| d.contains("kind: EndpointSlice") && d.contains("name: traffic-example-00001-"))
        .map(|d| d.replace(&format!("port: {v1_port}"), &format!("port: {v2_port}")))
        .collect();
    assert_eq!(moved.len(), 1, "one slice for 00001");
    // Server-side apply: a CRD-served EndpointSlice (the v1 case) takes no strategic merge patch.
    let out = env.kubectl_with(
        &env.kubeconfig,
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(&moved[0]),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.wait_until(
        "v1's endpoints to move",
        Duration::from_secs(10),
        || async {
            s.get(EXTERNAL, "v1-traffic-example.default.example.com")
                .await
                .revision()
                == "traffic-example-00002"
        },
    )
    .await;
    assert_eq!(s.routes_version().await, rds, "routes untouched");

    // Deleting the Route makes its hosts 404.
    env.kubectl_ok(&["delete", "route", "traffic-example", "-n", "default"]);
    s.wait_until(
        "the deleted Route's hosts to 404",
        Duration::from_secs(10),
        || async { s.status(EXTERNAL, HOST).await == 404 },
    )
    .await;
    assert_eq!(
        s.status(EXTERNAL, "v2-traffic-example.default.example.com")
            .await,
        404
    );
    s.assert_no_rejections().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_objects_route_like_manifests_v1beta1_endpointslices() {
    routes_like_manifests(KubeOptions::default(), "v1beta1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_objects_route_like_manifests_v1_endpointslices() {
    routes_like_manifests(
        KubeOptions {
            endpointslice_v1_crd: true,
            ..Default::default()
        },
        "v1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_down_for_10s_costs_no_request_and_later_changes_arrive() {
    let mut env = KubeEnv::start(KubeOptions::default());
    let s = Stack::start_kube(&example(), false, &env.kubeconfig, &[]).await;
    create_traffic_example(&env, &s.manifests, "v1beta1");
    wait_routed(&s).await;

    let (stop, traffic) = s.background_traffic(HOST);
    env.stop_apiserver();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        s.get(EXTERNAL, "v1-traffic-example.default.example.com")
            .await
            .status,
        200
    );
    env.start_apiserver();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let (sent, failures) = traffic.await.unwrap();
    assert!(sent > 400, "traffic ran throughout ({sent} requests)");
    assert!(failures.is_empty(), "failed requests: {failures:?}");

    // The watches came back: a change made now arrives.
    let uid = service_uid(&env);
    env.apply_yaml(&route_yaml(
        &uid,
        &[
            ("v1", "traffic-example-00001", 0),
            ("v2", "traffic-example-00002", 100),
        ],
    ));
    // kube-runtime's watch backoff doubles up to 30 s while the API server is down, and a
    // loaded machine (other tests start their own API servers) slows its recovery.
    s.wait_until(
        "the change made after the restart",
        Duration::from_secs(60),
        || async {
            s.distribution(EXTERNAL, HOST, &[], 20)
                .await
                .get("traffic-example-00002")
                == Some(&20)
        },
    )
    .await;
    s.assert_no_rejections().await;
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in metrics"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relist_after_410_is_atomic_no_empty_push_no_failed_request() {
    let mut env = KubeEnv::start(KubeOptions {
        watch_cache: false,
        ..Default::default()
    });
    let s = Stack::start_kube(&example(), true, &env.kubeconfig, &[]).await;
    create_traffic_example(&env, &s.manifests, "v1beta1");
    wait_routed(&s).await;
    // Writes the control plane does not care about, so the compaction moves past what
    // its watches last saw.
    for i in 0..20 {
        env.apply_yaml(&format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: noise-{i}\n  namespace: default\ndata: {{}}\n"));
    }
    let before = s.metrics().await;
    let (stop, traffic) = s.background_traffic(HOST);
    // With the watch cache off, resuming a watch from a compacted revision answers 410.
    env.stop_apiserver();
    env.etcd_compact();
    env.start_apiserver();
    s.wait_until("the watches to relist", Duration::from_secs(30), || async {
        metric(&s.metrics().await, "knative_xds_relists_total")
            > metric(&before, "knative_xds_relists_total")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    let (_, failures) = traffic.await.unwrap();
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    let after = s.metrics().await;
    assert_eq!(
        metric(&after, "knative_xds_snapshots_total"),
        metric(&before, "knative_xds_snapshots_total"),
        "a relist of the same objects publishes nothing (and never an empty snapshot)"
    );
    assert_eq!(s.get(EXTERNAL, HOST).await.status, 200);
    s.assert_no_rejections().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_rbac_is_enough_and_deploy_applies() {
    let env = KubeEnv::start(KubeOptions::default());
    // The whole of deploy/ passes server-side validation (its namespace must exist first).
    let deploy = Path::new(REPO).join("deploy");
    let _ = env.kubectl(&["create", "namespace", "knative-xds"]);
    env.kubectl_ok(&["apply", "--dry-run=server", "-k", deploy.to_str().unwrap()]);

    // The control plane runs as a user holding only deploy/'s ClusterRole.
    let limited = env.as_deploy_role();
    let denied = env.kubectl_with(&limited, &["get", "secrets", "-A"], None);
    assert!(!denied.status.success(), "the role must not read Secrets");
    let s = Stack::start_kube(&example(), true, &limited, &[]).await;
    create_traffic_example(&env, &s.manifests, "v1beta1");
    wait_routed(&s).await;
    let log = s.read_log("control-plane");
    assert!(
        !log.contains("forbidden") && !log.contains("Forbidden"),
        "{log}"
    );
    s.assert_no_rejections().await;
}

/// Benchmark (run explicitly; prints figures, asserts nothing about time):
/// `cargo test --release --test kube -- --ignored --nocapture bench_api_write_to_envoy_ack`.
/// Latency from a Route write through the API to Envoy applying the resulting routes, over
/// 100 changes, with 1,000 other Routes present.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_api_write_to_envoy_ack() {
    const OTHERS: usize = 1000;
    const CHANGES: usize = 100;
    let env = KubeEnv::start(KubeOptions::default());
    let s = Stack::start_kube(&example(), true, &env.kubeconfig, &[]).await;
    create_traffic_example(&env, &s.manifests, "v1beta1");
    wait_routed(&s).await;
    let mut others = String::new();
    for i in 0..OTHERS {
        others.push_str(&format!(
            "---\napiVersion: serving.knative.dev/v1\nkind: Route\nmetadata:\n  name: other-{i}\n  namespace: default\nspec:\n  traffic:\n  - revisionName: traffic-example-00001\n    percent: 100\n"
        ));
    }
    env.apply_yaml(&others);
    s.wait_until("the other Routes", Duration::from_secs(60), || async {
        s.status(
            EXTERNAL,
            &format!("other-{}.default.example.com", OTHERS - 1),
        )
        .await
            == 200
    })
    .await;

    let uid = service_uid(&env);
    // The Route's own RouteConfiguration on the external listener (scoped layout).
    let stat = "http.external.rds.external/Route/default/traffic-example.version_text";
    assert!(s.stat(stat).await.is_some(), "no stat {stat}");
    let mut samples = Vec::with_capacity(CHANGES);
    for i in 0..CHANGES {
        let v1 = 10 + (i % 80) as u32;
        let yaml = route_yaml(
            &uid,
            &[
                ("v1", "traffic-example-00001", v1),
                ("v2", "traffic-example-00002", 100 - v1),
            ],
        );
        let before = s.stat(stat).await;
        // Write straight to the API (no kubectl start-up in the measurement).
        let started = std::time::Instant::now();
        patch_route(&env, &yaml);
        loop {
            if s.stat(stat).await != before {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "change {i} never arrived"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        samples.push(started.elapsed());
    }
    samples.sort();
    let pct =
        |p: f64| samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1];
    println!(
        "API write -> Envoy applied ({} changes, {} other Routes, delta ADS): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        CHANGES,
        OTHERS,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        samples[samples.len() - 1].as_secs_f64() * 1e3
    );
}

/// A JSON merge patch of the Route's spec, straight to the apiserver (curl, no kubectl).
fn patch_route(env: &KubeEnv, yaml: &str) {
    let route: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
    let body = serde_json::json!({ "spec": route["spec"] }).to_string();
    merge_patch(env, "routes/traffic-example", &body);
}
