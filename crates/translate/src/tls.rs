//! HTTPS: which hosts each HTTPS listener serves, with which certificate, and the Envoy
//! resources for it (the listeners' filter chains by SNI, and SDS Secrets).
//!
//! Certificates come from `kubernetes.io/tls` Secrets named by the objects (`ir::Ingress::tls`)
//! and by `--default-tls-secret` (external hosts without their own). Each Secret is checked as
//! Envoy would load it before it may enter a snapshot ([`certs::check`]): Envoy rejects a whole
//! response for one bad certificate, so a bad one must only ever harm its own hosts. A Secret
//! that turns bad keeps serving its last good certificate; a missing, expired or
//! not-yet-valid one is not served, and its hosts get no TLS (handshakes for them fail, or
//! get the default certificate).
//!
//! Pure: the time is an input, and [`Planner`] remembers only checked results.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_api::pb::envoy::config::core::v3::{
    data_source, transport_socket, DataSource, TransportSocket,
};
use envoy_api::pb::envoy::config::listener::v3::{
    filter, listener_filter, Filter, FilterChain, FilterChainMatch, Listener, ListenerFilter,
};
use envoy_api::pb::envoy::config::route::v3::VirtualHost;
use envoy_api::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_api::pb::envoy::extensions::transport_sockets::tls::v3::{
    secret, tls_parameters, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig, Secret,
    TlsCertificate, TlsParameters,
};

use model::objects::{PrivateKey, SECRET_TYPE_TLS};
use model::{Kind, ObjectKey, ObjectRef, Store};

use super::envoy::{ads, any, hcm, socket_address, virtual_host, RouteLayout};
use super::ir::{Ingress, Visibility};
use super::Problem;

/// The external HTTPS listener (and its scope set).
pub const EXTERNAL_TLS: &str = "external-tls";
/// The cluster-local HTTPS listener (and its scope set).
pub const INTERNAL_TLS: &str = "internal-tls";

/// Minimum TLS version offered to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    #[default]
    V1_2,
    V1_3,
}

/// The HTTPS listeners' settings, from flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub external_port: u16,
    pub internal_port: u16,
    /// Serves external hosts that have no certificate of their own.
    pub default_secret: Option<ObjectKey>,
    pub min_version: TlsVersion,
    /// OpenSSL-style names, in preference order (TLS 1.2 and lower); empty: Envoy's default.
    pub cipher_suites: Vec<String>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            external_port: 8443,
            internal_port: 8444,
            default_secret: None,
            min_version: TlsVersion::V1_2,
            cipher_suites: Vec::new(),
        }
    }
}

/// The cipher suite names BoringSSL (Envoy) accepts for TLS 1.2, as `--tls-cipher-suites`
/// takes them: an unknown name would make Envoy reject every HTTPS listener.
pub const CIPHER_SUITES: &[&str] = &[
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-PSK-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-PSK-AES128-CBC-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "ECDHE-PSK-AES256-CBC-SHA",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA",
    "AES256-SHA",
    "PSK-AES128-CBC-SHA",
    "PSK-AES256-CBC-SHA",
    "DES-CBC3-SHA",
];

/// Checks `--tls-cipher-suites` entries: known names, or `[a|b]` groups of them.
pub fn check_cipher_suites(suites: &[String]) -> Result<(), String> {
    for s in suites {
        let inner = s
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .unwrap_or(s);
        for name in inner.split('|') {
            if !CIPHER_SUITES.contains(&name) {
                return Err(format!(
                    "unknown cipher suite {name:?} (known: {})",
                    CIPHER_SUITES.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// The hosts of `ing` each HTTPS listener serves: (external, cluster-local). External hosts
/// are served when the object names a certificate for them or a default certificate is
/// set; cluster-local ones only with their own.
pub fn https_hosts(ing: &Ingress, default_cert: bool) -> (Vec<Arc<str>>, Vec<Arc<str>>) {
    let (mut external, mut internal) = (Vec::new(), Vec::new());
    if ing.tls.is_empty() && !default_cert {
        return (external, internal);
    }
    for rule in &ing.rules {
        let out = match rule.visibility {
            Visibility::ExternalIP => &mut external,
            Visibility::ClusterLocal => &mut internal,
        };
        out.extend(served_hosts(ing, rule, default_cert).cloned());
    }
    (external, internal)
}

/// The hosts of one rule an HTTPS listener serves (see [`https_hosts`]).
fn served_hosts<'a>(
    ing: &'a Ingress,
    rule: &'a super::ir::Rule,
    default_cert: bool,
) -> impl Iterator<Item = &'a Arc<str>> + 'a {
    let default = default_cert && rule.visibility == Visibility::ExternalIP;
    rule.hosts
        .iter()
        .filter(move |h| default || ing.tls.iter().any(|t| t.hosts.contains(h)))
}

/// The HTTPS listeners' scopes of one object (scoped layout): one per served host, pointing
/// at the object's RouteConfiguration (which has every rule's real routes, whatever the
/// plain listener does with `Redirected`).
pub fn https_scopes_with<S>(
    ing: &Ingress,
    default_cert: bool,
    route_config: &Arc<str>,
    mut make_scope: impl FnMut(&str, &str, &Arc<str>) -> S,
) -> Vec<S> {
    let (external, internal) = https_hosts(ing, default_cert);
    let mut out = Vec::with_capacity(external.len() + internal.len());
    for (listener, hosts) in [(EXTERNAL_TLS, external), (INTERNAL_TLS, internal)] {
        for h in hosts {
            out.push(make_scope(listener, &h, route_config));
        }
    }
    out
}

/// The HTTPS listeners' virtual hosts of one object (per-listener layout): (external,
/// cluster-local), each rule's served hosts with its real routes.
pub fn https_virtual_hosts(
    ing: &Ingress,
    default_cert: bool,
) -> (Vec<VirtualHost>, Vec<VirtualHost>) {
    let (mut ext, mut int) = (Vec::new(), Vec::new());
    if ing.tls.is_empty() && !default_cert {
        return (ext, int);
    }
    for rule in &ing.rules {
        let out = match rule.visibility {
            Visibility::ExternalIP => &mut ext,
            Visibility::ClusterLocal => &mut int,
        };
        let hosts: Vec<Arc<str>> = served_hosts(ing, rule, default_cert).cloned().collect();
        if let Some(name) = hosts.first() {
            let routes = rule.paths.iter().map(super::envoy::make_route).collect();
            out.push(virtual_host(name, &hosts, routes));
        }
    }
    (ext, int)
}

/// A certificate checked as Envoy would load it (the bytes as the Secret holds them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub crt: Arc<[u8]>,
    pub key: PrivateKey,
    /// Shared: a plan copies it for each object naming the Secret.
    pub info: Arc<certs::CertInfo>,
}

/// One filter chain of an HTTPS listener: a certificate and the SNI names it serves (none:
/// the default chain, last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// The SDS Secret's name ([`secret_name`]).
    pub secret: Arc<str>,
    pub server_names: Vec<Arc<str>>,
}

/// What is wrong with a certificate an object names, and what is served instead.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TlsProblem {
    /// The object naming the Secret (the Secret itself for `--default-tls-secret`).
    pub object: ObjectRef,
    pub secret: ObjectKey,
    pub problem: Problem,
    /// Its last good certificate is still served.
    pub kept_last_good: bool,
}

/// A certificate being served, for status and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    pub secret: ObjectKey,
    pub info: Arc<certs::CertInfo>,
    /// It is the last good one (the Secret now holds a bad certificate).
    pub last_good: bool,
}

/// The HTTPS side of a snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsPlan {
    pub external: Vec<Chain>,
    pub internal: Vec<Chain>,
    /// The Secrets the chains reference, by SDS name, each valid.
    pub secrets: BTreeMap<Arc<str>, Checked>,
    pub served: Vec<Served>,
    pub problems: Vec<TlsProblem>,
    /// When (Unix seconds) a certificate's validity next changes: plan again then.
    pub next_change: Option<i64>,
    /// Objects and hosts whose `spec.tls` is served (KIngress status `TLSServed`).
    pub served_hosts: BTreeMap<ObjectRef, BTreeSet<Arc<str>>>,
    /// Every Secret named (served or not): what the Kubernetes source watches.
    pub named: BTreeSet<ObjectKey>,
}

/// The SDS name of a Secret's certificate: `namespace/name` (Secrets are namespaced).
pub fn secret_name(key: &ObjectKey) -> Arc<str> {
    key.to_string().into()
}

/// Keeps what planning learnt between plans: each Secret's checked certificate (by the
/// store's stamp, so an unchanged Secret is not parsed again) and its last good one.
#[derive(Debug, Default)]
pub struct Planner {
    checked: BTreeMap<ObjectKey, (u64, Result<Checked, String>)>,
    last_good: BTreeMap<ObjectKey, Checked>,
    /// Who named each Secret in the last plan: (object, index of its TLS entry), or the
    /// Secret itself for `--default-tls-secret` ([`DEFAULT_ENTRY`]).
    named_by: BTreeMap<ObjectKey, Vec<(ObjectRef, usize)>>,
    /// Each Secret's decision in the last plan.
    decisions: BTreeMap<ObjectKey, Decision>,
}

/// [`Planner::named_by`]'s index for `--default-tls-secret`.
const DEFAULT_ENTRY: usize = usize::MAX;

impl Planner {
    pub fn new() -> Planner {
        Planner::default()
    }

    /// The Secret `key` checked (cached by stamp); `Err` says why it cannot be served.
    fn check(&mut self, store: &Store, key: &ObjectKey) -> Result<Checked, String> {
        let (Some(stamp), Some(secret)) = (store.secrets.stamp(key), store.secrets.get(key)) else {
            return Err(format!("Secret {key} not found"));
        };
        if let Some((s, r)) = self.checked.get(key) {
            if *s == stamp {
                return r.clone();
            }
        }
        let r = check_secret(secret);
        self.checked.insert(key.clone(), (stamp, r.clone()));
        r
    }

    /// Plans the HTTPS listeners for the served objects at `now` (Unix seconds; `None`:
    /// certificates are not checked against the time).
    pub fn plan<'a>(
        &mut self,
        ingresses: impl IntoIterator<Item = &'a Ingress>,
        store: &Store,
        settings: &TlsSettings,
        now: Option<i64>,
    ) -> TlsPlan {
        let mut plan = TlsPlan::default();
        // listener (0 external, 1 internal) → Secret → hosts
        let mut chains: [BTreeMap<ObjectKey, BTreeSet<Arc<str>>>; 2] = Default::default();
        let mut decided: BTreeMap<ObjectKey, Decision> = BTreeMap::new();
        let report = |plan: &mut TlsPlan,
                      d: &Decision,
                      object: &ObjectRef,
                      field: &dyn Fn() -> String,
                      key: &ObjectKey| {
            if let Some(message) = &d.problem {
                plan.problems.push(TlsProblem {
                    object: object.clone(),
                    secret: key.clone(),
                    problem: Problem::new(field(), message.clone()),
                    kept_last_good: d.kept,
                });
            }
        };
        // Who names what, for `update_secrets`.
        let mut named_by: BTreeMap<ObjectKey, Vec<(ObjectRef, usize)>> = BTreeMap::new();
        for ing in ingresses {
            if ing.tls.is_empty() {
                continue;
            }
            // Within one object a host may be named twice; nearly always there is one entry.
            let mut taken: Vec<(&Arc<str>, usize)> = Vec::new();
            for (i, t) in ing.tls.iter().enumerate() {
                named_by
                    .entry(t.secret.clone())
                    .or_default()
                    .push((ing.origin.clone(), i));
                if !decided.contains_key(&t.secret) {
                    let d = self.decide(store, &t.secret, now);
                    decided.insert(t.secret.clone(), d);
                }
                let d = &decided[&t.secret];
                let field = || tls_field(ing.origin.kind, i);
                report(&mut plan, d, &ing.origin, &field, &t.secret);
                for h in &t.hosts {
                    if let Some(&(_, j)) = taken.iter().find(|(x, _)| *x == h) {
                        if j != i {
                            let d = Decision {
                                served: None,
                                problem: Some(format!(
                                    "host {h} already has the certificate of {}",
                                    tls_field(ing.origin.kind, j)
                                )),
                                kept: false,
                            };
                            let field = || field().replace("secretName", "hosts");
                            report(&mut plan, &d, &ing.origin, &field, &t.secret);
                        }
                        continue;
                    }
                    taken.push((h, i));
                    if d.served.is_none() {
                        continue;
                    }
                    let rule = ing.rules.iter().find(|r| r.hosts.contains(h));
                    let listener = match rule.map(|r| r.visibility) {
                        Some(Visibility::ExternalIP) => 0,
                        Some(Visibility::ClusterLocal) => 1,
                        None => continue, // not a host of its rules
                    };
                    chains[listener]
                        .entry(t.secret.clone())
                        .or_default()
                        .insert(h.clone());
                    plan.served_hosts
                        .entry(ing.origin.clone())
                        .or_default()
                        .insert(h.clone());
                }
            }
        }
        let mut default_chain = None;
        if let Some(key) = &settings.default_secret {
            if !decided.contains_key(key) {
                let d = self.decide(store, key, now);
                decided.insert(key.clone(), d);
            }
            let d = &decided[key];
            let object = ObjectRef {
                kind: Kind::Secret,
                key: key.clone(),
            };
            let field = || "--default-tls-secret".to_string();
            report(&mut plan, d, &object, &field, key);
            named_by
                .entry(key.clone())
                .or_default()
                .push((object, DEFAULT_ENTRY));
            if d.served.is_some() {
                default_chain = Some(key.clone());
            }
        }
        let mut served_secrets = BTreeSet::new();
        for (listener, by_secret) in chains.into_iter().enumerate() {
            let out = if listener == 0 {
                &mut plan.external
            } else {
                &mut plan.internal
            };
            for (secret, hosts) in by_secret {
                out.push(Chain {
                    secret: secret_name(&secret),
                    server_names: hosts.into_iter().collect(),
                });
                served_secrets.insert(secret);
            }
        }
        if let Some(key) = default_chain {
            plan.external.push(Chain {
                secret: secret_name(&key),
                server_names: Vec::new(),
            });
            served_secrets.insert(key);
        }
        for key in served_secrets {
            let Some(d) = decided.get(&key) else { continue };
            let Some(c) = &d.served else { continue };
            plan.served.push(Served {
                secret: key.clone(),
                info: c.info.clone(),
                last_good: d.kept,
            });
            plan.secrets.insert(secret_name(&key), c.clone());
        }
        // When any named certificate's validity changes (one not yet valid becomes valid).
        for key in decided.keys().filter(|_| now.is_some()) {
            let now = now.unwrap_or_default();
            if let Some((_, Ok(c))) = self.checked.get(key) {
                plan.next_change = min_opt(plan.next_change, certs::next_change(&c.info, now));
            }
            if let Some(c) = self.last_good.get(key) {
                plan.next_change = min_opt(plan.next_change, certs::next_change(&c.info, now));
            }
        }
        // Forget Secrets no one names any more.
        self.checked.retain(|k, _| decided.contains_key(k));
        self.last_good.retain(|k, _| decided.contains_key(k));
        plan.named = decided.keys().cloned().collect();
        self.decisions = decided;
        self.named_by = named_by;
        sort_problems(&mut plan.problems);
        plan
    }

    /// After only the Secrets `changed` changed (a rotation, say): decides those again and,
    /// when none of them starts or stops being served, updates `plan` in place — their
    /// certificates, problems and expiry — without looking at anything else: the chains,
    /// and so the HTTPS listeners, stay. Returns `false` (and leaves `plan` alone) when a
    /// full [`Planner::plan`] is needed.
    pub fn update_secrets(
        &mut self,
        plan: &mut TlsPlan,
        store: &Store,
        changed: &[ObjectKey],
        now: Option<i64>,
    ) -> bool {
        let mut fresh = Vec::new();
        for key in changed {
            let Some(old) = self.decisions.get(key) else {
                continue; // named by no one
            };
            let was_served = old.served.is_some();
            let d = self.decide(store, key, now);
            if d.served.is_some() != was_served {
                return false;
            }
            fresh.push((key, d));
        }
        for (key, d) in fresh {
            let name = secret_name(key);
            if let Some(c) = &d.served {
                plan.secrets.insert(name, c.clone());
                if let Some(s) = plan.served.iter_mut().find(|s| s.secret == *key) {
                    s.info = c.info.clone();
                    s.last_good = d.kept;
                }
                if let Some(at) = now.and_then(|now| certs::next_change(&c.info, now)) {
                    plan.next_change = min_opt(plan.next_change, Some(at));
                }
            }
            // Its decision's problems are replaced; a host named twice stays reported.
            plan.problems
                .retain(|p| p.secret != *key || p.problem.field.ends_with(".hosts"));
            if let Some(message) = &d.problem {
                for (object, i) in self.named_by.get(key).into_iter().flatten() {
                    let field = match *i {
                        DEFAULT_ENTRY => "--default-tls-secret".to_string(),
                        i => tls_field(object.kind, i),
                    };
                    plan.problems.push(TlsProblem {
                        object: object.clone(),
                        secret: key.clone(),
                        problem: Problem::new(field, message.clone()),
                        kept_last_good: d.kept,
                    });
                }
            }
            self.decisions.insert(key.clone(), d);
        }
        sort_problems(&mut plan.problems);
        true
    }

    /// What to serve for the Secret `key` at `now`, and what is wrong with it.
    fn decide(&mut self, store: &Store, key: &ObjectKey, now: Option<i64>) -> Decision {
        let in_time = |c: &Checked| match now {
            Some(now) => certs::check_time(&c.info, now),
            None => Ok(()),
        };
        let not_served = |m: String| Decision {
            served: None,
            problem: Some(format!("{m}; its hosts are not served over HTTPS")),
            kept: false,
        };
        match self.check(store, key) {
            Ok(c) => match in_time(&c) {
                Ok(()) => {
                    self.last_good.insert(key.clone(), c.clone());
                    Decision {
                        served: Some(c),
                        problem: None,
                        kept: false,
                    }
                }
                Err(e) => {
                    self.last_good.remove(key);
                    not_served(format!("Secret {key}: {e}"))
                }
            },
            Err(e) if store.secrets.get(key).is_none() => {
                // Deleted: the intent is to stop serving it.
                self.last_good.remove(key);
                not_served(e)
            }
            Err(e) => {
                let last = self
                    .last_good
                    .get(key)
                    .filter(|c| in_time(c).is_ok())
                    .cloned();
                match last {
                    Some(c) => Decision {
                        problem: Some(format!(
                            "Secret {key}: {e}; its last good certificate (serial {}) is still served",
                            c.info.serial
                        )),
                        served: Some(c),
                        kept: true,
                    },
                    None => not_served(format!("Secret {key}: {e}")),
                }
            }
        }
    }
}

/// What a plan serves for one Secret.
#[derive(Debug, Clone)]
struct Decision {
    served: Option<Checked>,
    problem: Option<String>,
    /// `served` is the last good certificate, not what the Secret holds now.
    kept: bool,
}

/// Problems in one order whichever way a plan was made.
fn sort_problems(problems: &mut [TlsProblem]) {
    problems.sort_by(|a, b| {
        (&a.object, &a.problem.field, &a.secret).cmp(&(&b.object, &b.problem.field, &b.secret))
    });
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The field of an object that names its `i`th certificate.
fn tls_field(kind: Kind, i: usize) -> String {
    match kind {
        Kind::DomainMapping => "spec.tls.secretName".to_string(),
        _ => format!("spec.tls[{i}].secretName"),
    }
}

/// A stored Secret checked as a certificate, apart from the time.
fn check_secret(s: &model::objects::Secret) -> Result<Checked, String> {
    if let Some(p) = &s.problem {
        return Err(p.clone());
    }
    if s.type_ != SECRET_TYPE_TLS {
        return Err(format!("type is {:?}, not {SECRET_TYPE_TLS}", s.type_));
    }
    let (Some(crt), Some(key)) = (&s.tls_crt, &s.tls_key) else {
        return Err(if s.tls_crt.is_none() {
            "tls.crt: missing".to_string()
        } else {
            "tls.key: missing".to_string()
        });
    };
    let info = Arc::new(certs::check(crt, &key.0).map_err(|e| e.to_string())?);
    Ok(Checked {
        crt: crt.clone(),
        key: key.clone(),
        info,
    })
}

/// The SDS reference every chain uses. Its bytes must never change across releases: Envoy
/// keys its secret providers by name *and* this config, and a changed config leaves a new
/// provider whose subscription is never sent (envoy#47309, Envoy Gateway #9519).
pub fn sds_secret_config(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.to_string(),
        sds_config: Some(ads()),
    }
}

/// The SDS resource of a checked certificate (the Secret's bytes unchanged).
pub fn secret(name: &str, c: &Checked) -> Secret {
    let inline = |b: &[u8]| DataSource {
        specifier: Some(data_source::Specifier::InlineBytes(b.to_vec())),
        ..Default::default()
    };
    Secret {
        name: name.to_string(),
        r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: Some(inline(&c.crt)),
            private_key: Some(inline(&c.key.0)),
            ..Default::default()
        })),
    }
}

fn tls_context(secret: &str, settings: &TlsSettings) -> TransportSocket {
    let min = match settings.min_version {
        TlsVersion::V1_2 => tls_parameters::TlsProtocol::TlSv12,
        TlsVersion::V1_3 => tls_parameters::TlsProtocol::TlSv13,
    };
    let ctx = DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_params: Some(TlsParameters {
                tls_minimum_protocol_version: min as i32,
                cipher_suites: settings.cipher_suites.clone(),
                ..Default::default()
            }),
            alpn_protocols: vec!["h2".to_string(), "http/1.1".to_string()],
            tls_certificate_sds_secret_configs: vec![sds_secret_config(secret)],
            ..Default::default()
        }),
        ..Default::default()
    };
    TransportSocket {
        name: "envoy.transport_sockets.tls".to_string(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(any(&ctx))),
    }
}

/// An HTTPS listener: the TLS inspector reads the SNI, and a filter chain per certificate
/// (the default one last, matching any name) terminates TLS and routes as the plain
/// listener does, with the listener's own scopes or RouteConfiguration.
pub fn https_listener(
    name: &str,
    address: &str,
    port: u16,
    layout: RouteLayout,
    chains: &[Chain],
    settings: &TlsSettings,
) -> Listener {
    let hcm = any(&hcm(name, layout));
    Listener {
        name: name.to_string(),
        address: Some(socket_address(address, port)),
        listener_filters: vec![ListenerFilter {
            name: "envoy.filters.listener.tls_inspector".to_string(),
            config_type: Some(listener_filter::ConfigType::TypedConfig(any(
                &TlsInspector::default(),
            ))),
            ..Default::default()
        }],
        filter_chains: chains
            .iter()
            .map(|c| FilterChain {
                name: if c.server_names.is_empty() {
                    format!("default:{}", c.secret)
                } else {
                    format!("sni:{}", c.secret)
                },
                filter_chain_match: (!c.server_names.is_empty()).then(|| FilterChainMatch {
                    server_names: c.server_names.iter().map(|h| h.to_string()).collect(),
                    ..Default::default()
                }),
                transport_socket: Some(tls_context(&c.secret, settings)),
                filters: vec![Filter {
                    name: "envoy.filters.network.http_connection_manager".to_string(),
                    config_type: Some(filter::ConfigType::TypedConfig(hcm.clone())),
                }],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}
