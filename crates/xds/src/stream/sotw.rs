//! State of the world (`StreamAggregatedResources`): every response of CDS, LDS and SRDS is
//! the type's complete view; EDS and RDS responses add to what the client has (absence does
//! not delete), so a change sends only the resources that changed.

use std::collections::BTreeMap;

use envoy_api::pb::envoy::service::discovery::v3::DiscoveryRequest;

use super::{
    type_status_base, view_map, AdsStream, Answers, ConnectionEvent, ConnectionStatus, Core,
    Protocol, ProtocolError, ResponseStatus, Subscription, TypeKey, Versions,
};
use crate::names;
use crate::resource::ResourceType;
use crate::snapshot::{aggregate_version, Snapshot};
use crate::wire::SotwResponse;

/// The exchange of responses and answers of one type.
#[derive(Debug, Default)]
pub(super) enum Exchange {
    /// Nothing sent yet.
    #[default]
    Idle,
    /// The latest response, neither ACKed nor NACKed yet.
    Awaiting(ResponseStatus),
    /// The latest response was answered (Envoy repeats ACKs: they count once). Its nonce is
    /// kept: a request echoing any other non-empty nonce is stale.
    Answered { nonce: String },
}

impl Exchange {
    pub(super) fn latest_nonce(&self) -> Option<&str> {
        match self {
            Exchange::Idle => None,
            Exchange::Awaiting(r) => Some(&r.nonce),
            Exchange::Answered { nonce } => Some(nonce),
        }
    }
}

/// One type of a SotW stream.
#[derive(Debug, Default)]
pub(super) struct SotwType {
    sub: Subscription,
    /// An explicit name list was seen: from now on an empty list means "none", not wildcard.
    explicit_seen: bool,
    /// Send the full view at the next sync (first request, changed names).
    respond: bool,
    /// The client's view after our last full response (or the one it reconnected with); later
    /// snapshots are compared with it. Kept on NACK so rejected content is not resent.
    view_version: Option<String>,
    view: Versions,
    /// The snapshot `view_version` was last brought up to date with: from there, a newer
    /// snapshot's list of changed names tells whether this type needs a look at all.
    view_synced: Option<u64>,
    pub(super) exchange: Exchange,
    acked_version: Option<String>,
    /// name → version of what the client ACKed (for CSDS).
    acked: Versions,
    answers: Answers,
}

impl SotwType {
    fn set_names(&mut self, names: &[String], legacy_wildcard: bool) {
        self.sub.names.clear();
        if names.is_empty() {
            self.sub.wildcard = legacy_wildcard && !self.explicit_seen;
            return;
        }
        self.explicit_seen = true;
        self.sub.wildcard = false;
        for n in names {
            if n == "*" {
                self.sub.wildcard = true;
            } else {
                self.sub.names.insert(n.clone());
            }
        }
    }
}

/// ADS state of one SotW stream. See the module docs.
#[derive(Debug, Default)]
pub struct SotwStream {
    core: Core,
    pub(super) types: BTreeMap<TypeKey, SotwType>,
}

impl AdsStream for SotwStream {
    type Request = DiscoveryRequest;
    type Response = SotwResponse;
    const PROTOCOL: Protocol = Protocol::Sotw;

    fn new() -> SotwStream {
        SotwStream::default()
    }

    fn handle_request(
        &mut self,
        req: DiscoveryRequest,
        snap: &Snapshot,
    ) -> Result<Vec<SotwResponse>, ProtocolError> {
        let key = self.core.resolve(&req.type_url, self.types.keys())?;
        let DiscoveryRequest {
            version_info,
            node,
            resource_names,
            response_nonce,
            error_detail,
            ..
        } = req;
        // From here on, names are in the server's form (see `names`).
        let resource_names: Vec<String> = resource_names
            .into_iter()
            .map(names::into_internal)
            .collect();
        let core = &mut self.core;
        core.remember_node(node);
        let first = !self.types.contains_key(&key);
        let type_url = key.type_url().to_string();
        let st = self.types.entry(key.clone()).or_default();

        let latest_nonce = st.exchange.latest_nonce();
        if !response_nonce.is_empty() && latest_nonce.is_some_and(|n| n != response_nonce) {
            // Superseded by a response the client has not seen yet; its answer to that one will
            // carry its current subscription (xds_protocol: no response to stale nonces).
            core.push_event(ConnectionEvent::StaleNonce {
                type_url,
                nonce: response_nonce,
            });
            return Ok(Vec::new());
        }
        let mut event = None;
        let mut unblocked = false;
        if !response_nonce.is_empty() && matches!(st.exchange, Exchange::Awaiting(_)) {
            // Answered: its record of what it carried moves to the ACK/NACK bookkeeping
            // (no copy of a type's whole view is kept or made).
            let answered = Exchange::Answered {
                nonce: response_nonce.clone(),
            };
            let sent = match std::mem::replace(&mut st.exchange, answered) {
                Exchange::Awaiting(sent) => Some(sent),
                _ => None,
            };
            unblocked = core
                .warming
                .answered(&key, sent.as_ref(), error_detail.is_some());
            event = Some(match error_detail {
                Some(err) => st.answers.nack(
                    type_url,
                    response_nonce.clone(),
                    sent,
                    version_info.clone(),
                    err,
                ),
                None => {
                    let (version, resources) =
                        sent.map(|s| (s.version, s.resources)).unwrap_or_default();
                    // A partial (EDS re-send) response adds to what was ACKed before.
                    add_acked(&mut st.acked, resources);
                    let view = &st.view;
                    st.acked.retain(|n, _| view.contains_key(n));
                    st.acked_version = Some(version.clone());
                    st.answers.acks += 1;
                    ConnectionEvent::Ack {
                        type_url,
                        nonce: response_nonce.clone(),
                        version,
                    }
                }
            });
        } else if response_nonce.is_empty() || latest_nonce.is_none() {
            if let Some(err) = error_detail {
                // A NACK we cannot tie to a response of this stream: keep the message anyway.
                event = Some(st.answers.nack(
                    type_url,
                    response_nonce.clone(),
                    None,
                    version_info.clone(),
                    err,
                ));
            }
        }

        let before = st.sub.clone();
        st.set_names(&resource_names, key.legacy_wildcard());
        if first {
            let version = aggregate_version(st.sub.view(key.resources(snap)));
            // Secrets are always answered on a new stream (as in delta): a reconnecting
            // Envoy's new secret providers wait for an answer (Envoy Gateway #9519).
            let reconnect = response_nonce.is_empty() && !version_info.is_empty();
            if reconnect && version_info == version && !key.is(ResourceType::Secret) {
                // Reconnect: the client already runs exactly this content; nothing to send.
                st.view = view_map(&st.sub.view(key.resources(snap)));
                st.view_version = Some(version);
                st.view_synced = Some(snap.id());
                st.acked = st.view.clone();
                st.acked_version = Some(version_info);
            } else {
                st.respond = true;
            }
        } else if st.sub != before {
            // Newly requested names must be (re)sent even if unchanged.
            st.respond = true;
        }
        let respond = st.respond;
        let nothing_new = !first && !respond && !unblocked && core.synced == Some(snap.id());
        if let Some(ev) = event {
            core.push_event(ev);
        }
        if nothing_new {
            return Ok(Vec::new());
        }
        Ok(self.sync(snap))
    }

    fn snapshot_changed(&mut self, snap: &Snapshot) -> Vec<SotwResponse> {
        self.sync(snap)
    }

    fn awaiting_answers(&self) -> bool {
        self.types
            .values()
            .any(|st| matches!(st.exchange, Exchange::Awaiting(_)))
    }

    /// By comparing what the client ACKed with its view of `snap` (linear in the resources).
    fn in_sync(&self, snap: &Snapshot) -> bool {
        self.types.iter().all(|(key, st)| {
            !matches!(st.exchange, Exchange::Awaiting(_))
                && st.acked == view_map(&st.sub.view(key.resources(snap)))
        })
    }

    fn is_subscribed(&self, ty: ResourceType) -> bool {
        self.types.contains_key(&TypeKey::Served(ty))
    }

    fn status(&self) -> ConnectionStatus {
        let types = self.types.iter().map(|(key, st)| {
            let pending = match &st.exchange {
                Exchange::Awaiting(r) => Some(r.clone()),
                _ => None,
            };
            st.answers.status(super::TypeStatus {
                acked_version: st.acked_version.clone(),
                acked_resources: Some(st.acked.clone()),
                pending,
                ..type_status_base(key, &st.sub)
            })
        });
        self.core.status(Protocol::Sotw, types.collect())
    }

    fn core(&self) -> &Core {
        &self.core
    }

    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
}

impl SotwStream {
    fn sync(&mut self, snap: &Snapshot) -> Vec<SotwResponse> {
        let SotwStream { core, types } = self;
        core.synced = Some(snap.id());
        let changes = snap.lineage_changes();
        core.warming.retain(snap);
        let mut out = Vec::new();
        for (key, st) in types.iter_mut() {
            if core.warming.holds(key) {
                continue;
            }
            // Nothing this client sees of this type changed since its last look (and nothing
            // is owed): its view and version stand, so skip building them (O(its view)).
            let evaluated = st.view_synced.replace(snap.id());
            if let (Some(ch), TypeKey::Served(ty)) = (changes, key) {
                let unchanged = evaluated == Some(ch.parent)
                    && !st.respond
                    && st.view_version.is_some()
                    && (*ty != ResourceType::Endpoint || core.warming.owed.is_empty())
                    && !ch.names(*ty).iter().any(|n| st.sub.covers(n));
                if unchanged {
                    continue;
                }
            }
            let view = st.sub.view(key.resources(snap));
            let version = aggregate_version(view.iter().copied());
            let changed = st.view_version.as_deref() != Some(version.as_str());
            // EDS, SDS and RDS resources are independent in SotW (absence does not
            // delete), so a content change sends only what changed: one Route's change
            // does not resend every RouteConfiguration, one rotation not every Secret.
            // New names, first requests and other types get the complete view.
            let partial = changed
                && !st.respond
                && (key.is(ResourceType::Endpoint)
                    || key.is(ResourceType::Secret)
                    || key.is(ResourceType::Route));
            let full = st.respond || changed;
            st.respond = false;
            let is_eds = key.is(ResourceType::Endpoint);
            let resources = if partial {
                let changed_only: Vec<_> = view
                    .iter()
                    .copied()
                    .filter(|r| {
                        st.view.get(&*r.name) != Some(&r.version)
                            || (is_eds && core.warming.owes(&r.name))
                    })
                    .collect();
                if changed_only.is_empty() {
                    // Only removals: nothing to send; the parents dropped the references.
                    st.view = view_map(&view);
                    st.view_version = Some(version);
                    continue;
                }
                changed_only
            } else if full {
                view.clone()
            } else if is_eds {
                // Only the CLAs of clusters that changed: a partial EDS response is fine in
                // SotW (absence does not delete) and the client's view, so its version, is
                // unchanged.
                let forced: Vec<_> = view
                    .iter()
                    .copied()
                    .filter(|r| core.warming.owes(&r.name))
                    .collect();
                if forced.is_empty() {
                    continue;
                }
                forced
            } else {
                continue;
            };
            let sent = view_map(&resources);
            if key.is(ResourceType::Cluster) {
                // A CDS response is the complete view: what it lacks, the client drops.
                for r in &resources {
                    let before = st.view.get(&*r.name).copied();
                    core.warming.cluster_sent(r, before, snap);
                }
                for name in st.view.keys().filter(|n| !sent.contains_key(&***n)) {
                    core.warming.cluster_gone(name);
                }
            } else if is_eds {
                for r in &resources {
                    core.warming.endpoints_sent(&r.name);
                }
            }
            if full {
                st.view = view_map(&view);
                st.view_version = Some(version.clone());
            }
            let nonce = core.next_nonce();
            st.exchange = Exchange::Awaiting(ResponseStatus {
                nonce: nonce.clone(),
                version: version.clone(),
                resources: sent,
                removed: Vec::new(),
            });
            st.answers.responses += 1;
            core.push_event(ConnectionEvent::Sent {
                type_url: key.type_url().to_string(),
                nonce: nonce.clone(),
                version: version.clone(),
                resources: resources.len(),
                removed: 0,
            });
            out.push(SotwResponse {
                version_info: version,
                resources: resources.into_iter().cloned().collect(),
                type_url: key.type_url().to_string(),
                nonce,
            });
        }
        out
    }
}

/// Adds what an ACKed response carried to what the client has ACKed. A first sync takes
/// the map itself: no second copy of a type's whole view is built.
fn add_acked(acked: &mut Versions, sent: Versions) {
    if acked.is_empty() {
        *acked = sent;
    } else {
        acked.extend(sent);
    }
}
