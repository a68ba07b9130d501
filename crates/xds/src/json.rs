//! Canonical proto3 JSON of Envoy resources (with `Any` expanded), for `render` and the
//! debug endpoints, from the descriptor set of the Envoy API we compile against (`envoy_api`).

use std::sync::OnceLock;

use envoy_api::pb::google::protobuf::Any;
use prost_reflect::{DescriptorPool, DynamicMessage};

static DESCRIPTORS: &[u8] = envoy_api::FILE_DESCRIPTOR_SET;

/// The Envoy API descriptor pool, decoded once.
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(DESCRIPTORS).expect("the compiled-in descriptor set decodes")
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

/// A snapshot as `render` prints it: per type, each resource's wire name, version and
/// proto3 JSON.
pub fn snapshot_json(snapshot: &crate::Snapshot) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for ty in crate::ResourceType::ORDERED {
        let items: Vec<serde_json::Value> = snapshot
            .resources(ty)
            .values()
            .map(|r| {
                serde_json::json!({
                    "name": crate::names::wire(&r.name),
                    "version": r.version,
                    "resource": any_to_json(&r.shown()).unwrap_or_else(|e| serde_json::json!({"error": e})),
                })
            })
            .collect();
        let key = match ty {
            crate::ResourceType::Cluster => "clusters",
            crate::ResourceType::Endpoint => "endpoints",
            crate::ResourceType::Secret => "secrets",
            crate::ResourceType::Listener => "listeners",
            crate::ResourceType::ScopedRoute => "scopedRoutes",
            crate::ResourceType::Route => "routes",
        };
        out.insert(key.into(), items.into());
    }
    serde_json::Value::Object(out)
}
