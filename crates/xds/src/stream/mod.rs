//! The ADS protocol state of one gRPC stream, free of I/O: one type per protocol,
//! [`SotwStream`] (`sotw.rs`) and [`DeltaStream`] (`delta.rs`), over the pieces they share
//! here: the node, nonces and events ([`Core`]), subscriptions, the make-before-break
//! [`Warming`] rule, and the status view for CSDS and `/debug/proxies`.
//!
//! The server feeds a stream the client's requests and every newly published [`Snapshot`],
//! and writes out the responses it returns. Per type a stream tracks what the client
//! subscribed to, what it was last sent (its view, as far as we know) and the ACK/NACK
//! state, so that every change reaches the client once, rejected content is not resent,
//! and pushes follow make-before-break order (CDS → EDS → LDS → RDS).
//!
//! Every call that may answer runs a sync of all subscribed types against the given
//! snapshot, in that order: a request processed against a snapshot newer than the last push
//! therefore cannot, say, deliver a route before the cluster it points at.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use envoy_api::pb::envoy::config::core::v3::Node;
use envoy_api::pb::google::rpc::Status;
use serde::Serialize;

use crate::names::{self, glob_prefix};
use crate::resource::{Resource, ResourceType, Version};
use crate::snapshot::{ResourceMap, Snapshot};

mod delta;
mod sotw;
#[cfg(test)]
mod tests;

pub use delta::DeltaStream;
pub use sotw::SotwStream;

/// Resource name → content version. Names and versions are the snapshot's own shared
/// strings, so a stream's record of what its client has costs no copy of either (at 10,000
/// Routes a client holds ~140,000 resources).
pub type Versions = BTreeMap<Arc<str>, Version>;

const TYPE_URL_PREFIX: &str = "type.googleapis.com/";
/// Distinct unserved type URLs one stream may open: bounds the memory a client can make us hold.
pub(super) const MAX_UNSERVED_TYPES: usize = 16;
/// Events kept when nobody drains them; the oldest are dropped first.
const MAX_EVENTS: usize = 1024;
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
}

/// Something worth a log line or a metric; drained with [`AdsStream::take_events`].
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
    /// With the names clients see, for display: [`AdsStream::status`] gives them in the
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
pub(super) enum TypeKey {
    Served(ResourceType),
    Unserved(String),
}

impl TypeKey {
    pub(super) fn parse(url: &str) -> Result<TypeKey, ProtocolError> {
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

    pub(super) fn type_url(&self) -> &str {
        match self {
            TypeKey::Served(t) => t.type_url(),
            TypeKey::Unserved(url) => url,
        }
    }

    pub(super) fn resources<'a>(&self, snap: &'a Snapshot) -> &'a ResourceMap {
        match self {
            TypeKey::Served(t) => snap.resources(*t),
            TypeKey::Unserved(_) => &EMPTY,
        }
    }

    /// Whether an empty name list on the first request means wildcard. Only CDS/LDS among
    /// ours (Envoy asks EDS/RDS by name); harmless for unserved types, which are empty.
    pub(super) fn legacy_wildcard(&self) -> bool {
        match self {
            TypeKey::Served(t) => t.is_wildcard(),
            TypeKey::Unserved(_) => true,
        }
    }

    pub(super) fn is(&self, t: ResourceType) -> bool {
        *self == TypeKey::Served(t)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Subscription {
    pub(super) wildcard: bool,
    pub(super) names: BTreeSet<String>,
}

impl Subscription {
    pub(super) fn covers(&self, name: &str) -> bool {
        self.wildcard
            || self.names.contains(name)
            || self
                .names
                .iter()
                .filter_map(|n| glob_prefix(n))
                .any(|p| name.starts_with(p))
    }

    /// The resources this subscription selects, sorted by name (so versions are deterministic).
    pub(super) fn view<'a>(&self, all: &'a ResourceMap) -> Vec<&'a Arc<Resource>> {
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

/// What the server needs of a stream, whichever its protocol: it picks the type once, when
/// the client opens `StreamAggregatedResources` or `DeltaAggregatedResources`.
pub trait AdsStream: Send + 'static {
    type Request;
    type Response;
    const PROTOCOL: Protocol;

    fn new() -> Self;
    /// Processes one request; returns what to send, in push order.
    fn handle_request(
        &mut self,
        req: Self::Request,
        snap: &Snapshot,
    ) -> Result<Vec<Self::Response>, ProtocolError>;
    /// A new snapshot was published: what must be pushed to this client, in push order.
    fn snapshot_changed(&mut self, snap: &Snapshot) -> Vec<Self::Response>;
    /// Responses sent and not yet ACKed or NACKed (cheap; no look at resources).
    fn awaiting_answers(&self) -> bool;
    /// Whether the client has ACKed exactly its view of `snap` for every type it
    /// subscribed to: nothing pending, nothing rejected, nothing missing.
    fn in_sync(&self, snap: &Snapshot) -> bool;
    /// Whether the client has requested `ty` on this stream.
    fn is_subscribed(&self, ty: ResourceType) -> bool;
    /// Per type: subscription, ACKed state, the response awaiting an answer, the last NACK
    /// and counters. For CSDS, `/debug/proxies` and `status`.
    fn status(&self) -> ConnectionStatus;
    fn core(&self) -> &Core;
    fn core_mut(&mut self) -> &mut Core;

    /// Whether the client has subscribed to every type `snap` holds resources of (a new
    /// Envoy asks for clusters first and for routes only later).
    fn subscribes_all(&self, snap: &Snapshot) -> bool {
        ResourceType::ORDERED
            .iter()
            .all(|ty| snap.resources(*ty).is_empty() || self.is_subscribed(*ty))
    }
    /// Node from the first request that carried one (later requests may omit it).
    fn node(&self) -> Option<&Node> {
        self.core().node.as_ref()
    }
    /// [`AdsStream::status`] without the per-type detail (cheap).
    fn summary(&self) -> ConnectionStatus {
        self.core().status(Self::PROTOCOL, Vec::new())
    }
    /// Events since the last call, oldest first.
    fn take_events(&mut self) -> Vec<ConnectionEvent> {
        self.core_mut().events.drain(..).collect()
    }
}

/// What a stream keeps whatever its protocol.
#[derive(Debug, Default)]
pub struct Core {
    node: Option<Node>,
    nonce_counter: u64,
    events: VecDeque<ConnectionEvent>,
    events_dropped: u64,
    /// The snapshot (by id) every type was last synced against: a request that changes no
    /// subscription (an ACK) needs no look at a snapshot already synced — which keeps ACKs
    /// cheap however many resources there are.
    synced: Option<u64>,
    warming: Warming,
}

impl Core {
    fn remember_node(&mut self, node: Option<Node>) {
        if self.node.is_none() {
            self.node = node;
        }
    }

    fn next_nonce(&mut self) -> String {
        self.nonce_counter += 1;
        self.nonce_counter.to_string()
    }

    fn push_event(&mut self, ev: ConnectionEvent) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
            self.events_dropped += 1;
        }
        self.events.push_back(ev);
    }

    /// The type of a request, bounding the unserved types one stream may open (`open`:
    /// the types it has opened so far).
    fn resolve<'a>(
        &mut self,
        type_url: &str,
        open: impl Iterator<Item = &'a TypeKey>,
    ) -> Result<TypeKey, ProtocolError> {
        let key = TypeKey::parse(type_url)?;
        if let TypeKey::Unserved(url) = &key {
            let (mut unserved, mut known) = (0, false);
            for k in open {
                known |= k == &key;
                unserved += usize::from(matches!(k, TypeKey::Unserved(_)));
            }
            if !known {
                if unserved >= MAX_UNSERVED_TYPES {
                    return Err(ProtocolError::TooManyTypes);
                }
                self.push_event(ConnectionEvent::UnservedType {
                    type_url: url.clone(),
                });
            }
        }
        Ok(key)
    }

    fn status(&self, protocol: Protocol, types: Vec<TypeStatus>) -> ConnectionStatus {
        ConnectionStatus {
            protocol,
            node_id: self.node.as_ref().map(|n| n.id.clone()),
            node_cluster: self.node.as_ref().map(|n| n.cluster.clone()),
            nonces_issued: self.nonce_counter,
            events_dropped: self.events_dropped,
            types,
        }
    }
}

/// Make-before-break, one rule for both protocols (xds-protocol.md §3.5). Envoy keeps a
/// new or changed EDS cluster warming (unusable) until it gets a ClusterLoadAssignment, and
/// does not warm routes: so a cluster sent new or changed owes its CLA even if that did not
/// change, and while a new cluster's CLA is unanswered the route types (LDS, SRDS, RDS)
/// are held back — a route never points at a cluster Envoy cannot use yet.
#[derive(Debug, Default)]
struct Warming {
    /// Clusters sent new or changed whose CLA must follow.
    owed: BTreeSet<String>,
    /// New EDS clusters whose CLA the client has not answered yet.
    new: BTreeSet<String>,
}

impl Warming {
    /// Whether `key` waits for new clusters to warm.
    fn holds(&self, key: &TypeKey) -> bool {
        !self.new.is_empty()
            && (key.is(ResourceType::Listener)
                || key.is(ResourceType::ScopedRoute)
                || key.is(ResourceType::Route))
    }

    /// Forgets new clusters the snapshot no longer has (nothing to wait for).
    fn retain(&mut self, snap: &Snapshot) {
        if self.new.is_empty() {
            return;
        }
        let (clusters, endpoints) = (
            snap.resources(ResourceType::Cluster),
            snap.resources(ResourceType::Endpoint),
        );
        self.new
            .retain(|n| clusters.contains_key(n.as_str()) && endpoints.contains_key(n.as_str()));
    }

    /// Cluster `r` goes to the client, which had it at `before` (`None`: not at all).
    fn cluster_sent(&mut self, r: &Resource, before: Option<Version>, snap: &Snapshot) {
        if before != Some(r.version) {
            self.owed.insert(r.name.to_string());
        }
        if before.is_none() && snap.resources(ResourceType::Endpoint).contains_key(&r.name) {
            self.new.insert(r.name.to_string());
        }
    }

    /// The client no longer has cluster `name`: no CLA is owed for it.
    fn cluster_gone(&mut self, name: &str) {
        self.owed.remove(name);
    }

    /// The CLA of `name` goes to the client.
    fn endpoints_sent(&mut self, name: &str) {
        self.owed.remove(name);
    }

    fn owes(&self, name: &str) -> bool {
        self.owed.contains(name)
    }

    /// The client answered a response of `key`: every CLA it carried (ACKed or NACKed),
    /// and on a CDS NACK its clusters (they will not warm), stop holding routes. Returns
    /// whether that released the held route types.
    fn answered(&mut self, key: &TypeKey, sent: Option<&ResponseStatus>, nack: bool) -> bool {
        let releases = key.is(ResourceType::Endpoint) || (key.is(ResourceType::Cluster) && nack);
        let Some(sent) = sent.filter(|_| releases && !self.new.is_empty()) else {
            return false;
        };
        if sent.resources.is_empty() {
            return false;
        }
        for n in sent.resources.keys() {
            self.new.remove(&**n);
        }
        self.new.is_empty()
    }
}

pub(super) fn type_status_base(key: &TypeKey, sub: &Subscription) -> TypeStatus {
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

/// Per type: how its responses were answered, for status and metrics.
#[derive(Debug, Default)]
struct Answers {
    last_nack: Option<NackStatus>,
    acks: u64,
    nacks: u64,
    responses: u64,
}

impl Answers {
    /// Records a NACK (`attempted`: the rejected response, if its nonce was recognised;
    /// `client_version`: what a SotW client says it keeps running).
    fn nack(
        &mut self,
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
        self.nacks += 1;
        self.last_nack = Some(NackStatus {
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

    /// `base` with these counters.
    fn status(&self, base: TypeStatus) -> TypeStatus {
        TypeStatus {
            last_nack: self.last_nack.clone(),
            acks: self.acks,
            nacks: self.nacks,
            responses: self.responses,
            ..base
        }
    }
}

pub(super) fn view_map(resources: &[&Arc<Resource>]) -> Versions {
    resources
        .iter()
        .map(|r| (r.name.clone(), r.version))
        .collect()
}

pub(super) fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
