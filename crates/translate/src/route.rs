//! Route → Ingress, as Knative's route reconciler does it (knative-routing.md §1–§3):
//! validation with Knative's messages, traffic resolution to Revisions, same-revision
//! consolidation, hosts from templates and visibility, and tag-header routing.

use std::collections::BTreeMap;

use model::config::{HttpOption, KnativeConfig, VISIBILITY_LABEL};
use model::objects::{
    KService, ObjectMeta, Revision, RevisionSpec, RevisionTemplate, Route, TrafficTarget,
};
use model::template::{is_dns1035_label, is_dns1123_subdomain, TemplateData};
use model::{Kind, ObjectKey, ObjectRef, Store};

use super::ir::{headers, Backend, Headers, HttpPath, Ingress, Rule, Split, Visibility};
use super::Problem;

pub const SERVICE_LABEL: &str = "serving.knative.dev/service";
pub const CONFIGURATION_LABEL: &str = "serving.knative.dev/configuration";
pub const CONFIGURATION_GENERATION_LABEL: &str = "serving.knative.dev/configurationGeneration";
pub const HTTP_PROTOCOL_ANNOTATION: &str = "networking.knative.dev/http-protocol";
pub const HTTP_OPTION_ANNOTATION: &str = "networking.knative.dev/httpOption";

/// A Route as the route reconciler sees it: either a Route object or the one a Knative
/// Service implies (`MakeRoute`).
#[derive(Debug, Clone)]
pub struct RouteInput {
    pub origin: ObjectRef,
    pub meta: ObjectMeta,
    pub traffic: Vec<TrafficTarget>,
    /// Set when the Route belongs to a Knative Service (its traffic was validated in
    /// the Service's context).
    pub service: Option<String>,
}

impl RouteInput {
    pub fn from_route(route: &Route) -> RouteInput {
        let meta = route.metadata.clone();
        RouteInput {
            origin: ObjectRef {
                kind: Kind::Route,
                key: ObjectKey::new(meta.namespace.clone(), meta.name.clone()),
            },
            service: None,
            traffic: route.spec.traffic.clone(),
            meta,
        }
    }

    /// Knative's `MakeRoute`: defaulting and validation happen in the Service's context
    /// (empty traffic means 100 % latest; `configurationName` is not allowed).
    pub fn from_kservice(svc: &KService) -> Result<RouteInput, Vec<Problem>> {
        let mut problems = Vec::new();
        for (i, t) in svc.spec.traffic.iter().enumerate() {
            if t.configuration_name.is_some() {
                problems.push(Problem::new(
                    format!("spec.traffic[{i}].configurationName"),
                    "must not set the field(s)",
                ));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let mut meta = svc.metadata.clone();
        meta.labels.insert(SERVICE_LABEL, svc.metadata.name.clone());
        meta.annotations
            .remove("kubectl.kubernetes.io/last-applied-configuration");
        let mut traffic = svc.spec.traffic.clone();
        if traffic.is_empty() {
            traffic.push(TrafficTarget {
                percent: Some(100),
                latest_revision: Some(true),
                ..Default::default()
            });
        }
        Ok(RouteInput {
            origin: ObjectRef {
                kind: Kind::KService,
                key: ObjectKey::new(meta.namespace.clone(), meta.name.clone()),
            },
            service: Some(svc.metadata.name.to_string()),
            traffic,
            meta,
        })
    }
}

/// Knative's webhook validation of `spec.traffic` (route_validation.go), after defaulting.
pub fn validate_traffic(input: &RouteInput) -> Vec<Problem> {
    let mut problems = Vec::new();
    let in_service = input.service.is_some();
    let mut sum: i64 = 0;
    let mut tags: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, t) in input.traffic.iter().enumerate() {
        let field = |f: &str| format!("spec.traffic[{i}].{f}");
        let revision = t.revision_name.as_deref().unwrap_or("");
        let configuration = t.configuration_name.as_deref().unwrap_or("");
        let percent = t.percent.unwrap_or(0);
        sum += percent;
        if !(0..=100).contains(&percent) {
            problems.push(Problem::new(
                field("percent"),
                format!("expected 0 <= {percent} <= 100"),
            ));
        }
        if let Some(tag) = t.tag.as_deref().filter(|t| !t.is_empty()) {
            if !is_dns1035_label(tag) {
                problems.push(Problem::new(
                    field("tag"),
                    format!("invalid value {tag:?}: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with a letter and end with an alphanumeric character"),
                ));
            }
            *tags.entry(tag).or_default() += 1;
        }
        if let Some(latest) = t.latest_revision {
            if revision.is_empty() != latest {
                problems.push(Problem::new(
                    field("latestRevision"),
                    format!(
                        "may not set revisionName {revision:?} when latestRevision is {latest}"
                    ),
                ));
            }
        }
        match (revision.is_empty(), configuration.is_empty()) {
            (false, false) => problems.push(Problem::new(
                format!("spec.traffic[{i}].{{revisionName,configurationName}}"),
                "expected exactly one, got both",
            )),
            (true, true) if !in_service => problems.push(Problem::new(
                format!("spec.traffic[{i}].{{revisionName,configurationName}}"),
                "expected exactly one, got neither",
            )),
            _ => {}
        }
        for (name, f) in [
            (revision, "revisionName"),
            (configuration, "configurationName"),
        ] {
            if !name.is_empty() && !is_dns1123_subdomain(name) {
                problems.push(Problem::new(
                    field(f),
                    format!("invalid value {name:?}: not a valid Kubernetes name"),
                ));
            }
        }
        if t.url.is_some() {
            problems.push(Problem::new(field("url"), "must not set the field(s)"));
        }
    }
    for (tag, n) in tags {
        if n > 1 {
            problems.push(Problem::new(
                "spec.traffic",
                format!("Multiple definitions for {tag:?}"),
            ));
        }
    }
    if sum != 100 {
        problems.push(Problem::new(
            "spec.traffic",
            format!("Traffic targets sum to {sum}, want 100"),
        ));
    }
    problems
}

/// Knative's Route label validation: a `serving.knative.dev/service` label must name a
/// Service owner reference. (The Route a Knative Service implies is owned by construction.)
pub fn validate_labels(input: &RouteInput) -> Vec<Problem> {
    if input.service.is_some() {
        return Vec::new();
    }
    let Some(svc) = input.meta.labels.get(SERVICE_LABEL) else {
        return Vec::new();
    };
    let owned = input
        .meta
        .owner_references
        .iter()
        .any(|r| r.kind == "Service" && r.name == *svc);
    if owned {
        Vec::new()
    } else {
        vec![Problem::new(
            format!("metadata.labels[{SERVICE_LABEL}]"),
            format!("missing field(s): the label names Service {svc:?} but the Route has no owner reference to it"),
        )]
    }
}

/// HTTP/1 or h2c, from the Revision's first container port name (Knative `GetProtocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    H2c,
}

/// One resolved traffic target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub tag: Option<String>,
    /// Shared by every path and split that goes to it.
    pub revision: std::sync::Arc<str>,
    pub percent: i64,
    pub protocol: Protocol,
}

/// Resolved traffic: the default group `""` (every entry) and one group per tag.
pub type TrafficGroups = BTreeMap<String, Vec<Target>>;

/// Knative's `BuildTrafficConfiguration` followed by per-group `consolidate`.
///
/// With `implied` (no controller), a Revision that is named but has no object is taken to
/// exist and be ready, as Knative's controller would make it: a Configuration's (or a
/// Knative Service's) latest one is its template's (see [`implied_latest_revision`]), and a
/// `revisionName` in traffic is one of its earlier ones. Revision objects, when present, win.
pub fn resolve_traffic(
    input: &RouteInput,
    store: &Store,
    implied: bool,
) -> Result<TrafficGroups, Vec<Problem>> {
    let ns = &input.meta.namespace;
    let mut problems = Vec::new();
    let mut groups: TrafficGroups = BTreeMap::new();
    for (i, t) in input.traffic.iter().enumerate() {
        let revision_name = match (&t.revision_name, &t.configuration_name) {
            (Some(r), _) if !r.is_empty() => Ok(r.clone()),
            (_, Some(c)) if !c.is_empty() => latest(store, ns, c, implied)
                .map_err(|m| Problem::new(format!("spec.traffic[{i}].configurationName"), m)),
            // In a Service, "neither" means the Service's own Configuration.
            _ => match &input.service {
                Some(svc) => latest(store, ns, svc, implied)
                    .map_err(|m| Problem::new(format!("spec.traffic[{i}]"), m)),
                None => Err(Problem::new(
                    format!("spec.traffic[{i}]"),
                    "expected exactly one, got neither",
                )),
            },
        };
        let revision_name = match revision_name {
            Ok(r) => r,
            Err(p) => {
                problems.push(p);
                continue;
            }
        };
        let field = || format!("spec.traffic[{i}].revisionName");
        let revision: std::sync::Arc<str> = revision_name.into();
        let rev = store
            .revisions
            .get(&ObjectKey::new(&**ns, revision.clone()));
        let protocol = match rev {
            Some(rev) => {
                if let Some(owner) = input.meta.labels.get(SERVICE_LABEL) {
                    if rev.metadata.labels.get(SERVICE_LABEL) != Some(owner) {
                        problems.push(Problem::new(
                            field(),
                            format!("Revision {revision:?} is not owned by Service {owner:?}"),
                        ));
                        continue;
                    }
                }
                if !revision_ready(rev) {
                    problems.push(Problem::new(
                        field(),
                        format!("Revision {revision:?} is not yet ready"),
                    ));
                    continue;
                }
                revision_protocol(&rev.spec)
            }
            // Its Configuration's template is the best guess of its ports.
            None if implied => match template_of(store, ns, &configuration_of(input, t)) {
                Some(tpl) if tpl.spec.h2c => Protocol::H2c,
                _ => Protocol::Http1,
            },
            None => {
                problems.push(Problem::new(
                    field(),
                    format!("Revision {revision:?} referenced in traffic not found"),
                ));
                continue;
            }
        };
        let target = Target {
            tag: t.tag.clone().filter(|t| !t.is_empty()),
            revision,
            percent: t.percent.unwrap_or(0),
            protocol,
        };
        if let Some(tag) = &target.tag {
            groups.entry(tag.clone()).or_default().push(target.clone());
        }
        groups.entry(String::new()).or_default().push(target);
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    for targets in groups.values_mut() {
        consolidate(targets);
    }
    Ok(groups)
}

/// Merges entries of the same revision (summing percent, first entry's fields win); a
/// group left with one entry routes 100 % to it.
pub fn consolidate(targets: &mut Vec<Target>) {
    let mut out: Vec<Target> = Vec::with_capacity(targets.len());
    for t in targets.drain(..) {
        match out.iter_mut().find(|o| o.revision == t.revision) {
            Some(o) => o.percent += t.percent,
            None => out.push(t),
        }
    }
    if out.len() == 1 {
        out[0].percent = 100;
    }
    *targets = out;
}

/// Ready=True with observedGeneration == generation; a Revision with no status at all
/// (a hand-written manifest, no controller to set it) counts as ready.
pub fn revision_ready(rev: &Revision) -> bool {
    let Some(status) = &rev.status else {
        return true;
    };
    let ready = status
        .conditions
        .iter()
        .any(|c| &*c.type_ == "Ready" && &*c.status == "True");
    let current = match (status.observed_generation, rev.metadata.generation) {
        (Some(o), Some(g)) => o == g,
        _ => true,
    };
    ready && current
}

pub fn revision_protocol(spec: &RevisionSpec) -> Protocol {
    match spec.first_port_name() {
        Some("h2c") => Protocol::H2c,
        _ => Protocol::Http1,
    }
}

/// The Configuration's `status.latestReadyRevisionName`; without a status (manifests, or
/// a Configuration implied by a Knative Service) the ready Revision of that Configuration
/// with the highest generation, as Knative's configuration reconciler would report it.
pub fn latest_ready_revision(store: &Store, ns: &str, config: &str) -> Result<String, String> {
    let key = ObjectKey::new(ns, config);
    let explicit = store.configurations.get(&key);
    if let Some(name) = explicit
        .and_then(|c| c.status.latest_ready_revision_name.as_ref())
        .filter(|n| !n.is_empty())
    {
        return Ok(name.clone());
    }
    if explicit.is_none() && !store.kservices.contains_key(&key) {
        return Err(format!(
            "Configuration {config:?} referenced in traffic not found"
        ));
    }
    store
        .revisions_of_configuration(ns, config)
        .filter(|r| revision_ready(r))
        .map(|r| {
            let generation = r
                .metadata
                .labels
                .get(CONFIGURATION_GENERATION_LABEL)
                .and_then(|g| g.parse::<i64>().ok())
                .unwrap_or(0);
            ((generation, &*r.metadata.name), r)
        })
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, r)| r)
        .map(|r| r.metadata.name.to_string())
        .ok_or_else(|| {
            format!("Configuration {config:?} is waiting for a Revision to become ready")
        })
}

/// The latest ready Revision of a Configuration (or a Knative Service's): with `implied`,
/// its template's when no Revision object of that name says otherwise.
fn latest(store: &Store, ns: &str, config: &str, implied: bool) -> Result<String, String> {
    if implied {
        if let Some(name) = implied_latest_revision(store, ns, config) {
            return Ok(name);
        }
    }
    latest_ready_revision(store, ns, config)
}

/// Where no controller runs, the Revision a Configuration's (or Knative Service's) template
/// stands for: `spec.template.metadata.name`, else Knative's `<name>-<generation, 5
/// digits>` (generation 1 when absent). `None` when there is no such Configuration, when its
/// status names the latest ready Revision (an export from a cluster: that is used), when the
/// name would be generated but Revisions of it are in the folder (they are used), or when a
/// Revision object of that name exists but is not ready.
pub fn implied_latest_revision(store: &Store, ns: &str, config: &str) -> Option<String> {
    let key = ObjectKey::new(ns, config);
    let (meta, template) = match store.configurations.get(&key) {
        Some(c) => {
            let explicit = c.status.latest_ready_revision_name.as_deref();
            if explicit.is_some_and(|n| !n.is_empty()) {
                return None;
            }
            (&c.metadata, &c.spec.template)
        }
        None => {
            let s = store.kservices.get(&key)?;
            (&s.metadata, &s.spec.template)
        }
    };
    let name = match template.metadata.name.as_deref().filter(|n| !n.is_empty()) {
        Some(n) => n.to_string(),
        // A generated name rests on `metadata.generation`, which hand-written files seldom
        // keep: where the folder has Revisions of this Configuration, they say which is latest.
        None if store
            .revisions_of_configuration(ns, config)
            .next()
            .is_some() =>
        {
            return None
        }
        None => format!("{config}-{:05}", meta.generation.unwrap_or(1)),
    };
    match store.revisions.get(&ObjectKey::new(ns, &*name)) {
        Some(rev) if !revision_ready(rev) => None,
        _ => Some(name),
    }
}

/// The template of a Configuration, else of the Knative Service of that name.
fn template_of<'s>(store: &'s Store, ns: &str, config: &str) -> Option<&'s RevisionTemplate> {
    let key = ObjectKey::new(ns, config);
    match store.configurations.get(&key) {
        Some(c) => Some(&c.spec.template),
        None => store.kservices.get(&key).map(|s| &s.spec.template),
    }
}

/// The Configuration a traffic entry's Revision belongs to, by Knative's naming: the
/// entry's, the Service's own, else the name without its last `-suffix`.
fn configuration_of(input: &RouteInput, t: &TrafficTarget) -> String {
    if let Some(c) = t.configuration_name.as_deref().filter(|c| !c.is_empty()) {
        return c.to_string();
    }
    if let Some(s) = &input.service {
        return s.clone();
    }
    let r = t.revision_name.as_deref().unwrap_or("");
    r.rsplit_once('-').map_or(r, |(c, _)| c).to_string()
}

/// The backends of an Ingress that have no Revision object: the ones implied where no
/// controller runs (for `validate`'s warnings).
pub fn implied_revisions(ing: &Ingress, store: &Store) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for rule in &ing.rules {
        for p in rule.paths.iter() {
            for s in &p.splits {
                let b = &s.backend;
                let key = ObjectKey::new(&*b.namespace, &*b.service);
                if !store.revisions.contains_key(&key) && !out.iter().any(|o| **o == *b.service) {
                    out.push(b.service.to_string());
                }
            }
        }
    }
    out.sort();
    out
}

/// Knative's host expansion of a cluster-local name: `h.ns`, `h.ns.svc`, `h.ns.svc.<cd>`
/// (short forms dropped when their last label could not be a TLD), sorted.
pub fn expand_cluster_local(hostname: &str, ns: &str, cluster_domain: &str) -> Vec<String> {
    let full = format!("{hostname}.{ns}.svc.{cluster_domain}");
    let mut hosts = vec![full];
    for short in [format!("{hostname}.{ns}"), format!("{hostname}.{ns}.svc")] {
        let tld = short.rsplit('.').next().unwrap_or("");
        if !tld.is_empty() && tld.len() <= 63 && !tld.bytes().all(|b| b.is_ascii_digit()) {
            hosts.push(short);
        }
    }
    hosts.sort();
    hosts
}

/// Builds the Ingress for a Route, exactly as `MakeIngress` lays out rules and paths.
pub fn make_ingress(
    input: &RouteInput,
    groups: &TrafficGroups,
    store: &Store,
    cfg: &KnativeConfig,
) -> Result<Ingress, Vec<Problem>> {
    let ns = &input.meta.namespace;
    // One copy for every backend of the Route.
    let backend_ns: std::sync::Arc<str> = ns.clone();
    let route_name = &input.meta.name;
    let domain = cfg.domain_for_labels(&input.meta.labels);
    let route_cluster_local = domain == cfg.cluster_local_domain();
    let mut problems = Vec::new();
    let mut rules = Vec::new();
    // "" first, then tags alphabetically (BTreeMap order).
    let tags: Vec<&String> = groups.keys().filter(|k| !k.is_empty()).collect();
    for (name, targets) in groups {
        let hostname = if name.is_empty() {
            route_name.to_string()
        } else {
            match cfg.tag_template.render(&TemplateData {
                name: route_name,
                tag: name,
                ..Default::default()
            }) {
                Ok(h) => h,
                Err(e) => {
                    problems.push(Problem::new("spec.traffic", e));
                    continue;
                }
            }
        };
        let base = base_path(&backend_ns, targets);
        let paths = if !cfg.tag_header_based_routing {
            vec![base]
        } else if name.is_empty() {
            let mut paths: Vec<HttpPath> = tags
                .iter()
                .map(|tag| {
                    let mut p = base_path(&backend_ns, &groups[*tag]);
                    p.headers.insert(headers::TAG, (*tag).clone());
                    p
                })
                .collect();
            let mut base = base;
            base.append_headers.insert(headers::DEFAULT_ROUTE, "true");
            paths.push(base);
            paths
        } else {
            let mut base = base;
            base.append_headers.insert(headers::TAG, name.clone());
            vec![base]
        };
        let paths: std::sync::Arc<[HttpPath]> = paths.into();
        rules.push(Rule {
            hosts: expand_cluster_local(&hostname, ns, &cfg.cluster_domain)
                .into_iter()
                .map(Into::into)
                .collect(),
            visibility: Visibility::ClusterLocal,
            paths: paths.clone(),
        });
        // A traffic name (the Route's own name included) is cluster-local when its
        // placeholder Service carries a non-empty visibility label (Knative `GetVisibility`).
        let tag_cluster_local = store
            .services
            .get(&ObjectKey::new(ns.clone(), hostname.clone()))
            .and_then(|s| s.metadata.labels.get(VISIBILITY_LABEL))
            .is_some_and(|v| !v.is_empty());
        if route_cluster_local || tag_cluster_local {
            continue;
        }
        let host = match cfg.domain_template.render(&TemplateData {
            name: &hostname,
            namespace: ns,
            domain: &domain,
            tag: "",
            annotations: Some(&input.meta.annotations),
            labels: Some(&input.meta.labels),
        }) {
            Ok(h) => h,
            Err(e) => {
                problems.push(Problem::new("metadata", e));
                continue;
            }
        };
        if !is_dns1123_subdomain(&host) || !host.contains('.') {
            problems.push(Problem::new(
                "metadata.name",
                format!("invalid domain name {host:?}: the domain-template gives a name that is not a fully qualified domain name"),
            ));
            continue;
        }
        rules.push(Rule {
            hosts: vec![host.into()],
            visibility: Visibility::ExternalIP,
            paths,
        });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let http_option = http_option(&input.meta.annotations, cfg).map_err(|p| vec![p])?;
    // Kept as long as the object is served: without the room pushes left.
    rules.shrink_to_fit();
    Ok(Ingress {
        origin: input.origin.clone(),
        generation: input.meta.generation,
        creation_timestamp: input
            .meta
            .creation_timestamp
            .as_deref()
            .unwrap_or_default()
            .into(),
        http_option,
        rules,
        tls: Vec::new(),
    })
}

/// Knative's `GetHTTPOption`: the `http-protocol` annotation (alt `httpOption`) when
/// non-empty, `Enabled` or `Redirected` in any case; else config-network's `http-protocol`.
pub fn http_option(
    annotations: &model::StrMap,
    cfg: &KnativeConfig,
) -> Result<HttpOption, Problem> {
    let value = annotations
        .get(HTTP_PROTOCOL_ANNOTATION)
        .or_else(|| annotations.get(HTTP_OPTION_ANNOTATION))
        .filter(|v| !v.is_empty());
    match value.map(|v| v.to_ascii_lowercase()).as_deref() {
        None => Ok(cfg.http_option),
        Some("enabled") => Ok(HttpOption::Enabled),
        Some("redirected") => Ok(HttpOption::Redirected),
        Some(other) => Err(Problem::new(
            format!("metadata.annotations[{HTTP_PROTOCOL_ANNOTATION}]"),
            format!("incorrect http-protocol annotation: {other}: must be Enabled or Redirected"),
        )),
    }
}

/// One path splitting to the group's revisions (0 % splits left out).
fn base_path(ns: &std::sync::Arc<str>, targets: &[Target]) -> HttpPath {
    // Sized first: a filtered collect makes room for four, and a path lives as long as its
    // object is served.
    let mut splits = Vec::with_capacity(targets.iter().filter(|t| t.percent > 0).count());
    splits.extend(targets.iter().filter(|t| t.percent > 0).map(|t| Split {
        backend: Backend {
            namespace: ns.clone(),
            service: t.revision.clone(),
            port: match t.protocol {
                Protocol::Http1 => 80,
                Protocol::H2c => 81,
            },
        },
        percent: t.percent.clamp(0, 100) as u32,
        append_headers: Headers::from([
            (headers::NAMESPACE, &**ns),
            (headers::REVISION, &*t.revision),
        ]),
    }));
    HttpPath {
        prefix: "/".to_string(),
        headers: Headers::new(),
        append_headers: Headers::new(),
        rewrite_host: None,
        splits,
    }
}

/// Validates, resolves and lays out one Route. With `implied`, no controller makes Revisions
/// (a manifests folder): the ones templates and traffic name exist (see [`resolve_traffic`]).
pub fn translate_route(
    input: &RouteInput,
    store: &Store,
    cfg: &KnativeConfig,
    implied: bool,
) -> Result<Ingress, Vec<Problem>> {
    let mut problems = validate_labels(input);
    problems.extend(validate_traffic(input));
    if !problems.is_empty() {
        return Err(problems);
    }
    let groups = resolve_traffic(input, store, implied)?;
    make_ingress(input, &groups, store, cfg)
}
