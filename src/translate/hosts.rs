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

/// Age order of claimants: (creation timestamp, origin).
type Claimant = (String, ObjectRef);

/// A claim on a host, ordered by the claimant's age (the `Ingress` holds the key, so a claim
/// costs a pointer).
#[derive(Debug, Clone)]
struct Claim(Arc<Ingress>);

impl Claim {
    fn key(&self) -> (&str, &ObjectRef) {
        (&self.0.creation_timestamp, &self.0.origin)
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

fn claimant(ing: &Ingress) -> Claimant {
    (ing.creation_timestamp.clone(), ing.origin.clone())
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
        let mut work: BTreeSet<Claimant> = BTreeSet::new();
        let mut changed = BTreeSet::new();
        for (origin, new) in changes {
            if let Some(old) = self.candidates.remove(&origin) {
                for h in old.hosts() {
                    if let Some(set) = self.claims.get_mut(h) {
                        set.retain(|c| !Arc::ptr_eq(&c.0, &old));
                        work.extend(set.iter().map(|c| claimant(&c.0)));
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
                        work.extend(set.iter().map(|c| claimant(&c.0)));
                    }
                    work.insert(claimant(&new));
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
            let Some(ing) = self.candidates.get(&c.1).cloned() else {
                continue;
            };
            if ing.creation_timestamp != c.0 {
                continue; // a stale entry: the object was re-created
            }
            let problems: Vec<Problem> = ing
                .hosts()
                .filter_map(|h| {
                    let mine = (c.0.as_str(), &c.1);
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
            let was_served = self.served.contains_key(&c.1);
            if problems.is_empty() {
                if self.rejected.remove(&c.1).is_some() {
                    changed.insert(c.1.clone());
                }
                let same = self.served.get(&c.1).is_some_and(|s| Arc::ptr_eq(s, &ing));
                if !same {
                    self.served.insert(c.1.clone(), ing.clone());
                    changed.insert(c.1.clone());
                }
            } else {
                let rejection = Rejection {
                    object: c.1.clone(),
                    reason: RejectReason::HostConflict,
                    problems,
                    serving_last_good: false,
                };
                if self.rejected.get(&c.1) != Some(&rejection) {
                    self.rejected.insert(c.1.clone(), rejection);
                    changed.insert(c.1.clone());
                }
                if self.served.remove(&c.1).is_some() {
                    changed.insert(c.1.clone());
                }
            }
            if was_served != self.served.contains_key(&c.1) {
                // Younger claimants of its hosts may win or lose them now.
                let mine = (c.0.as_str(), &c.1);
                for h in ing.hosts() {
                    if let Some(set) = self.claims.get(h) {
                        work.extend(
                            set.iter()
                                .filter(|o| o.key() > mine)
                                .map(|o| claimant(&o.0)),
                        );
                    }
                }
            }
        }
        changed
    }
}
