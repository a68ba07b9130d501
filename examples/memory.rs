//! Where the memory goes: loads a generated workload the way `serve --manifests` does and
//! prints the live heap after each stage (a counting allocator, so these are bytes the
//! program holds, not the allocator's resident set).
//!
//! ```sh
//! cargo run --release --example memory -- --routes 10000
//! ```

use std::time::Instant;

use clap::Parser;
use knative_xds::sources::manifests::Manifests;
use knative_xds::translate::{Options, Translator};
use knative_xds::workload;
use knative_xds::xds::build::IncrementalBuilder;
use knative_xds::xds::ResourceType;

/// The binary's allocator, counting the bytes allocated.
#[global_allocator]
static ALLOCATOR: cap::Cap<mimalloc::MiMalloc> = cap::Cap::new(mimalloc::MiMalloc, usize::MAX);

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
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    workload::generate(args.routes, args.seed).write_to(dir.path())?;
    let base = mb();
    let stage = |name: &str, before: f64, t: Instant| {
        println!(
            "{name:<28} +{:>7.1} MB  (total {:>7.1} MB, peak {:>7.1} MB)  {:>7.1} ms",
            mb() - before,
            mb() - base,
            ALLOCATOR.max_allocated() as f64 / 1e6 - base,
            t.elapsed().as_secs_f64() * 1e3
        );
        mb()
    };

    let t = Instant::now();
    let mut m = Manifests::new(dir.path());
    m.reload()?;
    let dirty = m.store.take_dirty();
    let after_store = stage("objects (manifests + store)", base, t);

    let t = Instant::now();
    let options = Options::default();
    let mut translator = Translator::new(options.clone());
    let update = translator.update(&m.store, Some(&dirty));
    let after_translation = stage("translation", after_store, t);

    let t = Instant::now();
    let mut builder = IncrementalBuilder::new();
    let snapshot = builder.update(
        &update.served,
        &update.changed,
        &dirty,
        &m.store,
        &options.listeners,
        true,
    );
    stage("Envoy resources (snapshot)", after_translation, t);

    println!();
    for ty in ResourceType::ORDERED {
        let r = snapshot.resources(ty);
        let bytes: usize = r.values().map(|r| r.value.len()).sum();
        println!(
            "{:<5} {:>7} resources, {:>6.1} MB encoded",
            ty.short_name(),
            r.len(),
            bytes as f64 / 1e6
        );
    }
    Ok(())
}
