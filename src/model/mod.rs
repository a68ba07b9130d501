//! The pure data model: Kubernetes/Knative objects as read, the store that indexes them,
//! and Knative's configuration. No I/O, no async.

pub mod config;
pub mod objects;
pub mod store;
pub mod strmap;
pub mod template;
pub mod yaml;

pub use config::KnativeConfig;
pub use store::{Kind, Object, ObjectKey, ObjectRef, Store};
pub use strmap::StrMap;
