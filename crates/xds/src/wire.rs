//! ADS responses as the state machine makes them: each resource by reference to its shared
//! encoding, written straight to the wire.
//!
//! A prost `DiscoveryResponse` would own a copy of every resource (name, version, type URL and
//! encoded bytes): a new Envoy's first sync would copy every encoded resource and its
//! strings for each stream, all at once. These types hold the snapshot's `Arc`s and encode
//! to the same bytes prost writes for the equivalent message (fields in tag order, defaults
//! omitted), so tonic sends them with its prost codec unchanged.
//! They are encode-only: decoding one skips every field.

use std::sync::Arc;

use envoy_api::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryResponse, DiscoveryResponse, Resource as XdsResource,
};
use prost::bytes::{Buf, BufMut};
use prost::encoding::{
    encode_key, encode_varint, encoded_len_varint, key_len, skip_field, DecodeContext, WireType,
};
use prost::{DecodeError, Message};

use super::names;
use super::resource::Resource;

/// A state-of-the-world response (`envoy.service.discovery.v3.DiscoveryResponse`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SotwResponse {
    pub version_info: String,
    pub resources: Vec<Arc<Resource>>,
    pub type_url: String,
    pub nonce: String,
}

/// A delta response (`envoy.service.discovery.v3.DeltaDiscoveryResponse`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeltaResponse {
    pub system_version_info: String,
    pub resources: Vec<Arc<Resource>>,
    pub type_url: String,
    pub removed_resources: Vec<String>,
    pub nonce: String,
}

impl SotwResponse {
    /// The equivalent prost message (a copy: for tests and tools, not the serving path).
    pub fn to_prost(&self) -> DiscoveryResponse {
        DiscoveryResponse {
            version_info: self.version_info.clone(),
            resources: self.resources.iter().map(|r| r.any()).collect(),
            type_url: self.type_url.clone(),
            nonce: self.nonce.clone(),
            ..Default::default()
        }
    }
}

impl DeltaResponse {
    /// The equivalent prost message (a copy: for tests and tools, not the serving path).
    pub fn to_prost(&self) -> DeltaDiscoveryResponse {
        DeltaDiscoveryResponse {
            system_version_info: self.system_version_info.clone(),
            resources: self
                .resources
                .iter()
                .map(|r| XdsResource {
                    name: names::wire(&r.name).into_owned(),
                    version: r.version.to_string(),
                    resource: Some(r.any()),
                    ..Default::default()
                })
                .collect(),
            type_url: self.type_url.clone(),
            removed_resources: self.removed_resources.clone(),
            nonce: self.nonce.clone(),
            ..Default::default()
        }
    }
}

/// A length-delimited field (string, bytes or message body) of `len` bytes; proto3 omits an
/// empty string or bytes field, but never a present message.
pub(super) fn delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

pub(super) fn str_len(tag: u32, s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        delimited_len(tag, s.len())
    }
}

/// A resource name field: the name's wire form (see [`names`]), left out when empty.
pub(super) fn name_len(tag: u32, name: &str) -> usize {
    match names::wire_len(name) {
        0 => 0,
        len => delimited_len(tag, len),
    }
}

pub(super) fn put_name(tag: u32, name: &str, buf: &mut impl BufMut) {
    let (prefix, rest) = names::wire_parts(name);
    if prefix.len() + rest.len() > 0 {
        put_header(tag, prefix.len() + rest.len(), buf);
        buf.put_slice(prefix.as_bytes());
        buf.put_slice(rest.as_bytes());
    }
}

/// The key and length of a length-delimited field.
pub fn put_header(tag: u32, len: usize, buf: &mut impl BufMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

/// A proto3 string or bytes field: left out when empty.
pub fn put_str(tag: u32, s: &[u8], buf: &mut impl BufMut) {
    if !s.is_empty() {
        put_header(tag, s.len(), buf);
        buf.put_slice(s);
    }
}

/// `google.protobuf.Any { type_url = 1; value = 2; }`
fn any_len(r: &Resource) -> usize {
    str_len(1, r.type_url())
        + match r.value_len() {
            0 => 0,
            len => delimited_len(2, len),
        }
}

fn put_any(tag: u32, r: &Resource, buf: &mut impl BufMut) {
    put_header(tag, any_len(r), buf);
    put_str(1, r.type_url().as_bytes(), buf);
    if r.value_len() > 0 {
        put_header(2, r.value_len(), buf);
        r.write_value(buf);
    }
}

/// `envoy.service.discovery.v3.Resource { version = 1; resource = 2; name = 3; }`
fn delta_resource_len(r: &Resource) -> usize {
    str_len(1, &r.version) + delimited_len(2, any_len(r)) + name_len(3, &r.name)
}

fn put_delta_resource(tag: u32, r: &Resource, buf: &mut impl BufMut) {
    put_header(tag, delta_resource_len(r), buf);
    put_str(1, r.version.as_bytes(), buf);
    put_any(2, r, buf);
    put_name(3, &r.name, buf);
}

impl Message for SotwResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        put_str(1, self.version_info.as_bytes(), buf);
        for r in &self.resources {
            put_any(2, r, buf);
        }
        put_str(4, self.type_url.as_bytes(), buf);
        put_str(5, self.nonce.as_bytes(), buf);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        // Decoding is not supported: every field is skipped (these types are only sent).
        skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        str_len(1, &self.version_info)
            + self
                .resources
                .iter()
                .map(|r| delimited_len(2, any_len(r)))
                .sum::<usize>()
            + str_len(4, &self.type_url)
            + str_len(5, &self.nonce)
    }

    fn clear(&mut self) {
        *self = SotwResponse::default();
    }
}

impl Message for DeltaResponse {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        put_str(1, self.system_version_info.as_bytes(), buf);
        for r in &self.resources {
            put_delta_resource(2, r, buf);
        }
        put_str(4, self.type_url.as_bytes(), buf);
        put_str(5, self.nonce.as_bytes(), buf);
        for n in &self.removed_resources {
            // A repeated string keeps its empty elements.
            put_header(6, n.len(), buf);
            buf.put_slice(n.as_bytes());
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        // Decoding is not supported: every field is skipped (these types are only sent).
        skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        str_len(1, &self.system_version_info)
            + self
                .resources
                .iter()
                .map(|r| delimited_len(2, delta_resource_len(r)))
                .sum::<usize>()
            + str_len(4, &self.type_url)
            + str_len(5, &self.nonce)
            + self
                .removed_resources
                .iter()
                .map(|n| delimited_len(6, n.len()))
                .sum::<usize>()
    }

    fn clear(&mut self) {
        *self = DeltaResponse::default();
    }
}

#[cfg(test)]
mod tests {
    use super::super::ResourceType;

    use envoy_api::pb::envoy::config::cluster::v3::Cluster;

    use super::*;

    fn resources() -> Vec<Arc<Resource>> {
        let big = Cluster {
            name: "b".repeat(300),
            ..Default::default()
        };
        vec![
            Resource::new("a", &Cluster::default()),
            Resource::new("b".repeat(300), &big),
            // An empty message (no bytes) with no name.
            Resource::from_encoded("", ResourceType::Listener, Vec::new()),
        ]
    }

    #[test]
    fn sotw_encodes_as_prost_does() {
        for resp in [
            SotwResponse::default(),
            SotwResponse {
                version_info: "v1".into(),
                resources: resources(),
                type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
                nonce: "7".into(),
            },
        ] {
            let ours = resp.encode_to_vec();
            assert_eq!(ours.len(), resp.encoded_len());
            assert_eq!(ours, resp.to_prost().encode_to_vec());
            let back = DiscoveryResponse::decode(&ours[..]).unwrap();
            assert_eq!(back, resp.to_prost());
        }
    }

    #[test]
    fn delta_encodes_as_prost_does() {
        for resp in [
            DeltaResponse::default(),
            DeltaResponse {
                system_version_info: "v1".into(),
                resources: resources(),
                type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
                removed_resources: vec!["gone".into(), String::new()],
                nonce: "12".into(),
            },
        ] {
            let ours = resp.encode_to_vec();
            assert_eq!(ours.len(), resp.encoded_len());
            assert_eq!(ours, resp.to_prost().encode_to_vec());
            let back = DeltaDiscoveryResponse::decode(&ours[..]).unwrap();
            assert_eq!(back, resp.to_prost());
        }
    }

    #[test]
    fn decoding_skips_every_field() {
        let resp = DeltaResponse {
            nonce: "1".into(),
            resources: resources(),
            ..Default::default()
        };
        let bytes = resp.encode_to_vec();
        assert_eq!(
            DeltaResponse::decode(&bytes[..]).unwrap(),
            DeltaResponse::default()
        );
    }
}
