//! Network side: the ADS gRPC server and the admin HTTP endpoints.

pub mod admin;
pub mod ads;
pub mod grpc;
pub mod lazy;
pub mod metrics;
pub mod state;
pub mod tls;

pub use state::Shared;
