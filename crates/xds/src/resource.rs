//! Envoy resource types served over ADS and their wire form.
//!
//! A [`Resource`] is encoded once per content version; every stream that sends it shares
//! the same [`Arc`].

use std::sync::Arc;

use envoy_api::pb::google::protobuf::Any;
use prost::Message;
use sha2::{Digest, Sha256};

use super::wire;

/// The xDS resource types this server serves, in make-before-break send order
/// (CDS → EDS → SDS → LDS → RDS): what is referenced before what references it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    Cluster,
    Endpoint,
    /// SDS: TLS certificates (with private keys: see [`Resource::shown`]).
    Secret,
    Listener,
    /// Scoped routes (SRDS): host → RouteConfiguration, with the scoped route layout.
    ScopedRoute,
    Route,
}

impl ResourceType {
    /// All types in the order in which a change must be pushed.
    pub const ORDERED: [ResourceType; ResourceType::COUNT] = [
        ResourceType::Cluster,
        ResourceType::Endpoint,
        ResourceType::Secret,
        ResourceType::Listener,
        ResourceType::ScopedRoute,
        ResourceType::Route,
    ];

    /// How many types there are (`ty as usize` indexes arrays of this length).
    pub const COUNT: usize = 6;

    pub fn type_url(self) -> &'static str {
        match self {
            ResourceType::Secret => {
                "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
            }
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
            ResourceType::Secret => "SDS",
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
    /// Shared with the key of the snapshot's map (one copy of each name). In the server's
    /// form: [`super::names::wire`] gives the name clients see.
    pub name: Arc<str>,
    /// Digest of the encoded bytes: stable across restarts and replicas.
    pub version: Version,
    pub ty: ResourceType,
    /// The encoded message, encoded once, and held without what the name already says.
    /// [`Resource::write_value`] gives back the bytes.
    body: Body,
}

#[derive(Debug, Clone, PartialEq)]
enum Body {
    /// The encoded message.
    Whole(Box<[u8]>),
    /// The encoded message after its leading field 1, which is the name: every type we
    /// serve starts with its name, and a name is up to half of a small resource's bytes.
    AfterName(Box<[u8]>),
    /// [`Body::AfterName`]'s bytes LZ4-compressed (block format), `len` bytes unpacked: a
    /// RouteConfiguration repeats its hosts, cluster and header names, so it packs well,
    /// and those are the largest resources. Unpacking when sent costs little.
    Packed { len: u32, lz4: Box<[u8]> },
    /// A scope as [`Resource::scope`] makes it: the name, the RouteConfiguration (an `Arc`
    /// that the object's scopes share), and a key of one fragment, which is the name's last
    /// `key_len` bytes. There are ~9 per Route, so each one's bytes count.
    Scope {
        route_config: Arc<str>,
        key_len: u32,
    },
}

impl Resource {
    /// Encodes `msg`. The caller guarantees the message holds no map field with more than
    /// one entry (prost encodes `HashMap`s in random order), so the encoding — and
    /// therefore the version — is deterministic.
    pub fn new<M: Served>(name: impl Into<Arc<str>>, msg: &M) -> Arc<Resource> {
        Resource::from_encoded(name, M::TYPE, msg.encode_to_vec())
    }

    /// A resource from its already encoded message; `name` as clients see it.
    pub fn from_encoded(
        name: impl Into<Arc<str>>,
        ty: ResourceType,
        value: Vec<u8>,
    ) -> Arc<Resource> {
        // Kept in the server's form (see `names`); the bytes hold the wire form.
        let name = super::names::into_internal(name.into());
        Resource::from_kept(name, ty, value)
    }

    /// [`Resource::from_encoded`] for a name already in the server's form.
    fn from_kept(name: Arc<str>, ty: ResourceType, value: Vec<u8>) -> Arc<Resource> {
        let version = content_version(&value);
        let body = if starts_with_name(&value, &super::names::wire(&name)) {
            pack(&value[wire::name_len(1, &name)..])
        } else {
            Body::Whole(value.into_boxed_slice())
        };
        Arc::new(Resource {
            name,
            version,
            ty,
            body,
        })
    }

    /// A `ScopedRouteConfiguration` named `name` (in the server's form: [`super::names`])
    /// that sends the host `key` to `route_config`: the bytes
    /// prost gives for `{ name, route_configuration_name, key { fragments [{ string_key }] } }`.
    /// Stored as [`Body::Scope`] when `name` ends with `key`, as our scope names do.
    pub fn scope(name: Arc<str>, key: &str, route_config: Arc<str>) -> Arc<Resource> {
        let mut out = Vec::new();
        write_scope(&name, &route_config, key.as_bytes(), &mut out);
        match u32::try_from(key.len()) {
            Ok(key_len) if name.ends_with(key) => Arc::new(Resource {
                version: content_version(&out),
                name,
                ty: ResourceType::ScopedRoute,
                body: Body::Scope {
                    route_config,
                    key_len,
                },
            }),
            _ => Resource::from_kept(name, ResourceType::ScopedRoute, out),
        }
    }

    /// A scope's RouteConfiguration name, as it keeps it.
    pub fn route_config(&self) -> Option<&Arc<str>> {
        match &self.body {
            Body::Scope { route_config, .. } => Some(route_config),
            _ => None,
        }
    }

    /// Stands for a version a client has that no longer exists here (no bytes).
    pub fn unknown(name: Arc<str>, ty: ResourceType, version: Version) -> Resource {
        Resource {
            name,
            version,
            ty,
            body: Body::Whole(Default::default()),
        }
    }

    pub fn type_url(&self) -> &'static str {
        self.ty.type_url()
    }

    /// The encoded message (copied together when stored apart).
    pub fn value(&self) -> std::borrow::Cow<'_, [u8]> {
        if let Body::Whole(b) = &self.body {
            return std::borrow::Cow::Borrowed(b);
        }
        let mut out = Vec::with_capacity(self.value_len());
        self.write_value(&mut out);
        std::borrow::Cow::Owned(out)
    }

    /// The encoded message's length.
    pub fn value_len(&self) -> usize {
        match &self.body {
            Body::Whole(b) => b.len(),
            Body::AfterName(b) => wire::name_len(1, &self.name) + b.len(),
            Body::Packed { len, .. } => wire::name_len(1, &self.name) + *len as usize,
            Body::Scope {
                route_config,
                key_len,
            } => {
                wire::name_len(1, &self.name)
                    + wire::str_len(2, route_config)
                    + wire::delimited_len(3, scope_key_len(*key_len as usize))
            }
        }
    }

    /// Writes the encoded message.
    pub fn write_value(&self, buf: &mut impl prost::bytes::BufMut) {
        match &self.body {
            Body::Whole(b) => buf.put_slice(b),
            Body::AfterName(b) => {
                wire::put_name(1, &self.name, buf);
                buf.put_slice(b);
            }
            Body::Packed { len, lz4 } => {
                wire::put_name(1, &self.name, buf);
                let mut out = vec![0; *len as usize];
                // Made by `pack` from `len` bytes, which checked that they unpack.
                let n = lz4_flex::block::decompress_into(lz4, &mut out)
                    .expect("bytes packed by `pack` unpack");
                buf.put_slice(&out[..n]);
            }
            Body::Scope {
                route_config,
                key_len,
            } => {
                let name = self.name.as_bytes();
                let key = &name[name.len().saturating_sub(*key_len as usize)..];
                write_scope(&self.name, route_config, key, buf);
            }
        }
    }

    /// The resource packed in an `Any`, as responses carry it.
    pub fn any(&self) -> Any {
        Any {
            type_url: self.type_url().to_string(),
            value: self.value().into_owned(),
        }
    }

    /// [`Resource::any`] as it may be shown (CSDS, `render`, debug endpoints): a Secret's
    /// private key replaced by `[redacted]`, as Envoy's own config dump does.
    pub fn shown(&self) -> Any {
        use envoy_api::pb::envoy::config::core::v3::{data_source, DataSource};
        use envoy_api::pb::envoy::extensions::transport_sockets::tls::v3::{secret, Secret};
        let mut any = self.any();
        if self.ty != ResourceType::Secret {
            return any;
        }
        let redacted = || DataSource {
            specifier: Some(data_source::Specifier::InlineString("[redacted]".into())),
            ..Default::default()
        };
        // Anything that does not decode is shown as nothing rather than as bytes.
        let mut s = Secret::decode(any.value.as_slice()).unwrap_or_default();
        if let Some(secret::Type::TlsCertificate(c)) = &mut s.r#type {
            for field in [&mut c.private_key, &mut c.password, &mut c.pkcs12] {
                if field.is_some() {
                    *field = Some(redacted());
                }
            }
            c.private_key_provider = None;
        }
        if let Some(secret::Type::GenericSecret(g)) = &mut s.r#type {
            g.secret = Some(redacted());
        }
        any.value = s.encode_to_vec();
        any
    }
}

/// Below this many bytes a message is kept as it is: packing saves little and costs a
/// copy each time it is sent.
const PACK_MIN: usize = 256;

/// [`Body::AfterName`] of `rest`, or [`Body::Packed`] when that is at least a quarter
/// smaller.
fn pack(rest: &[u8]) -> Body {
    if rest.len() >= PACK_MIN {
        if let Ok(len) = u32::try_from(rest.len()) {
            let lz4 = lz4_flex::block::compress(rest);
            if lz4.len() * 4 <= rest.len() * 3 {
                // Checked once here, so that sending never meets bytes that do not unpack.
                let mut out = vec![0; rest.len()];
                if lz4_flex::block::decompress_into(&lz4, &mut out).ok() == Some(rest.len())
                    && out == rest
                {
                    return Body::Packed {
                        len,
                        lz4: lz4.into_boxed_slice(),
                    };
                }
            }
        }
    }
    Body::AfterName(rest.into())
}

/// A scope's bytes (see [`Resource::scope`]); `name` is kept form (see [`super::names`]).
fn write_scope(name: &str, route_config: &str, key: &[u8], buf: &mut impl prost::bytes::BufMut) {
    wire::put_name(1, name, buf);
    wire::put_str(2, route_config.as_bytes(), buf);
    // key (3) { fragments (1) { string_key (1) } }: messages and a oneof member, written
    // even when empty.
    wire::put_header(3, scope_key_len(key.len()), buf);
    wire::put_header(1, wire::delimited_len(1, key.len()), buf);
    wire::put_header(1, key.len(), buf);
    buf.put_slice(key);
}

/// The length of a scope's `key { fragments [{ string_key }] }` for a key of `key_len` bytes.
fn scope_key_len(key_len: usize) -> usize {
    wire::delimited_len(1, wire::delimited_len(1, key_len))
}

/// The messages this server serves, each with its [`ResourceType`].
pub trait Served: Message {
    const TYPE: ResourceType;
}

macro_rules! served {
    ($($ty:path => $t:ident),* $(,)?) => {
        $(impl Served for $ty {
            const TYPE: ResourceType = ResourceType::$t;
        })*
    };
}

served! {
    envoy_api::pb::envoy::config::cluster::v3::Cluster => Cluster,
    envoy_api::pb::envoy::config::endpoint::v3::ClusterLoadAssignment => Endpoint,
    envoy_api::pb::envoy::config::listener::v3::Listener => Listener,
    envoy_api::pb::envoy::config::route::v3::ScopedRouteConfiguration => ScopedRoute,
    envoy_api::pb::envoy::config::route::v3::RouteConfiguration => Route,
    envoy_api::pb::envoy::extensions::transport_sockets::tls::v3::Secret => Secret,
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

/// A resource's content version: the first 16 hex digits of the SHA-256 of its bytes, held
/// inline. There is one per resource and one per resource in every stream's record of what
/// its client has; as an `Arc<str>` each would be a 32-byte allocation of its own.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version([u8; 16]);

impl Version {
    /// Stands for any version a client names that cannot be one of ours (ours are always
    /// 16 lowercase hex digits).
    pub const FOREIGN: Version = Version(*b"(not-ours)......");

    /// A version a client says it has (delta `initial_resource_versions`): kept as it is
    /// when it has our length, else [`Version::FOREIGN`]. Either way it equals one of ours
    /// only if it is that version, which is all it is compared for.
    pub fn from_client(v: &str) -> Version {
        v.as_bytes()
            .try_into()
            .map(Version)
            .unwrap_or(Version::FOREIGN)
    }

    pub fn as_str(&self) -> &str {
        // Hex digits, or the whole of a client's string (see `from_client`): always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl std::ops::Deref for Version {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// First 16 hex digits of the SHA-256 of `bytes`.
pub fn content_version(bytes: &[u8]) -> Version {
    let mut out = [0u8; 16];
    hex_into(&Sha256::digest(bytes)[..8], &mut out);
    Version(out)
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
        use envoy_api::pb::envoy::config::cluster::v3::Cluster;
        use envoy_api::pb::envoy::config::route::v3::RouteConfiguration;
        let long = "x".repeat(300); // a two-byte length
        for name in ["", "a", "ns/svc:80", "é/ü", long.as_str()] {
            let c = Cluster {
                name: name.to_string(),
                alt_stat_name: "stats".into(),
                ..Default::default()
            };
            let encoded = c.encode_to_vec();
            let r = Resource::new(name, &c);
            assert_eq!(
                matches!(r.body, Body::AfterName(_)),
                !name.is_empty(),
                "{name:?}"
            );
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
        assert!(matches!(r.body, Body::Whole(_)));
        assert_eq!(*r.value(), rc.encode_to_vec()[..]);
        // A name that is only a prefix of the field's: kept whole.
        let r = Resource::new("ins", &rc);
        assert!(matches!(r.body, Body::Whole(_)));
        assert_eq!(*r.value(), rc.encode_to_vec()[..]);
    }

    /// A large message that packs well is kept packed, one that does not is kept as it
    /// is; either way it gives back prost's bytes, length and version.
    #[test]
    fn large_messages_are_packed_when_that_pays() {
        use envoy_api::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
        let host = |i: usize, domains: Vec<String>| VirtualHost {
            name: format!("host-{i}"),
            domains,
            ..Default::default()
        };
        // Repetitive, as RouteConfigurations are.
        let repetitive = RouteConfiguration {
            name: "Service.serving.knative.dev/ns/hello".into(),
            virtual_hosts: (0..8)
                .map(|i| host(i, vec![format!("hello.ns.svc.cluster.local:{i}"); 4]))
                .collect(),
            ..Default::default()
        };
        // Pseudo-random domains: nothing to pack.
        let mut x = 0x9e37_79b9_u64;
        let mut noise = || {
            (0..40)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    char::from(b'a' + (x % 26) as u8)
                })
                .collect::<String>()
        };
        let random = RouteConfiguration {
            name: "random".into(),
            virtual_hosts: (0..8).map(|i| host(i, vec![noise(), noise()])).collect(),
            ..Default::default()
        };
        for (rc, packed) in [(&repetitive, true), (&random, false)] {
            let encoded = rc.encode_to_vec();
            assert!(encoded.len() >= PACK_MIN);
            let r = Resource::new(rc.name.as_str(), rc);
            assert_eq!(matches!(r.body, Body::Packed { .. }), packed, "{}", rc.name);
            assert_eq!(*r.value(), encoded[..]);
            assert_eq!(r.value_len(), encoded.len());
            let mut written = Vec::new();
            r.write_value(&mut written);
            assert_eq!(written, encoded);
            assert_eq!(r.version, content_version(&encoded));
        }
    }

    /// A scope whose name ends with its key keeps neither; its bytes are prost's, for empty
    /// strings too.
    #[test]
    fn scope_keeps_only_its_route_configuration() {
        use envoy_api::pb::envoy::config::route::v3::{
            scoped_route_configuration as s, ScopedRouteConfiguration,
        };
        for (name, key, rc) in [
            ("x/a.example", "a.example", "Route/ns/a"),
            ("x/", "", "rc"),
            ("", "", ""),
            ("é/ü", "ü", ""),
        ] {
            let msg = ScopedRouteConfiguration {
                name: name.into(),
                route_configuration_name: rc.into(),
                key: Some(s::Key {
                    fragments: vec![s::key::Fragment {
                        r#type: Some(s::key::fragment::Type::StringKey(key.into())),
                    }],
                }),
                ..Default::default()
            };
            let r = Resource::scope(name.into(), key, rc.into());
            assert!(matches!(r.body, Body::Scope { .. }), "{name:?}");
            let want = msg.encode_to_vec();
            assert_eq!(*r.value(), want[..], "{name:?}");
            assert_eq!(r.value_len(), want.len(), "{name:?}");
            assert_eq!(r.version, content_version(&want), "{name:?}");
        }
    }

    /// Each served message's type is the one its type URL names.
    #[test]
    fn served_types_match_their_type_urls() {
        use envoy_api::pb::envoy::config::{cluster, endpoint, listener, route};
        fn check<M: Served + prost::Name>() {
            assert_eq!(M::TYPE.type_url(), M::type_url());
        }
        check::<cluster::v3::Cluster>();
        check::<endpoint::v3::ClusterLoadAssignment>();
        check::<listener::v3::Listener>();
        check::<route::v3::ScopedRouteConfiguration>();
        check::<route::v3::RouteConfiguration>();
        // A stored resource is no bigger than 64 bytes (an 80-byte allocation in its `Arc`).
        assert!(std::mem::size_of::<Resource>() <= 64);
    }

    #[test]
    fn content_version_is_the_digest_in_hex() {
        for bytes in [&b""[..], b"x", &[0xff; 100]] {
            let v = content_version(bytes);
            assert_eq!(*v, hex(&Sha256::digest(bytes)[..8]));
            assert_eq!(v.len(), 16);
            assert_eq!(Version::from_client(&v), v);
        }
        // What a client names that cannot be ours never equals one of ours.
        for other in ["", "e3b0c44298fc1c14-and-more", "(not-ours)......", "ü"] {
            let v = Version::from_client(other);
            assert_ne!(v, content_version(b""));
            assert!(v == Version::FOREIGN || *v == *other, "{other:?}");
        }
        // The SHA-256 of nothing, as `sha256sum` prints it.
        assert_eq!(&*content_version(b""), "e3b0c44298fc1c14");
        assert_eq!(hex(&[0x01, 0xab, 0xff]), "01abff");
    }
}
