//! Building persistent maps (`imbl::OrdMap`) with full leaves.
//!
//! imbl's B-tree splits a full leaf (16 entries) in two halves of 8, and the left half is
//! never touched again when entries arrive in key order: a map filled in order (a cold
//! start's resources, the inspection view) has every leaf half empty, and a leaf is a fixed
//! 16-slot allocation. [`apply`] rebuilds such a map by inserting the first half of every
//! run of 16 sorted entries, then the second halves, which land in the half-empty leaves
//! without a split: the leaves end up full and the map takes about half the room. Only the
//! room depends on imbl's leaf size; the map's content never does.

use imbl::OrdMap;

/// imbl's leaf size (`ORD_CHUNK_SIZE`): a leaf splits into two halves of `LEAF / 2`.
const LEAF: usize = 16;

/// The map of the `items` that have a value; `items` are sorted by key without repeats
/// (as [`apply`] leaves its ops).
fn dense<K: Ord + Clone, V: Clone>(items: &[(K, Option<V>)]) -> OrdMap<K, V> {
    let mut map = OrdMap::new();
    let halves = |first: bool| {
        items.chunks(LEAF).flat_map(move |run| {
            let (a, b) = run.split_at(run.len().min(LEAF / 2));
            if first {
                a
            } else {
                b
            }
        })
    };
    for (k, v) in halves(true).chain(halves(false)) {
        if let Some(v) = v {
            map.insert(k.clone(), v.clone());
        }
    }
    map
}

/// Applies `ops` (in order; `None` removes) to `map`. When they are many next to the map
/// (a cold start), the map is rebuilt dense from sorted entries; a few
/// are applied in place (a change's cost stays with the change).
pub fn apply<K: Ord + Clone, V: Clone>(map: &mut OrdMap<K, V>, mut ops: Vec<(K, Option<V>)>) {
    if ops.len() < 1024 || ops.len() < map.len() {
        for (k, v) in ops {
            match v {
                Some(v) => {
                    map.insert(k, v);
                }
                None => {
                    map.remove(&k);
                }
            }
        }
        return;
    }
    // What the map has goes first, as if inserted before the ops; then the last op on each
    // key wins (a stable sort keeps their order), all in the ops' own buffer.
    let old = std::mem::take(map);
    ops.splice(0..0, old.into_iter().map(|(k, v)| (k, Some(v))));
    ops.sort_by(|a, b| a.0.cmp(&b.0));
    ops.dedup_by(|later, kept| {
        let same = later.0 == kept.0;
        if same {
            std::mem::swap(later, kept);
        }
        same
    });
    ops.retain(|(_, v)| v.is_some());
    *map = dense(&ops);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn dense_holds_exactly_the_items() {
        for n in [0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 100, 1000, 5000] {
            let items: Vec<(u32, u32)> = (0..n).map(|i| (i * 3, i)).collect();
            let ops: Vec<(u32, Option<u32>)> = items.iter().map(|(k, v)| (*k, Some(*v))).collect();
            let map = dense(&ops);
            assert_eq!(map.len(), n as usize);
            assert!(
                map.iter().map(|(k, v)| (*k, *v)).eq(items.into_iter()),
                "{n}"
            );
        }
    }

    /// Applied in place or rebuilt, the result is what applying each op in turn gives.
    #[test]
    fn apply_is_each_op_in_turn() {
        for (start, n) in [
            (0u32, 10u32),
            (0, 3000),
            (50, 3000),
            (5000, 1500),
            (4000, 2000),
        ] {
            let mut map: OrdMap<u32, u32> = (0..start).map(|i| (i * 2, i)).collect();
            let mut want: BTreeMap<u32, u32> = map.iter().map(|(k, v)| (*k, *v)).collect();
            // Inserts, replacements, removals and repeats of the same key, out of order.
            let ops: Vec<(u32, Option<u32>)> = (0..n)
                .map(|i| {
                    let k = (i * 7919) % (start * 2 + n);
                    (k, (i % 5 != 0).then_some(i + 100_000))
                })
                .collect();
            for (k, v) in &ops {
                match v {
                    Some(v) => want.insert(*k, *v),
                    None => want.remove(k),
                };
            }
            apply(&mut map, ops);
            assert!(
                map.iter().map(|(k, v)| (*k, *v)).eq(want.into_iter()),
                "{start} {n}"
            );
        }
    }
}
