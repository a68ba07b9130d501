//! Translation benchmarks on generated workloads (`workload`):
//!
//! - `full/<routes>`: a cold translation of the whole store and its encoding
//!   (`Translator::translate` + `builder::snapshot_from_envoy(.., None)`), at 100, 1,000 and 10,000
//!   Routes.
//! - `one_change/<variant>/<routes>`: the cost of one Route's change on a warm translator, at
//!   1,000 and 10,000 Routes (so the growth with the number of *other* Routes shows):
//!   - `translate+from_envoy`: `translate` + `builder::snapshot_from_envoy(.., Some(&previous))`;
//!   - `pipeline`: what the server does on a change: the store's dirty set, the translator's
//!     update of what read it, the builder's update of the changed objects' resources, and
//!     the diff against the previous snapshot that streams send from;
//!   - `baseline`: kourier's behaviour (one RouteConfiguration per listener, everything
//!     re-translated and given a fresh version).
//!
//! - `parse/<routes>`: parsing every manifest of a workload on one thread (`parse_file`,
//!   the YAML fast path and the typed objects), the largest part of a cold start's CPU.
//!
//! Each iteration of `one_change` applies the next version of one Service (alternating
//! between its original and changed split, so every iteration is a real change).
//!
//! `cargo bench -p knative-xds-bench --bench translate` (a few minutes on 2 cores); a filter selects some:
//! `cargo bench -p knative-xds-bench --bench translate -- one_change`.

use std::hint::black_box;
use std::time::Duration;

use builder::{Encoded, IncrementalBuilder};
use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use model::{Object, Store};
use runtime::sources::manifests::{parse_file, Manifests};
use translate::envoy::RouteLayout;
use translate::{Options, Translator};
use workload::{self, Workload};

/// The store a server would hold for `routes` generated Services (read through the
/// manifests source from a temporary folder, as `serve --manifests` does).
fn store(routes: usize) -> (Workload, Store) {
    let w = workload::generate(routes, 42);
    let dir = tempfile::tempdir().expect("a temporary folder");
    w.write_to(dir.path()).expect("writing the workload");
    let mut m = Manifests::new(dir.path());
    m.reload().expect("reading the workload");
    (w, m.store)
}

/// Two versions of the objects of one Service's file: changed, then original.
fn versions(w: &Workload) -> [Vec<Object>; 2] {
    let (path, changed) = w.change(0);
    let original = &w
        .files
        .iter()
        .find(|(p, _)| *p == path)
        .expect("the changed file exists")
        .1;
    let parse = |text: &str| parse_file(path.as_ref(), text).expect("generated YAML parses");
    [parse(&changed), parse(original)]
}

fn baseline_options() -> Options {
    let mut o = Options::default();
    o.listeners.layout = RouteLayout::PerListener;
    o
}

fn full(c: &mut Criterion) {
    let mut g = c.benchmark_group("full");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1));
    for routes in [100, 1_000, 10_000] {
        let (_, store) = store(routes);
        g.measurement_time(Duration::from_secs(if routes >= 10_000 { 15 } else { 4 }));
        g.bench_function(routes.to_string(), |b| {
            b.iter(|| {
                let out = Translator::new(Options::default()).translate(&store);
                black_box(builder::snapshot_from_envoy(&out.envoy, None))
            })
        });
    }
    g.finish();
}

fn one_change(c: &mut Criterion) {
    let mut g = c.benchmark_group("one_change");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    for routes in [1_000, 10_000] {
        let (w, mut store) = store(routes);
        let versions = versions(&w);
        let mut next = 0usize;
        let mut apply = move |store: &mut Store| {
            // As the manifests source does: objects equal to the stored ones are not applied.
            for o in &versions[next % 2] {
                store.apply_if_changed(o.clone());
            }
            next += 1;
        };

        // translate + builder::snapshot_from_envoy(.., Some(&previous))
        let mut t = Translator::new(Options::default());
        let mut previous = builder::snapshot_from_envoy(&t.translate(&store).envoy, None);
        g.bench_function(format!("translate+from_envoy/{routes}"), |b| {
            b.iter(|| {
                apply(&mut store);
                let out = t.translate(&store);
                previous = builder::snapshot_from_envoy(&out.envoy, Some(&previous));
                black_box(previous.len())
            })
        });

        // What the server's pipeline does on a change.
        let o = Options::default();
        let mut t = Translator::new(o.clone());
        let mut builder = IncrementalBuilder::new();
        let dirty = store.take_dirty();
        let u = t.update(&store, dirty.as_ref());
        let mut previous = builder
            .update(
                &u.served,
                &u.changed,
                dirty.as_ref(),
                &store,
                &o.listeners,
                true,
                Encoded::default(),
                None,
            )
            .published_after(None);
        g.bench_function(format!("pipeline/{routes}"), |b| {
            b.iter(|| {
                apply(&mut store);
                let dirty = store.take_dirty();
                let u = t.update(&store, dirty.as_ref());
                let snap = builder.update(
                    &u.served,
                    &u.changed,
                    dirty.as_ref(),
                    &store,
                    &o.listeners,
                    true,
                    Encoded::default(),
                    None,
                );
                previous = snap.published_after(Some(&previous));
                black_box(previous.len())
            })
        });

        // Kourier's behaviour: everything re-translated, every version fresh.
        let mut t = Translator::new(baseline_options());
        t.translate(&store);
        let mut serial = 0u64;
        g.bench_function(format!("baseline/{routes}"), |b| {
            b.iter(|| {
                apply(&mut store);
                serial += 1;
                let out = t.translate(&store);
                black_box(
                    builder::snapshot_from_envoy(&out.envoy, None)
                        .salted(serial)
                        .len(),
                )
            })
        });
    }
    g.finish();
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    let w = workload::generate(1_000, 42);
    g.bench_function("1000", |b| {
        b.iter(|| {
            let mut objects = 0;
            for (path, text) in &w.files {
                objects += parse_file(path.as_ref(), text)
                    .expect("generated YAML parses")
                    .len();
            }
            black_box(objects)
        })
    });
    g.finish();
}

criterion_group!(benches, full, one_change, parse);
criterion_main!(benches);
