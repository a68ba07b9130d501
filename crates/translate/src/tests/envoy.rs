//! §3.4 the data-plane contract, on `envoy::build`'s output: listeners, virtual hosts,
//! routes, weighted clusters, upstream clusters and endpoints.

use crate::envoy::RouteLayout;
use envoy_api::pb::envoy::config::cluster::v3::cluster;
use envoy_api::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_api::pb::envoy::config::core::v3::HeaderValueOption;
use envoy_api::pb::envoy::config::endpoint::v3::lb_endpoint;
use envoy_api::pb::envoy::config::listener::v3::{filter, Listener};
use envoy_api::pb::envoy::config::route::v3::{
    header_matcher, redirect_action, route as envoy_route, route_action, route_match,
    Route as EnvoyRoute, RouteAction, VirtualHost,
};
use envoy_api::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, HttpConnectionManager,
};
use envoy_api::pb::envoy::r#type::matcher::v3::string_matcher;
use prost::Message;

use super::*;
use crate::envoy::{build, EnvoyConfig, ListenerSettings, EXTERNAL, INTERNAL};
use model::config::HttpOption;
use model::objects::{
    Endpoint, EndpointConditions, EndpointPort, EndpointSlice, IntOrString, ServicePort,
    ServiceSpec,
};
use model::store::SERVICE_NAME_LABEL;
use model::{Kind, ObjectKey, ObjectRef};

const R1: &str = "traffic-example-00001";
const R2: &str = "traffic-example-00002";

fn store() -> Store {
    mk_store([
        Object::Revision(mk_revision(R1, "traffic-example")),
        Object::Revision(mk_revision(R2, "traffic-example")),
    ])
}

fn traffic_example() -> Route {
    mk_route(
        "traffic-example",
        vec![
            tagged("v1", to_revision(R1, 80)),
            tagged("v2", to_revision(R2, 20)),
        ],
    )
}

fn build_one(store: &Store, ing: Ingress) -> EnvoyConfig {
    build(
        &[ing],
        store,
        &ListenerSettings {
            layout: RouteLayout::PerListener,
            ..ListenerSettings::default()
        },
    )
}

/// The §3.3 traffic example, translated with `cfg` and built.
fn example_envoy(cfg: &KnativeConfig) -> EnvoyConfig {
    let store = store();
    let ing = translate_route(&store, cfg, &traffic_example()).unwrap();
    build_one(&store, ing)
}

/// A hand-built Ingress of one rule.
fn mk_ingress(rules: Vec<Rule>, http_option: HttpOption) -> Ingress {
    Ingress {
        origin: ObjectRef {
            kind: Kind::Route,
            key: ObjectKey::new(NS, "hand-built"),
        },
        generation: None,
        creation_timestamp: String::new(),
        http_option,
        rules,
        tls: Vec::new(),
    }
}

fn vhosts<'a>(cfg: &'a EnvoyConfig, listener: &str) -> &'a [VirtualHost] {
    &cfg.routes
        .iter()
        .find(|r| r.name == listener)
        .unwrap_or_else(|| panic!("no RouteConfiguration {listener}"))
        .virtual_hosts
}

/// The virtual host of `listener` that lists `host` among its domains.
fn vhost_for<'a>(cfg: &'a EnvoyConfig, listener: &str, host: &str) -> Option<&'a VirtualHost> {
    vhosts(cfg, listener)
        .iter()
        .find(|v| v.domains.iter().any(|d| d == host))
}

#[track_caller]
fn action(r: &EnvoyRoute) -> &RouteAction {
    match &r.action {
        Some(envoy_route::Action::Route(a)) => a,
        other => panic!("not a route action: {other:?}"),
    }
}

/// (cluster, weight) of a route's weighted clusters.
fn weights(r: &EnvoyRoute) -> Vec<(String, u32)> {
    match &action(r).cluster_specifier {
        Some(route_action::ClusterSpecifier::WeightedClusters(w)) => w
            .clusters
            .iter()
            .map(|c| (c.name.clone(), c.weight.as_ref().map_or(0, |w| w.value)))
            .collect(),
        other => panic!("not weighted clusters: {other:?}"),
    }
}

/// (key, value, overwrites?) of headers to add.
fn set_headers(h: &[HeaderValueOption]) -> Vec<(String, String, bool)> {
    h.iter()
        .map(|o| {
            let hv = o.header.as_ref().unwrap();
            (
                hv.key.clone(),
                hv.value.clone(),
                o.append_action == HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
            )
        })
        .collect()
}

/// (name, exact value) of a route's header matchers.
fn header_matches(r: &EnvoyRoute) -> Vec<(String, String)> {
    r.r#match
        .as_ref()
        .unwrap()
        .headers
        .iter()
        .map(|h| {
            let exact = match &h.header_match_specifier {
                Some(header_matcher::HeaderMatchSpecifier::StringMatch(m)) => {
                    match &m.match_pattern {
                        Some(string_matcher::MatchPattern::Exact(v)) => v.clone(),
                        other => panic!("not an exact match: {other:?}"),
                    }
                }
                other => panic!("not a string match: {other:?}"),
            };
            (h.name.clone(), exact)
        })
        .collect()
}

fn prefix(r: &EnvoyRoute) -> String {
    match &r.r#match.as_ref().unwrap().path_specifier {
        Some(route_match::PathSpecifier::Prefix(p)) => p.clone(),
        other => panic!("not a prefix match: {other:?}"),
    }
}

fn hcm(l: &Listener) -> HttpConnectionManager {
    let f = &l.filter_chains[0].filters[0];
    match &f.config_type {
        Some(filter::ConfigType::TypedConfig(any)) => {
            HttpConnectionManager::decode(any.value.as_slice()).expect("an HttpConnectionManager")
        }
        other => panic!("no typed config: {other:?}"),
    }
}

// listeners and virtual hosts -------------------------------------------------------------

#[test]
fn cluster_local_rules_only_on_internal_listener() {
    let mut store = store();
    store.apply(Object::Service(mk_placeholder(
        "v2-traffic-example",
        Some("cluster-local"),
    )));
    let ing = translate_route(&store, &example_config(), &traffic_example()).unwrap();
    let cfg = build_one(&store, ing);
    let names =
        |l: &str| -> Vec<String> { vhosts(&cfg, l).iter().map(|v| v.name.clone()).collect() };
    assert_eq!(
        names(EXTERNAL),
        [
            "traffic-example.default.example.com",
            "v1-traffic-example.default.example.com"
        ]
    );
    // All rules on the internal listener.
    assert_eq!(vhosts(&cfg, INTERNAL).len(), 5);
    for host in [
        "traffic-example.default",
        "traffic-example.default.svc",
        "traffic-example.default.svc.cluster.local",
        "v2-traffic-example.default.svc.cluster.local",
    ] {
        assert!(
            vhost_for(&cfg, EXTERNAL, host).is_none(),
            "{host} on external"
        );
        assert!(
            vhost_for(&cfg, INTERNAL, host).is_some(),
            "{host} not on internal"
        );
    }
    assert!(vhost_for(&cfg, INTERNAL, "traffic-example.default.example.com").is_some());
}

#[test]
fn cluster_local_route_is_not_on_external_listener() {
    let mut route = traffic_example();
    route.metadata.labels = map(&[(model::config::VISIBILITY_LABEL, "cluster-local")]);
    let store = store();
    let ing = translate_route(&store, &example_config(), &route).unwrap();
    let cfg = build_one(&store, ing);
    assert!(vhosts(&cfg, EXTERNAL).is_empty());
    assert_eq!(vhosts(&cfg, INTERNAL).len(), 3);
}

#[test]
fn unknown_host_gets_no_virtual_host() {
    // No catch-all domain: Envoy answers 404 for a host no rule lists.
    let cfg = example_envoy(&example_config());
    for l in [EXTERNAL, INTERNAL] {
        for v in vhosts(&cfg, l) {
            assert!(
                v.domains.iter().all(|d| !d.starts_with('*')),
                "{l}: {:?}",
                v.domains
            );
        }
        assert!(vhost_for(&cfg, l, "unknown.default.example.com").is_none());
    }
}

#[test]
fn virtual_host_matches_its_hosts_with_and_without_a_port() {
    let cfg = example_envoy(&example_config());
    let v = vhost_for(&cfg, INTERNAL, "traffic-example.default").unwrap();
    assert_eq!(
        v.domains,
        [
            "traffic-example.default",
            "traffic-example.default:*",
            "traffic-example.default.svc",
            "traffic-example.default.svc:*",
            "traffic-example.default.svc.cluster.local",
            "traffic-example.default.svc.cluster.local:*",
        ]
    );
}

#[test]
fn listeners_external_and_internal_on_their_ports() {
    let cfg = build::<Ingress>(
        &[],
        &Store::new(),
        &ListenerSettings {
            bind_address: "127.0.0.1".into(),
            external_port: 9080,
            internal_port: 9081,
            layout: RouteLayout::PerListener,
            tls: Default::default(),
        },
    );
    let ports: Vec<(String, u32)> = cfg
        .listeners
        .iter()
        .map(|l| {
            let sa = match l.address.as_ref().unwrap().address.as_ref().unwrap() {
                envoy_api::pb::envoy::config::core::v3::address::Address::SocketAddress(sa) => sa,
                other => panic!("{other:?}"),
            };
            assert_eq!(sa.address, "127.0.0.1");
            let port = match sa.port_specifier {
                Some(envoy_api::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(p)) => p,
                _ => panic!("no port"),
            };
            (l.name.clone(), port)
        })
        .collect();
    assert_eq!(ports, [(EXTERNAL.into(), 9080), (INTERNAL.into(), 9081)]);
    // Each listener reads the RouteConfiguration of its name.
    for l in &cfg.listeners {
        match hcm(l).route_specifier {
            Some(http_connection_manager::RouteSpecifier::Rds(rds)) => {
                assert_eq!(rds.route_config_name, l.name)
            }
            other => panic!("not RDS: {other:?}"),
        }
    }
}

#[test]
fn websocket_upgrade_is_enabled_and_both_http_versions_are_accepted() {
    let cfg = example_envoy(&example_config());
    for l in &cfg.listeners {
        let h = hcm(l);
        assert!(
            h.upgrade_configs
                .iter()
                .any(|u| u.upgrade_type == "websocket"),
            "{}",
            l.name
        );
        // HTTP/1 and h2c prior knowledge (the placeholder Services speak h2c).
        assert_eq!(
            h.codec_type,
            http_connection_manager::CodecType::Auto as i32
        );
    }
}

#[test]
fn http_protocol_redirected_gives_https_redirect_on_external_listener() {
    let cfg = example_envoy(&mk_config(
        &[("example.com", "")],
        &[("http-protocol", "Redirected")],
        &[],
    ));
    for v in vhosts(&cfg, EXTERNAL) {
        assert_eq!(v.routes.len(), 1, "{}", v.name);
        assert_eq!(prefix(&v.routes[0]), "/");
        match &v.routes[0].action {
            Some(envoy_route::Action::Redirect(r)) => {
                assert_eq!(
                    r.scheme_rewrite_specifier,
                    Some(redirect_action::SchemeRewriteSpecifier::HttpsRedirect(true))
                );
                // 301.
                assert_eq!(
                    r.response_code,
                    redirect_action::RedirectResponseCode::MovedPermanently as i32
                );
            }
            other => panic!("not a redirect: {other:?}"),
        }
    }
    // Cluster-local traffic on the internal listener is still served.
    for v in vhosts(&cfg, INTERNAL) {
        assert!(
            matches!(v.routes[0].action, Some(envoy_route::Action::Route(_))),
            "{}",
            v.name
        );
    }
}

#[test]
fn http_protocol_enabled_serves_plain_http_on_external_listener() {
    let cfg = example_envoy(&example_config());
    for v in vhosts(&cfg, EXTERNAL) {
        assert!(matches!(
            v.routes[0].action,
            Some(envoy_route::Action::Route(_))
        ));
    }
}

// routes ----------------------------------------------------------------------------------

#[test]
fn splits_become_weighted_clusters() {
    let cfg = example_envoy(&example_config());
    let v = vhost_for(&cfg, EXTERNAL, "traffic-example.default.example.com").unwrap();
    assert_eq!(v.routes.len(), 1);
    assert_eq!(
        weights(&v.routes[0]),
        [
            (format!("default/{R1}:80"), 80),
            (format!("default/{R2}:80"), 20)
        ]
    );
    let v = vhost_for(&cfg, EXTERNAL, "v2-traffic-example.default.example.com").unwrap();
    assert_eq!(weights(&v.routes[0]), [(format!("default/{R2}:80"), 100)]);
}

#[test]
fn split_headers_are_set_per_weighted_cluster_with_overwrite() {
    let cfg = example_envoy(&example_config());
    let v = vhost_for(&cfg, EXTERNAL, "traffic-example.default.example.com").unwrap();
    let clusters = match &action(&v.routes[0]).cluster_specifier {
        Some(route_action::ClusterSpecifier::WeightedClusters(w)) => &w.clusters,
        _ => unreachable!(),
    };
    assert_eq!(
        set_headers(&clusters[1].request_headers_to_add),
        [
            ("Knative-Serving-Namespace".into(), "default".into(), true),
            ("Knative-Serving-Revision".into(), R2.into(), true),
        ]
    );
}

#[test]
fn path_headers_are_set_with_overwrite() {
    // On a tag host, a client's Knative-Serving-Tag is overwritten with the host's tag.
    let cfg = example_envoy(&example_config_with_tag_routing());
    let v = vhost_for(&cfg, EXTERNAL, "v1-traffic-example.default.example.com").unwrap();
    assert_eq!(
        set_headers(&v.routes[0].request_headers_to_add),
        [("Knative-Serving-Tag".into(), "v1".into(), true)]
    );
    let v = vhost_for(&cfg, EXTERNAL, "traffic-example.default.example.com").unwrap();
    assert_eq!(
        set_headers(&v.routes.last().unwrap().request_headers_to_add),
        [("Knative-Serving-Default-Route".into(), "true".into(), true)]
    );
}

#[test]
fn tag_header_routes_are_exact_matches_before_the_catch_all() {
    // An unknown or empty Knative-Serving-Tag matches no header route and falls through to
    // the last, header-less route (first match wins).
    let cfg = example_envoy(&example_config_with_tag_routing());
    for l in [EXTERNAL, INTERNAL] {
        let v = vhost_for(&cfg, l, "traffic-example.default.svc.cluster.local")
            .or_else(|| vhost_for(&cfg, l, "traffic-example.default.example.com"))
            .unwrap();
        let matches: Vec<_> = v.routes.iter().map(header_matches).collect();
        assert_eq!(
            matches,
            [
                vec![("Knative-Serving-Tag".to_string(), "v1".to_string())],
                vec![("Knative-Serving-Tag".to_string(), "v2".to_string())],
                vec![],
            ],
            "{l}"
        );
        assert_eq!(weights(&v.routes[0]), [(format!("default/{R1}:80"), 100)]);
        assert_eq!(weights(&v.routes[1]), [(format!("default/{R2}:80"), 100)]);
        assert_eq!(weights(&v.routes[2]).len(), 2);
    }
}

#[test]
fn route_timeout_is_disabled_and_no_retries_are_configured() {
    let cfg = example_envoy(&example_config_with_tag_routing());
    for l in [EXTERNAL, INTERNAL] {
        for v in vhosts(&cfg, l) {
            assert_eq!(v.retry_policy, None);
            for r in &v.routes {
                let a = action(r);
                let t = a.timeout.as_ref().expect("an explicit timeout");
                assert_eq!((t.seconds, t.nanos), (0, 0));
                assert_eq!(a.retry_policy, None);
            }
        }
    }
}

#[test]
fn paths_are_prefix_matches_and_an_empty_path_matches_everything() {
    let mut foo = path(vec![split(R1, 80, 100)]);
    foo.prefix = "/foo".into();
    let mut empty = path(vec![split(R2, 80, 100)]);
    empty.prefix = String::new();
    let ing = mk_ingress(
        vec![rule(
            &["a.example.com"],
            Visibility::ExternalIP,
            vec![foo, empty],
        )],
        HttpOption::Enabled,
    );
    let cfg = build_one(&store(), ing);
    let v = vhost_for(&cfg, EXTERNAL, "a.example.com").unwrap();
    let prefixes: Vec<String> = v.routes.iter().map(prefix).collect();
    assert_eq!(prefixes, ["/foo", "/"]);
}

#[test]
fn zero_percent_splits_get_no_weighted_cluster() {
    let ing = mk_ingress(
        vec![rule(
            &["a.example.com"],
            Visibility::ExternalIP,
            vec![path(vec![split(R1, 80, 100), split(R2, 80, 0)])],
        )],
        HttpOption::Enabled,
    );
    let cfg = build_one(&store(), ing);
    let v = vhost_for(&cfg, EXTERNAL, "a.example.com").unwrap();
    assert_eq!(weights(&v.routes[0]), [(format!("default/{R1}:80"), 100)]);
}

#[test]
fn rewrite_host_becomes_host_rewrite_literal() {
    let mut p = path(vec![split(R1, 80, 100)]);
    p.rewrite_host = Some("hello.default.svc.cluster.local".into());
    let ing = mk_ingress(
        vec![rule(&["app.example.org"], Visibility::ExternalIP, vec![p])],
        HttpOption::Enabled,
    );
    let cfg = build_one(&store(), ing);
    let v = vhost_for(&cfg, EXTERNAL, "app.example.org").unwrap();
    assert_eq!(
        action(&v.routes[0]).host_rewrite_specifier,
        Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(
            "hello.default.svc.cluster.local".into()
        ))
    );
}

// upstream clusters and endpoints ----------------------------------------------------------

const H2C_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

fn one_split_ingress(service: &str, port: u16) -> Ingress {
    let mut s = split(service, port, 100);
    s.backend.service = service.into();
    mk_ingress(
        vec![rule(
            &["a.example.com"],
            Visibility::ExternalIP,
            vec![path(vec![s])],
        )],
        HttpOption::Enabled,
    )
}

fn mk_service(name: &str, ports: Vec<ServicePort>) -> Service {
    Service {
        metadata: mk_meta(NS, name),
        spec: ServiceSpec {
            type_: None,
            ports,
            external_name: None,
        },
    }
}

fn port(name: &str, port: i64, target: i64) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::Int(target)),
        protocol: Some("TCP".into()),
        app_protocol: None,
    }
}

#[test]
fn h2c_revision_gets_an_http2_upstream() {
    // Without a Service object: Knative's convention, port 81 is h2c.
    let store = mk_store([Object::Revision(mk_h2c_revision("grpc-1", "grpc"))]);
    let ing = translate_route(
        &store,
        &example_config(),
        &mk_route("grpc", vec![to_revision("grpc-1", 100)]),
    )
    .unwrap();
    let cfg = build_one(&store, ing);
    assert_eq!(cfg.clusters.len(), 1);
    assert_eq!(cfg.clusters[0].name, "default/grpc-1:81");
    assert!(cfg.clusters[0]
        .typed_extension_protocol_options
        .contains_key(H2C_OPTIONS));
    // HTTP/1 revisions do not.
    let cfg = example_envoy(&example_config());
    assert!(cfg
        .clusters
        .iter()
        .all(|c| c.typed_extension_protocol_options.is_empty()));
}

#[test]
fn service_port_named_http2_or_h2c_app_protocol_is_an_http2_upstream() {
    let mut app_protocol = port("web", 80, 8080);
    app_protocol.app_protocol = Some("kubernetes.io/h2c".into());
    for (name, p) in [
        ("a", port("http2", 80, 8013)),
        ("b", port("h2c", 80, 8013)),
        ("c", app_protocol),
    ] {
        let store = mk_store([Object::Service(mk_service(name, vec![p]))]);
        let cfg = build_one(&store, one_split_ingress(name, 80));
        assert!(
            cfg.clusters[0]
                .typed_extension_protocol_options
                .contains_key(H2C_OPTIONS),
            "{name}"
        );
    }
    let store = mk_store([Object::Service(mk_service(
        "d",
        vec![port("http", 80, 8012)],
    ))]);
    let cfg = build_one(&store, one_split_ingress("d", 80));
    assert!(cfg.clusters[0].typed_extension_protocol_options.is_empty());
}

#[test]
fn external_name_service_becomes_a_logical_dns_cluster() {
    let mut svc = mk_service("ext", vec![port("http", 80, 80)]);
    svc.spec.type_ = Some("ExternalName".into());
    svc.spec.external_name = Some("gateway.example.net".into());
    let store = mk_store([Object::Service(svc)]);
    let cfg = build_one(&store, one_split_ingress("ext", 80));
    let c = &cfg.clusters[0];
    assert_eq!(
        c.cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::LogicalDns as i32
        ))
    );
    let la = c.load_assignment.as_ref().unwrap();
    let addr = endpoint_addresses(la);
    assert_eq!(addr, [("gateway.example.net".to_string(), 80)]);
    // No EDS resource for it.
    assert!(cfg.endpoints.is_empty());
}

fn endpoint_addresses(
    la: &envoy_api::pb::envoy::config::endpoint::v3::ClusterLoadAssignment,
) -> Vec<(String, u32)> {
    use envoy_api::pb::envoy::config::core::v3::{address, socket_address};
    la.endpoints
        .iter()
        .flat_map(|l| l.lb_endpoints.iter())
        .map(|e| match &e.host_identifier {
            Some(lb_endpoint::HostIdentifier::Endpoint(ep)) => {
                match ep.address.as_ref().unwrap().address.as_ref().unwrap() {
                    address::Address::SocketAddress(sa) => (
                        sa.address.clone(),
                        match sa.port_specifier {
                            Some(socket_address::PortSpecifier::PortValue(p)) => p,
                            _ => 0,
                        },
                    ),
                    other => panic!("{other:?}"),
                }
            }
            other => panic!("{other:?}"),
        })
        .collect()
}

fn mk_slice(
    name: &str,
    service: &str,
    ports: &[(&str, i64)],
    endpoints: &[(&str, Option<bool>)],
) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            labels: map(&[(SERVICE_NAME_LABEL, service)]),
            ..mk_meta(NS, name)
        },
        address_type: "IPv4".into(),
        endpoints: endpoints
            .iter()
            .map(|(ip, ready)| Endpoint {
                addresses: [ip.to_string().into()].into(),
                conditions: EndpointConditions { ready: *ready },
            })
            .collect(),
        ports: ports
            .iter()
            .map(|(n, p)| EndpointPort {
                name: Some((*n).into()),
                port: Some(*p),
                protocol: Some("TCP".into()),
                app_protocol: None,
            })
            .collect(),
    }
}

#[test]
fn endpoints_are_ready_addresses_on_the_target_port_of_the_service_port() {
    // The revision's public Service: port 80 "http" → 8012, 443 "https" → 8112.
    let store = mk_store([
        Object::Service(mk_service(
            R1,
            vec![port("http", 80, 8012), port("https", 443, 8112)],
        )),
        Object::EndpointSlice(mk_slice(
            "s1",
            R1,
            &[("https", 8112), ("http", 8012)],
            &[
                ("10.0.0.1", None),
                ("10.0.0.2", Some(true)),
                ("10.0.0.3", Some(false)),
            ],
        )),
    ]);
    let cfg = build_one(&store, one_split_ingress(R1, 80));
    assert_eq!(
        cfg.clusters[0].cluster_discovery_type,
        Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32
        ))
    );
    assert_eq!(cfg.endpoints.len(), 1);
    assert_eq!(cfg.endpoints[0].cluster_name, format!("default/{R1}:80"));
    assert_eq!(
        endpoint_addresses(&cfg.endpoints[0]),
        [
            ("10.0.0.1".to_string(), 8012),
            ("10.0.0.2".to_string(), 8012)
        ]
    );
}

#[test]
fn endpoints_without_a_service_use_the_port_named_http_or_http2() {
    let store = mk_store([
        Object::EndpointSlice(mk_slice(
            "s1",
            R1,
            &[("http", 8012), ("http2", 8013)],
            &[("10.0.0.1", None)],
        )),
        Object::EndpointSlice(mk_slice(
            "s2",
            R2,
            &[("http2", 8013)],
            &[("10.0.0.2", None)],
        )),
    ]);
    let cfg = build_one(&store, one_split_ingress(R1, 80));
    assert_eq!(
        endpoint_addresses(&cfg.endpoints[0]),
        [("10.0.0.1".to_string(), 8012)]
    );
    let cfg = build_one(&store, one_split_ingress(R2, 81));
    assert_eq!(
        endpoint_addresses(&cfg.endpoints[0]),
        [("10.0.0.2".to_string(), 8013)]
    );
}

#[test]
fn one_cluster_per_backend_sorted_by_name() {
    let cfg = example_envoy(&example_config_with_tag_routing());
    let names: Vec<&str> = cfg.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [format!("default/{R1}:80"), format!("default/{R2}:80")]
    );
    let eds: Vec<&str> = cfg
        .endpoints
        .iter()
        .map(|e| e.cluster_name.as_str())
        .collect();
    assert_eq!(eds, names);
}

mod scoped_layout {
    use super::*;
    use crate::envoy::{scoped_route_config_name, scopes_locator};

    fn traffic_example_ingress() -> (Ingress, Store) {
        let store = store();
        let ing = translate_route(&store, &example_config(), &traffic_example()).unwrap();
        (ing, store)
    }

    fn scoped(ing: &Ingress) -> EnvoyConfig {
        build(
            std::slice::from_ref(ing),
            &Store::new(),
            &ListenerSettings {
                layout: RouteLayout::Scoped,
                ..ListenerSettings::default()
            },
        )
    }

    #[test]
    fn scoped_layout_gives_one_route_configuration_per_object() {
        let (ing, _) = traffic_example_ingress();
        let cfg = scoped(&ing);
        let names: Vec<&str> = cfg.routes.iter().map(|r| r.name.as_str()).collect();
        let shared = scoped_route_config_name(&ing);
        // Besides the two placeholders, one RouteConfiguration that both listeners use.
        assert_eq!(
            names
                .iter()
                .filter(|n| !n.ends_with("/placeholder"))
                .collect::<Vec<_>>(),
            [&shared.as_str()],
            "{names:?}"
        );
        for listener in [EXTERNAL, INTERNAL] {
            let prefix = scopes_locator(listener);
            let prefix = prefix.trim_end_matches('*');
            assert!(
                cfg.scoped_routes
                    .iter()
                    .filter(|s| s.name.starts_with(prefix))
                    .any(|s| s.route_configuration_name == shared),
                "{listener} scopes use {shared}"
            );
        }
        // Every external host has exactly one external scope keyed on the bare host.
        for rule in ing
            .rules
            .iter()
            .filter(|r| r.visibility == Visibility::ExternalIP)
        {
            for h in &rule.hosts {
                let n = cfg
                    .scoped_routes
                    .iter()
                    .filter(|s| {
                        s.name
                            .starts_with(scopes_locator(EXTERNAL).trim_end_matches('*'))
                            && s.name.ends_with(&format!("/{h}"))
                    })
                    .count();
                assert_eq!(n, 1, "{h}");
            }
        }
    }

    #[test]
    fn scoped_layout_carries_each_traffic_names_routes_once() {
        let (ing, _) = traffic_example_ingress();
        let cfg = scoped(&ing);
        let shared = scoped_route_config_name(&ing);
        let rc = cfg.routes.iter().find(|r| r.name == shared).unwrap();
        // Default, v1 and v2: each one virtual host holding its cluster-local and its
        // external domains, where the per-listener layout has two with the same routes.
        assert_eq!(rc.virtual_hosts.len(), 3, "{:#?}", rc.virtual_hosts);
        let per_listener = build(
            std::slice::from_ref(&ing),
            &Store::new(),
            &ListenerSettings {
                layout: RouteLayout::PerListener,
                ..ListenerSettings::default()
            },
        );
        for host in [
            "traffic-example.default.example.com",
            "traffic-example.default.svc.cluster.local",
            "v1-traffic-example.default.example.com",
            "v1-traffic-example.default",
            "v2-traffic-example.default.svc",
        ] {
            let merged = rc
                .virtual_hosts
                .iter()
                .find(|v| v.domains.iter().any(|d| d == host))
                .unwrap_or_else(|| panic!("no virtual host for {host}"));
            let alone = vhost_for(&per_listener, INTERNAL, host).unwrap();
            assert_eq!(merged.routes, alone.routes, "{host}");
            assert!(merged.domains.contains(&format!("{host}:*")), "{host}");
        }
    }

    #[test]
    fn scoped_layout_keeps_cluster_local_hosts_off_the_external_scope_set() {
        let (ing, _) = traffic_example_ingress();
        let cfg = scoped(&ing);
        let external_prefix = scopes_locator(EXTERNAL);
        let external_prefix = external_prefix.trim_end_matches('*');
        assert!(cfg
            .scoped_routes
            .iter()
            .filter(|s| s.name.starts_with(external_prefix))
            .all(|s| !s.name.contains(".svc") && !s.name.ends_with(".default")));
    }

    #[test]
    fn scoped_layout_always_has_a_placeholder_scope_per_listener() {
        let cfg = build::<Ingress>(&[], &Store::new(), &ListenerSettings::default());
        for listener in [EXTERNAL, INTERNAL] {
            let prefix = scopes_locator(listener);
            let prefix = prefix.trim_end_matches('*');
            assert_eq!(
                cfg.scoped_routes
                    .iter()
                    .filter(|s| s.name.starts_with(prefix))
                    .count(),
                1
            );
        }
    }
}

/// `validate`'s "no endpoints" warning asks what the cluster gets: a slice on another port
/// than the one backing the Service port gives none; an ExternalName Service needs none.
#[test]
fn backend_has_endpoints_as_its_cluster_does() {
    use crate::envoy::backend_has_endpoints;
    let backend = |svc: &str| split(svc, 80, 100).backend;
    let mut ext = mk_service("ext", vec![port("http", 80, 80)]);
    ext.spec.type_ = Some("ExternalName".into());
    ext.spec.external_name = Some("gateway.example.net".into());
    let store = mk_store([
        Object::Service(mk_service(R1, vec![port("http", 80, 8012)])),
        Object::EndpointSlice(mk_slice("s1", R1, &[("http", 8012)], &[("10.0.0.1", None)])),
        Object::Service(mk_service(R2, vec![port("http", 80, 8012)])),
        Object::EndpointSlice(mk_slice("s2", R2, &[("other", 9)], &[("10.0.0.2", None)])),
        Object::Service(ext),
    ]);
    assert!(backend_has_endpoints(&backend(R1), &store, true));
    assert!(!backend_has_endpoints(&backend(R2), &store, true));
    assert!(backend_has_endpoints(&backend("ext"), &store, true));
    assert!(!backend_has_endpoints(&backend("none"), &store, true));
    let cfg = build_one(&store, one_split_ingress(R2, 80));
    assert!(
        endpoint_addresses(&cfg.endpoints[0]).is_empty(),
        "the same rule"
    );
}
