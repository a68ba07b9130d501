//! Envoy resource types served over ADS and their wire form.
//!
//! A [`Resource`] is encoded once per content version; every stream that sends it shares
//! the same [`Arc`].

use std::sync::Arc;

use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use sha2::{Digest, Sha256};

use super::wire;

/// The xDS resource types this server serves, in make-before-break send order
/// (CDS → EDS → LDS → RDS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    Cluster,
    Endpoint,
    Listener,
    /// Scoped routes (SRDS): host → RouteConfiguration, with the scoped route layout.
    ScopedRoute,
    Route,
}

impl ResourceType {
    /// All types in the order in which a change must be pushed.
    pub const ORDERED: [ResourceType; 5] = [
        ResourceType::Cluster,
        ResourceType::Endpoint,
        ResourceType::Listener,
        ResourceType::ScopedRoute,
        ResourceType::Route,
    ];

    pub fn type_url(self) -> &'static str {
        match self {
            ResourceType::Cluster => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            ResourceType::Endpoint => {
                "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
            }
            ResourceType::Listener => "type.googleapis.com/envoy.config.listener.v3.Listener",
            ResourceType::ScopedRoute => {
                "type.googleapis.com/envoy.config.route.v3.ScopedRouteConfiguration"
            }
            ResourceType::Route => "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
        }
    }

    pub fn from_type_url(url: &str) -> Option<ResourceType> {
        Self::ORDERED.into_iter().find(|t| t.type_url() == url)
    }

    /// Short name used in logs, metrics and debug output.
    pub fn short_name(self) -> &'static str {
        match self {
            ResourceType::Cluster => "CDS",
            ResourceType::Endpoint => "EDS",
            ResourceType::Listener => "LDS",
            ResourceType::ScopedRoute => "SRDS",
            ResourceType::Route => "RDS",
        }
    }

    /// LDS and CDS are wildcard types: the client gets every resource, and a SotW
    /// response must carry the complete set (a missing name means "deleted").
    pub fn is_wildcard(self) -> bool {
        matches!(self, ResourceType::Cluster | ResourceType::Listener)
    }
}

/// One encoded resource at one content version.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// Shared with the key of the snapshot's map (one copy of each name).
    pub name: Arc<str>,
    /// Hex digest of the encoded bytes: stable across restarts and replicas. Shared with
    /// every stream's record of what its client has.
    pub version: Arc<str>,
    /// Its type URL: borrowed for the types we serve (no copy per resource).
    pub type_url: std::borrow::Cow<'static, str>,
    /// The encoded message, encoded once; when `name_first`, without its leading field 1,
    /// which is then `name` (every type we serve starts with its name, and a scope's name
    /// is half its bytes: ~10 MB at 10,000 Routes). [`Resource::write_value`] puts it back.
    body: Box<[u8]>,
    name_first: bool,
}

impl Resource {
    /// Packs and encodes `msg`. The caller guarantees the message holds no map field with
    /// more than one entry (prost encodes `HashMap`s in random order), so the encoding —
    /// and therefore the version — is deterministic.
    pub fn new<M: Message + prost::Name>(name: impl Into<Arc<str>>, msg: &M) -> Arc<Resource> {
        let url = M::type_url();
        let type_url = match ResourceType::from_type_url(&url) {
            Some(t) => std::borrow::Cow::Borrowed(t.type_url()),
            None => std::borrow::Cow::Owned(url),
        };
        Resource::from_encoded(name, type_url, msg.encode_to_vec())
    }

    /// A resource from its already encoded message.
    pub fn from_encoded(
        name: impl Into<Arc<str>>,
        type_url: std::borrow::Cow<'static, str>,
        value: Vec<u8>,
    ) -> Arc<Resource> {
        let name: Arc<str> = name.into();
        let version = content_version(&value);
        let name_first = starts_with_name(&value, &name);
        let body = if name_first {
            value[wire::str_len(1, &name)..].into()
        } else {
            value.into_boxed_slice()
        };
        Arc::new(Resource {
            name,
            version,
            type_url,
            body,
            name_first,
        })
    }

    /// Stands for a version a client has that no longer exists here (no bytes).
    pub fn unknown(name: Arc<str>, version: Arc<str>) -> Resource {
        Resource {
            name,
            version,
            type_url: Default::default(),
            body: Default::default(),
            name_first: false,
        }
    }

    /// The encoded message (copied together when stored apart).
    pub fn value(&self) -> std::borrow::Cow<'_, [u8]> {
        if !self.name_first {
            return std::borrow::Cow::Borrowed(&self.body);
        }
        let mut out = Vec::with_capacity(self.value_len());
        self.write_value(&mut out);
        std::borrow::Cow::Owned(out)
    }

    /// The encoded message's length.
    pub fn value_len(&self) -> usize {
        if self.name_first {
            wire::str_len(1, &self.name) + self.body.len()
        } else {
            self.body.len()
        }
    }

    /// Writes the encoded message.
    pub fn write_value(&self, buf: &mut impl prost::bytes::BufMut) {
        if self.name_first {
            wire::put_str(1, self.name.as_bytes(), buf);
        }
        buf.put_slice(&self.body);
    }

    /// The resource packed in an `Any`, as responses carry it.
    pub fn any(&self) -> Any {
        Any {
            type_url: self.type_url.to_string(),
            value: self.value().into_owned(),
        }
    }
}

/// Whether `value` begins with field 1 holding `name` (as prost writes it; an empty name is
/// left out, so never).
fn starts_with_name(value: &[u8], name: &str) -> bool {
    // A key byte and at most ten bytes of length.
    let mut head = [0u8; 11];
    let mut rest = &mut head[..];
    wire::put_header(1, name.len(), &mut rest);
    let n = 11 - rest.len();
    !name.is_empty()
        && value
            .strip_prefix(&head[..n])
            .is_some_and(|v| v.starts_with(name.as_bytes()))
}

/// First 16 hex digits of the SHA-256 of `bytes`, as the shared string resources hold, in one
/// allocation (made for every resource of a cold start).
pub fn content_version(bytes: &[u8]) -> Arc<str> {
    let mut out = [0u8; 16];
    hex_into(&Sha256::digest(bytes)[..8], &mut out);
    // Hex digits are ASCII.
    std::str::from_utf8(&out).unwrap_or_default().into()
}

/// Lowercase hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut out = vec![0; bytes.len() * 2];
    hex_into(bytes, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// Writes the lowercase hex of `bytes` into `out` (twice as long).
fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 15)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resource stored without its name gives back the bytes it was made from.
    #[test]
    fn stored_without_its_name_the_bytes_are_the_same() {
        use envoy_types::pb::envoy::config::cluster::v3::Cluster;
        use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
        let long = "x".repeat(300); // a two-byte length
        for name in ["", "a", "ns/svc:80", "é/ü", long.as_str()] {
            let c = Cluster {
                name: name.to_string(),
                alt_stat_name: "stats".into(),
                ..Default::default()
            };
            let encoded = c.encode_to_vec();
            let r = Resource::new(name, &c);
            assert_eq!(r.name_first, !name.is_empty(), "{name:?}");
            assert_eq!(*r.value(), encoded[..], "{name:?}");
            assert_eq!(r.value_len(), encoded.len());
            let mut written = Vec::new();
            r.write_value(&mut written);
            assert_eq!(written, encoded);
            assert_eq!(r.any().value, encoded);
            assert_eq!(r.version, content_version(&encoded));
        }
        // Named differently inside: kept whole.
        let rc = RouteConfiguration {
            name: "inside".into(),
            ..Default::default()
        };
        let r = Resource::new("outside", &rc);
        assert!(!r.name_first);
        assert_eq!(*r.value(), rc.encode_to_vec()[..]);
        // A name that is only a prefix of the field's: kept whole.
        let r = Resource::new("ins", &rc);
        assert!(!r.name_first);
        assert_eq!(*r.value(), rc.encode_to_vec()[..]);
    }

    #[test]
    fn content_version_is_the_digest_in_hex() {
        for bytes in [&b""[..], b"x", &[0xff; 100]] {
            let v = content_version(bytes);
            assert_eq!(*v, hex(&Sha256::digest(bytes)[..8]));
            assert_eq!(v.len(), 16);
        }
        // The SHA-256 of nothing, as `sha256sum` prints it.
        assert_eq!(&*content_version(b""), "e3b0c44298fc1c14");
        assert_eq!(hex(&[0x01, 0xab, 0xff]), "01abff");
    }
}
