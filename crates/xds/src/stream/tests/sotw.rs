//! SotW: [`SotwStream`].

use super::*;

/// A SotW connection that has received and ACKed CDS, EDS [a, b], LDS, RDS [r1].
fn sotw_synced(s: &Snapshot) -> SotwStream {
    let mut c = SotwStream::new();
    for (ty, n) in [
        (Cds, vec![]),
        (Eds, vec!["a", "b"]),
        (Lds, vec![]),
        (Rds, vec!["r1"]),
    ] {
        let r = one(c.sotw(req(ty, &n, "", ""), s).unwrap());
        assert!(c.sotw(ack(&r, &n), s).unwrap().is_empty());
    }
    c
}

fn pushed_nonce(c: &SotwStream, ty: ResourceType) -> String {
    c.types[&TypeKey::Served(ty)]
        .exchange
        .latest_nonce()
        .unwrap()
        .to_string()
}

#[test]
fn sotw_first_request_cds_wildcard_gets_all() {
    let s = base();
    let mut c = SotwStream::new();
    let mut r = req(Cds, &[], "", "");
    r.node = Some(node("envoy-1"));
    let resp = one(c.sotw(r, &s).unwrap());
    assert_eq!(names(&resp), ["a", "b"]);
    assert_eq!(resp.type_url, Cds.type_url());
    assert_eq!(
        resp.version_info,
        aggregate_version(s.resources(Cds).values())
    );
    assert_eq!(resp.nonce, "1");
    assert_eq!(c.node().unwrap().id, "envoy-1");
    // Explicit "*" is wildcard too.
    let mut c = SotwStream::new();
    let resp = one(c.sotw(req(Lds, &["*"], "", ""), &s).unwrap());
    assert_eq!(names(&resp), ["http"]);
}

#[test]
fn sotw_ack_gives_no_reply() {
    let s = base();
    let mut c = SotwStream::new();
    let resp = one(c.sotw(req(Cds, &[], "", ""), &s).unwrap());
    assert!(c.sotw(ack(&resp, &[]), &s).unwrap().is_empty());
    // Envoy repeats an identical ACK after some updates: still nothing, counted once.
    assert!(c.sotw(ack(&resp, &[]), &s).unwrap().is_empty());
    assert!(c.sotw_changed(&s).is_empty());
    let st = type_status(&c, Cds);
    assert_eq!(
        st.acked_version.as_deref(),
        Some(resp.version_info.as_str())
    );
    assert_eq!(st.acks, 1);
    assert!(st.pending.is_none());
    let events = c.take_events();
    assert!(events.contains(&ConnectionEvent::Ack {
        type_url: Cds.type_url().into(),
        nonce: resp.nonce.clone(),
        version: resp.version_info.clone(),
    }));
    assert!(c.take_events().is_empty());
}

#[test]
fn sotw_nack_records_error_and_does_not_resend() {
    let s1 = base();
    let mut c = sotw_synced(&s1);
    let v1 = type_status(&c, Cds).acked_version.unwrap();
    let mut s2 = s1.clone();
    s2.resources_mut(Cds)
        .insert("a".into(), cluster("a", "bad"));
    let pushed = c.sotw_changed(&s2);
    assert_eq!(types(&pushed), [Some(Cds), Some(Eds)]);
    let cds = &pushed[0];
    c.take_events();

    assert!(c.sotw(nack(cds, &[], &v1), &s2).unwrap().is_empty());
    // Neither the same snapshot again nor a request re-sends the rejected content.
    assert!(c.sotw_changed(&s2).is_empty());
    assert!(c
        .sotw(req(Cds, &[], &v1, &cds.nonce), &s2)
        .unwrap()
        .is_empty());

    let st = type_status(&c, Cds);
    assert_eq!(st.nacks, 1);
    assert_eq!(st.acked_version.as_deref(), Some(v1.as_str()));
    let n = st.last_nack.unwrap();
    assert_eq!(n.nonce, cds.nonce);
    assert_eq!(n.message, "bad cluster");
    assert_eq!(n.client_version, v1);
    assert_eq!(n.attempted.unwrap().version, cds.version_info);
    assert!(st.pending.is_none());
    assert!(matches!(
        &c.take_events()[..],
        [ConnectionEvent::Nack { message, version, .. }]
            if message == "bad cluster" && *version == cds.version_info
    ));
}

#[test]
fn sotw_change_after_nack_is_sent() {
    let s1 = base();
    let mut c = sotw_synced(&s1);
    let mut s2 = s1.clone();
    s2.resources_mut(Cds)
        .insert("a".into(), cluster("a", "bad"));
    let cds = c.sotw_changed(&s2).remove(0);
    c.sotw(nack(&cds, &[], "x"), &s2).unwrap();

    let mut s3 = s1.clone();
    s3.resources_mut(Cds)
        .insert("a".into(), cluster("a", "fixed"));
    let pushed = c.sotw_changed(&s3);
    assert_eq!(types(&pushed), [Some(Cds), Some(Eds)]);
    assert_eq!(names(&pushed[0]), ["a", "b"]);
    assert_eq!(
        pushed[0].version_info,
        aggregate_version(s3.resources(Cds).values())
    );
    assert!(c.sotw(ack(&pushed[0], &[]), &s3).unwrap().is_empty());
    let st = type_status(&c, Cds);
    assert_eq!(st.acked_version, Some(pushed[0].version_info.clone()));
    assert_eq!(st.nacks, 1);
    assert_eq!(st.acks, 2);
}

#[test]
fn sotw_changed_resource_names_get_new_view() {
    let s = base();
    let mut c = SotwStream::new();
    let r1 = one(c.sotw(req(Eds, &["a"], "", ""), &s).unwrap());
    assert_eq!(names(&r1), ["a"]);
    // The ACK carries a grown name set: answer with the new view.
    let r2 = one(c.sotw(ack(&r1, &["a", "b"]), &s).unwrap());
    assert_eq!(names(&r2), ["a", "b"]);
    assert_ne!(r2.version_info, r1.version_info);
    // Shrinking is answered too, even though it equals what the client had before.
    let r3 = one(c.sotw(ack(&r2, &["a"]), &s).unwrap());
    assert_eq!(names(&r3), ["a"]);
    assert_eq!(r3.version_info, r1.version_info);
    // Names that don't exist yet are remembered and sent when they appear.
    let r4 = one(c.sotw(ack(&r3, &["a", "c"]), &s).unwrap());
    assert_eq!(names(&r4), ["a"]);
    let mut s2 = s.clone();
    s2.resources_mut(Eds).insert("c".into(), cla("c", 1));
    // A content change sends only what changed (EDS/RDS resources are independent).
    let r5 = one(c.sotw_changed(&s2));
    assert_eq!(names(&r5), ["c"]);
    // RDS by name: only the requested route.
    let r = one(c.sotw(req(Rds, &["r2"], "", ""), &s2).unwrap());
    assert_eq!(names(&r), ["r2"]);
}

/// Secrets: a new stream is answered even when its version matches, and a rotation sends
/// only the rotated Secret.
#[test]
fn sotw_secrets_answered_on_reconnect_and_sent_alone_on_rotation() {
    let mut s = base();
    *s.resources_mut(ResourceType::Secret) = map(&[secret("ns/a", "1"), secret("ns/b", "1")]);
    let mut c = SotwStream::new();
    let r = one(c
        .sotw(req(ResourceType::Secret, &["ns/a", "ns/b"], "", ""), &s)
        .unwrap());
    assert_eq!(names(&r), ["ns/a", "ns/b"]);
    c.sotw(ack(&r, &["ns/a", "ns/b"]), &s).unwrap();
    let mut s2 = s.clone();
    s2.resources_mut(ResourceType::Secret)
        .insert("ns/b".into(), secret("ns/b", "2"));
    let rotated = one(c.sotw_changed(&s2));
    assert_eq!(names(&rotated), ["ns/b"]);
    // Reconnect with the version it has: answered all the same.
    let mut again = SotwStream::new();
    let req2 = req(ResourceType::Secret, &["ns/a", "ns/b"], &r.version_info, "");
    let r2 = one(again.sotw(req2, &s).unwrap());
    assert_eq!(names(&r2), ["ns/a", "ns/b"]);
}

#[test]
fn sotw_stale_nonce_ignored() {
    let s1 = base();
    let mut c = SotwStream::new();
    let r1 = one(c.sotw(req(Eds, &["a"], "", ""), &s1).unwrap());
    let mut s2 = s1.clone();
    s2.resources_mut(Eds).insert("a".into(), cla("a", 2));
    let r2 = one(c.sotw_changed(&s2));
    // A request answering r1 (even with new names or an error) crossed r2: ignored.
    assert!(c.sotw(ack(&r1, &["a", "b"]), &s2).unwrap().is_empty());
    assert!(c.sotw(nack(&r1, &["a"], ""), &s2).unwrap().is_empty());
    let st = type_status(&c, Eds);
    assert_eq!((st.acks, st.nacks), (0, 0));
    assert_eq!(st.names, ["a"]);
    assert_eq!(st.pending.unwrap().nonce, r2.nonce);
    assert!(c
        .take_events()
        .iter()
        .any(|e| matches!(e, ConnectionEvent::StaleNonce { nonce, .. } if *nonce == r1.nonce)));
    // The answer to r2 carries the new names.
    let r3 = one(c.sotw(ack(&r2, &["a", "b"]), &s2).unwrap());
    assert_eq!(names(&r3), ["a", "b"]);
}

#[test]
fn sotw_reconnect_with_matching_version_gets_nothing() {
    let s = base();
    let old = sotw_synced(&s);
    let cds_v = type_status(&old, Cds).acked_version.unwrap();
    let eds_v = type_status(&old, Eds).acked_version.unwrap();

    let mut c = SotwStream::new();
    assert!(c.sotw(req(Cds, &[], &cds_v, ""), &s).unwrap().is_empty());
    assert!(c
        .sotw(req(Eds, &["a", "b"], &eds_v, ""), &s)
        .unwrap()
        .is_empty());
    assert!(c.sotw_changed(&s).is_empty());
    assert_eq!(type_status(&c, Cds).acked_version, Some(cds_v.clone()));
    assert!(c.is_subscribed(Cds));

    // A stale version on reconnect gets the current content.
    let mut c2 = SotwStream::new();
    let r = one(c2.sotw(req(Cds, &[], "old", ""), &s).unwrap());
    assert_eq!(r.version_info, cds_v);

    // The subscription stays: later changes are pushed.
    let mut s2 = s.clone();
    s2.resources_mut(Eds).insert("b".into(), cla("b", 7));
    let r = one(c.sotw_changed(&s2));
    assert_eq!(names(&r), ["b"], "only the changed CLA");
}

#[test]
fn sotw_cds_change_forces_cla_resend() {
    let s1 = base();
    let mut c = sotw_synced(&s1);
    let mut s2 = s1.clone();
    s2.resources_mut(Cds).insert("a".into(), cluster("a", "2"));
    let pushed = c.sotw_changed(&s2);
    assert_eq!(types(&pushed), [Some(Cds), Some(Eds)]);
    // Only the changed cluster's CLA, at the unchanged EDS version.
    assert_eq!(names(&pushed[1]), ["a"]);
    assert_eq!(
        pushed[1].version_info,
        type_status(&c, Eds).acked_version.unwrap()
    );
    // Envoy's re-request with the old EDS nonce, then the ACK: nothing more.
    assert!(c.sotw(ack(&pushed[0], &[]), &s2).unwrap().is_empty());
    assert!(c
        .sotw(ack(&pushed[1], &["a", "b"]), &s2)
        .unwrap()
        .is_empty());
    assert!(c.sotw_changed(&s2).is_empty());

    // A new cluster: its CLA comes with the EDS request naming it.
    let mut s3 = s2.clone();
    s3.resources_mut(Cds).insert("c".into(), cluster("c", "1"));
    s3.resources_mut(Eds).insert("c".into(), cla("c", 1));
    let pushed = c.sotw_changed(&s3);
    assert_eq!(types(&pushed), [Some(Cds)]);
    let eds_v = type_status(&c, Eds).acked_version.unwrap();
    let r = one(c
        .sotw(
            req(Eds, &["a", "b", "c"], &eds_v, &pushed_nonce(&c, Eds)),
            &s3,
        )
        .unwrap());
    assert_eq!(names(&r), ["a", "b", "c"]);
    assert!(c.sotw_changed(&s3).is_empty());
}

#[test]
fn sotw_reconnect_cds_change_forces_cla_even_with_matching_eds_version() {
    let s1 = base();
    let old = sotw_synced(&s1);
    let eds_v = type_status(&old, Eds).acked_version.unwrap();
    let cds_v = type_status(&old, Cds).acked_version.unwrap();
    let mut s2 = s1.clone();
    s2.resources_mut(Cds).insert("b".into(), cluster("b", "2"));

    let mut c = SotwStream::new();
    let r = one(c.sotw(req(Cds, &[], &cds_v, ""), &s2).unwrap());
    assert_eq!(names(&r), ["a", "b"]);
    // Every cluster is new to this stream, so each subscribed CLA is sent.
    let r = one(c.sotw(req(Eds, &["a", "b"], &eds_v, ""), &s2).unwrap());
    assert_eq!(names(&r), ["a", "b"]);
    assert_eq!(r.version_info, eds_v);
}

#[test]
fn sotw_push_order_cds_eds_lds_rds() {
    let s1 = base();
    let mut c = sotw_synced(&s1);
    let s2 = snap(
        &[cluster("a", "2"), cluster("b", "1")],
        &[cla("a", 2), cla("b", 1)],
        &[listener("http", "2")],
        &[route("r1", "2"), route("r2", "1")],
    );
    let pushed = c.sotw_changed(&s2);
    assert_eq!(types(&pushed), [Some(Cds), Some(Eds), Some(Lds), Some(Rds)]);
    let nonces: Vec<u64> = pushed.iter().map(|r| r.nonce.parse().unwrap()).collect();
    assert!(nonces.windows(2).all(|w| w[0] < w[1]), "{nonces:?}");

    // Only changed types are pushed.
    let mut s3 = s2.clone();
    s3.resources_mut(Rds).insert("r1".into(), route("r1", "3"));
    s3.resources_mut(Lds)
        .insert("http".into(), listener("http", "3"));
    assert_eq!(types(&c.sotw_changed(&s3)), [Some(Lds), Some(Rds)]);
    // A route the client didn't ask for changing pushes nothing.
    let mut s4 = s3.clone();
    s4.resources_mut(Rds).insert("r2".into(), route("r2", "9"));
    assert!(c.sotw_changed(&s4).is_empty());
}

#[test]
fn sotw_request_against_newer_snapshot_keeps_push_order() {
    let s1 = base();
    let mut c = sotw_synced(&s1);
    let mut s2 = s1.clone();
    s2.resources_mut(Cds).insert("c".into(), cluster("c", "1"));
    s2.resources_mut(Rds).insert("r3".into(), route("r3", "1"));
    // The RDS request is processed before the push of s2: CDS must still go first.
    let r1 = pushed_nonce(&c, Rds);
    let out = c.sotw(req(Rds, &["r1", "r3"], "v", &r1), &s2).unwrap();
    assert_eq!(types(&out), [Some(Cds), Some(Rds)]);
    assert_eq!(names(&out[1]), ["r1", "r3"]);
    assert!(c.sotw_changed(&s2).is_empty());
}

#[test]
fn sotw_removed_cluster_disappears_from_cds() {
    let s1 = base();
    let mut c = sotw_synced(&s1);
    let mut s2 = s1.clone();
    s2.resources_mut(Cds).remove("b");
    s2.resources_mut(Eds).remove("b");
    // CDS is a complete set; the EDS view only lost "b", so nothing to send there.
    let pushed = c.sotw_changed(&s2);
    assert_eq!(types(&pushed), [Some(Cds)]);
    assert_eq!(names(&pushed[0]), ["a"]);
    // Removing every cluster is an empty, complete set.
    let s3 = snap(&[], &[], &[listener("http", "1")], &[route("r1", "1")]);
    let pushed = c.sotw_changed(&s3);
    assert_eq!(types(&pushed), [Some(Cds)]);
    assert!(pushed[0].resources.is_empty());
}

#[test]
fn sotw_legacy_wildcard_and_explicit_empty_list() {
    let s = base();
    let mut c = SotwStream::new();
    let r = one(c.sotw(req(Cds, &[], "", ""), &s).unwrap());
    // Empty again: still legacy wildcard, nothing changed.
    assert!(c.sotw(ack(&r, &[]), &s).unwrap().is_empty());
    let r = one(c.sotw(ack(&r, &["a"]), &s).unwrap());
    assert_eq!(names(&r), ["a"]);
    // After explicit names an empty list unsubscribes everything.
    let r = one(c.sotw(ack(&r, &[]), &s).unwrap());
    assert!(r.resources.is_empty());
    assert!(!type_status(&c, Cds).wildcard);
    // EDS never uses legacy wildcard.
    let r = one(c.sotw(req(Eds, &[], "", ""), &s).unwrap());
    assert!(r.resources.is_empty());
}

#[test]
fn sotw_nonces_unique_across_types() {
    let s = base();
    let mut c = SotwStream::new();
    let mut seen = BTreeSet::new();
    for (ty, n) in [(Cds, vec![]), (Eds, vec!["a", "b"])] {
        let r = one(c.sotw(req(ty, &n, "", ""), &s).unwrap());
        assert!(seen.insert(r.nonce.clone()));
        if ty == Eds {
            // The new clusters' CLAs are ACKed: routes may follow.
            assert!(c.sotw(ack(&r, &n), &s).unwrap().is_empty());
        }
    }
    for (ty, n) in [(Lds, vec![]), (Rds, vec!["r1"])] {
        let r = one(c.sotw(req(ty, &n, "", ""), &s).unwrap());
        assert!(seen.insert(r.nonce.clone()));
    }
    // An EDS request echoing the CDS nonce is stale for EDS.
    assert!(c
        .sotw(req(Eds, &["a", "b"], "", "1"), &s)
        .unwrap()
        .is_empty());
    assert_eq!(c.status().nonces_issued, 4);
}

#[test]
fn sotw_changed_names_path_sends_what_a_full_look_sends() {
    // As the delta test above, for SotW: a client fed snapshots that carry their changed
    // names skips the types none of whose subscribed names changed; it must be sent
    // exactly what a client that looks at everything each time is sent.
    let mut w = RandomWorld::new(11);
    let first = w.snapshot();
    let mut published = first.clone().published_after(None);
    let (mut inc, mut full) = (SotwStream::new(), SotwStream::new());
    // The client asks for a subset of the names (some never exist), ACKing everything.
    let eds = ["c0", "c1", "c2", "c3", "c7", "c9"];
    let rds = ["r0", "r2", "r4", "r5", "r8", "r11"];
    let subscribed = |url: &str| -> Vec<&str> {
        match ResourceType::from_type_url(url) {
            Some(Eds) => eds.to_vec(),
            Some(Rds) => rds.to_vec(),
            _ => Vec::new(),
        }
    };
    let answer = |c: &mut SotwStream, out: Vec<DiscoveryResponse>, s: &Snapshot| {
        let mut seen = Vec::new();
        let mut queue: VecDeque<_> = out.into();
        while let Some(r) = queue.pop_front() {
            let mut n = names(&r);
            n.sort();
            seen.push((r.type_url.clone(), r.version_info.clone(), n));
            queue.extend(c.sotw(ack(&r, &subscribed(&r.type_url)), s).unwrap());
        }
        seen
    };
    for (c, s) in [(&mut inc, &published), (&mut full, &first)] {
        for ty in [Cds, Eds, Lds, Rds] {
            let out = c
                .sotw(req(ty, &subscribed(ty.type_url()), "", ""), s)
                .unwrap();
            answer(c, out, s);
        }
    }
    for step in 0..80 {
        w.change();
        let plain = w.snapshot();
        let next = plain.clone().published_after(Some(&published));
        let a = inc.sotw_changed(&next);
        let b = full.sotw_changed(&plain);
        let (a, b) = (answer(&mut inc, a, &next), answer(&mut full, b, &plain));
        assert_eq!(a, b, "step {step}");
        assert_eq!(inc.in_sync(&next), full.in_sync(&plain), "step {step}");
        published = next;
    }
}

#[test]
fn sotw_routes_wait_until_new_clusters_have_their_endpoints() {
    // Routes are not warmed by Envoy: a route to a cluster still waiting for its CLA
    // answers 503 (no_cluster). So a route change that needs a new cluster waits for
    // that cluster's CLA to be ACKed.
    let s1 = base();
    let mut c = sotw_synced(&s1);
    let s2 = snap(
        &[cluster("a", "1"), cluster("b", "1"), cluster("c", "1")],
        &[cla("a", 1), cla("b", 1), cla("c", 1)],
        &[listener("http", "1")],
        &[route("r1", "2"), route("r2", "1")],
    );
    let out = c.sotw_changed(&s2);
    assert_eq!(types(&out), vec![Some(Cds)], "routes held: {out:?}");
    let cds = &out[0];
    assert!(c.sotw(ack(cds, &[]), &s2).unwrap().is_empty());
    // Envoy asks for the new cluster's CLA; the routes still wait.
    let eds = one(c.sotw(req(Eds, &["a", "b", "c"], "", ""), &s2).unwrap());
    assert_eq!(names(&eds), vec!["a", "b", "c"]);
    // Its ACK releases the route change.
    let rds = one(c.sotw(ack(&eds, &["a", "b", "c"]), &s2).unwrap());
    assert_eq!(ResourceType::from_type_url(&rds.type_url), Some(Rds));
    assert_eq!(names(&rds), vec!["r1"]);
}

#[test]
fn node_cached_from_first_request_carrying_one() {
    let s = base();
    let mut c = SotwStream::new();
    assert!(c.node().is_none());
    c.sotw(req(Cds, &[], "", ""), &s).unwrap();
    assert!(c.node().is_none());
    let mut r = req(Lds, &[], "", "");
    r.node = Some(node("first"));
    c.sotw(r, &s).unwrap();
    let mut r = req(Eds, &["a"], "", "");
    r.node = Some(node("second"));
    c.sotw(r, &s).unwrap();
    assert_eq!(c.node().unwrap().id, "first");
    assert_eq!(c.status().node_id.as_deref(), Some("first"));
    assert_eq!(c.status().node_cluster.as_deref(), Some("gw"));
}

#[test]
fn two_connections_with_different_rds_subscriptions_get_different_pushes() {
    let s1 = base();
    let mut c1 = SotwStream::new();
    let mut c2 = SotwStream::new();
    let a1 = one(c1.sotw(req(Rds, &["r1"], "", ""), &s1).unwrap());
    let a2 = one(c2.sotw(req(Rds, &["r2"], "", ""), &s1).unwrap());
    assert_ne!(a1.version_info, a2.version_info);
    c1.sotw(ack(&a1, &["r1"]), &s1).unwrap();
    c2.sotw(ack(&a2, &["r2"]), &s1).unwrap();

    let mut s2 = s1.clone();
    s2.resources_mut(Rds).insert("r2".into(), route("r2", "2"));
    assert!(c1.sotw_changed(&s2).is_empty());
    let p = one(c2.sotw_changed(&s2));
    assert_eq!(names(&p), ["r2"]);

    let mut s3 = s2.clone();
    s3.resources_mut(Rds).insert("r1".into(), route("r1", "2"));
    assert_eq!(names(&one(c1.sotw_changed(&s3))), ["r1"]);
    assert!(c2.sotw_changed(&s3).is_empty());
}

#[test]
fn status_serializes() {
    let s = base();
    let mut c = sotw_synced(&s);
    c.sotw(req(Cds, &[], "", "9999"), &s).unwrap();
    let json = serde_json::to_value(c.status()).unwrap();
    assert_eq!(json["protocol"], "sotw");
    assert_eq!(json["types"].as_array().unwrap().len(), 4);
    assert_eq!(json["types"][0]["type_name"], "CDS");
    let ev = serde_json::to_value(c.take_events().last().unwrap()).unwrap();
    assert_eq!(ev["event"], "stale_nonce");
}
