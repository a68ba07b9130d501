//! The knative-xds runtime: where the pure layers meet I/O.
//!
//! ```text
//! manifests dir / Kubernetes ─► sources ─► model::Store ─► translate ─► builder ─► xds::Snapshot ─► server (ADS) ─► Envoy
//! ```
//!
//! - [`sources`]: the manifests folder and its watcher, the Kubernetes watchers, the KIngress
//!   status writer.
//! - [`server`]: the tonic ADS, CSDS and Inspect services and the admin HTTP endpoints.
//! - [`app`]: the pipeline from a source to published snapshots, and the servers' wiring.

/// knative-xds' own gRPC API (`proto/knative_xds/v1/inspect.proto`), generated at build time.
#[allow(clippy::all, missing_docs, rust_2018_idioms)]
pub mod api {
    tonic::include_proto!("knative_xds.v1");
    /// Descriptor set of the API, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/knative_xds_descriptor.bin"));
}
pub mod app;
pub mod server;
pub mod sources;
