//! `knative-xds status` and `knative-xds explain`: clients of a running server's
//! `knative_xds.v1.Inspect` API.

use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::SystemTime;

use anyhow::Context;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};

use crate::cli::{ClientArgs, ExplainArgs, Output, StatusArgs};
use runtime::api::inspect_client::InspectClient;
use runtime::api::{self, ExplainRequest, ListProxiesRequest};

async fn connect(args: &ClientArgs) -> anyhow::Result<InspectClient<tonic::transport::Channel>> {
    let server = &args.server;
    let Some(ca) = &args.tls_ca else {
        let url = if server.contains("://") {
            server.to_string()
        } else {
            format!("http://{server}")
        };
        return InspectClient::connect(url)
            .await
            .with_context(|| format!("connecting to knative-xds at {server}"));
    };
    // TLS by hand (tokio-rustls under tonic's channel): tonic's own would need another TLS
    // stack built in.
    let addr = server
        .split_once("://")
        .map_or(server.as_str(), |(_, a)| a)
        .to_string();
    let name = match &args.tls_server_name {
        Some(n) => n.clone(),
        None => addr
            .rsplit_once(':')
            .map_or(addr.as_str(), |(h, _)| h)
            .trim_matches(['[', ']'])
            .to_string(),
    };
    let config = client_tls(ca, args.tls_cert.as_deref(), args.tls_key.as_deref())?;
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .with_context(|| format!("--server {server}"))?;
    let channel = endpoint
        .connect_with_connector(tower::service_fn(move |_| {
            let (connector, addr, name) = (connector.clone(), addr.clone(), name.clone());
            async move {
                let tcp = tokio::net::TcpStream::connect(&addr).await?;
                let name = rustls::pki_types::ServerName::try_from(name)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
        .with_context(|| format!("connecting to knative-xds at {server} over TLS"))?;
    Ok(InspectClient::new(channel))
}

/// A TLS client configuration trusting `ca`, presenting `cert`/`key` when given.
fn client_tls(
    ca: &std::path::Path,
    cert: Option<&std::path::Path>,
    key: Option<&std::path::Path>,
) -> anyhow::Result<rustls::ClientConfig> {
    use runtime::server::tls::{identity, roots};
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca, "--tls-ca")?);
    let mut config = match (cert, key) {
        (Some(cert), Some(key)) => {
            let read = |path: &std::path::Path, flag: &str| {
                std::fs::read(path).with_context(|| format!("{flag} {}", path.display()))
            };
            let (cert_pem, key_pem) = (read(cert, "--tls-cert")?, read(key, "--tls-key")?);
            let (chain, key) = identity(
                (&cert_pem, &format!("--tls-cert {}", cert.display())),
                (&key_pem, &format!("--tls-key {}", key.display())),
            )?;
            builder.with_client_auth_cert(chain, key)?
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// Canonical proto3 JSON of one of our API messages.
fn to_json<M: Message>(msg: &M, full_name: &str) -> anyhow::Result<String> {
    static POOL: OnceLock<Option<DescriptorPool>> = OnceLock::new();
    let pool = POOL
        .get_or_init(|| DescriptorPool::decode(api::FILE_DESCRIPTOR_SET).ok())
        .as_ref()
        .context("decoding the API descriptor set")?;
    let desc = pool
        .get_message_by_name(full_name)
        .with_context(|| format!("no descriptor for {full_name}"))?;
    let dynamic = DynamicMessage::decode(desc, msg.encode_to_vec().as_slice())?;
    Ok(serde_json::to_string_pretty(&dynamic)?)
}

fn short(v: &str) -> &str {
    &v[..v.len().min(8)]
}

fn ago(ms: i64) -> String {
    let now = runtime::server::state::unix_ms(SystemTime::now());
    let s = ((now - ms).max(0) / 1000) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, cell)| {
                if i + 1 == r.len() {
                    cell.clone()
                } else {
                    format!("{cell:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

pub(crate) async fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let mut client = connect(&args.client).await?;
    let resp = client
        .list_proxies(ListProxiesRequest {})
        .await
        .context("ListProxies")?
        .into_inner();
    if args.client.output == Output::Json {
        outln!("{}", to_json(&resp, "knative_xds.v1.ListProxiesResponse")?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = vec![[
        "NODE",
        "ADDRESS",
        "PROTOCOL",
        "CDS",
        "EDS",
        "LDS",
        "SRDS",
        "RDS",
        "CONNECTED",
        "LAST NACK",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect::<Vec<_>>()];
    for p in &resp.proxies {
        let mut row = vec![p.node_id.clone(), p.address.clone(), p.protocol.clone()];
        let mut nack = String::new();
        for ty in ["CDS", "EDS", "LDS", "SRDS", "RDS"] {
            row.push(match p.types.iter().find(|t| t.r#type == ty) {
                None => "-".to_string(),
                Some(t) if t.in_sync => format!("SYNCED {}", short(&t.current_version)),
                Some(t) if !t.pending_version.is_empty() => {
                    format!("SENT {}", short(&t.pending_version))
                }
                Some(t) if !t.last_nack.is_empty() => {
                    nack = format!("{ty}: {}", t.last_nack);
                    format!("NACKED (has {})", short(&t.acked_version))
                }
                Some(t) => format!("STALE {}", short(&t.acked_version)),
            });
        }
        row.push(ago(p.connected_since_ms));
        row.push(if nack.is_empty() { "-".into() } else { nack });
        rows.push(row);
    }
    out!("{}", table(&rows))?;
    outln!(
        "current snapshot {}; {} proxies",
        short(&resp.snapshot_version),
        resp.proxies.len()
    )?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn explain(args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let mut headers = Vec::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("header {h:?} is not `Name: value`"))?;
        headers.push(api::Header {
            name: name.trim().to_string(),
            value: value.trim().to_string(),
        });
    }
    let mut client = connect(&args.client).await?;
    let resp = client
        .explain(ExplainRequest {
            host: args.host.clone(),
            path: args.path.clone(),
            headers,
            listener: if args.internal {
                api::Listener::Internal
            } else {
                api::Listener::External
            } as i32,
        })
        .await
        .context("Explain")?
        .into_inner();
    if args.client.output == Output::Json {
        outln!("{}", to_json(&resp, "knative_xds.v1.ExplainResponse")?)?;
        return Ok(if resp.matched {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    outln!("listener:      {}", resp.listener)?;
    if !resp.matched {
        outln!("no match:      {}", resp.reason)?;
        return Ok(ExitCode::FAILURE);
    }
    if let Some(o) = &resp.source {
        let generation = if o.generation > 0 {
            format!(" (generation {})", o.generation)
        } else {
            String::new()
        };
        outln!(
            "from:          {} {}/{}{generation}",
            o.kind,
            o.namespace,
            o.name
        )?;
    }
    outln!("virtual host:  {}", resp.virtual_host)?;
    let matches: Vec<String> = resp
        .header_matches
        .iter()
        .map(|h| format!("{}={}", h.name, h.value))
        .collect();
    outln!(
        "route:         #{} prefix {}{}",
        resp.route_index,
        resp.path_prefix,
        if matches.is_empty() {
            String::new()
        } else {
            format!(" headers {}", matches.join(", "))
        }
    )?;
    if !resp.host_rewrite.is_empty() {
        outln!("host rewrite:  {}", resp.host_rewrite)?;
    }
    for h in &resp.headers {
        outln!("sets header:   {}: {}", h.name, h.value)?;
    }
    let mut rows = vec![vec![
        "PERCENT".to_string(),
        "REVISION/SERVICE".into(),
        "CLUSTER".into(),
        "HEADERS SET".into(),
    ]];
    for t in &resp.targets {
        let hs: Vec<String> = t
            .headers
            .iter()
            .map(|h| format!("{}: {}", h.name, h.value))
            .collect();
        rows.push(vec![
            format!("{}%", t.percent),
            format!("{}/{}", t.namespace, t.service),
            t.cluster.clone(),
            hs.join(", "),
        ]);
    }
    out!("{}", table(&rows))?;
    Ok(ExitCode::SUCCESS)
}
