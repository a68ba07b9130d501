//! `demo-upstream`: a tiny HTTP server standing in for Knative revisions in the demo and the
//! end-to-end tests.
//!
//! ```text
//! demo-upstream --manifests examples/traffic-example
//! demo-upstream --listen rev-a=127.0.0.1:19001 --listen rev-b=19002
//! ```
//!
//! With `--manifests DIR` it reads every `*.yaml` / `*.yml` file under DIR (recursively,
//! multi-document) and, for every `discovery.k8s.io` EndpointSlice with an endpoint address
//! `127.0.0.1`, serves each of the slice's ports on `127.0.0.1:<port>`, named after the slice's
//! `kubernetes.io/service-name` label (the revision name). Other documents are ignored.
//!
//! Every listener speaks HTTP/1.1 and HTTP/2 prior knowledge (h2c) on the same port and answers
//! any request with `200`, a response header `x-revision: NAME` and a one-line JSON echo:
//! `{"revision", "host", "path", "protocol", "headers"}`. Special paths:
//!
//! - `/status/<code>` answers with that status (200..999);
//! - `/delay/<ms>` waits that long (at most one hour) before answering;
//! - `/retry-once/<key>` answers `503` to the first request for `<key>` (the rest of the path)
//!   on this listener and `200` to every later one, so a test can prove nobody retried;
//! - `/slow-body/<ms>` sends the status, headers and the first half of the echo at once, then
//!   the rest after `<ms>` (at most one hour), so a test can prove nobody times out mid-body.
//!
//! Special requests, on every path:
//!
//! - a Knative probe (`K-Network-Probe: probe`, as in Knative's `pkg/http/probe`) answers `200`
//!   with `K-Network-Hash` copied from the request (and the usual echo); without a non-empty
//!   `K-Network-Hash` it answers `400`; probes never touch `/retry-once` state;
//! - an HTTP/1.1 WebSocket upgrade (`Upgrade: websocket` with a `Sec-WebSocket-Key`) answers
//!   `101 Switching Protocols` with the RFC 6455 `Sec-WebSocket-Accept`, then echoes every byte
//!   it receives on the upgraded connection until EOF (no WebSocket framing is parsed);
//! - gRPC (`content-type: application/grpc*`) goes to the standard `grpc.health.v1.Health`
//!   service, which reports `SERVING` for the empty service name; other gRPC services answer
//!   `UNIMPLEMENTED`. gRPC responses carry `x-revision: NAME` too (initial metadata).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, Context};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{
    CONNECTION, CONTENT_TYPE, HOST, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE,
};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine as _;
use clap::Parser;
use futures::StreamExt as _;
use serde::Serialize;
use serde_json::Value;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::codegen::Service;

/// Address every EndpointSlice endpoint must have for us to serve it.
const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Longest delay `/delay/<ms>` accepts (one hour).
const MAX_DELAY_MS: u64 = 3_600_000;
/// Deepest directory nesting followed under `--manifests` (guards against symlink loops).
const MAX_DEPTH: usize = 32;
/// Request bodies are drained (so HTTP/1.1 connections stay reusable) up to this size.
const MAX_DRAIN_BYTES: usize = 1 << 20;
const REVISION_HEADER: HeaderName = HeaderName::from_static("x-revision");
const PROBE_HEADER: HeaderName = HeaderName::from_static("k-network-probe");
const HASH_HEADER: HeaderName = HeaderName::from_static("k-network-hash");
/// The GUID RFC 6455 appends to `Sec-WebSocket-Key` to compute `Sec-WebSocket-Accept`.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

#[derive(Debug, Parser)]
#[command(
    name = "demo-upstream",
    about = "Tiny HTTP/1.1 + h2c echo server standing in for Knative revisions"
)]
struct Args {
    /// Folder (or file) of Kubernetes YAML; one listener per port of every EndpointSlice with
    /// an endpoint at 127.0.0.1, named after its `kubernetes.io/service-name` label.
    #[arg(long, value_name = "DIR")]
    manifests: Vec<PathBuf>,

    /// Extra listener `NAME=ADDR` (ADDR is `IP:PORT` or just `PORT` for 127.0.0.1:PORT;
    /// port 0 picks a free port). Repeatable.
    #[arg(long, value_name = "NAME=ADDR", value_parser = parse_listen)]
    listen: Vec<ListenSpec>,
}

/// One listener to start: the revision name it answers as and where.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ListenSpec {
    name: String,
    addr: SocketAddr,
}

impl fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.addr)
    }
}

fn parse_listen(s: &str) -> Result<ListenSpec, String> {
    let (name, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=ADDR, got {s:?}"))?;
    let name = name.trim();
    validate_name(name)?;
    let addr = addr.trim();
    let addr = match addr.parse::<u16>() {
        Ok(port) => SocketAddr::new(IpAddr::V4(LOOPBACK), port),
        Err(_) => addr
            .parse::<SocketAddr>()
            .map_err(|e| format!("bad address {addr:?} (want IP:PORT or PORT): {e}"))?,
    };
    Ok(ListenSpec {
        name: name.to_string(),
        addr,
    })
}

/// A name must be non-empty and usable as an HTTP header value (`x-revision`).
fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty listener name".to_string());
    }
    if !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "listener name {name:?} must be printable ASCII without spaces"
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Manifests

/// All `*.yaml` / `*.yml` files under `root` (or `root` itself when it is a file), sorted.
fn yaml_files(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let meta =
        std::fs::metadata(root).with_context(|| format!("cannot read {}", root.display()))?;
    let mut out = Vec::new();
    if meta.is_file() {
        out.push(root.to_path_buf());
    } else {
        collect_yaml_files(root, 0, &mut BTreeSet::new(), &mut out);
    }
    out.sort();
    Ok(out)
}

/// Walks `dir` recursively; `seen` holds the canonical folders already visited, so a symlink
/// back to an ancestor (or a folder linked twice) is read once.
fn collect_yaml_files(
    dir: &Path,
    depth: usize,
    seen: &mut BTreeSet<PathBuf>,
    out: &mut Vec<PathBuf>,
) {
    if depth > MAX_DEPTH {
        return;
    }
    if let Ok(canonical) = std::fs::canonicalize(dir) {
        if !seen.insert(canonical) {
            return;
        }
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        eprintln!(
            "demo-upstream: skipping unreadable folder {}",
            dir.display()
        );
        return;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            collect_yaml_files(&path, depth + 1, seen, out);
        } else if meta.is_file() && is_yaml(&path) {
            out.push(path);
        }
    }
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// Splits a YAML stream into its documents' source text, so that one broken document does not
/// hide the others (a multi-document reader stops at the first syntax error).
fn split_documents(text: &str) -> Vec<String> {
    let mut docs = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim_end();
        if trimmed == "---" || line.starts_with("--- ") || line.starts_with("---\t") {
            docs.push(std::mem::take(&mut current));
            // Content may follow the marker on the same line (`--- {a: 1}`).
            current.push_str(&line[3..]);
            current.push('\n');
        } else if trimmed == "..." {
            docs.push(std::mem::take(&mut current));
        } else if line.starts_with('%') && current.trim().is_empty() {
            // A directive (`%YAML 1.2`) before the document start marker.
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs.push(current);
    docs.retain(|d| !d.trim().is_empty());
    docs
}

/// The parsed documents of one file; unparsable documents are reported and skipped.
fn parse_documents(path: &Path, text: &str) -> Vec<Value> {
    split_documents(text)
        .into_iter()
        .filter_map(|doc| match serde_saphyr::from_str::<Value>(&doc) {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!(
                    "demo-upstream: {}: skipping unparsable document: {e}",
                    path.display()
                );
                None
            }
        })
        .collect()
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()?.get(key)
}

fn get_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    get(v, key)?.as_str()
}

/// Listeners for one document, if it is an EndpointSlice with an endpoint at 127.0.0.1.
fn listeners_from_slice(doc: &Value) -> Vec<ListenSpec> {
    let is_slice = get_str(doc, "kind") == Some("EndpointSlice")
        && get_str(doc, "apiVersion").is_some_and(|a| a.starts_with("discovery.k8s.io/"));
    if !is_slice {
        return Vec::new();
    }
    let metadata = get(doc, "metadata");
    let name = metadata
        .and_then(|m| get(m, "labels"))
        .and_then(|l| get_str(l, "kubernetes.io/service-name"))
        .or_else(|| metadata.and_then(|m| get_str(m, "name")));
    let Some(name) = name else {
        return Vec::new();
    };
    if let Err(e) = validate_name(name) {
        eprintln!("demo-upstream: skipping EndpointSlice: {e}");
        return Vec::new();
    }
    let on_loopback = get(doc, "endpoints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|ep| get(ep, "addresses")?.as_array())
        .flatten()
        .any(|a| a.as_str().map(str::trim) == Some("127.0.0.1"));
    if !on_loopback {
        return Vec::new();
    }
    get(doc, "ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| get(p, "port")?.as_u64())
        .filter_map(|p| u16::try_from(p).ok())
        .filter(|&p| p != 0)
        .map(|port| ListenSpec {
            name: name.to_string(),
            addr: SocketAddr::new(IpAddr::V4(LOOPBACK), port),
        })
        .collect()
}

fn listeners_from_manifests(root: &Path) -> anyhow::Result<Vec<ListenSpec>> {
    let mut out = Vec::new();
    for file in yaml_files(root)? {
        let text = match std::fs::read(&file) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                eprintln!("demo-upstream: skipping {}: {e}", file.display());
                continue;
            }
        };
        for doc in parse_documents(&file, &text) {
            out.extend(listeners_from_slice(&doc));
        }
    }
    Ok(out)
}

/// Drops exact duplicates; the same address under two names is an error.
fn dedup(specs: Vec<ListenSpec>) -> anyhow::Result<Vec<ListenSpec>> {
    let mut by_addr: BTreeMap<SocketAddr, String> = BTreeMap::new();
    let mut out = Vec::new();
    for spec in specs {
        if spec.addr.port() != 0 {
            if let Some(existing) = by_addr.get(&spec.addr) {
                if *existing == spec.name {
                    continue;
                }
                bail!(
                    "address {} is claimed by both {existing:?} and {:?}",
                    spec.addr,
                    spec.name
                );
            }
            by_addr.insert(spec.addr, spec.name.clone());
        }
        out.push(spec);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// HTTP

#[derive(Debug, Serialize)]
struct Echo<'a> {
    revision: &'a str,
    host: String,
    path: String,
    protocol: String,
    headers: BTreeMap<String, String>,
}

fn header_map_json(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        out.entry(name.as_str().to_string())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

/// What a special path (`/status/<code>`, `/delay/<ms>`, `/retry-once/<key>`,
/// `/slow-body/<ms>`) asks for.
#[derive(Debug, PartialEq, Eq)]
enum Special {
    None,
    Status(StatusCode),
    Delay(Duration),
    RetryOnce(String),
    SlowBody(Duration),
    Bad(String),
}

fn parse_delay(arg: &str) -> Result<Duration, String> {
    arg.parse::<u64>()
        .ok()
        .filter(|ms| *ms <= MAX_DELAY_MS)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("bad delay {arg:?} (want 0..{MAX_DELAY_MS} ms)"))
}

fn special(path: &str) -> Special {
    let trimmed = path.trim_start_matches('/');
    let mut segments = trimmed.split('/');
    let (Some(kind), Some(arg)) = (segments.next(), segments.next()) else {
        return Special::None;
    };
    match kind {
        "status" => match arg.parse::<u16>().ok().filter(|c| (200..=999).contains(c)) {
            Some(code) => match StatusCode::from_u16(code) {
                Ok(code) => Special::Status(code),
                Err(_) => Special::Bad(format!("bad status code {arg:?}")),
            },
            None => Special::Bad(format!("bad status code {arg:?} (want 200..999)")),
        },
        "delay" => parse_delay(arg).map_or_else(Special::Bad, Special::Delay),
        "slow-body" => parse_delay(arg).map_or_else(Special::Bad, Special::SlowBody),
        "retry-once" => {
            // The key is the whole rest of the path, so it may contain slashes.
            let key = &trimmed["retry-once/".len()..];
            if key.is_empty() {
                Special::Bad("missing key (want /retry-once/<key>)".to_string())
            } else {
                Special::RetryOnce(key.to_string())
            }
        }
        _ => Special::None,
    }
}

/// The `/retry-once/<key>` keys one listener has already answered `503` for.
#[derive(Debug, Default)]
struct RetryOnce {
    seen: Mutex<HashSet<String>>,
}

impl RetryOnce {
    /// True for the first call with `key`, false for every later one.
    fn first(&self, key: &str) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.contains(key) {
            false
        } else {
            seen.insert(key.to_string());
            true
        }
    }
}

/// Everything one listener's handler needs.
struct Listener {
    name: Arc<str>,
    retry_once: RetryOnce,
    /// `grpc.health.v1.Health` (tonic routes as an axum router).
    grpc: Router,
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 section 4.2.2).
fn websocket_accept(key: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(WEBSOCKET_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha1.finalize())
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

fn is_websocket_upgrade(req: &Request) -> bool {
    req.version() == Version::HTTP_11
        && req
            .headers()
            .get_all(UPGRADE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|token| token.trim().eq_ignore_ascii_case("websocket"))
}

/// Answers `101` and echoes every byte of the upgraded connection back until EOF.
fn websocket(name: &str, mut req: Request) -> Response {
    let Some(key) = req.headers().get(SEC_WEBSOCKET_KEY).cloned() else {
        return with_revision(
            name,
            (
                StatusCode::BAD_REQUEST,
                "websocket upgrade without Sec-WebSocket-Key\n",
            ),
        );
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                eprintln!("demo-upstream: websocket upgrade failed: {e}");
                return;
            }
        };
        let mut io = hyper_util::rt::TokioIo::new(upgraded);
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if io.write_all(&buf[..n]).await.is_err() || io.flush().await.is_err() {
                        break;
                    }
                }
            }
        }
        let _ = io.shutdown().await;
    });
    let accept = websocket_accept(key.as_bytes());
    let mut resp = with_revision(name, StatusCode::SWITCHING_PROTOCOLS);
    let headers = resp.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}

/// Hands a gRPC request to the health service and tags the answer with `x-revision`.
async fn grpc(listener: &Listener, req: Request) -> Response {
    let mut svc = listener.grpc.clone();
    let ready = std::future::poll_fn(|cx| <Router as Service<Request>>::poll_ready(&mut svc, cx));
    let resp = match ready.await {
        Ok(()) => svc.call(req).await,
        Err(e) => Err(e),
    };
    match resp {
        Ok(resp) => with_revision(&listener.name, resp),
        Err(e) => match e {},
    }
}

async fn handle(State(listener): State<Arc<Listener>>, req: Request) -> Response {
    let name = &*listener.name;
    if is_grpc(req.headers()) {
        return grpc(&listener, req).await;
    }
    if is_websocket_upgrade(&req) {
        return websocket(name, req);
    }

    let (parts, body) = req.into_parts();
    // Drain the request body so an HTTP/1.1 connection can be reused; its content is not echoed.
    let _ = axum::body::to_bytes(body, MAX_DRAIN_BYTES).await;

    let host = parts
        .headers
        .get(HOST)
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| parts.uri.path().to_string());
    let echo = Echo {
        revision: name,
        host,
        path,
        protocol: format!("{:?}", parts.version),
        headers: header_map_json(&parts.headers),
    };
    let mut line = serde_json::to_string(&echo).unwrap_or_else(|_| "{}".to_string());
    line.push('\n');

    if parts.headers.get(PROBE_HEADER).map(HeaderValue::as_bytes) == Some(b"probe") {
        // Knative's probe handler: answers the probe itself, whatever the path.
        return match parts.headers.get(HASH_HEADER).filter(|h| !h.is_empty()) {
            Some(hash) => {
                let mut resp = json_response(name, StatusCode::OK, line);
                resp.headers_mut().insert(HASH_HEADER, hash.clone());
                resp
            }
            None => with_revision(
                name,
                (
                    StatusCode::BAD_REQUEST,
                    "a probe request must contain a non-empty \"K-Network-Hash\" header\n",
                ),
            ),
        };
    }

    let status = match special(parts.uri.path()) {
        Special::None => StatusCode::OK,
        Special::Status(code) => code,
        Special::Delay(d) => {
            tokio::time::sleep(d).await;
            StatusCode::OK
        }
        Special::RetryOnce(key) => {
            if listener.retry_once.first(&key) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            }
        }
        Special::SlowBody(d) => return slow_body(name, line, d),
        Special::Bad(msg) => {
            return with_revision(name, (StatusCode::BAD_REQUEST, format!("{msg}\n")));
        }
    };
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        // These statuses carry no body.
        return with_revision(name, status);
    }
    json_response(name, status, line)
}

/// `200` with the first half of `line` at once and the rest after `delay`.
fn slow_body(name: &str, line: String, delay: Duration) -> Response {
    let mut mid = line.len() / 2;
    while !line.is_char_boundary(mid) {
        mid += 1;
    }
    let mut first = line.into_bytes();
    let rest = first.split_off(mid);
    let chunks = futures::stream::iter([Ok::<_, Infallible>(Bytes::from(first))]).chain(
        futures::stream::once(async move {
            tokio::time::sleep(delay).await;
            Ok(Bytes::from(rest))
        }),
    );
    json_response(name, StatusCode::OK, Body::from_stream(chunks))
}

fn json_response(name: &str, status: StatusCode, body: impl Into<Body>) -> Response {
    let mut resp = with_revision(name, (status, body.into()));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn with_revision(name: &str, resp: impl IntoResponse) -> Response {
    let mut resp = resp.into_response();
    if let Ok(v) = HeaderValue::from_str(name) {
        resp.headers_mut().insert(REVISION_HEADER, v);
    }
    resp
}

fn router(name: &str) -> Router {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = Listener {
        name: Arc::from(name),
        retry_once: RetryOnce::default(),
        grpc: tonic::service::Routes::new(health).into_axum_router(),
    };
    Router::new()
        .fallback(handle)
        .with_state(Arc::new(listener))
}

// ---------------------------------------------------------------------------------------------
// main

async fn run(args: Args) -> anyhow::Result<()> {
    let mut specs = Vec::new();
    for dir in &args.manifests {
        let found = listeners_from_manifests(dir)?;
        if found.is_empty() {
            eprintln!(
                "demo-upstream: no EndpointSlice with an endpoint at 127.0.0.1 under {}",
                dir.display()
            );
        }
        specs.extend(found);
    }
    specs.extend(args.listen.iter().cloned());
    let specs = dedup(specs)?;
    if specs.is_empty() {
        bail!("nothing to serve: give --manifests DIR (with EndpointSlices at 127.0.0.1) and/or --listen NAME=ADDR");
    }

    // Bind everything first so a taken port fails the whole start before anything is announced.
    let mut bound = Vec::with_capacity(specs.len());
    for spec in &specs {
        let listener = tokio::net::TcpListener::bind(spec.addr)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} for revision {} (is the port already in use?)",
                    spec.addr, spec.name
                )
            })?;
        let local = listener.local_addr().unwrap_or(spec.addr);
        bound.push((spec.name.clone(), local, listener));
    }

    let mut servers = tokio::task::JoinSet::new();
    for (name, local, listener) in bound {
        println!("revision {name} listening on {local}");
        let app = router(&name);
        servers.spawn(async move {
            axum::serve(listener, app)
                .await
                .with_context(|| format!("listener {local} for revision {name} failed"))
        });
    }

    tokio::select! {
        res = servers.join_next() => match res {
            Some(Ok(Err(e))) => Err(e),
            Some(Err(e)) => Err(anyhow::anyhow!("listener task failed: {e}")),
            _ => Ok(()),
        },
        () = shutdown_signal() => Ok(()),
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn main() {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("demo-upstream: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(args)) {
        eprintln!("demo-upstream: error: {e:#}");
        std::process::exit(1);
    }
}

/// The blocking WebSocket and gRPC clients the end-to-end tests use, checked here against a
/// listener directly.
#[cfg(test)]
use demo_upstream::clients as upstream_clients;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_listen_specs() {
        assert_eq!(
            parse_listen("a=127.0.0.1:1234").unwrap(),
            ListenSpec {
                name: "a".into(),
                addr: "127.0.0.1:1234".parse().unwrap()
            }
        );
        assert_eq!(
            parse_listen("b=0").unwrap().addr,
            "127.0.0.1:0".parse().unwrap()
        );
        assert!(parse_listen("noequals").is_err());
        assert!(parse_listen("=127.0.0.1:1").is_err());
        assert!(parse_listen("a b=127.0.0.1:1").is_err());
        assert!(parse_listen("a=nonsense").is_err());
    }

    #[test]
    fn finds_loopback_slices_and_skips_the_rest() {
        let text = "\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: rev-1-abcde
  labels: {kubernetes.io/service-name: rev-1}
addressType: IPv4
endpoints: [{addresses: [\"127.0.0.1\"], conditions: {ready: true}}]
ports: [{name: http, port: 19001, protocol: TCP}, {name: x, port: 70000}]
---
this: [is not: valid
---
apiVersion: discovery.k8s.io/v1beta1
kind: EndpointSlice
metadata: {name: other-abcde, labels: {kubernetes.io/service-name: other}}
endpoints: [{addresses: [\"10.0.0.1\"]}]
ports: [{name: http, port: 19002}]
--- {apiVersion: v1, kind: ConfigMap, metadata: {name: x}}
...
---
- just
- a list
";
        let docs = parse_documents(Path::new("t.yaml"), text);
        assert_eq!(docs.len(), 4);
        let specs: Vec<_> = docs.iter().flat_map(listeners_from_slice).collect();
        assert_eq!(
            specs,
            vec![ListenSpec {
                name: "rev-1".into(),
                addr: "127.0.0.1:19001".parse().unwrap()
            }]
        );
    }

    #[test]
    fn dedup_rejects_conflicting_names() {
        let a = parse_listen("a=19001").unwrap();
        let b = parse_listen("b=19001").unwrap();
        assert_eq!(dedup(vec![a.clone(), a.clone()]).unwrap(), vec![a.clone()]);
        assert!(dedup(vec![a, b]).is_err());
    }

    #[test]
    fn special_paths() {
        assert_eq!(special("/"), Special::None);
        assert_eq!(special("/status"), Special::None);
        assert_eq!(
            special("/status/503"),
            Special::Status(StatusCode::SERVICE_UNAVAILABLE)
        );
        assert_eq!(
            special("/delay/250"),
            Special::Delay(Duration::from_millis(250))
        );
        assert!(matches!(special("/status/abc"), Special::Bad(_)));
        assert!(matches!(special("/status/100"), Special::Bad(_)));
        assert!(matches!(special("/delay/-1"), Special::Bad(_)));
        assert!(matches!(special("/delay/99999999999"), Special::Bad(_)));
        assert_eq!(special("/retry-once"), Special::None);
        assert_eq!(special("/retry-once/k1"), Special::RetryOnce("k1".into()));
        assert_eq!(special("/retry-once/a/b"), Special::RetryOnce("a/b".into()));
        assert!(matches!(special("/retry-once/"), Special::Bad(_)));
        assert_eq!(
            special("/slow-body/1500"),
            Special::SlowBody(Duration::from_millis(1500))
        );
        assert!(matches!(special("/slow-body/x"), Special::Bad(_)));
        assert!(matches!(special("/slow-body/99999999999"), Special::Bad(_)));
    }

    #[test]
    fn retry_once_fails_each_key_once() {
        let state = RetryOnce::default();
        assert!(state.first("a"));
        assert!(!state.first("a"));
        assert!(!state.first("a"));
        assert!(state.first("b"));
        assert!(!state.first("b"));
        // Listeners do not share keys.
        assert!(RetryOnce::default().first("a"));
    }

    #[test]
    fn websocket_accept_matches_rfc_6455() {
        assert_eq!(
            websocket_accept(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(
            upstream_clients::websocket_accept("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    /// Starts listener `name` on a free loopback port in a background runtime.
    fn start(name: &str) -> SocketAddr {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let app = router(name);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        addr
    }

    fn client_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn live_listener_special_behaviours() {
        let addr = start("rev-live");
        let base = format!("http://{addr}");
        let rt = client_runtime();
        rt.block_on(async {
            for h2 in [false, true] {
                let builder = reqwest::Client::builder();
                let client = if h2 {
                    builder.http2_prior_knowledge()
                } else {
                    builder.http1_only()
                }
                .build()
                .unwrap();

                // The plain echo still works.
                let resp = client.get(format!("{base}/x")).send().await.unwrap();
                assert_eq!(resp.status(), 200);
                assert_eq!(resp.headers()["x-revision"], "rev-live");
                let echo: serde_json::Value =
                    serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
                assert_eq!(echo["path"], "/x");
                let want_protocol = if h2 { "HTTP/2.0" } else { "HTTP/1.1" };
                assert_eq!(echo["protocol"], want_protocol);

                // Probe: answered (200) whatever the path, with the hash echoed.
                let resp = client
                    .get(format!("{base}/status/500"))
                    .header("K-Network-Probe", "probe")
                    .header("K-Network-Hash", "abc123")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
                assert_eq!(resp.headers()["k-network-hash"], "abc123");
                assert_eq!(resp.headers()["x-revision"], "rev-live");
                let echo: serde_json::Value =
                    serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
                assert_eq!(echo["revision"], "rev-live");
                let resp = client
                    .get(format!("{base}/"))
                    .header("K-Network-Probe", "probe")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 400);
                assert!(resp.headers().get("k-network-hash").is_none());

                // Retry-once: 503 first (a probe does not count), 200 afterwards, per key.
                let key = format!("{base}/retry-once/k-{h2}");
                let probe = client
                    .get(&key)
                    .header("K-Network-Probe", "probe")
                    .header("K-Network-Hash", "h")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(probe.status(), 200);
                let statuses: Vec<u16> = futures::future::join_all(
                    (0..3).map(|_| async { client.get(&key).send().await.unwrap().status() }),
                )
                .await
                .into_iter()
                .map(|s| s.as_u16())
                .collect();
                assert_eq!(statuses.iter().filter(|s| **s == 503).count(), 1);
                assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 2);
                let other = client.get(format!("{key}-other")).send().await.unwrap();
                assert_eq!(other.status(), 503);

                // Slow body: headers and the first chunk at once, the rest after the delay.
                let t0 = std::time::Instant::now();
                let mut resp = client
                    .get(format!("{base}/slow-body/800"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
                assert_eq!(resp.headers()["x-revision"], "rev-live");
                let mut body = resp.chunk().await.unwrap().unwrap().to_vec();
                assert!(!body.is_empty());
                assert!(
                    t0.elapsed() < Duration::from_millis(600),
                    "first chunk after {:?}",
                    t0.elapsed()
                );
                while let Some(chunk) = resp.chunk().await.unwrap() {
                    body.extend_from_slice(&chunk);
                }
                assert!(t0.elapsed() >= Duration::from_millis(800));
                let echo: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(echo["path"], "/slow-body/800");
            }

            // gRPC content-type decides, not the path: an unknown gRPC service answers
            // UNIMPLEMENTED, the health path without gRPC content-type is echoed.
            let h2 = reqwest::Client::builder()
                .http2_prior_knowledge()
                .build()
                .unwrap();
            let resp = h2
                .post(format!("{base}/no.Such/Method"))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(vec![0u8, 0, 0, 0, 0])
                .send()
                .await
                .unwrap();
            assert_eq!(resp.headers()["grpc-status"], "12");
            assert_eq!(resp.headers()["x-revision"], "rev-live");
            let resp = h2
                .post(format!("{base}/grpc.health.v1.Health/Check"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.headers()["content-type"], "application/json");
        });

        // The clients the end-to-end tests use.
        assert_eq!(
            upstream_clients::websocket_roundtrips(addr, "ws.example.com", "/any/path", 5).unwrap(),
            "rev-live"
        );
        assert_eq!(
            upstream_clients::grpc_health_check(addr, "grpc.example.com").unwrap(),
            "rev-live"
        );
        assert_eq!(
            upstream_clients::grpc_health_watch_first(addr, "grpc.example.com").unwrap(),
            "rev-live"
        );
    }
}
