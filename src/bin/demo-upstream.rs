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
//! `{"revision", "host", "path", "protocol", "headers"}`. Special paths: `/status/<code>`
//! answers with that status, `/delay/<ms>` waits that long before answering.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use clap::Parser;
use serde::Serialize;
use serde_yaml::Value;

/// Address every EndpointSlice endpoint must have for us to serve it.
const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Longest delay `/delay/<ms>` accepts (one hour).
const MAX_DELAY_MS: u64 = 3_600_000;
/// Deepest directory nesting followed under `--manifests` (guards against symlink loops).
const MAX_DEPTH: usize = 32;
/// Request bodies are drained (so HTTP/1.1 connections stay reusable) up to this size.
const MAX_DRAIN_BYTES: usize = 1 << 20;
const REVISION_HEADER: HeaderName = HeaderName::from_static("x-revision");

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
/// hide the others (serde_yaml's multi-document iterator stops at the first syntax error).
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
        .filter_map(|doc| match serde_yaml::from_str::<Value>(&doc) {
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
    v.as_mapping()?.get(key)
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
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|ep| get(ep, "addresses")?.as_sequence())
        .flatten()
        .any(|a| a.as_str().map(str::trim) == Some("127.0.0.1"));
    if !on_loopback {
        return Vec::new();
    }
    get(doc, "ports")
        .and_then(Value::as_sequence)
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

/// What a special path (`/status/<code>`, `/delay/<ms>`) asks for.
#[derive(Debug, PartialEq, Eq)]
enum Special {
    None,
    Status(StatusCode),
    Delay(Duration),
    Bad(String),
}

fn special(path: &str) -> Special {
    let mut segments = path.trim_start_matches('/').split('/');
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
        "delay" => match arg.parse::<u64>().ok().filter(|ms| *ms <= MAX_DELAY_MS) {
            Some(ms) => Special::Delay(Duration::from_millis(ms)),
            None => Special::Bad(format!("bad delay {arg:?} (want 0..{MAX_DELAY_MS} ms)")),
        },
        _ => Special::None,
    }
}

async fn handle(State(name): State<Arc<str>>, req: Request) -> Response {
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
        revision: &name,
        host,
        path,
        protocol: format!("{:?}", parts.version),
        headers: header_map_json(&parts.headers),
    };

    let status = match special(parts.uri.path()) {
        Special::None => StatusCode::OK,
        Special::Status(code) => code,
        Special::Delay(d) => {
            tokio::time::sleep(d).await;
            StatusCode::OK
        }
        Special::Bad(msg) => {
            return with_revision(&name, (StatusCode::BAD_REQUEST, format!("{msg}\n")));
        }
    };
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        // These statuses carry no body.
        return with_revision(&name, status);
    }
    let mut line = serde_json::to_string(&echo).unwrap_or_else(|_| "{}".to_string());
    line.push('\n');
    let mut resp = with_revision(&name, (status, line));
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
    Router::new()
        .fallback(handle)
        .with_state(Arc::<str>::from(name))
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
    }
}
