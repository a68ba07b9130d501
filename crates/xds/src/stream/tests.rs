//! The ADS streams' tests: shared helpers and cross-protocol cases here, each protocol's in
//! `tests/sotw.rs` and `tests/delta.rs`.

mod delta;
mod sotw;

use super::*;
use envoy_api::pb::envoy::config::cluster::v3::Cluster;
use envoy_api::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, LocalityLbEndpoints};
use envoy_api::pb::envoy::config::listener::v3::Listener;
use envoy_api::pb::envoy::config::route::v3::{
    RouteConfiguration, ScopedRouteConfiguration, VirtualHost,
};
use envoy_api::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_api::pb::google::protobuf::Any;
use prost::Message;
use std::collections::HashMap;

use crate::snapshot::aggregate_version;
use crate::wire::{DeltaResponse, SotwResponse};

/// The streams' calls with prost responses (what the client decodes).
trait SotwProst {
    fn sotw(
        &mut self,
        r: DiscoveryRequest,
        s: &Snapshot,
    ) -> Result<Vec<DiscoveryResponse>, ProtocolError>;
    fn sotw_changed(&mut self, s: &Snapshot) -> Vec<DiscoveryResponse>;
}

impl SotwProst for SotwStream {
    fn sotw(
        &mut self,
        r: DiscoveryRequest,
        s: &Snapshot,
    ) -> Result<Vec<DiscoveryResponse>, ProtocolError> {
        let out = self.handle_request(r, s)?;
        Ok(out.iter().map(SotwResponse::to_prost).collect())
    }
    fn sotw_changed(&mut self, s: &Snapshot) -> Vec<DiscoveryResponse> {
        let out = self.snapshot_changed(s);
        out.iter().map(SotwResponse::to_prost).collect()
    }
}

trait DeltaProst {
    fn delta(
        &mut self,
        r: DeltaDiscoveryRequest,
        s: &Snapshot,
    ) -> Result<Vec<DeltaDiscoveryResponse>, ProtocolError>;
    fn delta_changed(&mut self, s: &Snapshot) -> Vec<DeltaDiscoveryResponse>;
}

impl DeltaProst for DeltaStream {
    fn delta(
        &mut self,
        r: DeltaDiscoveryRequest,
        s: &Snapshot,
    ) -> Result<Vec<DeltaDiscoveryResponse>, ProtocolError> {
        let out = self.handle_request(r, s)?;
        Ok(out.iter().map(DeltaResponse::to_prost).collect())
    }
    fn delta_changed(&mut self, s: &Snapshot) -> Vec<DeltaDiscoveryResponse> {
        let out = self.snapshot_changed(s);
        out.iter().map(DeltaResponse::to_prost).collect()
    }
}

use ResourceType::{Cluster as Cds, Endpoint as Eds, Listener as Lds, Route as Rds};

/// A type Envoy may ask for that this server does not serve (ECDS).
const UNSERVED_URL: &str = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig";
const RUNTIME_URL: &str = "type.googleapis.com/envoy.service.runtime.v3.Runtime";

// `tag` varies the content (and so the version) without changing the name.
fn cluster(name: &str, tag: &str) -> Arc<Resource> {
    let c = Cluster {
        name: name.into(),
        alt_stat_name: tag.into(),
        ..Default::default()
    };
    Resource::new(name, &c)
}

fn cla(name: &str, priority: u32) -> Arc<Resource> {
    let c = ClusterLoadAssignment {
        cluster_name: name.into(),
        endpoints: vec![LocalityLbEndpoints {
            priority,
            ..Default::default()
        }],
        ..Default::default()
    };
    Resource::new(name, &c)
}

fn listener(name: &str, tag: &str) -> Arc<Resource> {
    let l = Listener {
        name: name.into(),
        stat_prefix: tag.into(),
        ..Default::default()
    };
    Resource::new(name, &l)
}

fn route(name: &str, tag: &str) -> Arc<Resource> {
    let r = RouteConfiguration {
        name: name.into(),
        virtual_hosts: vec![VirtualHost {
            name: tag.into(),
            domains: vec!["*".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    Resource::new(name, &r)
}

/// An SDS certificate; `tag` varies its bytes.
fn secret(name: &str, tag: &str) -> Arc<Resource> {
    use envoy_api::pb::envoy::config::core::v3::{data_source, DataSource};
    use envoy_api::pb::envoy::extensions::transport_sockets::tls::v3::{
        secret, Secret, TlsCertificate,
    };
    let s = Secret {
        name: name.into(),
        r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: Some(DataSource {
                specifier: Some(data_source::Specifier::InlineString(tag.into())),
                ..Default::default()
            }),
            private_key: Some(DataSource {
                specifier: Some(data_source::Specifier::InlineString(format!("key {tag}"))),
                ..Default::default()
            }),
            ..Default::default()
        })),
    };
    Resource::new(name, &s)
}

fn map(rs: &[Arc<Resource>]) -> ResourceMap {
    rs.iter().map(|r| (r.name.clone(), r.clone())).collect()
}

fn snap(
    clusters: &[Arc<Resource>],
    endpoints: &[Arc<Resource>],
    listeners: &[Arc<Resource>],
    routes: &[Arc<Resource>],
) -> Snapshot {
    Snapshot::new(map(clusters), map(endpoints), map(listeners), map(routes))
}

/// Clusters a, b with CLAs, listener http, routes r1, r2.
fn base() -> Snapshot {
    snap(
        &[cluster("a", "1"), cluster("b", "1")],
        &[cla("a", 1), cla("b", 1)],
        &[listener("http", "1")],
        &[route("r1", "1"), route("r2", "1")],
    )
}

fn node(id: &str) -> Node {
    Node {
        id: id.into(),
        cluster: "gw".into(),
        ..Default::default()
    }
}

fn req(ty: ResourceType, names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: ty.type_url().into(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        version_info: version.into(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

fn ack(resp: &DiscoveryResponse, names: &[&str]) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: resp.type_url.clone(),
        resource_names: names.iter().map(|s| s.to_string()).collect(),
        version_info: resp.version_info.clone(),
        response_nonce: resp.nonce.clone(),
        ..Default::default()
    }
}

fn status(message: &str) -> Status {
    Status {
        code: 3,
        message: message.into(),
        details: vec![],
    }
}

fn nack(resp: &DiscoveryResponse, names: &[&str], accepted: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: accepted.into(),
        error_detail: Some(status("bad cluster")),
        ..ack(resp, names)
    }
}

fn any_name(a: &Any) -> String {
    let b = a.value.as_slice();
    match ResourceType::from_type_url(&a.type_url) {
        Some(Cds) => Cluster::decode(b).unwrap().name,
        Some(Eds) => ClusterLoadAssignment::decode(b).unwrap().cluster_name,
        Some(Lds) => Listener::decode(b).unwrap().name,
        Some(Rds) => RouteConfiguration::decode(b).unwrap().name,
        Some(ResourceType::Secret) => {
            envoy_api::pb::envoy::extensions::transport_sockets::tls::v3::Secret::decode(b)
                .unwrap()
                .name
        }
        Some(ResourceType::ScopedRoute) | None => panic!("unexpected type {}", a.type_url),
    }
}

fn names(resp: &DiscoveryResponse) -> Vec<String> {
    resp.resources.iter().map(any_name).collect()
}

fn types(resps: &[DiscoveryResponse]) -> Vec<Option<ResourceType>> {
    resps
        .iter()
        .map(|r| ResourceType::from_type_url(&r.type_url))
        .collect()
}

fn one(mut resps: Vec<DiscoveryResponse>) -> DiscoveryResponse {
    assert_eq!(resps.len(), 1, "expected one response: {resps:?}");
    resps.pop().unwrap()
}

fn dreq(ty: ResourceType, sub: &[&str], unsub: &[&str], nonce: &str) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: ty.type_url().into(),
        resource_names_subscribe: sub.iter().map(|s| s.to_string()).collect(),
        resource_names_unsubscribe: unsub.iter().map(|s| s.to_string()).collect(),
        response_nonce: nonce.into(),
        ..Default::default()
    }
}

fn dack(resp: &DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: resp.type_url.clone(),
        response_nonce: resp.nonce.clone(),
        ..Default::default()
    }
}

fn dnames(resp: &DeltaDiscoveryResponse) -> Vec<String> {
    resp.resources
        .iter()
        .map(|r| {
            let n = any_name(r.resource.as_ref().unwrap());
            assert_eq!(n, r.name);
            n
        })
        .collect()
}

fn done(mut resps: Vec<DeltaDiscoveryResponse>) -> DeltaDiscoveryResponse {
    assert_eq!(resps.len(), 1, "expected one response: {resps:?}");
    resps.pop().unwrap()
}

/// What a client that has `s`'s resources of `ty` says it has (names as it sees them).
fn versions(s: &Snapshot, ty: ResourceType) -> HashMap<String, String> {
    s.resources(ty)
        .values()
        .map(|r| (names::wire(&r.name).into_owned(), r.version.to_string()))
        .collect()
}

fn type_status(c: &impl AdsStream, ty: ResourceType) -> TypeStatus {
    c.status()
        .types
        .into_iter()
        .find(|t| t.type_url == ty.type_url())
        .unwrap()
}

/// Clusters (with their CLAs) `c0..c11` and routes `r0..r11` that come, go and change
/// at random (deterministic from a seed).
struct RandomWorld {
    seed: u64,
    clusters: BTreeMap<String, u32>,
    routes: BTreeMap<String, u32>,
}

impl RandomWorld {
    fn new(seed: u64) -> RandomWorld {
        RandomWorld {
            seed,
            clusters: (0..6).map(|i| (format!("c{i}"), 1)).collect(),
            routes: (0..6).map(|i| (format!("r{i}"), 1)).collect(),
        }
    }

    fn rand(&mut self, n: u64) -> u64 {
        self.seed = self
            .seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.seed >> 33) % n
    }

    /// One to three names added, changed or removed.
    fn change(&mut self) {
        for _ in 0..1 + self.rand(3) {
            let clusters = self.rand(2) == 0;
            let name = format!("{}{}", if clusters { "c" } else { "r" }, self.rand(12));
            let remove = self.rand(3) == 0;
            let map = if clusters {
                &mut self.clusters
            } else {
                &mut self.routes
            };
            if remove {
                map.remove(&name);
            } else {
                *map.entry(name).or_insert(0) += 1;
            }
        }
    }

    fn snapshot(&self) -> Snapshot {
        let cl = &self.clusters;
        let clusters: Vec<_> = cl.iter().map(|(n, v)| cluster(n, &v.to_string())).collect();
        let clas: Vec<_> = cl.iter().map(|(n, v)| cla(n, *v)).collect();
        let routes: Vec<_> = (self.routes.iter())
            .map(|(n, v)| route(n, &v.to_string()))
            .collect();
        snap(&clusters, &clas, &[listener("http", "1")], &routes)
    }
}

#[test]
fn unknown_type_url_handled() {
    let s = base();
    let mut c = SotwStream::new();
    let mut r = req(Cds, &[], "", "");
    r.type_url = UNSERVED_URL.into();
    r.resource_names = vec!["cert".into()];
    let resp = one(c.sotw(r, &s).unwrap());
    assert!(resp.resources.is_empty());
    assert_eq!(resp.type_url, UNSERVED_URL);
    assert!(c.sotw(ack(&resp, &["cert"]), &s).unwrap().is_empty());
    assert!(c.sotw_changed(&s).is_empty());
    assert!(c.take_events().contains(&ConnectionEvent::UnservedType {
        type_url: UNSERVED_URL.into()
    }));
    let st = c
        .status()
        .types
        .into_iter()
        .find(|t| t.type_url == UNSERVED_URL)
        .unwrap();
    assert!(!st.served);
    assert_eq!(st.type_name, "TypedExtensionConfig");

    // Delta: wildcard gets an (empty) answer so Envoy finishes initialising, explicit names
    // are reported absent.
    let mut d = DeltaStream::new();
    let mut r = dreq(Cds, &[], &[], "");
    r.type_url = RUNTIME_URL.into();
    let resp = done(d.delta(r, &s).unwrap());
    assert!(resp.resources.is_empty() && resp.removed_resources.is_empty());
    assert!(d.delta(dack(&resp), &s).unwrap().is_empty());
    let mut r = dreq(Cds, &["cert"], &[], "");
    r.type_url = UNSERVED_URL.into();
    let resp = done(d.delta(r, &s).unwrap());
    assert_eq!(resp.removed_resources, ["cert"]);

    // Not a type URL at all: the stream is broken.
    for bad in [
        "foo",
        "type.googleapis.com/",
        "type.googleapis.com/a b.c",
        "http://x/y.z",
    ] {
        let mut r = req(Cds, &[], "", "");
        r.type_url = bad.into();
        assert_eq!(
            c.sotw(r, &s),
            Err(ProtocolError::UnknownTypeUrl(bad.into()))
        );
    }
}

#[test]
fn too_many_unserved_types_is_an_error() {
    let s = base();
    let mut c = SotwStream::new();
    for i in 0..MAX_UNSERVED_TYPES {
        let mut r = req(Cds, &[], "", "");
        r.type_url = format!("type.googleapis.com/x.T{i}");
        c.sotw(r, &s).unwrap();
    }
    let mut r = req(Cds, &[], "", "");
    r.type_url = "type.googleapis.com/x.Tmore".into();
    assert_eq!(c.sotw(r, &s), Err(ProtocolError::TooManyTypes));
    // Known types still work.
    assert_eq!(c.sotw(req(Cds, &[], "", ""), &s).unwrap().len(), 1);
}

#[test]
fn missing_type_url_error() {
    let s = base();
    let mut c = SotwStream::new();
    let mut r = req(Cds, &[], "", "");
    r.type_url.clear();
    assert_eq!(c.sotw(r, &s), Err(ProtocolError::MissingTypeUrl));
    let mut d = DeltaStream::new();
    let mut r = dreq(Cds, &[], &[], "");
    r.type_url.clear();
    assert_eq!(d.delta(r, &s), Err(ProtocolError::MissingTypeUrl));
    assert!(d.status().types.is_empty());
}

/// Deterministic junk at both protocols: never a panic.
#[test]
fn arbitrary_requests_never_panic() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let snaps = [
        base(),
        Snapshot::default(),
        snap(&[cluster("a", "z")], &[], &[], &[]),
    ];
    let urls = [
        Cds.type_url(),
        Eds.type_url(),
        Lds.type_url(),
        Rds.type_url(),
        UNSERVED_URL,
        "",
        "junk",
    ];
    let words = ["", "*", "a", "b", "x", "r1", "é", "1", "2", "3"];
    for round in 0..200 {
        let proto = if round % 2 == 0 {
            Protocol::Sotw
        } else {
            Protocol::Delta
        };
        let (mut c, mut d) = (SotwStream::new(), DeltaStream::new());
        for _ in 0..40 {
            let s = &snaps[rnd(3) as usize];
            let url = urls[rnd(urls.len() as u64) as usize].to_string();
            let pick = |r: &mut dyn FnMut(u64) -> u64| -> Vec<String> {
                (0..r(4))
                    .map(|_| words[r(words.len() as u64) as usize].to_string())
                    .collect()
            };
            let names = pick(&mut rnd);
            let other = pick(&mut rnd);
            let nonce = words[rnd(words.len() as u64) as usize].to_string();
            let err = (rnd(4) == 0).then(|| status("e"));
            match proto {
                Protocol::Sotw => {
                    let _ = c.sotw(
                        DiscoveryRequest {
                            type_url: url,
                            resource_names: names,
                            version_info: other.concat(),
                            response_nonce: nonce,
                            error_detail: err,
                            ..Default::default()
                        },
                        s,
                    );
                    let _ = c.sotw_changed(s);
                }
                Protocol::Delta => {
                    let _ = d.delta(
                        DeltaDiscoveryRequest {
                            type_url: url,
                            resource_names_subscribe: names,
                            resource_names_unsubscribe: other.clone(),
                            initial_resource_versions: other
                                .into_iter()
                                .map(|n| (n, "v".to_string()))
                                .collect(),
                            response_nonce: nonce,
                            error_detail: err,
                            ..Default::default()
                        },
                        s,
                    );
                    let _ = d.delta_changed(s);
                }
            }
            let _ = (c.status(), d.status());
        }
        let _ = (c.take_events(), d.take_events());
    }
}
