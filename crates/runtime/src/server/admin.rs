//! Admin HTTP: health, readiness, Prometheus metrics and debug views.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;

use super::state::Shared;
use xds::{json::any_to_json, ResourceType};

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
                    "name": xds::names::wire(&r.name),
                    "version": r.version,
                    "resource": any_to_json(&r.shown()).unwrap_or_else(|e| json!({"error": e})),
                })
            })
            .collect();
        out.insert(ty.short_name().to_string(), items.into());
    }
    Json(serde_json::Value::Object(out)).into_response()
}

async fn proxies(State(s): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let proxies: Vec<_> = s
        .proxies_with_status()
        .await
        .into_iter()
        .map(|mut p| {
            p.status = p.status.into_wire();
            p
        })
        .collect();
    Json(json!(proxies))
}

async fn rejections(State(s): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(json!(*s.report()))
}

async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}
