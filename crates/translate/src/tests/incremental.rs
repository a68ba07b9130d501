//! Incremental updates (`Translator::update` with the store's dirty set) give exactly what
//! looking at every object gives, through random changes of every kind: deletions and
//! restorations, Revisions turning unready, splits, Routes shadowed by Services, host
//! conflicts with DomainMappings, broken EndpointSlices and domain config changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::{Ingress, Options, Translator};
use model::testing::{load, random_change};
use model::{Kind, ObjectRef};
use workload::{generate, SplitMix64};

type Served = BTreeMap<ObjectRef, Arc<Ingress>>;

fn served(m: &imbl::OrdMap<ObjectRef, Arc<Ingress>>) -> Served {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[test]
fn incremental_update_equals_full_look_through_random_changes() {
    for seed in 1..=4 {
        let w = generate(40, seed);
        let mut store = load(&w.files);
        let mut rng = SplitMix64::new(seed);
        let mut inc = Translator::new(Options::default());
        let mut reference = Translator::new(Options::default());
        store.take_dirty();
        let mut previous = served(&inc.update(&store, None).served);
        reference.update(&store, None);
        let mut removed = Vec::new();
        let mut history = Vec::new();
        // (host conflicts, last good served, broken slices, shadowed Routes) seen.
        let mut seen = [false; 4];
        for step in 0..400 {
            history.push(random_change(&mut store, &mut rng, &mut removed));
            let dirty = store.take_dirty();
            let got = inc.update(&store, dirty.as_ref());
            let want = reference.update(&store, None);
            let now = served(&got.served);
            let ctx = || {
                format!(
                    "seed {seed} step {step}; changes: {:?}",
                    &history[history.len().saturating_sub(5)..]
                )
            };
            let want_served = served(&want.served);
            let differ: Vec<&ObjectRef> = now
                .keys()
                .chain(want_served.keys())
                .filter(|o| now.get(*o) != want_served.get(*o))
                .collect();
            assert!(
                differ.is_empty(),
                "served differs for {differ:?}: got {:?}, want {:?}; rejections got {:?} want {:?}; {}",
                differ.first().and_then(|o| now.get(*o)).map(|i| &i.rules[0].paths),
                differ.first().and_then(|o| want_served.get(*o)).map(|i| &i.rules[0].paths),
                got.rejections.iter().filter(|r| differ.contains(&&r.object)).map(|r| r.to_string()).collect::<Vec<_>>(),
                want.rejections.iter().filter(|r| differ.contains(&&r.object)).map(|r| r.to_string()).collect::<Vec<_>>(),
                ctx()
            );
            let brief = |r: &[crate::Rejection]| -> Vec<String> {
                r.iter().map(|r| format!("{:?} {r}", r.reason)).collect()
            };
            assert_eq!(brief(&got.rejections), brief(&want.rejections), "{}", ctx());
            // Every origin whose served Ingress differs is reported changed.
            for (o, i) in &now {
                if previous.get(o).is_none_or(|p| p != i) {
                    assert!(got.changed.contains(o), "{o} not reported; {}", ctx());
                }
            }
            for o in previous.keys().filter(|o| !now.contains_key(*o)) {
                assert!(
                    got.changed.contains(o),
                    "removed {o} not reported; {}",
                    ctx()
                );
            }
            previous = now;
            for r in &got.rejections {
                seen[0] |= r.reason == crate::RejectReason::HostConflict;
                seen[1] |= r.serving_last_good;
                seen[2] |= r.object.kind == Kind::EndpointSlice;
                seen[3] |= r.object.kind == Kind::Route;
            }
        }
        assert_eq!(
            seen, [true; 4],
            "seed {seed}: every kind of rejection came up"
        );
        assert!(
            !previous.is_empty() && removed.len() > 20,
            "the changes kept something to serve and removed objects"
        );
    }
}

/// A cold start translates on every core (enough stale objects): the result is what one
/// thread gives, rejections and host conflicts included.
#[test]
fn cold_start_on_every_core_equals_one_thread() {
    let w = generate(700, 9);
    let mut store = load(&w.files);
    let (mut rng, mut removed) = (SplitMix64::new(5), Vec::new());
    for _ in 0..150 {
        random_change(&mut store, &mut rng, &mut removed);
    }
    store.take_dirty();
    let got = Translator::new(Options::default()).update(&store, None);
    let mut one = Translator::new(Options::default());
    one.parallel_min = usize::MAX;
    let want = one.update(&store, None);
    assert!(got.served.len() > 500, "{} served", got.served.len());
    assert_eq!(served(&got.served), served(&want.served));
    let brief = |r: &[crate::Rejection]| -> Vec<String> {
        r.iter().map(|r| format!("{:?} {r}", r.reason)).collect()
    };
    assert!(got.rejections.len() > 3, "{:?}", brief(&got.rejections));
    assert_eq!(brief(&got.rejections), brief(&want.rejections));
}

/// A full pass puts off indexing who read what until `catch_up` (the serve loop calls it once
/// the snapshot is out); the index it then builds is the one changes are looked up in.
#[test]
fn full_pass_indexes_readers_after_it_is_served() {
    let mut store = load(&generate(60, 3).files);
    store.take_dirty();
    let mut t = Translator::new(Options::default());
    let first = t.update(&store, None);
    assert!(first.served.len() > 40);
    assert!(t.readers.is_empty() && t.readers_stale, "put off");
    t.catch_up();
    assert!(!t.readers_stale);
    let mut pairs = 0;
    for (origin, entry) in &t.route_cache {
        for (dep, _) in &entry.deps {
            let readers = &t.readers[&crate::dep_key(dep)];
            assert!(readers.contains(&entry.id), "{origin} reads {dep:?}");
            assert_eq!(t.origins.get(entry.id), Some(origin));
            pairs += 1;
        }
    }
    assert_eq!(t.readers.values().map(|r| r.len()).sum::<usize>(), pairs);
    // A change is found through that index: without `catch_up`, `update` catches up first.
    let mut again = Translator::new(Options::default());
    let mut reference = Translator::new(Options::default());
    again.update(&store, None);
    reference.update(&store, None);
    let (mut rng, mut removed) = (SplitMix64::new(4), Vec::new());
    for step in 0..30 {
        random_change(&mut store, &mut rng, &mut removed);
        let dirty = store.take_dirty();
        let got = served(&again.update(&store, dirty.as_ref()).served);
        let want = served(&reference.update(&store, None).served);
        assert!(got == want, "step {step}");
    }
}
