//! "Why does this request go there?": matches a request against the served Ingresses the
//! way Envoy matches it against what we generate (host with or without port,
//! case-insensitive; first path whose prefix and exact headers match).

use std::collections::BTreeMap;

use serde::Serialize;

use super::envoy::{EXTERNAL, INTERNAL};
use super::ir::{HttpPath, Ingress, Visibility};
use model::ObjectRef;

/// A request to explain.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub host: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub internal: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub cluster: String,
    pub namespace: String,
    pub service: String,
    pub port: u16,
    pub percent: u32,
    pub headers: BTreeMap<String, String>,
}

/// What Envoy would do with the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub listener: &'static str,
    /// `None` when nothing matches; see `reason`.
    pub matched: Option<Match>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Match {
    pub virtual_host: String,
    pub route_index: usize,
    pub path_prefix: String,
    pub header_matches: BTreeMap<String, String>,
    pub targets: Vec<Target>,
    pub headers: BTreeMap<String, String>,
    pub host_rewrite: Option<String>,
    pub source: ObjectRef,
    pub generation: Option<i64>,
}

/// Lowercases and drops a `:port` suffix (IPv6 literals keep their brackets).
fn normalize_host(host: &str) -> String {
    let h = host.trim().to_ascii_lowercase();
    if let Some(rest) = h.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            return format!("[{}]", &rest[..end]);
        }
    }
    match h.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name.to_string(),
        _ => h,
    }
}

fn path_matches(p: &HttpPath, path: &str, headers: &[(String, String)]) -> bool {
    let prefix = if p.prefix.is_empty() { "/" } else { &p.prefix };
    path.starts_with(prefix)
        && p.headers.iter().all(|(name, want)| {
            headers
                .iter()
                .any(|(n, v)| n.eq_ignore_ascii_case(name) && v == want)
        })
}

pub fn explain<I: std::borrow::Borrow<Ingress>>(ingresses: &[I], req: &Request) -> Explanation {
    let listener = if req.internal { INTERNAL } else { EXTERNAL };
    let host = normalize_host(&req.host);
    let path = if req.path.is_empty() { "/" } else { &req.path };
    let found = ingresses.iter().map(|i| i.borrow()).find_map(|ing| {
        ing.rules
            .iter()
            .find(|r| r.hosts.iter().any(|h| **h == *host))
            .map(|r| (ing, r))
    });
    let Some((ing, rule)) = found else {
        return Explanation {
            listener,
            matched: None,
            reason: format!(
                "no Route, Service or DomainMapping serves host {host:?}: Envoy answers 404"
            ),
        };
    };
    if !req.internal && rule.visibility == Visibility::ClusterLocal {
        return Explanation {
            listener,
            matched: None,
            reason: format!(
                "host {host:?} of {} is cluster-local: it is served only on the internal listener; Envoy answers 404 here",
                ing.origin
            ),
        };
    }
    if !req.internal && ing.http_option == model::config::HttpOption::Disabled {
        return Explanation {
            listener,
            matched: None,
            reason: format!(
                "{} has http-protocol Disabled: only HTTPS serves it; Envoy answers 404 on the plain external listener",
                ing.origin
            ),
        };
    }
    let redirected = !req.internal && ing.http_option == model::config::HttpOption::Redirected;
    if redirected {
        return Explanation {
            listener,
            matched: None,
            reason: format!(
                "{} has http-protocol Redirected: Envoy answers 301 to https on the external listener",
                ing.origin
            ),
        };
    }
    let Some((index, p)) = rule
        .paths
        .iter()
        .enumerate()
        .find(|(_, p)| path_matches(p, path, &req.headers))
    else {
        return Explanation {
            listener,
            matched: None,
            reason: format!("host {host:?} is served by {}, but no route matches path {path:?} and the headers given: Envoy answers 404", ing.origin),
        };
    };
    let targets = p
        .splits
        .iter()
        .filter(|s| s.percent > 0)
        .map(|s| Target {
            cluster: s.backend.cluster_name(),
            namespace: s.backend.namespace.to_string(),
            service: s.backend.service.to_string(),
            port: s.backend.port,
            percent: s.percent,
            headers: s
                .append_headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
        .collect();
    Explanation {
        listener,
        reason: String::new(),
        matched: Some(Match {
            virtual_host: rule
                .hosts
                .first()
                .map(|h| h.to_string())
                .unwrap_or_default(),
            route_index: index,
            path_prefix: if p.prefix.is_empty() {
                "/".into()
            } else {
                p.prefix.clone()
            },
            header_matches: p
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            targets,
            headers: p
                .append_headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            host_rewrite: p.rewrite_host.clone(),
            source: ing.origin.clone(),
            generation: ing.generation,
        }),
    }
}
