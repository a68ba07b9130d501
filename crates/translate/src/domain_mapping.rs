//! DomainMapping → Ingress (knative-routing.md §4). Knative routes a mapped domain through
//! the gateway twice (external vhost → rewrite host → internal gateway → Route's
//! cluster-local rule). We give the mapped host the target's cluster-local paths directly,
//! with the same host rewrite and `K-Original-Host`: same result, one hop.

use model::config::KnativeConfig;
use model::objects::DomainMapping;
use model::template::is_dns1123_subdomain;
use model::{Kind, ObjectKey, ObjectRef, Store};

use super::ir::{headers, Backend, Headers, HttpPath, Ingress, Rule, Split, Visibility};
use super::Problem;

/// Translates one DomainMapping. `route_ingress` finds the served translation of a
/// Route (or Knative Service) by key.
pub(crate) fn translate_domain_mapping(
    dm: &DomainMapping,
    store: &Store,
    cfg: &KnativeConfig,
    route_ingress: impl Fn(&ObjectKey) -> Option<Ingress>,
) -> Result<Ingress, Vec<Problem>> {
    let name = &dm.metadata.name;
    let ns = &dm.metadata.namespace;
    if !is_dns1123_subdomain(name) || !name.contains('.') {
        return Err(vec![Problem::new(
            "metadata.name",
            format!("{name:?} is not a fully qualified domain name"),
        )]);
    }
    if name.ends_with(&format!(".{}", cfg.cluster_domain)) {
        return Err(vec![Problem::new(
            "metadata.name",
            format!(
                "{name:?} must not be under the cluster domain {:?}",
                cfg.cluster_domain
            ),
        )]);
    }
    match store.domain_claims.get(&ObjectKey::new("", name.clone())) {
        Some(claim) if *claim.spec.namespace != **ns => {
            return Err(vec![Problem::new(
                "metadata.name",
                format!(
                    "DomainClaimed False: the domain name is claimed by namespace {:?} (ClusterDomainClaim {name})",
                    claim.spec.namespace
                ),
            )])
        }
        Some(_) => {}
        None if cfg.autocreate_cluster_domain_claims => {}
        None => {
            return Err(vec![Problem::new(
                "metadata.name",
                format!("DomainClaimed False: no ClusterDomainClaim {name:?} for namespace {ns:?}; create one or set autocreate-cluster-domain-claims: \"true\" in config-network"),
            )])
        }
    }
    let r = &dm.spec.ref_;
    if let Some(ref_ns) = r.namespace.as_deref().filter(|n| !n.is_empty()) {
        if ref_ns != &**ns {
            return Err(vec![Problem::new(
                "spec.ref.namespace",
                format!("must be the DomainMapping's namespace {ns:?}, got {ref_ns:?}"),
            )]);
        }
    }
    let group = r.api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
    let target_host = format!("{}.{ns}.svc.{}", r.name, cfg.cluster_domain);
    let with_mapping = |mut p: HttpPath| {
        p.rewrite_host = Some(target_host.clone());
        for s in &mut p.splits {
            s.append_headers
                .insert(headers::ORIGINAL_HOST, name.clone());
        }
        p
    };
    let http_option =
        super::route::http_option(&dm.metadata.annotations, cfg).map_err(|p| vec![p])?;
    let paths: Vec<HttpPath> = match (group, r.kind.as_str()) {
        ("serving.knative.dev", "Service" | "Route") => {
            let key = ObjectKey::new(ns.clone(), r.name.clone());
            let Some(target) = route_ingress(&key) else {
                return Err(vec![Problem::new(
                    "spec.ref",
                    format!("{} {ns}/{} is not served (missing or rejected)", r.kind, r.name),
                )]);
            };
            // The target's cluster-local rule for its own name is the one a hairpin hits.
            let Some(rule) = target
                .rules
                .iter()
                .find(|rule| rule.hosts.iter().any(|h| **h == *target_host))
            else {
                return Err(vec![Problem::new(
                    "spec.ref",
                    format!("{} {ns}/{} has no host {target_host}", r.kind, r.name),
                )]);
            };
            rule.paths.iter().cloned().map(with_mapping).collect()
        }
        ("", "Service") => vec![with_mapping(HttpPath {
            prefix: "/".to_string(),
            headers: Headers::new(),
            append_headers: Headers::new(),
            rewrite_host: None,
            splits: vec![Split {
                backend: Backend {
                    namespace: ns.clone(),
                    service: r.name.as_str().into(),
                    port: 80,
                },
                percent: 100,
                append_headers: Headers::new(),
            }],
        })],
        _ => {
            return Err(vec![Problem::new(
                "spec.ref",
                format!(
                    "unsupported reference {}/{}: expected a serving.knative.dev Service or Route, or a v1 Service",
                    r.api_version, r.kind
                ),
            )])
        }
    };
    Ok(Ingress {
        origin: ObjectRef {
            kind: Kind::DomainMapping,
            key: ObjectKey::new(ns.clone(), name.clone()),
        },
        generation: dm.metadata.generation,
        creation_timestamp: dm
            .metadata
            .creation_timestamp
            .as_deref()
            .unwrap_or_default()
            .into(),
        http_option,
        rules: vec![Rule {
            hosts: vec![name.clone()],
            visibility: Visibility::ExternalIP,
            paths: paths.into(),
        }],
        // Knative serves a DomainMapping's own certificate from the DomainMapping's
        // namespace (serving: domainmapping/reconciler.go).
        tls: dm
            .spec
            .tls
            .as_ref()
            .filter(|t| !t.secret_name.is_empty())
            .map(|t| {
                vec![super::ir::Tls {
                    hosts: vec![name.clone()],
                    secret: ObjectKey::new(ns.clone(), t.secret_name.as_str()),
                }]
            })
            .unwrap_or_default(),
    })
}
