//! Fault injection through `MemKube::faults()`: latency, 5xx answers, watch streams cut or
//! silenced, and outages, in process (`kube::Client` on the `tower::Service`) and over HTTP.
//! Durations are generous: they are waited out, never asserted as bounds.

use crate::common;

use std::time::Duration;

use common::*;
use futures::StreamExt;
use isthmus_memkube::{ServerError, Verbs};
use kube::api::{ListParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use tokio::time::timeout;

/// How long a step may take before the test gives up on it.
const STEP: Duration = Duration::from_secs(5);

/// Whether `err` (or an error it wraps) is an `io::Error` of `kind`.
fn caused_by(err: &(dyn std::error::Error + 'static), kind: std::io::ErrorKind) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == kind)
        {
            return true;
        }
        current = e.source();
    }
    false
}

#[tokio::test]
async fn write_latency_delays_writes_but_not_reads() {
    let (kube, client) = setup();
    kube.faults().set_write_latency(Duration::from_secs(3));
    let api = widgets(&client);
    let writer = {
        let api = api.clone();
        tokio::spawn(async move {
            api.create(&PostParams::default(), &widget("slow", 80))
                .await
        })
    };
    tokio::task::yield_now().await;
    // the read is served at once; the write is still waiting out its latency
    assert_eq!(code(api.get("slow").await.unwrap_err()), 404);
    assert!(!writer.is_finished());
    writer.await.unwrap().unwrap();
    assert!(api.get("slow").await.is_ok());
    kube.faults().clear();
}

#[tokio::test]
async fn counted_and_random_failures_answer_with_real_status_bodies() {
    let (kube, client) = setup();
    let faults = kube.faults();
    let api = widgets(&client);
    faults.fail_next(Verbs::WRITES, 2, ServerError::EtcdTimeout);
    for _ in 0..2 {
        let err = status(
            api.create(&PostParams::default(), &widget("w", 80))
                .await
                .unwrap_err(),
        );
        assert_eq!((err.code, err.reason.as_str()), (500, ""));
        assert_eq!(err.message, "etcdserver: request timed out");
    }
    assert!(
        api.list(&ListParams::default()).await.is_ok(),
        "reads are not affected"
    );
    api.create(&PostParams::default(), &widget("w", 80))
        .await
        .unwrap();
    faults.fail_randomly(Verbs::READS | Verbs::WATCHES, 1.0, ServerError::Unavailable);
    let err = status(api.get("w").await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (503, "ServiceUnavailable"));
    let watch = api.watch(&WatchParams::default(), "0").await;
    assert_eq!(code(watch.err().expect("the watch is refused")), 503);
    faults.clear_failures();
    assert!(api.get("w").await.is_ok());
}

/// Waits (bounded) until `n` watches are open.
async fn until_watching(kube: &isthmus_memkube::MemKube, n: usize) {
    timeout(STEP, async {
        while kube.watch_count() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the watches open");
}

#[tokio::test]
async fn dropped_watches_end_without_an_error_and_the_watcher_resumes_without_relisting() {
    let (kube, client) = setup();
    let api = widgets(&client);
    api.create(&PostParams::default(), &widget("a", 80))
        .await
        .unwrap();
    let rv = kube.resource_version().to_string();
    let wp = WatchParams::default().disable_bookmarks();
    let mut raw = api.watch(&wp, &rv).await.unwrap().boxed();
    let (tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let runtime_watcher = tokio::spawn(watcher(api.clone(), watcher::Config::default()).for_each(
        move |event| {
            let label = match event {
                Ok(watcher::Event::Apply(w) | watcher::Event::InitApply(w)) => w.name_any(),
                Ok(watcher::Event::Init) => "relist".to_string(),
                Ok(_) => String::new(),
                Err(e) => format!("error {e}"),
            };
            let _ = tx.send(label);
            async {}
        },
    ));
    until_watching(&kube, 2).await;
    kube.faults().drop_watches();
    assert!(
        timeout(STEP, raw.next()).await.unwrap().is_none(),
        "the cut stream just ends"
    );
    let initial: Vec<String> = std::iter::from_fn(|| seen.try_recv().ok()).collect();
    assert_eq!(initial, ["relist", "a", ""], "the first list");
    until_watching(&kube, 1).await;
    api.create(&PostParams::default(), &widget("b", 80))
        .await
        .unwrap();
    let next = timeout(STEP, seen.recv()).await.unwrap().unwrap();
    assert_eq!(next, "b", "resumed from its version, without a relist");
    runtime_watcher.abort();
}

#[tokio::test]
async fn silenced_watches_stay_open_and_say_nothing() {
    let (kube, client) = setup();
    let api = widgets(&client);
    let rv = kube.resource_version().to_string();
    let wp = WatchParams::default().timeout(1);
    let mut silent = api.watch(&wp, &rv).await.unwrap().boxed();
    kube.faults().silence_watches();
    api.create(&PostParams::default(), &widget("a", 80))
        .await
        .unwrap();
    // neither the event, nor bookmarks, nor the end of the watch reach the client
    let heard = timeout(Duration::from_secs(2), silent.next()).await;
    assert!(heard.is_err(), "{heard:?}");
    let mut fresh = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    assert!(matches!(
        fresh.next().await.unwrap().unwrap(),
        WatchEvent::Added(_)
    ));
}

#[tokio::test]
async fn an_in_process_outage_is_a_connection_failure_and_ends_by_itself() {
    let (kube, client) = setup();
    let api = widgets(&client);
    let rv = kube.resource_version().to_string();
    let mut open = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    kube.faults().outage(Duration::from_secs(1));
    assert!(kube.faults().is_down());
    match api.list(&ListParams::default()).await.unwrap_err() {
        kube::Error::Service(e) => {
            assert!(
                caused_by(e.as_ref(), std::io::ErrorKind::ConnectionRefused),
                "{e}"
            )
        }
        other => panic!("a transport error expected, not {other:?}"),
    }
    assert!(open.next().await.is_none(), "open watches are cut");
    while kube.faults().is_down() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    api.create(&PostParams::default(), &widget("after", 80))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_http_outage_closes_the_port_then_serves_again_on_it() {
    let (kube, _) = setup();
    let server = kube
        .serve_http("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = kube::Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap();
    let api: Api<Widget> = Api::namespaced(client, "default");
    let rv = kube.resource_version().to_string();
    let mut open = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    kube.faults().outage(Duration::from_millis(500));
    let ended = timeout(STEP, open.next())
        .await
        .expect("the open watch ends");
    assert!(
        !matches!(ended, Some(Ok(WatchEvent::Added(_)))),
        "{ended:?}"
    );
    let refused = tokio::net::TcpStream::connect(server.local_addr()).await;
    let err = refused.expect_err("nothing listens during the outage");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    // the outage ends by itself and the same address serves again
    let mut served = false;
    for _ in 0..100 {
        if api
            .create(&PostParams::default(), &widget("back", 80))
            .await
            .is_ok()
        {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served, "served again after the outage");
    server.shutdown().await;
}

#[tokio::test]
async fn http_watches_are_cut_at_the_connection_and_resume() {
    let (kube, _) = setup();
    let server = kube
        .serve_http("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = kube::Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap();
    let api: Api<Widget> = Api::namespaced(client, "default");
    let rv = kube.resource_version().to_string();
    let mut open = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    while kube.watch_count() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    kube.faults().drop_watches();
    let ended = timeout(STEP, open.next())
        .await
        .expect("the cut watch ends");
    assert!(
        !matches!(ended, Some(Ok(WatchEvent::Error(_)))),
        "no 410 or other status: {ended:?}"
    );
    api.create(&PostParams::default(), &widget("w", 80))
        .await
        .unwrap();
    let mut again = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    assert!(matches!(
        timeout(STEP, again.next()).await.unwrap().unwrap().unwrap(),
        WatchEvent::Added(_)
    ));
    server.shutdown().await;
}

#[tokio::test]
async fn authentication_comes_before_the_answers_of_the_pipeline() {
    let kube = memkube_with(isthmus_memkube::Config {
        anonymous_is_admin: false,
        ..isthmus_memkube::Config::default()
    });
    let server = kube
        .serve_http("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let anonymous =
        kube::Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap();
    kube.faults()
        .fail_next(Verbs::ALL, 10, ServerError::EtcdTimeout);
    let api: Api<Widget> = Api::namespaced(anonymous, "default");
    assert_eq!(
        code(api.list(&ListParams::default()).await.unwrap_err()),
        401
    );
    let huge = widget("huge", 80);
    let mut huge = serde_json::to_value(&huge).unwrap();
    huge["spec"]["tags"] = serde_json::json!({"t": "x".repeat(4 * 1024 * 1024)});
    let huge: Widget = serde_json::from_value(huge).unwrap();
    assert_eq!(
        code(api.create(&PostParams::default(), &huge).await.unwrap_err()),
        401
    );
    let admin = widgets(&kube.client());
    assert_eq!(
        code(admin.list(&ListParams::default()).await.unwrap_err()),
        500
    );
    server.shutdown().await;
}
