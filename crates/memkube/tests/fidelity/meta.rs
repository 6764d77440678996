//! `metadata` the API server checks for every type: label keys and values, annotation keys,
//! finalizer names (422 with one cause each); empty collections are not stored.

use http::Method;
use kube::Client;
use serde_json::{Value, json};

use super::raw;

fn config_map(metadata: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata})
}

async fn refused(client: &Client, path: &str, body: &Value) -> Vec<(String, String)> {
    let answer = raw::json(client, Method::POST, path, body).await;
    assert_eq!(
        (answer.code, answer.body["reason"].as_str()),
        (422, Some("Invalid")),
        "{}",
        answer.body
    );
    let causes = answer.body["details"]["causes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    causes
        .iter()
        .map(|c| {
            let text = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (text("field"), text("message"))
        })
        .collect()
}

/// Invalid label keys and values, annotation keys and finalizer names are 422 with causes.
pub async fn invalid_labels_annotations_and_finalizers_are_422(client: Client, ns: &str) {
    let path = raw::core(ns, "configmaps", None);
    let causes = refused(
        &client,
        &path,
        &config_map(json!({"name": "a", "labels": {"bad key": "v"}})),
    )
    .await;
    assert_eq!(causes.len(), 1);
    assert_eq!(causes[0].0, "metadata.labels");
    assert!(
        causes[0].1.starts_with(
            r#"Invalid value: "bad key": name part must consist of alphanumeric characters"#
        ),
        "{}",
        causes[0].1
    );
    let causes = refused(
        &client,
        &path,
        &config_map(json!({"name": "a", "labels": {"k": "no spaces"}})),
    )
    .await;
    assert!(
        causes[0]
            .1
            .starts_with(r#"Invalid value: "no spaces": a valid label must be an empty string"#)
    );
    let causes = refused(
        &client,
        &path,
        &config_map(json!({"name": "a", "annotations": {"a b": "v"}})),
    )
    .await;
    assert_eq!(causes[0].0, "metadata.annotations");
    let causes = refused(
        &client,
        &path,
        &config_map(json!({"name": "a", "finalizers": ["not a name"]})),
    )
    .await;
    assert_eq!(causes[0].0, "metadata.finalizers");
    let widgets = raw::custom("example.io/v1", ns, "widgets", None);
    let widget = json!({"apiVersion": "example.io/v1", "kind": "Widget",
        "metadata": {"name": "w", "labels": {"k": "x".repeat(64)}}, "spec": {"port": 80}});
    let causes = refused(&client, &widgets, &widget).await;
    assert!(
        causes[0].1.ends_with("must be no more than 63 bytes"),
        "{}",
        causes[0].1
    );
}

/// Empty labels and finalizers are not stored (Go's `omitempty` on `ObjectMeta`).
pub async fn empty_metadata_collections_are_not_stored(client: Client, ns: &str) {
    let path = raw::core(ns, "configmaps", None);
    let body = config_map(json!({"name": "a", "labels": {}, "finalizers": [], "annotations": {}}));
    let created = raw::json(&client, Method::POST, &path, &body).await;
    assert_eq!(created.code, 201);
    let meta = &created.body["metadata"];
    for key in ["labels", "finalizers", "annotations"] {
        assert!(meta.get(key).is_none(), "{key}: {meta}");
    }
}
