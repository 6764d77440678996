//! Server-side apply of `metadata.finalizers` and `metadata.ownerReferences` by several
//! managers: the lists merge element by element and each manager owns its own elements.

use http::Method;
use kube::Client;
use serde_json::{Value, json};

use super::raw;

async fn owner(client: &Client, ns: &str, name: &str) -> Value {
    let path = raw::core(ns, "configmaps", None);
    let created = raw::json(
        client,
        Method::POST,
        &path,
        &json!({"metadata": {"name": name}}),
    )
    .await;
    assert_eq!(created.code, 201);
    json!({"apiVersion": "v1", "kind": "ConfigMap", "name": name,
        "uid": created.body["metadata"]["uid"]})
}

fn config(finalizers: Value, owners: Value) -> Value {
    json!({"apiVersion": "example.io/v1", "kind": "Widget",
        "metadata": {"name": "w", "finalizers": finalizers, "ownerReferences": owners},
        "spec": {"port": 80}})
}

/// The `fieldsV1` of `manager`'s Apply entry.
fn fields_of<'a>(obj: &'a Value, manager: &str) -> &'a Value {
    let entries = obj["metadata"]["managedFields"].as_array().unwrap();
    let entry = entries
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == "Apply");
    entry
        .unwrap_or_else(|| panic!("{manager} has an Apply entry"))
        .get("fieldsV1")
        .unwrap()
}

/// Two managers applying different finalizers and ownerReferences both keep theirs.
pub async fn managers_apply_their_own_finalizers_and_owner_references(client: Client, ns: &str) {
    let (a, b) = (
        owner(&client, ns, "owner-a").await,
        owner(&client, ns, "owner-b").await,
    );
    let path = raw::custom("example.io/v1", ns, "widgets", Some("w"));
    let alice = raw::apply(
        &client,
        &path,
        "alice",
        &config(json!(["a.io/f"]), json!([a])),
    )
    .await;
    assert_eq!(alice.code, 201, "{}", alice.body);
    let bob = raw::apply(
        &client,
        &path,
        "bob",
        &config(json!(["b.io/f"]), json!([b])),
    )
    .await;
    assert_eq!(bob.code, 200, "{}", bob.body);
    let merged = bob.body;
    assert_eq!(
        merged["metadata"]["finalizers"],
        json!(["a.io/f", "b.io/f"])
    );
    let uids: Vec<&Value> = merged["metadata"]["ownerReferences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["uid"])
        .collect();
    assert_eq!(uids, [&a["uid"], &b["uid"]]);
    let finalizers = &fields_of(&merged, "alice")["f:metadata"]["f:finalizers"];
    assert_eq!(finalizers, &json!({"v:\"a.io/f\"": {}}));
    let alice_owner = format!("k:{{\"uid\":{}}}", a["uid"]);
    let owners = fields_of(&merged, "alice")["f:metadata"]["f:ownerReferences"]
        .as_object()
        .unwrap();
    assert_eq!(owners.keys().collect::<Vec<_>>(), [&alice_owner]);
    // alice lets go of hers: bob's stay
    let alice = raw::apply(&client, &path, "alice", &config(json!([]), json!([]))).await;
    assert_eq!(alice.body["metadata"]["finalizers"], json!(["b.io/f"]));
    assert_eq!(
        alice.body["metadata"]["ownerReferences"][0]["uid"],
        b["uid"]
    );
}
