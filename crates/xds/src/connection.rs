//! The ADS protocol state of one gRPC stream, free of I/O.
//!
//! The server feeds a [`Connection`] the client's requests and every newly published
//! [`Snapshot`], and writes out the responses it returns. Per type the connection tracks what
//! the client subscribed to, what it was last sent (its view, as far as we know) and the
//! ACK/NACK state, so that every change reaches the client once, rejected content is not
//! resent, and pushes follow make-before-break order (CDS → EDS → LDS → RDS).
//!
//! Every call that may answer runs a full sync of all subscribed types against the given
//! snapshot, in that order: a request processed against a snapshot newer than the last push
//! therefore cannot, say, deliver a route before the cluster it points at.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use envoy_types::pb::google::rpc::Status;
use serde::Serialize;

use super::names::{self, glob_prefix};
use super::resource::{Resource, ResourceType, Version};
use super::snapshot::{aggregate_version, ResourceMap, Snapshot};
use super::wire::{DeltaResponse, SotwResponse};

/// Resource name → content version. Names and versions are the snapshot's own shared
/// strings, so a stream's record of what its client has costs no copy of either (at 10,000
/// Routes a client holds ~140,000 resources).
pub type Versions = BTreeMap<Arc<str>, Version>;

const TYPE_URL_PREFIX: &str = "type.googleapis.com/";
/// Distinct unserved type URLs one stream may open: bounds the memory a client can make us hold.
const MAX_UNSERVED_TYPES: usize = 16;
/// Events kept when nobody drains them; the oldest are dropped first.
const MAX_EVENTS: usize = 1024;
/// Unanswered delta responses remembered per type for ACK bookkeeping.
const MAX_OUTSTANDING: usize = 16;
/// Encoded resource bytes above which a delta response is split (a new Envoy's first
/// sync at 10,000 Routes is ~30 MB).
const MAX_RESPONSE_BYTES: usize = 4 << 20;
/// Longest NACK message / type URL kept (client-controlled strings).
const MAX_TEXT: usize = 4096;

/// The resources of a type we serve nothing of.
static EMPTY: std::sync::LazyLock<ResourceMap> = std::sync::LazyLock::new(ResourceMap::new);

/// Which ADS variant a stream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// State of the world: `StreamAggregatedResources`.
    Sotw,
    /// Incremental: `DeltaAggregatedResources`.
    Delta,
}

/// A request the stream cannot continue after; the server ends it with `InvalidArgument`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("type_url is required on an aggregated (ADS) stream")]
    MissingTypeUrl,
    #[error("unknown type_url {0:?}")]
    UnknownTypeUrl(String),
    #[error("more than {MAX_UNSERVED_TYPES} unsupported resource types requested on one stream")]
    TooManyTypes,
    #[error("{got:?} request on a {expected:?} stream")]
    WrongProtocol { expected: Protocol, got: Protocol },
}

/// Something worth a log line or a metric; drained with [`Connection::take_events`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ConnectionEvent {
    /// A response was produced (`version`: SotW `version_info` / delta `system_version_info`).
    Sent {
        type_url: String,
        nonce: String,
        version: String,
        resources: usize,
        removed: usize,
    },
    Ack {
        type_url: String,
        nonce: String,
        version: String,
    },
    /// `version` is the rejected one (empty when the nonce was not recognised).
    Nack {
        type_url: String,
        nonce: String,
        version: String,
        message: String,
    },
    /// A request echoing a nonce that is not the latest (SotW: ignored).
    StaleNonce { type_url: String, nonce: String },
    /// First request for a valid type this server has no resources of.
    UnservedType { type_url: String },
}

impl ConnectionEvent {
    pub fn type_url(&self) -> &str {
        match self {
            ConnectionEvent::Sent { type_url, .. }
            | ConnectionEvent::Ack { type_url, .. }
            | ConnectionEvent::Nack { type_url, .. }
            | ConnectionEvent::StaleNonce { type_url, .. }
            | ConnectionEvent::UnservedType { type_url } => type_url,
        }
    }
}

/// Short label for a type URL: `CDS`/`EDS`/`LDS`/`RDS`, else the message name (`Secret`).
pub fn type_label(type_url: &str) -> &str {
    match ResourceType::from_type_url(type_url) {
        Some(t) => t.short_name(),
        None => type_url.rsplit('.').next().unwrap_or(type_url),
    }
}

/// Snapshot of a connection's protocol state, for `/debug/proxies` and metrics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionStatus {
    pub protocol: Protocol,
    pub node_id: Option<String>,
    pub node_cluster: Option<String>,
    pub nonces_issued: u64,
    pub events_dropped: u64,
    /// Types the client has requested, CDS, EDS, LDS, RDS first.
    pub types: Vec<TypeStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypeStatus {
    pub type_url: String,
    pub type_name: String,
    /// False for valid types we have nothing of (always answered empty).
    pub served: bool,
    pub wildcard: bool,
    /// Explicitly subscribed names.
    pub names: Vec<String>,
    /// SotW: `version_info` last ACKed (or the one the client reconnected with).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked_version: Option<String>,
    /// name → version the client ACKed (or reconnected with).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acked_resources: Option<Versions>,
    /// The latest response, while neither ACKed nor NACKed.
    pub pending: Option<ResponseStatus>,
    pub last_nack: Option<NackStatus>,
    pub acks: u64,
    pub nacks: u64,
    pub responses: u64,
}

impl ConnectionStatus {
    /// With the names clients see, for display: [`Connection::status`] gives them in the
    /// server's form (see [`names`]), as the snapshot's maps hold them.
    pub fn into_wire(mut self) -> ConnectionStatus {
        self.types = self.types.into_iter().map(TypeStatus::into_wire).collect();
        self
    }
}

impl TypeStatus {
    fn into_wire(mut self) -> TypeStatus {
        for n in &mut self.names {
            *n = names::into_wire(std::mem::take(n));
        }
        self.acked_resources = self.acked_resources.map(versions_to_wire);
        self.pending = self.pending.map(ResponseStatus::into_wire);
        if let Some(nack) = &mut self.last_nack {
            nack.attempted = nack.attempted.take().map(ResponseStatus::into_wire);
        }
        self
    }
}

fn versions_to_wire(v: Versions) -> Versions {
    v.into_iter()
        .map(|(n, version)| (names::into_wire(n), version))
        .collect()
}

impl ResponseStatus {
    fn into_wire(mut self) -> ResponseStatus {
        self.resources = versions_to_wire(self.resources);
        for n in &mut self.removed {
            *n = names::into_wire(std::mem::take(n));
        }
        self
    }
}

/// One response as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResponseStatus {
    pub nonce: String,
    /// SotW `version_info` / delta `system_version_info`.
    pub version: String,
    /// name → content version of the resources it carried.
    pub resources: Versions,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NackStatus {
    pub nonce: String,
    /// The rejected response, if the nonce was recognised.
    pub attempted: Option<ResponseStatus>,
    /// SotW: the version the client keeps running (`version_info` of the NACK).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client_version: String,
    pub code: i32,
    pub message: String,
}

/// Type of a request: one we serve, or a valid xDS type we have nothing of (SRDS, SDS, RTDS…),
/// which is answered as if it had no resources rather than failing the stream.
/// `Ord` puts served types first, in push order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum TypeKey {
    Served(ResourceType),
    Unserved(String),
}

impl TypeKey {
    fn parse(url: &str) -> Result<TypeKey, ProtocolError> {
        if url.is_empty() {
            return Err(ProtocolError::MissingTypeUrl);
        }
        if let Some(t) = ResourceType::from_type_url(url) {
            return Ok(TypeKey::Served(t));
        }
        let valid = url.len() <= 256
            && url.strip_prefix(TYPE_URL_PREFIX).is_some_and(|msg| {
                msg.contains('.')
                    && msg.split('.').all(|seg| {
                        !seg.is_empty()
                            && seg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    })
            });
        if valid {
            Ok(TypeKey::Unserved(url.to_string()))
        } else {
            Err(ProtocolError::UnknownTypeUrl(truncate(url, 256)))
        }
    }

    fn type_url(&self) -> &str {
        match self {
            TypeKey::Served(t) => t.type_url(),
            TypeKey::Unserved(url) => url,
        }
    }

    fn resources<'a>(&self, snap: &'a Snapshot) -> &'a ResourceMap {
        match self {
            TypeKey::Served(t) => snap.resources(*t),
            TypeKey::Unserved(_) => &EMPTY,
        }
    }

    /// Whether an empty name list on the first request means wildcard. Only CDS/LDS among
    /// ours (Envoy asks EDS/RDS by name); harmless for unserved types, which are empty.
    fn legacy_wildcard(&self) -> bool {
        match self {
            TypeKey::Served(t) => t.is_wildcard(),
            TypeKey::Unserved(_) => true,
        }
    }

    fn is(&self, t: ResourceType) -> bool {
        *self == TypeKey::Served(t)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Subscription {
    wildcard: bool,
    names: BTreeSet<String>,
}

impl Subscription {
    fn covers(&self, name: &str) -> bool {
        self.wildcard
            || self.names.contains(name)
            || self
                .names
                .iter()
                .filter_map(|n| glob_prefix(n))
                .any(|p| name.starts_with(p))
    }

    /// The resources this subscription selects, sorted by name (so versions are deterministic).
    fn view<'a>(&self, all: &'a ResourceMap) -> Vec<&'a Arc<Resource>> {
        if self.wildcard {
            return all.values().collect();
        }
        let mut out: BTreeMap<&str, &'a Arc<Resource>> = BTreeMap::new();
        for n in &self.names {
            match glob_prefix(n) {
                Some(prefix) => {
                    for (name, r) in all
                        .range::<_, str>((
                            std::ops::Bound::Included(prefix),
                            std::ops::Bound::Unbounded,
                        ))
                        .take_while(|(name, _)| name.starts_with(prefix))
                    {
                        out.insert(name, r);
                    }
                }
                None => {
                    if let Some(r) = all.get(n.as_str()) {
                        out.insert(n.as_str(), r);
                    }
                }
            }
        }
        out.into_values().collect()
    }
}

#[derive(Debug, Default)]
struct SotwState {
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
    /// The latest response; requests echoing any other non-empty nonce are stale.
    latest: Option<ResponseStatus>,
    /// The latest response was ACKed or NACKed (Envoy repeats ACKs; count them once).
    answered: bool,
    acked_version: Option<String>,
    /// name → version of what the client ACKed (for CSDS).
    acked: Versions,
    last_nack: Option<NackStatus>,
    acks: u64,
    nacks: u64,
    responses: u64,
}

impl SotwState {
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

#[derive(Debug, Default)]
struct DeltaState {
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
    outstanding: VecDeque<ResponseStatus>,
    /// Names of NACKed responses not since ACKed in a later one: the client lacks them.
    rejected: BTreeSet<String>,
    /// What the client has ACKed where that differs from `known` (sent and not ACKed yet,
    /// or NACKed): the version it ACKed, `None` for none. For every other name it ACKed
    /// what `known` says. (A second full map per stream was ~7 MB at 10,000 Routes.)
    unacked: BTreeMap<Arc<str>, Option<Version>>,
    last_nack: Option<NackStatus>,
    acks: u64,
    nacks: u64,
    responses: u64,
}

impl DeltaState {
    /// `name` goes to the client at `version`. What it ACKed before is kept in `unacked`
    /// until it ACKs again. (The snapshot's name: the maps share it.)
    fn note_sent(&mut self, name: &Arc<str>, version: Version) {
        if !self.unacked.contains_key(&**name) {
            let acked = self.known.get(&**name).copied();
            self.unacked.insert(name.clone(), acked);
        }
        self.known.insert(name.clone(), version);
    }

    /// `name` is reported removed to the client (as [`DeltaState::note_sent`]).
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
}

/// ADS state of one stream. See the module docs.
#[derive(Debug)]
pub struct Connection {
    protocol: Protocol,
    node: Option<Node>,
    nonce_counter: u64,
    sotw: BTreeMap<TypeKey, SotwState>,
    delta: BTreeMap<TypeKey, DeltaState>,
    /// Clusters sent new or changed whose CLA must follow even if unchanged: Envoy keeps such
    /// a cluster warming until it gets a ClusterLoadAssignment, and SotW Envoy does not ask
    /// again in a way we could answer (xds-protocol.md §3.5).
    eds_resend: BTreeSet<String>,
    /// New EDS clusters whose ClusterLoadAssignment the client has not yet ACKed: Envoy
    /// keeps them warming (unusable), and routes are not warmed, so route types are held
    /// back until these are ready — a route never points at a cluster Envoy cannot use yet
    /// (xds-protocol.md §3.5, make-before-break).
    warming: BTreeSet<String>,
    events: VecDeque<ConnectionEvent>,
    events_dropped: u64,
    /// The snapshot (by id) every type was last synced against: a request that changes no
    /// subscription (an ACK) needs no look at a snapshot already synced — which keeps ACKs
    /// cheap however many resources there are.
    synced: Option<u64>,
    /// [`MAX_RESPONSE_BYTES`] (smaller in tests).
    part_bytes: usize,
}

impl Connection {
    pub fn new(protocol: Protocol) -> Connection {
        Connection {
            protocol,
            node: None,
            nonce_counter: 0,
            sotw: BTreeMap::new(),
            delta: BTreeMap::new(),
            eds_resend: BTreeSet::new(),
            events: VecDeque::new(),
            events_dropped: 0,
            synced: None,
            warming: BTreeSet::new(),
            part_bytes: MAX_RESPONSE_BYTES,
        }
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Node from the first request that carried one (later requests may omit it).
    pub fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }

    /// Whether the client has requested `ty` on this stream.
    pub fn is_subscribed(&self, ty: ResourceType) -> bool {
        let key = TypeKey::Served(ty);
        self.sotw.contains_key(&key) || self.delta.contains_key(&key)
    }

    /// Processes one SotW request; returns what to send, in push order.
    pub fn handle_sotw_request(
        &mut self,
        req: DiscoveryRequest,
        snap: &Snapshot,
    ) -> Result<Vec<SotwResponse>, ProtocolError> {
        self.expect(Protocol::Sotw)?;
        let key = self.resolve(&req.type_url)?;
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
        self.remember_node(node);
        let first = !self.sotw.contains_key(&key);
        if first {
            self.note_unserved(&key);
        }
        let type_url = key.type_url().to_string();
        let st = self.sotw.entry(key.clone()).or_default();

        let latest_nonce = st.latest.as_ref().map(|s| s.nonce.as_str());
        if !response_nonce.is_empty() && latest_nonce.is_some_and(|n| n != response_nonce) {
            // Superseded by a response the client has not seen yet; its answer to that one will
            // carry its current subscription (xds_protocol: no response to stale nonces).
            push_event(
                &mut self.events,
                &mut self.events_dropped,
                ConnectionEvent::StaleNonce {
                    type_url,
                    nonce: response_nonce,
                },
            );
            return Ok(Vec::new());
        }
        let answers_latest = !response_nonce.is_empty() && latest_nonce.is_some();
        let mut event = None;
        let mut released: Vec<String> = Vec::new();
        if answers_latest {
            if !st.answered {
                st.answered = true;
                // Answered: its record of what it carried moves to the ACK/NACK bookkeeping
                // (no copy of a type's whole view is kept or made).
                let sent = st.latest.as_mut().map(|l| ResponseStatus {
                    nonce: l.nonce.clone(),
                    version: l.version.clone(),
                    resources: std::mem::take(&mut l.resources),
                    removed: std::mem::take(&mut l.removed),
                });
                released = warming_answered(&key, sent.as_ref(), error_detail.is_some());
                event = Some(match error_detail {
                    Some(err) => record_nack(
                        &mut st.last_nack,
                        &mut st.nacks,
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
                        st.acks += 1;
                        ConnectionEvent::Ack {
                            type_url,
                            nonce: response_nonce.clone(),
                            version,
                        }
                    }
                });
            }
        } else if let Some(err) = error_detail {
            // A NACK we cannot tie to a response of this stream: keep the message anyway.
            event = Some(record_nack(
                &mut st.last_nack,
                &mut st.nacks,
                type_url,
                response_nonce.clone(),
                None,
                version_info.clone(),
                err,
            ));
        }

        let before = st.sub.clone();
        st.set_names(&resource_names, key.legacy_wildcard());
        if first {
            let version = aggregate_version(st.sub.view(key.resources(snap)));
            if response_nonce.is_empty() && !version_info.is_empty() && version_info == version {
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
        let unblocked = self.release_warming(&released);
        let nothing_new = !first && !respond && !unblocked && self.synced == Some(snap.id());
        if let Some(ev) = event {
            push_event(&mut self.events, &mut self.events_dropped, ev);
        }
        if nothing_new {
            return Ok(Vec::new());
        }
        Ok(self.sotw_sync(snap))
    }

    /// Processes one delta request; returns what to send, in push order.
    pub fn handle_delta_request(
        &mut self,
        req: DeltaDiscoveryRequest,
        snap: &Snapshot,
    ) -> Result<Vec<DeltaResponse>, ProtocolError> {
        self.expect(Protocol::Delta)?;
        let key = self.resolve(&req.type_url)?;
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
        self.remember_node(node);
        let first = !self.delta.contains_key(&key);
        if first {
            self.note_unserved(&key);
        }
        let type_url = key.type_url().to_string();
        let st = self.delta.entry(key.clone()).or_default();

        let mut event = None;
        let mut released: Vec<String> = Vec::new();
        if !response_nonce.is_empty() {
            match st
                .outstanding
                .iter()
                .position(|s| s.nonce == response_nonce)
            {
                Some(i) => {
                    let sent = st.outstanding.remove(i);
                    if let Some(sent) = &sent {
                        let names = (sent.resources.keys().map(|n| &**n))
                            .chain(sent.removed.iter().map(String::as_str));
                        if error_detail.is_some() {
                            st.rejected.extend(names.map(str::to_string));
                        } else if !st.rejected.is_empty() {
                            for n in names {
                                st.rejected.remove(n);
                            }
                        }
                    }
                    released = warming_answered(&key, sent.as_ref(), error_detail.is_some());
                    event = Some(match error_detail {
                        Some(err) => record_nack(
                            &mut st.last_nack,
                            &mut st.nacks,
                            type_url,
                            response_nonce,
                            sent,
                            String::new(),
                            err,
                        ),
                        None => {
                            let version = match sent {
                                Some(sent) => {
                                    for n in &sent.removed {
                                        st.note_acked(n, None);
                                    }
                                    for (n, v) in &sent.resources {
                                        st.note_acked(n, Some(*v));
                                    }
                                    sent.version
                                }
                                None => String::new(),
                            };
                            st.acks += 1;
                            ConnectionEvent::Ack {
                                type_url,
                                nonce: response_nonce,
                                version,
                            }
                        }
                    });
                }
                // Stale or unknown: no ACK bookkeeping, but subscription changes still count.
                None => {
                    event = Some(match error_detail {
                        Some(err) => record_nack(
                            &mut st.last_nack,
                            &mut st.nacks,
                            type_url,
                            response_nonce,
                            None,
                            String::new(),
                            err,
                        ),
                        None => ConnectionEvent::StaleNonce {
                            type_url,
                            nonce: response_nonce,
                        },
                    });
                }
            }
        } else if let Some(err) = error_detail {
            event = Some(record_nack(
                &mut st.last_nack,
                &mut st.nacks,
                type_url,
                String::new(),
                None,
                String::new(),
                err,
            ));
        }

        if first {
            tracing::debug!(r#type = %key.type_url(), initial = initial_resource_versions.len(), subscribe = ?resource_names_subscribe.iter().map(|n| names::wire(n)).collect::<Vec<_>>(), "first delta request");
            st.known = initial_resource_versions
                .into_iter()
                .map(|(n, v)| (names::into_internal(n).into(), Version::from_client(&v)))
                .collect();
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
        let unblocked = self.release_warming(&released);
        let nothing_new = quiet && !unblocked && self.synced == Some(snap.id());
        if let Some(ev) = event {
            push_event(&mut self.events, &mut self.events_dropped, ev);
        }
        if nothing_new {
            return Ok(Vec::new());
        }
        Ok(self.delta_sync(snap))
    }

    /// The client answered for these clusters' CLAs (or rejected them or their clusters):
    /// they no longer hold routes back. Returns whether that released the held route types.
    fn release_warming(&mut self, names: &[String]) -> bool {
        if self.warming.is_empty() || names.is_empty() {
            return false;
        }
        for n in names {
            self.warming.remove(n);
        }
        self.warming.is_empty()
    }

    /// Route types wait while a new cluster warms.
    fn held(warming: &BTreeSet<String>, key: &TypeKey) -> bool {
        !warming.is_empty()
            && (key.is(ResourceType::Listener)
                || key.is(ResourceType::ScopedRoute)
                || key.is(ResourceType::Route))
    }

    /// A new snapshot was published: what must be pushed to this client, in CDS→EDS→LDS→RDS
    /// order. Empty on a delta connection.
    pub fn sotw_snapshot_changed(&mut self, snap: &Snapshot) -> Vec<SotwResponse> {
        if self.protocol != Protocol::Sotw {
            return Vec::new();
        }
        self.sotw_sync(snap)
    }

    /// Delta counterpart of [`Connection::sotw_snapshot_changed`]. Empty on a SotW connection.
    pub fn delta_snapshot_changed(&mut self, snap: &Snapshot) -> Vec<DeltaResponse> {
        if self.protocol != Protocol::Delta {
            return Vec::new();
        }
        // Synced against its parent: only the names that changed need a look.
        let changes = self.synced.and_then(|id| snap.changes_since(id));
        self.delta_sync_with(snap, changes)
    }

    /// Per type: subscription, ACKed state, the response awaiting an answer, the last NACK and
    /// counters. For `/debug/proxies` and metrics.
    /// Responses sent and not yet ACKed or NACKed (cheap; no look at resources).
    pub fn awaiting_answers(&self) -> bool {
        self.sotw
            .values()
            .any(|st| st.latest.is_some() && !st.answered)
            || self.delta.values().any(|st| !st.outstanding.is_empty())
    }

    /// Whether the client has subscribed to every type `snap` holds resources of (a new
    /// Envoy asks for clusters first and for routes only later).
    pub fn subscribes_all(&self, snap: &Snapshot) -> bool {
        ResourceType::ORDERED.iter().all(|ty| {
            snap.resources(*ty).is_empty() || {
                let key = TypeKey::Served(*ty);
                self.sotw.contains_key(&key) || self.delta.contains_key(&key)
            }
        })
    }

    /// Whether the client has ACKed exactly its view of `snap` for every type it
    /// subscribed to: nothing pending, nothing rejected, nothing missing.
    pub fn in_sync(&self, snap: &Snapshot) -> bool {
        // Delta, synced against `snap` with every response answered and none rejected:
        // what the client has is what we sent, which is its view (no look at resources).
        if self.protocol == Protocol::Delta && self.synced == Some(snap.id()) {
            return self.warming.is_empty()
                && self.delta.values().all(|st| {
                    st.outstanding.is_empty()
                        && st.rejected.is_empty()
                        && st.resend.is_empty()
                        && !st.reply_pending
                });
        }
        self.in_sync_by_content(snap)
    }

    /// [`Connection::in_sync`] by comparing what the client ACKed with its view of `snap`
    /// (linear in the resources).
    pub fn in_sync_by_content(&self, snap: &Snapshot) -> bool {
        let view = |sub: &Subscription, key: &TypeKey| -> Versions {
            view_map(&sub.view(key.resources(snap)))
        };
        match self.protocol {
            Protocol::Sotw => self.sotw.iter().all(|(key, st)| {
                (st.latest.is_none() || st.answered) && st.acked == view(&st.sub, key)
            }),
            Protocol::Delta => self
                .delta
                .iter()
                .all(|(key, st)| st.outstanding.is_empty() && st.acked_is(&view(&st.sub, key))),
        }
    }

    pub fn status(&self) -> ConnectionStatus {
        let mut types = Vec::new();
        for (key, st) in &self.sotw {
            types.push(TypeStatus {
                acked_version: st.acked_version.clone(),
                acked_resources: Some(st.acked.clone()),
                pending: st.latest.clone().filter(|_| !st.answered),
                last_nack: st.last_nack.clone(),
                acks: st.acks,
                nacks: st.nacks,
                responses: st.responses,
                ..type_status_base(key, &st.sub)
            });
        }
        for (key, st) in &self.delta {
            types.push(TypeStatus {
                acked_version: None,
                acked_resources: Some(st.acked()),
                pending: st.outstanding.back().cloned(),
                last_nack: st.last_nack.clone(),
                acks: st.acks,
                nacks: st.nacks,
                responses: st.responses,
                ..type_status_base(key, &st.sub)
            });
        }
        ConnectionStatus {
            protocol: self.protocol,
            node_id: self.node.as_ref().map(|n| n.id.clone()),
            node_cluster: self.node.as_ref().map(|n| n.cluster.clone()),
            nonces_issued: self.nonce_counter,
            events_dropped: self.events_dropped,
            types,
        }
    }

    /// [`Connection::status`] without the per-type detail (cheap).
    pub fn summary(&self) -> ConnectionStatus {
        ConnectionStatus {
            protocol: self.protocol,
            node_id: self.node.as_ref().map(|n| n.id.clone()),
            node_cluster: self.node.as_ref().map(|n| n.cluster.clone()),
            nonces_issued: self.nonce_counter,
            events_dropped: self.events_dropped,
            types: Vec::new(),
        }
    }

    /// Events since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<ConnectionEvent> {
        self.events.drain(..).collect()
    }

    fn expect(&self, got: Protocol) -> Result<(), ProtocolError> {
        if self.protocol == got {
            Ok(())
        } else {
            Err(ProtocolError::WrongProtocol {
                expected: self.protocol,
                got,
            })
        }
    }

    fn resolve(&self, type_url: &str) -> Result<TypeKey, ProtocolError> {
        let key = TypeKey::parse(type_url)?;
        if matches!(key, TypeKey::Unserved(_))
            && !self.sotw.contains_key(&key)
            && !self.delta.contains_key(&key)
        {
            let open = self
                .sotw
                .keys()
                .chain(self.delta.keys())
                .filter(|k| matches!(k, TypeKey::Unserved(_)))
                .count();
            if open >= MAX_UNSERVED_TYPES {
                return Err(ProtocolError::TooManyTypes);
            }
        }
        Ok(key)
    }

    fn remember_node(&mut self, node: Option<Node>) {
        if self.node.is_none() {
            self.node = node;
        }
    }

    fn note_unserved(&mut self, key: &TypeKey) {
        if let TypeKey::Unserved(url) = key {
            push_event(
                &mut self.events,
                &mut self.events_dropped,
                ConnectionEvent::UnservedType {
                    type_url: url.clone(),
                },
            );
        }
    }

    fn sotw_sync(&mut self, snap: &Snapshot) -> Vec<SotwResponse> {
        self.synced = Some(snap.id());
        let changes = snap.lineage_changes();
        let Connection {
            sotw,
            eds_resend,
            warming,
            nonce_counter,
            events,
            events_dropped,
            ..
        } = self;
        retain_warming(warming, snap);
        let mut out = Vec::new();
        for (key, st) in sotw.iter_mut() {
            if Self::held(warming, key) {
                continue;
            }
            // Nothing this client sees of this type changed since its last look (and nothing
            // is owed): its view and version stand, so skip building them (O(its view)).
            let evaluated = st.view_synced.replace(snap.id());
            if let (Some(ch), TypeKey::Served(ty)) = (changes, key) {
                let unchanged = evaluated == Some(ch.parent)
                    && !st.respond
                    && st.view_version.is_some()
                    && (*ty != ResourceType::Endpoint || eds_resend.is_empty())
                    && !ch.names(*ty).iter().any(|n| st.sub.covers(n));
                if unchanged {
                    continue;
                }
            }
            let view = st.sub.view(key.resources(snap));
            let version = aggregate_version(view.iter().copied());
            let changed = st.view_version.as_deref() != Some(version.as_str());
            // EDS and RDS resources are independent in SotW (absence does not delete), so
            // a content change sends only what changed: one Route's change does not resend
            // every RouteConfiguration. New names, first requests and other types get the
            // complete view.
            let partial = changed
                && !st.respond
                && (key.is(ResourceType::Endpoint) || key.is(ResourceType::Route));
            let full = st.respond || changed;
            st.respond = false;
            let resources = if partial {
                let is_eds = key.is(ResourceType::Endpoint);
                let changed_only: Vec<_> = view
                    .iter()
                    .copied()
                    .filter(|r| {
                        st.view.get(&*r.name) != Some(&r.version)
                            || (is_eds && eds_resend.contains(&*r.name))
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
            } else if key.is(ResourceType::Endpoint) {
                // Only the CLAs of clusters that changed: a partial EDS response is fine in
                // SotW (absence does not delete) and the client's view, so its version, is
                // unchanged.
                let forced: Vec<_> = view
                    .iter()
                    .copied()
                    .filter(|r| eds_resend.contains(&*r.name))
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
                for r in &resources {
                    if st.view.get(&*r.name) != Some(&r.version) {
                        eds_resend.insert(r.name.to_string());
                    }
                    if !st.view.contains_key(&*r.name)
                        && snap.resources(ResourceType::Endpoint).contains_key(&r.name)
                    {
                        warming.insert(r.name.to_string());
                    }
                }
                eds_resend.retain(|n| sent.contains_key(n.as_str()));
            } else if key.is(ResourceType::Endpoint) {
                for r in &resources {
                    eds_resend.remove(&*r.name);
                }
            }
            if full {
                st.view = view_map(&view);
                st.view_version = Some(version.clone());
            }
            let nonce = next_nonce(nonce_counter);
            st.latest = Some(ResponseStatus {
                nonce: nonce.clone(),
                version: version.clone(),
                resources: sent,
                removed: Vec::new(),
            });
            st.answered = false;
            st.responses += 1;
            push_event(
                events,
                events_dropped,
                ConnectionEvent::Sent {
                    type_url: key.type_url().to_string(),
                    nonce: nonce.clone(),
                    version: version.clone(),
                    resources: resources.len(),
                    removed: 0,
                },
            );
            out.push(SotwResponse {
                version_info: version,
                resources: resources.into_iter().cloned().collect(),
                type_url: key.type_url().to_string(),
                nonce,
            });
        }
        out
    }

    fn delta_sync(&mut self, snap: &Snapshot) -> Vec<DeltaResponse> {
        self.delta_sync_with(snap, None)
    }

    /// Sends each type what the client lacks. With `changes` (the snapshot's difference
    /// from the one this connection last synced against), only those names are examined:
    /// the work per change is proportional to the change, not to the config.
    fn delta_sync_with(
        &mut self,
        snap: &Snapshot,
        changes: Option<&super::snapshot::Changes>,
    ) -> Vec<DeltaResponse> {
        self.synced = Some(snap.id());
        let Connection {
            delta,
            eds_resend,
            warming,
            nonce_counter,
            events,
            events_dropped,
            part_bytes,
            ..
        } = self;
        retain_warming(warming, snap);
        let mut out = Vec::new();
        for (key, st) in delta.iter_mut() {
            if Self::held(warming, key) {
                continue;
            }
            let all = key.resources(snap);
            let is_eds = key.is(ResourceType::Endpoint);
            let settled = changes.is_none()
                && st.looked == Some(snap.id())
                && st.resend.is_empty()
                && !st.reply_pending
                && (!is_eds || eds_resend.is_empty());
            if settled {
                continue;
            }
            st.looked = Some(snap.id());
            let (send, removed) = match (changes, key) {
                (Some(ch), TypeKey::Served(ty)) => {
                    changed_delta(st, all, ch.names(*ty), is_eds, eds_resend)
                }
                _ => full_delta(st, all, is_eds, eds_resend),
            };
            st.resend.clear();
            if send.is_empty() && removed.is_empty() && !st.reply_pending {
                continue;
            }
            st.reply_pending = false;

            if key.is(ResourceType::Cluster) {
                for r in &send {
                    if !st.known.contains_key(&*r.name)
                        && snap.resources(ResourceType::Endpoint).contains_key(&r.name)
                    {
                        warming.insert(r.name.to_string());
                    }
                }
                eds_resend.extend(send.iter().map(|r| r.name.to_string()));
                for n in &removed {
                    eds_resend.remove(n);
                }
            } else if is_eds {
                for r in &send {
                    eds_resend.remove(&*r.name);
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
                let nonce = next_nonce(nonce_counter);
                st.outstanding.push_back(ResponseStatus {
                    nonce: nonce.clone(),
                    version: version.clone(),
                    resources: view_map(part),
                    removed: removed.clone(),
                });
                while st.outstanding.len() > keep {
                    st.outstanding.pop_front();
                }
                st.responses += 1;
                push_event(
                    events,
                    events_dropped,
                    ConnectionEvent::Sent {
                        type_url: key.type_url().to_string(),
                        nonce: nonce.clone(),
                        version: version.clone(),
                        resources: part.len(),
                        removed: removed.len(),
                    },
                );
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

fn type_status_base(key: &TypeKey, sub: &Subscription) -> TypeStatus {
    TypeStatus {
        type_url: key.type_url().to_string(),
        type_name: type_label(key.type_url()).to_string(),
        served: matches!(key, TypeKey::Served(_)),
        wildcard: sub.wildcard,
        names: sub.names.iter().cloned().collect(),
        acked_version: None,
        acked_resources: None,
        pending: None,
        last_nack: None,
        acks: 0,
        nacks: 0,
        responses: 0,
    }
}

fn record_nack(
    last_nack: &mut Option<NackStatus>,
    nacks: &mut u64,
    type_url: String,
    nonce: String,
    attempted: Option<ResponseStatus>,
    client_version: String,
    err: Status,
) -> ConnectionEvent {
    let message = truncate(&err.message, MAX_TEXT);
    let version = attempted
        .as_ref()
        .map(|s| s.version.clone())
        .unwrap_or_default();
    *nacks += 1;
    *last_nack = Some(NackStatus {
        nonce: nonce.clone(),
        attempted,
        client_version: truncate(&client_version, MAX_TEXT),
        code: err.code,
        message: message.clone(),
    });
    ConnectionEvent::Nack {
        type_url,
        nonce,
        version,
        message,
    }
}

/// Delta, full look: every subscribed resource the client lacks, every resource it has
/// that is gone, and subscribed names that do not exist (once, or again when explicitly
/// re-subscribed).
fn full_delta<'a>(
    st: &DeltaState,
    all: &'a ResourceMap,
    is_eds: bool,
    eds_resend: &BTreeSet<String>,
) -> (Vec<&'a Arc<Resource>>, BTreeSet<String>) {
    let send: Vec<&Arc<Resource>> = st
        .sub
        .view(all)
        .into_iter()
        .filter(|r| {
            st.known.get(&*r.name) != Some(&r.version)
                || st.resend.contains(&*r.name)
                || (is_eds && eds_resend.contains(&*r.name))
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

/// Delta, after a snapshot change the connection was synced for up to its parent: the same
/// decisions as [`full_delta`], made only for the changed names (plus pending re-sends).
fn changed_delta<'a>(
    st: &DeltaState,
    all: &'a ResourceMap,
    changed: &[String],
    is_eds: bool,
    eds_resend: &BTreeSet<String>,
) -> (Vec<&'a Arc<Resource>>, BTreeSet<String>) {
    let mut names: BTreeSet<&str> = changed.iter().map(String::as_str).collect();
    names.extend(st.resend.iter().map(String::as_str));
    if is_eds {
        names.extend(eds_resend.iter().map(String::as_str));
    }
    let mut send = Vec::new();
    let mut removed = BTreeSet::new();
    for n in names {
        let resend = st.resend.contains(n);
        match all.get(n) {
            Some(r) => {
                if st.sub.covers(n)
                    && (st.known.get(n) != Some(&r.version)
                        || resend
                        || (is_eds && eds_resend.contains(n)))
                {
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

/// The clusters an answered response stops holding routes for: every CLA it carried
/// (ACKed or NACKed), and on a CDS NACK its clusters (they will not warm).
fn warming_answered(key: &TypeKey, sent: Option<&ResponseStatus>, nack: bool) -> Vec<String> {
    let releases = key.is(ResourceType::Endpoint) || (key.is(ResourceType::Cluster) && nack);
    match sent {
        Some(s) if releases => s.resources.keys().map(|n| n.to_string()).collect(),
        _ => Vec::new(),
    }
}

/// Forgets warming clusters the snapshot no longer has (nothing to wait for).
fn retain_warming(warming: &mut BTreeSet<String>, snap: &Snapshot) {
    if warming.is_empty() {
        return;
    }
    let (clusters, endpoints) = (
        snap.resources(ResourceType::Cluster),
        snap.resources(ResourceType::Endpoint),
    );
    warming.retain(|n| clusters.contains_key(n.as_str()) && endpoints.contains_key(n.as_str()));
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

/// Adds what an ACKed response carried to what the client has ACKed. A first sync takes
/// the map itself: no second copy of a type's whole view is built.
fn add_acked(acked: &mut Versions, sent: Versions) {
    if acked.is_empty() {
        *acked = sent;
    } else {
        acked.extend(sent);
    }
}

fn view_map(resources: &[&Arc<Resource>]) -> Versions {
    resources
        .iter()
        .map(|r| (r.name.clone(), r.version))
        .collect()
}

fn next_nonce(counter: &mut u64) -> String {
    *counter += 1;
    counter.to_string()
}

fn push_event(events: &mut VecDeque<ConnectionEvent>, dropped: &mut u64, ev: ConnectionEvent) {
    if events.len() >= MAX_EVENTS {
        events.pop_front();
        *dropped += 1;
    }
    events.push_back(ev);
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::endpoint::v3::{
        ClusterLoadAssignment, LocalityLbEndpoints,
    };
    use envoy_types::pb::envoy::config::listener::v3::Listener;
    use envoy_types::pb::envoy::config::route::v3::{
        RouteConfiguration, ScopedRouteConfiguration, VirtualHost,
    };
    use envoy_types::pb::envoy::service::discovery::v3::{
        DeltaDiscoveryResponse, DiscoveryResponse,
    };
    use envoy_types::pb::google::protobuf::Any;
    use prost::Message;
    use std::collections::HashMap;

    /// The state machine's calls with prost responses (what the client decodes).
    trait Prost {
        fn sotw(
            &mut self,
            r: DiscoveryRequest,
            s: &Snapshot,
        ) -> Result<Vec<DiscoveryResponse>, ProtocolError>;
        fn delta(
            &mut self,
            r: DeltaDiscoveryRequest,
            s: &Snapshot,
        ) -> Result<Vec<DeltaDiscoveryResponse>, ProtocolError>;
        fn sotw_changed(&mut self, s: &Snapshot) -> Vec<DiscoveryResponse>;
        fn delta_changed(&mut self, s: &Snapshot) -> Vec<DeltaDiscoveryResponse>;
    }

    impl Prost for Connection {
        fn sotw(
            &mut self,
            r: DiscoveryRequest,
            s: &Snapshot,
        ) -> Result<Vec<DiscoveryResponse>, ProtocolError> {
            let out = self.handle_sotw_request(r, s)?;
            Ok(out.iter().map(SotwResponse::to_prost).collect())
        }
        fn delta(
            &mut self,
            r: DeltaDiscoveryRequest,
            s: &Snapshot,
        ) -> Result<Vec<DeltaDiscoveryResponse>, ProtocolError> {
            let out = self.handle_delta_request(r, s)?;
            Ok(out.iter().map(DeltaResponse::to_prost).collect())
        }
        fn sotw_changed(&mut self, s: &Snapshot) -> Vec<DiscoveryResponse> {
            let out = self.sotw_snapshot_changed(s);
            out.iter().map(SotwResponse::to_prost).collect()
        }
        fn delta_changed(&mut self, s: &Snapshot) -> Vec<DeltaDiscoveryResponse> {
            let out = self.delta_snapshot_changed(s);
            out.iter().map(DeltaResponse::to_prost).collect()
        }
    }

    use ResourceType::{Cluster as Cds, Endpoint as Eds, Listener as Lds, Route as Rds};

    const SECRET_URL: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";
    const RUNTIME_URL: &str = "type.googleapis.com/envoy.service.runtime.v3.Runtime";

    // `tag` varies the content (and so the version) without changing the name.
    fn cluster(name: &str, tag: &str) -> Arc<Resource> {
        let c = Cluster {
            name: name.into(),
            alt_stat_name: tag.into(),
            ..Default::default()
        };
        Resource::new(name, &c)
    }

    fn cla(name: &str, priority: u32) -> Arc<Resource> {
        let c = ClusterLoadAssignment {
            cluster_name: name.into(),
            endpoints: vec![LocalityLbEndpoints {
                priority,
                ..Default::default()
            }],
            ..Default::default()
        };
        Resource::new(name, &c)
    }

    fn listener(name: &str, tag: &str) -> Arc<Resource> {
        let l = Listener {
            name: name.into(),
            stat_prefix: tag.into(),
            ..Default::default()
        };
        Resource::new(name, &l)
    }

    fn route(name: &str, tag: &str) -> Arc<Resource> {
        let r = RouteConfiguration {
            name: name.into(),
            virtual_hosts: vec![VirtualHost {
                name: tag.into(),
                domains: vec!["*".into()],
                ..Default::default()
            }],
            ..Default::default()
        };
        Resource::new(name, &r)
    }

    fn map(rs: &[Arc<Resource>]) -> ResourceMap {
        rs.iter().map(|r| (r.name.clone(), r.clone())).collect()
    }

    fn snap(
        clusters: &[Arc<Resource>],
        endpoints: &[Arc<Resource>],
        listeners: &[Arc<Resource>],
        routes: &[Arc<Resource>],
    ) -> Snapshot {
        Snapshot::new(map(clusters), map(endpoints), map(listeners), map(routes))
    }

    /// Clusters a, b with CLAs, listener http, routes r1, r2.
    fn base() -> Snapshot {
        snap(
            &[cluster("a", "1"), cluster("b", "1")],
            &[cla("a", 1), cla("b", 1)],
            &[listener("http", "1")],
            &[route("r1", "1"), route("r2", "1")],
        )
    }

    fn node(id: &str) -> Node {
        Node {
            id: id.into(),
            cluster: "gw".into(),
            ..Default::default()
        }
    }

    fn req(ty: ResourceType, names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: ty.type_url().into(),
            resource_names: names.iter().map(|s| s.to_string()).collect(),
            version_info: version.into(),
            response_nonce: nonce.into(),
            ..Default::default()
        }
    }

    fn ack(resp: &DiscoveryResponse, names: &[&str]) -> DiscoveryRequest {
        DiscoveryRequest {
            type_url: resp.type_url.clone(),
            resource_names: names.iter().map(|s| s.to_string()).collect(),
            version_info: resp.version_info.clone(),
            response_nonce: resp.nonce.clone(),
            ..Default::default()
        }
    }

    fn status(message: &str) -> Status {
        Status {
            code: 3,
            message: message.into(),
            details: vec![],
        }
    }

    fn nack(resp: &DiscoveryResponse, names: &[&str], accepted: &str) -> DiscoveryRequest {
        DiscoveryRequest {
            version_info: accepted.into(),
            error_detail: Some(status("bad cluster")),
            ..ack(resp, names)
        }
    }

    fn any_name(a: &Any) -> String {
        let b = a.value.as_slice();
        match ResourceType::from_type_url(&a.type_url) {
            Some(Cds) => Cluster::decode(b).unwrap().name,
            Some(Eds) => ClusterLoadAssignment::decode(b).unwrap().cluster_name,
            Some(Lds) => Listener::decode(b).unwrap().name,
            Some(Rds) => RouteConfiguration::decode(b).unwrap().name,
            Some(ResourceType::ScopedRoute) | None => panic!("unexpected type {}", a.type_url),
        }
    }

    fn names(resp: &DiscoveryResponse) -> Vec<String> {
        resp.resources.iter().map(any_name).collect()
    }

    fn types(resps: &[DiscoveryResponse]) -> Vec<Option<ResourceType>> {
        resps
            .iter()
            .map(|r| ResourceType::from_type_url(&r.type_url))
            .collect()
    }

    fn one(mut resps: Vec<DiscoveryResponse>) -> DiscoveryResponse {
        assert_eq!(resps.len(), 1, "expected one response: {resps:?}");
        resps.pop().unwrap()
    }

    fn dreq(ty: ResourceType, sub: &[&str], unsub: &[&str], nonce: &str) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: ty.type_url().into(),
            resource_names_subscribe: sub.iter().map(|s| s.to_string()).collect(),
            resource_names_unsubscribe: unsub.iter().map(|s| s.to_string()).collect(),
            response_nonce: nonce.into(),
            ..Default::default()
        }
    }

    fn dack(resp: &DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: resp.type_url.clone(),
            response_nonce: resp.nonce.clone(),
            ..Default::default()
        }
    }

    fn dnames(resp: &DeltaDiscoveryResponse) -> Vec<String> {
        resp.resources
            .iter()
            .map(|r| {
                let n = any_name(r.resource.as_ref().unwrap());
                assert_eq!(n, r.name);
                n
            })
            .collect()
    }

    fn done(mut resps: Vec<DeltaDiscoveryResponse>) -> DeltaDiscoveryResponse {
        assert_eq!(resps.len(), 1, "expected one response: {resps:?}");
        resps.pop().unwrap()
    }

    /// What a client that has `s`'s resources of `ty` says it has (names as it sees them).
    fn versions(s: &Snapshot, ty: ResourceType) -> HashMap<String, String> {
        s.resources(ty)
            .values()
            .map(|r| (names::wire(&r.name).into_owned(), r.version.to_string()))
            .collect()
    }

    fn type_status(c: &Connection, ty: ResourceType) -> TypeStatus {
        c.status()
            .types
            .into_iter()
            .find(|t| t.type_url == ty.type_url())
            .unwrap()
    }

    /// A SotW connection that has received and ACKed CDS, EDS [a, b], LDS, RDS [r1].
    fn sotw_synced(s: &Snapshot) -> Connection {
        let mut c = Connection::new(Protocol::Sotw);
        for (ty, n) in [
            (Cds, vec![]),
            (Eds, vec!["a", "b"]),
            (Lds, vec![]),
            (Rds, vec!["r1"]),
        ] {
            let r = one(c.sotw(req(ty, &n, "", ""), s).unwrap());
            assert!(c.sotw(ack(&r, &n), s).unwrap().is_empty());
        }
        c
    }

    #[test]
    fn sotw_first_request_cds_wildcard_gets_all() {
        let s = base();
        let mut c = Connection::new(Protocol::Sotw);
        let mut r = req(Cds, &[], "", "");
        r.node = Some(node("envoy-1"));
        let resp = one(c.sotw(r, &s).unwrap());
        assert_eq!(names(&resp), ["a", "b"]);
        assert_eq!(resp.type_url, Cds.type_url());
        assert_eq!(
            resp.version_info,
            aggregate_version(s.resources(Cds).values())
        );
        assert_eq!(resp.nonce, "1");
        assert_eq!(c.node().unwrap().id, "envoy-1");
        // Explicit "*" is wildcard too.
        let mut c = Connection::new(Protocol::Sotw);
        let resp = one(c.sotw(req(Lds, &["*"], "", ""), &s).unwrap());
        assert_eq!(names(&resp), ["http"]);
    }

    #[test]
    fn sotw_ack_gives_no_reply() {
        let s = base();
        let mut c = Connection::new(Protocol::Sotw);
        let resp = one(c.sotw(req(Cds, &[], "", ""), &s).unwrap());
        assert!(c.sotw(ack(&resp, &[]), &s).unwrap().is_empty());
        // Envoy repeats an identical ACK after some updates: still nothing, counted once.
        assert!(c.sotw(ack(&resp, &[]), &s).unwrap().is_empty());
        assert!(c.sotw_changed(&s).is_empty());
        let st = type_status(&c, Cds);
        assert_eq!(
            st.acked_version.as_deref(),
            Some(resp.version_info.as_str())
        );
        assert_eq!(st.acks, 1);
        assert!(st.pending.is_none());
        let events = c.take_events();
        assert!(events.contains(&ConnectionEvent::Ack {
            type_url: Cds.type_url().into(),
            nonce: resp.nonce.clone(),
            version: resp.version_info.clone(),
        }));
        assert!(c.take_events().is_empty());
    }

    #[test]
    fn sotw_nack_records_error_and_does_not_resend() {
        let s1 = base();
        let mut c = sotw_synced(&s1);
        let v1 = type_status(&c, Cds).acked_version.unwrap();
        let mut s2 = s1.clone();
        s2.resources_mut(Cds)
            .insert("a".into(), cluster("a", "bad"));
        let pushed = c.sotw_changed(&s2);
        assert_eq!(types(&pushed), [Some(Cds), Some(Eds)]);
        let cds = &pushed[0];
        c.take_events();

        assert!(c.sotw(nack(cds, &[], &v1), &s2).unwrap().is_empty());
        // Neither the same snapshot again nor a request re-sends the rejected content.
        assert!(c.sotw_changed(&s2).is_empty());
        assert!(c
            .sotw(req(Cds, &[], &v1, &cds.nonce), &s2)
            .unwrap()
            .is_empty());

        let st = type_status(&c, Cds);
        assert_eq!(st.nacks, 1);
        assert_eq!(st.acked_version.as_deref(), Some(v1.as_str()));
        let n = st.last_nack.unwrap();
        assert_eq!(n.nonce, cds.nonce);
        assert_eq!(n.message, "bad cluster");
        assert_eq!(n.client_version, v1);
        assert_eq!(n.attempted.unwrap().version, cds.version_info);
        assert!(st.pending.is_none());
        assert!(matches!(
            &c.take_events()[..],
            [ConnectionEvent::Nack { message, version, .. }]
                if message == "bad cluster" && *version == cds.version_info
        ));
    }

    #[test]
    fn sotw_change_after_nack_is_sent() {
        let s1 = base();
        let mut c = sotw_synced(&s1);
        let mut s2 = s1.clone();
        s2.resources_mut(Cds)
            .insert("a".into(), cluster("a", "bad"));
        let cds = c.sotw_changed(&s2).remove(0);
        c.sotw(nack(&cds, &[], "x"), &s2).unwrap();

        let mut s3 = s1.clone();
        s3.resources_mut(Cds)
            .insert("a".into(), cluster("a", "fixed"));
        let pushed = c.sotw_changed(&s3);
        assert_eq!(types(&pushed), [Some(Cds), Some(Eds)]);
        assert_eq!(names(&pushed[0]), ["a", "b"]);
        assert_eq!(
            pushed[0].version_info,
            aggregate_version(s3.resources(Cds).values())
        );
        assert!(c.sotw(ack(&pushed[0], &[]), &s3).unwrap().is_empty());
        let st = type_status(&c, Cds);
        assert_eq!(st.acked_version, Some(pushed[0].version_info.clone()));
        assert_eq!(st.nacks, 1);
        assert_eq!(st.acks, 2);
    }

    #[test]
    fn sotw_changed_resource_names_get_new_view() {
        let s = base();
        let mut c = Connection::new(Protocol::Sotw);
        let r1 = one(c.sotw(req(Eds, &["a"], "", ""), &s).unwrap());
        assert_eq!(names(&r1), ["a"]);
        // The ACK carries a grown name set: answer with the new view.
        let r2 = one(c.sotw(ack(&r1, &["a", "b"]), &s).unwrap());
        assert_eq!(names(&r2), ["a", "b"]);
        assert_ne!(r2.version_info, r1.version_info);
        // Shrinking is answered too, even though it equals what the client had before.
        let r3 = one(c.sotw(ack(&r2, &["a"]), &s).unwrap());
        assert_eq!(names(&r3), ["a"]);
        assert_eq!(r3.version_info, r1.version_info);
        // Names that don't exist yet are remembered and sent when they appear.
        let r4 = one(c.sotw(ack(&r3, &["a", "c"]), &s).unwrap());
        assert_eq!(names(&r4), ["a"]);
        let mut s2 = s.clone();
        s2.resources_mut(Eds).insert("c".into(), cla("c", 1));
        // A content change sends only what changed (EDS/RDS resources are independent).
        let r5 = one(c.sotw_changed(&s2));
        assert_eq!(names(&r5), ["c"]);
        // RDS by name: only the requested route.
        let r = one(c.sotw(req(Rds, &["r2"], "", ""), &s2).unwrap());
        assert_eq!(names(&r), ["r2"]);
    }

    #[test]
    fn sotw_stale_nonce_ignored() {
        let s1 = base();
        let mut c = Connection::new(Protocol::Sotw);
        let r1 = one(c.sotw(req(Eds, &["a"], "", ""), &s1).unwrap());
        let mut s2 = s1.clone();
        s2.resources_mut(Eds).insert("a".into(), cla("a", 2));
        let r2 = one(c.sotw_changed(&s2));
        // A request answering r1 (even with new names or an error) crossed r2: ignored.
        assert!(c.sotw(ack(&r1, &["a", "b"]), &s2).unwrap().is_empty());
        assert!(c.sotw(nack(&r1, &["a"], ""), &s2).unwrap().is_empty());
        let st = type_status(&c, Eds);
        assert_eq!((st.acks, st.nacks), (0, 0));
        assert_eq!(st.names, ["a"]);
        assert_eq!(st.pending.unwrap().nonce, r2.nonce);
        assert!(c
            .take_events()
            .iter()
            .any(|e| matches!(e, ConnectionEvent::StaleNonce { nonce, .. } if *nonce == r1.nonce)));
        // The answer to r2 carries the new names.
        let r3 = one(c.sotw(ack(&r2, &["a", "b"]), &s2).unwrap());
        assert_eq!(names(&r3), ["a", "b"]);
    }

    #[test]
    fn sotw_reconnect_with_matching_version_gets_nothing() {
        let s = base();
        let old = sotw_synced(&s);
        let cds_v = type_status(&old, Cds).acked_version.unwrap();
        let eds_v = type_status(&old, Eds).acked_version.unwrap();

        let mut c = Connection::new(Protocol::Sotw);
        assert!(c.sotw(req(Cds, &[], &cds_v, ""), &s).unwrap().is_empty());
        assert!(c
            .sotw(req(Eds, &["a", "b"], &eds_v, ""), &s)
            .unwrap()
            .is_empty());
        assert!(c.sotw_changed(&s).is_empty());
        assert_eq!(type_status(&c, Cds).acked_version, Some(cds_v.clone()));
        assert!(c.is_subscribed(Cds));

        // A stale version on reconnect gets the current content.
        let mut c2 = Connection::new(Protocol::Sotw);
        let r = one(c2.sotw(req(Cds, &[], "old", ""), &s).unwrap());
        assert_eq!(r.version_info, cds_v);

        // The subscription stays: later changes are pushed.
        let mut s2 = s.clone();
        s2.resources_mut(Eds).insert("b".into(), cla("b", 7));
        let r = one(c.sotw_changed(&s2));
        assert_eq!(names(&r), ["b"], "only the changed CLA");
    }

    #[test]
    fn sotw_cds_change_forces_cla_resend() {
        let s1 = base();
        let mut c = sotw_synced(&s1);
        let mut s2 = s1.clone();
        s2.resources_mut(Cds).insert("a".into(), cluster("a", "2"));
        let pushed = c.sotw_changed(&s2);
        assert_eq!(types(&pushed), [Some(Cds), Some(Eds)]);
        // Only the changed cluster's CLA, at the unchanged EDS version.
        assert_eq!(names(&pushed[1]), ["a"]);
        assert_eq!(
            pushed[1].version_info,
            type_status(&c, Eds).acked_version.unwrap()
        );
        // Envoy's re-request with the old EDS nonce, then the ACK: nothing more.
        assert!(c.sotw(ack(&pushed[0], &[]), &s2).unwrap().is_empty());
        assert!(c
            .sotw(ack(&pushed[1], &["a", "b"]), &s2)
            .unwrap()
            .is_empty());
        assert!(c.sotw_changed(&s2).is_empty());

        // A new cluster: its CLA comes with the EDS request naming it.
        let mut s3 = s2.clone();
        s3.resources_mut(Cds).insert("c".into(), cluster("c", "1"));
        s3.resources_mut(Eds).insert("c".into(), cla("c", 1));
        let pushed = c.sotw_changed(&s3);
        assert_eq!(types(&pushed), [Some(Cds)]);
        let eds_v = type_status(&c, Eds).acked_version.unwrap();
        let r = one(c
            .sotw(
                req(Eds, &["a", "b", "c"], &eds_v, &pushed_nonce(&c, Eds)),
                &s3,
            )
            .unwrap());
        assert_eq!(names(&r), ["a", "b", "c"]);
        assert!(c.sotw_changed(&s3).is_empty());
    }

    fn pushed_nonce(c: &Connection, ty: ResourceType) -> String {
        c.sotw[&TypeKey::Served(ty)]
            .latest
            .as_ref()
            .unwrap()
            .nonce
            .clone()
    }

    #[test]
    fn sotw_reconnect_cds_change_forces_cla_even_with_matching_eds_version() {
        let s1 = base();
        let old = sotw_synced(&s1);
        let eds_v = type_status(&old, Eds).acked_version.unwrap();
        let cds_v = type_status(&old, Cds).acked_version.unwrap();
        let mut s2 = s1.clone();
        s2.resources_mut(Cds).insert("b".into(), cluster("b", "2"));

        let mut c = Connection::new(Protocol::Sotw);
        let r = one(c.sotw(req(Cds, &[], &cds_v, ""), &s2).unwrap());
        assert_eq!(names(&r), ["a", "b"]);
        // Every cluster is new to this stream, so each subscribed CLA is sent.
        let r = one(c.sotw(req(Eds, &["a", "b"], &eds_v, ""), &s2).unwrap());
        assert_eq!(names(&r), ["a", "b"]);
        assert_eq!(r.version_info, eds_v);
    }

    #[test]
    fn sotw_push_order_cds_eds_lds_rds() {
        let s1 = base();
        let mut c = sotw_synced(&s1);
        let s2 = snap(
            &[cluster("a", "2"), cluster("b", "1")],
            &[cla("a", 2), cla("b", 1)],
            &[listener("http", "2")],
            &[route("r1", "2"), route("r2", "1")],
        );
        let pushed = c.sotw_changed(&s2);
        assert_eq!(types(&pushed), [Some(Cds), Some(Eds), Some(Lds), Some(Rds)]);
        let nonces: Vec<u64> = pushed.iter().map(|r| r.nonce.parse().unwrap()).collect();
        assert!(nonces.windows(2).all(|w| w[0] < w[1]), "{nonces:?}");

        // Only changed types are pushed.
        let mut s3 = s2.clone();
        s3.resources_mut(Rds).insert("r1".into(), route("r1", "3"));
        s3.resources_mut(Lds)
            .insert("http".into(), listener("http", "3"));
        assert_eq!(types(&c.sotw_changed(&s3)), [Some(Lds), Some(Rds)]);
        // A route the client didn't ask for changing pushes nothing.
        let mut s4 = s3.clone();
        s4.resources_mut(Rds).insert("r2".into(), route("r2", "9"));
        assert!(c.sotw_changed(&s4).is_empty());
    }

    #[test]
    fn sotw_request_against_newer_snapshot_keeps_push_order() {
        let s1 = base();
        let mut c = sotw_synced(&s1);
        let mut s2 = s1.clone();
        s2.resources_mut(Cds).insert("c".into(), cluster("c", "1"));
        s2.resources_mut(Rds).insert("r3".into(), route("r3", "1"));
        // The RDS request is processed before the push of s2: CDS must still go first.
        let r1 = pushed_nonce(&c, Rds);
        let out = c.sotw(req(Rds, &["r1", "r3"], "v", &r1), &s2).unwrap();
        assert_eq!(types(&out), [Some(Cds), Some(Rds)]);
        assert_eq!(names(&out[1]), ["r1", "r3"]);
        assert!(c.sotw_changed(&s2).is_empty());
    }

    #[test]
    fn sotw_removed_cluster_disappears_from_cds() {
        let s1 = base();
        let mut c = sotw_synced(&s1);
        let mut s2 = s1.clone();
        s2.resources_mut(Cds).remove("b");
        s2.resources_mut(Eds).remove("b");
        // CDS is a complete set; the EDS view only lost "b", so nothing to send there.
        let pushed = c.sotw_changed(&s2);
        assert_eq!(types(&pushed), [Some(Cds)]);
        assert_eq!(names(&pushed[0]), ["a"]);
        // Removing every cluster is an empty, complete set.
        let s3 = snap(&[], &[], &[listener("http", "1")], &[route("r1", "1")]);
        let pushed = c.sotw_changed(&s3);
        assert_eq!(types(&pushed), [Some(Cds)]);
        assert!(pushed[0].resources.is_empty());
    }

    #[test]
    fn sotw_legacy_wildcard_and_explicit_empty_list() {
        let s = base();
        let mut c = Connection::new(Protocol::Sotw);
        let r = one(c.sotw(req(Cds, &[], "", ""), &s).unwrap());
        // Empty again: still legacy wildcard, nothing changed.
        assert!(c.sotw(ack(&r, &[]), &s).unwrap().is_empty());
        let r = one(c.sotw(ack(&r, &["a"]), &s).unwrap());
        assert_eq!(names(&r), ["a"]);
        // After explicit names an empty list unsubscribes everything.
        let r = one(c.sotw(ack(&r, &[]), &s).unwrap());
        assert!(r.resources.is_empty());
        assert!(!type_status(&c, Cds).wildcard);
        // EDS never uses legacy wildcard.
        let r = one(c.sotw(req(Eds, &[], "", ""), &s).unwrap());
        assert!(r.resources.is_empty());
    }

    #[test]
    fn sotw_nonces_unique_across_types() {
        let s = base();
        let mut c = Connection::new(Protocol::Sotw);
        let mut seen = BTreeSet::new();
        for (ty, n) in [(Cds, vec![]), (Eds, vec!["a", "b"])] {
            let r = one(c.sotw(req(ty, &n, "", ""), &s).unwrap());
            assert!(seen.insert(r.nonce.clone()));
            if ty == Eds {
                // The new clusters' CLAs are ACKed: routes may follow.
                assert!(c.sotw(ack(&r, &n), &s).unwrap().is_empty());
            }
        }
        for (ty, n) in [(Lds, vec![]), (Rds, vec!["r1"])] {
            let r = one(c.sotw(req(ty, &n, "", ""), &s).unwrap());
            assert!(seen.insert(r.nonce.clone()));
        }
        // An EDS request echoing the CDS nonce is stale for EDS.
        assert!(c
            .sotw(req(Eds, &["a", "b"], "", "1"), &s)
            .unwrap()
            .is_empty());
        assert_eq!(c.status().nonces_issued, 4);
    }

    /// Clusters (with their CLAs) `c0..c11` and routes `r0..r11` that come, go and change
    /// at random (deterministic from a seed).
    struct RandomWorld {
        seed: u64,
        clusters: BTreeMap<String, u32>,
        routes: BTreeMap<String, u32>,
    }

    impl RandomWorld {
        fn new(seed: u64) -> RandomWorld {
            RandomWorld {
                seed,
                clusters: (0..6).map(|i| (format!("c{i}"), 1)).collect(),
                routes: (0..6).map(|i| (format!("r{i}"), 1)).collect(),
            }
        }

        fn rand(&mut self, n: u64) -> u64 {
            self.seed = self
                .seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.seed >> 33) % n
        }

        /// One to three names added, changed or removed.
        fn change(&mut self) {
            for _ in 0..1 + self.rand(3) {
                let clusters = self.rand(2) == 0;
                let name = format!("{}{}", if clusters { "c" } else { "r" }, self.rand(12));
                let remove = self.rand(3) == 0;
                let map = if clusters {
                    &mut self.clusters
                } else {
                    &mut self.routes
                };
                if remove {
                    map.remove(&name);
                } else {
                    *map.entry(name).or_insert(0) += 1;
                }
            }
        }

        fn snapshot(&self) -> Snapshot {
            let cl = &self.clusters;
            let clusters: Vec<_> = cl.iter().map(|(n, v)| cluster(n, &v.to_string())).collect();
            let clas: Vec<_> = cl.iter().map(|(n, v)| cla(n, *v)).collect();
            let routes: Vec<_> = (self.routes.iter())
                .map(|(n, v)| route(n, &v.to_string()))
                .collect();
            snap(&clusters, &clas, &[listener("http", "1")], &routes)
        }
    }

    #[test]
    fn delta_changed_names_path_sends_what_a_full_look_sends() {
        // Two delta clients through the same sequence of snapshots: one gets snapshots that
        // carry their changed names (the incremental path), the other plain ones (a full
        // look each time). They must be sent the same resources and removals.
        let mut w = RandomWorld::new(7);
        let first = w.snapshot();
        let mut published = first.clone().published_after(None);
        let (mut inc, mut full) = (
            Connection::new(Protocol::Delta),
            Connection::new(Protocol::Delta),
        );
        let eds_names: Vec<String> = (0..12).map(|i| format!("c{i}")).collect();
        let eds_refs: Vec<&str> = eds_names.iter().map(String::as_str).collect();
        let rds_names: Vec<String> = (0..12).map(|i| format!("r{i}")).collect();
        let rds_refs: Vec<&str> = rds_names.iter().map(String::as_str).collect();
        let answer = |c: &mut Connection, out: Vec<DeltaDiscoveryResponse>, s: &Snapshot| {
            let mut seen = Vec::new();
            let mut queue: VecDeque<_> = out.into();
            while let Some(r) = queue.pop_front() {
                let mut names = dnames(&r);
                names.sort();
                let mut removed = r.removed_resources.clone();
                removed.sort();
                seen.push((r.type_url.clone(), names, removed));
                queue.extend(c.delta(dack(&r), s).unwrap());
            }
            seen
        };
        for (c, s) in [(&mut inc, &published), (&mut full, &first)] {
            for (ty, names) in [
                (Cds, vec!["*"]),
                (Eds, eds_refs.clone()),
                (Lds, vec!["*"]),
                (Rds, rds_refs.clone()),
            ] {
                let out = c.delta(dreq(ty, &names, &[], ""), s).unwrap();
                answer(c, out, s);
            }
        }
        for step in 0..60 {
            w.change();
            let plain = w.snapshot();
            let next = plain.clone().published_after(Some(&published));
            assert!(next.changes_since(published.id()).is_some());
            let a = inc.delta_changed(&next);
            let b = full.delta_changed(&plain);
            let (a, b) = (answer(&mut inc, a, &next), answer(&mut full, b, &plain));
            assert_eq!(a, b, "step {step}");
            assert!(inc.in_sync(&next), "step {step}");
            assert!(inc.in_sync_by_content(&next), "step {step}");
            assert!(full.in_sync_by_content(&plain), "step {step}");
            published = next;
        }
    }

    #[test]
    fn sotw_changed_names_path_sends_what_a_full_look_sends() {
        // As the delta test above, for SotW: a client fed snapshots that carry their changed
        // names skips the types none of whose subscribed names changed; it must be sent
        // exactly what a client that looks at everything each time is sent.
        let mut w = RandomWorld::new(11);
        let first = w.snapshot();
        let mut published = first.clone().published_after(None);
        let (mut inc, mut full) = (
            Connection::new(Protocol::Sotw),
            Connection::new(Protocol::Sotw),
        );
        // The client asks for a subset of the names (some never exist), ACKing everything.
        let eds = ["c0", "c1", "c2", "c3", "c7", "c9"];
        let rds = ["r0", "r2", "r4", "r5", "r8", "r11"];
        let subscribed = |url: &str| -> Vec<&str> {
            match ResourceType::from_type_url(url) {
                Some(Eds) => eds.to_vec(),
                Some(Rds) => rds.to_vec(),
                _ => Vec::new(),
            }
        };
        let answer = |c: &mut Connection, out: Vec<DiscoveryResponse>, s: &Snapshot| {
            let mut seen = Vec::new();
            let mut queue: VecDeque<_> = out.into();
            while let Some(r) = queue.pop_front() {
                let mut n = names(&r);
                n.sort();
                seen.push((r.type_url.clone(), r.version_info.clone(), n));
                queue.extend(c.sotw(ack(&r, &subscribed(&r.type_url)), s).unwrap());
            }
            seen
        };
        for (c, s) in [(&mut inc, &published), (&mut full, &first)] {
            for ty in [Cds, Eds, Lds, Rds] {
                let out = c
                    .sotw(req(ty, &subscribed(ty.type_url()), "", ""), s)
                    .unwrap();
                answer(c, out, s);
            }
        }
        for step in 0..80 {
            w.change();
            let plain = w.snapshot();
            let next = plain.clone().published_after(Some(&published));
            let a = inc.sotw_changed(&next);
            let b = full.sotw_changed(&plain);
            let (a, b) = (answer(&mut inc, a, &next), answer(&mut full, b, &plain));
            assert_eq!(a, b, "step {step}");
            assert_eq!(inc.in_sync(&next), full.in_sync(&plain), "step {step}");
            published = next;
        }
    }

    #[test]
    fn sotw_routes_wait_until_new_clusters_have_their_endpoints() {
        // Routes are not warmed by Envoy: a route to a cluster still waiting for its CLA
        // answers 503 (no_cluster). So a route change that needs a new cluster waits for
        // that cluster's CLA to be ACKed.
        let s1 = base();
        let mut c = sotw_synced(&s1);
        let s2 = snap(
            &[cluster("a", "1"), cluster("b", "1"), cluster("c", "1")],
            &[cla("a", 1), cla("b", 1), cla("c", 1)],
            &[listener("http", "1")],
            &[route("r1", "2"), route("r2", "1")],
        );
        let out = c.sotw_changed(&s2);
        assert_eq!(types(&out), vec![Some(Cds)], "routes held: {out:?}");
        let cds = &out[0];
        assert!(c.sotw(ack(cds, &[]), &s2).unwrap().is_empty());
        // Envoy asks for the new cluster's CLA; the routes still wait.
        let eds = one(c.sotw(req(Eds, &["a", "b", "c"], "", ""), &s2).unwrap());
        assert_eq!(names(&eds), vec!["a", "b", "c"]);
        // Its ACK releases the route change.
        let rds = one(c.sotw(ack(&eds, &["a", "b", "c"]), &s2).unwrap());
        assert_eq!(ResourceType::from_type_url(&rds.type_url), Some(Rds));
        assert_eq!(names(&rds), vec!["r1"]);
    }

    #[test]
    fn delta_routes_wait_for_new_cluster_endpoints_and_a_nack_releases_them() {
        let s1 = base();
        let mut c = Connection::new(Protocol::Delta);
        let cds = done(c.delta(dreq(Cds, &["*"], &[], ""), &s1).unwrap());
        // LDS asked before the CLAs arrive: held.
        assert!(c.delta(dack(&cds), &s1).unwrap().is_empty());
        assert!(c.delta(dreq(Lds, &["*"], &[], ""), &s1).unwrap().is_empty());
        let eds = done(c.delta(dreq(Eds, &["a", "b"], &[], ""), &s1).unwrap());
        // The CLAs' ACK releases the listener.
        let lds = done(c.delta(dack(&eds), &s1).unwrap());
        assert_eq!(ResourceType::from_type_url(&lds.type_url), Some(Lds));
        // A new cluster whose CLA is rejected does not hold routes forever.
        let s2 = snap(
            &[cluster("a", "1"), cluster("b", "1"), cluster("c", "1")],
            &[cla("a", 1), cla("b", 1), cla("c", 1)],
            &[listener("http", "2")],
            &[route("r1", "1"), route("r2", "1")],
        );
        assert!(c.delta(dack(&lds), &s1).unwrap().is_empty());
        let out = c.delta_changed(&s2);
        assert_eq!(out.len(), 1, "only CDS: {out:?}");
        c.delta(dack(&out[0]), &s2).unwrap();
        let eds = done(c.delta(dreq(Eds, &["c"], &[], ""), &s2).unwrap());
        let mut nack = dack(&eds);
        nack.error_detail = Some(status("bad endpoints"));
        let lds = done(c.delta(nack, &s2).unwrap());
        assert_eq!(ResourceType::from_type_url(&lds.type_url), Some(Lds));
    }

    #[test]
    fn node_cached_from_first_request_carrying_one() {
        let s = base();
        let mut c = Connection::new(Protocol::Sotw);
        assert!(c.node().is_none());
        c.sotw(req(Cds, &[], "", ""), &s).unwrap();
        assert!(c.node().is_none());
        let mut r = req(Lds, &[], "", "");
        r.node = Some(node("first"));
        c.sotw(r, &s).unwrap();
        let mut r = req(Eds, &["a"], "", "");
        r.node = Some(node("second"));
        c.sotw(r, &s).unwrap();
        assert_eq!(c.node().unwrap().id, "first");
        assert_eq!(c.status().node_id.as_deref(), Some("first"));
        assert_eq!(c.status().node_cluster.as_deref(), Some("gw"));
    }

    #[test]
    fn two_connections_with_different_rds_subscriptions_get_different_pushes() {
        let s1 = base();
        let mut c1 = Connection::new(Protocol::Sotw);
        let mut c2 = Connection::new(Protocol::Sotw);
        let a1 = one(c1.sotw(req(Rds, &["r1"], "", ""), &s1).unwrap());
        let a2 = one(c2.sotw(req(Rds, &["r2"], "", ""), &s1).unwrap());
        assert_ne!(a1.version_info, a2.version_info);
        c1.sotw(ack(&a1, &["r1"]), &s1).unwrap();
        c2.sotw(ack(&a2, &["r2"]), &s1).unwrap();

        let mut s2 = s1.clone();
        s2.resources_mut(Rds).insert("r2".into(), route("r2", "2"));
        assert!(c1.sotw_changed(&s2).is_empty());
        let p = one(c2.sotw_changed(&s2));
        assert_eq!(names(&p), ["r2"]);

        let mut s3 = s2.clone();
        s3.resources_mut(Rds).insert("r1".into(), route("r1", "2"));
        assert_eq!(names(&one(c1.sotw_changed(&s3))), ["r1"]);
        assert!(c2.sotw_changed(&s3).is_empty());
    }

    #[test]
    fn two_delta_connections_with_different_rds_subscriptions_get_different_pushes() {
        let s1 = base();
        let mut c1 = Connection::new(Protocol::Delta);
        let mut c2 = Connection::new(Protocol::Delta);
        c1.delta(dreq(Rds, &["r1"], &[], ""), &s1).unwrap();
        c2.delta(dreq(Rds, &["r2"], &[], ""), &s1).unwrap();
        let mut s2 = s1.clone();
        s2.resources_mut(Rds).insert("r2".into(), route("r2", "2"));
        assert!(c1.delta_changed(&s2).is_empty());
        assert_eq!(dnames(&done(c2.delta_changed(&s2))), ["r2"]);
    }

    #[test]
    fn unknown_type_url_handled() {
        let s = base();
        let mut c = Connection::new(Protocol::Sotw);
        let mut r = req(Cds, &[], "", "");
        r.type_url = SECRET_URL.into();
        r.resource_names = vec!["cert".into()];
        let resp = one(c.sotw(r, &s).unwrap());
        assert!(resp.resources.is_empty());
        assert_eq!(resp.type_url, SECRET_URL);
        assert!(c.sotw(ack(&resp, &["cert"]), &s).unwrap().is_empty());
        assert!(c.sotw_changed(&s).is_empty());
        assert!(c.take_events().contains(&ConnectionEvent::UnservedType {
            type_url: SECRET_URL.into()
        }));
        let st = c
            .status()
            .types
            .into_iter()
            .find(|t| t.type_url == SECRET_URL)
            .unwrap();
        assert!(!st.served);
        assert_eq!(st.type_name, "Secret");

        // Delta: wildcard gets an (empty) answer so Envoy finishes initialising, explicit names
        // are reported absent.
        let mut d = Connection::new(Protocol::Delta);
        let mut r = dreq(Cds, &[], &[], "");
        r.type_url = RUNTIME_URL.into();
        let resp = done(d.delta(r, &s).unwrap());
        assert!(resp.resources.is_empty() && resp.removed_resources.is_empty());
        assert!(d.delta(dack(&resp), &s).unwrap().is_empty());
        let mut r = dreq(Cds, &["cert"], &[], "");
        r.type_url = SECRET_URL.into();
        let resp = done(d.delta(r, &s).unwrap());
        assert_eq!(resp.removed_resources, ["cert"]);

        // Not a type URL at all: the stream is broken.
        for bad in [
            "foo",
            "type.googleapis.com/",
            "type.googleapis.com/a b.c",
            "http://x/y.z",
        ] {
            let mut r = req(Cds, &[], "", "");
            r.type_url = bad.into();
            assert_eq!(
                c.sotw(r, &s),
                Err(ProtocolError::UnknownTypeUrl(bad.into()))
            );
        }
    }

    #[test]
    fn too_many_unserved_types_is_an_error() {
        let s = base();
        let mut c = Connection::new(Protocol::Sotw);
        for i in 0..MAX_UNSERVED_TYPES {
            let mut r = req(Cds, &[], "", "");
            r.type_url = format!("type.googleapis.com/x.T{i}");
            c.sotw(r, &s).unwrap();
        }
        let mut r = req(Cds, &[], "", "");
        r.type_url = "type.googleapis.com/x.Tmore".into();
        assert_eq!(c.sotw(r, &s), Err(ProtocolError::TooManyTypes));
        // Known types still work.
        assert_eq!(c.sotw(req(Cds, &[], "", ""), &s).unwrap().len(), 1);
    }

    #[test]
    fn missing_type_url_error() {
        let s = base();
        let mut c = Connection::new(Protocol::Sotw);
        let mut r = req(Cds, &[], "", "");
        r.type_url.clear();
        assert_eq!(c.sotw(r, &s), Err(ProtocolError::MissingTypeUrl));
        let mut d = Connection::new(Protocol::Delta);
        let mut r = dreq(Cds, &[], &[], "");
        r.type_url.clear();
        assert_eq!(d.delta(r, &s), Err(ProtocolError::MissingTypeUrl));
        assert!(d.status().types.is_empty());
    }

    #[test]
    fn wrong_protocol_is_an_error() {
        let s = base();
        let mut c = Connection::new(Protocol::Sotw);
        assert!(matches!(
            c.delta(dreq(Cds, &[], &[], ""), &s),
            Err(ProtocolError::WrongProtocol { .. })
        ));
        assert!(c.delta_changed(&s).is_empty());
        let mut d = Connection::new(Protocol::Delta);
        assert!(d.sotw(req(Cds, &[], "", ""), &s).is_err());
        assert!(d.sotw_changed(&s).is_empty());
    }

    #[test]
    fn delta_first_wildcard_request_gets_everything() {
        let s = base();
        let mut c = Connection::new(Protocol::Delta);
        let mut r = dreq(Cds, &[], &[], "");
        r.node = Some(node("d"));
        let resp = done(c.delta(r, &s).unwrap());
        assert_eq!(dnames(&resp), ["a", "b"]);
        assert_eq!(
            *resp.resources[0].version,
            *s.get(Cds, "a").unwrap().version
        );
        assert!(resp.removed_resources.is_empty());
        assert!(c.delta(dack(&resp), &s).unwrap().is_empty());
        let st = type_status(&c, Cds);
        assert!(st.wildcard);
        assert_eq!(st.acks, 1);
        assert_eq!(st.acked_resources.unwrap().len(), 2);
        // Wildcard with no resources at all is still answered on the first request.
        let mut c = Connection::new(Protocol::Delta);
        let empty = Snapshot::default();
        let resp = done(c.delta(dreq(Lds, &["*"], &[], ""), &empty).unwrap());
        assert!(resp.resources.is_empty());
    }

    #[test]
    fn delta_large_set_goes_in_parts_each_acked() {
        // Six clusters of ~1 MB: more than one response may carry.
        let big = |name: &str| cluster(name, &"x".repeat(1 << 20));
        let names = ["a", "b", "c", "d", "e", "f"];
        let clusters: Vec<_> = names.iter().map(|n| big(n)).collect();
        let mut s1 = snap(&clusters, &[], &[], &[]);
        s1.resources_mut(Cds).remove("f");
        let s1 = s1.published_after(None);
        let mut c = Connection::new(Protocol::Delta);
        let parts = c.delta(dreq(Cds, &[], &[], ""), &s1).unwrap();
        assert!(parts.len() > 1, "{} parts", parts.len());
        for p in &parts {
            assert_eq!(p.type_url, Cds.type_url());
            let bytes: usize = (p.resources.iter())
                .map(|r| r.resource.as_ref().unwrap().value.len())
                .sum();
            assert!(
                p.resources.len() == 1 || bytes <= MAX_RESPONSE_BYTES,
                "{bytes} B"
            );
        }
        // Every cluster once, in order, each part with its own nonce.
        let sent: Vec<String> = parts.iter().flat_map(dnames).collect();
        assert_eq!(sent, names[..5]);
        let nonces: BTreeSet<&str> = parts.iter().map(|p| p.nonce.as_str()).collect();
        assert_eq!(nonces.len(), parts.len());
        // Not in sync until the last part is ACKed; removals ride in the first part.
        for p in &parts {
            assert!(!c.in_sync(&s1));
            assert!(c.delta(dack(p), &s1).unwrap().is_empty());
        }
        assert!(c.in_sync(&s1));
        assert_eq!(type_status(&c, Cds).acked_resources.unwrap().len(), 5);
        let s2 = snap(&clusters[1..], &[], &[], &[]).published_after(Some(&s1));
        let parts = c.delta_changed(&s2);
        assert_eq!(parts[0].removed_resources, ["a"]);
        assert_eq!(parts.iter().flat_map(dnames).collect::<Vec<_>>(), ["f"]);
        assert!(parts[1..].iter().all(|p| p.removed_resources.is_empty()));
    }

    #[test]
    fn delta_more_parts_than_outstanding_responses_are_all_recognised() {
        let names: Vec<String> = (0..MAX_OUTSTANDING + 4)
            .map(|i| format!("c{i:02}"))
            .collect();
        let clusters: Vec<_> = names.iter().map(|n| cluster(n, "1")).collect();
        let s = snap(&clusters, &[], &[], &[]);
        let mut c = Connection::new(Protocol::Delta);
        c.part_bytes = 1; // one resource per response
        let parts = c.delta(dreq(Cds, &[], &[], ""), &s).unwrap();
        assert_eq!(parts.len(), names.len());
        for p in &parts {
            c.delta(dack(p), &s).unwrap();
        }
        let st = type_status(&c, Cds);
        assert_eq!(st.acks, names.len() as u64);
        assert_eq!(st.acked_resources.unwrap().len(), names.len());
        assert!(c.in_sync(&s));
    }

    #[test]
    fn delta_subscribe_unsubscribe() {
        let s1 = base();
        let mut c = Connection::new(Protocol::Delta);
        let r = done(c.delta(dreq(Eds, &["a"], &[], ""), &s1).unwrap());
        assert_eq!(dnames(&r), ["a"]);
        let r = done(c.delta(dreq(Eds, &["b"], &[], &r.nonce), &s1).unwrap());
        assert_eq!(dnames(&r), ["b"]);
        // Unsubscribe needs no response; changes to it are no longer pushed.
        assert!(c
            .delta(dreq(Eds, &[], &["a"], &r.nonce), &s1)
            .unwrap()
            .is_empty());
        assert_eq!(type_status(&c, Eds).names, ["b"]);
        let mut s2 = s1.clone();
        s2.resources_mut(Eds).insert("a".into(), cla("a", 2));
        assert!(c.delta_changed(&s2).is_empty());
        s2.resources_mut(Eds).insert("b".into(), cla("b", 2));
        let r = done(c.delta_changed(&s2));
        assert_eq!(dnames(&r), ["b"]);
        // Subscribing again sends it.
        let r = done(c.delta(dreq(Eds, &["a"], &[], &r.nonce), &s2).unwrap());
        assert_eq!(dnames(&r), ["a"]);
    }

    #[test]
    fn delta_explicit_resubscribe_is_answered() {
        let s = base();
        let mut c = Connection::new(Protocol::Delta);
        let r = done(c.delta(dreq(Rds, &["r1"], &[], ""), &s).unwrap());
        c.delta(dack(&r), &s).unwrap();
        let r = done(c.delta(dreq(Rds, &["r1"], &[], &r.nonce), &s).unwrap());
        assert_eq!(dnames(&r), ["r1"]);
    }

    #[test]
    fn delta_initial_resource_versions_nothing_resent_when_matching() {
        let s = base();
        let mut c = Connection::new(Protocol::Delta);
        let mut r = dreq(Cds, &[], &[], "");
        r.initial_resource_versions = versions(&s, Cds);
        // Wildcard first request: answered, but empty.
        let resp = done(c.delta(r, &s).unwrap());
        assert!(resp.resources.is_empty() && resp.removed_resources.is_empty());
        let mut r = dreq(Eds, &["a", "b"], &[], "");
        r.initial_resource_versions = versions(&s, Eds);
        assert!(c.delta(r, &s).unwrap().is_empty());
        assert!(c.delta_changed(&s).is_empty());
        assert_eq!(
            type_status(&c, Eds).acked_resources.unwrap().len(),
            2,
            "initial versions count as what the client has"
        );
    }

    /// Scopes are kept under short names (see `names`): clients see, subscribe with and
    /// reconnect with the full xdstp names, and a name that looks like a kept one is not ours.
    #[test]
    fn delta_scope_names_are_full_on_the_wire() {
        // As the translation names them (the builder crate checks it does).
        const PREFIX: &str = "xdstp://knative-xds/envoy.config.route.v3.ScopedRouteConfiguration/";
        const INTERNAL: &str = "internal";
        let scope_name = |listener: &str, host: &str| format!("{PREFIX}{listener}/{host}");
        let scopes_locator = |listener: &str| format!("{PREFIX}{listener}/*");
        let scopes = |hosts: &[&str]| {
            let rc: Arc<str> = "rc".into();
            let mut s = Snapshot::default().published_after(None);
            for h in hosts {
                for listener in ["external", INTERNAL] {
                    let r = Resource::scope(names::scope(listener, h).into(), h, rc.clone());
                    s.resources_mut(ResourceType::ScopedRoute)
                        .insert(r.name.clone(), r);
                }
            }
            s
        };
        let s1 = scopes(&["a.example.com", "b.ns"]);
        let s2 = scopes(&["a.example.com"]).published_after(Some(&s1));
        let srds = ResourceType::ScopedRoute;
        let locator = scopes_locator(INTERNAL);
        let mut c = Connection::new(Protocol::Delta);
        let resp = done(c.delta(dreq(srds, &[&locator], &[], ""), &s1).unwrap());
        let sent: Vec<&str> = resp.resources.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            sent,
            [
                scope_name(INTERNAL, "a.example.com"),
                scope_name(INTERNAL, "b.ns")
            ]
        );
        for r in &resp.resources {
            let msg = ScopedRouteConfiguration::decode(&*r.resource.as_ref().unwrap().value);
            assert_eq!(
                msg.unwrap().name,
                r.name,
                "the message names itself as sent"
            );
        }
        assert!(c.delta(dack(&resp), &s1).unwrap().is_empty());
        let st = c.status().into_wire();
        let st = st
            .types
            .iter()
            .find(|t| t.type_url == srds.type_url())
            .unwrap();
        assert_eq!(st.names, std::slice::from_ref(&locator));
        let acked: Vec<&str> = st
            .acked_resources
            .as_ref()
            .unwrap()
            .keys()
            .map(|k| &**k)
            .collect();
        assert_eq!(acked, sent);
        // A removal is told by its full name.
        let resp = done(c.delta_changed(&s2));
        assert!(resp.resources.is_empty());
        assert_eq!(resp.removed_resources, [scope_name(INTERNAL, "b.ns")]);

        // Reconnecting with what it has (full names): nothing is re-sent.
        let mut c = Connection::new(Protocol::Delta);
        let mut r = dreq(srds, &[&locator], &[], "");
        r.initial_resource_versions = versions(&s2, srds)
            .into_iter()
            .filter(|(n, _)| n.contains("/internal/"))
            .collect();
        assert!(r
            .initial_resource_versions
            .contains_key(&scope_name(INTERNAL, "a.example.com")));
        let resp = done(c.delta(r, &s2).unwrap());
        assert!(resp.resources.is_empty() && resp.removed_resources.is_empty());

        // Names written the way the server keeps them are someone else's: absent.
        let mut c = Connection::new(Protocol::Delta);
        let odd = "\u{1}internal/a.example.com";
        let resp = done(c.delta(dreq(srds, &[odd, "\u{2}x"], &[], ""), &s2).unwrap());
        assert!(resp.resources.is_empty());
        let mut removed = resp.removed_resources.clone();
        removed.sort();
        assert_eq!(removed, [odd, "\u{2}x"]);
    }

    #[test]
    fn delta_initial_resource_versions_only_changed_sent() {
        let s = base();
        let mut c = Connection::new(Protocol::Delta);
        let mut r = dreq(Lds, &[], &[], "");
        r.initial_resource_versions = versions(&s, Lds);
        r.initial_resource_versions
            .insert("gone".into(), "x".into());
        let resp = done(c.delta(r, &s).unwrap());
        assert!(resp.resources.is_empty());
        assert_eq!(resp.removed_resources, ["gone"]);

        let mut r = dreq(Rds, &["r1", "r2"], &[], "");
        r.initial_resource_versions = versions(&s, Rds);
        r.initial_resource_versions
            .insert("r2".into(), "old".into());
        let resp = done(c.delta(r, &s).unwrap());
        assert_eq!(dnames(&resp), ["r2"]);
        assert!(resp.removed_resources.is_empty());
    }

    #[test]
    fn delta_removed_resources_on_delete() {
        let s1 = base();
        let mut c = Connection::new(Protocol::Delta);
        let r = done(c.delta(dreq(Cds, &[], &[], ""), &s1).unwrap());
        c.delta(dack(&r), &s1).unwrap();
        let r = done(c.delta(dreq(Eds, &["a", "b"], &[], ""), &s1).unwrap());
        c.delta(dack(&r), &s1).unwrap();
        let mut s2 = s1.clone();
        s2.resources_mut(Cds).remove("b");
        s2.resources_mut(Eds).remove("b");
        let pushed = c.delta_changed(&s2);
        assert_eq!(pushed.len(), 2);
        assert_eq!(pushed[0].type_url, Cds.type_url());
        assert!(pushed[0].resources.is_empty());
        assert_eq!(pushed[0].removed_resources, ["b"]);
        assert_eq!(pushed[1].removed_resources, ["b"]);
        // Told once.
        assert!(c.delta_changed(&s2).is_empty());
        c.delta(dack(&pushed[0]), &s2).unwrap();
        let acked = type_status(&c, Cds).acked_resources.unwrap();
        assert_eq!(acked.keys().map(|k| &**k).collect::<Vec<_>>(), ["a"]);
    }

    #[test]
    fn delta_nonexistent_subscribed_name_reported_removed() {
        let s1 = base();
        let mut c = Connection::new(Protocol::Delta);
        let r = done(c.delta(dreq(Eds, &["a", "x"], &[], ""), &s1).unwrap());
        assert_eq!(dnames(&r), ["a"]);
        assert_eq!(r.removed_resources, ["x"]);
        // Only once.
        assert!(c.delta(dack(&r), &s1).unwrap().is_empty());
        let mut s2 = s1.clone();
        s2.resources_mut(Eds).insert("b".into(), cla("b", 5));
        assert!(c.delta_changed(&s2).is_empty());
        // Sent when it appears, reported again when it goes.
        s2.resources_mut(Eds).insert("x".into(), cla("x", 1));
        let r = done(c.delta_changed(&s2));
        assert_eq!(dnames(&r), ["x"]);
        s2.resources_mut(Eds).remove("x");
        let r = done(c.delta_changed(&s2));
        assert_eq!(r.removed_resources, ["x"]);
    }

    /// What the client ACKed follows each response: the old version until the change is
    /// ACKed, an older response's version when that is ACKed while a newer one is in flight.
    #[test]
    fn delta_acked_follows_each_response() {
        let s1 = base();
        let mut c = Connection::new(Protocol::Delta);
        let r = done(c.delta(dreq(Cds, &[], &[], ""), &s1).unwrap());
        c.delta(dack(&r), &s1).unwrap();
        let v = |s: &Snapshot| s.get(Cds, "a").unwrap().version;
        let acked_a = |c: &Connection| {
            type_status(c, Cds)
                .acked_resources
                .unwrap()
                .get("a")
                .copied()
        };
        let mut s2 = s1.clone();
        s2.resources_mut(Cds).insert("a".into(), cluster("a", "2"));
        let r2 = done(c.delta_changed(&s2));
        assert_eq!(acked_a(&c), Some(v(&s1)));
        let mut s3 = s2.clone();
        s3.resources_mut(Cds).insert("a".into(), cluster("a", "3"));
        s3.resources_mut(Cds).remove("b");
        let r3 = done(c.delta_changed(&s3));
        assert_eq!(r3.removed_resources, ["b"]);
        c.delta(dack(&r2), &s3).unwrap();
        assert_eq!(acked_a(&c), Some(v(&s2)));
        assert!(!c.in_sync_by_content(&s3));
        c.delta(dack(&r3), &s3).unwrap();
        assert_eq!(acked_a(&c), Some(v(&s3)));
        let acked = type_status(&c, Cds).acked_resources.unwrap();
        assert_eq!(acked.keys().map(|k| &**k).collect::<Vec<_>>(), ["a"]);
        assert!(c.in_sync_by_content(&s3));
        // A NACKed change leaves the ACKed version; going back to it sends it again, and
        // its ACK makes the client in sync.
        let mut s4 = s3.clone();
        s4.resources_mut(Cds).insert("a".into(), cluster("a", "4"));
        let r4 = done(c.delta_changed(&s4));
        let mut n = dack(&r4);
        n.error_detail = Some(status("bad"));
        c.delta(n, &s4).unwrap();
        assert_eq!(acked_a(&c), Some(v(&s3)));
        assert!(!c.in_sync_by_content(&s4));
        // (By content it runs s3: what it ACKed.)
        assert!(c.in_sync_by_content(&s3));
        let r5 = done(c.delta_changed(&s3));
        assert_eq!(dnames(&r5), ["a"]);
        c.delta(dack(&r5), &s3).unwrap();
        assert_eq!(acked_a(&c), Some(v(&s3)));
        assert!(c.in_sync_by_content(&s3));
    }

    #[test]
    fn delta_nack_recorded_not_resent() {
        let s1 = base();
        let mut c = Connection::new(Protocol::Delta);
        let r = done(c.delta(dreq(Cds, &[], &[], ""), &s1).unwrap());
        c.delta(dack(&r), &s1).unwrap();
        let mut s2 = s1.clone();
        s2.resources_mut(Cds)
            .insert("a".into(), cluster("a", "bad"));
        let r = done(c.delta_changed(&s2));
        assert_eq!(dnames(&r), ["a"]);
        c.take_events();
        let mut n = dack(&r);
        n.error_detail = Some(status("Invalid duration"));
        assert!(c.delta(n, &s2).unwrap().is_empty());
        assert!(c.delta_changed(&s2).is_empty());
        // The client does not run s2: not in sync, by either check.
        assert!(!c.in_sync(&s2));
        assert!(!c.in_sync_by_content(&s2));

        let st = type_status(&c, Cds);
        assert_eq!(st.nacks, 1);
        let nack = st.last_nack.unwrap();
        assert_eq!(nack.nonce, r.nonce);
        assert_eq!(nack.message, "Invalid duration");
        let attempted = nack.attempted.unwrap();
        assert_eq!(attempted.resources["a"], s2.get(Cds, "a").unwrap().version);
        // ACKed state is still the old cluster.
        assert_eq!(
            st.acked_resources.unwrap()["a"],
            s1.get(Cds, "a").unwrap().version
        );
        assert!(matches!(
            &c.take_events()[..],
            [ConnectionEvent::Nack { .. }]
        ));

        let mut s3 = s1.clone();
        s3.resources_mut(Cds)
            .insert("a".into(), cluster("a", "good"));
        let r = done(c.delta_changed(&s3));
        assert_eq!(dnames(&r), ["a"]);
    }

    #[test]
    fn delta_stale_nonce_still_honours_subscription() {
        let s1 = base();
        let mut c = Connection::new(Protocol::Delta);
        let r1 = done(c.delta(dreq(Rds, &["r1"], &[], ""), &s1).unwrap());
        let mut s2 = s1.clone();
        s2.resources_mut(Rds).insert("r1".into(), route("r1", "2"));
        let _r2 = done(c.delta_changed(&s2));
        // Carries r1's nonce (superseded by r2) but subscribes r2: must be answered.
        let r = done(c.delta(dreq(Rds, &["r2"], &[], "bogus"), &s2).unwrap());
        assert_eq!(dnames(&r), ["r2"]);
        let r = c.delta(dreq(Rds, &[], &["r1"], &r1.nonce), &s2).unwrap();
        assert!(r.is_empty());
        assert_eq!(type_status(&c, Rds).names, ["r2"]);
    }

    #[test]
    fn delta_cds_change_forces_cla_resend() {
        let s1 = base();
        let mut c = Connection::new(Protocol::Delta);
        for (ty, n) in [(Cds, vec![]), (Eds, vec!["a", "b"])] {
            let r = done(c.delta(dreq(ty, &n, &[], ""), &s1).unwrap());
            c.delta(dack(&r), &s1).unwrap();
        }
        let mut s2 = s1.clone();
        s2.resources_mut(Cds).insert("a".into(), cluster("a", "2"));
        let pushed = c.delta_changed(&s2);
        assert_eq!(pushed.len(), 2);
        assert_eq!(dnames(&pushed[0]), ["a"]);
        assert_eq!(pushed[1].type_url, Eds.type_url());
        assert_eq!(dnames(&pushed[1]), ["a"]);
        assert!(c.delta_changed(&s2).is_empty());

        // Reconnect with a changed cluster: its CLA is sent although the client has it.
        let mut d = Connection::new(Protocol::Delta);
        let mut r = dreq(Cds, &[], &[], "");
        r.initial_resource_versions = versions(&s1, Cds);
        assert_eq!(dnames(&done(d.delta(r, &s2).unwrap())), ["a"]);
        let mut r = dreq(Eds, &["a", "b"], &[], "");
        r.initial_resource_versions = versions(&s1, Eds);
        assert_eq!(dnames(&done(d.delta(r, &s2).unwrap())), ["a"]);
    }

    #[test]
    fn delta_wildcard_explicit_overlap_unsubscribe_is_answered() {
        let s = base();
        let mut c = Connection::new(Protocol::Delta);
        let r = done(c.delta(dreq(Cds, &["*", "a", "zz"], &[], ""), &s).unwrap());
        assert_eq!(dnames(&r), ["a", "b"]);
        assert_eq!(r.removed_resources, ["zz"]);
        let r = done(c.delta(dreq(Cds, &[], &["a", "zz"], &r.nonce), &s).unwrap());
        assert_eq!(dnames(&r), ["a"]);
        assert_eq!(r.removed_resources, ["zz"]);
        // Dropping the wildcard keeps only explicit names.
        assert!(
            c.delta(dreq(Cds, &["b"], &["*"], &r.nonce), &s)
                .unwrap()
                .len()
                == 1
        );
        assert_eq!(type_status(&c, Cds).names, ["b"]);
        assert!(!type_status(&c, Cds).wildcard);
    }

    #[test]
    fn status_serializes() {
        let s = base();
        let mut c = sotw_synced(&s);
        c.sotw(req(Cds, &[], "", "9999"), &s).unwrap();
        let json = serde_json::to_value(c.status()).unwrap();
        assert_eq!(json["protocol"], "sotw");
        assert_eq!(json["types"].as_array().unwrap().len(), 4);
        assert_eq!(json["types"][0]["type_name"], "CDS");
        let ev = serde_json::to_value(c.take_events().last().unwrap()).unwrap();
        assert_eq!(ev["event"], "stale_nonce");
    }

    /// Deterministic junk at both protocols: never a panic.
    #[test]
    fn arbitrary_requests_never_panic() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let snaps = [
            base(),
            Snapshot::default(),
            snap(&[cluster("a", "z")], &[], &[], &[]),
        ];
        let urls = [
            Cds.type_url(),
            Eds.type_url(),
            Lds.type_url(),
            Rds.type_url(),
            SECRET_URL,
            "",
            "junk",
        ];
        let words = ["", "*", "a", "b", "x", "r1", "é", "1", "2", "3"];
        for round in 0..200 {
            let proto = if round % 2 == 0 {
                Protocol::Sotw
            } else {
                Protocol::Delta
            };
            let mut c = Connection::new(proto);
            for _ in 0..40 {
                let s = &snaps[rnd(3) as usize];
                let url = urls[rnd(urls.len() as u64) as usize].to_string();
                let pick = |r: &mut dyn FnMut(u64) -> u64| -> Vec<String> {
                    (0..r(4))
                        .map(|_| words[r(words.len() as u64) as usize].to_string())
                        .collect()
                };
                let names = pick(&mut rnd);
                let other = pick(&mut rnd);
                let nonce = words[rnd(words.len() as u64) as usize].to_string();
                let err = (rnd(4) == 0).then(|| status("e"));
                match proto {
                    Protocol::Sotw => {
                        let _ = c.sotw(
                            DiscoveryRequest {
                                type_url: url,
                                resource_names: names,
                                version_info: other.concat(),
                                response_nonce: nonce,
                                error_detail: err,
                                ..Default::default()
                            },
                            s,
                        );
                        let _ = c.sotw_changed(s);
                    }
                    Protocol::Delta => {
                        let _ = c.delta(
                            DeltaDiscoveryRequest {
                                type_url: url,
                                resource_names_subscribe: names,
                                resource_names_unsubscribe: other.clone(),
                                initial_resource_versions: other
                                    .into_iter()
                                    .map(|n| (n, "v".to_string()))
                                    .collect(),
                                response_nonce: nonce,
                                error_detail: err,
                                ..Default::default()
                            },
                            s,
                        );
                        let _ = c.delta_changed(s);
                    }
                }
                let _ = c.status();
            }
            let _ = c.take_events();
        }
    }
}
