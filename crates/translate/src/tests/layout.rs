//! §3.2 how the rules and paths are laid out, and the §3.3 traffic example exactly.

use super::*;
use model::config::{HttpOption, VISIBILITY_LABEL};
use model::objects::TrafficTarget;

const R1: &str = "traffic-example-00001";
const R2: &str = "traffic-example-00002";
const R3: &str = "traffic-example-00003";

fn store() -> Store {
    mk_store([
        Object::Revision(mk_revision(R1, "traffic-example")),
        Object::Revision(mk_revision(R2, "traffic-example")),
        Object::Revision(mk_revision(R3, "traffic-example")),
        Object::Configuration(mk_configuration("traffic-example", Some(R3))),
    ])
}

/// §3.3: `[{tag v1, R1, 80}, {tag v2, R2, 20}]`, plus `extra` entries.
fn traffic_example(extra: Vec<TrafficTarget>) -> Route {
    let mut traffic = vec![
        tagged("v1", to_revision(R1, 80)),
        tagged("v2", to_revision(R2, 20)),
    ];
    traffic.extend(extra);
    mk_route("traffic-example", traffic)
}

fn tag_path(tag: &str, rev: &str) -> HttpPath {
    with_header_match(path(vec![split(rev, 80, 100)]), headers::TAG, tag)
}

fn default_path_80_20() -> HttpPath {
    with_append(
        path(vec![split(R1, 80, 80), split(R2, 80, 20)]),
        headers::DEFAULT_ROUTE,
        "true",
    )
}

fn hosts_of(hostname: &str) -> Vec<std::sync::Arc<str>> {
    cluster_local_hosts(hostname)
        .into_iter()
        .map(Into::into)
        .collect()
}

fn cl_rule(hostname: &str, paths: Vec<HttpPath>) -> Rule {
    Rule {
        hosts: hosts_of(hostname),
        visibility: Visibility::ClusterLocal,
        paths: paths.into(),
    }
}

fn ext_rule(host: &str, paths: Vec<HttpPath>) -> Rule {
    rule(&[host], Visibility::ExternalIP, paths)
}

// §3.3 -------------------------------------------------------------------------------------

#[test]
fn traffic_example_with_tag_header_routing_matches_knative_layout() {
    let ing = translate_route(
        &store(),
        &example_config_with_tag_routing(),
        &traffic_example(vec![]),
    )
    .unwrap();
    let default_paths = vec![tag_path("v1", R1), tag_path("v2", R2), default_path_80_20()];
    let v1_paths = vec![with_append(
        path(vec![split(R1, 80, 100)]),
        headers::TAG,
        "v1",
    )];
    let v2_paths = vec![with_append(
        path(vec![split(R2, 80, 100)]),
        headers::TAG,
        "v2",
    )];
    assert_eq!(
        ing.rules,
        [
            cl_rule("traffic-example", default_paths.clone()),
            ext_rule("traffic-example.default.example.com", default_paths),
            cl_rule("v1-traffic-example", v1_paths.clone()),
            ext_rule("v1-traffic-example.default.example.com", v1_paths),
            cl_rule("v2-traffic-example", v2_paths.clone()),
            ext_rule("v2-traffic-example.default.example.com", v2_paths),
        ]
    );
    assert_eq!(ing.http_option, HttpOption::Enabled);
}

#[test]
fn traffic_example_without_tag_header_routing_has_one_path_per_rule() {
    let ing = translate_route(&store(), &example_config(), &traffic_example(vec![])).unwrap();
    let default_paths = vec![path(vec![split(R1, 80, 80), split(R2, 80, 20)])];
    let v1_paths = vec![path(vec![split(R1, 80, 100)])];
    let v2_paths = vec![path(vec![split(R2, 80, 100)])];
    assert_eq!(
        ing.rules,
        [
            cl_rule("traffic-example", default_paths.clone()),
            ext_rule("traffic-example.default.example.com", default_paths),
            cl_rule("v1-traffic-example", v1_paths.clone()),
            ext_rule("v1-traffic-example.default.example.com", v1_paths),
            cl_rule("v2-traffic-example", v2_paths.clone()),
            ext_rule("v2-traffic-example.default.example.com", v2_paths),
        ]
    );
}

#[test]
fn latest_tag_at_zero_percent_gets_rules_and_a_header_path_but_no_default_split() {
    let route = traffic_example(vec![tagged(
        "latest",
        to_configuration("traffic-example", 0),
    )]);
    let ing = translate_route(&store(), &example_config_with_tag_routing(), &route).unwrap();
    let default_paths = vec![
        tag_path("latest", R3),
        tag_path("v1", R1),
        tag_path("v2", R2),
        default_path_80_20(),
    ];
    assert_eq!(ing.rules.len(), 8);
    assert_eq!(
        ing.rules[0],
        cl_rule("traffic-example", default_paths.clone())
    );
    assert_eq!(
        ing.rules[1],
        ext_rule("traffic-example.default.example.com", default_paths)
    );
    let latest_paths = vec![with_append(
        path(vec![split(R3, 80, 100)]),
        headers::TAG,
        "latest",
    )];
    assert_eq!(
        ing.rules[2],
        cl_rule("latest-traffic-example", latest_paths.clone())
    );
    assert_eq!(
        ing.rules[3],
        ext_rule("latest-traffic-example.default.example.com", latest_paths)
    );
}

// §3.2 -------------------------------------------------------------------------------------

#[test]
fn rules_are_ordered_default_first_then_tags_alphabetically() {
    // Spec order b, a: rules "", a, b; for each name the cluster-local rule comes first.
    let route = mk_route(
        "traffic-example",
        vec![
            tagged("b", to_revision(R1, 50)),
            tagged("a", to_revision(R2, 50)),
        ],
    );
    let ing = translate_route(&store(), &example_config(), &route).unwrap();
    let order: Vec<(Visibility, String)> = ing
        .rules
        .iter()
        .map(|r| (r.visibility, r.hosts.last().unwrap().to_string()))
        .collect();
    assert_eq!(
        order,
        [
            (
                Visibility::ClusterLocal,
                "traffic-example.default.svc.cluster.local".into()
            ),
            (
                Visibility::ExternalIP,
                "traffic-example.default.example.com".into()
            ),
            (
                Visibility::ClusterLocal,
                "a-traffic-example.default.svc.cluster.local".into()
            ),
            (
                Visibility::ExternalIP,
                "a-traffic-example.default.example.com".into()
            ),
            (
                Visibility::ClusterLocal,
                "b-traffic-example.default.svc.cluster.local".into()
            ),
            (
                Visibility::ExternalIP,
                "b-traffic-example.default.example.com".into()
            ),
        ]
    );
}

#[test]
fn base_path_is_a_catch_all_without_header_matches() {
    let ing = translate_route(&store(), &example_config(), &traffic_example(vec![])).unwrap();
    for r in &ing.rules {
        let p = &r.paths[0];
        assert_eq!(p.prefix, "/");
        assert!(p.headers.is_empty());
        assert!(p.append_headers.is_empty());
        assert_eq!(p.rewrite_host, None);
    }
}

#[test]
fn split_headers_name_revision_and_namespace() {
    let ing = translate_route(&store(), &example_config(), &traffic_example(vec![])).unwrap();
    let s = &ing.rules[0].paths[0].splits[0];
    assert_eq!(
        s.backend,
        Backend {
            namespace: "default".into(),
            service: R1.into(),
            port: 80,
        }
    );
    assert_eq!(
        s.append_headers,
        map(&[
            ("Knative-Serving-Namespace", "default"),
            ("Knative-Serving-Revision", R1)
        ])
    );
}

#[test]
fn tag_header_routing_adds_tag_paths_before_default() {
    let ing = translate_route(
        &store(),
        &example_config_with_tag_routing(),
        &traffic_example(vec![]),
    )
    .unwrap();
    for r in &ing.rules[..2] {
        let matches: Vec<_> = r.paths.iter().map(|p| p.headers.clone()).collect();
        assert_eq!(
            matches,
            [
                map(&[(headers::TAG, "v1")]),
                map(&[(headers::TAG, "v2")]),
                map(&[])
            ]
        );
        // No Default-Route header on the tag paths.
        assert!(r.paths[..2].iter().all(|p| p.append_headers.is_empty()));
        assert_eq!(
            r.paths[2].append_headers,
            map(&[(headers::DEFAULT_ROUTE, "true")])
        );
    }
}

#[test]
fn tag_header_routing_disabled_gives_one_path_per_rule() {
    let ing = translate_route(&store(), &example_config(), &traffic_example(vec![])).unwrap();
    for r in &ing.rules {
        assert_eq!(r.paths.len(), 1);
        assert!(r.paths[0].headers.is_empty());
        assert!(r.paths[0].append_headers.is_empty());
    }
}

#[test]
fn tag_rule_sets_knative_serving_tag_header_when_enabled() {
    let ing = translate_route(
        &store(),
        &example_config_with_tag_routing(),
        &traffic_example(vec![]),
    )
    .unwrap();
    for (host, tag) in [
        ("v1-traffic-example.default.svc.cluster.local", "v1"),
        ("v1-traffic-example.default.example.com", "v1"),
        ("v2-traffic-example.default", "v2"),
        ("v2-traffic-example.default.example.com", "v2"),
    ] {
        let r = rule_for(&ing, host);
        assert_eq!(r.paths.len(), 1, "{host}");
        assert!(r.paths[0].headers.is_empty());
        assert_eq!(
            r.paths[0].append_headers,
            map(&[(headers::TAG, tag)]),
            "{host}"
        );
    }
}

#[test]
fn tag_header_paths_are_added_for_cluster_local_tags_too() {
    let mut store = store();
    store.apply(Object::Service(mk_placeholder(
        "v2-traffic-example",
        Some("cluster-local"),
    )));
    let ing = translate_route(
        &store,
        &example_config_with_tag_routing(),
        &traffic_example(vec![]),
    )
    .unwrap();
    let external = rule_for(&ing, "traffic-example.default.example.com");
    assert_eq!(external.paths[1], tag_path("v2", R2));
}

#[test]
fn tag_header_paths_on_a_cluster_local_route() {
    let mut route = traffic_example(vec![]);
    route.metadata.labels = map(&[(VISIBILITY_LABEL, "cluster-local")]);
    let ing = translate_route(&store(), &example_config_with_tag_routing(), &route).unwrap();
    assert_eq!(
        ing.rules[0],
        cl_rule(
            "traffic-example",
            vec![tag_path("v1", R1), tag_path("v2", R2), default_path_80_20()]
        )
    );
}

#[test]
fn http_protocol_annotation_overrides_config_network() {
    let cfg = mk_config(
        &[("example.com", "")],
        &[("http-protocol", "Redirected")],
        &[],
    );
    let mut route = traffic_example(vec![]);
    assert_eq!(
        translate_route(&store(), &cfg, &route).unwrap().http_option,
        HttpOption::Redirected
    );
    route.metadata.annotations = map(&[(route::HTTP_PROTOCOL_ANNOTATION, "enabled")]);
    assert_eq!(
        translate_route(&store(), &cfg, &route).unwrap().http_option,
        HttpOption::Enabled
    );
    route.metadata.annotations = map(&[(route::HTTP_PROTOCOL_ANNOTATION, "REDIRECTED")]);
    assert_eq!(
        translate_route(&store(), &example_config(), &route)
            .unwrap()
            .http_option,
        HttpOption::Redirected
    );
}

#[test]
fn http_option_annotation_is_the_alternative_key() {
    let mut route = traffic_example(vec![]);
    route.metadata.annotations = map(&[(route::HTTP_OPTION_ANNOTATION, "Redirected")]);
    assert_eq!(
        translate_route(&store(), &example_config(), &route)
            .unwrap()
            .http_option,
        HttpOption::Redirected
    );
    // The primary key wins.
    route.metadata.annotations = map(&[
        (route::HTTP_OPTION_ANNOTATION, "Redirected"),
        (route::HTTP_PROTOCOL_ANNOTATION, "Enabled"),
    ]);
    assert_eq!(
        translate_route(&store(), &example_config(), &route)
            .unwrap()
            .http_option,
        HttpOption::Enabled
    );
}

#[test]
fn empty_http_protocol_annotation_uses_config_network() {
    let cfg = mk_config(
        &[("example.com", "")],
        &[("http-protocol", "Redirected")],
        &[],
    );
    let mut route = traffic_example(vec![]);
    route.metadata.annotations = map(&[(route::HTTP_PROTOCOL_ANNOTATION, "")]);
    assert_eq!(
        translate_route(&store(), &cfg, &route).unwrap().http_option,
        HttpOption::Redirected
    );
}

#[test]
fn unknown_http_protocol_annotation_is_rejected() {
    // GetHTTPOption accepts only Enabled and Redirected on objects (Disabled is a
    // config-network value only).
    for value in ["Disabled", "https"] {
        let mut route = traffic_example(vec![]);
        route.metadata.annotations = map(&[(route::HTTP_PROTOCOL_ANNOTATION, value)]);
        let p = problems(translate_route(&store(), &example_config(), &route));
        assert_problem(
            &p,
            "metadata.annotations[networking.knative.dev/http-protocol]",
            "incorrect http-protocol annotation",
        );
    }
}
