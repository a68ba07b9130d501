//! [`StrMap`]: the small string map used for labels, annotations and header maps.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// A map of strings ordered by key: a sorted `Vec`. Labels, annotations and header maps have
/// a few entries each and there are tens of thousands of them, where a `BTreeMap`'s node
/// costs several times their contents. Keys are not allocated when they are constants (what
/// translation inserts) or keys read from YAML that most objects carry ([`WELL_KNOWN`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct StrMap(Vec<(Cow<'static, str>, String)>);

/// Keys that Knative and Kubernetes put on most objects (and the headers Knative's
/// KIngresses add to every split), found when a key is read: stored as `&'static str`.
const WELL_KNOWN: &[&str] = &[
    "serving.knative.dev/configuration",
    "serving.knative.dev/configurationGeneration",
    "serving.knative.dev/configurationUID",
    "serving.knative.dev/creator",
    "serving.knative.dev/lastModifier",
    "serving.knative.dev/revision",
    "serving.knative.dev/revisionUID",
    "serving.knative.dev/route",
    "serving.knative.dev/routingState",
    "serving.knative.dev/routingStateModified",
    "serving.knative.dev/service",
    "serving.knative.dev/serviceUID",
    "serving.knative.dev/domainMappingUID",
    "serving.knative.dev/rolloutDuration",
    "networking.internal.knative.dev/serviceType",
    "networking.internal.knative.dev/ingress",
    "networking.knative.dev/visibility",
    "networking.knative.dev/ingress.class",
    "networking.knative.dev/disableAutoTLS",
    "kubernetes.io/service-name",
    "endpointslice.kubernetes.io/managed-by",
    "app",
    "app.kubernetes.io/name",
    "app.kubernetes.io/component",
    "app.kubernetes.io/version",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "Knative-Serving-Revision",
    "Knative-Serving-Namespace",
    "Knative-Serving-Tag",
    "Knative-Serving-Default-Route",
    "K-Original-Host",
    "K-Network-Hash",
];

/// A key as stored: a constant as it is, a well-known string as its constant.
fn key(name: Cow<'static, str>) -> Cow<'static, str> {
    match name {
        Cow::Owned(name) => match WELL_KNOWN.iter().find(|k| **k == name) {
            Some(k) => Cow::Borrowed(k),
            None => Cow::Owned(name),
        },
        constant => constant,
    }
}

impl StrMap {
    pub fn new() -> StrMap {
        StrMap::default()
    }

    /// Sets `name` (replacing its value if it was there). A `&'static str` name is kept
    /// without a copy.
    pub fn insert(&mut self, name: impl Into<Cow<'static, str>>, value: String) -> Option<String> {
        let name = name.into();
        match self.0.binary_search_by(|(n, _)| (**n).cmp(&*name)) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key(name), value));
                None
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&String> {
        self.0
            .binary_search_by(|(n, _)| (**n).cmp(name))
            .ok()
            .map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &String)> {
        self.0.iter().map(|(n, v)| (&**n, v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        let i = self.0.binary_search_by(|(n, _)| (**n).cmp(name)).ok()?;
        Some(self.0.remove(i).1)
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| &**n)
    }
}

impl<'a> IntoIterator for &'a StrMap {
    type Item = (&'a str, &'a String);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (Cow<'static, str>, String)>,
        fn(&'a (Cow<'static, str>, String)) -> (&'a str, &'a String),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(n, v)| (&**n, v))
    }
}

impl IntoIterator for StrMap {
    type Item = (String, String);
    type IntoIter = std::iter::Map<
        std::vec::IntoIter<(Cow<'static, str>, String)>,
        fn((Cow<'static, str>, String)) -> (String, String),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter().map(|(n, v)| (n.into_owned(), v))
    }
}

impl FromIterator<(String, String)> for StrMap {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(items: I) -> StrMap {
        let mut h = StrMap::new();
        h.extend(items);
        h
    }
}

impl Extend<(String, String)> for StrMap {
    fn extend<I: IntoIterator<Item = (String, String)>>(&mut self, items: I) {
        for (n, v) in items {
            self.insert(n, v);
        }
    }
}

impl<K: Into<Cow<'static, str>>, const N: usize> From<[(K, String); N]> for StrMap {
    fn from(items: [(K, String); N]) -> StrMap {
        let mut m = StrMap::new();
        for (k, v) in items {
            m.insert(k, v);
        }
        m
    }
}

impl Serialize for StrMap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for StrMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<StrMap, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = StrMap;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<StrMap, A::Error> {
                let mut out = StrMap(Vec::with_capacity(m.size_hint().unwrap_or(0)));
                while let Some((k, v)) = m.next_entry::<String, String>()? {
                    out.insert(k, v);
                }
                out.0.shrink_to_fit();
                Ok(out)
            }
            fn visit_unit<E>(self) -> Result<StrMap, E> {
                Ok(StrMap::new())
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_keys_behave_like_any_other() {
        let m: StrMap = serde_json::from_str(
            r#"{"zeta": "1", "serving.knative.dev/service": "hello", "alpha": "2", "zeta": "3"}"#,
        )
        .unwrap();
        // Sorted by key, the last value of a repeated key wins, and a well-known key is found
        // by any equal string (not only the static one).
        let owned = String::from("serving.knative.dev/service");
        assert_eq!(m.get(&owned).map(String::as_str), Some("hello"));
        assert!(matches!(m.0[1].0, Cow::Borrowed(_)));
        assert!(matches!(m.0[0].0, Cow::Owned(_)));
        assert_eq!(
            m.iter().collect::<Vec<_>>(),
            [
                ("alpha", &"2".to_string()),
                ("serving.knative.dev/service", &"hello".to_string()),
                ("zeta", &"3".to_string()),
            ]
        );
        let mut copy = StrMap::new();
        for (k, v) in m.clone() {
            copy.insert(k, v);
        }
        assert_eq!(copy, m);
        assert_eq!(m.0.capacity(), 3);

        // A constant key is kept as it is, well known or not.
        let h = StrMap::from([("X-Not-Well-Known", "v".to_string())]);
        assert!(matches!(h.0[0].0, Cow::Borrowed(_)));
        assert_eq!(h.get("X-Not-Well-Known").map(String::as_str), Some("v"));
    }
}
