//! Watches: bookmarks as the watch cache sends them, and "too old resourceVersion" decided per
//! resource type.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::time::timeout;

use crate::common::{Widget, widget};

/// A watch with bookmarks allowed gets one BOOKMARK after its initial events, annotated
/// `k8s.io/initial-events-end`, and no periodic ones within a few seconds.
pub async fn bookmarks_mark_the_end_of_initial_events_only(client: Client, ns: &str) {
    let api: Api<Widget> = Api::namespaced(client, ns);
    api.create(&PostParams::default(), &widget("a", 80))
        .await
        .unwrap();
    let wp = WatchParams::default().timeout(60);
    let mut events = api.watch(&wp, "0").await.unwrap().boxed();
    match events.next().await.unwrap().unwrap() {
        WatchEvent::Added(w) => assert_eq!(w.name_any(), "a"),
        other => panic!("ADDED expected, got {other:?}"),
    }
    match events.next().await.unwrap().unwrap() {
        WatchEvent::Bookmark(b) => {
            let end = b.metadata.annotations.get("k8s.io/initial-events-end");
            assert_eq!(end.map(String::as_str), Some("true"));
        }
        other => panic!("BOOKMARK expected, got {other:?}"),
    }
    let quiet = timeout(Duration::from_secs(6), events.next()).await;
    assert!(quiet.is_err(), "no periodic bookmark so soon: {quiet:?}");
}

/// Many writes to one type do not expire watches of another type from an older version (each
/// type has its own history). That the busy type's own watches expire depends on the size of
/// its history (memkube: `Config::history_limit` events; a real watch cache grows under
/// bursts), so `tests/watch.rs` checks that part against memkube only.
pub async fn too_old_resource_version_is_per_type(client: Client, ns: &str) {
    let widgets: Api<Widget> = Api::namespaced(client.clone(), ns);
    let start = widgets
        .create(&PostParams::default(), &widget("w", 80))
        .await
        .unwrap();
    let rv = start.resource_version().unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client, ns);
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("busy".into());
    cms.create(&PostParams::default(), &cm).await.unwrap();
    for i in 0..1100 {
        let patch = Patch::Merge(json!({"data": {"n": i.to_string()}}));
        cms.patch("busy", &PatchParams::default(), &patch)
            .await
            .unwrap();
    }
    let wp = WatchParams::default().disable_bookmarks();
    let mut widget_events = widgets.watch(&wp, &rv).await.unwrap().boxed();
    let patch = Patch::Merge(json!({"spec": {"port": 81}}));
    widgets
        .patch("w", &PatchParams::default(), &patch)
        .await
        .unwrap();
    match widget_events.next().await.unwrap().unwrap() {
        WatchEvent::Modified(w) => assert_eq!(w.spec.port, 81),
        other => panic!("MODIFIED expected, got {other:?}"),
    }
}
