//! §7 the feature flag and header names, and the config-network keys of §2.1.

use super::*;
use model::config::HttpOption;

#[test]
fn feature_flag_parsing_is_case_insensitive_and_only_enabled_turns_it_on() {
    for value in ["Enabled", "enabled", "ENABLED", "eNaBlEd"] {
        let cfg = mk_config(&[], &[], &[("tag-header-based-routing", value)]);
        assert!(cfg.tag_header_based_routing, "{value}");
    }
    for value in ["Disabled", "disabled", "Allowed", "allowed", ""] {
        let cfg = mk_config(&[], &[], &[("tag-header-based-routing", value)]);
        assert!(!cfg.tag_header_based_routing, "{value}");
    }
    // Absent: disabled by default.
    assert!(!mk_config(&[], &[], &[]).tag_header_based_routing);
    assert!(!KnativeConfig::defaults(CLUSTER_DOMAIN).tag_header_based_routing);
}

#[test]
fn unknown_feature_flag_value_is_ignored() {
    // Knative's asFlag keeps the default (Disabled) for any other value, without an error.
    for value in ["true", "on", "Enabled "] {
        let cfg = mk_config(&[], &[], &[("tag-header-based-routing", value)]);
        assert!(!cfg.tag_header_based_routing, "{value}");
    }
}

#[test]
fn header_names_match_knative() {
    assert_eq!(headers::TAG, "Knative-Serving-Tag");
    assert_eq!(headers::DEFAULT_ROUTE, "Knative-Serving-Default-Route");
    assert_eq!(headers::REVISION, "Knative-Serving-Revision");
    assert_eq!(headers::NAMESPACE, "Knative-Serving-Namespace");
    assert_eq!(headers::ORIGINAL_HOST, "K-Original-Host");
}

#[test]
fn config_network_http_protocol_values() {
    for (value, expected) in [
        ("Enabled", HttpOption::Enabled),
        ("redirected", HttpOption::Redirected),
        ("Redirected", HttpOption::Redirected),
        // HTTPS only (Knative deprecated it and maps it to an empty httpOption; served here
        // as its name says: the plain external listener does not serve the hosts).
        ("Disabled", HttpOption::Disabled),
        ("disabled", HttpOption::Disabled),
        ("", HttpOption::Enabled),
    ] {
        let cfg = mk_config(&[], &[("http-protocol", value)], &[]);
        assert_eq!(cfg.http_option, expected, "{value}");
    }
    let [d, n, f] = mk_config_maps(&[], &[("http-protocol", "sometimes")], &[]);
    let errors =
        KnativeConfig::from_config_maps(CLUSTER_DOMAIN, Some(&d), Some(&n), Some(&f)).unwrap_err();
    assert_eq!(errors[0].key, "http-protocol");
}

#[test]
fn autocreate_cluster_domain_claims_defaults_to_false() {
    assert!(!mk_config(&[], &[], &[]).autocreate_cluster_domain_claims);
    assert!(
        mk_config(&[], &[("autocreate-cluster-domain-claims", "true")], &[])
            .autocreate_cluster_domain_claims
    );
}

#[test]
fn default_templates() {
    let cfg = mk_config(&[], &[], &[]);
    assert_eq!(
        cfg.domain_template.to_string(),
        "{{.Name}}.{{.Namespace}}.{{.Domain}}"
    );
    assert_eq!(cfg.tag_template.to_string(), "{{.Tag}}-{{.Name}}");
}
