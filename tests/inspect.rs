//! Operating and inspecting a running server with the tools operators use: grpcurl
//! (reflection, CSDS, health), `knative-xds status` / `explain`, and `/metrics` read by a
//! real Prometheus parser.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Stack, REPO};

fn example(name: &str) -> std::path::PathBuf {
    Path::new(REPO).join("examples").join(name)
}

/// CSDS for every connected Envoy: (type_url, name, client_status, error details).
fn csds(s: &Stack) -> Vec<(String, String, String, String)> {
    let out = s.grpcurl(&[
        "-d",
        r#"{"node_matchers":[{"node_id":{"exact":"knative-gateway-1"}}],"exclude_resource_contents":true}"#,
        "ADDR",
        "envoy.service.status.v3.ClientStatusDiscoveryService/FetchClientStatus",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("CSDS JSON");
    let configs = v["config"].as_array().cloned().unwrap_or_default();
    assert_eq!(configs.len(), 1, "one Envoy: {out}");
    configs[0]["genericXdsConfigs"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            (
                c["typeUrl"].as_str().unwrap_or("").to_string(),
                c["name"].as_str().unwrap_or("").to_string(),
                c["clientStatus"].as_str().unwrap_or("").to_string(),
                c["errorState"]["details"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect()
}

async fn csds_acks_and_nacks(delta: bool) {
    let s = Stack::start_dir_with(
        &example("traffic-example"),
        delta,
        &["--testing-unchecked-endpoints"],
    )
    .await;

    let list = s.grpcurl(&["ADDR", "list"]);
    for svc in [
        "envoy.service.discovery.v3.AggregatedDiscoveryService",
        "envoy.service.status.v3.ClientStatusDiscoveryService",
        "grpc.health.v1.Health",
        "knative_xds.v1.Inspect",
    ] {
        assert!(list.lines().any(|l| l == svc), "{svc} not listed:\n{list}");
    }
    let health = s.grpcurl(&["ADDR", "grpc.health.v1.Health/Check"]);
    assert!(health.contains("SERVING"), "{health}");

    // Every resource the server serves shows up ACKED.
    let snapshot = s.admin_json("/debug/snapshot").await;
    let served: usize = snapshot
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_array().map_or(0, Vec::len))
        .sum();
    assert!(served >= 10, "{snapshot}");
    s.wait_until(
        "CSDS to show everything ACKED",
        Duration::from_secs(10),
        || async {
            let c = csds(&s);
            c.len() == served && c.iter().all(|(_, _, st, _)| st == "ACKED")
        },
    )
    .await;
    let (code, out, err) = s.cli(&["status"]);
    assert_eq!(code, 0, "{err}");
    let row = out
        .lines()
        .find(|l| l.starts_with("knative-gateway-1"))
        .unwrap_or_else(|| panic!("no row for the Envoy:\n{out}"));
    assert_eq!(
        row.matches("SYNCED").count(),
        5,
        "CDS, EDS, LDS, SRDS, RDS: {out}"
    );
    assert!(row.contains(if delta { "delta" } else { "sotw" }), "{out}");

    // An EndpointSlice Envoy rejects: its EDS resource shows NACKED with Envoy's reason.
    s.write_manifest(
        "bad-slice.yaml",
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: traffic-example-00002-bad\n  namespace: default\n  labels:\n    kubernetes.io/service-name: traffic-example-00002\naddressType: IPv4\nendpoints:\n  - addresses: [\"not-an-ip\"]\nports:\n  - name: http\n    port: 19102\n",
    );
    let cla = "default/traffic-example-00002:80";
    s.wait_until("CSDS to show the NACK", Duration::from_secs(10), || async {
        csds(&s)
            .iter()
            .any(|(t, n, st, _)| t.ends_with("ClusterLoadAssignment") && n == cla && st == "NACKED")
    })
    .await;
    let c = csds(&s);
    let (_, _, _, details) = c
        .iter()
        .find(|(_, n, st, _)| n == cla && st == "NACKED")
        .unwrap();
    assert!(
        details.contains("not-an-ip"),
        "Envoy's message: {details:?}"
    );
    let others_acked = c
        .iter()
        .filter(|(_, n, _, _)| n != cla)
        .all(|(_, _, st, _)| st == "ACKED");
    assert!(others_acked, "only the bad resource is NACKED: {c:?}");
    let (_, out, _) = s.cli(&["status"]);
    let row = out
        .lines()
        .find(|l| l.starts_with("knative-gateway-1"))
        .unwrap();
    assert!(row.contains("NACKED") && row.contains("not-an-ip"), "{out}");
    let (_, json, _) = s.cli(&["status", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("status JSON");
    let eds = v["proxies"][0]["types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["type"] == "EDS")
        .cloned()
        .unwrap();
    assert!(
        eds["lastNack"].as_str().unwrap_or("").contains("not-an-ip"),
        "{json}"
    );
    // Envoy keeps its last good endpoints: the split still works.
    let counts = s
        .distribution(
            common::Listener::External,
            "traffic-example.default.example.com",
            &[],
            100,
        )
        .await;
    assert!(counts.contains_key("traffic-example-00002"), "{counts:?}");
    let m = s.metrics().await;
    assert!(m.contains("knative_xds_nacks_total{type=\"EDS\"} 1"), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "testing"),
    ignore = "needs the binary's testing feature: cargo test --features testing"
)]
async fn csds_acks_and_nacks_sotw() {
    csds_acks_and_nacks(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(feature = "testing"),
    ignore = "needs the binary's testing feature: cargo test --features testing"
)]
async fn csds_acks_and_nacks_delta() {
    csds_acks_and_nacks(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_answers_for_the_examples() {
    let s = Stack::start("helloworld-go", true).await;
    let host = "helloworld-go.default.example.com";

    let (code, out, err) = s.cli(&["explain", "--host", host]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Service.serving.knative.dev default/helloworld-go"),
        "{out}"
    );
    for rev in ["default/helloworld-go-00001", "default/helloworld-go-00002"] {
        let line = out
            .lines()
            .find(|l| l.contains(rev))
            .unwrap_or_else(|| panic!("{rev}:\n{out}"));
        assert!(line.starts_with("50%"), "{line}");
    }
    assert!(out.contains("Knative-Serving-Default-Route: true"), "{out}");

    // Tag header, and an unknown tag falling back to the split.
    let (_, out, _) = s.cli(&["explain", "--host", host, "-H", "Knative-Serving-Tag: a"]);
    assert!(out.contains("headers Knative-Serving-Tag=a"), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("helloworld-go-0000"))
        .unwrap();
    assert!(
        line.starts_with("100%") && line.contains("helloworld-go-00001"),
        "{out}"
    );
    let (_, out, _) = s.cli(&["explain", "--host", host, "-H", "Knative-Serving-Tag: nope"]);
    assert_eq!(
        out.matches("50%").count(),
        2,
        "unknown tag falls back to the split:\n{out}"
    );

    // Tag host, with a port and in capitals.
    let (_, json, _) = s.cli(&[
        "explain",
        "--host",
        "B-helloworld-go.default.example.com:80",
        "-o",
        "json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("explain JSON");
    assert_eq!(v["matched"], true, "{json}");
    assert_eq!(v["targets"][0]["service"], "helloworld-go-00002");
    assert_eq!(v["targets"][0]["percent"], 100);
    assert_eq!(v["headers"][0]["name"], "Knative-Serving-Tag");
    assert_eq!(v["headers"][0]["value"], "b");

    // A cluster-local host on the external listener: no match, and why.
    let local = "helloworld-go.default.svc.cluster.local";
    let (code, out, _) = s.cli(&["explain", "--host", local]);
    assert_eq!(code, 1);
    assert!(
        out.contains("cluster-local") && out.contains("internal listener"),
        "{out}"
    );
    let (code, _, _) = s.cli(&["explain", "--host", local, "--internal"]);
    assert_eq!(code, 0);
    let (code, out, _) = s.cli(&["explain", "--host", "nope.example.com"]);
    assert_eq!(code, 1);
    assert!(out.contains("404"), "{out}");

    // ListObjects: a served Service lists its hosts and the clusters of both Revisions; a
    // Revision is an input with neither.
    let out = s.grpcurl(&["-d", "{}", "ADDR", "knative_xds.v1.Inspect/ListObjects"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("ListObjects JSON");
    let objects = v["objects"].as_array().cloned().unwrap_or_default();
    let find = |kind: &str, name: &str| {
        objects
            .iter()
            .find(|o| o["object"]["kind"] == kind && o["object"]["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{kind} {name} in {out}"))
    };
    let ksvc = find("Service.serving.knative.dev", "helloworld-go");
    assert_eq!(ksvc["state"], "SERVED", "{ksvc}");
    let hosts: Vec<&str> = ksvc["virtualHosts"]
        .as_array()
        .map(|a| a.iter().filter_map(|h| h.as_str()).collect())
        .unwrap_or_default();
    assert!(hosts.contains(&host), "{ksvc}");
    assert!(hosts.contains(&"helloworld-go.default"), "{ksvc}");
    let clusters: Vec<&str> = ksvc["clusters"]
        .as_array()
        .map(|a| a.iter().filter_map(|h| h.as_str()).collect())
        .unwrap_or_default();
    for rev in ["helloworld-go-00001", "helloworld-go-00002"] {
        assert_eq!(
            clusters.iter().filter(|c| c.contains(rev)).count(),
            1,
            "{ksvc}"
        );
    }
    let rev = find("Revision", "helloworld-go-00001");
    assert!(
        rev["virtualHosts"].is_null() && rev["clusters"].is_null(),
        "{rev}"
    );
    drop(s);

    let s = Stack::start("domain-mapping", true).await;
    let (code, out, err) = s.cli(&["explain", "--host", "app.example.org"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("DomainMapping default/app.example.org"),
        "{out}"
    );
    assert!(
        out.contains("host rewrite:  hello.default.svc.cluster.local"),
        "{out}"
    );
    assert!(out.contains("K-Original-Host: app.example.org"), "{out}");
    assert!(
        out.contains("100%") && out.contains("default/hello-00001"),
        "{out}"
    );
}

/// `/metrics` parsed by Prometheus' own Python parser: metric name → samples.
fn parse_metrics(text: &str) -> serde_json::Value {
    let py = Path::new(REPO).join(".venv/bin/python");
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.setdefault(s.name, []).append({"labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;
    let mut child = Command::new(py)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python from .venv (scripts/install-envoy.sh)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "not valid Prometheus text: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sample(m: &serde_json::Value, name: &str, labels: &[(&str, &str)]) -> f64 {
    m[name]
        .as_array()
        .and_then(|samples| {
            samples
                .iter()
                .find(|s| labels.iter().all(|(k, v)| s["labels"][*k] == *v))
        })
        .and_then(|s| s["value"].as_f64())
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}: {}", m[name]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_convergence_counts_each_change_once() {
    let s = Stack::start("traffic-example", false).await;
    let m = parse_metrics(&s.metrics().await);
    assert_eq!(sample(&m, "knative_xds_connected_proxies", &[]), 1.0);
    assert_eq!(sample(&m, "knative_xds_resources", &[("type", "CDS")]), 3.0);
    assert_eq!(
        sample(
            &m,
            "knative_xds_objects",
            &[("kind", "Service.serving.knative.dev"), ("state", "served")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &m,
            "knative_xds_objects",
            &[("kind", "Revision"), ("state", "input")]
        ),
        3.0
    );
    assert!(sample(&m, "knative_xds_pushes_total", &[("type", "RDS")]) >= 1.0);
    assert!(sample(&m, "knative_xds_translation_duration_seconds_count", &[]) >= 1.0);
    let base = sample(&m, "knative_xds_convergence_seconds_count", &[]);

    let service = std::fs::read_to_string(s.manifests.join("service.yaml")).unwrap();
    for (i, (v1, v2)) in [(70, 30), (60, 40), (50, 50)].into_iter().enumerate() {
        let text = service
            .replace("percent: 80", &format!("percent: {v1}"))
            .replace("percent: 20", &format!("percent: {v2}"));
        s.write_manifest("service.yaml", &text);
        let want = base + (i + 1) as f64;
        s.wait_until(
            "the change to converge",
            Duration::from_secs(10),
            || async {
                sample(
                    &parse_metrics(&s.metrics().await),
                    "knative_xds_convergence_seconds_count",
                    &[],
                ) >= want
            },
        )
        .await;
        // Settle: a late extra observation would show up here.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let m = parse_metrics(&s.metrics().await);
        assert_eq!(
            sample(&m, "knative_xds_convergence_seconds_count", &[]),
            want,
            "one observation per change"
        );
    }
    let m = parse_metrics(&s.metrics().await);
    assert!(sample(&m, "knative_xds_convergence_seconds_sum", &[]) < 3.0 * 5.0);
    assert!(sample(&m, "knative_xds_watch_events_total", &[]) >= 3.0);
}
