//! KIngress status as Knative expects it (networking `ingress_lifecycle.go`): conditions
//! `LoadBalancerReady`, `NetworkConfigured` and `Ready`, `observedGeneration`, and the
//! public/private load balancers. Pure: the writer (sources/kube_status.rs) decides when.
//!
//! `LoadBalancerReady` (and so `Ready`) turns true only once every connected Envoy has
//! applied a snapshot that contains the KIngress' current generation — the ACK stands in
//! for Knative's HTTP probe of every gateway pod.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use model::ObjectKey;

use super::RejectReason;

/// Everything the status writer needs, published by the pipeline after each translation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IngressStates {
    pub entries: BTreeMap<ObjectKey, IngressState>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct IngressState {
    pub generation: i64,
    pub outcome: Outcome,
    /// The status the object carries now (as watched).
    pub current: Option<Value>,
    /// `spec.tls`, when it has entries.
    pub tls: Option<TlsStatus>,
}

/// Whether a KIngress' `spec.tls` is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsStatus {
    pub hosts: Vec<String>,
    /// Why some of them are not served over HTTPS (`None`: all are).
    pub unserved: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// This generation is in the snapshots from `since_snapshot` on.
    Served { since_snapshot: u64 },
    Rejected {
        reason: RejectReason,
        message: String,
    },
}

/// Where Knative should send traffic: `domainInternal` of the two load balancers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadBalancers {
    pub public_domain: String,
    pub private_domain: String,
}

/// The `status` a KIngress should have. `applied_by_all` is the oldest snapshot every
/// connected Envoy has applied (`None`: no Envoy connected); `now` is RFC 3339, used for
/// conditions whose status changes.
pub fn desired_status(
    state: &IngressState,
    applied_by_all: Option<u64>,
    lbs: &LoadBalancers,
    now: &str,
) -> Value {
    let tls_unserved = state.tls.as_ref().and_then(|t| t.unserved.as_ref());
    let (network, lb) = match &state.outcome {
        Outcome::Served { since_snapshot } => {
            let lb = match applied_by_all {
                // Once Ready, a generation stays Ready (as with Knative's prober): a gateway
                // restarting or a control-plane restart must not flap every Route.
                _ if ready_for(state.current.as_ref(), state.generation) => Cond::True,
                // Ready means every host answers as asked, HTTPS included (Knative's `tls`
                // conformance test sends its HTTPS request once Ready).
                _ if tls_unserved.is_some() => {
                    Cond::Unknown("TLSNotReady", tls_unserved.cloned().unwrap_or_default())
                }
                Some(applied) if applied >= *since_snapshot => Cond::True,
                Some(_) => Cond::Unknown(
                    "Pending",
                    format!(
                        "waiting for every connected Envoy gateway to apply generation {}",
                        state.generation
                    ),
                ),
                None => Cond::Unknown(
                    "NoGateway",
                    "no Envoy gateway is connected to knative-xds".to_string(),
                ),
            };
            (Cond::True, lb)
        }
        Outcome::Rejected {
            reason: RejectReason::HostConflict,
            message,
        } => (
            Cond::True,
            Cond::False("DomainConflict", format!("Ingress rejected: {message}")),
        ),
        Outcome::Rejected {
            reason: RejectReason::Invalid,
            message,
        } => (
            Cond::False("InvalidSpec", message.clone()),
            Cond::Unknown("InvalidSpec", "this generation is not served".to_string()),
        ),
    };
    let ready = match (&network, &lb) {
        (Cond::True, Cond::True) => Cond::True,
        (Cond::False(r, m), _) | (_, Cond::False(r, m)) => Cond::False(r, m.clone()),
        (Cond::Unknown(r, m), _) | (_, Cond::Unknown(r, m)) => Cond::Unknown(r, m.clone()),
    };
    let old = old_conditions(state.current.as_ref());
    let mut conditions = vec![
        condition("LoadBalancerReady", &lb, &old, now),
        condition("NetworkConfigured", &network, &old, now),
        condition("Ready", &ready, &old, now),
    ];
    if let Some(tls) = &state.tls {
        // Informational (severity Warning), as Knative has no such condition of its own.
        let served = match &tls.unserved {
            None => Cond::True,
            Some(why) => Cond::False("TLSNotServed", why.clone()),
        };
        let mut c = condition("TLSServed", &served, &old, now);
        c.insert("severity".into(), json!("Warning"));
        conditions.push(c);
    }
    let mut status = Map::new();
    status.insert("observedGeneration".into(), json!(state.generation));
    status.insert(
        "conditions".into(),
        Value::Array(conditions.into_iter().map(Value::Object).collect()),
    );
    if matches!(lb, Cond::True) {
        status.insert(
            "publicLoadBalancer".into(),
            json!({"ingress": [{"domainInternal": lbs.public_domain}]}),
        );
        status.insert(
            "privateLoadBalancer".into(),
            json!({"ingress": [{"domainInternal": lbs.private_domain}]}),
        );
    }
    Value::Object(status)
}

/// Whether `status` says Ready for `generation`.
fn ready_for(status: Option<&Value>, generation: i64) -> bool {
    status.is_some_and(|s| {
        s.get("observedGeneration").and_then(Value::as_i64) == Some(generation)
            && s.get("conditions")
                .and_then(Value::as_array)
                .is_some_and(|c| {
                    c.iter().any(|c| {
                        c.get("type") == Some(&json!("Ready"))
                            && c.get("status") == Some(&json!("True"))
                    })
                })
    })
}

/// Whether `desired` differs from `current` in anything we manage (transition times
/// aside, which `desired` copies anyway while a condition keeps its status).
pub fn needs_write(current: Option<&Value>, desired: &Value) -> bool {
    let Some(Value::Object(cur)) = current else {
        return true;
    };
    let Value::Object(want) = desired else {
        return false;
    };
    want.iter().any(|(k, v)| cur.get(k) != Some(v))
}

enum Cond {
    True,
    False(&'static str, String),
    Unknown(&'static str, String),
}

fn old_conditions(current: Option<&Value>) -> BTreeMap<String, (String, String)> {
    current
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some((
                c.get("type")?.as_str()?.to_string(),
                (
                    c.get("status")?.as_str()?.to_string(),
                    c.get("lastTransitionTime")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string(),
                ),
            ))
        })
        .collect()
}

fn condition(
    ty: &str,
    cond: &Cond,
    old: &BTreeMap<String, (String, String)>,
    now: &str,
) -> Map<String, Value> {
    let (status, reason, message) = match cond {
        Cond::True => ("True", None, None),
        Cond::False(r, m) => ("False", Some(*r), Some(m.as_str())),
        Cond::Unknown(r, m) => ("Unknown", Some(*r), Some(m.as_str())),
    };
    // Knative keeps the transition time while the status stays the same.
    let since = match old.get(ty) {
        Some((s, t)) if s == status && !t.is_empty() => t.as_str(),
        _ => now,
    };
    let mut c = Map::new();
    c.insert("type".into(), json!(ty));
    c.insert("status".into(), json!(status));
    c.insert("lastTransitionTime".into(), json!(since));
    if let Some(r) = reason {
        c.insert("reason".into(), json!(r));
    }
    if let Some(m) = message {
        c.insert("message".into(), json!(m));
    }
    c
}
