//! Load test of the ADS server: a generated workload, the real server in-process, many
//! Envoy-like ADS clients, changes one at a time. Prints one JSON object per run.
//!
//! ```sh
//! cargo run --release -p knative-xds-bench --example xds-load -- --routes 10000 --clients 1000 --changes 200 --delta
//! cargo run --release -p knative-xds-bench --example xds-load -- --routes 1000 --clients 100 --changes 50 --delta --compare
//! ```
//!
//! `--baseline` runs the server like kourier (one RouteConfiguration per listener, every
//! change resends every resource of every type with a fresh version); `--compare` runs
//! incremental then baseline in one process and adds `{"ratios": ...}` (baseline / incremental).
//! See `bench` for what is measured and how.

use std::time::Duration;

// The server runs in this process: give it the allocator the `knative-xds` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use bench::{LoadConfig, LoadReport, Mode};
use clap::Parser;
use translate::envoy::RouteLayout;
use xds::stream::Protocol;

#[derive(Parser, Debug)]
#[command(about = "ADS load test: N routes, M Envoy-like clients, K changes")]
struct Args {
    /// Knative Services (each implies one Route) in the generated workload.
    #[arg(long, default_value_t = 1000)]
    routes: usize,
    /// ADS clients, each on its own HTTP/2 connection.
    #[arg(long, default_value_t = 100)]
    clients: usize,
    /// Changes applied one at a time (each rewrites one Service's file).
    #[arg(long, default_value_t = 50)]
    changes: usize,
    /// Incremental xDS (the default).
    #[arg(long, conflicts_with = "sotw")]
    delta: bool,
    /// State-of-the-world xDS.
    #[arg(long)]
    sotw: bool,
    /// Run the server like kourier (full push with fresh versions on every change).
    #[arg(long, conflicts_with = "compare")]
    baseline: bool,
    /// Run incremental, then baseline, and print both plus their ratios.
    #[arg(long)]
    compare: bool,
    /// Route layout of the incremental mode (the baseline always uses per-listener).
    #[arg(long, value_enum, default_value_t = Layout::Scoped)]
    layout: Layout,
    /// Workload seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seconds every client may take to receive one change.
    #[arg(long, default_value_t = 120)]
    change_timeout: u64,
    /// Only write the generated workload's manifests to this folder and exit (to run
    /// `knative-xds serve --manifests` on it as its own process).
    #[arg(long)]
    write_workload: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Layout {
    Scoped,
    PerListener,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if let Some(dir) = &args.write_workload {
        workload::generate(args.routes, args.seed).write_to(dir)?;
        return Ok(());
    }
    let cfg = LoadConfig {
        routes: args.routes,
        clients: args.clients,
        changes: args.changes,
        protocol: if args.sotw {
            Protocol::Sotw
        } else {
            Protocol::Delta
        },
        mode: if args.baseline {
            Mode::Baseline
        } else {
            Mode::Incremental
        },
        layout: match args.layout {
            Layout::Scoped => RouteLayout::Scoped,
            Layout::PerListener => RouteLayout::PerListener,
        },
        seed: args.seed,
        change_timeout: Duration::from_secs(args.change_timeout),
        ..LoadConfig::default()
    };
    if !args.compare {
        print(&bench::run(&cfg)?)?;
        return Ok(());
    }
    let incremental = bench::run(&LoadConfig {
        mode: Mode::Incremental,
        ..cfg.clone()
    })?;
    print(&incremental)?;
    let baseline = bench::run(&LoadConfig {
        mode: Mode::Baseline,
        ..cfg
    })?;
    print(&baseline)?;
    let ratio = |b: f64, i: f64| {
        if i > 0.0 {
            (b / i * 100.0).round() / 100.0
        } else {
            0.0
        }
    };
    println!(
        "{}",
        serde_json::json!({"ratios": {
            "bytes": ratio(baseline.bytes_per_change_per_client.mean, incremental.bytes_per_change_per_client.mean),
            "p50": ratio(baseline.change_to_all_received_ms.p50, incremental.change_to_all_received_ms.p50),
            "p99": ratio(baseline.change_to_all_received_ms.p99, incremental.change_to_all_received_ms.p99),
            "server_cpu_per_change": ratio(baseline.server_cpu_ms_per_change, incremental.server_cpu_ms_per_change),
        }})
    );
    Ok(())
}

fn print(r: &LoadReport) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(r)?);
    let ok = r.final_check.clients_matching == r.clients && r.final_check.server_matches_render;
    if !ok {
        eprintln!("final check failed: {:?}", r.final_check);
    }
    Ok(())
}
