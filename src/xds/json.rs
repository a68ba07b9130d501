//! Canonical proto3 JSON of Envoy resources (with `Any` expanded), for `render` and the
//! debug endpoints, from the descriptor set the `envoy-types` dependency ships.

use std::sync::OnceLock;

use envoy_types::pb::google::protobuf::Any;
use prost_reflect::{DescriptorPool, DynamicMessage};

static DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_types.bin"));

/// The Envoy API descriptor pool, decoded once.
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(DESCRIPTORS).expect("descriptor set from envoy-types decodes")
    })
}

/// The raw descriptor set (for gRPC reflection).
pub fn descriptor_set() -> &'static [u8] {
    DESCRIPTORS
}

/// `Any` → JSON object with `@type`, or an error string naming the type.
pub fn any_to_json(any: &Any) -> Result<serde_json::Value, String> {
    let name = any.type_url.rsplit('/').next().unwrap_or("");
    let desc = pool()
        .get_message_by_name(name)
        .ok_or_else(|| format!("unknown type {name}"))?;
    let msg = DynamicMessage::decode(desc, any.value.as_slice()).map_err(|e| e.to_string())?;
    let mut v = serde_json::to_value(&msg).map_err(|e| e.to_string())?;
    if let serde_json::Value::Object(map) = &mut v {
        let mut out = serde_json::Map::new();
        out.insert("@type".into(), any.type_url.clone().into());
        out.extend(std::mem::take(map));
        v = serde_json::Value::Object(out);
    }
    Ok(v)
}
