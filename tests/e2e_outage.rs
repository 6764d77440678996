//! The control plane fails, the data plane does not: with a TCP session sending a line every
//! 100 ms between pods of two clusters, both clusters' APIs are taken away for 10 s (memkube's
//! outage; a SIGKILL of the kube-apiserver under `KUBEBUILDER_ASSETS`) and brought back.
//!
//! Checked: the session never misses an exchange (its echo deadline is 1 s); `MapEndpointIP`
//! calls made during the outage end with `UNAVAILABLE` (never a hang, never a wrong answer);
//! once the APIs are back the network-manager answers again without having been restarted;
//! every mapping acknowledged before the outage keeps its address, and no address is handed out
//! twice. Also: a watch whose connection went silent (a conntrack flush, a NAT timeout) is
//! noticed and restarted, so a change made then is still acted upon.

use crate::e2e_common;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use e2e_common::*;
use isthmus::grpc::pb::MapRequest;
use isthmus::lab::plan::Shape;
use isthmus::lab::runner::Lab;
use tonic::Code;

const ECHO: u16 = 8082;
const OUTAGE: Duration = Duration::from_secs(10);

/// One `MapEndpointIP` on cluster `caller` for `peer`, bounded by a client deadline.
async fn map(lab: &Lab, caller: usize, peer: usize, ip: Ipv4Addr) -> Result<Ipv4Addr, Code> {
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("http://{}", lab.clusters[caller].grpc))
            .expect("a URL")
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(20));
    let Ok(channel) = endpoint.connect().await else {
        return Err(Code::Unavailable);
    };
    let request = MapRequest {
        cluster_id: lab.clusters[peer].site.id.to_string(),
        ip: ip.to_string(),
    };
    let mut client = lab.clusters[caller].ipam_token().client(channel);
    match client.map_endpoint_ip(request).await {
        Ok(reply) => Ok(reply.into_inner().ip.parse().expect("an IPv4 answer")),
        Err(status) => Err(status.code()),
    }
}

fn endpoint(block: u8, k: u8) -> Ipv4Addr {
    Ipv4Addr::new(100, 64, block, k + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_data_plane_carries_on_through_an_api_outage_and_the_ipam_serves_again() {
    let lab = lab_up(2, Shape::Mesh).await;
    if let Some(real) = lab
        .clusters
        .iter()
        .find(|c| matches!(c.api.backend(), isthmus_kubetarget::Backend::Kubeconfig(_)))
    {
        eprintln!(
            "e2e_outage: NOT RUN: cluster {}'s API is a real server named by a kubeconfig, which \
             cannot be taken down from here (use KUBEBUILDER_ASSETS or memkube)",
            real.site.id
        );
        lab.shutdown().await;
        return;
    }
    let (server, session) = echo_a_to_b(
        &lab,
        ECHO,
        Duration::from_millis(100),
        Duration::from_secs(1),
    )
    .await;

    let mut acknowledged = Vec::new();
    for k in 0..10 {
        let ip = endpoint(0, k);
        acknowledged.push((ip, map(&lab, 1, 0, ip).await.expect("mapped before")));
    }

    // Both APIs go away for 10 s; MapEndpointIP is called while they are gone.
    let outages = lab.clusters.iter().map(|c| c.api.outage(OUTAGE));
    let during = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut codes = Vec::new();
        for k in 0..3 {
            codes.push(map(&lab, 1, 0, endpoint(1, k)).await);
        }
        codes
    };
    let (results, codes) = tokio::join!(futures::future::join_all(outages), during);
    for r in results {
        r.expect("the API went away and came back");
    }
    let back = Instant::now();
    for code in &codes {
        assert_eq!(
            *code,
            Err(Code::Unavailable),
            "MapEndpointIP during the outage: {codes:?}"
        );
    }

    // The same network-manager answers again.
    let mut again = None;
    while again.is_none() && back.elapsed() < Duration::from_secs(60) {
        again = map(&lab, 1, 0, endpoint(2, 0)).await.ok();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again = again.expect("the IPAM answers again after the API returns");
    eprintln!(
        "e2e_outage: the IPAM answered again {} ms after the API returned",
        back.elapsed().as_millis()
    );
    for cluster in &lab.clusters {
        assert!(
            cluster.failing().is_empty(),
            "no pod of {} restarted: {:?}",
            cluster.site.id,
            cluster.failing()
        );
    }

    // Nothing acknowledged is lost, nothing handed out twice.
    let mut seen = BTreeSet::from([again]);
    for (ip, address) in &acknowledged {
        assert_eq!(
            map(&lab, 1, 0, *ip).await,
            Ok(*address),
            "{ip} kept {address}"
        );
        assert!(seen.insert(*address), "{address} handed out twice");
    }
    for k in 0..3 {
        let address = map(&lab, 1, 0, endpoint(1, k)).await.expect("mapped after");
        assert!(seen.insert(address), "{address} handed out twice");
    }

    let status = session.stop();
    assert!(
        status.broken.is_none(),
        "the TCP session crossed the outage without missing an exchange: {status:?}"
    );
    assert!(status.exchanges > 100, "{status:?}");
    eprintln!(
        "e2e_outage: {} exchanges, none missed, slowest {} ms",
        status.exchanges,
        status.max_round_trip.as_millis()
    );
    drop(server);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_silently_dead_watch_is_restarted_and_the_change_acted_upon() {
    let lab = lab_up(2, Shape::Mesh).await;
    let Some(kube) = lab.clusters[0].api.memkube_instance() else {
        eprintln!("e2e_outage: NOT RUN on a real API server: silencing watches needs memkube");
        lab.shutdown().await;
        return;
    };
    // Every open watch of cluster a goes silent, as after a conntrack flush: no error, no end.
    kube.faults().silence_watches();
    // a's side of the peering is deleted: its network-manager must notice through a new watch.
    let fcs: kube::Api<isthmus_api::ForeignCluster> = kube::Api::all(lab.clusters[0].client());
    fcs.delete("b", &Default::default()).await.unwrap();
    let took = eventually(
        "a's network-manager cleans up after the silent watch",
        Duration::from_secs(90),
        || async { fcs.get_opt("b").await.unwrap().is_none() },
    )
    .await;
    eprintln!(
        "e2e_outage: the deletion was acted upon {} s after it was made",
        took.as_secs()
    );
    lab.shutdown().await;
}
