//! §2: host names from templates, config-domain, visibility (Route label, placeholder
//! Services) and the hosts of each rule.

use super::*;
use crate::route::expand_cluster_local;
use model::config::VISIBILITY_LABEL;

/// Revision `hello-00001` (and a Configuration `hello`).
fn store() -> Store {
    mk_store([
        Object::Revision(mk_revision("hello-00001", "hello")),
        Object::Configuration(mk_configuration("hello", Some("hello-00001"))),
    ])
}

fn hello(tags: &[&str]) -> Route {
    let mut traffic = vec![to_revision("hello-00001", 100)];
    traffic.extend(
        tags.iter()
            .map(|t| tagged(t, to_revision("hello-00001", 0))),
    );
    mk_route("hello", traffic)
}

fn external_hosts(ing: &Ingress) -> Vec<String> {
    ing.rules
        .iter()
        .filter(|r| r.visibility == Visibility::ExternalIP)
        .flat_map(|r| r.hosts.iter().map(|h| h.to_string()))
        .collect()
}

// §2.1 templates ---------------------------------------------------------------------------

#[test]
fn default_domain_template_gives_name_namespace_domain() {
    let ing = translate_route(&store(), &example_config(), &hello(&[])).unwrap();
    assert_eq!(external_hosts(&ing), ["hello.default.example.com"]);
}

#[test]
fn custom_domain_template() {
    let cfg = mk_config(
        &[("example.com", "")],
        &[("domain-template", "{{.Name}}-{{.Namespace}}.{{.Domain}}")],
        &[],
    );
    let ing = translate_route(&store(), &cfg, &hello(&["v1"])).unwrap();
    // The template gets the tag host name as .Name.
    assert_eq!(
        external_hosts(&ing),
        ["hello-default.example.com", "v1-hello-default.example.com"]
    );
}

#[test]
fn legacy_template_keys_are_read_and_new_keys_win() {
    let cfg = mk_config(
        &[("example.com", "")],
        &[
            ("domainTemplate", "{{.Name}}-{{.Namespace}}.{{.Domain}}"),
            ("tagTemplate", "{{.Name}}-{{.Tag}}"),
        ],
        &[],
    );
    let ing = translate_route(&store(), &cfg, &hello(&["v1"])).unwrap();
    assert_eq!(
        external_hosts(&ing),
        ["hello-default.example.com", "hello-v1-default.example.com"]
    );
    let cfg = mk_config(
        &[("example.com", "")],
        &[
            ("domainTemplate", "{{.Name}}-{{.Namespace}}.{{.Domain}}"),
            ("domain-template", "{{.Name}}.{{.Namespace}}.{{.Domain}}"),
        ],
        &[],
    );
    let ing = translate_route(&store(), &cfg, &hello(&[])).unwrap();
    assert_eq!(external_hosts(&ing), ["hello.default.example.com"]);
}

#[test]
fn domain_template_can_use_route_annotations_and_labels() {
    let cfg = mk_config(
        &[("example.com", "")],
        &[(
            "domain-template",
            r#"{{.Name}}.{{index .Labels "team"}}.{{index .Annotations "env"}}.{{.Domain}}"#,
        )],
        &[],
    );
    let mut r = hello(&[]);
    r.metadata.labels = map(&[("team", "blue")]);
    r.metadata.annotations = map(&[("env", "prod")]);
    let ing = translate_route(&store(), &cfg, &r).unwrap();
    assert_eq!(external_hosts(&ing), ["hello.blue.prod.example.com"]);
}

#[test]
fn missing_template_map_key_renders_empty() {
    // Go's `index` gives the map's zero value for a missing key.
    let cfg = mk_config(
        &[("example.com", "")],
        &[(
            "domain-template",
            r#"{{.Name}}{{index .Annotations "suffix"}}.{{.Namespace}}.{{.Domain}}"#,
        )],
        &[],
    );
    let ing = translate_route(&store(), &cfg, &hello(&[])).unwrap();
    assert_eq!(external_hosts(&ing), ["hello.default.example.com"]);
}

#[test]
fn domain_template_giving_a_non_fqdn_is_rejected() {
    // Loads (the sample host has no path) but gives no FQDN for the Route: ErrDomainName.
    let cfg = mk_config(
        &[("example.com", "")],
        &[("domain-template", "{{.Name}}")],
        &[],
    );
    let p = problems(translate_route(&store(), &cfg, &hello(&[])));
    assert_problem(&p, "metadata.name", "not a fully qualified domain name");
}

#[test]
fn domain_template_with_a_path_is_refused_at_load() {
    let [d, n, f] = mk_config_maps(
        &[("example.com", "")],
        &[("domain-template", "{{.Name}}.{{.Domain}}/x")],
        &[],
    );
    let errors =
        KnativeConfig::from_config_maps(CLUSTER_DOMAIN, Some(&d), Some(&n), Some(&f)).unwrap_err();
    assert_eq!(errors[0].key, "domain-template");
}

#[test]
fn tag_hosts_use_tag_template() {
    let cfg = mk_config(
        &[("example.com", "")],
        &[("tag-template", "{{.Name}}-{{.Tag}}")],
        &[],
    );
    let ing = translate_route(&store(), &cfg, &hello(&["v1"])).unwrap();
    assert_eq!(
        rule_hosts(&ing)[2..],
        [
            (Visibility::ClusterLocal, cluster_local_hosts("hello-v1")),
            (
                Visibility::ExternalIP,
                vec!["hello-v1.default.example.com".to_string()]
            ),
        ]
    );
}

#[test]
fn cluster_local_route_ignores_custom_domain_template() {
    let cfg = mk_config(
        &[("example.com", "")],
        &[("domain-template", "{{.Name}}-{{.Namespace}}.{{.Domain}}")],
        &[],
    );
    let mut r = hello(&[]);
    r.metadata.labels = map(&[(VISIBILITY_LABEL, "cluster-local")]);
    let ing = translate_route(&store(), &cfg, &r).unwrap();
    assert_eq!(
        rule_hosts(&ing),
        [(Visibility::ClusterLocal, cluster_local_hosts("hello"))]
    );
}

#[test]
fn cluster_domain_is_configurable() {
    let [d, n, f] = mk_config_maps(&[], &[], &[]);
    let cfg =
        KnativeConfig::from_config_maps("corp.internal", Some(&d), Some(&n), Some(&f)).unwrap();
    let ing = translate_route(&store(), &cfg, &hello(&[])).unwrap();
    assert_eq!(
        rule_hosts(&ing),
        [(
            Visibility::ClusterLocal,
            vec![
                "hello.default".to_string(),
                "hello.default.svc".to_string(),
                "hello.default.svc.corp.internal".to_string(),
            ]
        )]
    );
}

// §2.2 config-domain -----------------------------------------------------------------------

#[test]
fn config_domain_selector_with_most_keys_wins() {
    let cfg = mk_config(
        &[
            ("example.com", ""),
            ("prod.com", "selector:\n  app: prod"),
            ("eu.prod.com", "selector:\n  app: prod\n  region: eu"),
        ],
        &[],
        &[],
    );
    let lookup = |pairs: &[(&str, &str)]| cfg.domain_for_labels(&map(pairs));
    assert_eq!(lookup(&[]), "example.com");
    assert_eq!(lookup(&[("app", "prod")]), "prod.com");
    assert_eq!(lookup(&[("app", "prod"), ("region", "eu")]), "eu.prod.com");
    assert_eq!(lookup(&[("app", "prod"), ("region", "us")]), "prod.com");
    // Through a Route.
    let mut r = hello(&[]);
    r.metadata.labels = map(&[("app", "prod"), ("region", "eu")]);
    let ing = translate_route(&store(), &cfg, &r).unwrap();
    assert_eq!(external_hosts(&ing), ["hello.default.eu.prod.com"]);
}

#[test]
fn config_domain_selector_tie_goes_to_smallest_domain() {
    let cfg = mk_config(
        &[
            ("b.com", "selector:\n  app: x"),
            ("a.com", "selector:\n  tier: y"),
            ("z.com", ""),
            ("c.com", ""),
        ],
        &[],
        &[],
    );
    assert_eq!(
        cfg.domain_for_labels(&map(&[("app", "x"), ("tier", "y")])),
        "a.com"
    );
    assert_eq!(cfg.domain_for_labels(&map(&[])), "c.com");
}

#[test]
fn config_domain_example_key_is_ignored() {
    let cfg = mk_config(
        &[("_example", "example.org: |\n  selector: {}\n")],
        &[],
        &[],
    );
    assert_eq!(cfg.domain_for_labels(&map(&[])), "svc.cluster.local");
}

#[test]
fn config_domain_without_default_adds_cluster_local_default() {
    let cfg = mk_config(&[("prod.com", "selector:\n  app: prod")], &[], &[]);
    let ing = translate_route(&store(), &cfg, &hello(&[])).unwrap();
    assert!(external_hosts(&ing).is_empty(), "{:?}", rule_hosts(&ing));
    let mut r = hello(&[]);
    r.metadata.labels = map(&[("app", "prod")]);
    let ing = translate_route(&store(), &cfg, &r).unwrap();
    assert_eq!(external_hosts(&ing), ["hello.default.prod.com"]);
}

#[test]
fn default_config_domain_makes_every_route_cluster_local() {
    // Since Knative 1.8 the built-in default domain is svc.<cluster domain>.
    for cfg in [
        KnativeConfig::defaults(CLUSTER_DOMAIN),
        KnativeConfig::from_config_maps(CLUSTER_DOMAIN, None, None, None).unwrap(),
        mk_config(&[], &[], &[]),
    ] {
        let ing = translate_route(&store(), &cfg, &hello(&["v1"])).unwrap();
        assert_eq!(
            rule_hosts(&ing),
            [
                (Visibility::ClusterLocal, cluster_local_hosts("hello")),
                (Visibility::ClusterLocal, cluster_local_hosts("v1-hello")),
            ]
        );
    }
}

// §2.3 visibility --------------------------------------------------------------------------

#[test]
fn visibility_label_makes_route_cluster_local() {
    // Even when a selector would match: the label wins.
    let cfg = mk_config(
        &[("example.com", ""), ("prod.com", "selector:\n  app: prod")],
        &[],
        &[],
    );
    let mut r = hello(&["v1"]);
    r.metadata.labels = map(&[(VISIBILITY_LABEL, "cluster-local"), ("app", "prod")]);
    let ing = translate_route(&store(), &cfg, &r).unwrap();
    assert_eq!(
        rule_hosts(&ing),
        [
            (Visibility::ClusterLocal, cluster_local_hosts("hello")),
            (Visibility::ClusterLocal, cluster_local_hosts("v1-hello")),
        ]
    );
}

#[test]
fn visibility_label_with_another_value_is_ignored_on_a_route() {
    let mut r = hello(&[]);
    r.metadata.labels = map(&[(VISIBILITY_LABEL, "public")]);
    let ing = translate_route(&store(), &example_config(), &r).unwrap();
    assert_eq!(external_hosts(&ing), ["hello.default.example.com"]);
}

#[test]
fn older_serving_visibility_label_is_not_honoured() {
    // serving.knative.dev/visibility was removed in v0.21.
    let mut r = hello(&[]);
    r.metadata.labels = map(&[("serving.knative.dev/visibility", "cluster-local")]);
    let ing = translate_route(&store(), &example_config(), &r).unwrap();
    assert_eq!(external_hosts(&ing), ["hello.default.example.com"]);
}

#[test]
fn tag_placeholder_service_visibility_makes_tag_cluster_local() {
    // Any non-empty value counts (IsObjectLocalVisibility).
    for value in ["cluster-local", "anything"] {
        let mut store = store();
        store.apply(Object::Service(mk_placeholder("v2-hello", Some(value))));
        store.apply(Object::Service(mk_placeholder("v1-hello", Some(""))));
        let ing = translate_route(&store, &example_config(), &hello(&["v1", "v2"])).unwrap();
        assert_eq!(
            external_hosts(&ing),
            ["hello.default.example.com", "v1-hello.default.example.com"],
            "{value}"
        );
        // The v2 tag keeps its cluster-local rule.
        rule_for(&ing, "v2-hello.default.svc.cluster.local");
    }
}

#[test]
fn route_placeholder_service_visibility_makes_the_default_name_cluster_local() {
    // GetVisibility checks the placeholder of every traffic name, the Route's own included.
    let mut store = store();
    store.apply(Object::Service(mk_placeholder(
        "hello",
        Some("cluster-local"),
    )));
    let ing = translate_route(&store, &example_config(), &hello(&["v1"])).unwrap();
    assert_eq!(external_hosts(&ing), ["v1-hello.default.example.com"]);
}

#[test]
fn tag_of_a_cluster_local_route_is_cluster_local() {
    // min(tag visibility, route visibility).
    let mut r = hello(&["v1"]);
    r.metadata.labels = map(&[(VISIBILITY_LABEL, "cluster-local")]);
    let ing = translate_route(&store(), &example_config(), &r).unwrap();
    assert!(external_hosts(&ing).is_empty());
}

#[test]
fn placeholder_in_another_namespace_does_not_count() {
    let mut store = store();
    let mut svc = mk_placeholder("v1-hello", Some("cluster-local"));
    svc.metadata.namespace = "other".into();
    store.apply(Object::Service(svc));
    let ing = translate_route(&store, &example_config(), &hello(&["v1"])).unwrap();
    assert_eq!(
        external_hosts(&ing),
        ["hello.default.example.com", "v1-hello.default.example.com"]
    );
}

// §2.4 hosts of each rule ------------------------------------------------------------------

#[test]
fn cluster_local_hosts_expand_to_three_short_forms() {
    assert_eq!(
        expand_cluster_local("hello", "default", "cluster.local"),
        [
            "hello.default",
            "hello.default.svc",
            "hello.default.svc.cluster.local"
        ]
    );
    let ing = translate_route(&store(), &example_config(), &hello(&[])).unwrap();
    assert_eq!(strs(&ing.rules[0].hosts), cluster_local_hosts("hello"));
    assert_eq!(ing.rules[0].visibility, Visibility::ClusterLocal);
}

#[test]
fn cluster_local_short_forms_are_dropped_when_the_tld_is_impossible() {
    // All-digit top-level label.
    assert_eq!(
        expand_cluster_local("hello", "123", "cluster.local"),
        ["hello.123.svc", "hello.123.svc.cluster.local"]
    );
    // Top-level label longer than 63 characters.
    let long = "n".repeat(64);
    assert_eq!(
        expand_cluster_local("hello", &long, "cluster.local"),
        [
            format!("hello.{long}.svc"),
            format!("hello.{long}.svc.cluster.local")
        ]
    );
}

#[test]
fn traffic_example_hosts() {
    // The host table of §2.4: tags v1, v2, latest; default templates; example.com.
    let store = mk_store([
        Object::Revision(mk_revision("traffic-example-00001", "traffic-example")),
        Object::Revision(mk_revision("traffic-example-00002", "traffic-example")),
        Object::Revision(mk_revision("traffic-example-00003", "traffic-example")),
        Object::Configuration(mk_configuration(
            "traffic-example",
            Some("traffic-example-00003"),
        )),
    ]);
    let svc = mk_kservice(
        "traffic-example",
        vec![
            tagged("v1", to_revision("traffic-example-00001", 80)),
            tagged("v2", to_revision("traffic-example-00002", 20)),
            tagged("latest", to_latest(0)),
        ],
    );
    let ing = translate_kservice(&store, &example_config(), &svc).unwrap();
    let ext = |h: &str| (Visibility::ExternalIP, vec![h.to_string()]);
    assert_eq!(
        rule_hosts(&ing),
        [
            (
                Visibility::ClusterLocal,
                cluster_local_hosts("traffic-example")
            ),
            ext("traffic-example.default.example.com"),
            (
                Visibility::ClusterLocal,
                cluster_local_hosts("latest-traffic-example")
            ),
            ext("latest-traffic-example.default.example.com"),
            (
                Visibility::ClusterLocal,
                cluster_local_hosts("v1-traffic-example")
            ),
            ext("v1-traffic-example.default.example.com"),
            (
                Visibility::ClusterLocal,
                cluster_local_hosts("v2-traffic-example")
            ),
            ext("v2-traffic-example.default.example.com"),
        ]
    );
}

#[test]
fn cluster_local_route_has_only_cluster_local_rules() {
    let mut r = hello(&["v1", "v2"]);
    r.metadata.labels = map(&[(VISIBILITY_LABEL, "cluster-local")]);
    let ing = translate_route(&store(), &example_config(), &r).unwrap();
    assert!(ing
        .rules
        .iter()
        .all(|r| r.visibility == Visibility::ClusterLocal));
    assert_eq!(ing.rules.len(), 3);
}
