//! [`StrMap`]: the small string map used for labels, annotations and header maps.

use serde::{Deserialize, Serialize};

/// A map of strings ordered by key, packed into one allocation. Labels, annotations and
/// header maps have a few entries each and there are tens of thousands of them: as a `Vec`
/// of string pairs each map takes an allocation per string besides the `Vec`'s and several
/// times the room of its text; packed, it is one allocation little larger than its text.
///
/// Layout: entries in key order, each a key then a value. A key that Knative and Kubernetes
/// put on most objects ([`WELL_KNOWN`]) is one byte, its index; any other is [`OTHER_KEY`]
/// then the key as a string. A string is its length (LEB128) then its UTF-8 bytes. The
/// layout is canonical (one encoding per map), so equality and hashing are the bytes'.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct StrMap(Box<[u8]>);

/// Marks a key that is not well known.
const OTHER_KEY: u8 = u8::MAX;

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

const _: () = assert!(WELL_KNOWN.len() < OTHER_KEY as usize);

impl StrMap {
    pub fn new() -> StrMap {
        StrMap::default()
    }

    /// Sets `name` (replacing its value if it was there); returns the value it replaced.
    /// Re-encodes the map: maps are small and rarely written after they are read.
    pub fn insert(&mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Option<String> {
        let (name, value) = (name.as_ref(), value.as_ref());
        let mut entries: Vec<(&str, &str)> = self.iter().collect();
        let old = match entries.binary_search_by(|(n, _)| (*n).cmp(name)) {
            Ok(i) => Some(std::mem::replace(&mut entries[i].1, value).to_string()),
            Err(i) => {
                entries.insert(i, (name, value));
                None
            }
        };
        let packed = encode(&entries);
        self.0 = packed;
        old
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn iter(&self) -> Iter<'_> {
        Iter(&self.0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.iter().count()
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        let mut entries: Vec<(&str, &str)> = self.iter().collect();
        let i = entries.iter().position(|(n, _)| *n == name)?;
        let old = entries.remove(i).1.to_string();
        let packed = encode(&entries);
        self.0 = packed;
        Some(old)
    }

    pub fn clear(&mut self) {
        self.0 = Box::default();
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.iter().map(|(n, _)| n)
    }

    /// A map of `pairs` in any order; of a repeated key, the last value wins.
    fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> StrMap {
        let mut entries: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_ref(), v.as_ref()))
            .collect();
        // Stable: equal keys keep their order, so the last of them is the one to keep.
        entries.sort_by(|a, b| a.0.cmp(b.0));
        let mut kept: Vec<(&str, &str)> = Vec::with_capacity(entries.len());
        for e in entries {
            match kept.last_mut() {
                Some(last) if last.0 == e.0 => *last = e,
                _ => kept.push(e),
            }
        }
        StrMap(encode(&kept))
    }
}

/// Packs `entries` (sorted by key, no key twice) in one exactly sized allocation.
fn encode(entries: &[(&str, &str)]) -> Box<[u8]> {
    let known: smallvec::SmallVec<[Option<usize>; 8]> = (entries.iter())
        .map(|(k, _)| WELL_KNOWN.iter().position(|w| w == k))
        .collect();
    let str_len = |s: &str| len_bytes(s.len()) + s.len();
    let size: usize = (entries.iter().zip(&known))
        .map(|((k, v), i)| 1 + i.map_or_else(|| str_len(k), |_| 0) + str_len(v))
        .sum();
    let mut out = Vec::with_capacity(size);
    for ((k, v), i) in entries.iter().zip(known) {
        match i {
            // The assertion above keeps every index below OTHER_KEY.
            Some(i) => out.push(i as u8),
            None => {
                out.push(OTHER_KEY);
                put_str(&mut out, k);
            }
        }
        put_str(&mut out, v);
    }
    debug_assert_eq!(out.len(), size);
    out.into_boxed_slice()
}

fn len_bytes(n: usize) -> usize {
    (usize::BITS - n.leading_zeros()).div_ceil(7).max(1) as usize
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let mut n = s.len();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(s.as_bytes());
}

/// The string at the start of `buf` and what follows it; `None` past the end (the buffer
/// only ever holds what [`encode`] wrote, so that is the end of the map).
fn take_str(buf: &[u8]) -> Option<(&str, &[u8])> {
    let mut n = 0usize;
    let mut shift = 0;
    let mut rest = buf;
    loop {
        let (&b, tail) = rest.split_first()?;
        rest = tail;
        n |= usize::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let (s, rest) = rest.split_at_checked(n)?;
    Some((std::str::from_utf8(s).ok()?, rest))
}

/// The entries of a [`StrMap`] in key order.
pub struct Iter<'a>(&'a [u8]);

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<(&'a str, &'a str)> {
        let (&tag, rest) = self.0.split_first()?;
        let (key, rest) = match tag {
            OTHER_KEY => take_str(rest)?,
            i => (*WELL_KNOWN.get(usize::from(i))?, rest),
        };
        let (value, rest) = take_str(rest)?;
        self.0 = rest;
        Some((key, value))
    }
}

impl std::fmt::Debug for StrMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &'a StrMap {
    type Item = (&'a str, &'a str);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl IntoIterator for StrMap {
    type Item = (String, String);
    type IntoIter = std::vec::IntoIter<(String, String)>;
    fn into_iter(self) -> Self::IntoIter {
        let owned: Vec<(String, String)> = (self.iter())
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        owned.into_iter()
    }
}

impl FromIterator<(String, String)> for StrMap {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(items: I) -> StrMap {
        let pairs: Vec<(String, String)> = items.into_iter().collect();
        StrMap::from_pairs(&pairs)
    }
}

impl Extend<(String, String)> for StrMap {
    fn extend<I: IntoIterator<Item = (String, String)>>(&mut self, items: I) {
        let mut pairs: Vec<(String, String)> = std::mem::take(self).into_iter().collect();
        pairs.extend(items);
        *self = StrMap::from_pairs(&pairs);
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> From<[(K, V); N]> for StrMap {
    fn from(items: [(K, V); N]) -> StrMap {
        StrMap::from_pairs(&items)
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
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<StrMap, A::Error> {
                let mut pairs = Vec::with_capacity(m.size_hint().unwrap_or(0));
                while let Some(pair) = m.next_entry::<String, String>()? {
                    pairs.push(pair);
                }
                Ok(StrMap::from_pairs(&pairs))
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
        assert_eq!(m.get(&owned), Some("hello"));
        assert_eq!(
            m.iter().collect::<Vec<_>>(),
            [
                ("alpha", "2"),
                ("serving.knative.dev/service", "hello"),
                ("zeta", "3"),
            ]
        );
        assert_eq!(m.len(), 3);
        // One byte for the well-known key, 1 + 1 + 5 for "alpha"/"zeta", 1 + len per value.
        assert_eq!(m.0.len(), (1 + 6) + (1 + 1 + 5 + 2) + (1 + 1 + 4 + 2));

        // However it is built, the same map is the same bytes (equality is byte equality).
        let mut copy = StrMap::new();
        for (k, v) in m.clone().into_iter().rev() {
            copy.insert(k, v);
        }
        assert_eq!(copy, m);
        let h = StrMap::from([
            ("zeta", "3"),
            ("alpha", "2"),
            ("serving.knative.dev/service", "hello"),
        ]);
        assert_eq!(h, m);
    }

    #[test]
    fn insert_replace_remove_and_long_values() {
        let long = "x".repeat(70_000); // a three-byte length
        let mut m = StrMap::new();
        assert_eq!(m.insert("b", "1"), None);
        assert_eq!(m.insert("a", long.as_str()), None);
        assert_eq!(m.insert("é", ""), None);
        assert_eq!(m.insert("b", "2"), Some("1".to_string()));
        assert_eq!(m.get("a"), Some(long.as_str()));
        assert_eq!(m.keys().collect::<Vec<_>>(), ["a", "b", "é"]);
        assert_eq!(m.get("é"), Some(""));
        assert_eq!(m.remove("a"), Some(long.clone()));
        assert_eq!(m.remove("a"), None);
        assert_eq!(format!("{m:?}"), r#"{"b": "2", "é": ""}"#);
        m.clear();
        assert!(m.is_empty() && m.get("b").is_none());
        for n in [0, 1, 127, 128, 16_383, 16_384, 70_000] {
            let mut out = Vec::new();
            put_str(&mut out, &"y".repeat(n));
            assert_eq!(out.len(), len_bytes(n) + n, "{n}");
            assert_eq!(
                take_str(&out).map(|(s, rest)| (s.len(), rest.len())),
                Some((n, 0))
            );
        }
    }
}
