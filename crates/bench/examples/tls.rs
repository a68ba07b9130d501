//! HTTPS at scale: a generated workload of `--routes` Routes plus `--certs` DomainMappings,
//! each naming its own `kubernetes.io/tls` Secret in the folder. Prints
//!
//! 1. what one certificate rotated, and one certificate added, costs: the resources a delta
//!    Envoy is sent (per type, with their bytes) and the time to translate and build it;
//! 2. the cold start of the real binary (spawn → `/readyz`, resident size) with and without
//!    the certificates, alternated.
//!
//! ```sh
//! cargo build --release
//! cargo run --release -p knative-xds-bench --example tls -- --routes 10000 --certs 1000
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bench::cold_start::{self, ColdStartConfig};
use builder::{Encoded, IncrementalBuilder};
use clap::Parser;
use runtime::sources::manifests::Manifests;
use translate::{Options, Translator};
use xds::{ResourceType, Snapshot};

#[derive(Parser)]
#[command(about = "HTTPS at scale: a rotation's cost and the cold start with certificates")]
struct Args {
    #[arg(long, default_value_t = 10_000)]
    routes: usize,
    /// DomainMappings, each with its own certificate.
    #[arg(long, default_value_t = 1_000)]
    certs: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Cold starts of each folder (alternated).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The server binary [default: the `knative-xds` beside this example's binary].
    #[arg(long)]
    server: Option<PathBuf>,
}

fn certificate(name: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
    (
        params.self_signed(&key).expect("cert").pem(),
        key.serialize_pem(),
    )
}

/// Resources that differ between two snapshots, per type: (count, bytes).
fn sent(before: &Snapshot, after: &Snapshot) -> Vec<(ResourceType, usize, usize)> {
    let mut out = Vec::new();
    for ty in ResourceType::ORDERED {
        let (mut n, mut bytes) = (0, 0);
        for (name, r) in after.resources(ty).iter() {
            if before
                .get(ty, name)
                .is_none_or(|old| old.version != r.version)
            {
                n += 1;
                bytes += r.value_len() + name.len();
            }
        }
        if n > 0 {
            out.push((ty, n, bytes));
        }
    }
    out
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = cold_start::server_binary(args.server)?;
    let w = workload::generate(args.routes, args.seed);
    let plain = tempfile::tempdir()?;
    w.write_to(plain.path())?;
    let tls = tempfile::tempdir()?;
    w.write_to(tls.path())?;
    let (crt, key) = certificate("*.example.org");
    std::fs::write(
        tls.path().join("tls.yaml"),
        w.tls_manifests(args.certs, &crt, &key),
    )?;
    println!(
        "{} Routes, {} DomainMappings with their own certificate (ECDSA P-256)\n",
        w.routes(),
        args.certs
    );

    // 1. One rotation and one new certificate, in process.
    let mut m = Manifests::new(tls.path());
    m.reload()?;
    let options = Options::default();
    let mut t = Translator::new(options.clone());
    let mut b = IncrementalBuilder::new();
    let now = Some(runtime::app::unix_now());
    let mut step = |store: &mut model::Store, b: &mut IncrementalBuilder| {
        let dirty = store.take_dirty();
        let started = Instant::now();
        let u = t.update(store, dirty.as_ref());
        let s = b.update(
            &u.served,
            &u.changed,
            dirty.as_ref(),
            store,
            &options.listeners,
            true,
            Encoded::default(),
            now,
        );
        (s, started.elapsed())
    };
    let (first, _) = step(&mut m.store, &mut b);
    let listener = first
        .get(ResourceType::Listener, translate::tls::EXTERNAL_TLS)
        .map(|l| l.value_len())
        .unwrap_or(0);
    println!(
        "snapshot: {} Secrets ({} KB), HTTPS listener {} KB with {} filter chains",
        first.resources(ResourceType::Secret).len(),
        first
            .resources(ResourceType::Secret)
            .values()
            .map(|r| r.value_len())
            .sum::<usize>()
            / 1000,
        listener / 1000,
        b.tls_plan().external.len(),
    );
    let parse = |text: &str| model::parse::parse_file(Path::new("change.yaml"), text);
    let report = |what: &str, before: &Snapshot, after: &Snapshot, took: Duration| {
        let parts: Vec<String> = sent(before, after)
            .into_iter()
            .map(|(ty, n, bytes)| format!("{} {n} ({bytes} B)", ty.short_name()))
            .collect();
        println!(
            "{what:<24} sent: {:<40} translate+build {:.2} ms",
            parts.join(", "),
            took.as_secs_f64() * 1e3
        );
    };
    // Rotations: 21 of them, of different Secrets; the median.
    let mut before = first.clone();
    let mut times = Vec::new();
    let mut rotated = first.clone();
    for k in 0..21 {
        let (crt2, key2) = certificate("*.example.org");
        let i = (args.certs / 2 + k * 7) % args.certs.max(1);
        let (_, text) = w
            .tls_secret(i, &crt2, &key2)
            .ok_or_else(|| anyhow::anyhow!("no certificate {i}"))?;
        for o in parse(&text)? {
            m.store.apply(o);
        }
        let (snap, took) = step(&mut m.store, &mut b);
        times.push(took);
        if k == 20 {
            times.sort();
            report(
                "one rotation (median)",
                &before,
                &snap,
                times[times.len() / 2],
            );
        }
        before = snap.clone();
        rotated = snap;
    }
    // A new DomainMapping with its certificate: the HTTPS listener gains a chain.
    let all = w.tls_manifests(args.certs + 1, &crt, &key);
    // Its three documents (DomainMapping, claim, Secret) are the last; "\n---\n" never
    // occurs inside PEM.
    let docs: Vec<&str> = all.split("\n---\n").collect();
    let last = docs[docs.len().saturating_sub(3)..].join("\n---\n");
    let last = last.replace(&format!("tls-{}", args.certs), "tls-added");
    for o in parse(&last)? {
        m.store.apply(o);
    }
    let (added, took) = step(&mut m.store, &mut b);
    report("one certificate added", &rotated, &added, took);

    // 2. Cold start, alternated.
    println!(
        "\ncold start (spawn → /readyz), {} runs each, alternated:",
        args.runs
    );
    let mut results: [Vec<(f64, f64, f64)>; 2] = Default::default();
    for _ in 0..args.runs {
        for (i, dir) in [plain.path(), tls.path()].into_iter().enumerate() {
            let r = cold_start::run(&ColdStartConfig {
                server: server.clone(),
                dir: Some(dir.to_path_buf()),
                runs: 1,
                ..ColdStartConfig::default()
            })?;
            let run = &r.runs[0];
            results[i].push((run.ready_ms, run.rss_mib, run.peak_rss_mib));
        }
    }
    for (name, rs) in ["without certificates", "with certificates"]
        .iter()
        .zip(&results)
    {
        let median = |f: fn(&(f64, f64, f64)) -> f64| {
            let mut v: Vec<f64> = rs.iter().map(f).collect();
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        println!(
            "{name:<22} ready {:>6.0} ms   RSS {:>6.1} MiB   peak {:>6.1} MiB   (medians)",
            median(|r| r.0),
            median(|r| r.1),
            median(|r| r.2)
        );
    }
    Ok(())
}
