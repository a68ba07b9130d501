//! Incremental (`DeltaAggregatedResources`): each response carries only the resources the
//! client lacks and the names of those gone; each response is ACKed on its own, so several
//! may be awaiting answers, and a large set is sent in parts.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use envoy_api::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;

use super::{
    type_status_base, view_map, AdsStream, Answers, ConnectionEvent, ConnectionStatus, Core,
    Protocol, ProtocolError, ResponseStatus, Subscription, TypeKey, TypeStatus, Versions,
};
use crate::names::{self, glob_prefix};
use crate::resource::{Resource, ResourceType, Version};
use crate::snapshot::{aggregate_version, Changes, ResourceMap, Snapshot};
use crate::wire::DeltaResponse;

/// Unanswered responses remembered per type for ACK bookkeeping.
pub(super) const MAX_OUTSTANDING: usize = 16;
/// Encoded resource bytes above which a response is split (a new Envoy's first sync of a
/// large cluster would otherwise be one message of tens of megabytes).
pub(super) const MAX_RESPONSE_BYTES: usize = 4 << 20;

/// One type of a delta stream.
#[derive(Debug, Default)]
pub(super) struct DeltaType {
    sub: Subscription,
    /// name → version the client has as far as we know: its `initial_resource_versions`,
    /// then whatever we sent (NACKed content included, so it is not resent unchanged).
    known: Versions,
    /// Subscribed names already reported in `removed_resources` (told once).
    told_absent: BTreeSet<String>,
    /// Names to send (or report absent) at the next sync even if the client has them.
    resend: BTreeSet<String>,
    /// First wildcard request: answer even if empty so Envoy finishes initialising.
    reply_pending: bool,
    /// The snapshot this type was last synced against, with its subscription as it is now:
    /// a request that changes nothing of this type needs no new look at its resources (a
    /// new Envoy subscribes to routes in several requests as it learns their names).
    looked: Option<u64>,
    /// Responses awaiting an answer, oldest first.
    outstanding: VecDeque<ResponseStatus>,
    /// Names of NACKed responses not since ACKed in a later one: the client lacks them.
    rejected: BTreeSet<String>,
    /// What the client has ACKed where that differs from `known` (sent and not ACKed yet,
    /// or NACKed): the version it ACKed, `None` for none. For every other name it ACKed
    /// what `known` says, so a synced stream keeps one map, not two.
    unacked: BTreeMap<Arc<str>, Option<Version>>,
    answers: Answers,
}

impl DeltaType {
    /// `name` goes to the client at `version`. What it ACKed before is kept in `unacked`
    /// until it ACKs again. (The snapshot's name: the maps share it.)
    fn note_sent(&mut self, name: &Arc<str>, version: Version) {
        if !self.unacked.contains_key(&**name) {
            let acked = self.known.get(&**name).copied();
            self.unacked.insert(name.clone(), acked);
        }
        self.known.insert(name.clone(), version);
    }

    /// `name` is reported removed to the client (as [`DeltaType::note_sent`]).
    fn note_removal_sent(&mut self, name: &str) {
        if let Some((key, acked)) = self.known.remove_entry(name) {
            self.unacked.entry(key).or_insert(Some(acked));
        }
    }

    /// The client ACKed `name` at `version` (`None`: its removal).
    fn note_acked(&mut self, name: &str, version: Option<Version>) {
        if self.known.get(name).copied() == version {
            self.unacked.remove(name);
        } else if let Some(v) = self.unacked.get_mut(name) {
            *v = version;
        } else {
            let key = match self.known.get_key_value(name) {
                Some((k, _)) => k.clone(),
                None => name.into(),
            };
            self.unacked.insert(key, version);
        }
    }

    /// The version of `name` the client has ACKed.
    fn acked_version(&self, name: &str) -> Option<Version> {
        match self.unacked.get(name) {
            Some(v) => *v,
            None => self.known.get(name).copied(),
        }
    }

    /// Every name the client has ACKed, with the version it ACKed.
    fn acked(&self) -> Versions {
        let mut out = self.known.clone();
        for (n, v) in &self.unacked {
            match v {
                Some(v) => out.insert(n.clone(), *v),
                None => out.remove(n),
            };
        }
        out
    }

    /// Whether the client has ACKed exactly `view` (without a copy of `known`).
    fn acked_is(&self, view: &Versions) -> bool {
        if self.unacked.is_empty() {
            return self.known == *view;
        }
        let mut len = self.known.len();
        for (n, v) in &self.unacked {
            match (v.is_some(), self.known.contains_key(&**n)) {
                (true, false) => len += 1,
                (false, true) => len -= 1,
                _ => {}
            }
        }
        len == view.len() && view.iter().all(|(n, v)| self.acked_version(n) == Some(*v))
    }

    /// The answer to a response of this type: what it carried is now ACKed (or, NACKed,
    /// rejected until a later response carries it again).
    fn answered(&mut self, sent: &ResponseStatus, nack: bool) {
        let names =
            (sent.resources.keys().map(|n| &**n)).chain(sent.removed.iter().map(String::as_str));
        if nack {
            self.rejected.extend(names.map(str::to_string));
            return;
        }
        if !self.rejected.is_empty() {
            for n in names {
                self.rejected.remove(n);
            }
        }
        for n in &sent.removed {
            self.note_acked(n, None);
        }
        for (n, v) in &sent.resources {
            self.note_acked(n, Some(*v));
        }
    }
}

/// ADS state of one delta stream. See the module docs.
#[derive(Debug)]
pub struct DeltaStream {
    core: Core,
    pub(super) types: BTreeMap<TypeKey, DeltaType>,
    /// [`MAX_RESPONSE_BYTES`] (smaller in tests).
    pub(super) part_bytes: usize,
}

impl Default for DeltaStream {
    fn default() -> Self {
        DeltaStream {
            core: Core::default(),
            types: BTreeMap::new(),
            part_bytes: MAX_RESPONSE_BYTES,
        }
    }
}

impl AdsStream for DeltaStream {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaResponse;
    const PROTOCOL: Protocol = Protocol::Delta;

    fn new() -> DeltaStream {
        DeltaStream::default()
    }

    fn handle_request(
        &mut self,
        req: DeltaDiscoveryRequest,
        snap: &Snapshot,
    ) -> Result<Vec<DeltaResponse>, ProtocolError> {
        let key = self.core.resolve(&req.type_url, self.types.keys())?;
        let DeltaDiscoveryRequest {
            node,
            resource_names_subscribe,
            resource_names_unsubscribe,
            initial_resource_versions,
            response_nonce,
            error_detail,
            ..
        } = req;
        // From here on, names are in the server's form (see `names`).
        let kept = |names: Vec<String>| -> Vec<String> {
            names.into_iter().map(names::into_internal).collect()
        };
        let resource_names_subscribe = kept(resource_names_subscribe);
        let resource_names_unsubscribe = kept(resource_names_unsubscribe);
        let core = &mut self.core;
        core.remember_node(node);
        let first = !self.types.contains_key(&key);
        let type_url = key.type_url().to_string();
        let st = self.types.entry(key.clone()).or_default();

        let mut event = None;
        let mut unblocked = false;
        let answered = (!response_nonce.is_empty())
            .then(|| {
                st.outstanding
                    .iter()
                    .position(|s| s.nonce == response_nonce)
            })
            .flatten()
            .and_then(|i| st.outstanding.remove(i));
        let nack = error_detail.is_some();
        if let Some(sent) = &answered {
            st.answered(sent, nack);
            unblocked = core.warming.answered(&key, Some(sent), nack);
        }
        if let Some(err) = error_detail {
            event = Some(
                st.answers
                    .nack(type_url, response_nonce, answered, String::new(), err),
            );
        } else if let Some(sent) = answered {
            st.answers.acks += 1;
            event = Some(ConnectionEvent::Ack {
                type_url,
                nonce: response_nonce,
                version: sent.version,
            });
        } else if !response_nonce.is_empty() {
            // Stale or unknown: no ACK bookkeeping, but subscription changes still count.
            event = Some(ConnectionEvent::StaleNonce {
                type_url,
                nonce: response_nonce,
            });
        }

        if first {
            tracing::debug!(r#type = %key.type_url(), initial = initial_resource_versions.len(), subscribe = ?resource_names_subscribe.iter().map(|n| names::wire(n)).collect::<Vec<_>>(), "first delta request");
            // Secrets are sent again on every new stream, whatever the client says it has:
            // after a reconnect Envoy may make new secret providers whose first request
            // this stream must answer, or its listeners come up without certificates
            // (Envoy Gateway #9519). A few KB each, once per stream.
            if !key.is(ResourceType::Secret) {
                st.known = initial_resource_versions
                    .into_iter()
                    .map(|(n, v)| (names::into_internal(n).into(), Version::from_client(&v)))
                    .collect();
            }
            st.unacked.clear(); // it ACKs what it says it has
            if resource_names_subscribe.is_empty() && key.legacy_wildcard() {
                st.sub.wildcard = true;
            }
            // A glob (set) subscription is answered even when the set is empty, so the
            // client does not wait for its initial fetch timeout.
            if resource_names_subscribe
                .iter()
                .any(|n| glob_prefix(n).is_some())
            {
                st.reply_pending = true;
            }
        }
        let subscription_changed =
            !resource_names_subscribe.is_empty() || !resource_names_unsubscribe.is_empty();
        if subscription_changed {
            st.looked = None;
        }
        for name in resource_names_subscribe {
            if name == "*" {
                st.sub.wildcard = true;
                continue;
            }
            // On a first request the client's initial versions say what it has; later, an
            // explicit subscribe must be answered even if it has the resource.
            if !first {
                st.resend.insert(name.clone());
            }
            st.sub.names.insert(name);
        }
        for name in resource_names_unsubscribe {
            if name == "*" {
                st.sub.wildcard = false;
                let names = &st.sub.names;
                st.known.retain(|n, _| names.contains(&**n));
                st.unacked.retain(|n, _| names.contains(&**n));
                st.resend.retain(|n| names.contains(n));
                continue;
            }
            st.sub.names.remove(&name);
            st.told_absent.remove(&name);
            st.known.remove(name.as_str());
            st.unacked.remove(name.as_str());
            if st.sub.wildcard {
                // Still covered by the wildcard, but the client drops it: say again whether it
                // exists (xds_protocol, wildcard + explicit overlap).
                st.resend.insert(name);
            } else {
                st.resend.remove(&name);
            }
        }
        if first && st.sub.wildcard {
            st.reply_pending = true;
        }
        let quiet = !first && !subscription_changed && !st.reply_pending && st.resend.is_empty();
        let nothing_new = quiet && !unblocked && core.synced == Some(snap.id());
        if let Some(ev) = event {
            core.push_event(ev);
        }
        if nothing_new {
            return Ok(Vec::new());
        }
        Ok(self.sync(snap, None))
    }

    fn snapshot_changed(&mut self, snap: &Snapshot) -> Vec<DeltaResponse> {
        // Synced against its parent: only the names that changed need a look.
        let changes = self.core.synced.and_then(|id| snap.changes_since(id));
        self.sync(snap, changes)
    }

    fn awaiting_answers(&self) -> bool {
        self.types.values().any(|st| !st.outstanding.is_empty())
    }

    fn in_sync(&self, snap: &Snapshot) -> bool {
        // Synced against `snap` with every response answered and none rejected: what the
        // client has is what we sent, which is its view (no look at resources).
        if self.core.synced == Some(snap.id()) {
            return self.core.warming.new.is_empty()
                && self.types.values().all(|st| {
                    st.outstanding.is_empty()
                        && st.rejected.is_empty()
                        && st.resend.is_empty()
                        && !st.reply_pending
                });
        }
        self.in_sync_by_content(snap)
    }

    fn is_subscribed(&self, ty: ResourceType) -> bool {
        self.types.contains_key(&TypeKey::Served(ty))
    }

    fn status(&self) -> ConnectionStatus {
        let types = self.types.iter().map(|(key, st)| {
            st.answers.status(TypeStatus {
                acked_version: None,
                acked_resources: Some(st.acked()),
                pending: st.outstanding.back().cloned(),
                ..type_status_base(key, &st.sub)
            })
        });
        self.core.status(Protocol::Delta, types.collect())
    }

    fn core(&self) -> &Core {
        &self.core
    }

    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
}

impl DeltaStream {
    /// [`AdsStream::in_sync`] by comparing what the client ACKed with its view of `snap`
    /// (linear in the resources).
    pub fn in_sync_by_content(&self, snap: &Snapshot) -> bool {
        self.types.iter().all(|(key, st)| {
            st.outstanding.is_empty() && st.acked_is(&view_map(&st.sub.view(key.resources(snap))))
        })
    }

    /// Sends each type what the client lacks. With `changes` (the snapshot's difference
    /// from the one this stream last synced against), only those names are examined:
    /// the work per change is proportional to the change, not to the config.
    fn sync(&mut self, snap: &Snapshot, changes: Option<&Changes>) -> Vec<DeltaResponse> {
        let DeltaStream {
            core,
            types,
            part_bytes,
        } = self;
        core.synced = Some(snap.id());
        core.warming.retain(snap);
        let mut out = Vec::new();
        for (key, st) in types.iter_mut() {
            if core.warming.holds(key) {
                continue;
            }
            let all = key.resources(snap);
            let is_eds = key.is(ResourceType::Endpoint);
            let settled = changes.is_none()
                && st.looked == Some(snap.id())
                && st.resend.is_empty()
                && !st.reply_pending
                && (!is_eds || core.warming.owed.is_empty());
            if settled {
                continue;
            }
            st.looked = Some(snap.id());
            let owed = if is_eds {
                Some(&core.warming.owed)
            } else {
                None
            };
            let (send, removed) = match (changes, key) {
                (Some(ch), TypeKey::Served(ty)) => changed_delta(st, all, ch.names(*ty), owed),
                _ => full_delta(st, all, owed),
            };
            st.resend.clear();
            if send.is_empty() && removed.is_empty() && !st.reply_pending {
                continue;
            }
            st.reply_pending = false;

            if key.is(ResourceType::Cluster) {
                for r in &send {
                    core.warming
                        .cluster_sent(r, st.known.get(&*r.name).copied(), snap);
                }
                for n in &removed {
                    core.warming.cluster_gone(n);
                }
            } else if is_eds {
                for r in &send {
                    core.warming.endpoints_sent(&r.name);
                }
            }
            for r in &send {
                st.note_sent(&r.name, r.version);
                st.told_absent.remove(&*r.name);
            }
            for n in &removed {
                st.note_removal_sent(n);
                st.told_absent.insert(n.clone());
            }
            let names = &st.sub.names;
            st.told_absent.retain(|n| names.contains(n));

            let removed: Vec<String> = removed.into_iter().collect();
            // Informational in delta (Envoy only logs it): the whole type's digest, computed
            // once per snapshot rather than per stream.
            let version = match key {
                TypeKey::Served(ty) => snap.type_version(*ty).to_string(),
                TypeKey::Unserved(_) => aggregate_version(std::iter::empty()),
            };
            // A large set goes in several responses (removals in the first): neither side
            // holds one huge message, and the client can apply the first while the next is
            // on its way.
            let mut removed = Some(removed);
            let parts = by_size(&send, *part_bytes);
            // Every part's answer must be recognised, however many there are.
            let keep = MAX_OUTSTANDING.max(parts.len());
            for part in parts {
                let removed = removed.take().unwrap_or_default();
                let nonce = core.next_nonce();
                st.outstanding.push_back(ResponseStatus {
                    nonce: nonce.clone(),
                    version: version.clone(),
                    resources: view_map(part),
                    removed: removed.clone(),
                });
                while st.outstanding.len() > keep {
                    st.outstanding.pop_front();
                }
                st.answers.responses += 1;
                core.push_event(ConnectionEvent::Sent {
                    type_url: key.type_url().to_string(),
                    nonce: nonce.clone(),
                    version: version.clone(),
                    resources: part.len(),
                    removed: removed.len(),
                });
                out.push(DeltaResponse {
                    system_version_info: version.clone(),
                    resources: part.iter().map(|r| Arc::clone(r)).collect(),
                    type_url: key.type_url().to_string(),
                    removed_resources: removed.into_iter().map(names::into_wire).collect(),
                    nonce,
                });
            }
        }
        out
    }
}

/// Full look: every subscribed resource the client lacks (or whose CLA is `owed`), every
/// resource it has that is gone, and subscribed names that do not exist (once, or again
/// when explicitly re-subscribed).
fn full_delta<'a>(
    st: &DeltaType,
    all: &'a ResourceMap,
    owed: Option<&BTreeSet<String>>,
) -> (Vec<&'a Arc<Resource>>, BTreeSet<String>) {
    let owes = |n: &str| owed.is_some_and(|o| o.contains(n));
    let send: Vec<&Arc<Resource>> = st
        .sub
        .view(all)
        .into_iter()
        .filter(|r| {
            st.known.get(&*r.name) != Some(&r.version)
                || st.resend.contains(&*r.name)
                || owes(&r.name)
        })
        .collect();
    let mut removed: BTreeSet<String> = st
        .known
        .keys()
        .filter(|n| !all.contains_key(&**n))
        .map(|n| n.to_string())
        .collect();
    for n in st.sub.names.iter().chain(st.resend.iter()) {
        if glob_prefix(n).is_some() {
            continue;
        }
        if !all.contains_key(n.as_str())
            && !st.known.contains_key(n.as_str())
            && st.sub.covers(n)
            && (st.resend.contains(n) || !st.told_absent.contains(n))
        {
            removed.insert(n.clone());
        }
    }
    (send, removed)
}

/// After a snapshot change the stream was synced for up to its parent: the same decisions
/// as [`full_delta`], made only for the changed names (plus pending re-sends and owed CLAs).
fn changed_delta<'a>(
    st: &DeltaType,
    all: &'a ResourceMap,
    changed: &[String],
    owed: Option<&BTreeSet<String>>,
) -> (Vec<&'a Arc<Resource>>, BTreeSet<String>) {
    let mut names: BTreeSet<&str> = changed.iter().map(String::as_str).collect();
    names.extend(st.resend.iter().map(String::as_str));
    if let Some(owed) = owed {
        names.extend(owed.iter().map(String::as_str));
    }
    let owes = |n: &str| owed.is_some_and(|o| o.contains(n));
    let mut send = Vec::new();
    let mut removed = BTreeSet::new();
    for n in names {
        let resend = st.resend.contains(n);
        match all.get(n) {
            Some(r) => {
                if st.sub.covers(n) && (st.known.get(n) != Some(&r.version) || resend || owes(n)) {
                    send.push(r);
                }
            }
            None => {
                let subscribed_absent = glob_prefix(n).is_none()
                    && (st.sub.names.contains(n) || resend)
                    && st.sub.covers(n)
                    && (resend || !st.told_absent.contains(n));
                if st.known.contains_key(n) || subscribed_absent {
                    removed.insert(n.to_string());
                }
            }
        }
    }
    (send, removed)
}

/// `resources` in consecutive parts of at most `limit` encoded bytes each (a larger resource
/// alone); one empty part when there are none.
fn by_size<'a, 'r>(
    resources: &'a [&'r Arc<Resource>],
    limit: usize,
) -> Vec<&'a [&'r Arc<Resource>]> {
    let mut parts = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, r) in resources.iter().enumerate() {
        let size = r.value_len() + names::wire_len(&r.name);
        if i > start && bytes + size > limit {
            parts.push(&resources[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    parts.push(&resources[start..]);
    parts
}
