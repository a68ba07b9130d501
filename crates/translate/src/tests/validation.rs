//! §1.2 defaulting and §1.3 validation of `spec.traffic`.

use super::*;
use model::objects::TrafficTarget;

/// Revisions `r1`, `r2` of Configuration `cfg`, and that Configuration (latest ready `r2`).
fn store() -> Store {
    mk_store([
        Object::Revision(mk_revision("r1", "cfg")),
        Object::Revision(mk_revision("r2", "cfg")),
        Object::Configuration(mk_configuration("cfg", Some("r2"))),
    ])
}

fn check_route(traffic: Vec<TrafficTarget>) -> Result<Ingress, Vec<Problem>> {
    translate_route(&store(), &example_config(), &mk_route("hello", traffic))
}

// §1.2 ---------------------------------------------------------------------------------

#[test]
fn missing_percent_counts_as_zero() {
    let ing = check_route(vec![
        to_revision("r1", 100),
        tagged(
            "canary",
            TrafficTarget {
                revision_name: Some("r2".into()),
                ..Default::default()
            },
        ),
    ])
    .expect("sum is 100 with the missing percent as 0");
    let default = rule_for(&ing, "hello.default.example.com");
    assert_eq!(split_summary(&default.paths[0]), [("r1".into(), 80, 100)]);
}

#[test]
fn latest_revision_unset_is_defaulted_from_revision_name() {
    // Neither entry sets latestRevision: both are valid (true for the configuration entry,
    // false for the pinned one).
    let ing = check_route(vec![to_revision("r1", 50), to_configuration("cfg", 50)]);
    assert!(ing.is_ok(), "{ing:?}");
}

#[test]
fn standalone_route_with_empty_traffic_is_rejected() {
    let p = problems(check_route(vec![]));
    assert_problem(&p, "spec.traffic", "Traffic targets sum to 0, want 100");
}

#[test]
fn service_with_empty_traffic_defaults_to_100_percent_latest() {
    let store = mk_store([
        Object::Revision(mk_revision("hello-00001", "hello")),
        Object::Revision(mk_revision("hello-00002", "hello")),
        Object::Configuration(mk_configuration("hello", Some("hello-00002"))),
    ]);
    let ing = translate_kservice(&store, &example_config(), &mk_kservice("hello", vec![]))
        .expect("empty traffic in a Service is 100 % latest");
    assert_eq!(ing.rules.len(), 2);
    for r in &ing.rules {
        assert_eq!(*r.paths, [path(vec![split("hello-00002", 80, 100)])]);
    }
}

// §1.3 ---------------------------------------------------------------------------------

#[test]
fn traffic_targets_must_sum_to_100() {
    let p = problems(check_route(vec![
        to_revision("r1", 50),
        to_revision("r2", 40),
    ]));
    assert_problem(&p, "spec.traffic", "Traffic targets sum to 90, want 100");
    let p = problems(check_route(vec![
        to_revision("r1", 60),
        to_revision("r2", 50),
    ]));
    assert_problem(&p, "spec.traffic", "Traffic targets sum to 110, want 100");
    assert!(check_route(vec![to_revision("r1", 60), to_revision("r2", 40)]).is_ok());
}

#[test]
fn percent_must_be_between_0_and_100() {
    let p = problems(check_route(vec![
        to_revision("r1", 110),
        to_revision("r2", -10),
    ]));
    assert_problem(&p, "spec.traffic[0].percent", "expected 0 <= 110 <= 100");
    assert_problem(&p, "spec.traffic[1].percent", "expected 0 <= -10 <= 100");
}

#[test]
fn tag_must_be_a_dns1035_label() {
    for bad in ["1abc", "V1", "a_b", "ends-", &"a".repeat(64)] {
        let p = problems(check_route(vec![tagged(bad, to_revision("r1", 100))]));
        assert_problem(&p, "spec.traffic[0].tag", "DNS-1035 label");
    }
    for good in ["a", "v1", "canary-2", &"a".repeat(63)] {
        let r = mk_route("hello", vec![tagged(good, to_revision("r1", 100))]);
        assert_eq!(
            route::validate_traffic(&RouteInput::from_route(&r)),
            [],
            "{good}"
        );
    }
    // A valid tag can still give a host that is no domain name (label over 63 characters).
    let p = problems(check_route(vec![tagged(
        &"a".repeat(63),
        to_revision("r1", 100),
    )]));
    assert_problem(&p, "metadata.name", "not a fully qualified domain name");
}

#[test]
fn empty_tag_is_an_untagged_entry() {
    let ing = check_route(vec![tagged("", to_revision("r1", 100))]).unwrap();
    assert_eq!(
        ing.rules.len(),
        2,
        "only the Route's own name: {:?}",
        rule_hosts(&ing)
    );
}

#[test]
fn duplicate_tag_is_rejected() {
    // Even when both entries point at the same target.
    let p = problems(check_route(vec![
        tagged("a", to_revision("r1", 50)),
        tagged("a", to_revision("r1", 50)),
    ]));
    assert_problem(&p, "spec.traffic", "Multiple definitions for \"a\"");
}

#[test]
fn latest_revision_true_with_revision_name_is_rejected() {
    let p = problems(check_route(vec![TrafficTarget {
        latest_revision: Some(true),
        ..to_revision("r1", 100)
    }]));
    assert_problem(
        &p,
        "spec.traffic[0].latestRevision",
        "may not set revisionName \"r1\" when latestRevision is true",
    );
}

#[test]
fn latest_revision_false_without_revision_name_is_rejected() {
    let p = problems(check_route(vec![TrafficTarget {
        latest_revision: Some(false),
        ..to_configuration("cfg", 100)
    }]));
    assert_problem(
        &p,
        "spec.traffic[0].latestRevision",
        "may not set revisionName \"\" when latestRevision is false",
    );
    // The same inside a Knative Service.
    let svc = mk_kservice(
        "hello",
        vec![TrafficTarget {
            latest_revision: Some(false),
            percent: Some(100),
            ..Default::default()
        }],
    );
    let p = problems(translate_kservice(&store(), &example_config(), &svc));
    assert_problem(
        &p,
        "spec.traffic[0].latestRevision",
        "when latestRevision is false",
    );
}

#[test]
fn configuration_name_is_disallowed_in_a_service() {
    let svc = mk_kservice("cfg", vec![to_configuration("cfg", 100)]);
    let p = problems(translate_kservice(&store(), &example_config(), &svc));
    assert_problem(
        &p,
        "spec.traffic[0].configurationName",
        "must not set the field(s)",
    );
}

#[test]
fn revision_and_configuration_name_together_are_rejected() {
    let p = problems(check_route(vec![TrafficTarget {
        configuration_name: Some("cfg".into()),
        ..to_revision("r1", 100)
    }]));
    assert_problem(
        &p,
        "spec.traffic[0].{revisionName,configurationName}",
        "expected exactly one, got both",
    );
}

#[test]
fn standalone_route_with_neither_revision_nor_configuration_is_rejected() {
    let p = problems(check_route(vec![TrafficTarget {
        percent: Some(100),
        ..Default::default()
    }]));
    assert_problem(
        &p,
        "spec.traffic[0].{revisionName,configurationName}",
        "expected exactly one, got neither",
    );
}

#[test]
fn service_entry_with_neither_revision_nor_configuration_means_latest() {
    let store = mk_store([
        Object::Revision(mk_revision("hello-00001", "hello")),
        Object::Configuration(mk_configuration("hello", Some("hello-00001"))),
    ]);
    let svc = mk_kservice(
        "hello",
        vec![TrafficTarget {
            percent: Some(100),
            ..Default::default()
        }],
    );
    let ing = translate_kservice(&store, &example_config(), &svc).expect("neither = latest");
    assert_eq!(
        split_summary(&ing.rules[0].paths[0]),
        [("hello-00001".into(), 80, 100)]
    );
}

#[test]
fn revision_and_configuration_names_must_be_valid_names() {
    let p = problems(check_route(vec![to_revision("-bad", 100)]));
    assert_problem(&p, "spec.traffic[0].revisionName", "invalid value");
    let p = problems(check_route(vec![to_configuration("bad name", 100)]));
    assert_problem(&p, "spec.traffic[0].configurationName", "invalid value");
}

#[test]
fn url_is_disallowed_in_spec() {
    let p = problems(check_route(vec![TrafficTarget {
        url: Some("http://hello.default.example.com".into()),
        ..tagged("t", to_revision("r1", 100))
    }]));
    assert_problem(&p, "spec.traffic[0].url", "must not set the field(s)");
}

#[test]
fn route_service_label_must_match_an_owner_reference() {
    let mut r = mk_route("cfg", vec![to_revision("r1", 100)]);
    r.metadata.labels = map(&[(route::SERVICE_LABEL, "cfg")]);
    let p = problems(translate_route(&store(), &example_config(), &r));
    assert_problem(
        &p,
        "metadata.labels[serving.knative.dev/service]",
        "missing field(s)",
    );
    // An owner reference to a Service of that name makes it valid.
    r.metadata.owner_references = vec![owned_by_service("cfg")].into();
    assert!(translate_route(&store(), &example_config(), &r).is_ok());
    // An owner reference to another Service does not.
    r.metadata.owner_references = vec![owned_by_service("other")].into();
    assert!(translate_route(&store(), &example_config(), &r).is_err());
}

#[test]
fn every_validation_problem_is_reported_at_once() {
    let p = problems(check_route(vec![
        tagged("a", to_revision("r1", 30)),
        tagged("a", to_configuration("cfg", 30)),
    ]));
    assert_problem(&p, "spec.traffic", "Multiple definitions for \"a\"");
    assert_problem(&p, "spec.traffic", "Traffic targets sum to 60, want 100");
}
