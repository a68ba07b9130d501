//! Self-test of the real-apiserver harness (tests/common/kube.rs): needs the binaries from
//! `scripts/kube-env.sh` (or `$KUBEBUILDER_ASSETS`).

mod common;

use common::kube::{KubeEnv, KubeOptions};
use std::time::Instant;

const ROUTE: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: kube-env-selftest
---
apiVersion: serving.knative.dev/v1
kind: Route
metadata:
  name: hello
  namespace: kube-env-selftest
spec:
  traffic:
    - revisionName: hello-00001
      percent: 100
"#;

fn route_names(env: &KubeEnv) -> String {
    env.kubectl_ok(&[
        "get",
        "routes.serving.knative.dev",
        "-n",
        "kube-env-selftest",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ])
}

#[test]
fn apiserver_with_knative_crds_survives_a_restart_and_compaction() {
    let t0 = Instant::now();
    let mut env = KubeEnv::start(KubeOptions {
        watch_cache: false,
        endpointslice_v1_crd: false,
    });
    eprintln!("env started in {:.2?}", t0.elapsed());

    env.apply_yaml(ROUTE);
    assert_eq!(route_names(&env), "hello");

    // The status subresource is there (no Knative controller writes it: tests do).
    env.kubectl_ok(&[
        "patch",
        "route",
        "hello",
        "-n",
        "kube-env-selftest",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"url":"http://hello.kube-env-selftest.example.com"}}"#,
    ]);
    let url = env.kubectl_ok(&[
        "get",
        "route",
        "hello",
        "-n",
        "kube-env-selftest",
        "-o",
        "jsonpath={.status.url}",
    ]);
    assert_eq!(url, "http://hello.kube-env-selftest.example.com");

    // The user without groups is authenticated but may read nothing.
    let (code, _) = env.get_as(&env.limited_token, "/apis/serving.knative.dev/v1/routes");
    assert_eq!(code, 403);
    let limited = env.kubeconfig_for(&env.limited_token);
    let out = env.kubectl_with(
        &limited,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
        None,
    );
    // `auth whoami` needs SelfSubjectReview (1.26+); fall back to a refused list on 1.20.
    if !out.status.success() {
        let out = env.kubectl_with(&limited, &["get", "routes.serving.knative.dev", "-A"], None);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("forbidden") && err.contains(common::kube::LIMITED_USER),
            "{err}"
        );
    }

    let t = Instant::now();
    env.stop_apiserver();
    assert_eq!(
        env.get("/readyz").0,
        0,
        "apiserver still answers after stop"
    );
    env.start_apiserver();
    eprintln!("apiserver restarted in {:.2?}", t.elapsed());
    assert_eq!(
        route_names(&env),
        "hello",
        "data kept in etcd across the restart"
    );

    // Compaction: a watch from a resourceVersion before it answers 410 Gone (no watch cache).
    let rv = env.kubectl_ok(&[
        "get",
        "route",
        "hello",
        "-n",
        "kube-env-selftest",
        "-o",
        "jsonpath={.metadata.resourceVersion}",
    ]);
    env.apply_yaml(&ROUTE.replace("percent: 100", "percent: 100\n      tag: t"));
    let rev = env.etcd_compact();
    assert!(rev > rv.parse::<i64>().unwrap());
    let (code, body) = env.get(&format!(
        "/apis/serving.knative.dev/v1/namespaces/kube-env-selftest/routes?watch=1&resourceVersion={rv}&timeoutSeconds=1"
    ));
    assert!(
        code == 410 || body.contains("\"code\":410"),
        "watch from a compacted resourceVersion: {code} {body}"
    );
    assert_eq!(route_names(&env), "hello");
}

#[test]
fn endpointslice_v1_crd_replaces_the_builtin_v1beta1() {
    let env = KubeEnv::start(KubeOptions {
        watch_cache: true,
        endpointslice_v1_crd: true,
    });
    let versions = env.kubectl_ok(&["api-versions"]);
    assert!(
        versions.lines().any(|l| l == "discovery.k8s.io/v1"),
        "{versions}"
    );
    assert!(
        !versions.lines().any(|l| l == "discovery.k8s.io/v1beta1"),
        "{versions}"
    );
    env.apply_yaml(
        r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: hello-00001-abcde
  namespace: default
  labels:
    kubernetes.io/service-name: hello-00001
addressType: IPv4
endpoints:
  - addresses: ["127.0.0.1"]
    conditions: {ready: true}
ports:
  - name: http
    port: 8080
    protocol: TCP
"#,
    );
    let (code, body) = env.get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["items"][0]["endpoints"][0]["addresses"][0], "127.0.0.1");
    assert_eq!(v["items"][0]["ports"][0]["port"], 8080);
}
