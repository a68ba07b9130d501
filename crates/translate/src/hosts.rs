//! Host ownership: every host goes to one object. The oldest object (creation timestamp,
//! then kind, namespace and name) claiming a host keeps it; a later object claiming a host
//! that an older *served* object holds is rejected whole, so Envoy never sees a duplicate
//! domain. Kept incrementally: a change re-decides only the objects that share a host with
//! what changed, in age order, so each decision sees the final state of every older claimant.

use std::collections::{BTreeMap, BTreeSet};

use foldhash::HashMap;
use std::sync::Arc;

use super::{Ingress, Problem, RejectReason, Rejection};
use model::ObjectRef;

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

/// Host → its claimants, oldest first, keyed by the Ingress' own host strings. Nearly every
/// host has one claimant: those are in `one` (24 bytes an entry, and a Route has several
/// hosts), the others in `many`; a host is in one map or the other.
#[derive(Debug, Clone, Default)]
struct Claims {
    one: HashMap<Arc<str>, Claim>,
    many: HashMap<Arc<str>, Vec<Claim>>,
}

impl Claims {
    fn reserve(&mut self, hosts: usize) {
        self.one.reserve(hosts);
    }

    fn get(&self, host: &str) -> &[Claim] {
        match self.one.get(host) {
            Some(c) => std::slice::from_ref(c),
            None => self.many.get(host).map_or(&[], |v| v.as_slice()),
        }
    }

    /// Adds `claim` (once) in age order; returns the host's claimants.
    fn add(&mut self, host: &Arc<str>, claim: Claim) -> &[Claim] {
        if let Some(set) = self.many.get_mut(&**host) {
            if !set.iter().any(|c| Arc::ptr_eq(&c.0, &claim.0)) {
                let at = set.partition_point(|c| c.key() < claim.key());
                set.insert(at, claim);
            }
        } else {
            match self.one.remove(&**host) {
                Some(first) if !Arc::ptr_eq(&first.0, &claim.0) => {
                    let mut set = vec![first, claim];
                    set.sort();
                    self.many.insert(host.clone(), set);
                }
                _ => {
                    self.one.insert(host.clone(), claim);
                }
            }
        }
        self.get(host)
    }

    /// Withdraws `ing`'s claim; returns the host's remaining claimants.
    fn withdraw(&mut self, host: &str, ing: &Arc<Ingress>) -> &[Claim] {
        if self.one.get(host).is_some_and(|c| Arc::ptr_eq(&c.0, ing)) {
            self.one.remove(host);
        } else if let Some(set) = self.many.get_mut(host) {
            set.retain(|c| !Arc::ptr_eq(&c.0, ing));
            if set.len() < 2 {
                if let Some((host, mut set)) = self.many.remove_entry(host) {
                    if let Some(last) = set.pop() {
                        self.one.insert(host, last);
                    }
                }
            }
        }
        self.get(host)
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct HostOwners {
    /// Every accepted translation, served or not.
    candidates: HashMap<ObjectRef, Arc<Ingress>>,
    /// Host → its claimants, oldest first.
    claims: Claims,
    served: imbl::OrdMap<ObjectRef, Arc<Ingress>>,
    rejected: BTreeMap<ObjectRef, Rejection>,
}

impl HostOwners {
    /// What is served: the candidates that own all their hosts.
    pub(crate) fn served(&self) -> &imbl::OrdMap<ObjectRef, Arc<Ingress>> {
        &self.served
    }

    /// Candidates that lost a host to an older object.
    pub(crate) fn rejected(&self) -> &BTreeMap<ObjectRef, Rejection> {
        &self.rejected
    }

    /// Applies changed candidates (`None`: no longer a candidate); returns the origins whose
    /// served translation changed (added, replaced or removed) or whose conflict changed.
    pub(crate) fn update(
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
        // New claimants alone on every host they claim (`solo`), unless a later claim joins
        // one of their hosts (`contested`): nobody else claims their hosts, so deciding them
        // needs no look at those hosts' claimants. At a cold start, nearly every object.
        let mut solo: foldhash::HashSet<ObjectRef> = Default::default();
        let mut contested: foldhash::HashSet<ObjectRef> = Default::default();
        for (origin, new) in changes {
            if let Some(old) = self.candidates.remove(&origin) {
                for h in old.hosts() {
                    work.extend(self.claims.withdraw(h, &old).iter().cloned());
                }
            }
            match new {
                Some(new) => {
                    let mut alone = true;
                    for h in new.host_arcs() {
                        let set = self.claims.add(h, Claim(new.clone()));
                        // The others (itself is queued below, once).
                        if set.len() > 1 {
                            work.extend(set.iter().filter(|c| !Arc::ptr_eq(&c.0, &new)).cloned());
                            contested.extend(set.iter().map(|c| c.0.origin.clone()));
                            alone = false;
                        }
                    }
                    work.insert(Claim(new.clone()));
                    if alone {
                        solo.insert(origin.clone());
                    }
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
            let alone = solo.contains(origin) && !contested.contains(origin);
            let problems: Vec<Problem> = if alone {
                Vec::new()
            } else {
                ing.hosts()
                    .filter_map(|h| {
                        let mine = (ts, origin);
                        let owner = self.claims.get(h).iter().find(|o| {
                            o.key() < mine
                                && o.0.origin != ing.origin
                                && self.served.contains_key(&o.0.origin)
                        })?;
                        Some(Problem::new(
                            "hosts",
                            format!("host {h:?} is already served by {}", owner.0.origin),
                        ))
                    })
                    .collect()
            };
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
            if was_served != self.served.contains_key(origin) && !alone {
                // Younger claimants of its hosts may win or lose them now.
                let mine = (ts, origin);
                for h in ing.hosts() {
                    work.extend(
                        self.claims
                            .get(h)
                            .iter()
                            .filter(|o| o.key() > mine)
                            .cloned(),
                    );
                }
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Rule, Visibility};
    use model::{Kind, ObjectKey};
    use workload::SplitMix64;

    /// An Ingress with one rule per list of hosts.
    fn ingress(name: &str, created: &str, rules: &[&[&str]]) -> Arc<Ingress> {
        Arc::new(Ingress {
            origin: ObjectRef {
                kind: Kind::Route,
                key: ObjectKey::new("ns", name),
            },
            generation: None,
            creation_timestamp: created.into(),
            http_option: Default::default(),
            tls: Vec::new(),
            rules: rules
                .iter()
                .map(|hosts| Rule {
                    hosts: hosts.iter().map(|h| Arc::from(*h)).collect(),
                    visibility: Visibility::ExternalIP,
                    paths: Arc::new([]),
                })
                .collect(),
        })
    }

    /// The rule from scratch: in age order, an object is served unless an older served
    /// object holds one of its hosts.
    fn decide(candidates: &BTreeMap<ObjectRef, Arc<Ingress>>) -> BTreeSet<ObjectRef> {
        let mut by_age: Vec<&Arc<Ingress>> = candidates.values().collect();
        by_age.sort_by_key(|i| Claim((*i).clone()));
        let mut held = BTreeSet::new();
        let mut served = BTreeSet::new();
        for i in by_age {
            if i.hosts().all(|h| !held.contains(h)) {
                held.extend(i.hosts());
                served.insert(i.origin.clone());
            }
        }
        served
    }

    /// Random batches of new, changed and removed claimants on a few hosts, decided
    /// incrementally, always match deciding everything from scratch (objects alone on
    /// their hosts skip the look at other claimants; those that share one do not).
    #[test]
    fn incremental_decisions_match_deciding_from_scratch() {
        let hosts = ["a", "b", "c", "d", "e"];
        let names = ["r0", "r1", "r2", "r3", "r4", "r5", "r6"];
        for seed in 1..=30 {
            let mut rng = SplitMix64::new(seed);
            let mut owners = HostOwners::default();
            let mut now: BTreeMap<ObjectRef, Arc<Ingress>> = BTreeMap::new();
            for step in 0..60 {
                let mut batch = Vec::new();
                for _ in 0..=rng.below(4) {
                    let name = names[rng.below(names.len() as u64) as usize];
                    let origin = ingress(name, "", &[]).origin.clone();
                    if rng.below(4) == 0 {
                        now.remove(&origin);
                        batch.push((origin, None));
                        continue;
                    }
                    let claimed: Vec<&str> = hosts
                        .iter()
                        .filter(|_| rng.below(3) == 0)
                        .copied()
                        .collect();
                    let created = format!("2026-01-0{}", 1 + rng.below(3));
                    // Two rules, which may name a host twice.
                    let split = rng.below(claimed.len() as u64 + 1) as usize;
                    let mut second = claimed[split..].to_vec();
                    if rng.below(4) == 0 {
                        second.extend(claimed.first());
                    }
                    let new = ingress(name, &created, &[&claimed[..split], &second]);
                    now.insert(origin.clone(), new.clone());
                    batch.push((origin, Some(new)));
                }
                owners.update(batch);
                let served: BTreeSet<ObjectRef> = owners.served().keys().cloned().collect();
                assert_eq!(served, decide(&now), "seed {seed} step {step}");
                let rejected: BTreeSet<ObjectRef> = owners.rejected().keys().cloned().collect();
                let want: BTreeSet<ObjectRef> = now
                    .keys()
                    .filter(|o| !served.contains(*o))
                    .cloned()
                    .collect();
                assert_eq!(rejected, want, "seed {seed} step {step}");
            }
        }
    }
}
