//! Compactions written beside the commits: journal segments are created while a compaction
//! writes its blocks and root (commits do not wait for it); when compactions are slower than
//! the commits, the journal stays within its bound (backpressure); and the state a restart
//! recovers after all that is the acknowledged one.

use std::time::Duration;

use futures::StreamExt;
use http::Method;
use isthmus_ipam_store::{CompactionPolicy, DurableIpam};

use crate::faulty_api::FaultyApi;
use crate::kube_store::{config, ep, id, objects, peer, recovers_exactly, store};

/// The path of the root object's writes (a replace names it; a create does not).
const ROOT: &str = "/ipamstorages/ipam";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_go_on_while_a_compaction_is_written() {
    let api = FaultyApi::new();
    api.set_write_latency(Duration::from_millis(1));
    // The root write, the last of a compaction's writes before its deletions, is slow.
    api.slow_writes_to(ROOT, Duration::from_millis(30));
    let policy = CompactionPolicy {
        segments: 4,
        ..CompactionPolicy::default()
    };
    let ipam = DurableIpam::open(&config(), store(&api, policy))
        .await
        .unwrap();
    peer(&ipam, "b").await;
    api.take_writes();
    let calls = (0..300).map(|i| {
        let ipam = ipam.clone();
        async move { ipam.map_endpoint_ip(&id("b"), ep(i)).await }
    });
    let replies: Vec<_> = futures::stream::iter(calls)
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(replies.iter().all(Result::is_ok), "every request answered");
    // In the order the writes were served: creates (segments) between a block's replace and
    // the root's replace that ends the same compaction.
    let mut in_compaction = false;
    let mut beside = 0;
    for (method, path) in api.take_writes() {
        match method {
            Method::PUT if path.contains("/ipamstorages/ipam-b-") => in_compaction = true,
            Method::PUT if path.ends_with(ROOT) => in_compaction = false,
            Method::POST if in_compaction => beside += 1,
            _ => {}
        }
    }
    assert!(
        beside > 0,
        "no segment was created while a compaction was being written"
    );
    recovers_exactly(&api, ipam).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_compaction_holds_the_journal_to_its_bound() {
    let api = FaultyApi::new();
    api.slow_writes_to(ROOT, Duration::from_millis(40));
    let policy = CompactionPolicy {
        segments: 2,
        dirty_blocks: 64,
        journal: 6,
    };
    let ipam = DurableIpam::open(&config(), store(&api, policy))
        .await
        .unwrap();
    peer(&ipam, "b").await;
    let mut worst = 0;
    for i in 0..60 {
        ipam.map_endpoint_ip(&id("b"), ep(i)).await.unwrap();
        let objs = objects(&api).await;
        let checkpoint = objs["ipam"].spec.checkpoint.unwrap();
        let last = objs
            .values()
            .filter_map(|o| o.spec.journal.as_ref())
            .map(|j| j.commit)
            .max()
            .unwrap_or(checkpoint);
        worst = worst.max(last.saturating_sub(checkpoint));
    }
    assert!(worst <= 6, "{worst} segments past the checkpoint");
    assert!(
        worst >= 3,
        "the compactions never lagged ({worst}): nothing tested"
    );
    recovers_exactly(&api, ipam).await;
}
