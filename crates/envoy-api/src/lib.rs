//! Envoy's data-plane API as knative-xds uses it: the messages of the resources it serves,
//! of ADS and of CSDS, generated at build time from `proto/` (see its README). The pure
//! crates (translate, xds) need only these messages; the `grpc` feature adds the ADS and
//! CSDS services for the runtime and the tools. (The envoy-types crate holds the same
//! messages, but always with tonic's transport, which the pure crates must not depend on.)
//!
//! The module tree is envoy-types': `pb::envoy::config::cluster::v3::Cluster`.

/// The generated code, one module per proto package.
#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    rust_2018_idioms,
    rustdoc::all,
    unused_qualifications
)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/mod.rs"));
}

/// The descriptor set of those files and their imports: proto3 JSON and gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/envoy_api.bin"));
