//! Data parallelism for the few places with much independent work (reading a manifests
//! folder, encoding a cold start's resources), without a thread pool crate: scoped threads,
//! one per core.

use std::sync::atomic::{AtomicUsize, Ordering};

/// `items.iter().map(f)`, in order, on every core when there are at least `min_per_thread`
/// items per thread. Workers take the next item in turn, so items of uneven cost do not leave
/// a core idle. A panic in `f` is resumed on the caller's thread.
pub fn map<T: Sync, R: Send>(
    items: &[T],
    min_per_thread: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(items.len() / min_per_thread.max(1));
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
}
