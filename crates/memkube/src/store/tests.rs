//! Unit tests of the store: versions, history and watch replay, CRD objects, the write rules.

use serde_json::{Value, json};

use super::*;
use crate::patch::PatchKind;

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
        .unwrap()
        .into()
}

fn ctx(manager: &str) -> WriteCtx {
    WriteCtx::new(manager, now())
}

fn state() -> State {
    State::new(100, now())
}

fn ty(state: &State, group: &str, plural: &str) -> ResourceType {
    state
        .registry
        .all()
        .find(|t| t.group == group && t.plural == plural)
        .cloned()
        .unwrap()
}

fn cm(name: &str, data: Value) -> Value {
    json!({"metadata": {"name": name}, "data": data})
}

fn rv(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn fresh_state_has_initial_namespaces_at_increasing_versions() {
    let st = state();
    let ns = ty(&st, "", "namespaces");
    let (items, current) = st.list(&ns, None, &Default::default(), &Default::default());
    let versions: Vec<u64> = items.iter().map(|o| rv(o)).collect();
    assert_eq!(items.len(), 4);
    assert_eq!(current, 4);
    assert!(items.iter().all(|ns| ns["status"]["phase"] == "Active"));
    let mut sorted = versions.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 4);
}

#[test]
fn writes_bump_the_global_version_and_noops_do_not() {
    let mut st = state();
    let cms = ty(&st, "", "configmaps");
    let a = st
        .create(&cms, Some("default"), cm("a", json!({"k": "1"})), &ctx("t"))
        .unwrap();
    let b = st
        .create(&cms, Some("default"), cm("b", json!({})), &ctx("t"))
        .unwrap();
    assert!(rv(&b) > rv(&a));
    let same = st
        .patch(
            &cms,
            Some("default"),
            "a",
            PatchKind::Merge,
            &json!({"data": {"k": "1"}}),
            &ctx("t"),
        )
        .unwrap();
    assert_eq!(rv(&same), rv(&a));
    assert_eq!(st.resource_version(), rv(&b));
    let changed = st
        .patch(
            &cms,
            Some("default"),
            "a",
            PatchKind::Merge,
            &json!({"data": {"k": "2"}}),
            &ctx("t"),
        )
        .unwrap();
    assert_eq!(rv(&changed), rv(&b) + 1);
}

#[test]
fn history_window_decides_between_replay_and_expired() {
    let mut st = State::new(2, now());
    let cms = ty(&st, "", "configmaps");
    let sel = (LabelSelector::default(), FieldSelector::default());
    for name in ["a", "b", "c"] {
        st.create(&cms, Some("default"), cm(name, json!({})), &ctx("t"))
            .unwrap();
    }
    let current = st.resource_version();
    // history holds the last two events: resuming from current-2 replays both
    let mut rx = st
        .watch(
            &cms,
            None,
            sel.0.clone(),
            sel.1.clone(),
            WatchStart::After(current - 2),
        )
        .unwrap();
    let mut names = Vec::new();
    while let Ok(WatchMsg::Event(EventKind::Added, obj)) = rx.try_recv() {
        names.push(obj["metadata"]["name"].as_str().unwrap().to_string());
    }
    assert_eq!(names, ["b", "c"]);
    let expired = st.watch(&cms, None, sel.0, sel.1, WatchStart::After(current - 3));
    assert!(matches!(expired, Err(ApiError::Expired { .. })));
}

#[test]
fn watch_from_current_state_lists_then_follows() {
    let mut st = state();
    let cms = ty(&st, "", "configmaps");
    st.create(&cms, Some("default"), cm("a", json!({})), &ctx("t"))
        .unwrap();
    let start = WatchStart::Current { end_bookmark: true };
    let mut rx = st
        .watch(
            &cms,
            Some("default"),
            Default::default(),
            Default::default(),
            start,
        )
        .unwrap();
    assert!(matches!(
        rx.try_recv(),
        Ok(WatchMsg::Event(EventKind::Added, _))
    ));
    assert!(
        matches!(rx.try_recv(), Ok(WatchMsg::InitialEventsEnd(v)) if v == st.resource_version())
    );
    st.create(
        &cms,
        Some("kube-system"),
        cm("other-ns", json!({})),
        &ctx("t"),
    )
    .unwrap();
    st.create(&cms, Some("default"), cm("b", json!({})), &ctx("t"))
        .unwrap();
    match rx.try_recv() {
        Ok(WatchMsg::Event(EventKind::Added, obj)) => assert_eq!(obj["metadata"]["name"], "b"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(st.watcher_count(), 1);
    drop(rx);
    assert_eq!(st.watcher_count(), 0);
}

#[test]
fn expire_watches_sends_expired_and_forgets_history() {
    let mut st = state();
    let cms = ty(&st, "", "configmaps");
    let before = st.resource_version();
    let mut rx = st
        .watch(
            &cms,
            None,
            Default::default(),
            Default::default(),
            WatchStart::After(before),
        )
        .unwrap();
    st.create(&cms, Some("default"), cm("a", json!({})), &ctx("t"))
        .unwrap();
    st.expire_watches();
    assert!(matches!(
        rx.try_recv(),
        Ok(WatchMsg::Event(EventKind::Added, _))
    ));
    assert!(matches!(rx.try_recv(), Ok(WatchMsg::Expired(_))));
    assert!(rx.try_recv().is_err());
    let again = st.watch(
        &cms,
        None,
        Default::default(),
        Default::default(),
        WatchStart::After(before),
    );
    assert!(matches!(again, Err(ApiError::Expired { .. })));
}

fn crd_body() -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "things.x.io"},
        "spec": {"group": "x.io", "scope": "Cluster",
            "names": {"kind": "Thing", "plural": "things"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {"n": {"type": "integer"}}}}}}}]}})
}

#[test]
fn crd_objects_register_and_unregister_types() {
    let mut st = state();
    let crds = ty(&st, "apiextensions.k8s.io", "customresourcedefinitions");
    st.create(&crds, None, crd_body(), &ctx("t")).unwrap();
    let things = st
        .registry
        .lookup("x.io", "v1", "things")
        .cloned()
        .expect("registered");
    st.create(
        &things,
        None,
        json!({"metadata": {"name": "t1"}, "spec": {"n": 1}}),
        &ctx("t"),
    )
    .unwrap();
    let bad = st.create(
        &things,
        None,
        json!({"metadata": {"name": "t2"}, "spec": {"n": "x"}}),
        &ctx("t"),
    );
    assert!(matches!(bad, Err(ApiError::Invalid { .. })));
    let mut broken = crd_body();
    broken["metadata"]["name"] = json!("broken.x.io");
    broken["spec"]["scope"] = json!("Nowhere");
    assert!(matches!(
        st.create(&crds, None, broken, &ctx("t")),
        Err(ApiError::Invalid { .. })
    ));
    let opts = DeleteOptions {
        now: "2026-01-01T00:00:00Z".into(),
        ..Default::default()
    };
    st.delete(&crds, None, "things.x.io", &opts).unwrap();
    assert!(st.registry.lookup("x.io", "v1", "things").is_none());
}

#[test]
fn cluster_scoped_owner_collects_namespaced_dependents() {
    let mut st = state();
    let nodes = ty(&st, "", "nodes");
    let cms = ty(&st, "", "configmaps");
    let node = st
        .create(&nodes, None, json!({"metadata": {"name": "n1"}}), &ctx("t"))
        .unwrap();
    let owner =
        json!([{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": node["metadata"]["uid"]}]);
    let mut dep = cm("dep", json!({}));
    dep["metadata"]["ownerReferences"] = owner;
    st.create(&cms, Some("kube-system"), dep, &ctx("t"))
        .unwrap();
    let mut bad = cm("bad", json!({}));
    bad["metadata"]["ownerReferences"] = json!([{"kind": "Node"}]);
    assert!(matches!(
        st.create(&cms, Some("default"), bad, &ctx("t")),
        Err(ApiError::Invalid { .. })
    ));
    let opts = DeleteOptions {
        now: "2026-01-01T00:00:00Z".into(),
        ..Default::default()
    };
    assert!(matches!(
        st.delete(&nodes, None, "n1", &opts),
        Ok(DeleteOutcome::Deleted(_))
    ));
    assert!(st.get(&cms, Some("kube-system"), "dep").is_err());
}

#[test]
fn ownership_changed_by_an_update_is_what_collection_follows() {
    let mut st = state();
    let nodes = ty(&st, "", "nodes");
    let cms = ty(&st, "", "configmaps");
    let owner_ref = |name: &str, st: &mut State| {
        let node = st
            .create(&nodes, None, json!({"metadata": {"name": name}}), &ctx("t"))
            .unwrap();
        json!([{"apiVersion": "v1", "kind": "Node", "name": name, "uid": node["metadata"]["uid"]}])
    };
    let gains = owner_ref("gains", &mut st);
    let loses = owner_ref("loses", &mut st);
    st.create(&cms, Some("default"), cm("adopted", json!({})), &ctx("t"))
        .unwrap();
    let mut released = cm("released", json!({}));
    released["metadata"]["ownerReferences"] = loses;
    st.create(&cms, Some("default"), released, &ctx("t"))
        .unwrap();
    let set_owners = |st: &mut State, name: &str, refs: Value| {
        let patch = json!({"metadata": {"ownerReferences": refs}});
        st.patch(
            &cms,
            Some("default"),
            name,
            PatchKind::Merge,
            &patch,
            &ctx("t"),
        )
        .unwrap();
    };
    set_owners(&mut st, "adopted", gains);
    set_owners(&mut st, "released", Value::Null);
    let opts = DeleteOptions {
        now: "2026-01-01T00:00:00Z".into(),
        ..Default::default()
    };
    st.delete(&nodes, None, "gains", &opts).unwrap();
    st.delete(&nodes, None, "loses", &opts).unwrap();
    assert!(st.get(&cms, Some("default"), "adopted").is_err());
    assert!(st.get(&cms, Some("default"), "released").is_ok());
}

#[test]
fn apply_creates_and_status_apply_needs_an_object() {
    let mut st = state();
    let cms = ty(&st, "", "configmaps");
    let applied = st
        .patch(
            &cms,
            Some("default"),
            "x",
            PatchKind::Apply,
            &json!({"data": {"a": "1"}}),
            &ctx("mgr"),
        )
        .unwrap();
    assert_eq!(applied["data"]["a"], "1");
    assert_eq!(
        applied["metadata"]["managedFields"][0]["operation"],
        "Apply"
    );
    let nodes = ty(&st, "", "nodes");
    let status_ctx = WriteCtx {
        status: true,
        ..ctx("mgr")
    };
    let missing = st.patch(
        &nodes,
        None,
        "ghost",
        PatchKind::Apply,
        &json!({"status": {}}),
        &status_ctx,
    );
    assert!(matches!(missing, Err(ApiError::NotFound(_))));
}

#[test]
fn client_supplied_server_metadata_is_ignored() {
    let mut st = state();
    let cms = ty(&st, "", "configmaps");
    let created = st
        .create(&cms, Some("default"), cm("a", json!({})), &ctx("t"))
        .unwrap();
    let mut forged = created.clone();
    forged["metadata"]["uid"] = json!("forged");
    forged["metadata"]["generation"] = json!(99);
    forged["metadata"]["creationTimestamp"] = json!("1999-01-01T00:00:00Z");
    forged["data"] = json!({"k": "v"});
    let updated = st
        .replace(&cms, Some("default"), "a", forged, &ctx("t"))
        .unwrap();
    assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(
        updated["metadata"]["creationTimestamp"],
        created["metadata"]["creationTimestamp"]
    );
    assert_eq!(updated["metadata"]["generation"], 2);
    assert_eq!(updated["data"]["k"], "v");
}

#[test]
fn secret_string_data_becomes_base64_data() {
    let mut st = state();
    let secrets = ty(&st, "", "secrets");
    let body =
        json!({"metadata": {"name": "s"}, "data": {"a": "YQ=="}, "stringData": {"b": "hello"}});
    let created = st
        .create(&secrets, Some("default"), body, &ctx("t"))
        .unwrap();
    assert_eq!(created["data"], json!({"a": "YQ==", "b": "aGVsbG8="}));
    assert!(created.get("stringData").is_none());
}

#[test]
fn namespace_with_its_own_finalizer_waits_for_it() {
    let mut st = state();
    let nss = ty(&st, "", "namespaces");
    let body = json!({"metadata": {"name": "held", "finalizers": ["x/y"]}});
    st.create(&nss, None, body, &ctx("t")).unwrap();
    let opts = DeleteOptions {
        now: "2026-01-01T00:00:00Z".into(),
        ..Default::default()
    };
    assert!(matches!(
        st.delete(&nss, None, "held", &opts),
        Ok(DeleteOutcome::Pending(_))
    ));
    assert_eq!(
        st.get(&nss, None, "held").unwrap()["status"]["phase"],
        "Terminating"
    );
    let release = json!({"metadata": {"finalizers": null}});
    st.patch(&nss, None, "held", PatchKind::Merge, &release, &ctx("t"))
        .unwrap();
    assert!(st.get(&nss, None, "held").is_err());
}

#[test]
fn objects_whose_owners_do_not_exist_are_collected() {
    let mut st = state();
    let cms = ty(&st, "", "configmaps");
    let mut orphan = cm("orphan", json!({}));
    orphan["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "v1", "kind": "Node", "name": "gone", "uid": "no-such-uid"}]);
    let created = st.create(&cms, Some("default"), orphan, &ctx("t")).unwrap();
    assert_eq!(
        created["metadata"]["name"], "orphan",
        "the create itself succeeds"
    );
    assert!(st.get(&cms, Some("default"), "orphan").is_err());
    st.create(&cms, Some("default"), cm("later", json!({})), &ctx("t"))
        .unwrap();
    let dangling = json!({"metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": "gone", "uid": "no-such-uid"}]}});
    st.patch(
        &cms,
        Some("default"),
        "later",
        PatchKind::Merge,
        &dangling,
        &ctx("t"),
    )
    .unwrap();
    assert!(st.get(&cms, Some("default"), "later").is_err());
}

/// Applies watch messages to a name → object cache, checking versions increase.
fn follow(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<WatchMsg>,
    cache: &mut std::collections::BTreeMap<String, Value>,
    last: &mut u64,
) {
    while let Ok(msg) = rx.try_recv() {
        let WatchMsg::Event(kind, obj) = msg else {
            continue;
        };
        let v = rv(&obj);
        assert!(v > *last, "event versions increase: {last} then {v}");
        *last = v;
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        match kind {
            EventKind::Deleted => {
                cache.remove(&name);
            }
            _ => {
                cache.insert(name, (*obj).clone());
            }
        }
    }
}

/// One random create, merge patch, delete or apply of one of eight labelled ConfigMaps.
fn random_write(st: &mut State, cms: &ResourceType, rng: &mut fastrand::Rng) {
    let name = format!("c{}", rng.usize(..8));
    let keep = if rng.bool() { "yes" } else { "no" };
    let body = json!({"metadata": {"name": name, "labels": {"keep": keep}}, "data": {"n": rng.u8(..4).to_string()}});
    let opts = DeleteOptions {
        now: "2026-01-01T00:00:00Z".into(),
        ..Default::default()
    };
    let ns = Some("default");
    // writes to missing objects fail (404/409); that is part of the mix
    let _ = match rng.usize(..4) {
        0 => st.create(cms, ns, body, &ctx("t")).map(drop),
        1 => st
            .patch(cms, ns, &name, PatchKind::Merge, &body, &ctx("t"))
            .map(drop),
        2 => st.delete(cms, ns, &name, &opts).map(drop),
        _ => st
            .patch(cms, ns, &name, PatchKind::Apply, &body, &ctx("a"))
            .map(drop),
    };
}

#[test]
fn a_watcher_cache_converges_to_the_list_under_random_writes() {
    for seed in 0..20 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut st = state();
        let cms = ty(&st, "", "configmaps");
        let labels = LabelSelector::parse("keep=yes").unwrap();
        let start = WatchStart::After(st.resource_version());
        let mut rx = st
            .watch(
                &cms,
                Some("default"),
                labels.clone(),
                Default::default(),
                start,
            )
            .unwrap();
        let (mut cache, mut last) = (std::collections::BTreeMap::new(), 0);
        for _ in 0..200 {
            random_write(&mut st, &cms, &mut rng);
            if rng.usize(..10) == 0 {
                follow(&mut rx, &mut cache, &mut last);
            }
        }
        follow(&mut rx, &mut cache, &mut last);
        let (items, _) = st.list(&cms, Some("default"), &labels, &Default::default());
        let listed: std::collections::BTreeMap<String, Value> = items
            .iter()
            .map(|o| {
                (
                    o["metadata"]["name"].as_str().unwrap().to_string(),
                    (**o).clone(),
                )
            })
            .collect();
        assert_eq!(cache, listed, "seed {seed}");
    }
}

#[test]
fn history_is_kept_per_type() {
    let mut st = State::new(2, now());
    let cms = ty(&st, "", "configmaps");
    let secrets = ty(&st, "", "secrets");
    st.create(&secrets, Some("default"), cm("s", json!({})), &ctx("t"))
        .unwrap();
    let before = st.resource_version();
    for i in 0..10 {
        st.create(
            &cms,
            Some("default"),
            cm(&format!("c{i}"), json!({})),
            &ctx("t"),
        )
        .unwrap();
    }
    let none = (LabelSelector::default(), FieldSelector::default());
    // ten ConfigMap events expire ConfigMap watches from `before`, not Secret watches
    let cm_watch = st.watch(
        &cms,
        None,
        none.0.clone(),
        none.1.clone(),
        WatchStart::After(before),
    );
    assert!(matches!(cm_watch, Err(ApiError::Expired { .. })));
    let secret_watch = st.watch(
        &secrets,
        None,
        none.0,
        none.1,
        WatchStart::After(before - 1),
    );
    assert!(secret_watch.is_ok());
}

#[test]
fn lists_at_any_version_in_the_history_match_the_lists_taken_then() {
    for seed in 0..10 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut st = State::new(1000, now());
        let cms = ty(&st, "", "configmaps");
        let none = (LabelSelector::default(), FieldSelector::default());
        let mut taken = Vec::new();
        for _ in 0..150 {
            random_write(&mut st, &cms, &mut rng);
            let (items, rv) = st.list(&cms, Some("default"), &none.0, &none.1);
            taken.push((rv, items));
        }
        for (rv, items) in &taken {
            let at = st.list_at(&cms, Some("default"), &none.0, &none.1, *rv);
            assert_eq!(at.as_ref(), Some(items), "seed {seed} rv {rv}");
        }
        st.compact();
        let oldest = taken[0].0;
        let gone = st.list_at(&cms, Some("default"), &none.0, &none.1, oldest);
        assert!(gone.is_none() || oldest == st.resource_version());
    }
}
