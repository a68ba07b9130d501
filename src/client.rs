//! `knative-xds status` and `knative-xds explain`: clients of a running server's
//! `knative_xds.v1.Inspect` API.

use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::SystemTime;

use anyhow::Context;
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage};

use crate::cli::{ExplainArgs, Output, StatusArgs};
use runtime::api::inspect_client::InspectClient;
use runtime::api::{self, ExplainRequest, ListProxiesRequest};

async fn connect(server: &str) -> anyhow::Result<InspectClient<tonic::transport::Channel>> {
    let url = if server.contains("://") {
        server.to_string()
    } else {
        format!("http://{server}")
    };
    InspectClient::connect(url)
        .await
        .with_context(|| format!("connecting to knative-xds at {server}"))
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
    let mut client = connect(&args.client.server).await?;
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
    let mut client = connect(&args.client.server).await?;
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
