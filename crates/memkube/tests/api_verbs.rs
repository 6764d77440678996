//! `kube::Api` round trips for every verb against memkube: create, get, list (selectors,
//! pagination), replace (optimistic concurrency), merge/JSON/apply patches, the status
//! subresource, delete, deletecollection, plus error statuses.

use crate::common;

use common::*;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::json;

#[tokio::test]
async fn create_sets_server_metadata() {
    let (_kube, client) = setup();
    let api = widgets(&client);
    let w = api
        .create(&PostParams::default(), &widget("w1", 80))
        .await
        .unwrap();
    assert_eq!(w.metadata.namespace.as_deref(), Some("default"));
    assert_eq!(w.metadata.generation, Some(1));
    assert_eq!(w.uid().unwrap().len(), 36);
    assert!(w.metadata.creation_timestamp.is_some());
    assert!(w.resource_version().unwrap().parse::<u64>().unwrap() > 0);
    let got = api.get("w1").await.unwrap();
    assert_eq!(got.spec, w.spec);
    assert_eq!(got.resource_version(), w.resource_version());
}

#[tokio::test]
async fn create_errors_already_exists_and_missing_namespace() {
    let (_kube, client) = setup();
    let api = widgets(&client);
    api.create(&PostParams::default(), &widget("w1", 80))
        .await
        .unwrap();
    let err = status(
        api.create(&PostParams::default(), &widget("w1", 81))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));
    let nowhere: Api<Widget> = Api::namespaced(client.clone(), "nowhere");
    let err = status(
        nowhere
            .create(&PostParams::default(), &widget("w1", 80))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
    assert!(
        err.message.contains("namespaces \"nowhere\""),
        "{}",
        err.message
    );
    let missing = status(api.get("ghost").await.unwrap_err());
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.details.unwrap().name, "ghost");
}

#[tokio::test]
async fn generate_name_creates_unique_names() {
    let (_kube, client) = setup();
    let api = widgets(&client);
    let mut w = widget("", 80);
    w.metadata.name = None;
    w.metadata.generate_name = Some("gen-".into());
    let a = api.create(&PostParams::default(), &w).await.unwrap();
    let b = api.create(&PostParams::default(), &w).await.unwrap();
    assert!(a.name_any().starts_with("gen-") && a.name_any().len() == 9);
    assert_ne!(a.name_any(), b.name_any());
}

/// Widgets a (default, app=web), b (default, app=db), c (other, app=web).
async fn seed_labelled_widgets(client: &kube::Client) {
    let nss: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some("other".into());
    nss.create(&PostParams::default(), &ns).await.unwrap();
    for (ns, name, app) in [
        ("default", "a", "web"),
        ("default", "b", "db"),
        ("other", "c", "web"),
    ] {
        let api: Api<Widget> = Api::namespaced(client.clone(), ns);
        let mut w = widget(name, 80);
        w.metadata.labels = Some([("app".to_string(), app.to_string())].into());
        api.create(&PostParams::default(), &w).await.unwrap();
    }
}

async fn names(api: &Api<Widget>, lp: ListParams) -> Vec<String> {
    api.list(&lp)
        .await
        .unwrap()
        .items
        .iter()
        .map(|w| w.name_any())
        .collect()
}

#[tokio::test]
async fn list_with_label_and_field_selectors_across_namespaces() {
    let (_kube, client) = setup();
    seed_labelled_widgets(&client).await;
    let all: Api<Widget> = Api::all(client.clone());
    let lp = ListParams::default;
    assert_eq!(names(&all, lp()).await, ["a", "b", "c"]);
    assert_eq!(names(&all, lp().labels("app=web")).await, ["a", "c"]);
    assert_eq!(names(&all, lp().labels("app notin (web)")).await, ["b"]);
    assert!(names(&all, lp().labels("!app")).await.is_empty());
    assert_eq!(
        names(&all, lp().fields("metadata.namespace=other")).await,
        ["c"]
    );
    assert_eq!(
        names(&widgets(&client), lp().fields("metadata.name!=a")).await,
        ["b"]
    );
    let bad = status(all.list(&lp().fields("spec.port=1")).await.unwrap_err());
    assert_eq!(bad.code, 400);
}

#[tokio::test]
async fn list_pages_with_limit_and_continue() {
    let (_kube, client) = setup();
    let api = widgets(&client);
    for i in 0..5 {
        api.create(&PostParams::default(), &widget(&format!("w{i}"), 80))
            .await
            .unwrap();
    }
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(first.items.len(), 2);
    let token = first.metadata.continue_.clone().unwrap();
    let second = api
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap();
    let third = api
        .list(
            &ListParams::default()
                .limit(2)
                .continue_token(&second.metadata.continue_.clone().unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(third.items.len(), 1);
    assert!(third.metadata.continue_.is_none());
    assert_eq!(second.items[0].name_any(), "w2");
}

#[tokio::test]
async fn replace_uses_optimistic_concurrency() {
    let (_kube, client) = setup();
    let api = widgets(&client);
    let created = api
        .create(&PostParams::default(), &widget("w1", 80))
        .await
        .unwrap();
    let mut next = created.clone();
    next.spec.port = 81;
    let replaced = api
        .replace("w1", &PostParams::default(), &next)
        .await
        .unwrap();
    assert_eq!(replaced.spec.port, 81);
    assert_eq!(replaced.metadata.generation, Some(2));
    let mut stale = created.clone();
    stale.spec.port = 82;
    let err = status(
        api.replace("w1", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    let mut unversioned = replaced.clone();
    unversioned.metadata.resource_version = None;
    assert_eq!(
        code(
            api.replace("w1", &PostParams::default(), &unversioned)
                .await
                .unwrap_err()
        ),
        422
    );
}

#[tokio::test]
async fn noop_write_keeps_resource_version() {
    let (kube, client) = setup();
    let api = widgets(&client);
    let created = api
        .create(&PostParams::default(), &widget("w1", 80))
        .await
        .unwrap();
    let before = kube.resource_version();
    let same = api
        .replace("w1", &PostParams::default(), &created)
        .await
        .unwrap();
    assert_eq!(same.resource_version(), created.resource_version());
    let patched = api
        .patch(
            "w1",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"port": 80}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.resource_version(), created.resource_version());
    assert_eq!(kube.resource_version(), before);
}

#[tokio::test]
async fn merge_and_json_patches() {
    let (_kube, client) = setup();
    let api = widgets(&client);
    api.create(&PostParams::default(), &widget("w1", 80))
        .await
        .unwrap();
    let pp = PatchParams::default();
    let merged = api
        .patch(
            "w1",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}, "spec": {"colour": "red"}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.spec.colour.as_deref(), Some("red"));
    assert_eq!(merged.labels()["a"], "b");
    assert_eq!(merged.metadata.generation, Some(2));
    let label_only = api
        .patch(
            "w1",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"c": "d"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        label_only.metadata.generation,
        Some(2),
        "metadata changes keep generation"
    );
    let ops: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/spec/port", "value": 90}]))
            .unwrap();
    let jp = api.patch("w1", &pp, &Patch::Json::<()>(ops)).await.unwrap();
    assert_eq!(jp.spec.port, 90);
    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/spec/port", "value": 1}])).unwrap();
    assert_eq!(
        code(
            api.patch("w1", &pp, &Patch::Json::<()>(failing))
                .await
                .unwrap_err()
        ),
        422
    );
    let stale = Patch::Merge(json!({"metadata": {"resourceVersion": "1"}, "spec": {"port": 5}}));
    assert_eq!(code(api.patch("w1", &pp, &stale).await.unwrap_err()), 409);
}

#[tokio::test]
async fn status_subresource_is_written_separately() {
    let (_kube, client) = setup();
    let api = widgets(&client);
    let mut w = widget("w1", 80);
    w.status = Some(WidgetStatus {
        ready: true,
        observed_generation: None,
    });
    let created = api.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(created.status, None, "status is dropped on create");
    let patch = Patch::Merge(json!({"status": {"ready": true}, "spec": {"port": 99}}));
    let st = api
        .patch_status("w1", &PatchParams::default(), &patch)
        .await
        .unwrap();
    assert!(st.status.as_ref().unwrap().ready);
    assert_eq!(st.spec.port, 80, "spec changes through /status are ignored");
    assert_eq!(
        st.metadata.generation,
        Some(1),
        "status writes keep generation"
    );
    let mut main = st.clone();
    main.spec.port = 81;
    main.status = Some(WidgetStatus {
        ready: false,
        observed_generation: Some(7),
    });
    let replaced = api
        .replace("w1", &PostParams::default(), &main)
        .await
        .unwrap();
    assert!(
        replaced.status.as_ref().unwrap().ready,
        "status changes through the main resource are ignored"
    );
    assert_eq!(replaced.metadata.generation, Some(2));
    let mut via_status = replaced.clone();
    via_status.status = Some(WidgetStatus {
        ready: false,
        observed_generation: Some(2),
    });
    let rs = api
        .replace_status("w1", &PostParams::default(), &via_status)
        .await
        .unwrap();
    assert_eq!(rs.status.unwrap().observed_generation, Some(2));
    assert_eq!(api.get_status("w1").await.unwrap().spec.port, 81);
}

#[tokio::test]
async fn delete_and_delete_collection() {
    let (_kube, client) = setup();
    let api = widgets(&client);
    for name in ["a", "b", "c"] {
        let mut w = widget(name, 80);
        w.metadata.labels = Some(
            [(
                "group".to_string(),
                if name == "c" { "keep" } else { "drop" }.to_string(),
            )]
            .into(),
        );
        api.create(&PostParams::default(), &w).await.unwrap();
    }
    let gone = api.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(gone.is_right(), "immediate deletion returns a Status");
    assert_eq!(code(api.get("a").await.unwrap_err()), 404);
    assert_eq!(
        code(api.delete("a", &DeleteParams::default()).await.unwrap_err()),
        404
    );
    let deleted = api
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("group=drop"),
        )
        .await
        .unwrap();
    let names: Vec<String> = deleted
        .left()
        .unwrap()
        .items
        .iter()
        .map(|w| w.name_any())
        .collect();
    assert_eq!(names, ["b"]);
    let left: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|w| w.name_any())
        .collect();
    assert_eq!(left, ["c"]);
}

#[tokio::test]
async fn delete_preconditions_conflict() {
    let (_kube, client) = setup();
    let api = widgets(&client);
    api.create(&PostParams::default(), &widget("a", 80))
        .await
        .unwrap();
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some("nope".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    assert_eq!(code(api.delete("a", &dp).await.unwrap_err()), 409);
    assert!(api.get("a").await.is_ok());
}

#[tokio::test]
async fn cluster_scoped_custom_and_core_types() {
    let (_kube, client) = setup();
    let gadgets: Api<Gadget> = Api::all(client.clone());
    let g = gadgets
        .create(
            &PostParams::default(),
            &Gadget::new("g1", GadgetSpec { size: 3 }),
        )
        .await
        .unwrap();
    assert_eq!(g.metadata.namespace, None);
    let st = gadgets
        .patch_status(
            "g1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Up"}})),
        )
        .await
        .unwrap();
    assert_eq!(st.status.unwrap().phase, "Up");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "kube-system");
    let mut s = Secret::default();
    s.metadata.name = Some("key".into());
    s.data = Some([("k".to_string(), k8s_openapi::ByteString(b"v".to_vec()))].into());
    secrets.create(&PostParams::default(), &s).await.unwrap();
    assert_eq!(secrets.get("key").await.unwrap().data.unwrap()["k"].0, b"v");
    let nss: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = nss
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    assert_eq!(
        names,
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );
}

#[tokio::test]
async fn dry_run_does_not_store() {
    let (kube, client) = setup();
    let api = widgets(&client);
    let before = kube.resource_version();
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let w = api.create(&pp, &widget("dry", 80)).await.unwrap();
    assert_eq!(w.name_any(), "dry");
    assert_eq!(code(api.get("dry").await.unwrap_err()), 404);
    assert_eq!(kube.resource_version(), before);
}

#[tokio::test]
async fn a_compacted_continue_token_is_410_with_a_token_to_go_on() {
    let (kube, client) = setup();
    let api = widgets(&client);
    for i in 0..3 {
        api.create(&PostParams::default(), &widget(&format!("w{i}"), 80))
            .await
            .unwrap();
    }
    let first = api.list(&ListParams::default().limit(1)).await.unwrap();
    api.create(&PostParams::default(), &widget("w9", 80))
        .await
        .unwrap();
    kube.compact_history();
    let token = first.metadata.continue_.clone().unwrap();
    let err = status(
        api.list(&ListParams::default().continue_token(&token))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (410, "Expired"));
    assert!(err.message.contains("inconsistent list"), "{}", err.message);
    let exact = ListParams::default()
        .at(first.metadata.resource_version.as_deref().unwrap())
        .matching(kube::api::VersionMatch::Exact);
    assert_eq!(code(api.list(&exact).await.unwrap_err()), 410);
}
