//! `--mode ingress` with Kubernetes: writes KIngress status. Only the replica holding the
//! Lease writes (every replica serves xDS); it patches the `status` subresource of our
//! class' KIngresses whose status differs from what `translate::status` says it should be.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use serde_json::Value;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::server::Shared;
use model::ObjectKey;
use translate::status::{desired_status, needs_write, LoadBalancers};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSettings {
    /// `domainInternal` of the public and private load balancers.
    pub public_domain: String,
    pub private_domain: String,
    pub lease_name: String,
    pub lease_namespace: String,
    pub lease_seconds: u64,
    pub identity: String,
}

/// Status is re-checked this often even without a change (a failed write is retried).
const RECHECK: Duration = Duration::from_secs(5);
/// Lets a burst of ACKs from several Envoys become one pass.
const DEBOUNCE: Duration = Duration::from_millis(10);

pub fn kingress_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("networking.internal.knative.dev", "v1alpha1", "Ingress"),
        "ingresses",
    )
}

/// Runs until `stop`: campaigns for the Lease and, while leader, keeps statuses current.
pub async fn run(
    client: Client,
    shared: Arc<Shared>,
    settings: StatusSettings,
    mut stop: watch::Receiver<bool>,
) {
    let manager = loop {
        let built = LeaseManagerBuilder::new(client.clone(), &settings.lease_name)
            .with_namespace(&settings.lease_namespace)
            .with_identity(&settings.identity)
            .with_duration(settings.lease_seconds)
            .with_grace((settings.lease_seconds / 3).max(1))
            .build()
            .await;
        match built {
            Ok(m) => break m,
            Err(e) => {
                warn!(error = %e, lease = %settings.lease_name, "cannot set up leader election; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(RECHECK) => continue,
                    _ = stop.changed() => return,
                }
            }
        }
    };
    let (mut leader, lease_task) = manager.watch().await;
    let lbs = LoadBalancers {
        public_domain: settings.public_domain.clone(),
        private_domain: settings.private_domain.clone(),
    };
    // What we patched and have not yet seen come back through the watch.
    let mut written: BTreeMap<ObjectKey, Value> = BTreeMap::new();
    let mut was_leader = false;
    loop {
        let is_leader = *leader.borrow_and_update();
        if is_leader != was_leader {
            info!(identity = %settings.identity, leader = is_leader, "KIngress status writer {}", if is_leader { "elected: writing status" } else { "standing by" });
            shared.metrics.leader.set(is_leader as i64);
            was_leader = is_leader;
            written.clear();
        }
        if is_leader {
            write_pending(&client, &shared, &lbs, &mut written).await;
        }
        tokio::select! {
            _ = shared.status_changed.notified() => {
                tokio::time::sleep(DEBOUNCE).await;
            }
            r = leader.changed() => {
                if r.is_err() {
                    break;
                }
            }
            _ = tokio::time::sleep(RECHECK) => {}
            _ = stop.changed() => break,
        }
    }
    // Dropping the receiver makes the lease task release the Lease: a quick hand-over.
    drop(leader);
    let _ = tokio::time::timeout(Duration::from_secs(1), lease_task).await;
}

/// One pass: patches every KIngress whose status is behind.
async fn write_pending(
    client: &Client,
    shared: &Shared,
    lbs: &LoadBalancers,
    written: &mut BTreeMap<ObjectKey, Value>,
) {
    let states = shared.kingress_states();
    let applied = shared.applied_by_all();
    let now = k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    written.retain(|k, _| states.entries.contains_key(k));
    for (key, state) in &states.entries {
        let desired = desired_status(state, applied, lbs, &now);
        if !needs_write(state.current.as_ref(), &desired) {
            written.remove(key);
            continue;
        }
        let comparable = without_times(&desired);
        if written.get(key) == Some(&comparable) {
            continue; // sent; the watch has not echoed it yet
        }
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &key.namespace, &kingress_resource());
        let patch = serde_json::json!({ "status": desired });
        match api
            .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                debug!(ingress = %key, "status written");
                shared.metrics.status_writes.inc();
                written.insert(key.clone(), comparable);
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                warn!(ingress = %key, error = %e, "writing KIngress status failed; will retry");
            }
        }
    }
}

/// The status without condition transition times (they differ between passes).
fn without_times(status: &Value) -> Value {
    let mut s = status.clone();
    if let Some(conds) = s.get_mut("conditions").and_then(Value::as_array_mut) {
        for c in conds {
            if let Some(o) = c.as_object_mut() {
                o.remove("lastTransitionTime");
            }
        }
    }
    s
}
