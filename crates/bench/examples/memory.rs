//! Where the memory goes: loads a generated workload the way `serve --manifests` does and
//! prints the live heap after each stage (a counting allocator, so these are bytes the
//! program holds), and beside it the process' resident size. Set `MIMALLOC_PURGE_DELAY=10`
//! for the resident size the server has (its `main` sets that default).
//!
//! ```sh
//! cargo run --release -p knative-xds-bench --example memory -- --routes 10000
//! ```

use std::time::Instant;

use builder::{Encoded, IncrementalBuilder};
use clap::Parser;
use envoy_api::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use runtime::sources::manifests::Manifests;
use translate::{Options, Translator};
use xds::stream::{AdsStream, DeltaStream};
use xds::ResourceType;

/// The binary's allocator, counting the bytes allocated.
#[global_allocator]
static ALLOCATOR: cap::Cap<mimalloc::MiMalloc> = cap::Cap::new(mimalloc::MiMalloc, usize::MAX);

/// The process' resident size (`VmRSS`) in MiB, as `/proc` gives it (Linux; else empty).
fn rss() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kib| format!("{:.1} MiB", kib / 1024.0))
        .unwrap_or_default()
}

fn mb() -> f64 {
    ALLOCATOR.allocated() as f64 / 1e6
}

#[derive(Parser)]
#[command(about = "Live heap per stage for a generated workload")]
struct Args {
    /// Knative Services in the generated workload.
    #[arg(long, default_value_t = 10_000)]
    routes: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Load this manifests folder instead of generating one (say, one written by
    /// `xds-load --write-workload`): the resident size then leaves out the generator's.
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tmp = tempfile::tempdir()?;
    let path = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            workload::generate(args.routes, args.seed).write_to(tmp.path())?;
            tmp.path().to_path_buf()
        }
    };
    let base = mb();
    let stage = |name: &str, before: f64, t: Instant| {
        println!(
            "{name:<28} +{:>7.1} MB  (total {:>7.1} MB, peak {:>7.1} MB)  {:>7.1} ms  resident {}",
            mb() - before,
            mb() - base,
            ALLOCATOR.max_allocated() as f64 / 1e6 - base,
            t.elapsed().as_secs_f64() * 1e3,
            rss()
        );
        mb()
    };

    let t = Instant::now();
    let mut m = Manifests::new(&path);
    m.reload()?;
    let dirty = m.store.take_dirty();
    let after_store = stage("objects (manifests + store)", base, t);

    let t = Instant::now();
    let options = Options::default();
    let mut translator = Translator::new(options.clone());
    let update = translator.update(&m.store, dirty.as_ref());
    translator.catch_up();
    let after_translation = stage("translation", after_store, t);

    let t = Instant::now();
    let mut builder = IncrementalBuilder::new();
    let snapshot = builder.update(
        &update.served,
        &update.changed,
        dirty.as_ref(),
        &m.store,
        &options.listeners,
        true,
        Encoded::default(),
        None,
    );
    let after_snapshot = stage("Envoy resources (snapshot)", after_translation, t);

    // What each connected Envoy costs: a delta stream subscribed to everything, every
    // response ACKed (the stream's record of what its client has).
    let t = Instant::now();
    let mut conn = DeltaStream::new();
    let mut requests: Vec<DeltaDiscoveryRequest> = ResourceType::ORDERED
        .iter()
        .map(|ty| DeltaDiscoveryRequest {
            type_url: ty.type_url().into(),
            resource_names_subscribe: vec!["*".into()],
            ..Default::default()
        })
        .collect();
    let mut received = 0;
    while !requests.is_empty() {
        let mut acks = Vec::new();
        for req in requests {
            for resp in conn.handle_request(req, &snapshot)? {
                received += resp.resources.len();
                acks.push(DeltaDiscoveryRequest {
                    type_url: resp.type_url,
                    response_nonce: resp.nonce,
                    ..Default::default()
                });
            }
        }
        requests = acks;
    }
    anyhow::ensure!(conn.in_sync(&snapshot), "the stream did not sync");
    stage(
        &format!("one delta Envoy ({received} sent)"),
        after_snapshot,
        t,
    );

    println!();
    for ty in ResourceType::ORDERED {
        let r = snapshot.resources(ty);
        let bytes: usize = r.values().map(|r| r.value_len()).sum();
        println!(
            "{:<5} {:>7} resources, {:>6.1} MB encoded",
            ty.short_name(),
            r.len(),
            bytes as f64 / 1e6
        );
    }
    Ok(())
}
