//! Delta: [`DeltaStream`].

use super::*;
use crate::stream::delta::{MAX_OUTSTANDING, MAX_RESPONSE_BYTES};

#[test]
fn delta_changed_names_path_sends_what_a_full_look_sends() {
    // Two delta clients through the same sequence of snapshots: one gets snapshots that
    // carry their changed names (the incremental path), the other plain ones (a full
    // look each time). They must be sent the same resources and removals.
    let mut w = RandomWorld::new(7);
    let first = w.snapshot();
    let mut published = first.clone().published_after(None);
    let (mut inc, mut full) = (DeltaStream::new(), DeltaStream::new());
    let eds_names: Vec<String> = (0..12).map(|i| format!("c{i}")).collect();
    let eds_refs: Vec<&str> = eds_names.iter().map(String::as_str).collect();
    let rds_names: Vec<String> = (0..12).map(|i| format!("r{i}")).collect();
    let rds_refs: Vec<&str> = rds_names.iter().map(String::as_str).collect();
    let answer = |c: &mut DeltaStream, out: Vec<DeltaDiscoveryResponse>, s: &Snapshot| {
        let mut seen = Vec::new();
        let mut queue: VecDeque<_> = out.into();
        while let Some(r) = queue.pop_front() {
            let mut names = dnames(&r);
            names.sort();
            let mut removed = r.removed_resources.clone();
            removed.sort();
            seen.push((r.type_url.clone(), names, removed));
            queue.extend(c.delta(dack(&r), s).unwrap());
        }
        seen
    };
    for (c, s) in [(&mut inc, &published), (&mut full, &first)] {
        for (ty, names) in [
            (Cds, vec!["*"]),
            (Eds, eds_refs.clone()),
            (Lds, vec!["*"]),
            (Rds, rds_refs.clone()),
        ] {
            let out = c.delta(dreq(ty, &names, &[], ""), s).unwrap();
            answer(c, out, s);
        }
    }
    for step in 0..60 {
        w.change();
        let plain = w.snapshot();
        let next = plain.clone().published_after(Some(&published));
        assert!(next.changes_since(published.id()).is_some());
        let a = inc.delta_changed(&next);
        let b = full.delta_changed(&plain);
        let (a, b) = (answer(&mut inc, a, &next), answer(&mut full, b, &plain));
        assert_eq!(a, b, "step {step}");
        assert!(inc.in_sync(&next), "step {step}");
        assert!(inc.in_sync_by_content(&next), "step {step}");
        assert!(full.in_sync_by_content(&plain), "step {step}");
        published = next;
    }
}

#[test]
fn delta_routes_wait_for_new_cluster_endpoints_and_a_nack_releases_them() {
    let s1 = base();
    let mut c = DeltaStream::new();
    let cds = done(c.delta(dreq(Cds, &["*"], &[], ""), &s1).unwrap());
    // LDS asked before the CLAs arrive: held.
    assert!(c.delta(dack(&cds), &s1).unwrap().is_empty());
    assert!(c.delta(dreq(Lds, &["*"], &[], ""), &s1).unwrap().is_empty());
    let eds = done(c.delta(dreq(Eds, &["a", "b"], &[], ""), &s1).unwrap());
    // The CLAs' ACK releases the listener.
    let lds = done(c.delta(dack(&eds), &s1).unwrap());
    assert_eq!(ResourceType::from_type_url(&lds.type_url), Some(Lds));
    // A new cluster whose CLA is rejected does not hold routes forever.
    let s2 = snap(
        &[cluster("a", "1"), cluster("b", "1"), cluster("c", "1")],
        &[cla("a", 1), cla("b", 1), cla("c", 1)],
        &[listener("http", "2")],
        &[route("r1", "1"), route("r2", "1")],
    );
    assert!(c.delta(dack(&lds), &s1).unwrap().is_empty());
    let out = c.delta_changed(&s2);
    assert_eq!(out.len(), 1, "only CDS: {out:?}");
    c.delta(dack(&out[0]), &s2).unwrap();
    let eds = done(c.delta(dreq(Eds, &["c"], &[], ""), &s2).unwrap());
    let mut nack = dack(&eds);
    nack.error_detail = Some(status("bad endpoints"));
    let lds = done(c.delta(nack, &s2).unwrap());
    assert_eq!(ResourceType::from_type_url(&lds.type_url), Some(Lds));
}

#[test]
fn delta_first_wildcard_request_gets_everything() {
    let s = base();
    let mut c = DeltaStream::new();
    let mut r = dreq(Cds, &[], &[], "");
    r.node = Some(node("d"));
    let resp = done(c.delta(r, &s).unwrap());
    assert_eq!(dnames(&resp), ["a", "b"]);
    assert_eq!(
        *resp.resources[0].version,
        *s.get(Cds, "a").unwrap().version
    );
    assert!(resp.removed_resources.is_empty());
    assert!(c.delta(dack(&resp), &s).unwrap().is_empty());
    let st = type_status(&c, Cds);
    assert!(st.wildcard);
    assert_eq!(st.acks, 1);
    assert_eq!(st.acked_resources.unwrap().len(), 2);
    // Wildcard with no resources at all is still answered on the first request.
    let mut c = DeltaStream::new();
    let empty = Snapshot::default();
    let resp = done(c.delta(dreq(Lds, &["*"], &[], ""), &empty).unwrap());
    assert!(resp.resources.is_empty());
}

#[test]
fn delta_large_set_goes_in_parts_each_acked() {
    // Six clusters of ~1 MB: more than one response may carry.
    let big = |name: &str| cluster(name, &"x".repeat(1 << 20));
    let names = ["a", "b", "c", "d", "e", "f"];
    let clusters: Vec<_> = names.iter().map(|n| big(n)).collect();
    let mut s1 = snap(&clusters, &[], &[], &[]);
    s1.resources_mut(Cds).remove("f");
    let s1 = s1.published_after(None);
    let mut c = DeltaStream::new();
    let parts = c.delta(dreq(Cds, &[], &[], ""), &s1).unwrap();
    assert!(parts.len() > 1, "{} parts", parts.len());
    for p in &parts {
        assert_eq!(p.type_url, Cds.type_url());
        let bytes: usize = (p.resources.iter())
            .map(|r| r.resource.as_ref().unwrap().value.len())
            .sum();
        assert!(
            p.resources.len() == 1 || bytes <= MAX_RESPONSE_BYTES,
            "{bytes} B"
        );
    }
    // Every cluster once, in order, each part with its own nonce.
    let sent: Vec<String> = parts.iter().flat_map(dnames).collect();
    assert_eq!(sent, names[..5]);
    let nonces: BTreeSet<&str> = parts.iter().map(|p| p.nonce.as_str()).collect();
    assert_eq!(nonces.len(), parts.len());
    // Not in sync until the last part is ACKed; removals ride in the first part.
    for p in &parts {
        assert!(!c.in_sync(&s1));
        assert!(c.delta(dack(p), &s1).unwrap().is_empty());
    }
    assert!(c.in_sync(&s1));
    assert_eq!(type_status(&c, Cds).acked_resources.unwrap().len(), 5);
    let s2 = snap(&clusters[1..], &[], &[], &[]).published_after(Some(&s1));
    let parts = c.delta_changed(&s2);
    assert_eq!(parts[0].removed_resources, ["a"]);
    assert_eq!(parts.iter().flat_map(dnames).collect::<Vec<_>>(), ["f"]);
    assert!(parts[1..].iter().all(|p| p.removed_resources.is_empty()));
}

#[test]
fn delta_more_parts_than_outstanding_responses_are_all_recognised() {
    let names: Vec<String> = (0..MAX_OUTSTANDING + 4)
        .map(|i| format!("c{i:02}"))
        .collect();
    let clusters: Vec<_> = names.iter().map(|n| cluster(n, "1")).collect();
    let s = snap(&clusters, &[], &[], &[]);
    let mut c = DeltaStream::new();
    c.part_bytes = 1; // one resource per response
    let parts = c.delta(dreq(Cds, &[], &[], ""), &s).unwrap();
    assert_eq!(parts.len(), names.len());
    for p in &parts {
        c.delta(dack(p), &s).unwrap();
    }
    let st = type_status(&c, Cds);
    assert_eq!(st.acks, names.len() as u64);
    assert_eq!(st.acked_resources.unwrap().len(), names.len());
    assert!(c.in_sync(&s));
}

#[test]
fn delta_subscribe_unsubscribe() {
    let s1 = base();
    let mut c = DeltaStream::new();
    let r = done(c.delta(dreq(Eds, &["a"], &[], ""), &s1).unwrap());
    assert_eq!(dnames(&r), ["a"]);
    let r = done(c.delta(dreq(Eds, &["b"], &[], &r.nonce), &s1).unwrap());
    assert_eq!(dnames(&r), ["b"]);
    // Unsubscribe needs no response; changes to it are no longer pushed.
    assert!(c
        .delta(dreq(Eds, &[], &["a"], &r.nonce), &s1)
        .unwrap()
        .is_empty());
    assert_eq!(type_status(&c, Eds).names, ["b"]);
    let mut s2 = s1.clone();
    s2.resources_mut(Eds).insert("a".into(), cla("a", 2));
    assert!(c.delta_changed(&s2).is_empty());
    s2.resources_mut(Eds).insert("b".into(), cla("b", 2));
    let r = done(c.delta_changed(&s2));
    assert_eq!(dnames(&r), ["b"]);
    // Subscribing again sends it.
    let r = done(c.delta(dreq(Eds, &["a"], &[], &r.nonce), &s2).unwrap());
    assert_eq!(dnames(&r), ["a"]);
}

#[test]
fn delta_explicit_resubscribe_is_answered() {
    let s = base();
    let mut c = DeltaStream::new();
    let r = done(c.delta(dreq(Rds, &["r1"], &[], ""), &s).unwrap());
    c.delta(dack(&r), &s).unwrap();
    let r = done(c.delta(dreq(Rds, &["r1"], &[], &r.nonce), &s).unwrap());
    assert_eq!(dnames(&r), ["r1"]);
}

#[test]
fn delta_initial_resource_versions_nothing_resent_when_matching() {
    let s = base();
    let mut c = DeltaStream::new();
    let mut r = dreq(Cds, &[], &[], "");
    r.initial_resource_versions = versions(&s, Cds);
    // Wildcard first request: answered, but empty.
    let resp = done(c.delta(r, &s).unwrap());
    assert!(resp.resources.is_empty() && resp.removed_resources.is_empty());
    let mut r = dreq(Eds, &["a", "b"], &[], "");
    r.initial_resource_versions = versions(&s, Eds);
    assert!(c.delta(r, &s).unwrap().is_empty());
    assert!(c.delta_changed(&s).is_empty());
    assert_eq!(
        type_status(&c, Eds).acked_resources.unwrap().len(),
        2,
        "initial versions count as what the client has"
    );
}

/// A new stream is sent every Secret it subscribes to, even those its initial versions say it
/// has: after a reconnect Envoy may hold new secret providers that wait for an answer, and
/// without one its listeners come up without certificates (Envoy Gateway #9519). Later
/// subscriptions are answered too, and a rotation sends only the rotated Secret.
#[test]
fn delta_secrets_resent_on_a_new_stream_whatever_the_client_has() {
    let mut s = base();
    *s.resources_mut(ResourceType::Secret) = map(&[secret("ns/a", "1"), secret("ns/b", "1")]);
    let mut c = DeltaStream::new();
    let mut r = dreq(ResourceType::Secret, &["ns/a"], &[], "");
    r.initial_resource_versions = versions(&s, ResourceType::Secret);
    let resp = done(c.delta(r, &s).unwrap());
    assert_eq!(dnames(&resp), ["ns/a"]);
    assert!(c.delta(dack(&resp), &s).unwrap().is_empty());
    let resp = done(
        c.delta(dreq(ResourceType::Secret, &["ns/b"], &[], &resp.nonce), &s)
            .unwrap(),
    );
    assert_eq!(dnames(&resp), ["ns/b"]);
    c.delta(dack(&resp), &s).unwrap();
    // Rotation of one.
    let mut s2 = s.clone();
    *s2.resources_mut(ResourceType::Secret) = map(&[secret("ns/a", "2"), secret("ns/b", "1")]);
    let resp = done(c.delta_changed(&s2));
    assert_eq!(dnames(&resp), ["ns/a"]);
    // Other types still trust initial versions (nothing resent).
    let mut r = dreq(Eds, &["a", "b"], &[], "");
    r.initial_resource_versions = versions(&s, Eds);
    assert!(c.delta(r, &s2).unwrap().is_empty());
}

/// Scopes are kept under short names (see `names`): clients see, subscribe with and
/// reconnect with the full xdstp names, and a name that looks like a kept one is not ours.
#[test]
fn delta_scope_names_are_full_on_the_wire() {
    // As the translation names them (the builder crate checks it does).
    const PREFIX: &str = "xdstp://knative-xds/envoy.config.route.v3.ScopedRouteConfiguration/";
    const INTERNAL: &str = "internal";
    let scope_name = |listener: &str, host: &str| format!("{PREFIX}{listener}/{host}");
    let scopes_locator = |listener: &str| format!("{PREFIX}{listener}/*");
    let scopes = |hosts: &[&str]| {
        let rc: Arc<str> = "rc".into();
        let mut s = Snapshot::default().published_after(None);
        for h in hosts {
            for listener in ["external", INTERNAL] {
                let r = Resource::scope(names::scope(listener, h).into(), h, rc.clone());
                s.resources_mut(ResourceType::ScopedRoute)
                    .insert(r.name.clone(), r);
            }
        }
        s
    };
    let s1 = scopes(&["a.example.com", "b.ns"]);
    let s2 = scopes(&["a.example.com"]).published_after(Some(&s1));
    let srds = ResourceType::ScopedRoute;
    let locator = scopes_locator(INTERNAL);
    let mut c = DeltaStream::new();
    let resp = done(c.delta(dreq(srds, &[&locator], &[], ""), &s1).unwrap());
    let sent: Vec<&str> = resp.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        sent,
        [
            scope_name(INTERNAL, "a.example.com"),
            scope_name(INTERNAL, "b.ns")
        ]
    );
    for r in &resp.resources {
        let msg = ScopedRouteConfiguration::decode(&*r.resource.as_ref().unwrap().value);
        assert_eq!(
            msg.unwrap().name,
            r.name,
            "the message names itself as sent"
        );
    }
    assert!(c.delta(dack(&resp), &s1).unwrap().is_empty());
    let st = c.status().into_wire();
    let st = st
        .types
        .iter()
        .find(|t| t.type_url == srds.type_url())
        .unwrap();
    assert_eq!(st.names, std::slice::from_ref(&locator));
    let acked: Vec<&str> = st
        .acked_resources
        .as_ref()
        .unwrap()
        .keys()
        .map(|k| &**k)
        .collect();
    assert_eq!(acked, sent);
    // A removal is told by its full name.
    let resp = done(c.delta_changed(&s2));
    assert!(resp.resources.is_empty());
    assert_eq!(resp.removed_resources, [scope_name(INTERNAL, "b.ns")]);

    // Reconnecting with what it has (full names): nothing is re-sent.
    let mut c = DeltaStream::new();
    let mut r = dreq(srds, &[&locator], &[], "");
    r.initial_resource_versions = versions(&s2, srds)
        .into_iter()
        .filter(|(n, _)| n.contains("/internal/"))
        .collect();
    assert!(r
        .initial_resource_versions
        .contains_key(&scope_name(INTERNAL, "a.example.com")));
    let resp = done(c.delta(r, &s2).unwrap());
    assert!(resp.resources.is_empty() && resp.removed_resources.is_empty());

    // Names written the way the server keeps them are someone else's: absent.
    let mut c = DeltaStream::new();
    let odd = "\u{1}internal/a.example.com";
    let resp = done(c.delta(dreq(srds, &[odd, "\u{2}x"], &[], ""), &s2).unwrap());
    assert!(resp.resources.is_empty());
    let mut removed = resp.removed_resources.clone();
    removed.sort();
    assert_eq!(removed, [odd, "\u{2}x"]);
}

#[test]
fn delta_initial_resource_versions_only_changed_sent() {
    let s = base();
    let mut c = DeltaStream::new();
    let mut r = dreq(Lds, &[], &[], "");
    r.initial_resource_versions = versions(&s, Lds);
    r.initial_resource_versions
        .insert("gone".into(), "x".into());
    let resp = done(c.delta(r, &s).unwrap());
    assert!(resp.resources.is_empty());
    assert_eq!(resp.removed_resources, ["gone"]);

    let mut r = dreq(Rds, &["r1", "r2"], &[], "");
    r.initial_resource_versions = versions(&s, Rds);
    r.initial_resource_versions
        .insert("r2".into(), "old".into());
    let resp = done(c.delta(r, &s).unwrap());
    assert_eq!(dnames(&resp), ["r2"]);
    assert!(resp.removed_resources.is_empty());
}

#[test]
fn delta_removed_resources_on_delete() {
    let s1 = base();
    let mut c = DeltaStream::new();
    let r = done(c.delta(dreq(Cds, &[], &[], ""), &s1).unwrap());
    c.delta(dack(&r), &s1).unwrap();
    let r = done(c.delta(dreq(Eds, &["a", "b"], &[], ""), &s1).unwrap());
    c.delta(dack(&r), &s1).unwrap();
    let mut s2 = s1.clone();
    s2.resources_mut(Cds).remove("b");
    s2.resources_mut(Eds).remove("b");
    let pushed = c.delta_changed(&s2);
    assert_eq!(pushed.len(), 2);
    assert_eq!(pushed[0].type_url, Cds.type_url());
    assert!(pushed[0].resources.is_empty());
    assert_eq!(pushed[0].removed_resources, ["b"]);
    assert_eq!(pushed[1].removed_resources, ["b"]);
    // Told once.
    assert!(c.delta_changed(&s2).is_empty());
    c.delta(dack(&pushed[0]), &s2).unwrap();
    let acked = type_status(&c, Cds).acked_resources.unwrap();
    assert_eq!(acked.keys().map(|k| &**k).collect::<Vec<_>>(), ["a"]);
}

#[test]
fn delta_nonexistent_subscribed_name_reported_removed() {
    let s1 = base();
    let mut c = DeltaStream::new();
    let r = done(c.delta(dreq(Eds, &["a", "x"], &[], ""), &s1).unwrap());
    assert_eq!(dnames(&r), ["a"]);
    assert_eq!(r.removed_resources, ["x"]);
    // Only once.
    assert!(c.delta(dack(&r), &s1).unwrap().is_empty());
    let mut s2 = s1.clone();
    s2.resources_mut(Eds).insert("b".into(), cla("b", 5));
    assert!(c.delta_changed(&s2).is_empty());
    // Sent when it appears, reported again when it goes.
    s2.resources_mut(Eds).insert("x".into(), cla("x", 1));
    let r = done(c.delta_changed(&s2));
    assert_eq!(dnames(&r), ["x"]);
    s2.resources_mut(Eds).remove("x");
    let r = done(c.delta_changed(&s2));
    assert_eq!(r.removed_resources, ["x"]);
}

/// What the client ACKed follows each response: the old version until the change is
/// ACKed, an older response's version when that is ACKed while a newer one is in flight.
#[test]
fn delta_acked_follows_each_response() {
    let s1 = base();
    let mut c = DeltaStream::new();
    let r = done(c.delta(dreq(Cds, &[], &[], ""), &s1).unwrap());
    c.delta(dack(&r), &s1).unwrap();
    let v = |s: &Snapshot| s.get(Cds, "a").unwrap().version;
    let acked_a = |c: &DeltaStream| {
        type_status(c, Cds)
            .acked_resources
            .unwrap()
            .get("a")
            .copied()
    };
    let mut s2 = s1.clone();
    s2.resources_mut(Cds).insert("a".into(), cluster("a", "2"));
    let r2 = done(c.delta_changed(&s2));
    assert_eq!(acked_a(&c), Some(v(&s1)));
    let mut s3 = s2.clone();
    s3.resources_mut(Cds).insert("a".into(), cluster("a", "3"));
    s3.resources_mut(Cds).remove("b");
    let r3 = done(c.delta_changed(&s3));
    assert_eq!(r3.removed_resources, ["b"]);
    c.delta(dack(&r2), &s3).unwrap();
    assert_eq!(acked_a(&c), Some(v(&s2)));
    assert!(!c.in_sync_by_content(&s3));
    c.delta(dack(&r3), &s3).unwrap();
    assert_eq!(acked_a(&c), Some(v(&s3)));
    let acked = type_status(&c, Cds).acked_resources.unwrap();
    assert_eq!(acked.keys().map(|k| &**k).collect::<Vec<_>>(), ["a"]);
    assert!(c.in_sync_by_content(&s3));
    // A NACKed change leaves the ACKed version; going back to it sends it again, and
    // its ACK makes the client in sync.
    let mut s4 = s3.clone();
    s4.resources_mut(Cds).insert("a".into(), cluster("a", "4"));
    let r4 = done(c.delta_changed(&s4));
    let mut n = dack(&r4);
    n.error_detail = Some(status("bad"));
    c.delta(n, &s4).unwrap();
    assert_eq!(acked_a(&c), Some(v(&s3)));
    assert!(!c.in_sync_by_content(&s4));
    // (By content it runs s3: what it ACKed.)
    assert!(c.in_sync_by_content(&s3));
    let r5 = done(c.delta_changed(&s3));
    assert_eq!(dnames(&r5), ["a"]);
    c.delta(dack(&r5), &s3).unwrap();
    assert_eq!(acked_a(&c), Some(v(&s3)));
    assert!(c.in_sync_by_content(&s3));
}

#[test]
fn delta_nack_recorded_not_resent() {
    let s1 = base();
    let mut c = DeltaStream::new();
    let r = done(c.delta(dreq(Cds, &[], &[], ""), &s1).unwrap());
    c.delta(dack(&r), &s1).unwrap();
    let mut s2 = s1.clone();
    s2.resources_mut(Cds)
        .insert("a".into(), cluster("a", "bad"));
    let r = done(c.delta_changed(&s2));
    assert_eq!(dnames(&r), ["a"]);
    c.take_events();
    let mut n = dack(&r);
    n.error_detail = Some(status("Invalid duration"));
    assert!(c.delta(n, &s2).unwrap().is_empty());
    assert!(c.delta_changed(&s2).is_empty());
    // The client does not run s2: not in sync, by either check.
    assert!(!c.in_sync(&s2));
    assert!(!c.in_sync_by_content(&s2));

    let st = type_status(&c, Cds);
    assert_eq!(st.nacks, 1);
    let nack = st.last_nack.unwrap();
    assert_eq!(nack.nonce, r.nonce);
    assert_eq!(nack.message, "Invalid duration");
    let attempted = nack.attempted.unwrap();
    assert_eq!(attempted.resources["a"], s2.get(Cds, "a").unwrap().version);
    // ACKed state is still the old cluster.
    assert_eq!(
        st.acked_resources.unwrap()["a"],
        s1.get(Cds, "a").unwrap().version
    );
    assert!(matches!(
        &c.take_events()[..],
        [ConnectionEvent::Nack { .. }]
    ));

    let mut s3 = s1.clone();
    s3.resources_mut(Cds)
        .insert("a".into(), cluster("a", "good"));
    let r = done(c.delta_changed(&s3));
    assert_eq!(dnames(&r), ["a"]);
}

#[test]
fn delta_stale_nonce_still_honours_subscription() {
    let s1 = base();
    let mut c = DeltaStream::new();
    let r1 = done(c.delta(dreq(Rds, &["r1"], &[], ""), &s1).unwrap());
    let mut s2 = s1.clone();
    s2.resources_mut(Rds).insert("r1".into(), route("r1", "2"));
    let _r2 = done(c.delta_changed(&s2));
    // Carries r1's nonce (superseded by r2) but subscribes r2: must be answered.
    let r = done(c.delta(dreq(Rds, &["r2"], &[], "bogus"), &s2).unwrap());
    assert_eq!(dnames(&r), ["r2"]);
    let r = c.delta(dreq(Rds, &[], &["r1"], &r1.nonce), &s2).unwrap();
    assert!(r.is_empty());
    assert_eq!(type_status(&c, Rds).names, ["r2"]);
}

#[test]
fn delta_cds_change_forces_cla_resend() {
    let s1 = base();
    let mut c = DeltaStream::new();
    for (ty, n) in [(Cds, vec![]), (Eds, vec!["a", "b"])] {
        let r = done(c.delta(dreq(ty, &n, &[], ""), &s1).unwrap());
        c.delta(dack(&r), &s1).unwrap();
    }
    let mut s2 = s1.clone();
    s2.resources_mut(Cds).insert("a".into(), cluster("a", "2"));
    let pushed = c.delta_changed(&s2);
    assert_eq!(pushed.len(), 2);
    assert_eq!(dnames(&pushed[0]), ["a"]);
    assert_eq!(pushed[1].type_url, Eds.type_url());
    assert_eq!(dnames(&pushed[1]), ["a"]);
    assert!(c.delta_changed(&s2).is_empty());

    // Reconnect with a changed cluster: its CLA is sent although the client has it.
    let mut d = DeltaStream::new();
    let mut r = dreq(Cds, &[], &[], "");
    r.initial_resource_versions = versions(&s1, Cds);
    assert_eq!(dnames(&done(d.delta(r, &s2).unwrap())), ["a"]);
    let mut r = dreq(Eds, &["a", "b"], &[], "");
    r.initial_resource_versions = versions(&s1, Eds);
    assert_eq!(dnames(&done(d.delta(r, &s2).unwrap())), ["a"]);
}

#[test]
fn delta_wildcard_explicit_overlap_unsubscribe_is_answered() {
    let s = base();
    let mut c = DeltaStream::new();
    let r = done(c.delta(dreq(Cds, &["*", "a", "zz"], &[], ""), &s).unwrap());
    assert_eq!(dnames(&r), ["a", "b"]);
    assert_eq!(r.removed_resources, ["zz"]);
    let r = done(c.delta(dreq(Cds, &[], &["a", "zz"], &r.nonce), &s).unwrap());
    assert_eq!(dnames(&r), ["a"]);
    assert_eq!(r.removed_resources, ["zz"]);
    // Dropping the wildcard keeps only explicit names.
    assert!(
        c.delta(dreq(Cds, &["b"], &["*"], &r.nonce), &s)
            .unwrap()
            .len()
            == 1
    );
    assert_eq!(type_status(&c, Cds).names, ["b"]);
    assert!(!type_status(&c, Cds).wildcard);
}

#[test]
fn two_delta_connections_with_different_rds_subscriptions_get_different_pushes() {
    let s1 = base();
    let mut c1 = DeltaStream::new();
    let mut c2 = DeltaStream::new();
    c1.delta(dreq(Rds, &["r1"], &[], ""), &s1).unwrap();
    c2.delta(dreq(Rds, &["r2"], &[], ""), &s1).unwrap();
    let mut s2 = s1.clone();
    s2.resources_mut(Rds).insert("r2".into(), route("r2", "2"));
    assert!(c1.delta_changed(&s2).is_empty());
    assert_eq!(dnames(&done(c2.delta_changed(&s2))), ["r2"]);
}
