//! Transient API failures are survived: 5xx answers and refused connections are retried while
//! requests wait; a write whose answer was lost is recognised as our own; during an outage the
//! service is `Degraded` (new changes refused, waiting ones answered `Unavailable` after the
//! bound) and serves again when the API returns, without a restart; nothing acknowledged is
//! lost.

use std::time::Duration;

use isthmus_ipam_store::{CompactionPolicy, DurableIpam, Options, ServiceError, StoreHealth};

use crate::faulty_api::{Fault, FaultyApi};
use crate::kube_store::{config, ep, id, open, peer, recovers_exactly, store};

fn quick() -> Options {
    Options {
        wait: Duration::from_millis(300),
        retry_min: Duration::from_millis(5),
        retry_max: Duration::from_millis(40),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_while_the_request_waits() {
    let api = FaultyApi::new();
    let ipam = open(&api).await.unwrap();
    peer(&ipam, "b").await;
    api.fail_next_writes(&[Fault::Unavailable, Fault::Refused, Fault::Unavailable]);
    let reply = ipam.map_endpoint_ip(&id("b"), ep(1)).await.unwrap();
    assert!(ipam.is_serving());
    ipam.close().await;
    let again = open(&api).await.unwrap();
    assert_eq!(again.map_endpoint_ip(&id("b"), ep(1)).await.unwrap(), reply);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_answer_was_lost_is_recognised_as_ours() {
    let api = FaultyApi::new();
    let policy = CompactionPolicy {
        segments: 2,
        dirty_blocks: 64,
        ..CompactionPolicy::default()
    };
    let ipam = DurableIpam::open(&config(), store(&api, policy))
        .await
        .unwrap();
    peer(&ipam, "b").await;
    // Segments, blocks and the root each lose an answer at some point.
    for i in 0..12 {
        api.fail_next_writes(&[Fault::LoseAnswer]);
        ipam.map_endpoint_ip(&id("b"), ep(i)).await.unwrap();
    }
    assert!(ipam.is_healthy(), "{:?}", ipam.health());
    recovers_exactly(&api, ipam).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_degrades_the_service_which_serves_again_afterwards() {
    let api = FaultyApi::new();
    let ipam = DurableIpam::open_with(&config(), store(&api, CompactionPolicy::default()), quick())
        .await
        .unwrap();
    peer(&ipam, "b").await;
    let mut health = ipam.watch_health();
    api.down();
    // The change is applied and queued; its write keeps failing; the request gives up.
    let err = ipam.map_endpoint_ip(&id("b"), ep(1)).await.unwrap_err();
    assert!(matches!(err, ServiceError::Unavailable(_)), "{err}");
    health
        .wait_for(|h| matches!(h, StoreHealth::Degraded(_)))
        .await
        .unwrap();
    assert!(ipam.is_healthy(), "alive: a restart would not help");
    // New changes are refused at once.
    let err = ipam.map_endpoint_ip(&id("b"), ep(2)).await.unwrap_err();
    assert!(
        err.to_string().contains("cannot be written right now"),
        "{err}"
    );
    api.up();
    health
        .wait_for(|h| *h == StoreHealth::Serving)
        .await
        .unwrap();
    // The change that waited was made durable; the service takes new ones.
    let first = ipam.map_endpoint_ip(&id("b"), ep(1)).await.unwrap();
    ipam.map_endpoint_ip(&id("b"), ep(2)).await.unwrap();
    let before = ipam.read(|i| i.snapshot()).unwrap();
    ipam.close().await;
    let again = open(&api).await.unwrap();
    assert_eq!(again.read(|i| i.snapshot()).unwrap(), before);
    assert_eq!(again.map_endpoint_ip(&id("b"), ep(1)).await.unwrap(), first);
}
