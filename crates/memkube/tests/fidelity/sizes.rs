//! Size limits, exact: the 3 MiB request body, etcd's 1.5 MiB request (key included), the
//! retry without `managedFields` for writes that are not server-side apply, and the largest
//! NatMapping server-side apply can write.

use std::net::Ipv4Addr;

use http::Method;
use kube::Client;
use serde_json::{Value, json};

use super::raw;

/// The body a real API server answers when etcd refuses an object (no `reason`).
fn etcd_too_large() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "etcdserver: request is too large", "code": 500})
}

/// A ConfigMap whose JSON is exactly `len` bytes.
fn config_map_of_len(name: &str, len: usize) -> Vec<u8> {
    let shell = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name}, "data": {"k": ""}});
    let pad = len - serde_json::to_vec(&shell).unwrap().len();
    let mut cm = shell;
    cm["data"]["k"] = json!("x".repeat(pad));
    let bytes = serde_json::to_vec(&cm).unwrap();
    assert_eq!(bytes.len(), len);
    bytes
}

/// A request body of 3,145,728 bytes is read; one byte more is 413 with the real body.
pub async fn request_body_over_3_mib_is_413(client: Client, ns: &str) {
    let path = raw::core(ns, "configmaps", None);
    let over = config_map_of_len("over", 3_145_729);
    let answer = raw::send(&client, Method::POST, &path, "application/json", over).await;
    let expected = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": "Request entity too large: limit is 3145728",
        "reason": "RequestEntityTooLarge", "code": 413});
    assert_eq!((answer.code, &answer.body), (413, &expected));
    let at_limit = config_map_of_len("at-limit", 3_145_728);
    let answer = raw::send(&client, Method::POST, &path, "application/json", at_limit).await;
    // read, then refused by etcd for its size rather than for the body's
    assert_eq!(answer.code, 500, "{}", answer.body);
}

/// An object over etcd's request limit is 500 `etcdserver: request is too large`, no reason.
pub async fn object_over_the_etcd_limit_is_500_without_reason(client: Client, ns: &str) {
    let path = raw::core(ns, "configmaps", None);
    let big = config_map_of_len("big", 1_600_000);
    let answer = raw::send(&client, Method::POST, &path, "application/json", big).await;
    assert_eq!((answer.code, &answer.body), (500, &etcd_too_large()));
    let fits = config_map_of_len("fits", 1_500_000);
    let answer = raw::send(&client, Method::POST, &path, "application/json", fits).await;
    assert_eq!(answer.code, 201, "{}", answer.body);
}

/// A Widget with `n` tags: about 13 bytes each in the object, 14 more in the managedFields
/// of whoever writes them.
fn widget_with_tags(name: &str, n: usize) -> Value {
    let tags: serde_json::Map<String, Value> =
        (0..n).map(|i| (format!("t{i:05}"), json!("v"))).collect();
    json!({"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": name},
        "spec": {"port": 80, "tags": tags}})
}

/// POST, PUT and merge patch of an object that is too large only with its managedFields are
/// stored without them; server-side apply of the same object fails.
pub async fn non_apply_writes_drop_managed_fields_when_too_large(client: Client, ns: &str) {
    let widgets = raw::custom("example.io/v1", ns, "widgets", None);
    let created = raw::json(
        &client,
        Method::POST,
        &widgets,
        &widget_with_tags("post", 60_000),
    )
    .await;
    assert_eq!(created.code, 201, "{}", created.body);
    assert!(created.body["metadata"].get("managedFields").is_none());
    let small = raw::json(
        &client,
        Method::POST,
        &widgets,
        &widget_with_tags("patched", 1),
    )
    .await;
    assert!(small.body["metadata"]["managedFields"].is_array());
    let path = raw::custom("example.io/v1", ns, "widgets", Some("patched"));
    let patch = serde_json::to_vec(&json!({"spec": widget_with_tags("", 60_000)["spec"]})).unwrap();
    let patched = raw::send(
        &client,
        Method::PATCH,
        &path,
        "application/merge-patch+json",
        patch,
    )
    .await;
    assert_eq!(patched.code, 200, "{}", patched.body);
    assert!(patched.body["metadata"].get("managedFields").is_none());
    let applied = raw::apply(
        &client,
        &raw::custom("example.io/v1", ns, "widgets", Some("applied")),
        "sizer",
        &widget_with_tags("applied", 60_000),
    )
    .await;
    assert_eq!((applied.code, &applied.body), (500, &etcd_too_large()));
}

/// `n` NatMapping entries: 10.0.0.0 + i → 10.244.0.1 + i, as measured.
fn nat_mapping(n: u32) -> Value {
    let at = |base: Ipv4Addr, i: u32| Ipv4Addr::from(u32::from(base) + i).to_string();
    let mappings: serde_json::Map<String, Value> = (0..n)
        .map(|i| {
            let new_ip = at(Ipv4Addr::new(10, 0, 0, 0), i);
            (new_ip, json!(at(Ipv4Addr::new(10, 244, 0, 1), i)))
        })
        .collect();
    json!({"apiVersion": "net.isthmus.io/v1alpha1", "kind": "NatMapping",
        "metadata": {"name": "nm"}, "spec": {"clusterID": "b", "clusterMappings": mappings}})
}

/// The size etcd stores for a custom resource: its JSON without `resourceVersion`, plus a
/// newline.
fn stored_len(obj: &Value) -> usize {
    let mut obj = obj.clone();
    if let Some(meta) = obj["metadata"].as_object_mut() {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&obj).unwrap().len() + 1
}

/// "A NatMapping written by server-side apply holds at most 32,671 IPv4 entries (stored
/// 1,572,647 bytes); 32,672 fail." Measured with a 48-byte etcd key and names whose lengths
/// (name + namespace + clusterID + field manager = 16) these reproduce in namespace
/// `fidelity`: `nm`, `b`, `sizer`.
pub async fn nat_mapping_applied_holds_at_most_32671_entries(client: Client, ns: &str) {
    assert_eq!(
        format!("/registry/net.isthmus.io/natmappings/{ns}/nm").len(),
        48,
        "the measured figure needs the measured key length"
    );
    let path = raw::custom("net.isthmus.io/v1alpha1", ns, "natmappings", Some("nm"));
    let too_many = raw::apply(&client, &path, "sizer", &nat_mapping(32_672)).await;
    assert_eq!((too_many.code, &too_many.body), (500, &etcd_too_large()));
    let most = raw::apply(&client, &path, "sizer", &nat_mapping(32_671)).await;
    assert_eq!(most.code, 201, "{}", most.body);
    let stored = raw::get(&client, &path).await.body;
    assert_eq!(
        stored["spec"]["clusterMappings"].as_object().unwrap().len(),
        32_671
    );
    assert_eq!(stored_len(&stored), 1_572_647);
}
