//! The xDS side, free of I/O and of Knative: resource types and content versions,
//! snapshots, the per-stream ADS protocol state machines and their wire encoding. The gRPC
//! server (the runtime crate) drives it; the builder crate fills its snapshots.

pub mod json;
pub mod names;
pub mod ordmap;
pub mod resource;
pub mod snapshot;
pub mod stream;
pub mod wire;

pub use resource::{Resource, ResourceType, Version};
pub use snapshot::Snapshot;
