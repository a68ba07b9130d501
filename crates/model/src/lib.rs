//! The pure data model: Kubernetes/Knative objects as read, the store that indexes them,
//! Knative's configuration, and reading manifest files' text. No I/O, no async: its
//! dependencies are serde and a few data-structure crates.

pub mod config;
pub mod objects;
pub mod par;
pub mod parse;
pub mod store;
mod strmap;
pub mod template;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod yaml;

pub use config::KnativeConfig;
pub use store::{Kind, Object, ObjectKey, ObjectRef, Store};
pub use strmap::StrMap;
