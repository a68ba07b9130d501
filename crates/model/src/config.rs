//! Knative's ConfigMaps (`config-domain`, `config-network`, `config-features`) parsed into
//! settings, with Knative's defaults and Knative's validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::objects::ConfigMap;
use super::template::Template;

pub const CONFIG_DOMAIN: &str = "config-domain";
pub const CONFIG_NETWORK: &str = "config-network";
pub const CONFIG_FEATURES: &str = "config-features";

/// Label that makes a Route (or ksvc) reachable only inside the cluster.
pub const VISIBILITY_LABEL: &str = "networking.knative.dev/visibility";
pub const VISIBILITY_CLUSTER_LOCAL: &str = "cluster-local";

/// `http-protocol` of config-network (and the per-Route annotation).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub enum HttpOption {
    #[default]
    Enabled,
    /// Plain HTTP on the external listener answers a redirect to HTTPS.
    Redirected,
    /// HTTPS only: plain HTTP on the external listener does not serve the hosts.
    Disabled,
}

/// One `config-domain` entry: a domain and the labels a Route needs to get it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DomainEntry {
    pub domain: String,
    pub selector: BTreeMap<String, String>,
}

/// Everything the translation reads from Knative's ConfigMaps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KnativeConfig {
    pub domains: Vec<DomainEntry>,
    pub domain_template: Template,
    pub tag_template: Template,
    pub http_option: HttpOption,
    pub autocreate_cluster_domain_claims: bool,
    pub tag_header_based_routing: bool,
    /// `cluster.local` unless configured otherwise.
    pub cluster_domain: String,
}

/// A ConfigMap key that failed Knative's validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ConfigMap {config_map}: data.{key}: {message}")]
pub struct ConfigError {
    pub config_map: String,
    pub key: String,
    pub message: String,
}

pub const DEFAULT_DOMAIN_TEMPLATE: &str = "{{.Name}}.{{.Namespace}}.{{.Domain}}";
pub const DEFAULT_TAG_TEMPLATE: &str = "{{.Tag}}-{{.Name}}";

impl KnativeConfig {
    /// Knative's defaults: no configured domain, so every Route is cluster-local.
    pub fn defaults(cluster_domain: &str) -> KnativeConfig {
        KnativeConfig {
            domains: vec![DomainEntry {
                domain: format!("svc.{cluster_domain}"),
                selector: BTreeMap::new(),
            }],
            domain_template: Template::parse(DEFAULT_DOMAIN_TEMPLATE).expect("valid default"),
            tag_template: Template::parse(DEFAULT_TAG_TEMPLATE).expect("valid default"),
            http_option: HttpOption::Enabled,
            autocreate_cluster_domain_claims: false,
            tag_header_based_routing: false,
            cluster_domain: cluster_domain.to_string(),
        }
    }

    /// Builds the config from whichever of the three ConfigMaps exist. Errors name the
    /// ConfigMap and key; the caller keeps its last good config when there are any.
    pub fn from_config_maps(
        cluster_domain: &str,
        domain: Option<&ConfigMap>,
        network: Option<&ConfigMap>,
        features: Option<&ConfigMap>,
    ) -> Result<KnativeConfig, Vec<ConfigError>> {
        let mut cfg = KnativeConfig::defaults(cluster_domain);
        let mut errors = Vec::new();
        if let Some(cm) = domain {
            match parse_domains(cm, cluster_domain) {
                Ok(d) => cfg.domains = d,
                Err(mut e) => errors.append(&mut e),
            }
        }
        if let Some(cm) = network {
            let err = |key: &str, message: String| ConfigError {
                config_map: CONFIG_NETWORK.into(),
                key: key.into(),
                message,
            };
            for (keys, slot, tag) in [
                (["domain-template", "domainTemplate"], 0, false),
                (["tag-template", "tagTemplate"], 1, true),
            ] {
                let Some((key, text)) = keys.iter().find_map(|k| cm.data.get(*k).map(|v| (*k, v)))
                else {
                    continue;
                };
                match Template::parse(text).and_then(|t| {
                    if tag {
                        t.check_tag_template()
                    } else {
                        t.check_domain_template()
                    }
                    .map(|_| t)
                }) {
                    Ok(t) if slot == 0 => cfg.domain_template = t,
                    Ok(t) => cfg.tag_template = t,
                    Err(e) => errors.push(err(key, e)),
                }
            }
            if let Some(v) = cm.data.get("http-protocol") {
                match v.to_ascii_lowercase().as_str() {
                    "enabled" | "" => cfg.http_option = HttpOption::Enabled,
                    "redirected" => cfg.http_option = HttpOption::Redirected,
                    "disabled" => cfg.http_option = HttpOption::Disabled,
                    _ => errors.push(err(
                        "http-protocol",
                        format!("{v:?} is not one of Enabled, Redirected, Disabled"),
                    )),
                }
            }
            if let Some(v) = cm.data.get("autocreate-cluster-domain-claims") {
                match v.to_ascii_lowercase().as_str() {
                    "true" => cfg.autocreate_cluster_domain_claims = true,
                    "false" | "" => cfg.autocreate_cluster_domain_claims = false,
                    _ => errors.push(err(
                        "autocreate-cluster-domain-claims",
                        format!("{v:?} is not a boolean"),
                    )),
                }
            }
        }
        if let Some(cm) = features {
            // Knative's `asFlag`: Enabled/Allowed/Disabled in any case; any other value is
            // ignored (the default, Disabled, stays). Only Enabled turns routing on.
            if let Some(v) = cm.data.get("tag-header-based-routing") {
                cfg.tag_header_based_routing = v.eq_ignore_ascii_case("enabled");
            }
        }
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(errors)
        }
    }

    /// `svc.<cluster domain>`: the domain of cluster-local Routes.
    pub fn cluster_local_domain(&self) -> String {
        format!("svc.{}", self.cluster_domain)
    }

    /// Knative's `LookupDomainForLabels`: the cluster-local domain for the visibility label,
    /// else the matching selector with the most keys (ties: the smallest domain).
    pub fn domain_for_labels(&self, labels: &super::StrMap) -> String {
        if labels.get(VISIBILITY_LABEL) == Some(VISIBILITY_CLUSTER_LOCAL) {
            return self.cluster_local_domain();
        }
        let mut best: Option<&DomainEntry> = None;
        for e in &self.domains {
            if !e.selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
                continue;
            }
            best = match best {
                None => Some(e),
                Some(b) if e.selector.len() > b.selector.len() => Some(e),
                Some(b) if e.selector.len() == b.selector.len() && e.domain < b.domain => Some(e),
                keep => keep,
            };
        }
        best.map(|e| e.domain.clone())
            .unwrap_or_else(|| self.cluster_local_domain())
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct DomainValue {
    selector: BTreeMap<String, String>,
    #[serde(rename = "type")]
    _type: Option<String>,
}

fn parse_domains(
    cm: &ConfigMap,
    cluster_domain: &str,
) -> Result<Vec<DomainEntry>, Vec<ConfigError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut has_default = false;
    for (domain, value) in &cm.data {
        if domain == "_example" {
            continue;
        }
        let parsed: Result<DomainValue, _> = if value.trim().is_empty() {
            Ok(DomainValue::default())
        } else {
            crate::yaml::from_str(value)
        };
        match parsed {
            Ok(v) => {
                has_default |= v.selector.is_empty();
                out.push(DomainEntry {
                    domain: domain.clone(),
                    selector: v.selector,
                });
            }
            Err(e) => errors.push(ConfigError {
                config_map: CONFIG_DOMAIN.into(),
                key: domain.clone(),
                message: format!("not a selector: {e}"),
            }),
        }
    }
    if !has_default {
        out.push(DomainEntry {
            domain: format!("svc.{cluster_domain}"),
            selector: BTreeMap::new(),
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}
