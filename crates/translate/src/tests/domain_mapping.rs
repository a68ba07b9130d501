//! §4 DomainMapping.

use super::*;
use crate::domain_mapping::translate_domain_mapping;
use model::config::{HttpOption, VISIBILITY_LABEL};
use model::objects::{
    ClusterDomainClaim, ClusterDomainClaimSpec, DomainMapping, DomainMappingSpec, KReference,
};
use model::ObjectKey;

const DOMAIN: &str = "app.example.org";

fn mk_claim(domain: &str, namespace: &str) -> ClusterDomainClaim {
    ClusterDomainClaim {
        metadata: mk_meta("", domain),
        spec: ClusterDomainClaimSpec {
            namespace: namespace.to_string(),
        },
    }
}

fn mk_domain_mapping(domain: &str, api_version: &str, kind: &str, name: &str) -> DomainMapping {
    DomainMapping {
        metadata: mk_meta(NS, domain),
        spec: DomainMappingSpec {
            ref_: KReference {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
                name: name.to_string(),
                namespace: None,
            },
            tls: None,
        },
    }
}

/// A DomainMapping of `DOMAIN` to the Knative Service `hello`.
fn to_hello() -> DomainMapping {
    mk_domain_mapping(DOMAIN, "serving.knative.dev/v1", "Service", "hello")
}

/// Knative Service `hello` (100 % `hello-00001`) and a claim of `DOMAIN` for `NS`.
fn store() -> Store {
    mk_store([
        Object::Revision(mk_revision("hello-00001", "hello")),
        Object::Configuration(mk_configuration("hello", Some("hello-00001"))),
        Object::KService(mk_kservice("hello", vec![])),
        Object::ClusterDomainClaim(mk_claim(DOMAIN, NS)),
    ])
}

/// Translates `dm`, with the Knative Services of `store` as the served Routes.
fn translate(
    store: &Store,
    cfg: &KnativeConfig,
    dm: &DomainMapping,
) -> Result<Ingress, Vec<Problem>> {
    let routes: BTreeMap<ObjectKey, Ingress> = store
        .kservices
        .iter()
        .filter_map(|(k, svc)| Some((k.clone(), translate_kservice(store, cfg, svc).ok()?)))
        .collect();
    translate_domain_mapping(dm, store, cfg, |key| routes.get(key).cloned())
}

#[test]
fn domain_mapping_rewrites_host_and_adds_original_host() {
    let ing = translate(&store(), &example_config(), &to_hello()).unwrap();
    let mut expected_split = split("hello-00001", 80, 100);
    expected_split
        .append_headers
        .insert(headers::ORIGINAL_HOST, DOMAIN);
    assert_eq!(
        ing.rules,
        [Rule {
            hosts: vec![DOMAIN.into()],
            visibility: Visibility::ExternalIP,
            paths: vec![HttpPath {
                rewrite_host: Some("hello.default.svc.cluster.local".into()),
                ..path(vec![expected_split])
            }]
            .into(),
        }]
    );
    assert_eq!(ing.origin.kind, model::Kind::DomainMapping);
}

#[test]
fn domain_mapping_to_a_route_with_tag_header_routing_keeps_its_paths() {
    // The mapped host ends at the Route's cluster-local rule, tag paths included.
    let mut store = store();
    store.apply(Object::Revision(mk_revision("hello-00002", "hello")));
    store.apply(Object::KService(mk_kservice(
        "hello",
        vec![
            tagged("old", to_revision("hello-00001", 50)),
            tagged("new", to_revision("hello-00002", 50)),
        ],
    )));
    let ing = translate(&store, &example_config_with_tag_routing(), &to_hello()).unwrap();
    let paths = &ing.rules[0].paths;
    let tags: Vec<_> = paths
        .iter()
        .map(|p| p.headers.get(headers::TAG).map(str::to_string))
        .collect();
    assert_eq!(tags, [Some("new".into()), Some("old".into()), None]);
    for p in paths.iter() {
        assert_eq!(
            p.rewrite_host.as_deref(),
            Some("hello.default.svc.cluster.local")
        );
        assert!(p
            .splits
            .iter()
            .all(|s| s.append_headers.get(headers::ORIGINAL_HOST) == Some(DOMAIN)));
    }
}

#[test]
fn domain_mapping_to_a_cluster_local_service_is_served_externally() {
    let mut store = store();
    let mut svc = mk_kservice("hello", vec![]);
    svc.metadata.labels = map(&[(VISIBILITY_LABEL, "cluster-local")]);
    store.apply(Object::KService(svc));
    let ing = translate(&store, &example_config(), &to_hello()).unwrap();
    assert_eq!(strs(&ing.rules[0].hosts), [DOMAIN]);
    assert_eq!(ing.rules[0].visibility, Visibility::ExternalIP);
}

#[test]
fn domain_mapping_to_a_kubernetes_service_splits_to_its_port_80() {
    let dm = mk_domain_mapping(DOMAIN, "v1", "Service", "plain");
    let ing = translate(&store(), &example_config(), &dm).unwrap();
    assert_eq!(
        *ing.rules[0].paths,
        [HttpPath {
            rewrite_host: Some("plain.default.svc.cluster.local".into()),
            ..path(vec![Split {
                backend: Backend {
                    namespace: NS.into(),
                    service: "plain".into(),
                    port: 80,
                },
                percent: 100,
                append_headers: map(&[(headers::ORIGINAL_HOST, DOMAIN)]),
            }])
        }]
    );
}

#[test]
fn domain_mapping_without_claim_is_rejected_unless_autocreate() {
    let mut store = store();
    store.delete(model::Kind::ClusterDomainClaim, &ObjectKey::new("", DOMAIN));
    let p = problems(translate(&store, &example_config(), &to_hello()));
    assert_problem(&p, "metadata.name", "DomainClaimed False");
    let cfg = mk_config(
        &[("example.com", "")],
        &[("autocreate-cluster-domain-claims", "true")],
        &[],
    );
    assert!(translate(&store, &cfg, &to_hello()).is_ok());
}

#[test]
fn domain_mapping_claimed_by_other_namespace_is_rejected() {
    let mut store = store();
    store.apply(Object::ClusterDomainClaim(mk_claim(DOMAIN, "other")));
    let p = problems(translate(&store, &example_config(), &to_hello()));
    assert_problem(&p, "metadata.name", "claimed by namespace \"other\"");
    // Autocreate does not take over someone else's claim.
    let cfg = mk_config(
        &[("example.com", "")],
        &[("autocreate-cluster-domain-claims", "true")],
        &[],
    );
    assert!(translate(&store, &cfg, &to_hello()).is_err());
}

#[test]
fn domain_mapping_under_cluster_domain_is_rejected() {
    let dm = mk_domain_mapping(
        "app.default.svc.cluster.local",
        "serving.knative.dev/v1",
        "Service",
        "hello",
    );
    let p = problems(translate(&store(), &example_config(), &dm));
    assert_problem(&p, "metadata.name", "must not be under the cluster domain");
}

#[test]
fn domain_mapping_name_must_be_a_fully_qualified_domain_name() {
    for name in ["localhost", "Bad_Name.example.org"] {
        let dm = mk_domain_mapping(name, "serving.knative.dev/v1", "Service", "hello");
        let p = problems(translate(&store(), &example_config(), &dm));
        assert_problem(&p, "metadata.name", "not a fully qualified domain name");
    }
}

#[test]
fn domain_mapping_ref_in_another_namespace_is_rejected() {
    let mut dm = to_hello();
    dm.spec.ref_.namespace = Some("other".into());
    let p = problems(translate(&store(), &example_config(), &dm));
    assert_problem(
        &p,
        "spec.ref.namespace",
        "must be the DomainMapping's namespace",
    );
    // The DomainMapping's own namespace, spelled out, is fine.
    dm.spec.ref_.namespace = Some(NS.into());
    assert!(translate(&store(), &example_config(), &dm).is_ok());
}

#[test]
fn domain_mapping_to_an_unserved_route_is_rejected() {
    let dm = mk_domain_mapping(DOMAIN, "serving.knative.dev/v1", "Route", "missing");
    let p = problems(translate(&store(), &example_config(), &dm));
    assert_problem(&p, "spec.ref", "is not served");
}

#[test]
fn domain_mapping_to_an_unsupported_kind_is_rejected() {
    let dm = mk_domain_mapping(DOMAIN, "apps/v1", "Deployment", "hello");
    let p = problems(translate(&store(), &example_config(), &dm));
    assert_problem(&p, "spec.ref", "unsupported reference");
}

#[test]
fn domain_mapping_http_option_comes_from_its_annotation_or_config_network() {
    let redirected = mk_config(
        &[("example.com", "")],
        &[("http-protocol", "Redirected")],
        &[],
    );
    let ing = translate(&store(), &redirected, &to_hello()).unwrap();
    assert_eq!(ing.http_option, HttpOption::Redirected);
    let mut dm = to_hello();
    dm.metadata.annotations = map(&[(route::HTTP_PROTOCOL_ANNOTATION, "Enabled")]);
    assert_eq!(
        translate(&store(), &redirected, &dm).unwrap().http_option,
        HttpOption::Enabled
    );
    dm.metadata.annotations = map(&[(route::HTTP_PROTOCOL_ANNOTATION, "Redirected")]);
    assert_eq!(
        translate(&store(), &example_config(), &dm)
            .unwrap()
            .http_option,
        HttpOption::Redirected
    );
    dm.metadata.annotations = map(&[(route::HTTP_PROTOCOL_ANNOTATION, "sometimes")]);
    assert!(translate(&store(), &example_config(), &dm).is_err());
}
