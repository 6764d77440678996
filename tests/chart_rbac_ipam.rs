//! The network-manager's IPAM store under the chart's RBAC (the chart installed as
//! `chart_rbac` installs it, into memkube with RBAC or a real API server): the real `KubeStore`
//! on the network-manager's own token, with every request its code makes.

use kube::Api;
use kube::api::ListParams;

use crate::chart_rbac::install;

/// The network-manager's IPAM store under the chart's RBAC, with every request its code makes:
/// the objects listed at start, a journal segment created per commit, compactions (blocks and
/// root written, folded segments deleted by one deletecollection), a peer's block deleted when
/// the peer goes, and the state read back by a restart. (A deletecollection the chart did not
/// grant once stopped the IPAM at its first full bucket of segments, 128 commits in.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_managers_ipam_store_works_under_the_charts_rbac() {
    use isthmus::daemons::network_manager::IPAM_STORAGE_NAME;
    use isthmus_api::IpamStorage;
    use isthmus_ipam::{ClusterId, IpamConfig, default_pools};
    use isthmus_ipam_store::{CompactionPolicy, DurableIpam, KubeStore, LABEL_IPAM, LABEL_ROLE};

    let r = install().await;
    let nm = r.client_of("network-manager").await;
    let config = IpamConfig {
        pod_cidr: "10.0.0.0/16".parse().unwrap(),
        service_cidr: None,
        external_cidr: Some("10.200.0.0/16".parse().unwrap()),
        pools: default_pools(),
        reserved: vec![],
    };
    let store = || {
        KubeStore::new(nm.clone(), &r.namespace, IPAM_STORAGE_NAME).with_compaction(
            CompactionPolicy {
                segments: 2,
                ..CompactionPolicy::default()
            },
        )
    };
    let b: ClusterId = "b".parse().unwrap();
    let ipam = DurableIpam::open(&config, store()).await.expect("open");
    ipam.upsert_peer(
        &b,
        "10.0.0.0/16".parse().unwrap(),
        "10.5.0.0/16".parse().unwrap(),
    )
    .await
    .expect("peer");
    ipam.set_peer_view(&b, None, None).await.expect("view");
    for i in 0..150u32 {
        let endpoint = std::net::Ipv4Addr::from(0xac14_0000 + i);
        ipam.map_endpoint_ip(&b, endpoint)
            .await
            .unwrap_or_else(|e| panic!("mapping {i}: {e}"));
    }
    ipam.remove_peer(&b).await.expect("unpeer");
    ipam.close().await;

    let admin = r.api.admin();
    let segments = ListParams::default().labels(&format!(
        "{LABEL_IPAM}={IPAM_STORAGE_NAME},{LABEL_ROLE}=segment"
    ));
    let left = Api::<IpamStorage>::namespaced(admin, &r.namespace)
        .list(&segments)
        .await
        .unwrap()
        .items
        .len();
    assert!(left < 150, "compacted segments were deleted: {left} left");
    let again = DurableIpam::open(&config, store()).await.expect("reopen");
    assert!(
        again.read(|i| i.snapshot().peers.is_empty()).unwrap(),
        "the unpeer was kept"
    );
    again.close().await;
}
