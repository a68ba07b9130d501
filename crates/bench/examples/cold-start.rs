//! Cold start of the `knative-xds` binary: spawned on a manifests folder, timed until
//! `/readyz` answers 200 (its first snapshot is served), with its resident set; several runs
//! in a row. Prints one JSON object.
//!
//! ```sh
//! cargo build --release
//! cargo run --release -p knative-xds-bench --example cold-start -- --routes 10000 --runs 10
//! ```
//!
//! See `bench::cold_start` for how it is measured.

use std::path::PathBuf;
use std::time::Duration;

use bench::cold_start::{self, ColdStartConfig};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Cold start of knative-xds serve --manifests: time to /readyz and RSS")]
struct Args {
    /// Knative Services (each implies one Route) in the generated workload.
    #[arg(long, default_value_t = 10_000)]
    routes: usize,
    /// Seed of the generated workload.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Starts, one after the other.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// A manifests folder to start on instead of a generated workload.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The server binary [default: `knative-xds` beside this example's folder, i.e.
    /// `target/release/knative-xds` for a release build].
    #[arg(long)]
    server: Option<PathBuf>,
    /// Seconds one start may take.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = cold_start::server_binary(args.server)?;
    let report = cold_start::run(&ColdStartConfig {
        server,
        dir: args.dir,
        routes: args.routes,
        seed: args.seed,
        runs: args.runs,
        timeout: Duration::from_secs(args.timeout),
        ..ColdStartConfig::default()
    })?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
