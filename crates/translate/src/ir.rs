//! The intermediate model shared by every input (Routes, DomainMappings, KIngresses):
//! the shape of Knative's KIngress spec. Routes are turned into it exactly as Knative's route
//! reconciler builds a KIngress; the Envoy translation reads only this. It reads from YAML
//! too, so a rule of the Envoy translation is tested from the IR alone (the builder crate's
//! `tests/ir_golden.rs`).

use serde::{Deserialize, Serialize};

use model::config::HttpOption;
use model::ObjectRef;

/// Which gateway listeners a rule is reachable on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Visibility {
    /// Internal listener only.
    ClusterLocal,
    /// External and internal listeners.
    ExternalIP,
}

/// A translated object: the equivalent of one KIngress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ingress {
    /// The object it came from.
    pub origin: ObjectRef,
    #[serde(default)]
    pub generation: Option<i64>,
    /// Orders owners in host conflicts (older wins); empty sorts first.
    #[serde(default)]
    pub creation_timestamp: String,
    #[serde(default)]
    pub http_option: HttpOption,
    pub rules: Vec<Rule>,
    /// Certificates for some of the rules' hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<Tls>,
}

/// A `kubernetes.io/tls` Secret for some hosts (KIngress `spec.tls[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tls {
    /// Sorted, lowercase; each one of the rules' hosts.
    pub hosts: Vec<std::sync::Arc<str>>,
    pub secret: model::ObjectKey,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    /// Sorted, lowercase, without ports.
    /// Shared with host ownership's claims.
    pub hosts: Vec<std::sync::Arc<str>>,
    pub visibility: Visibility,
    /// First match wins.
    /// Shared: a Route's cluster-local and external rules have the same paths.
    pub paths: std::sync::Arc<[HttpPath]>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpPath {
    /// Literal prefix; "/" matches everything.
    pub prefix: String,
    /// Exact header matches, all required.
    #[serde(default)]
    pub headers: Headers,
    /// Set (overwrite) on the request before the split.
    #[serde(default)]
    pub append_headers: Headers,
    /// Replaces Host/:authority (DomainMapping).
    #[serde(default)]
    pub rewrite_host: Option<String>,
    pub splits: Vec<Split>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    pub backend: Backend,
    /// 0..=100; splits of a path sum to 100.
    pub percent: u32,
    /// Set (overwrite) on requests that take this split.
    #[serde(default)]
    pub append_headers: Headers,
}

/// A Kubernetes Service port: one Envoy cluster. The strings are shared: a backend is
/// copied into every split that uses it and into the builder's maps.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Backend {
    pub namespace: std::sync::Arc<str>,
    pub service: std::sync::Arc<str>,
    pub port: u16,
}

impl Backend {
    /// The Envoy cluster (and ClusterLoadAssignment) name.
    pub fn cluster_name(&self) -> String {
        format!("{}/{}:{}", self.namespace, self.service, self.port)
    }
}

impl Ingress {
    /// Every host of every rule.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.host_arcs().map(|h| &**h)
    }

    /// [`Ingress::hosts`] as the shared strings the rules hold.
    pub fn host_arcs(&self) -> impl Iterator<Item = &std::sync::Arc<str>> {
        self.rules.iter().flat_map(|r| r.hosts.iter())
    }

    /// Every backend any split uses.
    pub fn backends(&self) -> impl Iterator<Item = &Backend> {
        self.rules
            .iter()
            .flat_map(|r| r.paths.iter())
            .flat_map(|p| p.splits.iter())
            .map(|s| &s.backend)
    }
}

/// Header names and values ordered by name.
pub type Headers = model::StrMap;

/// Header names Knative sets (networking: pkg/http/header).
pub mod headers {
    pub const REVISION: &str = "Knative-Serving-Revision";
    pub const NAMESPACE: &str = "Knative-Serving-Namespace";
    pub const TAG: &str = "Knative-Serving-Tag";
    pub const DEFAULT_ROUTE: &str = "Knative-Serving-Default-Route";
    pub const ORIGINAL_HOST: &str = "K-Original-Host";
}
