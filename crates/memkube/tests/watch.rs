//! Watch semantics through `kube::Api::watch` and `kube_runtime::watcher`: events from a
//! resourceVersion, bookmarks, timeouts, selector transitions, streaming lists, and 410 Expired
//! followed by a relist.

use crate::common;

use std::time::Duration;

use common::*;
use futures::{StreamExt, TryStreamExt};
use isthmus_memkube::Config;
use kube::ResourceExt;
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::watcher;
use serde_json::json;
use tokio::time::timeout;

const STEP: Duration = Duration::from_secs(5);

async fn next_event<S>(stream: &mut S) -> WatchEvent<Widget>
where
    S: futures::Stream<Item = kube::Result<WatchEvent<Widget>>> + Unpin,
{
    timeout(STEP, stream.next())
        .await
        .expect("event in time")
        .expect("stream open")
        .expect("event ok")
}

#[tokio::test]
async fn watch_from_resource_version_sees_added_modified_deleted() {
    let (_kube, client) = setup();
    let api = widgets(&client);
    let list = api.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &widget("w1", 80))
        .await
        .unwrap();
    api.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"port": 81}})),
    )
    .await
    .unwrap();
    api.delete("w1", &DeleteParams::default()).await.unwrap();
    let mut versions = Vec::new();
    for expected in ["ADDED", "MODIFIED", "DELETED"] {
        let (kind, obj) = match next_event(&mut stream).await {
            WatchEvent::Added(o) => ("ADDED", o),
            WatchEvent::Modified(o) => ("MODIFIED", o),
            WatchEvent::Deleted(o) => ("DELETED", o),
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(kind, expected);
        versions.push(obj.resource_version().unwrap().parse::<u64>().unwrap());
    }
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "{versions:?}");
}

#[tokio::test]
async fn watch_replays_history_after_a_version() {
    let (_kube, client) = setup();
    let api = widgets(&client);
    let a = api
        .create(&PostParams::default(), &widget("a", 80))
        .await
        .unwrap();
    api.create(&PostParams::default(), &widget("b", 80))
        .await
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default(), &a.resource_version().unwrap())
        .await
        .unwrap()
        .boxed();
    match next_event(&mut stream).await {
        WatchEvent::Added(o) => assert_eq!(o.name_any(), "b"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn expired_version_yields_410_error_event() {
    let (kube, client) = setup();
    let api = widgets(&client);
    let a = api
        .create(&PostParams::default(), &widget("a", 80))
        .await
        .unwrap();
    api.create(&PostParams::default(), &widget("b", 80))
        .await
        .unwrap();
    kube.compact_history();
    let mut stream = api
        .watch(&WatchParams::default(), &a.resource_version().unwrap())
        .await
        .unwrap()
        .boxed();
    match next_event(&mut stream).await {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        timeout(STEP, stream.next()).await.unwrap().is_none(),
        "stream ends after the error"
    );
}

#[tokio::test]
async fn bounded_history_expires_old_versions() {
    let kube = memkube_with(Config {
        history_limit: 3,
        ..Config::default()
    });
    let api = widgets(&kube.client());
    let first = api
        .create(&PostParams::default(), &widget("w0", 80))
        .await
        .unwrap();
    for i in 1..6 {
        api.create(&PostParams::default(), &widget(&format!("w{i}"), 80))
            .await
            .unwrap();
    }
    let mut stream = api
        .watch(&WatchParams::default(), &first.resource_version().unwrap())
        .await
        .unwrap()
        .boxed();
    assert!(matches!(next_event(&mut stream).await, WatchEvent::Error(e) if e.code == 410));
}

#[tokio::test]
async fn a_busy_type_expires_its_own_watches_only() {
    let kube = memkube_with(Config {
        history_limit: 3,
        ..Config::default()
    });
    let client = kube.client();
    let api = widgets(&client);
    let gadgets: kube::Api<Gadget> = kube::Api::all(client.clone());
    let g = Gadget::new("g", GadgetSpec { size: 1 });
    let rv = gadgets
        .create(&PostParams::default(), &g)
        .await
        .unwrap()
        .resource_version()
        .unwrap();
    for i in 0..5 {
        api.create(&PostParams::default(), &widget(&format!("w{i}"), 80))
            .await
            .unwrap();
    }
    let mut stream = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    assert!(matches!(next_event(&mut stream).await, WatchEvent::Error(e) if e.code == 410));
    let mut gadget_events = gadgets
        .watch(&WatchParams::default().disable_bookmarks(), &rv)
        .await
        .unwrap()
        .boxed();
    let patch = Patch::Merge(json!({"spec": {"size": 2}}));
    gadgets
        .patch("g", &PatchParams::default(), &patch)
        .await
        .unwrap();
    let event = timeout(STEP, gadget_events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(event, WatchEvent::Modified(_)), "{event:?}");
}

#[tokio::test]
async fn bookmarks_and_timeout() {
    let kube = memkube_with(Config {
        bookmark_interval: Duration::from_millis(50),
        ..Config::default()
    });
    let api = widgets(&kube.client());
    let rv = kube.resource_version().to_string();
    let wp = WatchParams::default().timeout(1);
    let mut stream = api.watch(&wp, &rv).await.unwrap().boxed();
    match next_event(&mut stream).await {
        WatchEvent::Bookmark(b) => assert_eq!(b.metadata.resource_version, rv),
        other => panic!("unexpected {other:?}"),
    }
    let started = std::time::Instant::now();
    while timeout(STEP, stream.next())
        .await
        .expect("ends by timeoutSeconds")
        .is_some()
    {}
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(
        kube.watch_count(),
        0,
        "closed watches are unregistered on the next event"
    );
}

#[tokio::test]
async fn label_selector_transitions_become_added_and_deleted() {
    let (_kube, client) = setup();
    let api = widgets(&client);
    api.create(&PostParams::default(), &widget("w", 80))
        .await
        .unwrap();
    let rv = api.get("w").await.unwrap().resource_version().unwrap();
    let mut stream = api
        .watch(&WatchParams::default().labels("on=yes"), &rv)
        .await
        .unwrap()
        .boxed();
    let set = |v: serde_json::Value| Patch::Merge(json!({"metadata": {"labels": {"on": v}}}));
    api.patch("w", &PatchParams::default(), &set(json!("yes")))
        .await
        .unwrap();
    api.patch("w", &PatchParams::default(), &set(json!("no")))
        .await
        .unwrap();
    assert!(matches!(
        next_event(&mut stream).await,
        WatchEvent::Added(_)
    ));
    assert!(matches!(
        next_event(&mut stream).await,
        WatchEvent::Deleted(_)
    ));
}

#[tokio::test]
async fn streaming_list_sends_initial_events_and_end_bookmark() {
    let (_kube, client) = setup();
    let api = widgets(&client);
    api.create(&PostParams::default(), &widget("a", 80))
        .await
        .unwrap();
    let wp = WatchParams::streaming_lists();
    let mut stream = api.watch(&wp, "").await.unwrap().boxed();
    assert!(matches!(next_event(&mut stream).await, WatchEvent::Added(o) if o.name_any() == "a"));
    match next_event(&mut stream).await {
        WatchEvent::Bookmark(b) => assert!(
            b.metadata
                .annotations
                .contains_key("k8s.io/initial-events-end")
        ),
        other => panic!("unexpected {other:?}"),
    }
}

async fn collect_names<S>(stream: &mut S, until: usize) -> Vec<String>
where
    S: futures::Stream<Item = Result<watcher::Event<Widget>, watcher::Error>> + Unpin,
{
    let mut names = Vec::new();
    while names.len() < until {
        match timeout(STEP, stream.try_next()).await.expect("in time") {
            Ok(Some(watcher::Event::Apply(w) | watcher::Event::InitApply(w))) => {
                names.push(w.name_any())
            }
            Ok(Some(_)) => {}
            Ok(None) => panic!("watcher ended"),
            Err(e) => panic!("watcher error {e}"),
        }
    }
    names
}

#[tokio::test]
async fn runtime_watcher_lists_then_watches() {
    let (_kube, client) = setup();
    let api = widgets(&client);
    api.create(&PostParams::default(), &widget("before", 80))
        .await
        .unwrap();
    let mut stream = watcher(api.clone(), watcher::Config::default()).boxed();
    assert_eq!(collect_names(&mut stream, 1).await, ["before"]);
    api.create(&PostParams::default(), &widget("after", 80))
        .await
        .unwrap();
    assert_eq!(collect_names(&mut stream, 1).await, ["after"]);
}

/// What the watcher task reports.
#[derive(Debug, PartialEq)]
enum Seen {
    InitApply(String),
    Apply(String),
    Error(u16),
    Other,
}

#[tokio::test]
async fn runtime_watcher_relists_after_410() {
    let (kube, client) = setup();
    let api = widgets(&client);
    api.create(&PostParams::default(), &widget("a", 80))
        .await
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = watcher(api.clone(), watcher::Config::default());
    let task = tokio::spawn(stream.for_each(move |ev| {
        let seen = match ev {
            Ok(watcher::Event::InitApply(w)) => Seen::InitApply(w.name_any()),
            Ok(watcher::Event::Apply(w)) => Seen::Apply(w.name_any()),
            Err(watcher::Error::WatchError(e)) => Seen::Error(e.code),
            _ => Seen::Other,
        };
        let _ = tx.send(seen);
        async {}
    }));
    let mut next_seen = async move |want: Seen| {
        loop {
            let seen = timeout(STEP, rx.recv())
                .await
                .expect("in time")
                .expect("open");
            if seen == want {
                return;
            }
        }
    };
    next_seen(Seen::InitApply("a".into())).await;
    timeout(STEP, async {
        while kube.watch_count() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await
        }
    })
    .await
    .unwrap();
    kube.expire_watches();
    next_seen(Seen::Error(410)).await;
    next_seen(Seen::InitApply("a".into())).await;
    api.create(&PostParams::default(), &widget("b", 80))
        .await
        .unwrap();
    next_seen(Seen::Apply("b".into())).await;
    task.abort();
}

#[tokio::test]
async fn runtime_watcher_streaming_list_mode() {
    let (_kube, client) = setup();
    let api = widgets(&client);
    api.create(&PostParams::default(), &widget("a", 80))
        .await
        .unwrap();
    let mut stream = watcher(api.clone(), watcher::Config::default().streaming_lists()).boxed();
    assert_eq!(collect_names(&mut stream, 1).await, ["a"]);
    api.create(&PostParams::default(), &widget("b", 80))
        .await
        .unwrap();
    assert_eq!(collect_names(&mut stream, 1).await, ["b"]);
}

#[tokio::test]
async fn metadata_api_and_metadata_watcher() {
    let (_kube, client) = setup();
    let api = widgets(&client);
    api.create(&PostParams::default(), &widget("a", 80))
        .await
        .unwrap();
    let meta = api.get_metadata("a").await.unwrap();
    assert_eq!(meta.metadata.name.as_deref(), Some("a"));
    assert_eq!(meta.types.unwrap().kind, "PartialObjectMetadata");
    let list = api.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let meta_api: kube::Api<kube::core::PartialObjectMeta<Widget>> =
        kube::Api::namespaced(client.clone(), "default");
    let mut stream = watcher(meta_api, watcher::Config::default()).boxed();
    let mut names = Vec::new();
    while names.len() < 2 {
        match timeout(STEP, stream.try_next())
            .await
            .expect("in time")
            .expect("ok")
        {
            Some(watcher::Event::InitApply(m) | watcher::Event::Apply(m)) => {
                names.push(m.metadata.name.unwrap());
                if names.len() == 1 {
                    api.create(&PostParams::default(), &widget("b", 80))
                        .await
                        .unwrap();
                }
            }
            Some(_) => {}
            None => panic!("ended"),
        }
    }
    assert_eq!(names, ["a", "b"]);
}
