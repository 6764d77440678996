//! Writes the API server refuses or rewrites: strategic merge patches on custom resources,
//! server-side apply of undeclared fields, CRD `format`s, create with a resourceVersion,
//! update without one, and integers sent as floats.

use http::Method;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use super::raw;

fn widget(name: &str) -> Value {
    json!({"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": name},
        "spec": {"port": 80}})
}

async fn create_widget(client: &Client, ns: &str, name: &str) {
    let path = raw::custom("example.io/v1", ns, "widgets", None);
    let created = raw::json(client, Method::POST, &path, &widget(name)).await;
    assert_eq!(created.code, 201, "{}", created.body);
}

/// A strategic merge patch of a custom resource is 415 with the media types it accepts.
pub async fn strategic_merge_patch_of_a_custom_resource_is_415(client: Client, ns: &str) {
    create_widget(&client, ns, "w").await;
    let path = raw::custom("example.io/v1", ns, "widgets", Some("w"));
    let body = serde_json::to_vec(&json!({"spec": {"port": 81}})).unwrap();
    let answer = raw::send(
        &client,
        Method::PATCH,
        &path,
        "application/strategic-merge-patch+json",
        body,
    )
    .await;
    assert_eq!(answer.code, 415, "{}", answer.body);
    assert_eq!(answer.body["reason"], "UnsupportedMediaType");
    assert_eq!(
        answer.body["message"],
        "the body of the request was in an unknown format - accepted media types include: \
         application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    );
}

/// Server-side apply of a field the CRD does not declare is 500, whatever `fieldValidation`
/// says; the same field in a merge patch is pruned.
pub async fn apply_of_an_undeclared_field_is_500(client: Client, ns: &str) {
    let path = raw::custom("example.io/v1", ns, "widgets", Some("w"));
    let mut config = widget("w");
    config["spec"]["bogus"] = json!(1);
    for validation in ["", "?fieldValidation=Ignore", "?fieldValidation=Strict"] {
        let answer = raw::apply(&client, &format!("{path}{validation}"), "me", &config).await;
        let expected = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "code": 500, "message":
            "failed to create typed patch object (/w; example.io/v1, Kind=Widget): .spec.bogus: field not declared in schema"});
        assert_eq!(
            (answer.code, &answer.body),
            (500, &expected),
            "{validation}"
        );
    }
    create_widget(&client, ns, "w").await;
    let merge = serde_json::to_vec(&json!({"spec": {"bogus": 1}})).unwrap();
    let patched = raw::send(
        &client,
        Method::PATCH,
        &path,
        "application/merge-patch+json",
        merge,
    )
    .await;
    assert_eq!(patched.code, 200);
    assert!(patched.body["spec"].get("bogus").is_none());
}

/// `format: ipv4` (a NatMapping's values) is checked: 422 naming the entry.
pub async fn ipv4_format_is_validated(client: Client, ns: &str) {
    let path = raw::custom("net.isthmus.io/v1alpha1", ns, "natmappings", None);
    let body = json!({"apiVersion": "net.isthmus.io/v1alpha1", "kind": "NatMapping",
        "metadata": {"name": "b"},
        "spec": {"clusterID": "b", "clusterMappings": {"10.0.0.1": "not-an-ip"}}});
    let answer = raw::json(&client, Method::POST, &path, &body).await;
    assert_eq!(
        (answer.code, answer.body["reason"].as_str()),
        (422, Some("Invalid"))
    );
    let cause = &answer.body["details"]["causes"][0];
    assert_eq!(cause["field"], "spec.clusterMappings.10.0.0.1");
    assert_eq!(cause["reason"], "FieldValueTypeInvalid");
    let message = cause["message"].as_str().unwrap();
    assert!(
        message.ends_with(
            r#"spec.clusterMappings.10.0.0.1 in body must be of type ipv4: "not-an-ip""#
        ),
        "{message}"
    );
    let mut good = body.clone();
    good["spec"]["clusterMappings"]["10.0.0.1"] = json!("10.244.0.1");
    assert_eq!(
        raw::json(&client, Method::POST, &path, &good).await.code,
        201
    );
}

/// POST of an object carrying `metadata.resourceVersion` is 500, no reason.
pub async fn create_with_a_resource_version_is_500(client: Client, ns: &str) {
    let mut w = widget("w");
    w["metadata"]["resourceVersion"] = json!("12");
    let path = raw::custom("example.io/v1", ns, "widgets", None);
    let answer = raw::json(&client, Method::POST, &path, &w).await;
    let expected = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "code": 500,
        "message": "resourceVersion should not be set on objects to be created"});
    assert_eq!((answer.code, &answer.body), (500, &expected));
}

/// A Lease PUT without resourceVersion is 422; a ConfigMap's is an unconditional update.
pub async fn lease_update_needs_a_resource_version(client: Client, ns: &str) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    let mut lease = Lease::default();
    lease.metadata.name = Some("leader".into());
    let mut created = leases.create(&PostParams::default(), &lease).await.unwrap();
    created.metadata.resource_version = None;
    let kube::Error::Api(status) = leases
        .replace("leader", &PostParams::default(), &created)
        .await
        .unwrap_err()
    else {
        panic!("an API error")
    };
    assert_eq!((status.code, status.reason.as_str()), (422, "Invalid"));
    let cause = &status.details.unwrap().causes[0];
    assert_eq!(cause.field, "metadata.resourceVersion");
    assert!(cause.message.ends_with("must be specified for an update"));
    let path = raw::core(ns, "configmaps", None);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    assert_eq!(raw::json(&client, Method::POST, &path, &cm).await.code, 201);
    let put = raw::json(&client, Method::PUT, &format!("{path}/c"), &cm).await;
    assert_eq!(put.code, 200, "{}", put.body);
}

/// An integer sent as `2.0` is stored, and read back, as `2`.
pub async fn integral_floats_are_stored_as_integers(client: Client, ns: &str) {
    let path = raw::custom("example.io/v1", ns, "widgets", None);
    let body = br#"{"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"port": 2.0}}"#;
    let answer = raw::send(
        &client,
        Method::POST,
        &path,
        "application/json",
        body.to_vec(),
    )
    .await;
    assert_eq!(answer.code, 201, "{}", answer.body);
    let got = raw::get(&client, &format!("{path}/w")).await.body;
    assert!(got["spec"]["port"].is_u64(), "{}", got["spec"]["port"]);
    let typed: Api<crate::common::Widget> = Api::namespaced(client.clone(), ns);
    assert_eq!(typed.get("w").await.unwrap().spec.port, 2);
    let pp = PatchParams::default();
    let patch = Patch::Merge(json!({"spec": {"port": 3.0}}));
    typed.patch("w", &pp, &patch).await.unwrap();
    assert_eq!(typed.get("w").await.unwrap().spec.port, 3);
}
