//! # knative-xds
//!
//! Knative traffic objects in, Envoy configuration out over ADS.
//!
//! ```text
//! manifests dir / Kubernetes ─► sources ─► model::Store ─► translate (pure) ─► xds::Snapshot ─► server (ADS)
//! ```
//!
//! # Layout
//! - [`xds`]: resource types, content versions, snapshots and the I/O-free ADS connection state
//!   machine.

pub mod xds;
