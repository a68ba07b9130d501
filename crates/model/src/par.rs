//! Data parallelism for the few places with much independent work (reading a manifests
//! folder, encoding a cold start's resources), without a thread pool crate: scoped threads,
//! one per core.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

/// `items.iter().map(f)`, in order, on every core when there are at least `min_per_thread`
/// items per thread. Workers take the next item in turn, so items of uneven cost do not leave
/// a core idle. A panic in `f` is resumed on the caller's thread.
pub fn map<T: Sync, R: Send>(
    items: &[T],
    min_per_thread: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let threads = threads_for(items.len(), min_per_thread);
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let (next, f) = (&next, &f);
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(move || {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else { break };
                        out.push((i, f(item)));
                    }
                    out
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| match w.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    results.sort_unstable_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// `(background(), here())`, the two independent: with `apart`, `background` runs on a
/// thread of its own while this one runs `here` (a cold start's sequential step beside a
/// parallel one, so a core is not left idle); otherwise one after the other. A panic in
/// `background` is resumed on the caller's thread.
pub fn beside<A: Send, B>(
    apart: bool,
    background: impl FnOnce() -> A + Send,
    here: impl FnOnce() -> B,
) -> (A, B) {
    if !apart {
        let b = here();
        return (background(), b);
    }
    std::thread::scope(|scope| {
        let worker = scope.spawn(background);
        let b = here();
        match worker.join() {
            Ok(a) => (a, b),
            Err(panic) => resume_unwind(panic),
        }
    })
}

/// One per core, but none with fewer than `min_per_thread` items.
fn threads_for(items: usize, min_per_thread: usize) -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(items / min_per_thread.max(1))
}

/// `for item in items { then(item, f(item)) }`: `f` on every core (as [`map`]) while `then`
/// runs on the calling thread, in order, on each result as soon as it and every one before
/// it are ready. The caller's serial work on early items overlaps the workers' on later
/// ones, instead of waiting for all of them. A panic in `f` is resumed on the caller's
/// thread when its turn comes.
pub fn map_then<T: Sync, R: Send>(
    items: &[T],
    min_per_thread: usize,
    f: impl Fn(&T) -> R + Sync,
    mut then: impl FnMut(&T, R),
) {
    let threads = threads_for(items.len(), min_per_thread);
    if threads <= 1 {
        for item in items {
            then(item, f(item));
        }
        return;
    }
    // Workers take runs of items and hand each run over in one message: one message per
    // item would wake the caller (a futex wake, often a context switch) for every item of a
    // cold start, and the workers would spend much of their time in the kernel.
    let run = (items.len() / (threads * 64)).clamp(1, 16);
    let next = AtomicUsize::new(0);
    let (next, f) = (&next, &f);
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..threads {
            let tx = tx.clone();
            scope.spawn(move || loop {
                let start = next.fetch_add(run, Ordering::Relaxed);
                if start >= items.len() {
                    break;
                }
                let these = &items[start..(start + run).min(items.len())];
                let mut results = Vec::with_capacity(these.len());
                for item in these {
                    let result = catch_unwind(AssertUnwindSafe(|| f(item)));
                    let failed = result.is_err();
                    results.push(result);
                    if failed {
                        break;
                    }
                }
                let failed = results.last().is_some_and(|r| r.is_err());
                // The caller is gone only if it panicked: stop.
                if tx.send((start, results)).is_err() || failed {
                    break;
                }
            });
        }
        drop(tx);
        // Runs that arrived before an earlier one (a few: workers take runs in turn).
        let mut early = BTreeMap::new();
        let mut due = 0;
        for (start, results) in rx {
            early.insert(start, results);
            while let Some(results) = early.remove(&due) {
                for result in results {
                    match result {
                        Ok(r) => then(&items[due], r),
                        Err(panic) => resume_unwind(panic),
                    }
                    due += 1;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_the_order() {
        let items: Vec<usize> = (0..2_000).collect();
        let doubled: Vec<usize> = items.iter().map(|i| i * 2).collect();
        assert_eq!(super::map(&items, 64, |i| i * 2), doubled);
        assert_eq!(super::map(&[1, 2, 3], 64, |i| i + 1), [2, 3, 4]);
        assert!(super::map(&[] as &[u8], 1, |i| *i).is_empty());
    }

    #[test]
    fn beside_gives_both_results_and_resumes_a_panic() {
        for apart in [false, true] {
            let mut here = 0;
            let (a, b) = super::beside(
                apart,
                || (0..100u32).sum::<u32>(),
                || {
                    here += 1;
                    "here"
                },
            );
            assert_eq!((a, b, here), (4950, "here", 1), "apart {apart}");
            let panic =
                std::panic::catch_unwind(|| super::beside(apart, || panic!("background"), || 1));
            assert!(panic.is_err(), "apart {apart}");
        }
    }

    #[test]
    fn map_then_hands_over_every_result_in_order() {
        let items: Vec<usize> = (0..2_000).collect();
        for min in [1, 64, 10_000] {
            let mut seen = Vec::new();
            super::map_then(
                &items,
                min,
                |i| {
                    // Uneven cost, so results arrive out of order.
                    if i % 7 == 0 {
                        std::thread::yield_now();
                    }
                    i * 2
                },
                |i, r| seen.push((*i, r)),
            );
            let want: Vec<(usize, usize)> = items.iter().map(|i| (*i, i * 2)).collect();
            assert_eq!(seen, want, "min_per_thread {min}");
        }
    }

    #[test]
    fn map_then_resumes_a_workers_panic() {
        let items: Vec<usize> = (0..500).collect();
        let mut before = 0;
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            super::map_then(
                &items,
                1,
                |i| {
                    assert!(*i != 300, "item 300");
                    *i
                },
                |_, _| before += 1,
            )
        }));
        assert!(panic.is_err());
        // Everything before the failed item was handed over, nothing after it.
        assert_eq!(before, 300);
    }
}
