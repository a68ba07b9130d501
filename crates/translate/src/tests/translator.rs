//! Whole-store translation: an invalid object keeps its last good translation (§1.5: a
//! target error leaves the previous KIngress in force) and host conflicts (§3.4: the
//! object already holding a host keeps it).

use super::*;
use crate::{Options, Translator};
use model::objects::{ClusterDomainClaim, ClusterDomainClaimSpec, DomainMapping, KReference};
use model::{Kind, ObjectKey, ObjectRef};

fn translator() -> Translator {
    Translator::new(Options::default())
}

/// Where a controller makes Revisions (a missing one is an error, not implied).
fn cluster_translator() -> Translator {
    Translator::new(Options {
        no_controller: false,
        ..Options::default()
    })
}

/// config-domain `example.com`, Revisions `hello-00001`/`hello-00002`, Route `hello`.
fn store(route: Route) -> Store {
    let [d, n, f] = mk_config_maps(&[("example.com", "")], &[], &[]);
    mk_store([
        Object::ConfigMap(d),
        Object::ConfigMap(n),
        Object::ConfigMap(f),
        Object::Revision(mk_revision("hello-00001", "hello")),
        Object::Revision(mk_revision("hello-00002", "hello")),
        Object::Route(route),
    ])
}

fn route_ref(ns: &str, name: &str) -> ObjectRef {
    ObjectRef {
        kind: Kind::Route,
        key: ObjectKey::new(ns, name),
    }
}

#[test]
fn invalid_route_keeps_last_good_translation() {
    let mut t = cluster_translator();
    let good = mk_route("hello", vec![to_revision("hello-00001", 100)]);
    let first = t.translate(&store(good));
    assert!(first.rejections.is_empty(), "{:?}", first.rejections);
    assert_eq!(first.ingresses.len(), 1);

    // Invalid spec (sum 90): the last good translation stays.
    let bad = mk_route("hello", vec![to_revision("hello-00002", 90)]);
    let second = t.translate(&store(bad));
    assert_eq!(second.ingresses, first.ingresses);
    assert_eq!(second.envoy, first.envoy);
    assert_eq!(second.rejections.len(), 1);
    assert_eq!(second.rejections[0].object, route_ref(NS, "hello"));
    assert!(second.rejections[0].serving_last_good);

    // A target error (missing Revision) too.
    let missing = mk_route("hello", vec![to_revision("hello-00009", 100)]);
    let third = t.translate(&store(missing));
    assert_eq!(third.ingresses, first.ingresses);
    assert!(third.rejections[0].serving_last_good);

    // Fixed: the new translation replaces it.
    let fixed = mk_route("hello", vec![to_revision("hello-00002", 100)]);
    let fourth = t.translate(&store(fixed));
    assert!(fourth.rejections.is_empty());
    assert_eq!(
        split_summary(&fourth.ingresses[0].rules[0].paths[0]),
        [("hello-00002".into(), 80, 100)]
    );
}

#[test]
fn invalid_route_without_a_good_translation_is_not_served() {
    let mut t = translator();
    let out = t.translate(&store(mk_route(
        "hello",
        vec![to_revision("hello-00001", 50)],
    )));
    assert!(out.ingresses.is_empty());
    assert!(!out.rejections[0].serving_last_good);
}

#[test]
fn deleted_route_forgets_its_last_good_translation() {
    let mut t = translator();
    t.translate(&store(mk_route(
        "hello",
        vec![to_revision("hello-00001", 100)],
    )));
    let mut s = store(mk_route("hello", vec![to_revision("hello-00001", 100)]));
    s.delete(Kind::Route, &ObjectKey::new(NS, "hello"));
    assert!(t.translate(&s).ingresses.is_empty());
    // Recreated invalid: nothing to fall back to.
    let out = t.translate(&store(mk_route(
        "hello",
        vec![to_revision("hello-00001", 50)],
    )));
    assert!(out.ingresses.is_empty());
}

#[test]
fn one_invalid_route_does_not_affect_the_others() {
    let mut s = store(mk_route("hello", vec![to_revision("hello-00001", 100)]));
    s.apply(Object::Route(mk_route(
        "broken",
        vec![to_revision("nope", 100)],
    )));
    let out = cluster_translator().translate(&s);
    assert_eq!(out.ingresses.len(), 1);
    assert_eq!(out.ingresses[0].origin, route_ref(NS, "hello"));
    assert_eq!(out.rejections.len(), 1);
    assert_eq!(out.rejections[0].object, route_ref(NS, "broken"));
}

#[test]
fn host_conflict_older_object_keeps_the_host() {
    // With domain-template {{.Name}}.{{.Domain}}, Routes `hello` in `a` and `b` both claim
    // hello.example.com. The older one keeps it, whatever the names sort like.
    for (a_created, b_created, winner, loser) in [
        ("2021-01-01T00:00:00Z", "2020-01-01T00:00:00Z", "b", "a"),
        ("2020-01-01T00:00:00Z", "2021-01-01T00:00:00Z", "a", "b"),
    ] {
        let [d, n, f] = mk_config_maps(
            &[("example.com", "")],
            &[("domain-template", "{{.Name}}.{{.Domain}}")],
            &[],
        );
        let mut s = mk_store([
            Object::ConfigMap(d),
            Object::ConfigMap(n),
            Object::ConfigMap(f),
        ]);
        for (ns, created) in [("a", a_created), ("b", b_created)] {
            let mut rev = mk_revision("hello-00001", "hello");
            rev.metadata.namespace = ns.into();
            let mut r = mk_route("hello", vec![to_revision("hello-00001", 100)]);
            r.metadata.namespace = ns.into();
            r.metadata.creation_timestamp = Some(created.into());
            s.apply(Object::Revision(rev));
            s.apply(Object::Route(r));
        }
        let out = translator().translate(&s);
        assert_eq!(out.ingresses.len(), 1, "{winner}");
        assert_eq!(out.ingresses[0].origin, route_ref(winner, "hello"));
        assert_eq!(out.rejections.len(), 1);
        assert_eq!(out.rejections[0].object, route_ref(loser, "hello"));
        assert_eq!(out.rejections[0].problems[0].field, "hosts");
        assert!(out.rejections[0].problems[0]
            .message
            .contains("\"hello.example.com\" is already served by"));
        // Envoy sees the host once: one virtual host, in the one RouteConfiguration both
        // listeners' scopes use.
        let served = out
            .envoy
            .routes
            .iter()
            .flat_map(|r| r.virtual_hosts.iter())
            .filter(|v| v.domains.iter().any(|d| d == "hello.example.com"))
            .count();
        assert_eq!(served, 1);
    }
}

#[test]
fn domain_mapping_claiming_a_route_host_conflicts() {
    let mut route = mk_route("hello", vec![to_revision("hello-00001", 100)]);
    route.metadata.creation_timestamp = Some("2020-01-01T00:00:00Z".into());
    let mut s = store(route);
    let domain = "hello.default.example.com";
    s.apply(Object::ClusterDomainClaim(ClusterDomainClaim {
        metadata: mk_meta("", domain),
        spec: ClusterDomainClaimSpec {
            namespace: NS.into(),
        },
    }));
    let mut dm = DomainMapping {
        metadata: mk_meta(NS, domain),
        ..Default::default()
    };
    dm.metadata.creation_timestamp = Some("2021-01-01T00:00:00Z".into());
    dm.spec.ref_ = KReference {
        api_version: "serving.knative.dev/v1".into(),
        kind: "Route".into(),
        name: "hello".into(),
        namespace: None,
    };
    s.apply(Object::DomainMapping(dm));
    let out = cluster_translator().translate(&s);
    assert_eq!(out.ingresses.len(), 1);
    assert_eq!(out.ingresses[0].origin, route_ref(NS, "hello"));
    assert_eq!(out.rejections[0].object.kind, Kind::DomainMapping);
}

#[test]
fn knative_service_implies_its_route() {
    // Manifests mode: a Knative Service is translated as the Route MakeRoute gives; a
    // Route of the same name is ignored.
    let mut s = store(mk_route("hello", vec![to_revision("hello-00002", 100)]));
    s.apply(Object::KService(mk_kservice(
        "hello",
        vec![to_revision("hello-00001", 100)],
    )));
    let out = translator().translate(&s);
    assert_eq!(out.ingresses.len(), 1);
    assert_eq!(out.ingresses[0].origin.kind, Kind::KService);
    assert_eq!(
        split_summary(&out.ingresses[0].rules[0].paths[0]),
        [("hello-00001".into(), 80, 100)]
    );
    assert_eq!(out.rejections[0].object, route_ref(NS, "hello"));
}

#[test]
fn config_maps_are_read_from_the_system_namespace() {
    let mut s = store(mk_route("hello", vec![to_revision("hello-00001", 100)]));
    // A config-domain elsewhere is not Knative's.
    let mut other = mk_config_maps(&[("elsewhere.com", "")], &[], &[])[0].clone();
    other.metadata.namespace = NS.into();
    s.apply(Object::ConfigMap(other));
    let out = translator().translate(&s);
    assert_eq!(
        strs(&out.ingresses[0].rules[1].hosts),
        ["hello.default.example.com"]
    );
}
