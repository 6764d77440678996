//! `MemKube::create_namespace`: the fixture path that skips the client.

use isthmus_memkube::MemKube;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;

#[tokio::test]
async fn a_namespace_created_directly_is_served_active_and_only_once() {
    let kube = MemKube::new();
    kube.create_namespace("isthmus").unwrap();
    let ns = Api::<Namespace>::all(kube.client())
        .get("isthmus")
        .await
        .unwrap();
    assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Active"));
    let err = kube.create_namespace("isthmus").unwrap_err().to_string();
    assert!(err.contains("isthmus") && err.contains("exists"), "{err}");
}
