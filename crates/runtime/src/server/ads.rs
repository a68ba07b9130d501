//! The ADS gRPC service (SotW and Delta on one port). Each stream runs one task that
//! feeds the I/O-free state machine of its protocol (`xds::stream`: `SotwStream` or
//! `DeltaStream`, picked once per RPC) with requests and new snapshots and writes what it
//! returns. A slow Envoy only fills its own bounded channel; the snapshot
//! watch channel always hands it the latest state, never a backlog.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::codegen::{http, Body, BoxFuture, Context, Poll, Service, StdError};
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info, warn};

use super::metrics::Metrics;
use super::state::{unix_ms, ProxyInfo, Shared};
use xds::stream::{AdsStream, ConnectionEvent, DeltaStream, Protocol, SotwStream};
use xds::wire::{DeltaResponse, SotwResponse};
use xds::{ResourceType, Snapshot};

/// How many responses may wait for a slow stream before its task waits (only that task).
const STREAM_BUFFER: usize = 16;

/// `envoy.service.discovery.v3.AggregatedDiscoveryService`, written out rather than
/// generated: the generated server would send prost messages, which own a copy of every
/// resource; ours sends [`SotwResponse`]/[`DeltaResponse`], which share the snapshot's
/// encoded resources (same bytes on the wire).
#[derive(Clone)]
pub struct AdsService {
    shared: Arc<Shared>,
    max_decoding_message_size: usize,
}

impl AdsService {
    pub const NAME: &'static str = "envoy.service.discovery.v3.AggregatedDiscoveryService";

    /// `max_decoding_message_size`: the largest request accepted (a NACK carries Envoy's
    /// error text; a request may list many names).
    pub fn new(shared: Arc<Shared>, max_decoding_message_size: usize) -> AdsService {
        AdsService {
            shared,
            max_decoding_message_size,
        }
    }
}

impl tonic::server::NamedService for AdsService {
    const NAME: &'static str = AdsService::NAME;
}

/// One RPC of the service: a stream of `F`'s requests answered by a stream of its responses.
struct Rpc<F>(Arc<Shared>, std::marker::PhantomData<F>);

impl<F: Flavor> tonic::server::StreamingService<F::Request> for Rpc<F> {
    type Response = F::Response;
    type ResponseStream = RespStream<F::Response>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<F::Request>>) -> Self::Future {
        let stream = start::<F>(self.0.clone(), request);
        Box::pin(async move { Ok(Response::new(stream)) })
    }
}

impl<B> Service<http::Request<B>> for AdsService
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let shared = self.shared.clone();
        let limit = Some(self.max_decoding_message_size);
        let method = (req.uri().path().strip_prefix('/'))
            .and_then(|p| p.strip_prefix(AdsService::NAME))
            .and_then(|p| p.strip_prefix('/'));
        match method {
            Some("StreamAggregatedResources") => Box::pin(rpc::<SotwStream, B>(shared, limit, req)),
            Some("DeltaAggregatedResources") => Box::pin(rpc::<DeltaStream, B>(shared, limit, req)),
            _ => Box::pin(async move { Ok(Status::unimplemented("").into_http()) }),
        }
    }
}

/// Serves one ADS call of flavour `F` (requests up to `limit` bytes).
async fn rpc<F: Flavor, B>(
    shared: Arc<Shared>,
    limit: Option<usize>,
    req: http::Request<B>,
) -> Result<http::Response<tonic::body::Body>, std::convert::Infallible>
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    let mut grpc = tonic::server::Grpc::new(AdsCodec::<F>(tonic_prost::ProstCodec::default()))
        .apply_max_message_size_config(limit, None);
    Ok(grpc
        .streaming(Rpc::<F>(shared, std::marker::PhantomData), req)
        .await)
}

/// tonic's prost codec, except that each response's buffer is sized once. tonic does not
/// reserve before encoding, so a 4 MB part grew its buffer by doubling: a copy per step, and
/// up to twice the message held until it is written.
struct AdsCodec<F: Flavor>(tonic_prost::ProstCodec<F::Response, F::Request>);

impl<F: Flavor> tonic::codec::Codec for AdsCodec<F> {
    type Encode = F::Response;
    type Decode = F::Request;
    type Encoder = SizedEncoder<F::Response>;
    type Decoder =
        <tonic_prost::ProstCodec<F::Response, F::Request> as tonic::codec::Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        SizedEncoder(std::marker::PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        self.0.decoder()
    }
}

struct SizedEncoder<T>(std::marker::PhantomData<T>);

impl<T: Message> tonic::codec::Encoder for SizedEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode(buf)
            .map_err(|e| Status::internal(format!("encoding a response: {e}")))
    }
}

/// What the server adds to a protocol's stream type: its name in logs, and a response's
/// type URL (for metrics).
trait Flavor: AdsStream<Request: Message + Default + Send, Response: Message + Send + Sync> {
    const NAME: &'static str;
    fn type_url(resp: &Self::Response) -> &str;
}

impl Flavor for SotwStream {
    const NAME: &'static str = "sotw";
    fn type_url(r: &SotwResponse) -> &str {
        &r.type_url
    }
}

impl Flavor for DeltaStream {
    const NAME: &'static str = "delta";
    fn type_url(r: &DeltaResponse) -> &str {
        &r.type_url
    }
}

type RespStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn start<F: Flavor>(
    shared: Arc<Shared>,
    request: Request<Streaming<F::Request>>,
) -> RespStream<F::Response> {
    let addr = request.remote_addr();
    let inbound = request.into_inner();
    let (tx, rx) = mpsc::channel(STREAM_BUFFER);
    tokio::spawn(run_stream::<F>(shared, addr, inbound, tx));
    Box::pin(ReceiverStream::new(rx))
}

async fn run_stream<F: Flavor>(
    shared: Arc<Shared>,
    addr: Option<SocketAddr>,
    mut inbound: Streaming<F::Request>,
    tx: mpsc::Sender<Result<F::Response, Status>>,
) {
    let id = shared
        .next_connection
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut snapshots = shared.snapshot.subscribe();
    // Serve only complete snapshots: wait for the first one.
    let mut current = loop {
        if let Some(s) = snapshots.borrow_and_update().clone() {
            break s;
        }
        if snapshots.changed().await.is_err() {
            return;
        }
    };
    let mut conn = F::new();
    let connected_since = SystemTime::now();
    // Status copies are made when someone asks (CSDS, `status`, /debug/proxies).
    let (status_tx, mut status_rx) = mpsc::channel(8);
    // The registry's summary of this stream (in sync or not) is refreshed at most every
    // STATUS_REFRESH, not per message.
    let mut status_due: Option<tokio::time::Instant> = None;
    debug!(
        connection = id,
        ?addr,
        protocol = F::NAME,
        "ADS stream opened"
    );
    loop {
        let out = tokio::select! {
            msg = inbound.message() => match msg {
                Ok(Some(req)) => match conn.handle_request(req, &current) {
                    Ok(out) => out,
                    Err(e) => {
                        warn!(connection = id, error = %e, "bad discovery request");
                        let _ = tx.send(Err(Status::invalid_argument(e.to_string()))).await;
                        break;
                    }
                },
                // Client half-closed (grpcurl) or went away: end our side too.
                Ok(None) | Err(_) => break,
            },
            changed = snapshots.changed() => {
                if changed.is_err() {
                    break;
                }
                let Some(s) = snapshots.borrow_and_update().clone() else { continue };
                current = s;
                conn.snapshot_changed(&current)
            }
            _ = sleep_until(status_due) => {
                status_due = None;
                publish_status(&shared, id, addr, &conn, connected_since, &status_tx);
                continue;
            }
            Some(reply) = status_rx.recv() => {
                let _ = reply.send(conn.status());
                continue;
            }
        };
        if record(&shared, id, &mut conn, &current) || status_due.is_none() {
            if status_due.is_none() {
                status_due = Some(tokio::time::Instant::now() + STATUS_REFRESH);
            }
            if !shared.has_proxy(id) {
                publish_status(&shared, id, addr, &conn, connected_since, &status_tx);
            }
        }
        for resp in out {
            if let Some(ty) = ResourceType::from_type_url(F::type_url(&resp)) {
                shared
                    .metrics
                    .pushes
                    .get_or_create(&Metrics::type_label(ty.short_name()))
                    .inc();
            }
            shared.metrics.sent_bytes.inc_by(resp.encoded_len() as u64);
            if tx.send(Ok(resp)).await.is_err() {
                break;
            }
        }
    }
    shared.proxy_gone(id);
    debug!(connection = id, "ADS stream closed");
}

/// How stale the published copy of a connection's state may be.
const STATUS_REFRESH: std::time::Duration = std::time::Duration::from_millis(100);

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Logs the connection's ACK/NACK events and reports convergence; returns whether
/// anything happened that the published status should show.
fn record(shared: &Shared, id: u64, conn: &mut impl AdsStream, current: &Arc<Snapshot>) -> bool {
    let node_id = conn.node().map(|n| n.id.clone()).unwrap_or_default();
    let events = conn.take_events();
    let happened = !events.is_empty();
    for ev in events {
        match ev {
            ConnectionEvent::Nack {
                type_url, message, ..
            } => {
                let label = xds::stream::type_label(&type_url).to_string();
                shared
                    .metrics
                    .nacks
                    .get_or_create(&Metrics::type_label(&label))
                    .inc();
                warn!(proxy = %node_id, r#type = %label, reason = %message, "Envoy rejected config (NACK); it keeps its last good config");
            }
            ConnectionEvent::Ack {
                type_url, version, ..
            } => {
                debug!(proxy = %node_id, r#type = %type_url, %version, "ACK");
            }
            ConnectionEvent::Sent {
                type_url,
                version,
                resources,
                removed,
                ..
            } => {
                debug!(proxy = %node_id, r#type = %type_url, %version, resources, removed, "sent");
            }
            _ => {}
        }
    }
    // Convergence (the histogram) and KIngress readiness (the newest snapshot this Envoy
    // has applied completely) both need "in sync" (linear in the resources for SotW):
    // checked once, only when either waits and everything sent has been answered.
    let converging = shared.awaits(id);
    let applying = shared.applied_snapshot(id) < current.id();
    if (converging || applying) && !conn.awaiting_answers() && conn.in_sync(current) {
        if converging {
            shared.proxy_synced(id, current);
        }
        if applying && conn.subscribes_all(current) {
            shared.proxy_applied(id, current.id());
        }
    }
    happened
}

/// Publishes a copy of the connection's state for /debug/proxies, CSDS and `status`.
fn publish_status<S: AdsStream>(
    shared: &Shared,
    id: u64,
    addr: Option<SocketAddr>,
    conn: &S,
    connected_since: SystemTime,
    status_request: &mpsc::Sender<tokio::sync::oneshot::Sender<xds::stream::ConnectionStatus>>,
) {
    let node = conn.node().cloned().unwrap_or_default();
    let info = ProxyInfo {
        node_id: node.id.clone(),
        node_cluster: node.cluster.clone(),
        address: addr,
        protocol: match S::PROTOCOL {
            Protocol::Sotw => "sotw",
            Protocol::Delta => "delta",
        },
        connected_since_ms: unix_ms(connected_since),
        in_sync: !conn.awaiting_answers(),
        status: conn.summary(),
        status_request: Some(status_request.clone()),
        node,
    };
    if let Ok(mut p) = shared.proxies.lock() {
        if !p.contains_key(&id) {
            info!(proxy = %info.node_id, ?addr, protocol = info.protocol, "Envoy connected");
        }
        p.insert(id, info);
        shared.metrics.connected_proxies.set(p.len() as i64);
    }
}
