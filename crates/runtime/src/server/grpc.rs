//! gRPC services on the xDS port besides ADS: CSDS (Envoy's client status), our own
//! `knative_xds.v1.Inspect` API, gRPC health and reflection.

use std::sync::Arc;

use envoy_api::pb::envoy::admin::v3::{ClientResourceStatus, UpdateFailureState};
use envoy_api::pb::envoy::config::core::v3::Node;
use envoy_api::pb::envoy::r#type::matcher::v3::{string_matcher::MatchPattern, StringMatcher};
use envoy_api::pb::envoy::service::status::v3::client_status_discovery_service_server::ClientStatusDiscoveryService;
use envoy_api::pb::envoy::service::status::v3::{
    client_config::GenericXdsConfig, ClientConfig, ClientStatusRequest, ClientStatusResponse,
    ConfigStatus,
};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::state::{ProxyInfo, Shared, State};
use crate::api;
use translate::explain::{self, Explanation};
use xds::snapshot::aggregate_version;
use xds::{ResourceType, Snapshot};

#[derive(Clone)]
pub struct Csds {
    shared: Arc<Shared>,
}

impl Csds {
    pub fn new(shared: Arc<Shared>) -> Csds {
        Csds { shared }
    }

    async fn status(&self, req: &ClientStatusRequest) -> ClientStatusResponse {
        let snap = self.shared.current().unwrap_or_default();
        let config = self
            .shared
            .proxies_with_status()
            .await
            .iter()
            .filter(|p| {
                req.node_matchers.iter().all(|m| {
                    m.node_id
                        .as_ref()
                        .is_none_or(|sm| string_matches(sm, &p.node_id))
                })
            })
            .map(|p| client_config(p, &snap, req.exclude_resource_contents))
            .collect();
        ClientStatusResponse { config }
    }
}

fn string_matches(m: &StringMatcher, value: &str) -> bool {
    let (value, fold) = if m.ignore_case {
        (value.to_ascii_lowercase(), true)
    } else {
        (value.to_string(), false)
    };
    let norm = |s: &str| {
        if fold {
            s.to_ascii_lowercase()
        } else {
            s.to_string()
        }
    };
    match &m.match_pattern {
        Some(MatchPattern::Exact(e)) => value == norm(e),
        Some(MatchPattern::Prefix(p)) => value.starts_with(&norm(p)),
        Some(MatchPattern::Suffix(s)) => value.ends_with(&norm(s)),
        Some(MatchPattern::Contains(c)) => value.contains(&norm(c)),
        // Regex and extension matchers are not supported: match nothing rather than all.
        Some(_) => false,
        None => true,
    }
}

/// One Envoy's view of every resource it subscribes to, in CSDS terms.
fn client_config(p: &ProxyInfo, snap: &Snapshot, exclude_contents: bool) -> ClientConfig {
    let mut generic = Vec::new();
    for t in &p.status.types {
        let Some(ty) = ResourceType::from_type_url(&t.type_url) else {
            continue;
        };
        let all = snap.resources(ty);
        let acked = t.acked_resources.clone().unwrap_or_default();
        let mut names: std::collections::BTreeSet<String> =
            view_of(t, all).iter().map(|r| r.name.to_string()).collect();
        // Explicit names that do not exist (reported DOES_NOT_EXIST); globs are not names.
        names.extend(
            t.names
                .iter()
                .filter(|n| xds::names::glob_prefix(n).is_none())
                .cloned(),
        );
        names.extend(acked.keys().map(|n| n.to_string()));
        for name in names {
            let current = all.get(name.as_str());
            let acked_version = acked.get(name.as_str());
            let pending = t
                .pending
                .as_ref()
                .and_then(|r| r.resources.get(name.as_str()));
            let nacked = t.last_nack.as_ref().filter(|n| {
                n.attempted
                    .as_ref()
                    .and_then(|a| a.resources.get(name.as_str()))
                    .is_some_and(|v| {
                        Some(v) == current.map(|c| &c.version) && Some(v) != acked_version
                    })
            });
            let (config_status, client_status) = match (current, acked_version) {
                (None, _) => (ConfigStatus::Unknown, ClientResourceStatus::DoesNotExist),
                _ if nacked.is_some() => (ConfigStatus::Error, ClientResourceStatus::Nacked),
                (Some(c), Some(a)) if *a == c.version => {
                    (ConfigStatus::Synced, ClientResourceStatus::Acked)
                }
                (Some(_), Some(_)) if pending.is_some() => {
                    (ConfigStatus::Stale, ClientResourceStatus::Acked)
                }
                (Some(_), Some(_)) => (ConfigStatus::NotSent, ClientResourceStatus::Acked),
                (Some(_), None) if pending.is_some() => {
                    (ConfigStatus::Stale, ClientResourceStatus::Requested)
                }
                (Some(_), None) => (ConfigStatus::NotSent, ClientResourceStatus::Requested),
            };
            generic.push(GenericXdsConfig {
                type_url: t.type_url.clone(),
                version_info: acked_version
                    .or_else(|| current.map(|c| &c.version))
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
                xds_config: if exclude_contents {
                    None
                } else {
                    current.map(|c| c.shown())
                },
                config_status: config_status as i32,
                client_status: client_status as i32,
                error_state: nacked.map(|n| UpdateFailureState {
                    details: n.message.clone(),
                    version_info: n
                        .attempted
                        .as_ref()
                        .and_then(|a| a.resources.get(name.as_str()))
                        .map(|v| v.to_string())
                        .unwrap_or_default(),
                    ..Default::default()
                }),
                name: xds::names::into_wire(name),
                ..Default::default()
            });
        }
    }
    ClientConfig {
        // The node as Envoy sent it, less its long list of built-in extensions.
        node: Some(Node {
            extensions: Vec::new(),
            ..p.node.clone()
        }),
        generic_xds_configs: generic,
        ..Default::default()
    }
}

type CsdsStream =
    std::pin::Pin<Box<dyn Stream<Item = Result<ClientStatusResponse, Status>> + Send>>;

#[tonic::async_trait]
impl ClientStatusDiscoveryService for Csds {
    type StreamClientStatusStream = CsdsStream;

    async fn stream_client_status(
        &self,
        request: Request<Streaming<ClientStatusRequest>>,
    ) -> Result<Response<CsdsStream>, Status> {
        let this = self.clone();
        let stream = request.into_inner().then(move |req| {
            let this = this.clone();
            async move {
                match req {
                    Ok(r) => Ok(this.status(&r).await),
                    Err(e) => Err(e),
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn fetch_client_status(
        &self,
        request: Request<ClientStatusRequest>,
    ) -> Result<Response<ClientStatusResponse>, Status> {
        Ok(Response::new(self.status(request.get_ref()).await))
    }
}

/// `knative_xds.v1.Inspect`.
#[derive(Clone)]
pub struct Inspect {
    shared: Arc<Shared>,
}

impl Inspect {
    pub fn new(shared: Arc<Shared>) -> Inspect {
        Inspect { shared }
    }
}

fn to_headers(m: &std::collections::BTreeMap<String, String>) -> Vec<api::Header> {
    m.iter()
        .map(|(k, v)| api::Header {
            name: k.clone(),
            value: v.clone(),
        })
        .collect()
}

pub fn explanation_to_api(e: Explanation) -> api::ExplainResponse {
    let mut out = api::ExplainResponse {
        listener: e.listener.to_string(),
        route_configuration: e.listener.to_string(),
        reason: e.reason,
        ..Default::default()
    };
    if let Some(m) = e.matched {
        out.matched = true;
        out.virtual_host = m.virtual_host;
        out.route_index = m.route_index as u32;
        out.path_prefix = m.path_prefix;
        out.header_matches = to_headers(&m.header_matches);
        out.headers = to_headers(&m.headers);
        out.host_rewrite = m.host_rewrite.unwrap_or_default();
        out.targets = m
            .targets
            .into_iter()
            .map(|t| api::WeightedTarget {
                cluster: t.cluster,
                namespace: t.namespace,
                service: t.service,
                port: t.port as u32,
                percent: t.percent,
                headers: to_headers(&t.headers),
            })
            .collect();
        out.source = Some(api::ObjectRef {
            kind: m.source.kind.display_name().to_string(),
            namespace: m.source.key.namespace.to_string(),
            name: m.source.key.name.to_string(),
            generation: m.generation.unwrap_or(0),
        });
    }
    out
}

#[tonic::async_trait]
impl api::inspect_server::Inspect for Inspect {
    async fn explain(
        &self,
        request: Request<api::ExplainRequest>,
    ) -> Result<Response<api::ExplainResponse>, Status> {
        let r = request.into_inner();
        if r.host.is_empty() {
            return Err(Status::invalid_argument("host is required"));
        }
        let view = self.shared.view();
        let ingresses: Vec<&translate::Ingress> = view.ingresses.values().map(|i| &**i).collect();
        let e = explain::explain(
            &ingresses,
            &explain::Request {
                host: r.host,
                path: r.path,
                headers: r.headers.into_iter().map(|h| (h.name, h.value)).collect(),
                internal: r.listener == api::Listener::Internal as i32,
            },
        );
        Ok(Response::new(explanation_to_api(e)))
    }

    async fn list_objects(
        &self,
        request: Request<api::ListObjectsRequest>,
    ) -> Result<Response<api::ListObjectsResponse>, Status> {
        let r = request.into_inner();
        let view = self.shared.view();
        let objects = view
            .objects
            .iter()
            .filter(|(object, _)| {
                (r.kind.is_empty() || object.kind.display_name().eq_ignore_ascii_case(&r.kind))
                    && (r.namespace.is_empty() || *object.key.namespace == *r.namespace)
            })
            .map(|(object, o)| {
                let (virtual_hosts, clusters) = view
                    .ingresses
                    .get(object)
                    .map(|i| crate::server::state::hosts_and_clusters(i))
                    .unwrap_or_default();
                api::ObjectStatus {
                    object: Some(api::ObjectRef {
                        kind: object.kind.display_name().to_string(),
                        namespace: object.key.namespace.to_string(),
                        name: object.key.name.to_string(),
                        generation: o.generation,
                    }),
                    state: match o.state {
                        State::Served => api::State::Served,
                        State::Stale => api::State::Stale,
                        State::Rejected => api::State::Rejected,
                        State::Input => api::State::Input,
                    } as i32,
                    problems: o.problems.as_deref().cloned().unwrap_or_default(),
                    virtual_hosts,
                    clusters,
                }
            })
            .collect();
        Ok(Response::new(api::ListObjectsResponse { objects }))
    }

    async fn list_proxies(
        &self,
        _request: Request<api::ListProxiesRequest>,
    ) -> Result<Response<api::ListProxiesResponse>, Status> {
        let snap = self.shared.current().unwrap_or_default();
        let proxies = self
            .shared
            .proxies_with_status()
            .await
            .into_iter()
            .map(|p| proxy_to_api(&p, &snap))
            .collect();
        let all: Vec<_> = ResourceType::ORDERED
            .iter()
            .flat_map(|t| snap.resources(*t).values())
            .collect();
        Ok(Response::new(api::ListProxiesResponse {
            proxies,
            snapshot_version: aggregate_version(all),
        }))
    }
}

fn proxy_to_api(p: &ProxyInfo, snap: &Snapshot) -> api::ProxyStatus {
    let types = p
        .status
        .types
        .iter()
        .filter_map(|t| {
            let ty = ResourceType::from_type_url(&t.type_url)?;
            let all = snap.resources(ty);
            let view = view_of(t, all);
            let current: xds::stream::Versions =
                view.iter().map(|r| (r.name.clone(), r.version)).collect();
            let acked = t.acked_resources.clone().unwrap_or_default();
            let acked_version = t
                .acked_version
                .clone()
                .unwrap_or_else(|| aggregate_version(acked_arcs(&acked, ty, all).iter()));
            Some(api::TypeSync {
                r#type: ty.short_name().to_string(),
                in_sync: t.pending.is_none() && acked == current,
                acked_version,
                current_version: aggregate_version(view),
                pending_version: t
                    .pending
                    .as_ref()
                    .map(|r| r.version.clone())
                    .unwrap_or_default(),
                last_nack: t
                    .last_nack
                    .as_ref()
                    .map(|n| n.message.clone())
                    .unwrap_or_default(),
                acks: t.acks,
                nacks: t.nacks,
            })
        })
        .collect();
    api::ProxyStatus {
        node_id: p.node_id.clone(),
        node_cluster: p.node_cluster.clone(),
        address: p.address.map(|a| a.to_string()).unwrap_or_default(),
        protocol: p.protocol.to_string(),
        connected_since_ms: p.connected_since_ms,
        types,
    }
}

/// The resources a subscription selects: everything (wildcard), its names, and what its
/// xdstp globs cover.
fn view_of<'a>(
    t: &xds::stream::TypeStatus,
    all: &'a xds::snapshot::ResourceMap,
) -> Vec<&'a Arc<xds::Resource>> {
    if t.wildcard {
        return all.values().collect();
    }
    all.values()
        .filter(|r| {
            t.names.iter().any(|n| match xds::names::glob_prefix(n) {
                Some(p) => r.name.starts_with(p),
                None => **n == *r.name,
            })
        })
        .collect()
}

/// The resources a delta client ACKed, as the snapshot's `Arc`s where versions match
/// (for a comparable aggregate version).
fn acked_arcs(
    acked: &xds::stream::Versions,
    ty: ResourceType,
    all: &xds::snapshot::ResourceMap,
) -> Vec<Arc<xds::Resource>> {
    acked
        .iter()
        .map(|(n, v)| {
            all.get(&**n)
                .filter(|r| r.version == *v)
                .cloned()
                .unwrap_or_else(|| Arc::new(xds::Resource::unknown(n.clone(), ty, *v)))
        })
        .collect()
}
