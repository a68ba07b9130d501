//! The intermediate model shared by every input (Routes, DomainMappings, and later KIngress):
//! the shape of Knative's KIngress spec. Routes are turned into it exactly as Knative's route
//! reconciler builds a KIngress; the Envoy translation reads only this.

use serde::Serialize;

use crate::model::config::HttpOption;
use crate::model::ObjectRef;

/// Which gateway listeners a rule is reachable on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Visibility {
    /// Internal listener only.
    ClusterLocal,
    /// External and internal listeners.
    ExternalIP,
}

/// A translated object: the equivalent of one KIngress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ingress {
    /// The object it came from.
    pub origin: ObjectRef,
    pub generation: Option<i64>,
    /// Orders owners in host conflicts (older wins); empty sorts first.
    pub creation_timestamp: String,
    pub http_option: HttpOption,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// Sorted, lowercase, without ports.
    pub hosts: Vec<String>,
    pub visibility: Visibility,
    /// First match wins.
    pub paths: Vec<HttpPath>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpPath {
    /// Literal prefix; "/" matches everything.
    pub prefix: String,
    /// Exact header matches, all required.
    pub headers: Headers,
    /// Set (overwrite) on the request before the split.
    pub append_headers: Headers,
    /// Replaces Host/:authority (DomainMapping).
    pub rewrite_host: Option<String>,
    pub splits: Vec<Split>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Split {
    pub backend: Backend,
    /// 0..=100; splits of a path sum to 100.
    pub percent: u32,
    /// Set (overwrite) on requests that take this split.
    pub append_headers: Headers,
}

/// A Kubernetes Service port: one Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Backend {
    pub namespace: String,
    pub service: String,
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
        self.rules
            .iter()
            .flat_map(|r| r.hosts.iter().map(String::as_str))
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

/// Header names and values ordered by name: a sorted `Vec` (a few entries each, thousands of
/// them per workload: a fraction of a `BTreeMap`'s memory), iterated like one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Sets `name` (replacing its value if it was there).
    pub fn insert(&mut self, name: String, value: String) -> Option<String> {
        match self.0.binary_search_by(|(n, _)| n.as_str().cmp(&name)) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (name, value));
                None
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&String> {
        self.0
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter().map(|(n, v)| (n, v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = (&'a String, &'a String);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, String)>,
        fn(&'a (String, String)) -> (&'a String, &'a String),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(n, v)| (n, v))
    }
}

impl IntoIterator for Headers {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl FromIterator<(String, String)> for Headers {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(items: I) -> Headers {
        let mut h = Headers::new();
        h.extend(items);
        h
    }
}

impl Extend<(String, String)> for Headers {
    fn extend<I: IntoIterator<Item = (String, String)>>(&mut self, items: I) {
        for (n, v) in items {
            self.insert(n, v);
        }
    }
}

impl<const N: usize> From<[(String, String); N]> for Headers {
    fn from(items: [(String, String); N]) -> Headers {
        items.into_iter().collect()
    }
}

impl Serialize for Headers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

/// Header names Knative sets (networking: pkg/http/header).
pub mod headers {
    pub const REVISION: &str = "Knative-Serving-Revision";
    pub const NAMESPACE: &str = "Knative-Serving-Namespace";
    pub const TAG: &str = "Knative-Serving-Tag";
    pub const DEFAULT_ROUTE: &str = "Knative-Serving-Default-Route";
    pub const ORIGINAL_HOST: &str = "K-Original-Host";
}
