//! Deletion of an object held by a finalizer: `generation` goes up with `deletionTimestamp`,
//! and the final DELETED event carries the object as last stored, finalizer included.

use futures::StreamExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::common::{Widget, widget};

/// DELETE of an object with a finalizer bumps its generation (once).
pub async fn deletion_with_a_finalizer_bumps_generation(client: Client, ns: &str) {
    let api: Api<Widget> = Api::namespaced(client, ns);
    let mut w = widget("w", 80);
    w.metadata.finalizers = Some(vec!["example.io/hold".into()]);
    let created = api.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let pending = api
        .delete("w", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert_eq!(pending.metadata.generation, Some(2));
    let again = api
        .delete("w", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert_eq!(
        again.metadata.generation,
        Some(2),
        "a second delete changes nothing"
    );
}

/// Removing the last finalizer of a deleting object ends it with one DELETED event that
/// still lists the finalizer (the object as last stored).
pub async fn final_deleted_event_carries_the_last_stored_object(client: Client, ns: &str) {
    let api: Api<Widget> = Api::namespaced(client, ns);
    let mut w = widget("w", 80);
    w.metadata.finalizers = Some(vec!["example.io/hold".into()]);
    api.create(&PostParams::default(), &w).await.unwrap();
    let pending = api
        .delete("w", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    let rv = pending.resource_version().unwrap();
    let mut events = api
        .watch(&WatchParams::default().disable_bookmarks(), &rv)
        .await
        .unwrap()
        .boxed();
    let release = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    api.patch("w", &PatchParams::default(), &release)
        .await
        .unwrap();
    match events.next().await.unwrap().unwrap() {
        WatchEvent::Deleted(last) => {
            assert_eq!(last.finalizers(), ["example.io/hold"]);
            assert!(last.metadata.deletion_timestamp.is_some());
            let deleted_at: u64 = last.resource_version().unwrap().parse().unwrap();
            assert!(deleted_at > rv.parse::<u64>().unwrap());
        }
        other => panic!("DELETED expected, got {other:?}"),
    }
}
