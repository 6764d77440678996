//! Reads: field selectors per built-in type, paginated lists from one snapshot, and a future
//! resourceVersion answered with 504 after a wait.

use http::Method;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::raw;

fn config_map(name: &str) -> ConfigMap {
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some(name.into());
    cm
}

/// A field selector on a field the type does not index is 400 with the real message;
/// the fields a type does index work.
pub async fn unsupported_field_selectors_are_400(client: Client, ns: &str) {
    let answer = raw::get(
        &client,
        &format!(
            "{}?fieldSelector=data.k%3Dv",
            raw::core(ns, "configmaps", None)
        ),
    )
    .await;
    assert_eq!(
        (answer.code, answer.body["reason"].as_str()),
        (400, Some("BadRequest"))
    );
    assert_eq!(
        answer.body["message"],
        r#""data.k" is not a known field selector: only "metadata.name", "metadata.namespace""#
    );
    let answer = raw::get(
        &client,
        &format!(
            "{}?fieldSelector=spec.bogus%3Dv",
            raw::core(ns, "pods", None)
        ),
    )
    .await;
    assert_eq!(
        (answer.code, answer.body["message"].as_str()),
        (400, Some("field label not supported: spec.bogus"))
    );
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    cms.create(&PostParams::default(), &config_map("a"))
        .await
        .unwrap();
    let found = cms
        .list(&ListParams::default().fields("metadata.name=a"))
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    let secrets = raw::get(
        &client,
        &format!(
            "{}?fieldSelector=type%3DOpaque",
            raw::core(ns, "secrets", None)
        ),
    )
    .await;
    assert_eq!(secrets.code, 200);
}

/// Every page of a paginated list comes from the snapshot of the first: objects created,
/// changed or deleted meanwhile do not show.
pub async fn paginated_lists_are_one_snapshot(client: Client, ns: &str) {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    for name in ["a", "b", "c", "d"] {
        cms.create(&PostParams::default(), &config_map(name))
            .await
            .unwrap();
    }
    let first = cms.list(&ListParams::default().limit(2)).await.unwrap();
    let names = |l: &kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        l.items.iter().map(|o| o.name_any()).collect()
    };
    assert_eq!(names(&first), ["a", "b"]);
    cms.delete("c", &Default::default()).await.unwrap();
    cms.create(&PostParams::default(), &config_map("bb"))
        .await
        .unwrap();
    let mut changed = config_map("d");
    changed.data = Some([("k".to_string(), "v".to_string())].into());
    cms.replace("d", &PostParams::default(), &changed)
        .await
        .unwrap();
    let token = first.metadata.continue_.clone().unwrap();
    let second = cms
        .list(&ListParams::default().limit(10).continue_token(&token))
        .await
        .unwrap();
    assert_eq!(names(&second), ["c", "d"]);
    assert_eq!(second.items[1].data, None, "d as it was at the first page");
    assert_eq!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );
}

/// A get or list at a resourceVersion the server has not reached waits, then is 504
/// `Too large resource version` with `retryAfterSeconds: 1`.
pub async fn a_future_resource_version_is_504_after_a_wait(client: Client, ns: &str) {
    let path = raw::core(ns, "configmaps", None);
    let list = raw::get(&client, &path).await;
    let current: u64 = list.body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let ahead = current + 1_000_000;
    let answer = raw::get(&client, &format!("{path}?resourceVersion={ahead}")).await;
    assert_eq!(
        (answer.code, answer.body["reason"].as_str()),
        (504, Some("Timeout")),
        "{}",
        answer.body
    );
    assert!(
        answer.body["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!(
                "Timeout: Too large resource version: {ahead}, current: "
            )),
        "{}",
        answer.body
    );
    assert_eq!(answer.body["details"]["retryAfterSeconds"], 1);
    assert_eq!(
        answer.body["details"]["causes"][0]["reason"],
        "ResourceVersionTooLarge"
    );
    let created = raw::json(
        &client,
        Method::POST,
        &path,
        &json!({"metadata": {"name": "x"}}),
    )
    .await;
    let rv = created.body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let get = raw::get(&client, &format!("{path}/x?resourceVersion={rv}")).await;
    assert_eq!(get.code, 200, "a version already reached is served");
}
