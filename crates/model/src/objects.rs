//! The Kubernetes objects knative-xds reads, as plain serde structs.
//!
//! Only the fields the translation uses are declared; unknown fields are ignored and every
//! field has a default, so a manifest with extra or missing optional fields still loads.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// `metadata` of any object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: Arc<str>,
    pub namespace: Arc<str>,
    pub labels: super::StrMap,
    pub annotations: super::StrMap,
    pub generation: Option<i64>,
    /// RFC 3339; orders owners in host conflicts (older wins).
    pub creation_timestamp: Option<Box<str>>,
    /// (Boxed slices here and below: no room kept for growth, which every object would carry.)
    pub owner_references: Box<[OwnerReference]>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct OwnerReference {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub controller: Option<bool>,
}

/// `serving.knative.dev/v1` TrafficTarget.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TrafficTarget {
    pub tag: Option<String>,
    pub revision_name: Option<String>,
    pub configuration_name: Option<String>,
    pub latest_revision: Option<bool>,
    pub percent: Option<i64>,
    pub url: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RouteSpec {
    pub traffic: Vec<TrafficTarget>,
}

/// `serving.knative.dev/v1` Route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Route {
    pub metadata: ObjectMeta,
    pub spec: RouteSpec,
}

/// `serving.knative.dev/v1` Service (a "ksvc"): a Configuration and a Route in one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct KService {
    pub metadata: ObjectMeta,
    pub spec: KServiceSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct KServiceSpec {
    pub template: RevisionTemplate,
    pub traffic: Vec<TrafficTarget>,
}

/// `spec.template` of a Knative Service or Configuration: only what names the Revision it
/// stands for and picks its protocol. Read where no controller makes that Revision (a
/// manifests folder), so that the template implies it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RevisionTemplate {
    pub metadata: TemplateMeta,
    pub spec: TemplateSpec,
}

/// Of a template's spec, only whether its Revision speaks h2c (its first port's name): kept
/// for every Knative Service and Configuration, the containers themselves would be held
/// unread.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RevisionSpec", into = "RevisionSpec")]
pub struct TemplateSpec {
    pub h2c: bool,
}

impl From<RevisionSpec> for TemplateSpec {
    fn from(spec: RevisionSpec) -> TemplateSpec {
        TemplateSpec {
            h2c: spec.first_port_name() == Some("h2c"),
        }
    }
}

impl From<TemplateSpec> for RevisionSpec {
    fn from(spec: TemplateSpec) -> RevisionSpec {
        let ports = match spec.h2c {
            true => vec![ContainerPort {
                name: Some("h2c".into()),
                container_port: None,
            }],
            false => Vec::new(),
        };
        RevisionSpec {
            containers: vec![Container { ports }],
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TemplateMeta {
    /// Bring-your-own Revision name (`<service>-<suffix>`); Knative generates one otherwise.
    pub name: Option<Arc<str>>,
}

/// `serving.knative.dev/v1` Configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Configuration {
    pub metadata: ObjectMeta,
    pub spec: ConfigurationSpec,
    pub status: ConfigurationStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ConfigurationSpec {
    pub template: RevisionTemplate,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ConfigurationStatus {
    pub latest_ready_revision_name: Option<String>,
    pub latest_created_revision_name: Option<String>,
}

/// `serving.knative.dev/v1` Revision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Revision {
    pub metadata: ObjectMeta,
    pub spec: RevisionSpec,
    /// `None` when the manifest has no `status` at all (hand-written manifests).
    pub status: Option<Status>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RevisionSpec {
    pub containers: Vec<Container>,
}

impl RevisionSpec {
    /// The name of the first port of any container: `h2c` picks HTTP/2 (Knative's rule).
    pub fn first_port_name(&self) -> Option<&str> {
        let first = self.containers.iter().flat_map(|c| c.ports.iter()).next();
        first.and_then(|p| p.name.as_deref())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Container {
    /// Only the ports: the first one's name picks the protocol. (An image or a name would be
    /// kept for every Revision and Service template, unread.)
    pub ports: Vec<ContainerPort>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerPort {
    pub name: Option<Box<str>>,
    pub container_port: Option<i64>,
}

/// A Knative/Kubernetes status with conditions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Status {
    pub observed_generation: Option<i64>,
    pub conditions: Box<[Condition]>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: Box<str>,
    pub status: Box<str>,
    pub reason: Option<Box<str>>,
    pub message: Option<Box<str>>,
}

/// `serving.knative.dev/v1beta1` DomainMapping.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DomainMapping {
    pub metadata: ObjectMeta,
    pub spec: DomainMappingSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DomainMappingSpec {
    #[serde(rename = "ref")]
    pub ref_: KReference,
    pub tls: Option<DomainMappingTls>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DomainMappingTls {
    pub secret_name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct KReference {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
}

/// `networking.internal.knative.dev/v1alpha1` ClusterDomainClaim (cluster-scoped).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ClusterDomainClaim {
    pub metadata: ObjectMeta,
    pub spec: ClusterDomainClaimSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ClusterDomainClaimSpec {
    pub namespace: String,
}

/// Core `v1` Service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Service {
    pub metadata: ObjectMeta,
    pub spec: ServiceSpec,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub ports: Vec<ServicePort>,
    pub external_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ServicePort {
    pub name: Option<Box<str>>,
    pub port: i64,
    pub target_port: Option<IntOrString>,
    pub protocol: Option<Box<str>>,
    pub app_protocol: Option<Box<str>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    String(String),
}

/// `discovery.k8s.io` EndpointSlice (v1 and v1beta1 share these fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EndpointSlice {
    pub metadata: ObjectMeta,
    pub address_type: Box<str>,
    pub endpoints: Box<[Endpoint]>,
    pub ports: Box<[EndpointPort]>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Endpoint {
    pub addresses: Box<[Box<str>]>,
    pub conditions: EndpointConditions,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EndpointConditions {
    /// Unset means ready (Kubernetes API convention for EndpointSlices).
    pub ready: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EndpointPort {
    pub name: Option<Box<str>>,
    pub port: Option<i64>,
    pub protocol: Option<Box<str>>,
    pub app_protocol: Option<Box<str>>,
}

/// Core `v1` ConfigMap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ConfigMap {
    pub metadata: ObjectMeta,
    pub data: BTreeMap<String, String>,
}

/// `networking.internal.knative.dev/v1alpha1` Ingress (KIngress).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct KIngress {
    pub metadata: ObjectMeta,
    pub spec: KIngressSpec,
    /// As last written (by us or anyone): the status writer compares against it.
    pub status: Option<serde_json::Value>,
}

// The spec types below mirror Knative's Go types field for field, in the same order and with
// the same `omitempty` choices, because Knative hashes `json.Marshal(spec)` (the probe hash).
// A Go `omitempty` slice/map/string/int is skipped when empty; a Go slice without it is
// `null` when absent (`Option::None` here) and `[]` when empty.

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct KIngressSpec {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<KIngressTls>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<KIngressRule>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub http_option: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct KIngressTls {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub secret_name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub secret_namespace: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct KIngressRule {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub visibility: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<KIngressHttp>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct KIngressHttp {
    pub paths: Option<Vec<KIngressPath>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct KIngressPath {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub rewrite_host: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, HeaderMatch>,
    pub splits: Option<Vec<KIngressSplit>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub append_headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct HeaderMatch {
    pub exact: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct KIngressSplit {
    pub service_namespace: String,
    pub service_name: String,
    pub service_port: IntOrString,
    #[serde(skip_serializing_if = "is_zero")]
    pub percent: i64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub append_headers: BTreeMap<String, String>,
}

impl Default for KIngressSplit {
    fn default() -> Self {
        KIngressSplit {
            service_namespace: String::new(),
            service_name: String::new(),
            service_port: IntOrString::Int(0),
            percent: 0,
            append_headers: BTreeMap::new(),
        }
    }
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// Core `v1` Secret, keeping only what serving TLS needs: its type and the `tls.crt`,
/// `tls.key` and `ca.crt` keys, decoded. Annotations are dropped on reading
/// (`kubectl.kubernetes.io/last-applied-configuration` holds the key in clear), and the key
/// never prints: its `Debug` and `Serialize` say `[redacted]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "RawSecret")]
pub struct Secret {
    pub metadata: ObjectMeta,
    /// `kubernetes.io/tls` for a certificate.
    pub type_: String,
    pub tls_crt: Option<Arc<[u8]>>,
    pub tls_key: Option<PrivateKey>,
    pub ca_crt: Option<Arc<[u8]>>,
    /// Why a key we read could not be decoded (`data.tls.crt: not valid base64`).
    pub problem: Option<String>,
}

/// Private key bytes that never print.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey(pub Arc<[u8]>);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

pub const SECRET_TYPE_TLS: &str = "kubernetes.io/tls";

/// The Secret keys read (kubernetes.io/tls and Knative's CA bundle).
const SECRET_KEYS: [&str; 3] = ["tls.crt", "tls.key", "ca.crt"];

#[derive(Deserialize)]
#[serde(default, rename_all = "camelCase")]
#[derive(Default)]
struct RawSecret {
    metadata: ObjectMeta,
    #[serde(rename = "type")]
    type_: String,
    data: BTreeMap<String, Option<String>>,
    /// Write-only in Kubernetes; a manifests folder may hold it.
    string_data: BTreeMap<String, Option<String>>,
}

impl From<RawSecret> for Secret {
    fn from(raw: RawSecret) -> Secret {
        use base64::Engine;
        let mut metadata = raw.metadata;
        metadata.annotations = Default::default();
        let mut secret = Secret {
            metadata,
            type_: raw.type_,
            ..Default::default()
        };
        let mut values: [Option<Arc<[u8]>>; 3] = Default::default();
        for (i, key) in SECRET_KEYS.iter().enumerate() {
            // stringData wins over data, as the API server merges them.
            if let Some(Some(v)) = raw.string_data.get(*key) {
                values[i] = Some(v.as_bytes().into());
            } else if let Some(Some(v)) = raw.data.get(*key) {
                match base64::engine::general_purpose::STANDARD.decode(v.trim()) {
                    Ok(b) => values[i] = Some(b.into()),
                    Err(_) => {
                        secret
                            .problem
                            .get_or_insert(format!("data.{key}: not valid base64"));
                    }
                }
            }
        }
        let [crt, key, ca] = values;
        secret.tls_crt = crt;
        secret.tls_key = key.map(PrivateKey);
        secret.ca_crt = ca;
        secret
    }
}

/// As the API shows it, with the key redacted: `render` and the debug endpoints never
/// print it.
impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use base64::Engine;
        use serde::ser::SerializeStruct;
        let b64 = |b: &Arc<[u8]>| base64::engine::general_purpose::STANDARD.encode(b);
        let mut data = BTreeMap::new();
        if let Some(c) = &self.tls_crt {
            data.insert("tls.crt", b64(c));
        }
        if self.tls_key.is_some() {
            data.insert("tls.key", "[redacted]".to_string());
        }
        if let Some(c) = &self.ca_crt {
            data.insert("ca.crt", b64(c));
        }
        let mut st = s.serialize_struct("Secret", 3)?;
        st.serialize_field("metadata", &self.metadata)?;
        st.serialize_field("type", &self.type_)?;
        st.serialize_field("data", &data)?;
        st.end()
    }
}
