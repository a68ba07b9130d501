//! Host ownership: every host goes to one object. The oldest object (creation timestamp,
//! then kind, namespace and name) claiming a host keeps it; a later object claiming a host
//! that an older *served* object holds is rejected whole, so Envoy never sees a duplicate
//! domain. Kept incrementally: a change re-decides only the objects that share a host with
//! what changed, in age order, so each decision sees the final state of every older claimant.

use std::collections::{BTreeMap, BTreeSet};

use foldhash::HashMap;
use smallvec::SmallVec;
use std::sync::Arc;

use super::{Ingress, Problem, RejectReason, Rejection};
use crate::model::ObjectRef;

/// A claim on a host, ordered by the claimant's age (the `Ingress` holds the key, so a claim
/// costs a pointer).
#[derive(Debug, Clone)]
struct Claim(Arc<Ingress>);

impl Claim {
    /// Age order of claimants: (creation timestamp, origin).
    fn key(&self) -> (&str, &ObjectRef) {
        (&self.0.creation_timestamp, &self.0.origin)
    }
}

// Claims compare by their claimant's age alone (the work queue holds one per claimant).
impl PartialEq for Claim {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Claim {}

impl PartialOrd for Claim {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Claim {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

#[derive(Debug, Clone, Default)]
pub struct HostOwners {
    /// Every accepted translation, served or not.
    candidates: HashMap<ObjectRef, Arc<Ingress>>,
    /// Host → its claimants, oldest first (mostly one: inline, no allocation). Keyed by
    /// the Ingress' own host strings.
    claims: HashMap<Arc<str>, SmallVec<[Claim; 1]>>,
    served: imbl::OrdMap<ObjectRef, Arc<Ingress>>,
    rejected: BTreeMap<ObjectRef, Rejection>,
}

impl HostOwners {
    /// What is served: the candidates that own all their hosts.
    pub fn served(&self) -> &imbl::OrdMap<ObjectRef, Arc<Ingress>> {
        &self.served
    }

    /// Candidates that lost a host to an older object.
    pub fn rejected(&self) -> &BTreeMap<ObjectRef, Rejection> {
        &self.rejected
    }

    /// Applies changed candidates (`None`: no longer a candidate); returns the origins whose
    /// served translation changed (added, replaced or removed) or whose conflict changed.
    pub fn update(
        &mut self,
        changes: impl IntoIterator<Item = (ObjectRef, Option<Arc<Ingress>>)>,
    ) -> BTreeSet<ObjectRef> {
        let changes: Vec<_> = changes.into_iter().collect();
        // A cold start claims every host at once: grow the table once.
        let claimed = changes
            .iter()
            .flat_map(|(_, n)| n)
            .map(|n| n.rules.iter().map(|r| r.hosts.len()).sum::<usize>());
        self.claims.reserve(claimed.sum());
        let mut work: BTreeSet<Claim> = BTreeSet::new();
        let mut changed = BTreeSet::new();
        for (origin, new) in changes {
            if let Some(old) = self.candidates.remove(&origin) {
                for h in old.hosts() {
                    if let Some(set) = self.claims.get_mut(h) {
                        set.retain(|c| !Arc::ptr_eq(&c.0, &old));
                        work.extend(set.iter().cloned());
                        if set.is_empty() {
                            self.claims.remove(h);
                        }
                    }
                }
            }
            match new {
                Some(new) => {
                    for h in new.host_arcs() {
                        let set = self.claims.entry(h.clone()).or_default();
                        let claim = Claim(new.clone());
                        if !set.iter().any(|c| Arc::ptr_eq(&c.0, &new)) {
                            let at = set.partition_point(|c| c.key() < claim.key());
                            set.insert(at, claim);
                        }
                        // The others (itself is queued below, once).
                        if set.len() > 1 {
                            work.extend(set.iter().filter(|c| !Arc::ptr_eq(&c.0, &new)).cloned());
                        }
                    }
                    work.insert(Claim(new.clone()));
                    self.candidates.insert(origin, new);
                }
                None => {
                    if self.served.remove(&origin).is_some() {
                        changed.insert(origin.clone());
                    }
                    if self.rejected.remove(&origin).is_some() {
                        changed.insert(origin);
                    }
                }
            }
        }
        while let Some(c) = work.pop_first() {
            let (ts, origin) = c.key();
            let Some(ing) = self.candidates.get(origin).cloned() else {
                continue;
            };
            if ing.creation_timestamp != ts {
                continue; // a stale entry: the object was re-created
            }
            let problems: Vec<Problem> = ing
                .hosts()
                .filter_map(|h| {
                    let mine = (ts, origin);
                    let owner = self.claims.get(h)?.iter().find(|o| {
                        o.key() < mine
                            && o.0.origin != ing.origin
                            && self.served.contains_key(&o.0.origin)
                    })?;
                    Some(Problem::new(
                        "hosts",
                        format!("host {h:?} is already served by {}", owner.0.origin),
                    ))
                })
                .collect();
            let was_served = self.served.contains_key(origin);
            if problems.is_empty() {
                if self.rejected.remove(origin).is_some() {
                    changed.insert(origin.clone());
                }
                let same = self
                    .served
                    .get(origin)
                    .is_some_and(|s| Arc::ptr_eq(s, &ing));
                if !same {
                    self.served.insert(origin.clone(), ing.clone());
                    changed.insert(origin.clone());
                }
            } else {
                let rejection = Rejection {
                    object: origin.clone(),
                    reason: RejectReason::HostConflict,
                    problems,
                    serving_last_good: false,
                };
                if self.rejected.get(origin) != Some(&rejection) {
                    self.rejected.insert(origin.clone(), rejection);
                    changed.insert(origin.clone());
                }
                if self.served.remove(origin).is_some() {
                    changed.insert(origin.clone());
                }
            }
            if was_served != self.served.contains_key(origin) {
                // Younger claimants of its hosts may win or lose them now.
                let mine = (ts, origin);
                for h in ing.hosts() {
                    if let Some(set) = self.claims.get(h) {
                        work.extend(set.iter().filter(|o| o.key() > mine).cloned());
                    }
                }
            }
        }
        changed
    }
}
