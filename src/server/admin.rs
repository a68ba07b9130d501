//! Admin HTTP: health, readiness, Prometheus metrics and debug views.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;

use super::state::Shared;
use crate::xds::{json::any_to_json, ResourceType};

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/debug/snapshot", get(snapshot))
        .route("/debug/proxies", get(proxies))
        .route("/debug/rejections", get(rejections))
        .with_state(shared)
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    if s.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the first snapshot\n",
        )
            .into_response()
    }
}

async fn snapshot(State(s): State<Arc<Shared>>) -> Response {
    let Some(snap) = s.current() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no snapshot yet\n").into_response();
    };
    let mut out = serde_json::Map::new();
    for ty in ResourceType::ORDERED {
        let items: Vec<_> = snap
            .resources(ty)
            .values()
            .map(|r| {
                json!({
                    "name": r.name,
                    "version": r.version,
                    "resource": any_to_json(&r.any).unwrap_or_else(|e| json!({"error": e})),
                })
            })
            .collect();
        out.insert(ty.short_name().to_string(), items.into());
    }
    Json(serde_json::Value::Object(out)).into_response()
}

async fn proxies(State(s): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(json!(s.proxies()))
}

async fn rejections(State(s): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(json!(*s.report()))
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    let mut m = String::new();
    let c = &s.counters;
    let _ = writeln!(m, "# HELP knative_xds_connected_proxies Envoy ADS streams open.\n# TYPE knative_xds_connected_proxies gauge");
    let _ = writeln!(m, "knative_xds_connected_proxies {}", s.proxies().len());
    let _ = writeln!(m, "# HELP knative_xds_responses_total Discovery responses sent, by type.\n# TYPE knative_xds_responses_total counter");
    for (i, ty) in ResourceType::ORDERED.iter().enumerate() {
        let _ = writeln!(
            m,
            "knative_xds_responses_total{{type=\"{}\"}} {}",
            ty.short_name(),
            c.responses[i].load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(m, "# HELP knative_xds_nacks_total Configs Envoy rejected, by type.\n# TYPE knative_xds_nacks_total counter");
    for (i, ty) in ResourceType::ORDERED.iter().enumerate() {
        let _ = writeln!(
            m,
            "knative_xds_nacks_total{{type=\"{}\"}} {}",
            ty.short_name(),
            c.nacks[i].load(Ordering::Relaxed)
        );
    }
    let _ = writeln!(m, "# HELP knative_xds_sent_bytes_total Encoded bytes of discovery responses.\n# TYPE knative_xds_sent_bytes_total counter");
    let _ = writeln!(
        m,
        "knative_xds_sent_bytes_total {}",
        c.bytes_sent.load(Ordering::Relaxed)
    );
    let _ = writeln!(m, "# HELP knative_xds_snapshots_total Snapshots published.\n# TYPE knative_xds_snapshots_total counter");
    let _ = writeln!(
        m,
        "knative_xds_snapshots_total {}",
        c.snapshots.load(Ordering::Relaxed)
    );
    let _ = writeln!(m, "# HELP knative_xds_resources Resources in the current snapshot, by type.\n# TYPE knative_xds_resources gauge");
    if let Some(snap) = s.current() {
        for ty in ResourceType::ORDERED {
            let _ = writeln!(
                m,
                "knative_xds_resources{{type=\"{}\"}} {}",
                ty.short_name(),
                snap.resources(ty).len()
            );
        }
    }
    let report = s.report();
    let _ = writeln!(m, "# HELP knative_xds_rejected_objects Objects that failed translation.\n# TYPE knative_xds_rejected_objects gauge");
    let _ = writeln!(
        m,
        "knative_xds_rejected_objects {}",
        report.rejections.len()
    );
    let _ = writeln!(m, "# HELP knative_xds_file_errors Manifest files that failed to parse.\n# TYPE knative_xds_file_errors gauge");
    let _ = writeln!(m, "knative_xds_file_errors {}", report.file_errors.len());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], m).into_response()
}
