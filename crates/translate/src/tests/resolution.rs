//! §1.4 Service → Route and §1.5 resolution of traffic targets to Revisions, including
//! the merging of same-revision entries.

use super::*;
use model::objects::{Condition, TrafficTarget};

fn store_with(revisions: Vec<Revision>, configurations: Vec<Configuration>) -> Store {
    mk_store(
        revisions
            .into_iter()
            .map(Object::Revision)
            .chain(configurations.into_iter().map(Object::Configuration)),
    )
}

/// Revisions `r1`, `r2` of Configuration `cfg` (latest ready `r2`).
fn store() -> Store {
    store_with(
        vec![mk_revision("r1", "cfg"), mk_revision("r2", "cfg")],
        vec![mk_configuration("cfg", Some("r2"))],
    )
}

fn check_route(store: &Store, traffic: Vec<TrafficTarget>) -> Result<Ingress, Vec<Problem>> {
    translate_route(store, &example_config(), &mk_route("hello", traffic))
}

/// The default rule's (only) path.
fn default_path(ing: &Ingress) -> &HttpPath {
    &rule_for(ing, "hello.default.svc.cluster.local").paths[0]
}

// §1.4 ---------------------------------------------------------------------------------

#[test]
fn service_entries_without_revision_name_follow_the_service_configuration() {
    let store = store_with(
        vec![
            mk_revision("hello-00001", "hello"),
            mk_revision("hello-00002", "hello"),
        ],
        vec![mk_configuration("hello", Some("hello-00002"))],
    );
    let svc = mk_kservice(
        "hello",
        vec![
            tagged("old", to_revision("hello-00001", 30)),
            tagged("new", to_latest(70)),
        ],
    );
    let ing = translate_kservice(&store, &example_config(), &svc).unwrap();
    assert_eq!(
        split_summary(&rule_for(&ing, "hello.default.example.com").paths[0]),
        [
            ("hello-00001".into(), 80, 30),
            ("hello-00002".into(), 80, 70)
        ]
    );
    assert_eq!(
        split_summary(&rule_for(&ing, "new-hello.default.example.com").paths[0]),
        [("hello-00002".into(), 80, 100)]
    );
}

#[test]
fn service_labels_propagate_to_its_route() {
    let store = store_with(
        vec![mk_revision("hello-00001", "hello")],
        vec![mk_configuration("hello", Some("hello-00001"))],
    );
    let mut svc = mk_kservice("hello", vec![]);
    svc.metadata.labels = map(&[(model::config::VISIBILITY_LABEL, "cluster-local")]);
    let ing = translate_kservice(&store, &example_config(), &svc).unwrap();
    assert_eq!(
        rule_hosts(&ing),
        [(Visibility::ClusterLocal, cluster_local_hosts("hello"))]
    );
}

#[test]
fn service_annotations_propagate_to_its_route() {
    let store = store_with(
        vec![mk_revision("hello-00001", "hello")],
        vec![mk_configuration("hello", Some("hello-00001"))],
    );
    let mut svc = mk_kservice("hello", vec![]);
    svc.metadata.annotations = map(&[(route::HTTP_PROTOCOL_ANNOTATION, "Redirected")]);
    let ing = translate_kservice(&store, &example_config(), &svc).unwrap();
    assert_eq!(ing.http_option, model::config::HttpOption::Redirected);
}

#[test]
fn last_applied_configuration_annotation_is_not_copied_to_the_route() {
    let store = store_with(
        vec![mk_revision("hello-00001", "hello")],
        vec![mk_configuration("hello", Some("hello-00001"))],
    );
    let cfg = mk_config(
        &[("example.com", "")],
        &[(
            "domain-template",
            r#"{{.Name}}{{index .Annotations "kubectl.kubernetes.io/last-applied-configuration"}}.{{.Namespace}}.{{.Domain}}"#,
        )],
        &[],
    );
    let mut svc = mk_kservice("hello", vec![]);
    svc.metadata.annotations = map(&[("kubectl.kubernetes.io/last-applied-configuration", "x")]);
    let ing = translate_kservice(&store, &cfg, &svc).unwrap();
    rule_for(&ing, "hello.default.example.com");
}

// §1.5 resolution ------------------------------------------------------------------------

#[test]
fn configuration_name_resolves_to_latest_ready_revision() {
    let ing = check_route(&store(), vec![to_configuration("cfg", 100)]).unwrap();
    assert_eq!(default_path(&ing).splits, [split("r2", 80, 100)]);
}

#[test]
fn missing_configuration_is_rejected() {
    let p = problems(check_route(&store(), vec![to_configuration("nope", 100)]));
    assert_problem(
        &p,
        "spec.traffic[0].configurationName",
        "Configuration \"nope\" referenced in traffic not found",
    );
}

#[test]
fn configuration_without_latest_ready_revision_is_rejected() {
    let mut unready = mk_revision("r1", "cfg");
    unready.status.as_mut().unwrap().conditions[0].status = "False".into();
    let store = store_with(vec![unready], vec![mk_configuration("cfg", None)]);
    let p = problems(check_route(&store, vec![to_configuration("cfg", 100)]));
    assert_problem(
        &p,
        "spec.traffic[0].configurationName",
        "waiting for a Revision",
    );
}

#[test]
fn configuration_latest_ready_revision_must_exist() {
    let store = store_with(vec![], vec![mk_configuration("cfg", Some("ghost"))]);
    let p = problems(check_route(&store, vec![to_configuration("cfg", 100)]));
    assert_problem(
        &p,
        "spec.traffic[0].revisionName",
        "Revision \"ghost\" referenced in traffic not found",
    );
}

#[test]
fn missing_revision_is_rejected() {
    let p = problems(check_route(&store(), vec![to_revision("r9", 100)]));
    assert_problem(
        &p,
        "spec.traffic[0].revisionName",
        "Revision \"r9\" referenced in traffic not found",
    );
}

#[test]
fn revision_not_owned_by_the_service_is_rejected() {
    let store = store_with(
        vec![
            mk_revision("hello-00001", "hello"),
            mk_revision("other-00001", "other"),
        ],
        vec![mk_configuration("hello", Some("hello-00001"))],
    );
    let svc = mk_kservice(
        "hello",
        vec![to_latest(50), tagged("x", to_revision("other-00001", 50))],
    );
    let p = problems(translate_kservice(&store, &example_config(), &svc));
    assert_problem(
        &p,
        "spec.traffic[1].revisionName",
        "Revision \"other-00001\" is not owned by Service \"hello\"",
    );
    // A Route labelled with its Service (as Knative's MakeRoute does) is checked the same way.
    let mut r = mk_route("hello", vec![to_revision("other-00001", 100)]);
    r.metadata.labels = map(&[(route::SERVICE_LABEL, "hello")]);
    r.metadata.owner_references = vec![owned_by_service("hello")].into();
    let p = problems(translate_route(&store, &example_config(), &r));
    assert_problem(
        &p,
        "spec.traffic[0].revisionName",
        "is not owned by Service",
    );
    // A standalone Route without the label may use any Revision.
    assert!(check_route(&store, vec![to_revision("other-00001", 100)]).is_ok());
}

#[test]
fn unready_revision_is_rejected() {
    let mut rev = mk_revision("r1", "cfg");
    rev.status.as_mut().unwrap().conditions[0].status = "False".into();
    let store = store_with(vec![rev], vec![]);
    let p = problems(check_route(&store, vec![to_revision("r1", 100)]));
    assert_problem(
        &p,
        "spec.traffic[0].revisionName",
        "Revision \"r1\" is not yet ready",
    );
}

#[test]
fn revision_with_stale_observed_generation_is_rejected() {
    let mut rev = mk_revision("r1", "cfg");
    rev.metadata.generation = Some(2);
    let store = store_with(vec![rev], vec![]);
    let p = problems(check_route(&store, vec![to_revision("r1", 100)]));
    assert_problem(&p, "spec.traffic[0].revisionName", "is not yet ready");
}

#[test]
fn configuration_target_revision_must_be_ready() {
    let mut rev = mk_revision("r2", "cfg");
    rev.status.as_mut().unwrap().conditions[0].status = "Unknown".into();
    let store = store_with(vec![rev], vec![mk_configuration("cfg", Some("r2"))]);
    let p = problems(check_route(&store, vec![to_configuration("cfg", 100)]));
    assert_problem(&p, "spec.traffic[0].revisionName", "is not yet ready");
}

#[test]
fn scaled_to_zero_revision_is_still_routable() {
    let mut rev = mk_revision("r1", "cfg");
    let status = rev.status.as_mut().unwrap();
    let mut conditions = std::mem::take(&mut status.conditions).into_vec();
    conditions.push(Condition {
        type_: "Active".into(),
        status: "False".into(),
        reason: Some("NoTraffic".into()),
        ..Default::default()
    });
    status.conditions = conditions.into();
    let store = store_with(vec![rev], vec![]);
    let ing = check_route(&store, vec![to_revision("r1", 100)]).unwrap();
    assert_eq!(default_path(&ing).splits, [split("r1", 80, 100)]);
}

#[test]
fn revision_without_status_counts_as_ready() {
    // Extension for hand-written manifests: no controller ever sets a status.
    let mut rev = mk_revision("r1", "cfg");
    rev.status = None;
    let store = store_with(vec![rev], vec![]);
    assert!(check_route(&store, vec![to_revision("r1", 100)]).is_ok());
}

#[test]
fn all_target_errors_are_reported_together() {
    let p = problems(check_route(
        &store(),
        vec![to_revision("r8", 50), to_configuration("nope", 50)],
    ));
    assert_problem(&p, "spec.traffic[0].revisionName", "\"r8\"");
    assert_problem(&p, "spec.traffic[1].configurationName", "\"nope\"");
}

#[test]
fn h2c_revision_uses_port_81() {
    let store = store_with(
        vec![
            mk_h2c_revision("grpc-1", "grpc"),
            mk_revision("web-1", "web"),
        ],
        vec![],
    );
    let ing = check_route(
        &store,
        vec![to_revision("grpc-1", 50), to_revision("web-1", 50)],
    )
    .unwrap();
    assert_eq!(
        default_path(&ing).splits,
        [split("grpc-1", 81, 50), split("web-1", 80, 50)]
    );
}

#[test]
fn protocol_comes_from_the_first_container_port_name() {
    // Only the first port counts; an unnamed port is HTTP/1.
    let mut second_h2c = mk_revision("a", "cfg");
    second_h2c.spec.containers[0].ports.push(ContainerPort {
        name: Some("h2c".into()),
        container_port: Some(9090),
    });
    let mut unnamed = mk_revision("b", "cfg");
    unnamed.spec.containers[0].ports[0].name = None;
    let store = store_with(vec![second_h2c, unnamed], vec![]);
    let ing = check_route(&store, vec![to_revision("a", 50), to_revision("b", 50)]).unwrap();
    assert_eq!(
        split_summary(default_path(&ing)),
        [("a".into(), 80, 50), ("b".into(), 80, 50)]
    );
}

#[test]
fn every_entry_is_in_the_default_group_and_tagged_entries_in_their_tag_group() {
    let ing = check_route(
        &store(),
        vec![
            tagged("one", to_revision("r1", 70)),
            to_configuration("cfg", 30),
        ],
    )
    .unwrap();
    assert_eq!(
        split_summary(default_path(&ing)),
        [("r1".into(), 80, 70), ("r2".into(), 80, 30)]
    );
    assert_eq!(
        split_summary(&rule_for(&ing, "one-hello.default.svc.cluster.local").paths[0]),
        [("r1".into(), 80, 100)]
    );
    // No group for the untagged entry besides the default.
    assert_eq!(ing.rules.len(), 4);
}

// §1.5 merging ---------------------------------------------------------------------------

#[test]
fn same_revision_entries_are_merged_in_splits() {
    let ing = check_route(
        &store(),
        vec![
            to_revision("r1", 30),
            to_revision("r2", 40),
            to_revision("r1", 30),
        ],
    )
    .unwrap();
    // Summed, in first-occurrence order.
    assert_eq!(
        default_path(&ing).splits,
        [split("r1", 80, 60), split("r2", 80, 40)]
    );
}

#[test]
fn single_target_tag_group_routes_100_percent() {
    let ing = check_route(
        &store(),
        vec![
            to_revision("r1", 90),
            tagged("canary", to_revision("r2", 10)),
        ],
    )
    .unwrap();
    assert_eq!(
        rule_for(&ing, "canary-hello.default.example.com").paths[0].splits,
        [split("r2", 80, 100)]
    );
}

#[test]
fn consolidated_traffic_example() {
    // serving traffic_test.go TestBuildTrafficConfigurationConsolidated.
    let store = store_with(
        vec![mk_revision("rev-a", "cfg"), mk_revision("rev-b", "cfg")],
        vec![mk_configuration("cfg", Some("rev-b"))],
    );
    let ing = check_route(
        &store,
        vec![
            tagged("one", to_revision("rev-a", 49)),
            tagged("two", to_revision("rev-b", 50)),
            tagged("also-two", to_configuration("cfg", 1)),
        ],
    )
    .unwrap();
    assert_eq!(
        default_path(&ing).splits,
        [split("rev-a", 80, 49), split("rev-b", 80, 51)]
    );
    for (tag, rev) in [("one", "rev-a"), ("two", "rev-b"), ("also-two", "rev-b")] {
        let r = rule_for(&ing, &format!("{tag}-hello.default.svc.cluster.local"));
        assert_eq!(r.paths[0].splits, [split(rev, 80, 100)], "{tag}");
    }
}

#[test]
fn untagged_entries_of_the_same_configuration_become_one_split() {
    // serving traffic_test.go TestBuildTrafficConfigurationTwoEntriesSameConfig.
    let ing = check_route(
        &store(),
        vec![
            to_configuration("cfg", 42),
            to_configuration("cfg", 16),
            to_configuration("cfg", 42),
        ],
    )
    .unwrap();
    assert_eq!(default_path(&ing).splits, [split("r2", 80, 100)]);
}

#[test]
fn pinned_and_floating_entries_of_the_same_revision_become_one_split() {
    let ing = check_route(
        &store(),
        vec![to_revision("r2", 60), to_configuration("cfg", 40)],
    )
    .unwrap();
    assert_eq!(default_path(&ing).splits, [split("r2", 80, 100)]);
}

#[test]
fn zero_percent_splits_are_left_out_of_paths() {
    let ing = check_route(
        &store(),
        vec![
            to_revision("r1", 100),
            tagged("next", to_configuration("cfg", 0)),
        ],
    )
    .unwrap();
    assert_eq!(default_path(&ing).splits, [split("r1", 80, 100)]);
    // The tag group still routes 100 % to its revision.
    assert_eq!(
        rule_for(&ing, "next-hello.default.example.com").paths[0].splits,
        [split("r2", 80, 100)]
    );
}

#[test]
fn latest_ready_revision_follows_revisions_relabelled_and_deleted() {
    use crate::route::latest_ready_revision;
    use model::Kind;
    // Configurations without a status: the latest ready Revision is worked out from the
    // Revisions labelled with each (the store's index of them).
    let mut s = store_with(
        vec![mk_revision("a-1", "a"), mk_revision("a-2", "a")],
        vec![mk_configuration("a", None), mk_configuration("b", None)],
    );
    assert_eq!(latest_ready_revision(&s, NS, "a").as_deref(), Ok("a-2"));
    assert!(latest_ready_revision(&s, NS, "b").is_err());
    // a-2 moves to b.
    s.apply(Object::Revision(mk_revision("a-2", "b")));
    assert_eq!(latest_ready_revision(&s, NS, "a").as_deref(), Ok("a-1"));
    assert_eq!(latest_ready_revision(&s, NS, "b").as_deref(), Ok("a-2"));
    // A Revision of the same name in another namespace is not one of them.
    let mut elsewhere = mk_revision("a-3", "a");
    elsewhere.metadata.namespace = "other".into();
    s.apply(Object::Revision(elsewhere));
    assert_eq!(latest_ready_revision(&s, NS, "a").as_deref(), Ok("a-1"));
    s.delete(Kind::Revision, &model::ObjectKey::new(NS, "a-1"));
    assert!(latest_ready_revision(&s, NS, "a").is_err());
    assert_eq!(latest_ready_revision(&s, NS, "b").as_deref(), Ok("a-2"));
}

#[test]
fn stamps_change_with_what_translation_read_and_vanish_with_it() {
    use model::store::Dep;
    use model::{Kind, ObjectKey};
    let key = |n: &str| ObjectKey::new(NS, n);
    let rev = |n: &str| Dep::Object(Kind::Revision, key(n));
    let group = |c: &str| Dep::ConfigurationRevisions(key(c));
    let mut s = store_with(
        vec![mk_revision("a-1", "a"), mk_revision("a-2", "a")],
        vec![mk_configuration("a", None)],
    );
    let before = (
        s.stamp(&rev("a-1")),
        s.stamp(&rev("a-2")),
        s.stamp(&group("a")),
    );
    assert!(before.0.is_some() && before.1.is_some() && before.2.is_some());
    assert_eq!(s.stamp(&group("b")), None, "no Revision labelled b yet");

    // a-2 changes: its own stamp and its Configuration's group change, a-1's does not.
    let mut changed = mk_revision("a-2", "a");
    changed.metadata.generation = Some(7);
    let copy = s.clone();
    s.apply(Object::Revision(changed));
    assert_eq!(s.stamp(&rev("a-1")), before.0);
    assert_ne!(s.stamp(&rev("a-2")), before.1);
    assert_ne!(s.stamp(&group("a")), before.2);
    assert_ne!(s, copy, "the objects differ");

    // Relabelled to b: both groups change. Deleted: its stamp is gone, and so is b's group.
    let a = s.stamp(&group("a"));
    s.apply(Object::Revision(mk_revision("a-2", "b")));
    assert_ne!(s.stamp(&group("a")), a);
    assert!(s.stamp(&group("b")).is_some());
    s.delete(Kind::Revision, &key("a-2"));
    assert_eq!((s.stamp(&rev("a-2")), s.stamp(&group("b"))), (None, None));

    // Stamps are not part of a store's value: the same objects applied again are equal.
    let mut again = store_with(
        vec![mk_revision("a-1", "a")],
        vec![mk_configuration("a", None)],
    );
    again.apply(Object::Revision(mk_revision("a-1", "a")));
    assert_ne!(again.stamp(&rev("a-1")), s.stamp(&rev("a-1")));
    assert_eq!(again, s);
}

#[test]
fn dirty_set_is_everything_while_the_store_was_empty() {
    use model::store::Dep;
    use model::{Kind, ObjectKey};
    let key = |n: &str| ObjectKey::new(NS, n);
    let mut s = model::Store::default();
    s.apply(Object::Revision(mk_revision("a-1", "a")));
    assert_eq!(s.take_dirty(), None, "a first load changes everything");
    s.apply(Object::Revision(mk_revision("a-2", "a")));
    let d = s
        .take_dirty()
        .expect("changes to a store with objects are listed");
    assert!(d.contains(&Dep::Object(Kind::Revision, key("a-2"))));
    assert!(d.contains(&Dep::ConfigurationRevisions(key("a"))));
    assert!(!d.contains(&Dep::Object(Kind::Revision, key("a-1"))));
    s.delete(Kind::Revision, &key("a-1"));
    s.delete(Kind::Revision, &key("a-2"));
    let d = s.take_dirty().expect("deletes are listed");
    assert!(d.contains(&Dep::Object(Kind::Revision, key("a-1"))));
    s.apply(Object::Revision(mk_revision("a-3", "a")));
    assert_eq!(s.take_dirty(), None, "filled again from empty");
}

/// Compacting a store keeps its objects, its indexes and their stamps, and it goes on
/// taking changes (enough Revisions for many B-tree nodes).
#[test]
fn a_compacted_store_is_the_same_store() {
    use crate::route::latest_ready_revision;
    use model::store::Dep;
    use model::{Kind, ObjectKey};
    let key = |n: &str| ObjectKey::new(NS, n);
    let revisions = (0..500)
        .map(|i| mk_revision(&format!("r-{i:03}"), &format!("c-{}", i % 7)))
        .collect();
    let mut s = store_with(revisions, vec![mk_configuration("c-1", None)]);
    let deps: Vec<Dep> = (0..500)
        .map(|i| Dep::Object(Kind::Revision, key(&format!("r-{i:03}"))))
        .chain((0..7).map(|c| Dep::ConfigurationRevisions(key(&format!("c-{c}")))))
        .collect();
    let stamps: Vec<Option<u64>> = deps.iter().map(|d| s.stamp(d)).collect();
    assert!(stamps.iter().all(Option::is_some));
    let before = s.clone();
    s.compact();
    assert_eq!(s, before);
    assert_eq!(deps.iter().map(|d| s.stamp(d)).collect::<Vec<_>>(), stamps);
    assert_eq!(latest_ready_revision(&s, NS, "c-1").as_deref(), Ok("r-498"));
    // Still a store: a relabelled Revision moves between groups.
    s.apply(Object::Revision(mk_revision("r-498", "c-2")));
    assert_eq!(latest_ready_revision(&s, NS, "c-1").as_deref(), Ok("r-491"));
    assert_ne!(s.stamp(&deps[500 + 1]), stamps[500 + 1]);
    assert_eq!(s.stamp(&deps[0]), stamps[0]);
}

#[test]
fn a_loaded_store_is_the_store_applying_each_gives() {
    use crate::route::latest_ready_revision;
    use model::store::{Dep, Loaded};
    use model::{Kind, ObjectKey};
    let key = |n: &str| ObjectKey::new(NS, n);
    // Enough Revisions that the load builds its largest maps on another thread.
    const N: usize = 5000;
    let objects: Vec<Object> = (0..N)
        .map(|i| Object::Revision(mk_revision(&format!("r-{i:04}"), &format!("c-{}", i % 7))))
        .chain([Object::Configuration(mk_configuration("c-1", None))])
        .collect();
    let load = |store: &mut Store, objects: &[Object]| {
        let mut loaded = Loaded::default();
        for o in objects {
            loaded.push(o.key(), o.clone());
        }
        store.load(loaded);
    };
    let applied = mk_store(objects.clone());
    let mut s = Store::new();
    load(&mut s, &objects);
    assert_eq!(s, applied);
    let deps: Vec<Dep> = (0..N)
        .map(|i| Dep::Object(Kind::Revision, key(&format!("r-{i:04}"))))
        .chain((0..7).map(|c| Dep::ConfigurationRevisions(key(&format!("c-{c}")))))
        .collect();
    assert!(deps.iter().all(|d| s.stamp(d).is_some()));
    assert_eq!(
        latest_ready_revision(&s, NS, "c-1").as_deref(),
        Ok("r-4999")
    );
    // Still a store: a relabelled Revision moves between groups.
    let before = s.stamp(&deps[N + 1]);
    s.apply(Object::Revision(mk_revision("r-4999", "c-2")));
    assert_eq!(
        latest_ready_revision(&s, NS, "c-1").as_deref(),
        Ok("r-4992")
    );
    assert_ne!(s.stamp(&deps[N + 1]), before);

    // A store that records changes takes them one by one, and records them.
    let mut s = mk_store(objects[..10].to_vec());
    assert!(
        s.take_dirty().is_none(),
        "the store was empty at the last take"
    );
    let _ = s.take_dirty();
    load(&mut s, &objects[10..20]);
    assert_eq!(s, mk_store(objects[..20].to_vec()));
    let dirty = s.take_dirty().expect("changes recorded");
    assert!(dirty.contains(&Dep::Object(Kind::Revision, key("r-0015"))));
    assert!(dirty.contains(&Dep::ConfigurationRevisions(key("c-1"))));
    assert!(!dirty.contains(&Dep::Object(Kind::Revision, key("r-0005"))));
}

// Implied Revisions (no controller: a manifests folder) ------------------------------------

fn implied_kservice(svc: &KService, store: &Store) -> Result<Ingress, Vec<Problem>> {
    let input = RouteInput::from_kservice(svc)?;
    crate::route::translate_route(&input, store, &example_config(), true)
}

/// kn's bring-your-own names: the template names the latest Revision, traffic the earlier
/// ones; none has an object, and all are routed.
#[test]
fn implied_revisions_follow_the_template_name_and_traffic() {
    let mut svc = mk_kservice(
        "shop",
        vec![
            tagged("v1", to_revision("shop-00001", 80)),
            tagged("v2", to_revision("shop-00002", 20)),
            tagged("candidate", to_latest(0)),
        ],
    );
    svc.spec.template.metadata.name = Some("shop-00003".into());
    let store = mk_store([Object::KService(svc.clone())]);
    let ing = implied_kservice(&svc, &store).unwrap();
    assert_eq!(
        split_summary(&rule_for(&ing, "shop.default.example.com").paths[0]),
        [("shop-00001".into(), 80, 80), ("shop-00002".into(), 80, 20)]
    );
    assert_eq!(
        split_summary(&rule_for(&ing, "candidate-shop.default.example.com").paths[0]),
        [("shop-00003".into(), 80, 100)]
    );
    assert_eq!(
        crate::route::implied_revisions(&ing, &store),
        ["shop-00001", "shop-00002", "shop-00003"]
    );
    // Where a controller runs, a missing Revision is an error, as in Knative.
    let p = problems(translate_kservice(&store, &example_config(), &svc));
    assert_problem(
        &p,
        "spec.traffic[0].revisionName",
        "Revision \"shop-00001\" referenced in traffic not found",
    );
}

/// Without a name, Knative's: `<name>-<generation, 5 digits>`, generation 1 when absent.
#[test]
fn implied_revision_name_comes_from_the_generation() {
    let mut svc = mk_kservice("hello", vec![]);
    let store = mk_store([Object::KService(svc.clone())]);
    let ing = implied_kservice(&svc, &store).unwrap();
    assert_eq!(
        split_summary(&rule_for(&ing, "hello.default.example.com").paths[0]),
        [("hello-00001".into(), 80, 100)]
    );
    svc.metadata.generation = Some(12);
    let store = mk_store([Object::KService(svc.clone())]);
    let ing = implied_kservice(&svc, &store).unwrap();
    assert_eq!(
        split_summary(&rule_for(&ing, "hello.default.example.com").paths[0]),
        [("hello-00012".into(), 80, 100)]
    );
    // A standalone Configuration's template implies its Revision as well.
    let mut cfg = mk_configuration("cfg", None);
    cfg.status = Default::default();
    cfg.spec.template.metadata.name = Some("cfg-blue".into());
    let store = mk_store([Object::Configuration(cfg)]);
    let input = RouteInput::from_route(&mk_route("hello", vec![to_configuration("cfg", 100)]));
    let ing = crate::route::translate_route(&input, &store, &example_config(), true).unwrap();
    assert_eq!(default_path(&ing).splits, [split("cfg-blue", 80, 100)]);
}

/// Revision objects, when present, win: an exported Configuration's status, a Revision
/// that is not ready, and the protocol of an object's ports over the template's.
#[test]
fn revision_objects_win_over_implied_ones() {
    // The status names the latest ready Revision: used, as in a cluster.
    let store = store();
    let input = RouteInput::from_route(&mk_route("hello", vec![to_configuration("cfg", 100)]));
    let ing = crate::route::translate_route(&input, &store, &example_config(), true).unwrap();
    assert_eq!(default_path(&ing).splits, [split("r2", 80, 100)]);
    // The template's Revision exists and is not ready: the latest ready one is served.
    let mut svc = mk_kservice("hello", vec![]);
    svc.spec.template.metadata.name = Some("hello-00002".into());
    let mut unready = mk_revision("hello-00002", "hello");
    unready.status.as_mut().unwrap().conditions[0].status = "False".into();
    let store = mk_store([
        Object::KService(svc.clone()),
        Object::Revision(mk_revision("hello-00001", "hello")),
        Object::Revision(unready),
    ]);
    let ing = implied_kservice(&svc, &store).unwrap();
    assert_eq!(
        split_summary(&rule_for(&ing, "hello.default.example.com").paths[0]),
        [("hello-00001".into(), 80, 100)]
    );
    assert!(crate::route::implied_revisions(&ing, &store).is_empty());
    // A generated name (generation 7) is not implied over the folder's own Revisions.
    let mut svc = mk_kservice("hello", vec![]);
    svc.metadata.generation = Some(7);
    let store = mk_store([
        Object::KService(svc.clone()),
        Object::Revision(mk_revision("hello-00001", "hello")),
    ]);
    let ing = implied_kservice(&svc, &store).unwrap();
    assert_eq!(
        split_summary(&rule_for(&ing, "hello.default.example.com").paths[0]),
        [("hello-00001".into(), 80, 100)]
    );
    // An implied Revision's protocol is its template's.
    let mut svc = mk_kservice("grpc", vec![]);
    svc.spec.template.spec = mk_h2c_revision("x", "grpc").spec.into();
    let store = mk_store([Object::KService(svc.clone())]);
    let ing = implied_kservice(&svc, &store).unwrap();
    let splits = &rule_for(&ing, "grpc.default.example.com").paths[0].splits;
    assert_eq!(
        splits[0],
        split("grpc-00001", 81, 100),
        "h2c: the revision's h2c port"
    );
}
