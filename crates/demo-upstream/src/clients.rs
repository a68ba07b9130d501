//! Blocking clients for the demo upstream's WebSocket echo and gRPC health service, usable
//! from plain (non-async) tests, directly against `demo-upstream` or through the gateway.
//!
//! Each helper builds what it needs itself (a std `TcpStream`, or a current-thread tokio
//! runtime), so it must not be called from inside a tokio runtime.
#![allow(dead_code)]

use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use sha1::{Digest, Sha1};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// How long any single read, connect or RPC may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Longest response head accepted from the upgrade request.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The GUID RFC 6455 appends to `Sec-WebSocket-Key` to compute `Sec-WebSocket-Accept`.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 section 4.2.2).
pub fn websocket_accept(key: &str) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(WEBSOCKET_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha1.finalize())
}

/// A fresh random `Sec-WebSocket-Key`: 16 random bytes, base64.
fn websocket_key() -> String {
    let mut bytes = [0u8; 16];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Opens a WebSocket upgrade to `addr` (`Host: host`, request path `path`), checks the `101`
/// and its `Sec-WebSocket-Accept`, then `n` times writes a distinct message and reads the same
/// bytes back. Returns the `x-revision` header of the `101`.
pub fn websocket_roundtrips(
    addr: SocketAddr,
    host: &str,
    path: &str,
    n: usize,
) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| format!("set timeouts: {e}"))?;
    let key = websocket_key();
    let request = format!(
        "GET {path} HTTP/1.1\r\n\
         Host: {host}\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\n\
         Sec-WebSocket-Version: 13\r\n\
         \r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send the upgrade request: {e}"))?;

    // Read the response head byte by byte, so nothing after it is consumed here.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > MAX_HEAD_BYTES {
            return Err("upgrade response head too long".to_string());
        }
        match stream.read(&mut byte) {
            Ok(0) => {
                return Err(format!(
                    "connection closed during the upgrade response: {:?}",
                    String::from_utf8_lossy(&head)
                ))
            }
            Ok(_) => head.push(byte[0]),
            Err(e) => return Err(format!("read the upgrade response: {e}")),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line.split_whitespace().nth(1).unwrap_or_default();
    if status != "101" {
        return Err(format!("expected 101 Switching Protocols, got: {head:?}"));
    }
    let header = |name: &str| {
        head.split("\r\n")
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    };
    let expected = websocket_accept(&key);
    match header("sec-websocket-accept") {
        Some(accept) if accept == expected => {}
        other => {
            return Err(format!(
                "Sec-WebSocket-Accept {other:?}, want {expected:?} (response {head:?})"
            ))
        }
    }
    if !header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
        return Err(format!("101 without Upgrade: websocket: {head:?}"));
    }
    let revision =
        header("x-revision").ok_or_else(|| format!("101 without x-revision: {head:?}"))?;

    for i in 0..n {
        let message = format!("message {i} of {n} ({key})");
        stream
            .write_all(message.as_bytes())
            .map_err(|e| format!("write message {i}: {e}"))?;
        let mut echoed = vec![0u8; message.len()];
        stream
            .read_exact(&mut echoed)
            .map_err(|e| format!("read echo of message {i}: {e}"))?;
        if echoed != message.as_bytes() {
            return Err(format!(
                "echo of message {i} was {:?}, want {message:?}",
                String::from_utf8_lossy(&echoed)
            ));
        }
    }
    Ok(revision)
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))
}

/// A health client over plain HTTP/2 to `addr`, sending `:authority: authority`.
async fn health_client(
    addr: SocketAddr,
    authority: &str,
) -> Result<HealthClient<tonic::transport::Channel>, String> {
    let origin = format!("http://{authority}")
        .parse()
        .map_err(|e| format!("bad authority {authority:?}: {e}"))?;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("bad address {addr}: {e}"))?
        .origin(origin)
        .connect_timeout(TIMEOUT)
        .timeout(TIMEOUT)
        .connect()
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    Ok(HealthClient::new(channel))
}

fn revision(metadata: &tonic::metadata::MetadataMap) -> Result<String, String> {
    metadata
        .get("x-revision")
        .ok_or_else(|| format!("no x-revision in the response metadata: {metadata:?}"))?
        .to_str()
        .map(str::to_string)
        .map_err(|e| format!("x-revision is not text: {e}"))
}

fn check_serving(status: i32) -> Result<(), String> {
    if status == ServingStatus::Serving as i32 {
        Ok(())
    } else {
        Err(format!(
            "health status {:?}, want SERVING",
            ServingStatus::try_from(status)
        ))
    }
}

/// `grpc.health.v1.Health/Check` for service `""` over plain HTTP/2 to `addr` with
/// `:authority: authority`; requires SERVING and returns the `x-revision` response metadata.
pub fn grpc_health_check(addr: SocketAddr, authority: &str) -> Result<String, String> {
    runtime()?.block_on(async {
        let mut client = health_client(addr, authority).await?;
        let response = client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map_err(|s| format!("Check: {s}"))?;
        let revision = revision(response.metadata())?;
        check_serving(response.into_inner().status)?;
        Ok(revision)
    })
}

/// Opens `grpc.health.v1.Health/Watch` (server streaming) for service `""` and returns the
/// `x-revision` response metadata once a SERVING message has arrived.
pub fn grpc_health_watch_first(addr: SocketAddr, authority: &str) -> Result<String, String> {
    runtime()?.block_on(async {
        let mut client = health_client(addr, authority).await?;
        let response = client
            .watch(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map_err(|s| format!("Watch: {s}"))?;
        let revision = revision(response.metadata())?;
        let mut stream = response.into_inner();
        let first = tokio::time::timeout(TIMEOUT, stream.message())
            .await
            .map_err(|_| format!("no Watch message within {TIMEOUT:?}"))?
            .map_err(|s| format!("Watch stream: {s}"))?
            .ok_or("Watch stream ended without a message")?;
        check_serving(first.status)?;
        Ok(revision)
    })
}
