//! `--mode ingress`: knative-xds as Knative's networking layer. KIngresses created through
//! a real kube-apiserver, served by a real Envoy to demo upstreams behind Kubernetes
//! Services (service port ≠ target port, as in Knative's conformance harness). Test names
//! follow Knative's ingress conformance tests (networking `test/conformance/ingress`).

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::kube::{KubeEnv, KubeOptions};
use common::{Listener, Stack};
use serde_json::{json, Value};

const CLASS: &str = "knative-xds.ingress.networking.knative.dev";
const NS: &str = "default";

struct Lab {
    env: KubeEnv,
    stack: Stack,
}

/// A backend: a demo upstream behind a Service `name` (port 50+i → target 8000+i).
struct Backend {
    name: &'static str,
    h2c: bool,
}

fn http(name: &'static str) -> Backend {
    Backend { name, h2c: false }
}

fn service_port(i: usize) -> u16 {
    50 + i as u16
}

impl Lab {
    async fn start(backends: &[Backend]) -> Lab {
        Self::start_with(backends, &[]).await
    }

    async fn start_with(backends: &[Backend], cp_args: &[&str]) -> Lab {
        let env = KubeEnv::start(KubeOptions::default());
        // Demo upstreams come from EndpointSlice manifests (ports remapped by the harness);
        // the same slices then go to the apiserver.
        let src = tempfile::tempdir().unwrap();
        let mut slices = String::new();
        let mut services = String::new();
        for (i, b) in backends.iter().enumerate() {
            let port_name = if b.h2c { "http2" } else { "http" };
            let app_protocol = if b.h2c {
                "\n    appProtocol: kubernetes.io/h2c"
            } else {
                ""
            };
            slices.push_str(&format!(
                "---\napiVersion: discovery.k8s.io/v1beta1\nkind: EndpointSlice\nmetadata:\n  name: {name}-slice\n  namespace: {NS}\n  labels:\n    kubernetes.io/service-name: {name}\naddressType: IPv4\nendpoints:\n- addresses: [127.0.0.1]\n  conditions:\n    ready: true\nports:\n- name: {port_name}\n  protocol: TCP\n  port: {port}\n",
                name = b.name,
                port = 19100 + i
            ));
            services.push_str(&format!(
                "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {NS}\nspec:\n  ports:\n  - name: {port_name}\n    port: {sp}\n    targetPort: {tp}{app_protocol}\n",
                name = b.name,
                sp = service_port(i),
                tp = 8000 + i
            ));
        }
        std::fs::write(src.path().join("slices.yaml"), &slices).unwrap();
        let mut args = vec!["--mode", "ingress", "--lease-namespace", NS];
        args.extend_from_slice(cp_args);
        let stack = Stack::start_kube(src.path(), true, &env.kubeconfig, &args).await;
        if !backends.is_empty() {
            env.apply_yaml(&services);
            env.apply_yaml(&std::fs::read_to_string(stack.manifests.join("slices.yaml")).unwrap());
        }
        Lab { env, stack }
    }

    /// Creates or replaces a KIngress of our class (or `class`).
    fn apply(&self, name: &str, spec: Value) {
        self.apply_class(name, Some(CLASS), spec);
    }

    fn apply_class(&self, name: &str, class: Option<&str>, spec: Value) {
        let mut meta = json!({"name": name, "namespace": NS});
        if let Some(c) = class {
            meta["annotations"] = json!({"networking.knative.dev/ingress.class": c});
        }
        let obj = json!({
            "apiVersion": "networking.internal.knative.dev/v1alpha1",
            "kind": "Ingress",
            "metadata": meta,
            "spec": spec,
        });
        self.env.apply_yaml(&obj.to_string());
    }

    fn get(&self, name: &str) -> Value {
        let out = self.env.kubectl_ok(&[
            "get",
            "ingresses.networking.internal.knative.dev",
            name,
            "-n",
            NS,
            "-o",
            "json",
        ]);
        serde_json::from_str(&out).unwrap()
    }

    /// Waits until the KIngress is Ready for its current generation (Knative's `IsReady`).
    async fn wait_ready(&self, name: &str) -> Value {
        let start = Instant::now();
        loop {
            let k = self.get(name);
            if is_ready(&k) {
                return k;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{name} not Ready: {}\ncontrol plane log:\n{}",
                k["status"],
                self.stack.read_log("control-plane")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn request(
        &self,
        listener: Listener,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self
            .stack
            .client
            .get(self.stack.url(listener, path))
            .header("Host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let h = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            h,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// The backend that answered (200 only), or `<status>`.
    async fn who(
        &self,
        listener: Listener,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> String {
        let (status, _, body) = self.request(listener, host, path, headers).await;
        if status == 200 {
            body["revision"].as_str().unwrap_or("").to_string()
        } else {
            format!("<{status}>")
        }
    }

    async fn distribution(&self, host: &str, path: &str, n: usize) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        let mut done = 0;
        while done < n {
            let batch = (n - done).min(16);
            let futs = (0..batch).map(|_| self.who(Listener::External, host, path, &[]));
            for who in futures::future::join_all(futs).await {
                *counts.entry(who).or_default() += 1;
            }
            done += batch;
        }
        counts
    }
}

fn is_ready(k: &Value) -> bool {
    let s = &k["status"];
    s["observedGeneration"] == k["metadata"]["generation"]
        && s["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn condition<'a>(k: &'a Value, ty: &str) -> &'a Value {
    k["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == ty))
        .unwrap_or(&Value::Null)
}

fn split(backend: usize, name: &str, percent: u32) -> Value {
    json!({"serviceNamespace": NS, "serviceName": name, "servicePort": service_port(backend), "percent": percent})
}

fn rule(hosts: &[&str], visibility: &str, paths: Value) -> Value {
    json!({"hosts": hosts, "visibility": visibility, "http": {"paths": paths}})
}

fn one_rule(host: &str, paths: Value) -> Value {
    json!({"rules": [rule(&[host], "ExternalIP", paths)]})
}

fn within(counts: &BTreeMap<String, usize>, key: &str, want: f64, tolerance: f64) {
    let got = common::percent(counts, key);
    assert!(
        (got - want).abs() <= tolerance,
        "{key}: {got:.1}% (want {want}% ± {tolerance}) in {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basics_and_status() {
    let lab = Lab::start(&[http("alpha")]).await;
    lab.apply(
        "basics",
        one_rule(
            "basics.example.com",
            json!([{"splits": [split(0, "alpha", 100)]}]),
        ),
    );
    let k = lab.wait_ready("basics").await;
    assert_eq!(k["status"]["observedGeneration"], 1);
    assert_eq!(
        k["status"]["publicLoadBalancer"]["ingress"][0]["domainInternal"],
        "knative-xds-gateway.knative-xds.svc.cluster.local"
    );
    assert_eq!(
        k["status"]["privateLoadBalancer"]["ingress"][0]["domainInternal"],
        "knative-xds-gateway-internal.knative-xds.svc.cluster.local"
    );
    assert_eq!(condition(&k, "NetworkConfigured")["status"], "True");
    assert_eq!(
        lab.who(Listener::External, "basics.example.com", "/", &[])
            .await,
        "alpha"
    );
    // Unknown hosts are not served.
    assert_eq!(
        lab.who(Listener::External, "nope.example.com", "/", &[])
            .await,
        "<404>"
    );
    lab.stack.assert_no_rejections().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basics_http2_h2c_upstream() {
    let lab = Lab::start(&[Backend {
        name: "h2",
        h2c: true,
    }])
    .await;
    lab.apply(
        "http2",
        one_rule("h2.example.com", json!([{"splits": [split(0, "h2", 100)]}])),
    );
    lab.wait_ready("http2").await;
    let (status, _, body) = lab
        .request(Listener::External, "h2.example.com", "/", &[])
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["protocol"], "HTTP/2.0", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_pre_split_post_split_and_probe() {
    let lab = Lab::start(&[http("b0"), http("b1"), http("b2"), http("b3")]).await;
    // pre-split: path-level appendHeaders are set, overwriting the client's value.
    lab.apply(
        "pre",
        one_rule(
            "pre.example.com",
            json!([{"appendHeaders": {"Foo": "set-by-ingress"}, "splits": [split(0, "b0", 100)]}]),
        ),
    );
    // post-split: four 25 % splits, each setting its own value.
    let splits: Vec<Value> = (0..4)
        .map(|i| {
            let mut s = split(i, ["b0", "b1", "b2", "b3"][i], 25);
            s["appendHeaders"] = json!({"Who": format!("split-{i}")});
            s
        })
        .collect();
    lab.apply(
        "post",
        one_rule("post.example.com", json!([{"splits": splits}])),
    );
    let pre = lab.wait_ready("pre").await;
    lab.wait_ready("post").await;

    let (_, _, body) = lab
        .request(
            Listener::External,
            "pre.example.com",
            "/",
            &[("Foo", "from-client")],
        )
        .await;
    assert_eq!(body["headers"]["foo"], "set-by-ingress", "{body}");

    let mut seen = BTreeMap::new();
    for _ in 0..80 {
        let (status, _, body) = lab
            .request(Listener::External, "post.example.com", "/", &[])
            .await;
        assert_eq!(status, 200);
        seen.insert(
            body["revision"].as_str().unwrap().to_string(),
            body["headers"]["who"].clone(),
        );
    }
    assert_eq!(seen.len(), 4, "all four splits answered: {seen:?}");
    for (i, b) in ["b0", "b1", "b2", "b3"].iter().enumerate() {
        assert_eq!(seen[*b], format!("split-{i}"));
    }

    // probe: `K-Network-Hash: override` gets Knative's ComputeHash of the KIngress back
    // (the upstream echoes it, as queue-proxy does); any other value passes through.
    let k: model::objects::KIngress = serde_json::from_value(pre).unwrap();
    let hash = translate::kingress::probe_hash(&k);
    let probe = [("K-Network-Probe", "probe"), ("K-Network-Hash", "override")];
    let (status, headers, _) = lab
        .request(Listener::External, "pre.example.com", "/healthz", &probe)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("k-network-hash").unwrap().to_str().unwrap(),
        hash
    );
    let other = [
        ("K-Network-Probe", "probe"),
        ("K-Network-Hash", "something-else"),
    ];
    let (_, headers, _) = lab
        .request(Listener::External, "pre.example.com", "/healthz", &other)
        .await;
    assert_eq!(
        headers.get("k-network-hash").unwrap().to_str().unwrap(),
        "something-else"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_multiple_dispatch_rule_and_path() {
    let lab = Lab::start(&[
        http("foo"),
        http("bar"),
        http("baz"),
        http("all"),
        http("other"),
    ])
    .await;
    let hosts = [
        "one.example.com",
        "two.example.org",
        "three.example.net",
        "four.test",
    ];
    lab.apply(
        "multi",
        json!({"rules": [rule(&hosts, "ExternalIP", json!([{"splits": [split(3, "all", 100)]}]))]}),
    );
    lab.apply(
        "rules",
        json!({"rules": [
            rule(&["rule-a.example.com"], "ExternalIP", json!([{"splits": [split(0, "foo", 100)]}])),
            rule(&["rule-b.example.com"], "ExternalIP", json!([{"splits": [split(4, "other", 100)]}])),
        ]}),
    );
    lab.apply(
        "paths",
        one_rule(
            "paths.example.com",
            json!([
                {"path": "/foo", "splits": [split(0, "foo", 100)]},
                {"path": "/bar", "splits": [split(1, "bar", 100)]},
                {"path": "/baz", "splits": [split(2, "baz", 100)]},
                {"splits": [split(3, "all", 100)]},
            ]),
        ),
    );
    for n in ["multi", "rules", "paths"] {
        lab.wait_ready(n).await;
    }
    for h in hosts {
        assert_eq!(lab.who(Listener::External, h, "/", &[]).await, "all", "{h}");
    }
    assert_eq!(
        lab.who(Listener::External, "rule-a.example.com", "/", &[])
            .await,
        "foo"
    );
    assert_eq!(
        lab.who(Listener::External, "rule-b.example.com", "/", &[])
            .await,
        "other"
    );
    for (path, want) in [
        ("/foo", "foo"),
        ("/bar", "bar"),
        ("/baz", "baz"),
        ("/", "all"),
        ("/asdf", "all"),
    ] {
        assert_eq!(
            lab.who(Listener::External, "paths.example.com", path, &[])
                .await,
            want,
            "{path}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_percentage_and_path_and_percentage() {
    let names = ["p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9"];
    let backends: Vec<Backend> = names.iter().map(|n| http(n)).collect();
    let lab = Lab::start(&backends).await;
    let weights = [1, 2, 4, 8, 16, 32, 37, 0, 0, 0];
    let splits: Vec<Value> = weights
        .iter()
        .enumerate()
        .map(|(i, w)| split(i, names[i], *w))
        .collect();
    lab.apply(
        "pct",
        one_rule("pct.example.com", json!([{"splits": splits}])),
    );
    lab.apply(
        "pathpct",
        one_rule(
            "pathpct.example.com",
            json!([{"path": "/foo", "splits": [split(0, "p0", 50), split(1, "p1", 50)]}, {"splits": [split(2, "p2", 100)]}]),
        ),
    );
    lab.wait_ready("pct").await;
    lab.wait_ready("pathpct").await;
    let counts = lab.distribution("pct.example.com", "/", 3000).await;
    for (i, w) in weights.iter().enumerate() {
        if *w == 0 {
            assert!(
                !counts.contains_key(names[i]),
                "0 % got traffic: {counts:?}"
            );
        } else {
            // σ ≤ 0.9 points at 3,000 requests.
            within(&counts, names[i], *w as f64, 3.0);
        }
    }
    let counts = lab.distribution("pathpct.example.com", "/foo", 400).await;
    within(&counts, "p0", 50.0, 15.0);
    within(&counts, "p1", 50.0, 15.0);
    assert_eq!(
        lab.who(Listener::External, "pathpct.example.com", "/other", &[])
            .await,
        "p2"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_none_and_timeout_none() {
    let lab = Lab::start(&[http("slow")]).await;
    lab.apply(
        "slow",
        one_rule(
            "slow.example.com",
            json!([{"splits": [split(0, "slow", 100)]}]),
        ),
    );
    lab.wait_ready("slow").await;
    // The upstream fails the first request for a key: the client must see that 503.
    assert_eq!(
        lab.who(
            Listener::External,
            "slow.example.com",
            "/retry-once/k1",
            &[]
        )
        .await,
        "<503>"
    );
    assert_eq!(
        lab.who(
            Listener::External,
            "slow.example.com",
            "/retry-once/k1",
            &[]
        )
        .await,
        "slow"
    );
    // No route timeout: 10 s before the headers, and 10 s in the middle of the body.
    let t = Instant::now();
    let (a, b) = tokio::join!(
        lab.request(Listener::External, "slow.example.com", "/delay/10000", &[]),
        lab.request(
            Listener::External,
            "slow.example.com",
            "/slow-body/10000",
            &[]
        ),
    );
    assert_eq!(a.0, 200);
    assert_eq!(b.0, 200);
    assert!(t.elapsed() >= Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn visibility_split_and_path() {
    let lab = Lab::start(&[http("v0"), http("v1"), http("v2")]).await;
    let local = [
        "vis.default",
        "vis.default.svc",
        "vis.default.svc.cluster.local",
    ];
    lab.apply(
        "vis",
        json!({"rules": [rule(&local, "ClusterLocal", json!([
            {"path": "/path", "splits": [split(2, "v2", 100)]},
            {"splits": [split(0, "v0", 50), split(1, "v1", 50)]},
        ]))]}),
    );
    lab.wait_ready("vis").await;
    for h in local {
        assert_eq!(
            lab.who(Listener::External, h, "/", &[]).await,
            "<404>",
            "{h} public"
        );
        let w = lab.who(Listener::Internal, h, "/", &[]).await;
        assert!(w == "v0" || w == "v1", "{h} private: {w}");
        assert_eq!(lab.who(Listener::Internal, h, "/path", &[]).await, "v2");
        assert_eq!(lab.who(Listener::External, h, "/path", &[]).await, "<404>");
    }
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        seen.insert(lab.who(Listener::Internal, local[2], "/", &[]).await);
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec!["v0", "v1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingressclass_others_are_left_untouched() {
    let lab = Lab::start(&[http("mine")]).await;
    let spec = |h: &str| one_rule(h, json!([{"splits": [split(0, "mine", 100)]}]));
    lab.apply_class(
        "other-class",
        Some("kourier.ingress.networking.knative.dev"),
        spec("other.example.com"),
    );
    lab.apply_class("no-class", None, spec("none.example.com"));
    lab.apply_class("empty-class", Some(""), spec("empty.example.com"));
    lab.apply("ours", spec("ours.example.com"));
    lab.wait_ready("ours").await;
    let before: Vec<Value> = ["other-class", "no-class", "empty-class"]
        .iter()
        .map(|n| lab.get(n))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (n, b) in ["other-class", "no-class", "empty-class"]
        .iter()
        .zip(before)
    {
        let now = lab.get(n);
        assert_eq!(now, b, "{n} changed");
        assert!(
            now["status"].is_null() || now["status"] == json!({}),
            "{n} got a status: {}",
            now["status"]
        );
    }
    for h in ["other.example.com", "none.example.com", "empty.example.com"] {
        assert_eq!(
            lab.who(Listener::External, h, "/", &[]).await,
            "<404>",
            "{h}"
        );
    }
    assert_eq!(
        lab.who(Listener::External, "ours.example.com", "/", &[])
            .await,
        "mine"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_twenty_times_under_traffic_ready_means_live() {
    let lab = Lab::start(&[http("u0"), http("u1")]).await;
    let host = "update.example.com";
    let spec = |i: usize| {
        let b = i % 2;
        one_rule(
            host,
            json!([{"appendHeaders": {"Sentinel": format!("v{i}")}, "splits": [split(b, ["u0", "u1"][b], 100)]}]),
        )
    };
    lab.apply("update", spec(0));
    lab.wait_ready("update").await;
    let (stop, traffic) = lab.stack.background_traffic(host);
    let mut took = Vec::new();
    for i in 1..=20 {
        let t = Instant::now();
        lab.apply("update", spec(i));
        let k = lab.wait_ready("update").await;
        took.push(t.elapsed());
        assert_eq!(k["metadata"]["generation"], i as i64 + 1);
        // Ready means Envoy has it: the very next request sees the new config.
        let (status, _, body) = lab.request(Listener::External, host, "/", &[]).await;
        assert_eq!(status, 200);
        assert_eq!(body["headers"]["sentinel"], format!("v{i}"), "update {i}");
        assert_eq!(body["revision"], ["u0", "u1"][i % 2]);
    }
    stop.store(true, Ordering::Relaxed);
    took.sort();
    eprintln!(
        "kubectl apply → Ready (Envoy has it): p50 {:?}, max {:?} over 20 updates",
        took[10], took[19]
    );
    let (sent, failures) = traffic.await.unwrap();
    assert!(sent > 50, "only {sent} requests");
    if !failures.is_empty() {
        let stats = lab
            .stack
            .nonzero_stats(
                "(503|no_cluster|no_healthy|cx_connect_fail|remote_with_active|_reset|no_route|warming)",
            )
            .await;
        panic!(
            "{} of {sent} failed: {failures:?}\nEnvoy stats:\n{}",
            failures.len(),
            stats.join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_rewrite_headers_tags_and_httpoption() {
    let lab = Lab::start(&[http("target"), http("tagged")]).await;
    // host-rewrite: a vanity host goes, Host rewritten, to an ExternalName Service that
    // points at the gateway's internal listener, which serves the cluster-local host.
    let internal = lab.stack.internal_port;
    lab.env.apply_yaml(&format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: to-gateway\n  namespace: {NS}\nspec:\n  type: ExternalName\n  externalName: localhost\n  ports:\n  - name: http\n    port: {internal}\n"
    ));
    lab.apply(
        "target",
        json!({"rules": [rule(&["target.default.svc.cluster.local"], "ClusterLocal", json!([{"splits": [split(0, "target", 100)]}]))]}),
    );
    lab.apply(
        "vanity",
        one_rule(
            "vanity.example.org",
            json!([{"rewriteHost": "target.default.svc.cluster.local", "splits": [
                {"serviceNamespace": NS, "serviceName": "to-gateway", "servicePort": internal, "percent": 100,
                 "appendHeaders": {"K-Original-Host": "vanity.example.org"}}]}]),
        ),
    );
    // headers/tags: an exact Knative-Serving-Tag match in front of the default path.
    lab.apply(
        "tags",
        one_rule(
            "tags.example.com",
            json!([
                {"headers": {"Knative-Serving-Tag": {"exact": "blue"}}, "splits": [split(1, "tagged", 100)]},
                {"appendHeaders": {"Knative-Serving-Default-Route": "true"}, "splits": [split(0, "target", 100)]},
            ]),
        ),
    );
    // httpoption: Redirected answers 301 on the plain-HTTP external listener.
    let mut redirected = one_rule(
        "redirect.example.com",
        json!([{"splits": [split(0, "target", 100)]}]),
    );
    redirected["httpOption"] = json!("Redirected");
    lab.apply("redirect", redirected);
    for n in ["target", "vanity", "tags", "redirect"] {
        lab.wait_ready(n).await;
    }

    let (status, _, body) = lab
        .request(Listener::External, "vanity.example.org", "/", &[])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revision"], "target");
    assert_eq!(body["host"], "target.default.svc.cluster.local");
    assert_eq!(body["headers"]["k-original-host"], "vanity.example.org");

    assert_eq!(
        lab.who(
            Listener::External,
            "tags.example.com",
            "/",
            &[("Knative-Serving-Tag", "blue")]
        )
        .await,
        "tagged"
    );
    for tag in [None, Some(""), Some("green")] {
        let headers: Vec<(&str, &str)> = tag
            .map(|t| ("Knative-Serving-Tag", t))
            .into_iter()
            .collect();
        let (status, _, body) = lab
            .request(Listener::External, "tags.example.com", "/", &headers)
            .await;
        assert_eq!(
            (status, body["revision"].as_str()),
            (200, Some("target")),
            "tag {tag:?}"
        );
        assert_eq!(body["headers"]["knative-serving-default-route"], "true");
    }

    // Without following the redirect (the https:// location is not served here).
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = no_follow
        .get(lab.stack.url(Listener::External, "/x"))
        .header("Host", "redirect.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 301);
    assert_eq!(
        resp.headers().get("location").unwrap().to_str().unwrap(),
        "https://redirect.example.com/x"
    );
    // Cluster-local callers are not redirected (the internal listener serves it plainly).
    assert_eq!(
        lab.who(Listener::Internal, "redirect.example.com", "/", &[])
            .await,
        "target"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_grpc_with_splits() {
    let lab = Lab::start(&[
        http("ws0"),
        http("ws1"),
        Backend {
            name: "g0",
            h2c: true,
        },
        Backend {
            name: "g1",
            h2c: true,
        },
    ])
    .await;
    lab.apply(
        "ws",
        one_rule(
            "ws.example.com",
            json!([{"splits": [split(0, "ws0", 50), split(1, "ws1", 50)]}]),
        ),
    );
    lab.apply(
        "grpc",
        one_rule(
            "grpc.example.com",
            json!([{"splits": [split(2, "g0", 50), split(3, "g1", 50)]}]),
        ),
    );
    lab.wait_ready("ws").await;
    lab.wait_ready("grpc").await;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", lab.stack.external_port)
        .parse()
        .unwrap();
    let mut ws_seen = std::collections::BTreeSet::new();
    let mut grpc_seen = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let rev = tokio::task::spawn_blocking(move || {
            common::upstream_clients::websocket_roundtrips(addr, "ws.example.com", "/", 100)
        })
        .await
        .unwrap()
        .expect("websocket");
        ws_seen.insert(rev);
        let rev = tokio::task::spawn_blocking(move || {
            common::upstream_clients::grpc_health_check(addr, "grpc.example.com:80")
        })
        .await
        .unwrap()
        .expect("grpc");
        grpc_seen.insert(rev);
    }
    assert_eq!(ws_seen.into_iter().collect::<Vec<_>>(), vec!["ws0", "ws1"]);
    assert_eq!(grpc_seen.into_iter().collect::<Vec<_>>(), vec!["g0", "g1"]);
    let rev = tokio::task::spawn_blocking(move || {
        common::upstream_clients::grpc_health_watch_first(addr, "grpc.example.com:80")
    })
    .await
    .unwrap()
    .expect("grpc watch");
    assert!(rev == "g0" || rev == "g1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_envoy_applies_and_conflicts_invalid_missing_tls_reported() {
    let mut lab = Lab::start(&[http("s0")]).await;
    lab.apply(
        "first",
        one_rule(
            "first.example.com",
            json!([{"splits": [split(0, "s0", 100)]}]),
        ),
    );
    lab.wait_ready("first").await;

    // No Envoy connected: a new KIngress is configured but never Ready.
    lab.stack.stop_envoy();
    lab.apply(
        "waiting",
        one_rule(
            "waiting.example.com",
            json!([{"splits": [split(0, "s0", 100)]}]),
        ),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let k = lab.get("waiting");
    assert!(!is_ready(&k), "Ready without an Envoy: {}", k["status"]);
    assert_eq!(k["status"]["observedGeneration"], 1, "{}", k["status"]);
    assert_eq!(condition(&k, "LoadBalancerReady")["status"], "Unknown");
    assert!(k["status"]["publicLoadBalancer"].is_null());
    // Once an Envoy has it, it is Ready and served.
    lab.stack.restart_envoy(true).await;
    lab.wait_ready("waiting").await;
    assert_eq!(
        lab.who(Listener::External, "waiting.example.com", "/", &[])
            .await,
        "s0"
    );

    // The older KIngress keeps a contested host; the newer one says why.
    lab.apply(
        "second",
        one_rule(
            "first.example.com",
            json!([{"splits": [split(0, "s0", 100)]}]),
        ),
    );
    // An invalid spec (splits total 90) is refused with Knative's message; TLS is noted.
    lab.apply(
        "invalid",
        one_rule(
            "invalid.example.com",
            json!([{"splits": [split(0, "s0", 90)]}]),
        ),
    );
    let mut tls = one_rule(
        "tls.example.com",
        json!([{"splits": [split(0, "s0", 100)]}]),
    );
    tls["tls"] =
        json!([{"hosts": ["tls.example.com"], "secretName": "cert", "secretNamespace": NS}]);
    lab.apply("tls", tls);
    // Its Secret does not exist: HTTP serves it, but it is not Ready (Ready means HTTPS
    // works too), and TLSServed says why.
    let start = Instant::now();
    loop {
        let tls = lab.get("tls");
        let t = condition(&tls, "TLSServed");
        if t["status"] == "False" {
            assert!(
                t["message"]
                    .as_str()
                    .unwrap()
                    .contains("Secret default/cert not found"),
                "{t}"
            );
            assert_eq!(
                condition(&tls, "LoadBalancerReady")["reason"],
                "TLSNotReady"
            );
            assert!(!is_ready(&tls));
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{}",
            tls["status"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        lab.who(Listener::External, "tls.example.com", "/", &[])
            .await,
        "s0"
    );
    let start = Instant::now();
    loop {
        let second = lab.get("second");
        let invalid = lab.get("invalid");
        let c = condition(&second, "LoadBalancerReady");
        let n = condition(&invalid, "NetworkConfigured");
        if c["reason"] == "DomainConflict" && n["status"] == "False" {
            assert!(c["message"].as_str().unwrap().contains("first.example.com"));
            assert!(
                n["message"].as_str().unwrap().contains("must total to 100"),
                "{n}"
            );
            assert!(!is_ready(&second) && !is_ready(&invalid));
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{c} / {n}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        lab.who(Listener::External, "first.example.com", "/", &[])
            .await,
        "s0"
    );
    assert_eq!(
        lab.who(Listener::External, "invalid.example.com", "/", &[])
            .await,
        "<404>"
    );
}

/// A second control plane replica on its own ports against the same apiserver.
fn start_replica(lab: &Lab, identity: &str) -> (std::process::Child, u16) {
    let admin = common::free_port();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_knative-xds"))
        .args([
            "serve",
            "--mode",
            "ingress",
            "--lease-namespace",
            NS,
            "--lease-duration",
            "4",
        ])
        .args(["--identity", identity])
        .args([
            "--xds-address",
            &format!("127.0.0.1:{}", common::free_port()),
        ])
        .args(["--admin-address", &format!("127.0.0.1:{admin}")])
        .env("KUBECONFIG", &lab.env.kubeconfig)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(
            std::fs::File::create(lab.stack.dir.path().join(format!("{identity}.log"))).unwrap(),
        )
        .spawn()
        .unwrap();
    (child, admin)
}

async fn leader_gauge(client: &reqwest::Client, admin: u16) -> Option<i64> {
    let text = client
        .get(format!("http://127.0.0.1:{admin}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("knative_xds_leader "))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_writes_status_and_leadership_moves_on() {
    // The harness' control plane stands by (another identity holds the Lease first).
    let lab = Lab::start_with(
        &[http("r0")],
        &["--lease-duration", "4", "--identity", "harness"],
    )
    .await;
    let client = &lab.stack.client.clone();
    lab.apply(
        "ha",
        one_rule("ha.example.com", json!([{"splits": [split(0, "r0", 100)]}])),
    );
    lab.wait_ready("ha").await;
    let (mut replica, replica_admin) = start_replica(&lab, "replica");
    // Exactly one leader.
    let start = Instant::now();
    loop {
        let a = leader_gauge(client, lab.stack.admin_port).await;
        let b = leader_gauge(client, replica_admin).await;
        if let (Some(x), Some(y)) = (a, b) {
            assert_eq!(x + y, 1, "leaders: harness {a:?}, replica {b:?}");
            if x == 1 {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no leader: {a:?} {b:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The standby has written nothing.
    let standby = lab
        .stack
        .get_text(&format!("http://127.0.0.1:{replica_admin}/metrics"))
        .await;
    assert!(
        standby.contains("knative_xds_status_writes_total 0"),
        "standby wrote status:\n{standby}"
    );
    // Kill the leader (the harness' control plane): the replica takes over within the
    // Lease time and writes status (the gateway is connected only to the old leader's
    // address, so readiness needs an Envoy on the replica: check the takeover by its gauge
    // and by the NoGateway status it writes for a new KIngress).
    let killed = Instant::now();
    let mut stack = lab.stack;
    stack.stop_control_plane();
    loop {
        if leader_gauge(client, replica_admin).await == Some(1) {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "replica never took over"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = killed.elapsed();
    eprintln!("leadership moved in {took:?} (lease 4 s)");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let lab = Lab {
        env: lab.env,
        stack,
    };
    lab.apply(
        "after",
        one_rule(
            "after.example.com",
            json!([{"splits": [split(0, "r0", 100)]}]),
        ),
    );
    let start = Instant::now();
    loop {
        let k = lab.get("after");
        if condition(&k, "LoadBalancerReady")["reason"] == "NoGateway" {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "{}", k["status"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = replica.kill();
    let _ = replica.wait();
}

/// Knative's ingress conformance `tls` (TestIngressTLS), and what it leaves out: a Secret
/// created before the KIngress and one created after it, an update and a delete. The control
/// plane runs with deploy/'s role for everything but Secrets, and a Role naming exactly the
/// two Secrets (`resourceNames`): it serves them, and cannot read any other Secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_secrets_before_and_after_updated_deleted_with_exact_rbac() {
    use common::kube::LIMITED_USER;
    use common::tls::{https_get, secret_yaml, TestCa};
    let env = KubeEnv::start(KubeOptions::default());
    let limited = env.as_deploy_role();
    env.kubectl_ok(&[
        "create",
        "role",
        "tls-secrets",
        "-n",
        NS,
        "--verb=get,list,watch",
        "--resource=secrets",
        "--resource-name=before",
        "--resource-name=after",
    ]);
    env.kubectl_ok(&[
        "create",
        "rolebinding",
        "tls-secrets",
        "-n",
        NS,
        "--role=tls-secrets",
        &format!("--user={LIMITED_USER}"),
    ]);

    let ca = TestCa::new();
    let before = ca.leaf(&["before.example.com"], 1);
    env.apply_yaml(&secret_yaml(
        NS,
        "before",
        &before.cert_pem,
        &before.key_pem,
    ));
    env.apply_yaml(&secret_yaml(NS, "other", &before.cert_pem, &before.key_pem));
    let denied = env.kubectl_with(&limited, &["get", "secret", "other", "-n", NS], None);
    assert!(
        !denied.status.success(),
        "the role must not read other Secrets"
    );

    let src = tempfile::tempdir().unwrap();
    std::fs::write(
        src.path().join("slices.yaml"),
        format!("apiVersion: discovery.k8s.io/v1beta1\nkind: EndpointSlice\nmetadata:\n  name: s0-slice\n  namespace: {NS}\n  labels:\n    kubernetes.io/service-name: s0\naddressType: IPv4\nendpoints:\n- addresses: [127.0.0.1]\n  conditions:\n    ready: true\nports:\n- name: http\n  protocol: TCP\n  port: 19100\n"),
    )
    .unwrap();
    let https = common::free_port().to_string();
    let args = [
        "--mode",
        "ingress",
        "--lease-namespace",
        NS,
        "--external-https-port",
        &https,
    ];
    let stack = Stack::start_kube(src.path(), true, &limited, &args).await;
    env.apply_yaml(&format!("apiVersion: v1\nkind: Service\nmetadata:\n  name: s0\n  namespace: {NS}\nspec:\n  ports:\n  - name: http\n    port: 50\n    targetPort: 8000\n"));
    env.apply_yaml(&std::fs::read_to_string(stack.manifests.join("slices.yaml")).unwrap());
    let lab = Lab { env, stack };
    let https: u16 = https.parse().unwrap();
    let tls_ingress = |host: &str, secret: &str| {
        let mut spec = one_rule(host, json!([{"splits": [split(0, "s0", 100)]}]));
        spec["tls"] = json!([{"hosts": [host], "secretName": secret, "secretNamespace": NS}]);
        spec
    };

    // Secret first (as the conformance test does): once Ready, HTTP and HTTPS both answer,
    // HTTPS with that certificate.
    lab.apply("before", tls_ingress("before.example.com", "before"));
    let k = lab.wait_ready("before").await;
    assert_eq!(
        condition(&k, "TLSServed")["status"],
        "True",
        "{}",
        k["status"]
    );
    let r = https_get(https, "before.example.com", &ca.pem())
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.revision(), r.peer == before.der),
        (200, "s0", true),
        "{r:?}"
    );
    assert_eq!(
        lab.who(Listener::External, "before.example.com", "/", &[])
            .await,
        "s0"
    );

    // KIngress first: not Ready until its Secret exists; Ready then means HTTPS works.
    lab.apply("after", tls_ingress("after.example.com", "after"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let k = lab.get("after");
    assert!(
        !is_ready(&k),
        "Ready without its certificate: {}",
        k["status"]
    );
    assert_eq!(condition(&k, "TLSServed")["status"], "False");
    let after = ca.leaf(&["after.example.com"], 1);
    lab.env
        .apply_yaml(&secret_yaml(NS, "after", &after.cert_pem, &after.key_pem));
    lab.wait_ready("after").await;
    let r = https_get(https, "after.example.com", &ca.pem())
        .await
        .unwrap();
    assert_eq!((r.status, r.peer == after.der), (200, true), "{r:?}");

    // An update: new handshakes get the new certificate within seconds.
    let renewed = ca.leaf(&["after.example.com"], 2);
    lab.env.apply_yaml(&secret_yaml(
        NS,
        "after",
        &renewed.cert_pem,
        &renewed.key_pem,
    ));
    let start = Instant::now();
    loop {
        let r = https_get(https, "after.example.com", &ca.pem()).await;
        if r.as_ref()
            .is_ok_and(|r| r.peer == renewed.der && r.status == 200)
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "renewal not served: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A delete: that host's HTTPS stops (no certificate names it), HTTP and the other host
    // are untouched, Ready stays, TLSServed says why.
    lab.env.kubectl_ok(&["delete", "secret", "after", "-n", NS]);
    let start = Instant::now();
    loop {
        let r = https_get(https, "after.example.com", &ca.pem()).await;
        if r.is_err() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still served: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let k = lab.get("after");
    assert!(is_ready(&k), "{}", k["status"]);
    assert_eq!(condition(&k, "TLSServed")["status"], "False");
    assert_eq!(
        lab.who(Listener::External, "after.example.com", "/", &[])
            .await,
        "s0"
    );
    let r = https_get(https, "before.example.com", &ca.pem())
        .await
        .unwrap();
    assert_eq!((r.status, r.peer == before.der), (200, true));
    lab.stack.assert_no_rejections().await;
    let log = lab.stack.read_log("control-plane");
    assert!(
        !log.contains("forbidden") && !log.contains("Forbidden"),
        "{log}"
    );
}
