//! Two lab clusters with identical PodCIDRs and ExternalCIDRs, each with its own memkube API and
//! a gateway controller driving the real datapath in its gateway namespace: both TunnelEndpoints
//! become `connected` with latency and traffic, pod-to-pod TCP works through the remapped views,
//! and a stopped gateway is noticed by the other within 30 s. Needs root (never skips).

use crate::common;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{NS, cluster};
use isthmus_api::{BackendType, ConnectionState, TunnelEndpoint, TunnelEndpointSpec};
use isthmus_dataplane::lab::{self, Lab, Site};
use isthmus_dataplane::tunnel::linux::detect_backend;
use isthmus_dataplane::{GatewayHandle, LinuxGateway, PrivateKey};
use isthmus_gateway::{GatewayConfig, IcmpProber};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::oneshot;

const WHOAMI: u16 = 8080;

/// Our TunnelEndpoint for the other cluster: it sees our pods and ExternalCIDR as `our_view_*`,
/// we see its as `their_view_*`.
fn tep(
    peer: &str,
    peer_site: &Site,
    peer_key: &PrivateKey,
    ours: (&str, &str),
    theirs: (&str, &str),
) -> TunnelEndpoint {
    let c = |s: &str| s.parse().unwrap();
    TunnelEndpoint::new(
        peer,
        TunnelEndpointSpec {
            cluster_id: peer.parse().unwrap(),
            local_pod_cidr: c("10.0.0.0/24"),
            local_nat_pod_cidr: c(ours.0),
            local_external_cidr: c("10.200.0.0/24"),
            local_nat_external_cidr: c(ours.1),
            remote_pod_cidr: c("10.0.0.0/24"),
            remote_nat_pod_cidr: c(theirs.0),
            remote_external_cidr: c("10.200.0.0/24"),
            remote_nat_external_cidr: c(theirs.1),
            endpoint: format!("{}:51820", peer_site.underlay),
            backend_type: BackendType::default(),
            backend_config: BTreeMap::from([(
                "publicKey".to_owned(),
                peer_key.public_key().to_string(),
            )]),
        },
    )
}

fn config(me: &str, site: &Site) -> GatewayConfig {
    let mut c = GatewayConfig::new(
        me.parse().unwrap(),
        NS,
        &site.ifname,
        &format!("{me}-gw"),
        Ipv4Addr::new(10, 0, 0, 1),
        &format!("{me}-gateway-0"),
    );
    c.probe_interval = Duration::from_secs(1);
    c.probe_timeout = Duration::from_millis(500);
    c
}

struct Running {
    _kube: isthmus_memkube::MemKube,
    client: Client,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<isthmus_gateway::Result<()>>,
}

async fn start(
    me: &str,
    site: &Site,
    gateway: LinuxGateway,
    key: PrivateKey,
    teps: TunnelEndpoint,
) -> Running {
    let (kube, client) = cluster().await;
    Api::<TunnelEndpoint>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &teps)
        .await
        .unwrap();
    let (stop, rx) = oneshot::channel();
    let task = tokio::spawn(isthmus_gateway::run(
        config(me, site),
        client.clone(),
        GatewayHandle::new(gateway),
        key,
        Arc::new(IcmpProber::new(site.gw_rt.clone())),
        async move {
            let _ = rx.await;
        },
    ));
    Running {
        _kube: kube,
        client,
        stop,
        task,
    }
}

async fn status(client: &Client, name: &str) -> Option<isthmus_api::TunnelEndpointStatus> {
    Api::<TunnelEndpoint>::namespaced(client.clone(), NS)
        .get(name)
        .await
        .unwrap()
        .status
}

async fn wait_connected(client: &Client, name: &str) -> isthmus_api::TunnelEndpointStatus {
    let start = Instant::now();
    loop {
        let s = status(client, name).await;
        if let Some(s) = s.filter(|s| {
            s.connection.status == ConnectionState::Connected
                && s.connection.latency_micros.is_some()
                && s.connection.rx_bytes > 0
                && s.connection.tx_bytes > 0
        }) {
            return s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "TEP {name} never connected: {:?}",
            status(client, name).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn two_clusters_connect_carry_tcp_and_notice_a_stopped_gateway() {
    lab::require_root();
    let mut lab = Lab::new().unwrap();
    for _ in 0..2 {
        lab.add_site("10.0.0.0/24".parse().unwrap()).unwrap();
    }
    let (a, b) = (&lab.sites[0], &lab.sites[1]);
    lab::start_whoami(&b.pod_rt, WHOAMI).unwrap();
    let gateway = |site: &Site| {
        LinuxGateway::linux_on(site.gw_rt.clone(), detect_backend(&site.gw_rt)).unwrap()
    };
    let (gw_a, gw_b) = (gateway(a), gateway(b));
    let (key_a, key_b) = (PrivateKey::generate(), PrivateKey::generate());
    // a sees b as 10.101/10.201; b sees a as 10.110/10.210.
    let tep_a = tep(
        "b",
        b,
        &key_b,
        ("10.110.0.0/24", "10.210.0.0/24"),
        ("10.101.0.0/24", "10.201.0.0/24"),
    );
    let tep_b = tep(
        "a",
        a,
        &key_a,
        ("10.101.0.0/24", "10.201.0.0/24"),
        ("10.110.0.0/24", "10.210.0.0/24"),
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let pod_a = a.pod_rt.clone();
    rt.block_on(async {
        let ra = start("a", a, gw_a, key_a, tep_a).await;
        let rb = start("b", b, gw_b, key_b, tep_b).await;
        let sa = wait_connected(&ra.client, "b").await;
        let sb = wait_connected(&rb.client, "a").await;
        assert_eq!(sa.gateway_ip, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(sa.connection.latency.is_some() && sb.connection.latency.is_some());
        eprintln!("a→b: {:?}\nb→a: {:?}", sa.connection, sb.connection);

        let seen = tokio::task::spawn_blocking(move || {
            lab::tcp_whoami(&pod_a, Ipv4Addr::new(10, 101, 0, 10), WHOAMI)
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(
            seen.to_string(),
            "10.110.0.10",
            "b's pod sees a's pod in b's view"
        );

        let _ = rb.stop.send(());
        rb.task.await.unwrap().unwrap();
        let stopped = Instant::now();
        loop {
            let s = status(&ra.client, "b").await.unwrap();
            if s.connection.status != ConnectionState::Connected {
                break;
            }
            assert!(
                stopped.elapsed() < Duration::from_secs(30),
                "a still reports b connected"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!("a noticed b's gateway stop after {:?}", stopped.elapsed());
        let _ = ra.stop.send(());
        ra.task.await.unwrap().unwrap();
    });
    drop(rt);
    drop(lab);
}
