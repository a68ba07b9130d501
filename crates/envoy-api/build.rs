//! Generates Envoy's messages (and, with the `grpc` feature, the ADS and CSDS services) from
//! `proto/` with protox, so no protoc is needed, the way the envoy-types crate generates
//! its code: type names under `type.googleapis.com`, Google's well-known types generated
//! here too (so `pb::google::protobuf::Any` and friends are this crate's own).

use std::path::PathBuf;

use prost::Message;

/// The files whose types knative-xds uses; protox follows their imports.
const ROOTS: &[&str] = &[
    "envoy/config/cluster/v3/cluster.proto",
    "envoy/config/endpoint/v3/endpoint.proto",
    "envoy/config/listener/v3/listener.proto",
    "envoy/config/route/v3/route.proto",
    "envoy/config/route/v3/scoped_route.proto",
    "envoy/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto",
    "envoy/extensions/filters/http/router/v3/router.proto",
    "envoy/extensions/filters/http/lua/v3/lua.proto",
    "envoy/extensions/upstreams/http/v3/http_protocol_options.proto",
    "envoy/extensions/transport_sockets/tls/v3/tls.proto",
    "envoy/extensions/transport_sockets/tls/v3/secret.proto",
    "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.proto",
    "envoy/service/discovery/v3/ads.proto",
    "envoy/service/status/v3/csds.proto",
];

fn main() {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let fds = protox::compile(ROOTS, ["proto"]).expect("compile Envoy's protos");
    // For proto3 JSON (`render`) and gRPC reflection.
    std::fs::write(out.join("envoy_api.bin"), fds.encode_to_vec()).expect("write descriptors");

    let mut config = prost_build::Config::new();
    config
        .enable_type_names()
        .type_name_domain(["."], "type.googleapis.com")
        .include_file("mod.rs");
    if std::env::var_os("CARGO_FEATURE_GRPC").is_some() {
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(true)
            .compile_well_known_types(true)
            .compile_fds_with_config(fds, config)
            .expect("generate Envoy's messages and services");
    } else {
        config.compile_well_known_types();
        config.compile_fds(fds).expect("generate Envoy's messages");
    }
}
