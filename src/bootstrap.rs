//! `render -o bootstrap`: a rendered snapshot as a static Envoy bootstrap, for running a
//! gateway with no control plane (`envoy -c <(knative-xds render ... -o bootstrap)`).
//!
//! It works on the proto3 JSON `render` prints, so the resources are the very ones `serve`
//! sends; only the references to xDS are replaced by what they name: each listener's RDS by
//! its route configuration, each EDS cluster's endpoints by its load assignment.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// The bootstrap for a snapshot as [`xds::json::snapshot_json`] gives it, and the listeners
/// left out. Rendered with the per-listener route layout: scoped routes have no inline form in
/// every Envoy version. HTTPS listeners are left out: their certificates come over SDS, and
/// a bootstrap holding them would hold private keys, which `render` never prints.
pub(crate) fn from_snapshot_json(snapshot: &Value) -> Result<(Value, Vec<String>), String> {
    let resources = |key: &str| -> Vec<(String, Value)> {
        (snapshot
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten())
        .filter_map(|item| {
            let name = item.get("name")?.as_str()?.to_owned();
            Some((name, without_type(item.get("resource")?.clone())))
        })
        .collect()
    };
    if !resources("scopedRoutes").is_empty() {
        return Err("scoped routes cannot be inlined: render with the per-listener layout".into());
    }
    let routes: BTreeMap<String, Value> = resources("routes").into_iter().collect();
    let endpoints: BTreeMap<String, Value> = resources("endpoints").into_iter().collect();

    let mut listeners = Vec::new();
    let mut left_out = Vec::new();
    for (name, mut listener) in resources("listeners") {
        if listener
            .to_string()
            .contains("tlsCertificateSdsSecretConfigs")
        {
            left_out.push(name);
            continue;
        }
        inline_routes(&mut listener, &routes).map_err(|e| format!("listener {name}: {e}"))?;
        listeners.push(listener);
    }
    let mut clusters = Vec::new();
    for (name, mut cluster) in resources("clusters") {
        let Some(c) = cluster.as_object_mut() else {
            continue;
        };
        if c.get("type").and_then(Value::as_str) == Some("EDS") {
            c.remove("edsClusterConfig");
            c.insert("type".into(), "STATIC".into());
            let assignment = endpoints
                .get(&name)
                .cloned()
                .unwrap_or_else(|| json!({ "clusterName": name }));
            c.insert("loadAssignment".into(), assignment);
        }
        clusters.push(cluster);
    }
    Ok((
        json!({
            "staticResources": { "listeners": listeners, "clusters": clusters },
        }),
        left_out,
    ))
}

/// A resource from an `Any`: static resources are the messages themselves.
fn without_type(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.remove("@type");
    }
    v
}

/// Replaces every `rds` reference (an HTTP connection manager's) below `v` by the route
/// configuration it names.
fn inline_routes(v: &mut Value, routes: &BTreeMap<String, Value>) -> Result<(), String> {
    match v {
        Value::Object(m) => {
            if let Some(rds) = m.remove("rds") {
                let name = rds
                    .get("routeConfigName")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let route = routes
                    .get(name)
                    .ok_or_else(|| format!("route configuration {name:?} is not rendered"))?;
                m.insert("routeConfig".into(), route.clone());
            }
            if m.contains_key("scopedRoutes") {
                return Err("uses scoped routes".into());
            }
            m.values_mut().try_for_each(|v| inline_routes(v, routes))
        }
        Value::Array(a) => a.iter_mut().try_for_each(|v| inline_routes(v, routes)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rds_and_eds_are_inlined() {
        let snapshot = json!({
            "listeners": [{"name": "l", "resource": {"@type": "x", "name": "l",
                "filterChains": [{"filters": [{"typedConfig": {"rds": {"routeConfigName": "r"}}}]}]}}],
            "routes": [{"name": "r", "resource": {"@type": "y", "name": "r", "virtualHosts": []}}],
            "clusters": [
                {"name": "a", "resource": {"name": "a", "type": "EDS", "edsClusterConfig": {}}},
                {"name": "b", "resource": {"name": "b", "type": "EDS", "edsClusterConfig": {}}},
                {"name": "d", "resource": {"name": "d", "type": "STRICT_DNS"}},
            ],
            "endpoints": [{"name": "a", "resource": {"clusterName": "a", "endpoints": [{}]}}],
        });
        let (b, left_out) = from_snapshot_json(&snapshot).unwrap();
        assert!(left_out.is_empty());
        let l = &b["staticResources"]["listeners"][0];
        assert_eq!(
            l["filterChains"][0]["filters"][0]["typedConfig"],
            json!({"routeConfig": {"name": "r", "virtualHosts": []}})
        );
        assert!(l.get("@type").is_none());
        let c = &b["staticResources"]["clusters"];
        assert_eq!(c[0]["type"], "STATIC");
        assert_eq!(c[0]["loadAssignment"]["endpoints"], json!([{}]));
        assert!(c[0].get("edsClusterConfig").is_none());
        // No endpoints: an empty assignment (503), as EDS would give.
        assert_eq!(c[1]["loadAssignment"], json!({"clusterName": "b"}));
        assert_eq!(c[2]["type"], "STRICT_DNS");
        let missing =
            json!({"listeners": [{"name": "l", "resource": {"rds": {"routeConfigName": "nope"}}}]});
        assert!(from_snapshot_json(&missing).unwrap_err().contains("nope"));
    }
}
