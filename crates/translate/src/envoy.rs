//! Ingress (intermediate model) → Envoy resources: listeners, route configurations,
//! EDS clusters and their endpoints. Pure and deterministic: the same input gives the same
//! resources in the same order, and no map field with more than one entry is ever set (prost
//! encodes maps in random order, which would break content versions).

use std::collections::BTreeSet;
use std::sync::Arc;

use envoy_api::pb::envoy::config::cluster::v3::{cluster, Cluster};
use envoy_api::pb::envoy::config::core::v3::{
    address, config_source, header_value_option::HeaderAppendAction, socket_address,
    AggregatedConfigSource, ApiVersion, ConfigSource, HeaderValue, HeaderValueOption,
    Http2ProtocolOptions, SocketAddress,
};
use envoy_api::pb::envoy::config::core::v3::{data_source, DataSource};
use envoy_api::pb::envoy::config::endpoint::v3::{
    lb_endpoint, ClusterLoadAssignment, LbEndpoint, LocalityLbEndpoints,
};
use envoy_api::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};
use envoy_api::pb::envoy::config::route::v3::{
    header_matcher, redirect_action, route, route_action, route_match, scoped_route_configuration,
    weighted_cluster, HeaderMatcher, RedirectAction, Route, RouteAction, RouteConfiguration,
    RouteMatch, ScopedRouteConfiguration, VirtualHost, WeightedCluster,
};
use envoy_api::pb::envoy::extensions::filters::http::lua::v3::Lua;
use envoy_api::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_api::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    http_connection_manager, http_filter, scoped_routes, HttpConnectionManager, HttpFilter, Rds,
    ScopedRds, ScopedRoutes,
};
use envoy_api::pb::envoy::extensions::upstreams::http::v3::{
    http_protocol_options, HttpProtocolOptions,
};
use envoy_api::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};
use envoy_api::pb::google::protobuf::{Any, Duration, UInt32Value};
use prost::Message;

use model::config::HttpOption;
use model::objects::Service;
use model::{ObjectKey, Store};

use super::ir::{Backend, HttpPath, Ingress, Visibility};

/// How virtual hosts are grouped into RouteConfigurations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RouteLayout {
    /// One RouteConfiguration per listener holding every virtual host (like kourier): one
    /// Route's change resends every host (megabytes in a large cluster).
    PerListener,
    /// Scoped routes (SRDS): one small RouteConfiguration per Knative object (shared by both
    /// listeners), selected by a scope per host and listener (keys: lowercase host without port; a Lua filter
    /// lowercases the Host first); a change costs only that object's bytes.
    #[default]
    Scoped,
}

/// Where the gateway listens; from flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSettings {
    pub bind_address: String,
    pub external_port: u16,
    pub internal_port: u16,
    pub layout: RouteLayout,
    /// The HTTPS listeners (which exist while some certificate is served).
    pub tls: super::tls::TlsSettings,
}

impl Default for ListenerSettings {
    fn default() -> Self {
        ListenerSettings {
            bind_address: "0.0.0.0".to_string(),
            external_port: 8080,
            internal_port: 8081,
            layout: RouteLayout::default(),
            tls: Default::default(),
        }
    }
}

/// The Envoy resources for one state of the world, each list sorted by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnvoyConfig {
    pub clusters: Vec<Cluster>,
    pub endpoints: Vec<ClusterLoadAssignment>,
    pub listeners: Vec<Listener>,
    pub scoped_routes: Vec<ScopedRouteConfiguration>,
    pub routes: Vec<RouteConfiguration>,
    /// SDS: the certificates the HTTPS listeners serve.
    pub secrets: Vec<envoy_api::pb::envoy::extensions::transport_sockets::tls::v3::Secret>,
}

pub const EXTERNAL: &str = "external";
pub const INTERNAL: &str = "internal";

/// Translates the accepted Ingresses (hosts already unique) into Envoy resources, with
/// certificates not checked against the time.
pub fn build<I: std::borrow::Borrow<Ingress>>(
    ingresses: &[I],
    store: &Store,
    listeners: &ListenerSettings,
) -> EnvoyConfig {
    let plan = super::tls::Planner::new().plan(
        ingresses.iter().map(|i| i.borrow()),
        store,
        &listeners.tls,
        None,
    );
    build_with(ingresses, store, listeners, true, &plan)
}

/// [`build`] with the HTTPS side planned by the caller, optionally passing endpoint
/// addresses through unchecked (test-only: lets a test make Envoy reject a config).
pub fn build_with<I: std::borrow::Borrow<Ingress>>(
    ingresses: &[I],
    store: &Store,
    listeners: &ListenerSettings,
    check_addresses: bool,
    tls: &super::tls::TlsPlan,
) -> EnvoyConfig {
    let mut per_ingress = Vec::with_capacity(ingresses.len());
    let mut backends = BTreeSet::new();
    for ing in ingresses {
        let ing = ing.borrow();
        let merge = listeners.layout == RouteLayout::Scoped;
        per_ingress.push((ing, virtual_hosts(ing, merge)));
        backends.extend(ing.backends().cloned());
    }
    let (mut routes, mut scoped_routes) = route_layout(listeners.layout, &per_ingress);
    let mut https = https_listeners(listeners, tls);
    let default_cert = listeners.tls.default_secret.is_some();
    match listeners.layout {
        RouteLayout::Scoped => {
            for name in https_listener_names(tls) {
                let (rc, s) = scoped_placeholder(name);
                scoped_routes.push(s);
                routes.push(rc);
            }
            for (ing, _) in &per_ingress {
                let rc: Arc<str> = scoped_route_config_name(ing).into();
                scoped_routes.extend(super::tls::https_scopes_with(
                    ing,
                    default_cert,
                    &rc,
                    |l, k, rc| scope(l, k, rc),
                ));
            }
            routes.sort_by(|a, b| a.name.cmp(&b.name));
            scoped_routes.sort_by(|a, b| a.name.cmp(&b.name));
        }
        RouteLayout::PerListener => {
            let (mut ext, mut int) = (Vec::new(), Vec::new());
            for (ing, _) in &per_ingress {
                let (e, i) = super::tls::https_virtual_hosts(ing, default_cert);
                ext.extend(e);
                int.extend(i);
            }
            for (name, vhosts) in [
                (super::tls::EXTERNAL_TLS, ext),
                (super::tls::INTERNAL_TLS, int),
            ] {
                if https_listener_names(tls).any(|n| n == name) {
                    let mut virtual_hosts = vhosts;
                    virtual_hosts.sort_by(|a, b| a.name.cmp(&b.name));
                    routes.push(RouteConfiguration {
                        name: name.to_string(),
                        virtual_hosts,
                        ..Default::default()
                    });
                }
            }
            routes.sort_by(|a, b| a.name.cmp(&b.name));
        }
    }

    let mut clusters = Vec::new();
    let mut endpoints = Vec::new();
    for b in &backends {
        let svc = store
            .services
            .get(&ObjectKey::new(b.namespace.clone(), b.service.clone()));
        let (c, e) = cluster_for(b, svc, store, check_addresses);
        clusters.push(c);
        endpoints.extend(e);
    }
    EnvoyConfig {
        clusters,
        endpoints,
        listeners: {
            let mut all = vec![
                listener(
                    EXTERNAL,
                    &listeners.bind_address,
                    listeners.external_port,
                    listeners.layout,
                ),
                listener(
                    INTERNAL,
                    &listeners.bind_address,
                    listeners.internal_port,
                    listeners.layout,
                ),
            ];
            all.append(&mut https);
            all.sort_by(|a, b| a.name.cmp(&b.name));
            all
        },
        scoped_routes,
        routes,
        secrets: tls
            .secrets
            .iter()
            .map(|(name, c)| super::tls::secret(name, c))
            .collect(),
    }
}

/// The HTTPS listeners a plan has: those with chains (a listener needs at least one).
pub fn https_listener_names(tls: &super::tls::TlsPlan) -> impl Iterator<Item = &'static str> + '_ {
    [
        (super::tls::EXTERNAL_TLS, &tls.external),
        (super::tls::INTERNAL_TLS, &tls.internal),
    ]
    .into_iter()
    .filter(|(_, chains)| !chains.is_empty())
    .map(|(name, _)| name)
}

/// The HTTPS listeners of a plan.
pub fn https_listeners(settings: &ListenerSettings, tls: &super::tls::TlsPlan) -> Vec<Listener> {
    let mut out = Vec::new();
    for (name, port, chains) in [
        (
            super::tls::EXTERNAL_TLS,
            settings.tls.external_port,
            &tls.external,
        ),
        (
            super::tls::INTERNAL_TLS,
            settings.tls.internal_port,
            &tls.internal,
        ),
    ] {
        if !chains.is_empty() {
            out.push(super::tls::https_listener(
                name,
                &settings.bind_address,
                port,
                settings.layout,
                chains,
                &settings.tls,
            ));
        }
    }
    out
}

/// One Ingress' virtual hosts: (external, internal).
pub type IngressHosts = (Vec<VirtualHost>, Vec<VirtualHost>);

/// With `merge`, rules with the same paths make one internal virtual host, their domains
/// joined: a Route's cluster-local and external rules share their paths, so a
/// RouteConfiguration holding both (the scoped layout's) carries those routes once. Each
/// listener still reaches only the hosts it has scopes for. (So with `merge`, external
/// virtual hosts carry routes only when redirected: otherwise only their domains are read.)
pub fn virtual_hosts(ing: &Ingress, merge: bool) -> IngressHosts {
    let mut external = Vec::new();
    let mut internal: Vec<VirtualHost> = Vec::new();
    // (paths, index of their internal virtual host)
    let mut seen: Vec<(&[super::ir::HttpPath], usize)> = Vec::new();
    let redirected = ing.http_option == HttpOption::Redirected;
    for rule in &ing.rules {
        let Some(name) = rule.hosts.first() else {
            continue;
        };
        let paths: &[super::ir::HttpPath] = &rule.paths;
        let same = seen
            .iter()
            .find(|(p, _)| std::ptr::eq(*p, paths) || *p == paths)
            .map(|(_, i)| *i);
        let external_rule = rule.visibility == Visibility::ExternalIP;
        // Built only when a virtual host carries them.
        let routes: Vec<Route> = if same.is_none() || (external_rule && !redirected && !merge) {
            paths.iter().map(make_route).collect()
        } else {
            Vec::new()
        };
        // http-protocol Disabled: the plain external listener does not serve it (HTTPS does).
        if external_rule && ing.http_option != HttpOption::Disabled {
            let ext = if redirected {
                vec![https_redirect_route()]
            } else if merge {
                Vec::new()
            } else {
                routes.clone()
            };
            external.push(virtual_host(name, &rule.hosts, ext));
        }
        match same {
            Some(i) => internal[i].domains.extend(domains(&rule.hosts)),
            None => {
                if merge {
                    seen.push((paths, internal.len()));
                }
                internal.push(virtual_host(name, &rule.hosts, routes));
            }
        }
    }
    (external, internal)
}

/// Key of the placeholder scope: a name no Host can carry (it starts with a dot).
const PLACEHOLDER_SCOPE_KEY: &str = ".placeholder.knative-xds.invalid";

/// The scope of one host (`key`) on one listener, pointing at `route_config`.
pub fn scope(listener: &str, key: &str, route_config: &str) -> ScopedRouteConfiguration {
    use scoped_route_configuration::key::{fragment, Fragment};
    ScopedRouteConfiguration {
        name: scope_name(listener, key),
        route_configuration_name: route_config.to_string(),
        key: Some(scoped_route_configuration::Key {
            fragments: vec![Fragment {
                r#type: Some(fragment::Type::StringKey(key.to_string())),
            }],
        }),
        ..Default::default()
    }
}

/// Authority of our xdstp resource names.
const XDSTP_SCOPES: &str = "xdstp://knative-xds/envoy.config.route.v3.ScopedRouteConfiguration";

/// The name of a listener's scope for one host.
pub fn scope_name(listener: &str, key: &str) -> String {
    format!("{XDSTP_SCOPES}/{listener}/{key}")
}

/// The scoped-route set a listener subscribes to.
pub fn scopes_locator(listener: &str) -> String {
    format!("{XDSTP_SCOPES}/{listener}/*")
}

/// The RouteConfiguration of one Knative object (scoped layout).
pub fn scoped_route_config_name(ing: &Ingress) -> String {
    let o = &ing.origin;
    format!(
        "{}/{}/{}",
        o.kind.display_name(),
        o.key.namespace,
        o.key.name
    )
}

/// How virtual hosts are grouped into RouteConfigurations: the one place that decides it.
/// Per listener: one RouteConfiguration named after it. Scoped: one per object, plus one
/// scope per host and listener pointing at it.
fn route_layout(
    layout: RouteLayout,
    per_ingress: &[(&Ingress, IngressHosts)],
) -> (Vec<RouteConfiguration>, Vec<ScopedRouteConfiguration>) {
    match layout {
        RouteLayout::PerListener => {
            let mut external: Vec<VirtualHost> = Vec::new();
            let mut internal: Vec<VirtualHost> = Vec::new();
            for (_, (ext, int)) in per_ingress {
                external.extend(ext.iter().cloned());
                internal.extend(int.iter().cloned());
            }
            external.sort_by(|a, b| a.name.cmp(&b.name));
            internal.sort_by(|a, b| a.name.cmp(&b.name));
            let routes = vec![
                RouteConfiguration {
                    name: EXTERNAL.to_string(),
                    virtual_hosts: external,
                    ..Default::default()
                },
                RouteConfiguration {
                    name: INTERNAL.to_string(),
                    virtual_hosts: internal,
                    ..Default::default()
                },
            ];
            (routes, Vec::new())
        }
        RouteLayout::Scoped => {
            let (mut routes, mut scopes) = scoped_placeholders();
            for (ing, hosts) in per_ingress {
                let (r, s) = scoped_resources(ing, hosts.clone());
                routes.extend(r);
                scopes.extend(s);
            }
            routes.sort_by(|a, b| a.name.cmp(&b.name));
            scopes.sort_by(|a, b| a.name.cmp(&b.name));
            (routes, scopes)
        }
    }
}

/// Scoped layout: a SotW Envoy never applies an empty scope set (it cannot tell "no
/// scopes" from "nothing for you"), so removing the last host would never take effect:
/// each listener keeps one scope that matches no real host.
pub fn scoped_placeholders() -> (Vec<RouteConfiguration>, Vec<ScopedRouteConfiguration>) {
    [EXTERNAL, INTERNAL]
        .map(scoped_placeholder)
        .into_iter()
        .unzip()
}

/// One listener's placeholder scope and its (empty) RouteConfiguration.
pub fn scoped_placeholder(listener: &str) -> (RouteConfiguration, ScopedRouteConfiguration) {
    let rc_name = format!("{listener}/placeholder");
    let s = scope(listener, PLACEHOLDER_SCOPE_KEY, &rc_name);
    let rc = RouteConfiguration {
        name: rc_name,
        ..Default::default()
    };
    (rc, s)
}

/// Scoped layout, one object: its RouteConfiguration and a scope per host and listener.
///
/// Both listeners' scopes point at one RouteConfiguration holding the internal virtual hosts,
/// which are every rule's (the external ones are the same rules, with the same routes): a
/// change to an object sends Envoy one resource, not one per listener. A listener reaches
/// only the hosts it has scopes for, so cluster-local hosts stay unreachable from outside.
/// Only when external traffic is redirected to HTTPS do the external hosts get their own
/// RouteConfiguration.
pub fn scoped_resources(
    ing: &Ingress,
    hosts: IngressHosts,
) -> (Vec<RouteConfiguration>, Vec<ScopedRouteConfiguration>) {
    scoped_resources_with(ing, hosts, |l, k, rc| scope(l, k, rc))
}

/// [`scoped_resources`], each scope made by `make_scope` from [`scope`]'s arguments (the
/// snapshot builder encodes them straight away).
pub fn scoped_resources_with<S>(
    ing: &Ingress,
    (ext, int): IngressHosts,
    mut make_scope: impl FnMut(&str, &str, &Arc<str>) -> S,
) -> (Vec<RouteConfiguration>, Vec<S>) {
    let mut routes = Vec::new();
    let mut scopes = Vec::new();
    if int.is_empty() && ext.is_empty() {
        return (routes, scopes);
    }
    // Shared by the object's scopes (`Arc`s: a stored scope keeps it).
    let shared: Arc<str> = scoped_route_config_name(ing).into();
    let mut external_rc = shared.clone();
    let redirected = ing.http_option == HttpOption::Redirected && !ext.is_empty();
    if redirected {
        external_rc = format!("{EXTERNAL}/{shared}").into();
    }
    for (listener, vhosts, rc_name) in [(EXTERNAL, &ext, &external_rc), (INTERNAL, &int, &shared)] {
        for host in vhosts.iter().flat_map(|v| v.domains.iter()) {
            if host.ends_with(":*") {
                continue; // the scope key is the host without its port
            }
            scopes.push(make_scope(listener, host, rc_name));
        }
    }
    if redirected {
        routes.push(RouteConfiguration {
            name: external_rc.to_string(),
            virtual_hosts: ext,
            ..Default::default()
        });
    }
    routes.push(RouteConfiguration {
        name: shared.to_string(),
        virtual_hosts: int,
        ..Default::default()
    });
    (routes, scopes)
}

pub(crate) fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        ..Default::default()
    }
}

pub(crate) fn any<M: Message + prost::Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

pub fn listener(name: &str, address: &str, port: u16, layout: RouteLayout) -> Listener {
    Listener {
        name: name.to_string(),
        address: Some(socket_address(address, port)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".to_string(),
                config_type: Some(filter::ConfigType::TypedConfig(any(&hcm(name, layout)))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub(crate) fn socket_address(
    address: &str,
    port: u16,
) -> envoy_api::pb::envoy::config::core::v3::Address {
    envoy_api::pb::envoy::config::core::v3::Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: address.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port as u32)),
            ..Default::default()
        })),
    }
}

/// The HTTP connection manager of listener `name`: its routes are the scope set or the
/// RouteConfiguration named after it.
pub(crate) fn hcm(name: &str, layout: RouteLayout) -> HttpConnectionManager {
    let route_specifier = match layout {
        RouteLayout::PerListener => http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: name.to_string(),
        }),
        RouteLayout::Scoped => {
            use scoped_routes::scope_key_builder::{fragment_builder, FragmentBuilder};
            http_connection_manager::RouteSpecifier::ScopedRoutes(ScopedRoutes {
                name: name.to_string(),
                // The Host without its port is the scope key.
                scope_key_builder: Some(scoped_routes::ScopeKeyBuilder {
                    fragments: vec![FragmentBuilder {
                        r#type: Some(fragment_builder::Type::HeaderValueExtractor(
                            fragment_builder::HeaderValueExtractor {
                                name: ":authority".to_string(),
                                element_separator: ":".to_string(),
                                extract_type: Some(
                                    fragment_builder::header_value_extractor::ExtractType::Index(0),
                                ),
                            },
                        )),
                    }],
                }),
                rds_config_source: Some(ads()),
                config_specifier: Some(scoped_routes::ConfigSpecifier::ScopedRds(ScopedRds {
                    scoped_rds_config_source: Some(ads()),
                    srds_resources_locator: scopes_locator(name),
                })),
            })
        }
    };
    HttpConnectionManager {
        stat_prefix: name.to_string(),
        // AUTO: HTTP/1 and HTTP/2 prior knowledge (h2c) on the same port, as Knative's
        // cluster-local callers may use either.
        codec_type: http_connection_manager::CodecType::Auto as i32,
        route_specifier: Some(route_specifier),
        http_filters: http_filters(layout),
        upgrade_configs: vec![http_connection_manager::UpgradeConfig {
            upgrade_type: "websocket".to_string(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Scope keys match the Host exactly, while a host name is case-insensitive: with scoped
/// routes the Host is lowercased first and the route (scope) looked up again.
const LOWERCASE_HOST_LUA: &str = r#"function envoy_on_request(h)
  local headers = h:headers()
  local host = headers:get(":authority")
  if host ~= nil then
    local lower = string.lower(host)
    if lower ~= host then
      headers:replace(":authority", lower)
      h:clearRouteCache()
    end
  end
end
"#;

fn http_filters(layout: RouteLayout) -> Vec<HttpFilter> {
    let mut filters = Vec::new();
    if layout == RouteLayout::Scoped {
        let lua = Lua {
            default_source_code: Some(DataSource {
                specifier: Some(data_source::Specifier::InlineString(
                    LOWERCASE_HOST_LUA.to_string(),
                )),
                ..Default::default()
            }),
            ..Default::default()
        };
        filters.push(HttpFilter {
            name: "envoy.filters.http.lua".to_string(),
            config_type: Some(http_filter::ConfigType::TypedConfig(any(&lua))),
            ..Default::default()
        });
    }
    filters.push(HttpFilter {
        name: "envoy.filters.http.router".to_string(),
        config_type: Some(http_filter::ConfigType::TypedConfig(
            any(&Router::default()),
        )),
        ..Default::default()
    });
    filters
}

pub(crate) fn virtual_host(
    name: &str,
    hosts: &[std::sync::Arc<str>],
    routes: Vec<Route>,
) -> VirtualHost {
    VirtualHost {
        name: name.to_string(),
        domains: domains(hosts),
        routes,
        ..Default::default()
    }
}

/// Each host with and without a port, as a web server would match it.
fn domains(hosts: &[std::sync::Arc<str>]) -> Vec<String> {
    hosts
        .iter()
        .flat_map(|h| [h.to_string(), format!("{h}:*")])
        .collect()
}

fn set_headers(headers: &super::ir::Headers) -> Vec<HeaderValueOption> {
    headers
        .iter()
        .map(|(k, v)| HeaderValueOption {
            header: Some(HeaderValue {
                key: k.to_string(),
                value: v.to_string(),
                ..Default::default()
            }),
            // Knative's appendHeaders set, never append.
            append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
            ..Default::default()
        })
        .collect()
}

fn route_match(path: &HttpPath) -> RouteMatch {
    RouteMatch {
        path_specifier: Some(route_match::PathSpecifier::Prefix(
            if path.prefix.is_empty() {
                "/".to_string()
            } else {
                path.prefix.clone()
            },
        )),
        headers: path
            .headers
            .iter()
            .map(|(k, v)| HeaderMatcher {
                name: k.to_string(),
                header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(
                    StringMatcher {
                        match_pattern: Some(string_matcher::MatchPattern::Exact(v.to_string())),
                        ..Default::default()
                    },
                )),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

pub(crate) fn make_route(path: &HttpPath) -> Route {
    let clusters = path
        .splits
        .iter()
        .filter(|s| s.percent > 0)
        .map(|s| weighted_cluster::ClusterWeight {
            name: s.backend.cluster_name(),
            weight: Some(UInt32Value { value: s.percent }),
            request_headers_to_add: set_headers(&s.append_headers),
            ..Default::default()
        })
        .collect();
    let action = RouteAction {
        cluster_specifier: Some(route_action::ClusterSpecifier::WeightedClusters(
            WeightedCluster {
                clusters,
                ..Default::default()
            },
        )),
        // Knative wants no route timeout (conformance `timeout`) and no retries.
        timeout: Some(Duration {
            seconds: 0,
            nanos: 0,
        }),
        host_rewrite_specifier: path
            .rewrite_host
            .clone()
            .map(route_action::HostRewriteSpecifier::HostRewriteLiteral),
        ..Default::default()
    };
    Route {
        r#match: Some(route_match(path)),
        action: Some(route::Action::Route(action)),
        request_headers_to_add: set_headers(&path.append_headers),
        ..Default::default()
    }
}

fn https_redirect_route() -> Route {
    Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".to_string())),
            ..Default::default()
        }),
        action: Some(route::Action::Redirect(RedirectAction {
            scheme_rewrite_specifier: Some(redirect_action::SchemeRewriteSpecifier::HttpsRedirect(
                true,
            )),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Whether a Service port speaks h2c: named `http2`/`h2c` or with appProtocol
/// `kubernetes.io/h2c`; without a Service, Knative's convention (port 81).
fn is_h2c(b: &Backend, svc: Option<&Service>) -> bool {
    match svc.and_then(|s| s.spec.ports.iter().find(|p| p.port == b.port as i64)) {
        Some(p) => {
            matches!(p.name.as_deref(), Some("http2") | Some("h2c"))
                || p.app_protocol.as_deref() == Some("kubernetes.io/h2c")
        }
        None => b.port == 81,
    }
}

pub fn cluster_for(
    b: &Backend,
    svc: Option<&Service>,
    store: &Store,
    check_addresses: bool,
) -> (Cluster, Option<ClusterLoadAssignment>) {
    let name = b.cluster_name();
    let mut c = Cluster {
        name: name.clone(),
        connect_timeout: Some(Duration {
            seconds: 5,
            nanos: 0,
        }),
        ..Default::default()
    };
    if is_h2c(b, svc) {
        let opts = HttpProtocolOptions {
            upstream_protocol_options: Some(
                http_protocol_options::UpstreamProtocolOptions::ExplicitHttpConfig(
                    http_protocol_options::ExplicitHttpConfig {
                        protocol_config: Some(
                            http_protocol_options::explicit_http_config::ProtocolConfig::Http2ProtocolOptions(
                                Http2ProtocolOptions::default(),
                            ),
                        ),
                    },
                ),
            ),
            ..Default::default()
        };
        // A single entry: the map's encoding is deterministic.
        c.typed_extension_protocol_options.insert(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
            any(&opts),
        );
    }
    let external_name = svc
        .filter(|s| s.spec.type_.as_deref() == Some("ExternalName"))
        .and_then(|s| s.spec.external_name.clone());
    if let Some(host) = external_name {
        c.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::LogicalDns as i32,
        ));
        // IPv4 first, IPv6 when that is all there is: works in single- and dual-stack
        // clusters (`localhost` resolves to ::1 first, where nothing may listen).
        c.dns_lookup_family = cluster::DnsLookupFamily::V4Preferred as i32;
        c.load_assignment = Some(load_assignment(&name, [(host, b.port as u32)].into()));
        return (c, None);
    }
    c.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
        cluster::DiscoveryType::Eds as i32,
    ));
    c.eds_cluster_config = Some(cluster::EdsClusterConfig {
        eds_config: Some(ads()),
        service_name: String::new(),
    });
    let cla = load_assignment(&name, ready_addresses(b, svc, store, check_addresses));
    (c, Some(cla))
}

/// Whether Envoy gets an address to send a backend's requests to: its Service is
/// ExternalName, or [`cluster_for`]'s endpoints are not empty.
pub fn backend_has_endpoints(b: &Backend, store: &Store, check_addresses: bool) -> bool {
    let svc = store
        .services
        .get(&ObjectKey::new(b.namespace.clone(), b.service.clone()));
    let external = svc.is_some_and(|s| {
        s.spec.type_.as_deref() == Some("ExternalName") && s.spec.external_name.is_some()
    });
    external || !ready_addresses(b, svc, store, check_addresses).is_empty()
}

/// Ready addresses of the Service's EndpointSlices, on the slice port that backs the
/// Service port (matched by port name, as Kubernetes does).
fn ready_addresses(
    b: &Backend,
    svc: Option<&Service>,
    store: &Store,
    check_addresses: bool,
) -> BTreeSet<(String, u32)> {
    let port_name: Option<String> = match svc {
        Some(s) => match s.spec.ports.iter().find(|p| p.port == b.port as i64) {
            Some(p) => Some(p.name.as_deref().unwrap_or_default().to_string()),
            None => return BTreeSet::new(),
        },
        None => match b.port {
            80 => Some("http".to_string()),
            81 => Some("http2".to_string()),
            _ => None,
        },
    };
    let mut out = BTreeSet::new();
    for slice in store.slices_for_service(&b.namespace, &b.service) {
        if !matches!(&*slice.address_type, "IPv4" | "IPv6" | "") {
            continue;
        }
        let port = slice.ports.iter().find(|p| match &port_name {
            Some(n) => p.name.as_deref().unwrap_or("") == n,
            None => p.port == Some(b.port as i64),
        });
        let Some(port) = port
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0 || !check_addresses)
            .map(u32::from)
        else {
            continue;
        };
        for ep in &slice.endpoints {
            if ep.conditions.ready == Some(false) {
                continue;
            }
            for a in &ep.addresses {
                // Invalid addresses are reported by `endpoint_slice_problems`.
                if !check_addresses || a.parse::<std::net::IpAddr>().is_ok() {
                    out.insert((a.to_string(), port));
                }
            }
        }
    }
    out
}

fn load_assignment(name: &str, addrs: BTreeSet<(String, u32)>) -> ClusterLoadAssignment {
    let lb_endpoints: Vec<LbEndpoint> = addrs
        .into_iter()
        .map(|(ip, port)| LbEndpoint {
            host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(
                envoy_api::pb::envoy::config::endpoint::v3::Endpoint {
                    address: Some(envoy_api::pb::envoy::config::core::v3::Address {
                        address: Some(address::Address::SocketAddress(SocketAddress {
                            address: ip,
                            port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
                            ..Default::default()
                        })),
                    }),
                    ..Default::default()
                },
            )),
            ..Default::default()
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: name.to_string(),
        endpoints: if lb_endpoints.is_empty() {
            Vec::new()
        } else {
            vec![LocalityLbEndpoints {
                lb_endpoints,
                ..Default::default()
            }]
        },
        ..Default::default()
    }
}

/// Problems of an EndpointSlice that would make Envoy reject its endpoints; the bad
/// addresses and ports are left out of the config.
pub fn endpoint_slice_problems(slice: &model::objects::EndpointSlice) -> Vec<super::Problem> {
    let mut problems = Vec::new();
    if !matches!(&*slice.address_type, "IPv4" | "IPv6" | "" | "FQDN") {
        problems.push(super::Problem::new(
            "addressType",
            format!("{:?} is not one of IPv4, IPv6, FQDN", slice.address_type),
        ));
    }
    if matches!(&*slice.address_type, "IPv4" | "IPv6" | "") {
        for (i, ep) in slice.endpoints.iter().enumerate() {
            for (j, a) in ep.addresses.iter().enumerate() {
                if a.parse::<std::net::IpAddr>().is_err() {
                    problems.push(super::Problem::new(
                        format!("endpoints[{i}].addresses[{j}]"),
                        format!("{a:?} is not an IP address"),
                    ));
                }
            }
        }
    }
    for (i, p) in slice.ports.iter().enumerate() {
        if let Some(port) = p.port {
            if !(1..=65535).contains(&port) {
                problems.push(super::Problem::new(
                    format!("ports[{i}].port"),
                    format!("{port} is not a port number (1-65535)"),
                ));
            }
        }
    }
    problems
}
