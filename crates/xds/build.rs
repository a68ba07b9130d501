//! Copies the Envoy API descriptor set shipped inside the `envoy-types` dependency into
//! OUT_DIR, so JSON rendering (and gRPC reflection) use exactly the types we compile
//! against, without a hand-made copy in the repository.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=../../Cargo.lock");
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let src = envoy_types_dir()
        .map(|d| d.join("src/generated/types.bin"))
        .filter(|p| p.exists())
        .expect("could not find envoy-types' src/generated/types.bin via `cargo metadata`");
    std::fs::copy(&src, out.join("envoy_types.bin")).expect("copy types.bin");
}

fn envoy_types_dir() -> Option<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
        ])
        .arg(std::env::var("TARGET").ok()?)
        .current_dir(manifest_dir)
        .output()
        .ok()?;
    let meta: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
    meta["packages"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == "envoy-types")
        .and_then(|p| p["manifest_path"].as_str())
        .map(|m| PathBuf::from(m).parent().map(PathBuf::from))?
}
