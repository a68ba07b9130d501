//! The xDS side, free of I/O: resource types and versions, snapshots, and the per-connection
//! ADS protocol state machine. The gRPC server (`crate::server`) drives it.

pub mod build;
pub mod connection;
pub mod json;
pub mod names;
pub mod resource;
pub mod snapshot;
pub mod wire;

pub use resource::{Resource, ResourceType, Version};
pub use snapshot::Snapshot;
