//! The YAML readers compared on the cold-start workload: every file of a generated
//! manifests folder parsed into objects on one thread, by the shipped reader (the fast path,
//! else serde-saphyr), by serde-saphyr alone, by serde_yaml alone and by the fast path with
//! serde_yaml behind it. All four must read the same objects (checked first); then rounds
//! alternate the readers, and the median of each is printed.
//!
//! ```sh
//! cargo run --release -p knative-xds-bench --example yaml-readers -- --routes 10000
//! ```

use std::path::Path;
use std::time::{Duration, Instant};

use clap::Parser;
use model::parse::parse_file_with;
use model::yaml::{self, Reader, Shipped};
use model::Object;
use serde::de::DeserializeOwned;

// As the server: allocation-heavy readers are timed with the allocator they run with.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
struct Args {
    /// Knative Services in the generated workload (the cold-start benchmark's shape).
    #[arg(long, default_value_t = 10_000)]
    routes: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Rounds; each parses the whole folder once per reader.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

struct SaphyrOnly;
impl Reader for SaphyrOnly {
    fn read<T: DeserializeOwned>(&self, text: &str) -> Result<T, yaml::Error> {
        yaml::full(text)
    }
}

struct SerdeYamlOnly;
impl Reader for SerdeYamlOnly {
    fn read<T: DeserializeOwned>(&self, text: &str) -> Result<T, yaml::Error> {
        serde_yaml::from_str(text).map_err(|e| yaml::Error {
            line: e.location().map(|l| l.line()),
            message: e.to_string(),
        })
    }
}

struct FastThenSerdeYaml;
impl Reader for FastThenSerdeYaml {
    fn read<T: DeserializeOwned>(&self, text: &str) -> Result<T, yaml::Error> {
        match yaml::fast(text) {
            Some(v) => Ok(v),
            None => SerdeYamlOnly.read(text),
        }
    }
}

fn parse_all(files: &[(String, String)], reader: &impl Reader) -> anyhow::Result<Vec<Object>> {
    let mut out = Vec::new();
    for (path, text) in files {
        out.extend(parse_file_with(Path::new(path), text, reader)?);
    }
    Ok(out)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let files = workload::generate(args.routes, args.seed).files;
    let bytes: usize = files.iter().map(|(_, t)| t.len()).sum();
    let docs: usize = files
        .iter()
        .map(|(_, t)| t.matches("\n---\n").count() + 1)
        .sum();

    let shipped = parse_all(&files, &Shipped)?;
    for (name, objects) in [
        ("serde-saphyr", parse_all(&files, &SaphyrOnly)?),
        ("serde_yaml", parse_all(&files, &SerdeYamlOnly)?),
        ("fast+serde_yaml", parse_all(&files, &FastThenSerdeYaml)?),
    ] {
        anyhow::ensure!(objects == shipped, "{name} read other objects");
    }
    println!(
        "{} files, {docs} documents, {:.1} MB, {} objects: every reader read the same objects",
        files.len(),
        bytes as f64 / 1e6,
        shipped.len()
    );
    drop(shipped);

    let names = [
        "fast+serde-saphyr (shipped)",
        "serde-saphyr",
        "serde_yaml",
        "fast+serde_yaml",
    ];
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
    for _ in 0..args.rounds {
        for (i, t) in times.iter_mut().enumerate() {
            let start = Instant::now();
            let n = match i {
                0 => parse_all(&files, &Shipped)?.len(),
                1 => parse_all(&files, &SaphyrOnly)?.len(),
                2 => parse_all(&files, &SerdeYamlOnly)?.len(),
                _ => parse_all(&files, &FastThenSerdeYaml)?.len(),
            };
            t.push(start.elapsed());
            std::hint::black_box(n);
        }
    }
    println!(
        "{:<28} {:>10} {:>10} {:>8}",
        "reader (one thread)", "median ms", "min ms", "MB/s"
    );
    for (name, mut t) in names.iter().zip(times) {
        t.sort();
        let median = t[t.len() / 2];
        println!(
            "{name:<28} {:>10.0} {:>10.0} {:>8.0}",
            median.as_secs_f64() * 1e3,
            t[0].as_secs_f64() * 1e3,
            bytes as f64 / 1e6 / median.as_secs_f64()
        );
    }
    Ok(())
}
