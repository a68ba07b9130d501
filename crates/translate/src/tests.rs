//! Unit tests of the translation, one per rule of knative-routing.md §1–§4 and §7, each
//! named after the rule. Inputs are built directly as structs with the small builders
//! below; assertions are on the intermediate `ir::Ingress` and, for listener-level rules,
//! on `envoy::build`'s output.

mod config;
mod domain_mapping;
mod envoy;
mod hosts;
mod incremental;
mod kingress;
mod layout;
mod resolution;
mod tls;
mod translator;
mod validation;

use std::collections::BTreeMap;

use model::config::KnativeConfig;
use model::objects::{
    ConfigMap, Configuration, ConfigurationStatus, Container, ContainerPort, KService,
    KServiceSpec, ObjectMeta, OwnerReference, Revision, RevisionSpec, Route, RouteSpec, Service,
    Status, TrafficTarget,
};
use model::{Object, Store};

use super::ir::{headers, Backend, HttpPath, Ingress, Rule, Split, Visibility};
use super::route::{self, RouteInput};
use super::Problem;

pub(crate) const NS: &str = "default";
pub(crate) const SYSTEM_NS: &str = "knative-serving";
pub(crate) const CLUSTER_DOMAIN: &str = "cluster.local";

/// A header map (or any string map) from pairs.
pub(crate) fn map<M: FromIterator<(String, String)>>(pairs: &[(&str, &str)]) -> M {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(crate) fn mk_meta(ns: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.into(),
        namespace: ns.into(),
        ..Default::default()
    }
}

pub(crate) fn ready_status(observed_generation: i64) -> Status {
    Status {
        observed_generation: Some(observed_generation),
        conditions: [model::objects::Condition {
            type_: "Ready".into(),
            status: "True".into(),
            ..Default::default()
        }]
        .into(),
    }
}

/// A ready HTTP/1 Revision of Configuration (and Knative Service) `config`, in `NS`.
pub(crate) fn mk_revision(name: &str, config: &str) -> Revision {
    Revision {
        metadata: ObjectMeta {
            labels: map(&[
                (route::CONFIGURATION_LABEL, config),
                (route::SERVICE_LABEL, config),
            ]),
            generation: Some(1),
            ..mk_meta(NS, name)
        },
        spec: RevisionSpec {
            containers: vec![Container {
                ports: vec![ContainerPort {
                    name: Some("http1".into()),
                    container_port: Some(8080),
                }],
            }],
        },
        status: Some(ready_status(1)),
    }
}

/// Like [`mk_revision`], with the first container port named `h2c`.
pub(crate) fn mk_h2c_revision(name: &str, config: &str) -> Revision {
    let mut rev = mk_revision(name, config);
    rev.spec.containers[0].ports[0].name = Some("h2c".into());
    rev
}

pub(crate) fn mk_configuration(name: &str, latest_ready: Option<&str>) -> Configuration {
    Configuration {
        metadata: mk_meta(NS, name),
        status: ConfigurationStatus {
            latest_ready_revision_name: latest_ready.map(str::to_string),
            latest_created_revision_name: latest_ready.map(str::to_string),
        },
        ..Default::default()
    }
}

pub(crate) fn mk_route(name: &str, traffic: Vec<TrafficTarget>) -> Route {
    Route {
        metadata: mk_meta(NS, name),
        spec: RouteSpec { traffic },
    }
}

pub(crate) fn mk_kservice(name: &str, traffic: Vec<TrafficTarget>) -> KService {
    KService {
        metadata: mk_meta(NS, name),
        spec: KServiceSpec {
            traffic,
            ..Default::default()
        },
    }
}

/// `{revisionName: rev, percent}`.
pub(crate) fn to_revision(rev: &str, percent: i64) -> TrafficTarget {
    TrafficTarget {
        revision_name: Some(rev.to_string()),
        percent: Some(percent),
        ..Default::default()
    }
}

/// `{configurationName: config, percent}`.
pub(crate) fn to_configuration(config: &str, percent: i64) -> TrafficTarget {
    TrafficTarget {
        configuration_name: Some(config.to_string()),
        percent: Some(percent),
        ..Default::default()
    }
}

/// `{latestRevision: true, percent}` (in a Knative Service).
pub(crate) fn to_latest(percent: i64) -> TrafficTarget {
    TrafficTarget {
        latest_revision: Some(true),
        percent: Some(percent),
        ..Default::default()
    }
}

pub(crate) fn tagged(tag: &str, target: TrafficTarget) -> TrafficTarget {
    TrafficTarget {
        tag: Some(tag.to_string()),
        ..target
    }
}

/// A Route's placeholder Kubernetes Service, optionally with a visibility label value.
pub(crate) fn mk_placeholder(name: &str, visibility: Option<&str>) -> Service {
    let mut meta = mk_meta(NS, name);
    if let Some(v) = visibility {
        meta.labels = map(&[(model::config::VISIBILITY_LABEL, v)]);
    }
    Service {
        metadata: meta,
        ..Default::default()
    }
}

/// `config-domain`, `config-network`, `config-features` in the system namespace, each
/// with the given data.
pub(crate) fn mk_config_maps(
    domain: &[(&str, &str)],
    network: &[(&str, &str)],
    features: &[(&str, &str)],
) -> [ConfigMap; 3] {
    let cm = |name: &str, data: &[(&str, &str)]| ConfigMap {
        metadata: mk_meta(SYSTEM_NS, name),
        data: map(data),
    };
    [
        cm(model::config::CONFIG_DOMAIN, domain),
        cm(model::config::CONFIG_NETWORK, network),
        cm(model::config::CONFIG_FEATURES, features),
    ]
}

/// The Knative config the three ConfigMaps give (panics on a config error).
pub(crate) fn mk_config(
    domain: &[(&str, &str)],
    network: &[(&str, &str)],
    features: &[(&str, &str)],
) -> KnativeConfig {
    let [d, n, f] = mk_config_maps(domain, network, features);
    KnativeConfig::from_config_maps(CLUSTER_DOMAIN, Some(&d), Some(&n), Some(&f))
        .expect("valid config maps")
}

/// config-domain `example.com`, everything else default (tag-header routing off).
pub(crate) fn example_config() -> KnativeConfig {
    mk_config(&[("example.com", "")], &[], &[])
}

/// config-domain `example.com` and `tag-header-based-routing: Enabled`.
pub(crate) fn example_config_with_tag_routing() -> KnativeConfig {
    mk_config(
        &[("example.com", "")],
        &[],
        &[("tag-header-based-routing", "Enabled")],
    )
}

pub(crate) fn mk_store(objects: impl IntoIterator<Item = Object>) -> Store {
    let mut store = Store::new();
    for o in objects {
        store.apply(o);
    }
    store
}

pub(crate) fn translate_route(
    store: &Store,
    cfg: &KnativeConfig,
    r: &Route,
) -> Result<Ingress, Vec<Problem>> {
    route::translate_route(&RouteInput::from_route(r), store, cfg, false)
}

pub(crate) fn translate_kservice(
    store: &Store,
    cfg: &KnativeConfig,
    svc: &KService,
) -> Result<Ingress, Vec<Problem>> {
    let input = RouteInput::from_kservice(svc)?;
    route::translate_route(&input, store, cfg, false)
}

/// The problems of a rejected translation.
#[track_caller]
pub(crate) fn problems(result: Result<Ingress, Vec<Problem>>) -> Vec<Problem> {
    match result {
        Ok(ing) => panic!("expected a rejection, got {ing:#?}"),
        Err(p) => p,
    }
}

/// Asserts one problem has this field and a message containing `message`.
#[track_caller]
pub(crate) fn assert_problem(problems: &[Problem], field: &str, message: &str) {
    assert!(
        problems
            .iter()
            .any(|p| p.field == field && p.message.contains(message)),
        "no problem {field}: …{message}… in {problems:#?}"
    );
}

/// A split to revision `rev` of `NS`, with Knative's revision headers.
pub(crate) fn split(rev: &str, port: u16, percent: u32) -> Split {
    Split {
        backend: Backend {
            namespace: NS.into(),
            service: rev.into(),
            port,
        },
        percent,
        append_headers: map(&[(headers::NAMESPACE, NS), (headers::REVISION, rev)]),
    }
}

/// A catch-all path with these splits and no headers.
pub(crate) fn path(splits: Vec<Split>) -> HttpPath {
    HttpPath {
        prefix: "/".to_string(),
        headers: Default::default(),
        append_headers: Default::default(),
        rewrite_host: None,
        splits,
    }
}

pub(crate) fn with_append(mut p: HttpPath, key: &str, value: &str) -> HttpPath {
    p.append_headers.insert(key, value);
    p
}

pub(crate) fn with_header_match(mut p: HttpPath, key: &str, value: &str) -> HttpPath {
    p.headers.insert(key, value);
    p
}

pub(crate) fn rule(hosts: &[&str], visibility: Visibility, paths: Vec<HttpPath>) -> Rule {
    Rule {
        hosts: hosts.iter().map(|h| (*h).into()).collect(),
        visibility,
        paths: paths.into(),
    }
}

/// The three cluster-local hosts of `hostname` in `NS`, sorted.
pub(crate) fn cluster_local_hosts(hostname: &str) -> Vec<String> {
    vec![
        format!("{hostname}.{NS}"),
        format!("{hostname}.{NS}.svc"),
        format!("{hostname}.{NS}.svc.{CLUSTER_DOMAIN}"),
    ]
}

/// Each rule's visibility and hosts, in order.
pub(crate) fn rule_hosts(ing: &Ingress) -> Vec<(Visibility, Vec<String>)> {
    ing.rules
        .iter()
        .map(|r| {
            (
                r.visibility,
                r.hosts.iter().map(|h| h.to_string()).collect(),
            )
        })
        .collect()
}

/// A rule's hosts as `&str`s, to compare with literals.
pub(crate) fn strs(hosts: &[std::sync::Arc<str>]) -> Vec<&str> {
    hosts.iter().map(|h| &**h).collect()
}

/// The rule serving `host`.
#[track_caller]
pub(crate) fn rule_for<'a>(ing: &'a Ingress, host: &str) -> &'a Rule {
    ing.rules
        .iter()
        .find(|r| r.hosts.iter().any(|h| **h == *host))
        .unwrap_or_else(|| panic!("no rule for {host} in {:#?}", rule_hosts(ing)))
}

/// (revision, port, percent) of each split of a path.
pub(crate) fn split_summary(p: &HttpPath) -> Vec<(String, u16, u32)> {
    p.splits
        .iter()
        .map(|s| (s.backend.service.to_string(), s.backend.port, s.percent))
        .collect()
}

/// An owner reference to the Knative Service `name`.
pub(crate) fn owned_by_service(name: &str) -> OwnerReference {
    OwnerReference {
        api_version: "serving.knative.dev/v1".to_string(),
        kind: "Service".to_string(),
        name: name.to_string(),
        controller: Some(true),
    }
}
