//! Kubernetes semantics beyond single verbs: finalizers and deletionTimestamp, ownerReference
//! garbage collection, namespace termination, concurrent writers, server-side apply field
//! ownership, schema validation, and discovery/dynamic APIs.

use crate::common;

use std::collections::BTreeSet;

use common::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::discovery::{ApiResource, Discovery, Scope};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let (_kube, client) = setup();
    let api = widgets(&client);
    let mut w = widget("w", 80);
    w.metadata.finalizers = Some(vec!["example.io/a".into(), "example.io/b".into()]);
    api.create(&PostParams::default(), &w).await.unwrap();
    let rv = api.get("w").await.unwrap().resource_version().unwrap();
    let mut events = api
        .watch(&WatchParams::default().disable_bookmarks(), &rv)
        .await
        .unwrap()
        .boxed();
    let pending = api.delete("w", &DeleteParams::default()).await.unwrap();
    let held = pending
        .left()
        .expect("object returned while finalizers remain");
    assert!(held.metadata.deletion_timestamp.is_some());
    let again = api
        .delete("w", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert_eq!(
        again.resource_version(),
        held.resource_version(),
        "repeat delete is a no-op"
    );
    let add = Patch::Merge(
        json!({"metadata": {"finalizers": ["example.io/a", "example.io/b", "example.io/c"]}}),
    );
    assert_eq!(
        code(
            api.patch("w", &PatchParams::default(), &add)
                .await
                .unwrap_err()
        ),
        422
    );
    let one = Patch::Merge(json!({"metadata": {"finalizers": ["example.io/b"]}}));
    api.patch("w", &PatchParams::default(), &one).await.unwrap();
    assert!(api.get("w").await.is_ok());
    let none = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    api.patch("w", &PatchParams::default(), &none)
        .await
        .unwrap();
    assert_eq!(code(api.get("w").await.unwrap_err()), 404);
    // removing the last finalizer deletes the object: one DELETED event, no MODIFIED first
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        match events.next().await.unwrap().unwrap() {
            WatchEvent::Modified(_) => kinds.push("MODIFIED"),
            WatchEvent::Deleted(_) => kinds.push("DELETED"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(kinds, ["MODIFIED", "MODIFIED", "DELETED"]);
}

fn owned_by(owner: &Widget) -> OwnerReference {
    owner.controller_owner_ref(&()).unwrap()
}

fn config_map(name: &str, owner: Option<OwnerReference>) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm.metadata.owner_references = owner.map(|o| vec![o]);
    cm
}

#[tokio::test]
async fn owner_deletion_collects_dependents_transitively() {
    let (_kube, client) = setup();
    let api = widgets(&client);
    let owner = api
        .create(&PostParams::default(), &widget("owner", 80))
        .await
        .unwrap();
    let mut child = widget("child", 80);
    child.metadata.owner_references = Some(vec![owned_by(&owner)]);
    let child = api.create(&PostParams::default(), &child).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &config_map("grandchild", Some(owned_by(&child))),
    )
    .await
    .unwrap();
    cms.create(&PostParams::default(), &config_map("unrelated", None))
        .await
        .unwrap();
    api.delete("owner", &DeleteParams::default()).await.unwrap();
    assert_eq!(code(api.get("child").await.unwrap_err()), 404);
    assert_eq!(code(cms.get("grandchild").await.unwrap_err()), 404);
    assert!(cms.get("unrelated").await.is_ok());
}

#[tokio::test]
async fn orphan_propagation_keeps_dependents() {
    let (_kube, client) = setup();
    let api = widgets(&client);
    let owner = api
        .create(&PostParams::default(), &widget("owner", 80))
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &config_map("dep", Some(owned_by(&owner))),
    )
    .await
    .unwrap();
    api.delete("owner", &DeleteParams::orphan()).await.unwrap();
    let dep = cms.get("dep").await.unwrap();
    assert!(dep.owner_references().is_empty());
}

#[tokio::test]
async fn foreground_deletion_waits_for_dependents() {
    let (_kube, client) = setup();
    let api = widgets(&client);
    let owner = api
        .create(&PostParams::default(), &widget("owner", 80))
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &config_map("free", Some(owned_by(&owner))),
    )
    .await
    .unwrap();
    let mut held = config_map("held", Some(owned_by(&owner)));
    held.metadata.finalizers = Some(vec!["example.io/hold".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();
    let pending = api
        .delete("owner", &DeleteParams::foreground())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert_eq!(pending.finalizers(), ["foregroundDeletion"]);
    assert_eq!(code(cms.get("free").await.unwrap_err()), 404);
    assert!(
        cms.get("held")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    assert!(
        api.get("owner").await.is_ok(),
        "the owner waits for the held dependent"
    );
    let release = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    cms.patch("held", &PatchParams::default(), &release)
        .await
        .unwrap();
    assert_eq!(code(api.get("owner").await.unwrap_err()), 404);
}

#[tokio::test]
async fn foreground_without_dependents_deletes_at_once() {
    let (_kube, client) = setup();
    let api = widgets(&client);
    api.create(&PostParams::default(), &widget("alone", 80))
        .await
        .unwrap();
    assert!(
        api.delete("alone", &DeleteParams::foreground())
            .await
            .unwrap()
            .is_right()
    );
}

#[tokio::test]
async fn dependent_with_a_live_second_owner_survives() {
    let (_kube, client) = setup();
    let api = widgets(&client);
    let a = api
        .create(&PostParams::default(), &widget("a", 80))
        .await
        .unwrap();
    let b = api
        .create(&PostParams::default(), &widget("b", 80))
        .await
        .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut cm = config_map("shared", None);
    cm.metadata.owner_references = Some(vec![a.owner_ref(&()).unwrap(), b.owner_ref(&()).unwrap()]);
    cms.create(&PostParams::default(), &cm).await.unwrap();
    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(cms.get("shared").await.is_ok());
    api.delete("b", &DeleteParams::default()).await.unwrap();
    assert_eq!(code(cms.get("shared").await.unwrap_err()), 404);
}

#[tokio::test]
async fn namespace_deletion_terminates_then_removes() {
    let (_kube, client) = setup();
    let nss: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some("doomed".into());
    nss.create(&PostParams::default(), &ns).await.unwrap();
    let api: Api<Widget> = Api::namespaced(client.clone(), "doomed");
    let mut held = widget("held", 80);
    held.metadata.finalizers = Some(vec!["example.io/x".into()]);
    api.create(&PostParams::default(), &held).await.unwrap();
    api.create(&PostParams::default(), &widget("free", 80))
        .await
        .unwrap();
    nss.delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    let terminating = nss.get("doomed").await.unwrap();
    assert_eq!(
        terminating.status.unwrap().phase.as_deref(),
        Some("Terminating")
    );
    assert_eq!(code(api.get("free").await.unwrap_err()), 404);
    assert_eq!(
        code(
            api.create(&PostParams::default(), &widget("new", 80))
                .await
                .unwrap_err()
        ),
        403
    );
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(code(nss.get("doomed").await.unwrap_err()), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_no_update() {
    let (kube, client) = setup();
    let api = widgets(&client);
    let start = api
        .create(&PostParams::default(), &widget("counter", 1))
        .await
        .unwrap();
    let wp = WatchParams::default().disable_bookmarks();
    let mut events = api
        .watch(&wp, &start.resource_version().unwrap())
        .await
        .unwrap()
        .boxed();
    let (writers, increments) = (8, 10);
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move {
                let mut conflicts = 0;
                for _ in 0..increments {
                    loop {
                        let mut w = api.get("counter").await.unwrap();
                        w.spec.port += 1;
                        match api.replace("counter", &PostParams::default(), &w).await {
                            Ok(_) => break,
                            Err(e) => {
                                assert_eq!(code(e), 409);
                                conflicts += 1;
                            }
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await.unwrap();
    }
    assert_eq!(
        api.get("counter").await.unwrap().spec.port,
        1 + writers * increments
    );
    let mut last = start.resource_version().unwrap().parse::<u64>().unwrap();
    for _ in 0..writers * increments {
        let WatchEvent::Modified(w) = events.next().await.unwrap().unwrap() else {
            panic!("modified expected")
        };
        let rv: u64 = w.resource_version().unwrap().parse().unwrap();
        assert!(
            rv > last,
            "resourceVersions strictly increase: {last} then {rv}"
        );
        last = rv;
    }
    assert_eq!(last, kube.resource_version());
    println!("{conflicts} conflicts retried");
}

fn apply_cfg(port: i64, colour: &str) -> Patch<serde_json::Value> {
    Patch::Apply(
        json!({"apiVersion": "example.io/v1", "kind": "Widget", "spec": {"port": port, "colour": colour}}),
    )
}

async fn apply_as(
    api: &Api<Widget>,
    manager: &str,
    force: bool,
    patch: Patch<serde_json::Value>,
) -> kube::Result<Widget> {
    let pp = if force {
        PatchParams::apply(manager).force()
    } else {
        PatchParams::apply(manager)
    };
    api.patch("w", &pp, &patch).await
}

#[tokio::test]
async fn server_side_apply_conflicts_unless_forced() {
    let (_kube, client) = setup();
    let api = widgets(&client);
    let created = apply_as(&api, "alice", false, apply_cfg(80, "red"))
        .await
        .unwrap();
    assert_eq!(created.spec.port, 80);
    let managers: Vec<String> = created
        .managed_fields()
        .iter()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(managers, ["alice"]);
    let err = status(
        apply_as(&api, "bob", false, apply_cfg(81, "red"))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    let causes = err.details.unwrap().causes;
    assert_eq!(causes.len(), 1);
    assert_eq!(causes[0].field, ".spec.port");
    assert!(causes[0].message.contains("alice"));
    let forced = apply_as(&api, "bob", true, apply_cfg(81, "red"))
        .await
        .unwrap();
    assert_eq!(forced.spec.port, 81);
    let no_manager = api
        .patch("w", &PatchParams::default(), &apply_cfg(1, "x"))
        .await;
    assert!(no_manager.is_err());
}

#[tokio::test]
async fn server_side_apply_shares_fields_and_respects_update_managers() {
    let (_kube, client) = setup();
    let api = widgets(&client);
    apply_as(&api, "alice", false, apply_cfg(80, "red"))
        .await
        .unwrap();
    apply_as(&api, "bob", false, apply_cfg(80, "red"))
        .await
        .unwrap();
    // alice re-applies without colour: bob co-owns it, so it stays
    let alice_only_port = Patch::Apply(
        json!({"apiVersion": "example.io/v1", "kind": "Widget", "spec": {"port": 80}}),
    );
    let after = apply_as(&api, "alice", false, alice_only_port)
        .await
        .unwrap();
    assert_eq!(after.spec.colour.as_deref(), Some("red"));
    // bob drops colour too: nobody owns it any more, so it is removed
    let bob_only_port = Patch::Apply(
        json!({"apiVersion": "example.io/v1", "kind": "Widget", "spec": {"port": 80}}),
    );
    let removed = apply_as(&api, "bob", false, bob_only_port).await.unwrap();
    assert_eq!(removed.spec.colour, None);
    // a merge patch by carol takes the field; bob's apply of a different value conflicts with carol
    let pp = PatchParams {
        field_manager: Some("carol".into()),
        ..Default::default()
    };
    api.patch("w", &pp, &Patch::Merge(json!({"spec": {"colour": "blue"}})))
        .await
        .unwrap();
    let err = status(
        apply_as(&api, "bob", false, apply_cfg(80, "green"))
            .await
            .unwrap_err(),
    );
    assert!(err.message.contains("carol"), "{}", err.message);
}

#[tokio::test]
async fn schema_validation_rejects_with_422_causes() {
    let (_kube, client) = setup();
    let api = widgets(&client);
    let raw: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::erase::<Widget>(&()),
    );
    let bad = |spec: serde_json::Value| -> DynamicObject {
        serde_json::from_value(json!({"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "bad"}, "spec": spec})).unwrap()
    };
    for (spec, field) in [
        (json!({"port": 0}), "spec.port"),
        (json!({"port": 70000}), "spec.port"),
        (json!({"port": "eighty"}), "spec.port"),
        (json!({}), "spec.port"),
        (json!({"port": 80, "mode": "Sideways"}), "spec.mode"),
        (json!({"port": 80, "colour": "Red!"}), "spec.colour"),
    ] {
        let err = status(
            raw.create(&PostParams::default(), &bad(spec.clone()))
                .await
                .unwrap_err(),
        );
        assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"), "{spec}");
        let causes = err.details.unwrap().causes;
        assert!(
            causes.iter().any(|c| c.field == field),
            "{spec}: {causes:?}"
        );
    }
    let unknown = bad(json!({"port": 80, "surprise": true}));
    let created = raw.create(&PostParams::default(), &unknown).await.unwrap();
    assert!(
        created.data["spec"].get("surprise").is_none(),
        "unknown fields are pruned"
    );
    let mut ok = api.get("bad").await.unwrap();
    ok.spec.port = -1;
    assert_eq!(
        code(
            api.replace("bad", &PostParams::default(), &ok)
                .await
                .unwrap_err()
        ),
        422
    );
}

#[tokio::test]
async fn discovery_and_dynamic_api() {
    let (_kube, client) = setup();
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let groups: BTreeSet<String> = discovery.groups().map(|g| g.name().to_string()).collect();
    assert!(
        groups.contains("example.io")
            && groups.contains("")
            && groups.contains("coordination.k8s.io")
    );
    let (ar, caps) = discovery
        .groups()
        .find(|g| g.name() == "example.io")
        .unwrap()
        .recommended_kind("Widget")
        .unwrap();
    assert_eq!(ar.plural, "widgets");
    assert_eq!(caps.scope, Scope::Namespaced);
    assert!(
        caps.subresources
            .iter()
            .any(|(sub, _)| sub.plural == "status")
    );
    let dynamic: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let obj: DynamicObject = serde_json::from_value(json!({"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "dyn"}, "spec": {"port": 5}})).unwrap();
    dynamic.create(&PostParams::default(), &obj).await.unwrap();
    let typed = widgets(&client).get("dyn").await.unwrap();
    assert_eq!(typed.spec.port, 5);
    let list = dynamic.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let (lease_ar, _) = discovery
        .groups()
        .find(|g| g.name() == "coordination.k8s.io")
        .unwrap()
        .recommended_kind("Lease")
        .unwrap();
    assert_eq!(lease_ar.version, "v1");
}

#[tokio::test]
async fn event_recorder_creates_then_patches_a_series_seen_through_both_apis() {
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let (_kube, client) = setup();
    let w = widgets(&client)
        .create(&PostParams::default(), &widget("w", 80))
        .await
        .unwrap();
    let reporter = Reporter {
        controller: "test-controller".into(),
        instance: None,
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let event = Event {
        type_: EventType::Normal,
        reason: "Synced".into(),
        note: Some("all good".into()),
        action: "Reconcile".into(),
        secondary: None,
    };
    recorder.publish(&event, &w.object_ref(&())).await.unwrap();
    recorder.publish(&event, &w.object_ref(&())).await.unwrap();
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "default");
    let list = events.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(
        list.items[0].regarding.as_ref().unwrap().name.as_deref(),
        Some("w")
    );
    assert_eq!(list.items[0].note.as_deref(), Some("all good"));
    assert_eq!(list.items[0].series.as_ref().map(|s| s.count), Some(2));
    // the same store through core/v1, as `kubectl describe` reads it
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "default");
    let lp = ListParams::default().fields("involvedObject.name=w");
    let core_list = core.list(&lp).await.unwrap();
    assert_eq!(core_list.items.len(), 1);
    assert_eq!(core_list.items[0].message.as_deref(), Some("all good"));
    assert_eq!(core_list.items[0].reason.as_deref(), Some("Synced"));
    let by_view_field = events
        .list(&ListParams::default().fields("regarding.name=w"))
        .await
        .unwrap();
    assert_eq!(by_view_field.items.len(), 1);
}

/// A type registered only through the API, never with `register_crd`.
#[derive(
    kube::CustomResource, serde::Deserialize, serde::Serialize, Clone, Debug, schemars::JsonSchema,
)]
#[kube(group = "other.io", version = "v1alpha1", kind = "Doohickey")]
pub struct DoohickeySpec {
    /// Anything.
    pub note: String,
}

#[tokio::test]
async fn crds_created_through_the_api_are_served_until_deleted() {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::CustomResourceExt;
    let (kube, client) = setup();
    kube.register_crd(&Widget::crd())
        .expect("registering again replaces");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &Doohickey::crd())
        .await
        .unwrap();
    let api: Api<Doohickey> = Api::all(client.clone());
    let d = Doohickey::new("d1", DoohickeySpec { note: "hi".into() });
    api.create(&PostParams::default(), &d).await.unwrap();
    assert_eq!(api.get("d1").await.unwrap().spec.note, "hi");
    crds.delete("doohickeys.other.io", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(
        code(api.list(&ListParams::default()).await.unwrap_err()),
        404
    );
    assert!(widgets(&client).list(&ListParams::default()).await.is_ok());
}
