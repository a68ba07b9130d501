//! Compiles knative-xds' own gRPC API (`proto/knative_xds/v1/inspect.proto`) with protox, so no
//! protoc is needed on the machine.

fn main() {
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    // Our own API, compiled with protox (no protoc needed on the machine).
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["knative_xds/v1/inspect.proto"], ["proto"])
        .expect("compile proto/knative_xds/v1/inspect.proto");
    std::fs::write(
        out.join("knative_xds_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )
    .expect("write descriptor set");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)
        .expect("generate the Inspect service");
}
