//! KIngress (`networking.internal.knative.dev/v1alpha1` Ingress) → the intermediate model,
//! for `--mode ingress`, where Knative's own controllers build KIngresses and we only
//! program Envoy. Follows knative-routing.md §3: Knative's defaults and validation
//! (`ingress_defaults.go`, `ingress_validation.go`), the probe paths of `InsertProbe` with
//! the hash of `ComputeHash` computed byte for byte, and first-rule-wins for hosts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use model::config::HttpOption;
use model::objects::{IntOrString, KIngress, KIngressSpec};
use model::{Kind, ObjectKey, ObjectRef, Store};

use super::ir::{Backend, HttpPath, Ingress, Rule, Split, Visibility};
use super::Problem;

/// The annotation naming the ingress implementation that owns a KIngress.
pub const CLASS_ANNOTATION: &str = "networking.knative.dev/ingress.class";
/// Our default ingress class.
pub const DEFAULT_CLASS: &str = "knative-xds.ingress.networking.knative.dev";

/// Probe header (networking: `pkg/http/header`): `override` on a request selects the probe
/// paths, which set it to the KIngress hash.
pub const HASH_HEADER: &str = "K-Network-Hash";
const HASH_OVERRIDE: &str = "override";

/// The ingress class a KIngress asks for (`None` without the annotation).
pub fn class_of(k: &KIngress) -> Option<&str> {
    k.metadata.annotations.get(CLASS_ANNOTATION)
}

/// Knative's `ComputeHash` as lowercase hex: sha256(json.Marshal(spec) ‖ namespace ‖ name),
/// with Go's JSON encoding (struct field order, `omitempty`, sorted map keys, HTML escaping).
pub fn probe_hash(k: &KIngress) -> String {
    let mut bytes = go_json(&k.spec);
    bytes.extend_from_slice(k.metadata.namespace.as_bytes());
    bytes.extend_from_slice(k.metadata.name.as_bytes());
    let digest = Sha256::digest(&bytes);
    format!("{digest:x}")
}

/// `json.Marshal(spec)` as Go writes it. The spec types declare Go's field order and
/// `omitempty`; this formatter adds Go's escaping of `<`, `>`, `&`, U+2028 and U+2029.
pub fn go_json(spec: &KIngressSpec) -> Vec<u8> {
    use serde::Serialize;
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    // Serializing plain structs into a Vec cannot fail.
    if spec.serialize(&mut ser).is_err() {
        out.clear();
    }
    out
}

struct GoFormatter;

impl serde_json::ser::Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let escaped = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            w.write_all(&fragment.as_bytes()[start..i])?;
            w.write_all(escaped.as_bytes())?;
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }
}

/// Hosts of `spec.tls` (served over plain HTTP until TLS lands), for the status message.
pub fn tls_hosts(k: &KIngress) -> Vec<String> {
    let hosts: BTreeSet<String> = k
        .spec
        .tls
        .iter()
        .flat_map(|t| t.hosts.iter().cloned())
        .collect();
    hosts.into_iter().collect()
}

/// The Services a KIngress' splits name (their ports and types shape the translation).
pub fn split_services(k: &KIngress) -> BTreeSet<ObjectKey> {
    k.spec
        .rules
        .iter()
        .filter_map(|r| r.http.as_ref())
        .flat_map(|h| h.paths.iter().flatten())
        .flat_map(|p| p.splits.iter().flatten())
        .map(|s| ObjectKey::new(s.service_namespace.clone(), s.service_name.clone()))
        .collect()
}

/// Validates, defaults and translates one KIngress. Problems name the field as Knative's
/// validation does (`spec.rules[0].http.paths[1].splits`).
pub fn translate_kingress(k: &KIngress, store: &Store) -> Result<Ingress, Vec<Problem>> {
    let ns = &k.metadata.namespace;
    let spec = &k.spec;
    let mut problems = Vec::new();
    if spec.rules.is_empty() {
        problems.push(Problem::new("spec.rules", "missing field(s)"));
    }
    let http_option = match spec.http_option.as_str() {
        "" | "Enabled" => HttpOption::Enabled,
        "Redirected" => HttpOption::Redirected,
        other => {
            problems.push(Problem::new(
                "spec.httpOption",
                format!("invalid value: {other} (must be Enabled or Redirected)"),
            ));
            HttpOption::Enabled
        }
    };
    for (i, tls) in spec.tls.iter().enumerate() {
        if tls.secret_name.is_empty() {
            problems.push(Problem::new(
                format!("spec.tls[{i}].secretName"),
                "missing field(s)",
            ));
        }
        if tls.secret_namespace.is_empty() {
            problems.push(Problem::new(
                format!("spec.tls[{i}].secretNamespace"),
                "missing field(s)",
            ));
        }
    }

    let hash = probe_hash(k);
    let mut taken: BTreeSet<String> = BTreeSet::new();
    let mut rules = Vec::new();
    for (i, rule) in spec.rules.iter().enumerate() {
        let at = format!("spec.rules[{i}]");
        let visibility = match rule.visibility.as_str() {
            "" | "ExternalIP" => Visibility::ExternalIP,
            "ClusterLocal" => Visibility::ClusterLocal,
            other => {
                problems.push(Problem::new(
                    format!("{at}.visibility"),
                    format!("invalid value: {other} (must be ExternalIP or ClusterLocal)"),
                ));
                continue;
            }
        };
        let Some(http) = &rule.http else {
            problems.push(Problem::new(format!("{at}.http"), "missing field(s)"));
            continue;
        };
        let paths = http.paths.as_deref().unwrap_or_default();
        if paths.is_empty() {
            problems.push(Problem::new(format!("{at}.http.paths"), "missing field(s)"));
            continue;
        }
        let mut hosts = BTreeSet::new();
        for (j, h) in rule.hosts.iter().enumerate() {
            let host = h.trim().to_ascii_lowercase();
            if let Err(msg) = check_host(&host) {
                problems.push(Problem::new(format!("{at}.hosts[{j}]"), msg));
                continue;
            }
            // "If multiple matching Hosts were provided, the first rule will take precedent."
            if taken.insert(host.clone()) {
                hosts.insert(host);
            }
        }
        if rule.hosts.is_empty() {
            problems.push(Problem::new(
                format!("{at}.hosts"),
                "at least one host is required (a catch-all rule is not supported)",
            ));
        }
        let mut out_paths = Vec::with_capacity(paths.len());
        for (j, p) in paths.iter().enumerate() {
            let at = format!("{at}.http.paths[{j}]");
            match translate_path(p, &at, ns, store) {
                Ok(path) => out_paths.push(path),
                Err(mut e) => problems.append(&mut e),
            }
        }
        if hosts.is_empty() {
            continue;
        }
        // InsertProbe: a copy of every path, matching `K-Network-Hash: override` and setting
        // the hash, goes in front of the originals.
        let mut with_probes: Vec<HttpPath> = out_paths
            .iter()
            .map(|p| {
                let mut probe = p.clone();
                probe.headers.insert(HASH_HEADER, HASH_OVERRIDE);
                probe.append_headers.insert(HASH_HEADER, hash.clone());
                probe
            })
            .collect();
        with_probes.extend(out_paths);
        rules.push(Rule {
            hosts: hosts.into_iter().map(Into::into).collect(),
            visibility,
            paths: with_probes.into(),
        });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Ingress {
        origin: ObjectRef {
            kind: Kind::KIngress,
            key: ObjectKey::new(ns.clone(), k.metadata.name.clone()),
        },
        generation: k.metadata.generation,
        creation_timestamp: k
            .metadata
            .creation_timestamp
            .as_deref()
            .unwrap_or_default()
            .into(),
        http_option,
        tls: spec
            .tls
            .iter()
            .map(|t| {
                // Only hosts of its rules can be served.
                let mut hosts: Vec<Arc<str>> = t
                    .hosts
                    .iter()
                    .map(|h| h.trim().to_ascii_lowercase())
                    .filter_map(|h| {
                        rules
                            .iter()
                            .flat_map(|r| r.hosts.iter())
                            .find(|r| ***r == *h)
                            .cloned()
                    })
                    .collect();
                hosts.sort();
                hosts.dedup();
                super::ir::Tls {
                    hosts,
                    secret: ObjectKey::new(t.secret_namespace.as_str(), t.secret_name.as_str()),
                }
            })
            .collect(),
        rules,
    })
}

fn translate_path(
    p: &model::objects::KIngressPath,
    at: &str,
    ns: &str,
    store: &Store,
) -> Result<HttpPath, Vec<Problem>> {
    let mut problems = Vec::new();
    if !p.path.is_empty() && !p.path.starts_with('/') {
        problems.push(Problem::new(
            format!("{at}.path"),
            format!("{:?} must start with '/'", p.path),
        ));
    }
    check_headers(
        &p.append_headers,
        &format!("{at}.appendHeaders"),
        &mut problems,
    );
    for (name, m) in &p.headers {
        if let Err(msg) = check_header_name(name, false).and_then(|_| check_header_value(&m.exact))
        {
            problems.push(Problem::new(format!("{at}.headers[{name}]"), msg));
        }
    }
    if !p.rewrite_host.is_empty() {
        if let Err(msg) = check_header_value(&p.rewrite_host) {
            problems.push(Problem::new(format!("{at}.rewriteHost"), msg));
        }
    }
    let splits = p.splits.as_deref().unwrap_or_default();
    if splits.is_empty() {
        problems.push(Problem::new(format!("{at}.splits"), "missing field(s)"));
    }
    let mut total = 0i64;
    let mut out = Vec::with_capacity(splits.len());
    for (i, s) in splits.iter().enumerate() {
        let at = format!("{at}.splits[{i}]");
        total = total.saturating_add(s.percent);
        if !(0..=100).contains(&s.percent) {
            problems.push(Problem::new(
                format!("{at}.percent"),
                format!("expected 0 <= {} <= 100", s.percent),
            ));
        }
        if s.service_namespace.is_empty() {
            problems.push(Problem::new(
                format!("{at}.serviceNamespace"),
                "missing field(s)",
            ));
        } else if s.service_namespace != ns {
            problems.push(Problem::new(
                format!("{at}.serviceNamespace"),
                format!(
                    "invalid value: {} (must be the Ingress' namespace {ns})",
                    s.service_namespace
                ),
            ));
        }
        if s.service_name.is_empty() {
            problems.push(Problem::new(
                format!("{at}.serviceName"),
                "missing field(s)",
            ));
        }
        check_headers(
            &s.append_headers,
            &format!("{at}.appendHeaders"),
            &mut problems,
        );
        let port = match resolve_port(s, store) {
            Ok(port) => port,
            Err(msg) => {
                problems.push(Problem::new(format!("{at}.servicePort"), msg));
                continue;
            }
        };
        out.push(Split {
            backend: Backend {
                namespace: s.service_namespace.as_str().into(),
                service: s.service_name.as_str().into(),
                port,
            },
            percent: s.percent.clamp(0, 100) as u32,
            append_headers: s.append_headers.clone().into_iter().collect(),
        });
    }
    // A single split may leave the percent out: it means 100 (ingress_defaults.go).
    if out.len() == 1 && splits.len() == 1 && total == 0 {
        out[0].percent = 100;
    } else if !splits.is_empty() && total != 100 {
        problems.push(Problem::new(
            format!("{at}.splits"),
            format!("Traffic split percentage must total to 100 (they total {total})"),
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(HttpPath {
        prefix: if p.path.is_empty() {
            "/".to_string()
        } else {
            p.path.clone()
        },
        headers: p
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.exact.clone()))
            .collect(),
        append_headers: p.append_headers.clone().into_iter().collect(),
        rewrite_host: Some(p.rewrite_host.clone()).filter(|h| !h.is_empty()),
        splits: out,
    })
}

/// The Service port number a split means: numbers as given; names through the Service.
fn resolve_port(s: &model::objects::KIngressSplit, store: &Store) -> Result<u16, String> {
    match &s.service_port {
        IntOrString::Int(p) => u16::try_from(*p)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{p} is not a port number (1-65535)")),
        IntOrString::String(name) if name.is_empty() => Err("missing field(s)".to_string()),
        IntOrString::String(name) => {
            if let Ok(p) = name.parse::<u16>() {
                if p > 0 {
                    return Ok(p);
                }
            }
            let key = ObjectKey::new(s.service_namespace.clone(), s.service_name.clone());
            let svc = store.services.get(&key).ok_or_else(|| {
                format!("port name {name:?} cannot be resolved: Service {key} not found")
            })?;
            svc.spec
                .ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.port).ok())
                .ok_or_else(|| format!("Service {key} has no port named {name:?}"))
        }
    }
}

/// Hosts become Envoy domains and scope keys: a DNS name without port or wildcard.
fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("empty host".to_string());
    }
    if host.contains(':') {
        return Err(format!("{host:?}: a host has no port (80/443 are implied)"));
    }
    if host.contains('*') {
        return Err(format!("{host:?}: wildcard hosts are not supported"));
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err(format!("{host:?} is not a DNS name"));
    }
    Ok(())
}

/// Header names and values Envoy would reject (the whole config, for every Envoy).
fn check_headers(headers: &BTreeMap<String, String>, at: &str, problems: &mut Vec<Problem>) {
    for (name, value) in headers {
        if let Err(msg) = check_header_name(name, true).and_then(|_| check_header_value(value)) {
            problems.push(Problem::new(format!("{at}[{name}]"), msg));
        }
    }
}

fn check_header_name(name: &str, set: bool) -> Result<(), String> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("{name:?} is not a header name"));
    }
    if set && (name.starts_with(':') || name.eq_ignore_ascii_case("host")) {
        return Err(format!(
            "{name:?} cannot be set (use rewriteHost for the Host)"
        ));
    }
    Ok(())
}

fn check_header_value(value: &str) -> Result<(), String> {
    if value.bytes().any(|b| b == 0 || b == b'\r' || b == b'\n') {
        return Err(format!(
            "{value:?}: header values cannot hold NUL, CR or LF"
        ));
    }
    Ok(())
}
