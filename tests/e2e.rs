//! End-to-end tests through the lab (root; real namespaces, real packets): every component of
//! every cluster runs in this process against its cluster's in-memory API, as `isthmus lab`
//! runs them. Each test builds its own lab; it is removed when the test ends, panics included.

use crate::e2e_common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use e2e_common::*;
use isthmus::lab::cluster::Kind;
use isthmus::lab::plan::Shape;
use isthmus::lab::runner::LabOptions;
use isthmus_api::ConnectionState;
use isthmus_lab::probe::{WhoamiServer, whoami};

const WHOAMI: u16 = 8080;
const ECHO: u16 = 8081;

/// Every pod of `to` sees each pod of `from` at the address `to` was handed for it: the peer's
/// view of the client's Pod CIDR, never the client's real (identical) address.
async fn sources_are_views(lab: &isthmus::lab::runner::Lab, from: usize, to: usize) {
    let servers: Vec<WhoamiServer> = lab
        .pods(to)
        .iter()
        .map(|pod| WhoamiServer::start(pod, WHOAMI).unwrap())
        .collect();
    for server_pod in lab.pods(to).to_vec() {
        let dst = reflection(lab, from, to, &server_pod.name).address();
        for client in lab.pods(from).to_vec() {
            let expected = reflection(lab, to, from, &client.name).address();
            assert_ne!(expected, client.ip, "identical Pod CIDRs must be remapped");
            let c = client.clone();
            let seen = tokio::task::spawn_blocking(move || {
                whoami(&c, dst, WHOAMI, Duration::from_secs(3)).unwrap()
            })
            .await
            .unwrap();
            assert_eq!(
                seen,
                Some(IpAddr::V4(expected)),
                "{}/{} → {dst}",
                lab.clusters[from].site.id,
                client.name
            );
        }
    }
    drop(servers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_clusters_with_identical_pod_cidrs_talk_through_remapped_addresses() {
    let lab = lab_up(2, Shape::Mesh).await;
    assert_eq!(
        lab.pods(0)[0].ip,
        lab.pods(1)[0].ip,
        "same Pod CIDR, same pod address"
    );
    sources_are_views(&lab, 0, 1).await;
    sources_are_views(&lab, 1, 0).await;
    let a_b = tep(&lab, 0, 1).await.unwrap();
    assert_ne!(
        a_b.spec.remote_nat_pod_cidr, a_b.spec.remote_pod_cidr,
        "a remapped b"
    );
    let status = a_b.status.unwrap();
    assert!(status.connection.latency_micros.is_some());
    assert!(status.connection.rx_bytes > 0 && status.connection.tx_bytes > 0);
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_clusters_in_a_full_mesh_with_identical_pod_cidrs() {
    let lab = lab_up(3, Shape::Mesh).await;
    assert_eq!(lab.peerings.len(), 3);
    let matrix = lab.matrix().await;
    assert_eq!(
        matrix.probes.len(),
        3 * 2 * 2 * 2,
        "{}",
        matrix.render_list()
    );
    assert!(matrix.probes.iter().all(|p| p.via.is_none()));
    for (from, to) in [(0, 1), (1, 2), (2, 0)] {
        sources_are_views(&lab, from, to).await;
    }
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hub_path_opens_with_map_and_closes_with_unmap() {
    let mut lab = lab_up(3, Shape::Hub).await;
    let pod = lab.pods(2)[0].clone();
    let r = reflection(&lab, 0, 2, &pod.name).clone();
    assert_eq!(r.via, Some(1));
    let address = r.address();
    // The address is in a's view of b's ExternalCIDR.
    let a_b = tep(&lab, 0, 1).await.unwrap();
    let view: ipnet::Ipv4Net = a_b
        .spec
        .remote_nat_external_cidr
        .to_string()
        .parse()
        .unwrap();
    assert!(view.contains(&address), "{address} not in {view}");
    // c sees the hub's transit address (in c's view of b's ExternalCIDR) as the source.
    let c_b = tep(&lab, 2, 1).await.unwrap();
    let c_view: ipnet::Ipv4Net = c_b
        .spec
        .remote_nat_external_cidr
        .to_string()
        .parse()
        .unwrap();
    let transit = Ipv4Addr::from(u32::from(c_view.network()) + 1);
    let server = WhoamiServer::start(&pod, WHOAMI).unwrap();
    let client = lab.pods(0)[0].clone();
    let seen = tokio::task::spawn_blocking(move || {
        whoami(&client, address, WHOAMI, Duration::from_secs(3)).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(seen, Some(IpAddr::V4(transit)));
    drop(server);

    // b's real ExternalCIDR address behind `address`
    let b_ext: ipnet::Ipv4Net = a_b.spec.remote_external_cidr.to_string().parse().unwrap();
    let real = Ipv4Addr::from(
        u32::from(b_ext.network()) + (u32::from(address) - u32::from(view.network())),
    );
    assert!(
        ipam_mentions(&lab, 1, real).await,
        "b's IPAM records {real}"
    );

    lab.reflector.unreflect(&r).await.unwrap();
    lab.reflections.retain(|x| x != &r);
    eventually("the hub path closes", Duration::from_secs(10), || async {
        !ping(&lab, 0, 0, address).await
    })
    .await;
    let gw_b = gateway_ns(&lab, 1);
    assert!(
        !our_table(&gw_b).contains(&address.to_string()),
        "DNAT entry removed"
    );
    eventually(
        "b's IPAM frees the address",
        Duration::from_secs(10),
        || async { !ipam_mentions(&lab, 1, real).await },
    )
    .await;
    // The other direction and the direct paths still work.
    let m = lab.matrix().await;
    assert!(m.all_reachable(), "{}", m.render_list());
    lab.shutdown().await;
}

/// Whether the IPAM state stored by cluster `i` (root, blocks, journal replayed) mentions `addr`.
async fn ipam_mentions(lab: &isthmus::lab::runner::Lab, i: usize, addr: Ipv4Addr) -> bool {
    let api: kube::Api<isthmus_api::IpamStorage> =
        kube::Api::namespaced(lab.clusters[i].client(), isthmus::lab::cluster::NAMESPACE);
    let list = api.list(&Default::default()).await.unwrap();
    let state = isthmus_ipam_store::stored_snapshot("ipam", &list.items).unwrap();
    let text = serde_json::to_string(&state).unwrap();
    text.contains(&format!("\"{addr}\""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unpeering_leaves_nothing_behind() {
    let lab = lab_up(2, Shape::Mesh).await;
    let ranges: Vec<String> = [
        tep(&lab, 0, 1).await.unwrap(),
        tep(&lab, 1, 0).await.unwrap(),
    ]
    .iter()
    .flat_map(|t| {
        [
            t.spec.remote_nat_pod_cidr.to_string(),
            t.spec.remote_nat_external_cidr.to_string(),
        ]
    })
    .collect();
    lab.unpeer(0, 1).await.unwrap();
    for i in 0..2 {
        eventually(
            "every isthmus object is gone",
            Duration::from_secs(30),
            || async { isthmus_objects(&lab, i).await.is_empty() },
        )
        .await;
    }
    for i in 0..2 {
        let cluster = &lab.topology.clusters[i];
        let gw = gateway_ns(&lab, i);
        let iface = cluster.wg_interface.clone();
        eventually(
            "the gateway removes its interface and table",
            Duration::from_secs(15),
            || {
                let (gw, iface) = (gw.clone(), iface.clone());
                async move { !has_link(&gw, &iface) && our_table(&gw).is_empty() }
            },
        )
        .await;
        for node in &cluster.nodes {
            let ns = node.namespace.clone();
            eventually("no route of ours remains", Duration::from_secs(15), || {
                let ns = ns.clone();
                async move {
                    our_routes(&ns).trim().is_empty()
                        && ip(&ns, "route show proto 154").trim().is_empty()
                }
            })
            .await;
            let ns = node.namespace.clone();
            eventually(
                "the route agent removes its NAT exemption table",
                Duration::from_secs(15),
                || {
                    let ns = ns.clone();
                    async move { node_table(&ns).is_empty() }
                },
            )
            .await;
            let all = ip(&node.namespace, "route show");
            for range in &ranges {
                assert!(
                    !all.contains(range.as_str()),
                    "{range} still routed on {}: {all}",
                    node.name
                );
            }
        }
    }
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn components_restart_while_traffic_flows() {
    let mut lab = lab_up(2, Shape::Mesh).await;
    let (server, session) = echo_a_to_b(
        &lab,
        ECHO,
        Duration::from_millis(50),
        Duration::from_secs(20),
    )
    .await;

    // Endpoints reflected through b's IPAM before the restarts.
    let mut before = Vec::new();
    for k in 0..20u8 {
        let endpoint = Ipv4Addr::new(100, 64, 0, k + 1);
        before.push(map_external(&lab, 1, 0, endpoint).await);
    }

    // network-manager: a clean restart on both sides, then a crash of b's.
    lab.clusters[0].restart(Kind::NetworkManager).await;
    lab.clusters[1].restart(Kind::NetworkManager).await;
    lab.clusters[1].crash_network_manager();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!session.is_broken(), "{:?}", session.status());
    // Stable answers for what was mapped, new addresses for new endpoints.
    for k in 0..20u8 {
        let endpoint = Ipv4Addr::new(100, 64, 0, k + 1);
        assert_eq!(map_external(&lab, 1, 0, endpoint).await, before[k as usize]);
    }
    for k in 0..20u8 {
        let endpoint = Ipv4Addr::new(100, 64, 1, k + 1);
        let fresh = map_external(&lab, 1, 0, endpoint).await;
        assert!(!before.contains(&fresh), "{fresh} handed out twice");
        before.push(fresh);
    }
    let status = session.stop();
    assert!(
        status.broken.is_none() && status.exchanges > 20,
        "{status:?}"
    );
    drop(server);

    // gateway and route agents: connectivity returns.
    for kind in [Kind::Gateway, Kind::RouteAgents] {
        for i in 0..2 {
            lab.clusters[i].restart(kind).await;
        }
        eventually(
            &format!("traffic after restarting {kind:?}"),
            Duration::from_secs(30),
            || async { lab.matrix().await.all_reachable() },
        )
        .await;
    }
    lab.wait_connected(&[(0, 1)], Duration::from_secs(30))
        .await
        .unwrap();
    lab.shutdown().await;
}

/// `MapEndpointIP(peer, endpoint)` on cluster `caller` over gRPC: the answer.
async fn map_external(
    lab: &isthmus::lab::runner::Lab,
    caller: usize,
    peer: usize,
    endpoint: Ipv4Addr,
) -> Ipv4Addr {
    let token = lab.clusters[caller].ipam_token();
    let url = format!("http://{}", lab.clusters[caller].grpc);
    let connect = || async {
        let channel = tonic::transport::Channel::from_shared(url.clone())
            .unwrap()
            .connect()
            .await?;
        Ok::<_, tonic::transport::Error>(token.client(channel))
    };
    let mut client = connect().await.unwrap();
    let mut last = None;
    for _ in 0..100 {
        let request = isthmus::grpc::pb::MapRequest {
            cluster_id: lab.clusters[peer].site.id.to_string(),
            ip: endpoint.to_string(),
        };
        match client.map_endpoint_ip(request).await {
            Ok(reply) => return reply.into_inner().ip.parse().unwrap(),
            // the network-manager may be restarting
            Err(status) => last = Some(status),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(c) = connect().await {
            client = c;
        }
    }
    panic!("MapEndpointIP failed: {last:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_peer_gateway_is_reported_and_recovers() {
    let mut lab = lab_up(2, Shape::Mesh).await;
    lab.clusters[1].stop(Kind::Gateway).await;
    let took = eventually(
        "a's tunnel to b leaves connected",
        Duration::from_secs(30),
        || async { lab.tunnel_state(0, 1).await != Some(ConnectionState::Connected) },
    )
    .await;
    eprintln!("peer gateway stopped → TunnelEndpoint not connected after {took:?}");
    let tep = tep(&lab, 0, 1).await.unwrap();
    assert!(
        !tep.status.unwrap().connection.message.is_empty(),
        "the state says why"
    );
    lab.clusters[1].resume(Kind::Gateway);
    let took = eventually("connected again", Duration::from_secs(60), || async {
        lab.tunnel_state(0, 1).await == Some(ConnectionState::Connected)
    })
    .await;
    eprintln!("peer gateway back → connected after {took:?}");
    eventually("traffic flows again", Duration::from_secs(30), || async {
        lab.matrix().await.all_reachable()
    })
    .await;
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exhausted_pools_refuse_the_peering_with_a_reason_and_no_tunnel() {
    isthmus_lab::require_root();
    // a's pools hold only its own Pod CIDR and ExternalCIDR: b's identical ranges cannot be remapped.
    let options = LabOptions {
        clusters: 2,
        shape: Shape::Mesh,
        pools: vec![(0, vec!["10.0.0.0/15".parse().unwrap()])],
        ..e2e_common::options()
    };
    let lab = isthmus::lab::runner::Lab::start(options).await.unwrap();
    // `isthmus peer` writes both sides, then gives up waiting and says why
    let err = lab
        .peer_within(0, 1, Duration::from_secs(10))
        .await
        .expect_err("no tunnel can come up");
    let why = format!("{err:#}");
    assert!(why.contains("no free"), "the reason is named: {why}");
    let b_ns = isthmus_api::peer_namespace(isthmus::lab::cluster::NAMESPACE, &"b".parse().unwrap());
    let nc_api: kube::Api<isthmus_api::NetworkConfig> =
        kube::Api::namespaced(lab.clusters[0].client(), &b_ns);
    eventually(
        "a refuses b's NetworkConfig",
        Duration::from_secs(30),
        || async {
            let Ok(Some(nc)) = nc_api.get_opt("b").await else {
                return false;
            };
            nc.status.is_some_and(|s| {
                !s.processed
                    && s.conditions.iter().any(|c| {
                        c.type_ == "Processed"
                            && c.status == "False"
                            && c.reason == "PoolsExhausted"
                            && c.message.contains("no free")
                    })
            })
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        tep(&lab, 0, 1).await.is_none() && tep(&lab, 1, 0).await.is_none(),
        "no tunnel"
    );
    for i in 0..2 {
        let gw = gateway_ns(&lab, i);
        assert!(
            !has_link(&gw, &lab.topology.clusters[i].wg_interface),
            "no WireGuard interface"
        );
    }
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_peer_api_is_retried_and_an_invalid_network_config_refused() {
    isthmus_lab::require_root();
    let options = LabOptions {
        clusters: 2,
        shape: Shape::Mesh,
        ..e2e_common::options()
    };
    let mut lab = isthmus::lab::runner::Lab::start(options).await.unwrap();
    // b's API cannot be reached from a: a's ForeignCluster says so and keeps retrying.
    lab.clusters[1]
        .set_api_reachable_from_peers(false)
        .await
        .unwrap();
    // Both sides are written; the wait for the tunnels gives up at once (a cannot reach b).
    assert!(
        lab.peer_within(0, 1, Duration::from_secs(1)).await.is_err(),
        "no tunnel while b's API cannot be reached"
    );
    let fcs: kube::Api<isthmus_api::ForeignCluster> = kube::Api::all(lab.clusters[0].client());
    eventually(
        "a reports b unreachable",
        Duration::from_secs(30),
        || async {
            let Ok(fc) = fcs.get("b").await else {
                return false;
            };
            fc.status.is_some_and(|s| {
                s.conditions.iter().any(|c| {
                    c.type_ == "PeerAPIReachable"
                        && c.status == "False"
                        && c.reason == "PeerUnreachable"
                        && c.message.contains("peer b")
                })
            })
        },
    )
    .await;
    assert!(
        tep(&lab, 0, 1).await.is_none(),
        "no tunnel without the peer"
    );
    // A NetworkConfig with an invalid CIDR (host bits set), written into the namespace of a
    // would-be peer z, gets a condition and no tunnel.
    // (made as `isthmus peer` makes it, so the network-manager may answer there)
    let z_ns = isthmus_api::peer_namespace(isthmus::lab::cluster::NAMESPACE, &"z".parse().unwrap());
    make_peer_space(&lab.clusters[0].client(), "a", "z").await;
    let raw = serde_json::json!({
        "apiVersion": "net.isthmus.io/v1alpha1", "kind": "NetworkConfig",
        "metadata": {"name": "z", "namespace": z_ns},
        "spec": {
            "clusterID": "a", "originClusterID": "z",
            "podCIDR": "10.0.0.1/16", "externalCIDR": "10.1.0.0/16",
            "endpoint": "192.168.100.99:51820", "backendType": "wireguard",
            "backendConfig": {"publicKey": "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="},
        }
    });
    let ar = kube::api::ApiResource::erase::<isthmus_api::NetworkConfig>(&());
    let dynamic: kube::Api<kube::api::DynamicObject> =
        kube::Api::namespaced_with(lab.clusters[0].client(), &z_ns, &ar);
    dynamic
        .create(&Default::default(), &serde_json::from_value(raw).unwrap())
        .await
        .unwrap();
    eventually(
        "the invalid NetworkConfig is refused",
        Duration::from_secs(30),
        || async {
            let Ok(obj) = dynamic.get("z").await else {
                return false;
            };
            let Some(status) = obj.data.get("status") else {
                return false;
            };
            status["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| {
                    c["type"] == "Processed"
                        && c["status"] == "False"
                        && c["reason"] == "InvalidSpec"
                        && c["message"]
                            .as_str()
                            .is_some_and(|m| m.contains("host bits"))
                })
        },
    )
    .await;
    // The peer's API answers again: the retries get through and the tunnel comes up.
    lab.clusters[1]
        .set_api_reachable_from_peers(true)
        .await
        .unwrap();

    lab.wait_connected(&[(0, 1)], Duration::from_secs(60))
        .await
        .unwrap();
    let teps: kube::Api<isthmus_api::TunnelEndpoint> =
        kube::Api::namespaced(lab.clusters[0].client(), isthmus::lab::cluster::NAMESPACE);
    let names: Vec<String> = teps
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|t| t.metadata.name)
        .collect();
    assert_eq!(names, ["b"], "no tunnel for the invalid NetworkConfig");
    lab.shutdown().await;
}

/// Makes peer `peer`'s namespace, identity and our network-manager's Role there, in cluster
/// `us`, with the objects `isthmus peer` writes.
async fn make_peer_space(client: &kube::Client, us: &str, peer: &str) {
    use isthmus::peer::access::PeerSpace;
    use k8s_openapi::api::core::v1::Namespace;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    use kube::api::{Patch, PatchParams};
    let ns = isthmus::lab::cluster::NAMESPACE;
    let space = PeerSpace::new(
        isthmus::peer::side::Role::Local,
        &us.parse().unwrap(),
        ns,
        "isthmus-network-manager",
        &peer.parse().unwrap(),
        &format!("isthmus-peer-{peer}"),
    );
    let pp = PatchParams::apply("e2e").force();
    kube::Api::<Namespace>::all(client.clone())
        .patch(&space.namespace, &pp, &Patch::Apply(&space.namespace()))
        .await
        .unwrap();
    for (role, binding) in space.roles() {
        let name = role.metadata.name.clone().unwrap();
        kube::Api::<Role>::namespaced(client.clone(), &space.namespace)
            .patch(&name, &pp, &Patch::Apply(&role))
            .await
            .unwrap();
        kube::Api::<RoleBinding>::namespaced(client.clone(), &space.namespace)
            .patch(&name, &pp, &Patch::Apply(&binding))
            .await
            .unwrap();
    }
}
