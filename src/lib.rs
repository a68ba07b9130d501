//! # knative-xds
//!
//! Knative traffic objects in, Envoy configuration out over ADS.
//!
//! ```text
//! manifests dir ─► sources ─► model::Store ─► translate (pure) ─► xds::Snapshot ─► server (ADS) ─► Envoy
//! ```
//!
//! # Layout
//! - [`model`]: the objects as read, the store, Knative's ConfigMaps. Pure.
//! - [`translate`]: Knative semantics (Route, Service, DomainMapping → an intermediate
//!   KIngress-like model) and the Envoy translation. Pure and deterministic.
//! - [`xds`]: resource types, content versions, snapshots and the I/O-free ADS connection
//!   state machine.
//! - [`sources`]: the manifests folder and its watcher.
//! - [`server`]: the tonic ADS service and the admin HTTP endpoints.
//! - [`app`] and [`cli`]: wiring and flags.

#![forbid(unsafe_code)]

/// knative-xds' own gRPC API (`proto/knative_xds/v1/inspect.proto`), generated at build time.
#[allow(clippy::all, missing_docs)]
pub mod api {
    tonic::include_proto!("knative_xds.v1");
    /// Descriptor set of the API, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/knative_xds_descriptor.bin"));
}
pub mod app;
pub mod cli;
pub mod client;
pub mod load;
pub mod model;
pub mod ordmap;
pub mod par;
pub mod server;
pub mod sources;
pub mod translate;
pub mod workload;
pub mod xds;
