//! A cluster's isthmus objects for N peers, written into an in-memory API: what
//! `isthmus bench status` measures against and what `tests/status_cli.rs` checks. Deterministic:
//! peer `i` is `p000`, `p001`, …; every tenth peer is `connecting`, the rest `connected`;
//! rx = 1000·(i+1), tx = 2000·(i+1), RTT = 500 + i µs, last handshake i mod 60 s ago; every peer's
//! Pod CIDR and ExternalCIDR are remapped by us (as in the lab, all clusters use the same
//! ranges) and the peer remaps our Pod CIDR but accepts our ExternalCIDR; each NatMapping holds
//! `mappings_per_peer` entries, each matched by an endpoint mapping in the IPAM shards.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use isthmus_api::{
    BackendType, Cidr, ClusterSubnets, EndpointMapping, ForeignCluster, ForeignClusterSpec,
    IpamNetworks, IpamStorage, IpamStorageSpec, NatMapping, NatMappingSpec, NetworkConfig,
    NetworkConfigSpec, TunnelEndpoint, TunnelEndpointSpec,
};
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Namespace of the fixture.
pub const NAMESPACE: &str = "isthmus";
/// Our cluster ID in the fixture.
pub const LOCAL_ID: &str = "hub";
/// IPAM shards of the fixture.
pub const SHARDS: u32 = 16;
const PUBLIC_KEY: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

/// The shape of the fixture.
#[derive(Debug, Clone, Copy)]
pub struct FixtureShape {
    pub peers: usize,
    pub mappings_per_peer: usize,
}

/// What was written, for checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureCounts {
    pub peers: usize,
    pub connected: usize,
    pub endpoint_mappings: usize,
}

fn cidr(s: &str) -> Cidr {
    s.parse().expect("fixture CIDR")
}

/// Peer `i`'s ID.
pub fn peer_id(i: usize) -> String {
    format!("p{i:03}")
}

/// Whether peer `i` is connected in the fixture.
pub fn connected(i: usize) -> bool {
    i % 10 != 9
}

/// A /24 of 10.100.0.0/14 for our view of peer ranges: index `k` → 10.(100 + k/256).(k%256).0/24.
fn view(k: usize) -> Cidr {
    cidr(&format!("10.{}.{}.0/24", 100 + k / 256, k % 256))
}

fn tunnel_endpoint(i: usize) -> TunnelEndpointSpec {
    TunnelEndpointSpec {
        cluster_id: peer_id(i).parse().expect("id"),
        local_pod_cidr: cidr("10.0.0.0/16"),
        local_nat_pod_cidr: cidr("10.4.0.0/16"),
        local_external_cidr: cidr("10.2.0.0/16"),
        local_nat_external_cidr: cidr("10.2.0.0/16"),
        remote_pod_cidr: cidr("10.0.0.0/24"),
        remote_nat_pod_cidr: view(2 * i),
        remote_external_cidr: cidr("10.2.0.0/24"),
        remote_nat_external_cidr: view(2 * i + 1),
        endpoint: format!("192.168.{}.{}:51820", 100 + i / 250, 1 + i % 250),
        backend_type: BackendType::WireGuard,
        backend_config: BTreeMap::from([("publicKey".to_owned(), PUBLIC_KEY.to_owned())]),
    }
}

fn tunnel_status(i: usize, now: Timestamp) -> Value {
    let up = connected(i);
    json!({
        "phase": "Ready",
        "connection": {
            "status": if up { "connected" } else { "connecting" },
            "message": if up { "" } else { "no reply to the last 2 probes" },
            "lastHandshake": Timestamp::from_second(now.as_second() - (i % 60) as i64)
                .expect("time").to_string(),
            "rxBytes": 1000 * (i as u64 + 1),
            "txBytes": 2000 * (i as u64 + 1),
            "latency": if up { Some(format!("{:.2}ms", (500 + i) as f64 / 1000.0)) } else { None },
            "latencyMicros": if up { Some(500 + i as u64) } else { None },
        },
        "interfaceName": "isthmus0",
        "backend": "userspace",
        "gatewayNode": "gw-node",
        "gatewayIP": "172.16.0.10",
        "conditions": [{
            "type": "Connected", "status": if up { "True" } else { "False" },
            "reason": if up { "HandshakeAndProbe" } else { "ProbeFailed" }, "message": "",
            "lastTransitionTime": now.to_string(),
        }],
    })
}

fn network_config(i: usize) -> NetworkConfigSpec {
    let t = tunnel_endpoint(i);
    NetworkConfigSpec {
        cluster_id: LOCAL_ID.parse().expect("id"),
        origin_cluster_id: t.cluster_id,
        pod_cidr: t.remote_pod_cidr,
        external_cidr: t.remote_external_cidr,
        endpoint: t.endpoint,
        backend_type: BackendType::WireGuard,
        backend_config: t.backend_config,
    }
}

fn condition(type_: &str, reason: &str, now: Timestamp) -> Value {
    json!({"type": type_, "status": "True", "reason": reason, "message": "",
           "lastTransitionTime": now.to_string()})
}

/// Endpoint `j` of peer `i`: its real address and the address of our ExternalCIDR it got.
fn endpoint(i: usize, j: usize, per_peer: usize) -> (Ipv4Addr, Ipv4Addr) {
    let k = (i * per_peer + j) as u32;
    let real = Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + k);
    let external = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 2, 0, 2)) + k);
    (real, external)
}

fn ipam_objects(shape: FixtureShape) -> Vec<IpamStorage> {
    let networks = IpamNetworks {
        pod_cidr: cidr("10.0.0.0/16"),
        service_cidr: Some(cidr("10.1.0.0/16")),
        external_cidr: cidr("10.2.0.0/16"),
        pools: vec![
            cidr("10.0.0.0/8"),
            cidr("172.16.0.0/12"),
            cidr("192.168.0.0/16"),
        ],
        reserved: vec![cidr("172.16.0.0/24")],
    };
    let subnets = (0..shape.peers).map(|i| {
        let t = tunnel_endpoint(i);
        let s = ClusterSubnets {
            remote_pod_cidr: t.remote_pod_cidr,
            remote_nat_pod_cidr: t.remote_nat_pod_cidr,
            remote_external_cidr: t.remote_external_cidr,
            remote_nat_external_cidr: t.remote_nat_external_cidr,
            local_nat_pod_cidr: Some(t.local_nat_pod_cidr),
            local_nat_external_cidr: None,
            peer_view_known: true,
        };
        (peer_id(i), s)
    });
    let root = IpamStorageSpec {
        shard_count: Some(SHARDS),
        networks: Some(networks),
        cluster_subnets: subnets.collect(),
        ..Default::default()
    };
    let mut shards: Vec<IpamStorageSpec> = (0..SHARDS)
        .map(|s| IpamStorageSpec {
            shard: Some(s),
            ..Default::default()
        })
        .collect();
    for i in 0..shape.peers {
        for j in 0..shape.mappings_per_peer {
            let (real, external) = endpoint(i, j, shape.mappings_per_peer);
            let mapping = EndpointMapping {
                ip: external,
                clusters: [peer_id(i).parse().expect("id")].into(),
            };
            let shard = (u32::from(real) % SHARDS) as usize;
            shards[shard].endpoint_mappings.insert(real, mapping);
        }
    }
    let label = |mut o: IpamStorage| {
        o.metadata.labels = Some([("net.isthmus.io/ipam".to_owned(), "ipam".to_owned())].into());
        o
    };
    std::iter::once(label(IpamStorage::new("ipam", root)))
        .chain(
            shards
                .into_iter()
                .enumerate()
                .map(|(s, spec)| label(IpamStorage::new(&format!("ipam-{s}"), spec))),
        )
        .collect()
}

async fn create<K>(api: &Api<K>, obj: &K, status: Option<Value>) -> Result<(), kube::Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + std::fmt::Debug,
{
    let created = api.create(&PostParams::default(), obj).await?;
    if let (Some(status), Some(name)) = (status, created.meta().name.as_deref()) {
        let patch = Patch::Merge(json!({ "status": status }));
        api.patch_status(name, &PatchParams::default(), &patch)
            .await?;
    }
    Ok(())
}

/// Writes the fixture through `client` (which must serve the isthmus CRDs and namespace
/// [`NAMESPACE`]); each peer's namespace is created here.
pub async fn populate(
    client: &kube::Client,
    shape: FixtureShape,
    now: Timestamp,
) -> Result<FixtureCounts, kube::Error> {
    let teps: Api<TunnelEndpoint> = Api::namespaced(client.clone(), NAMESPACE);
    let fcs: Api<ForeignCluster> = Api::all(client.clone());
    let nms: Api<NatMapping> = Api::namespaced(client.clone(), NAMESPACE);
    let ipams: Api<IpamStorage> = Api::namespaced(client.clone(), NAMESPACE);
    for o in ipam_objects(shape) {
        create(&ipams, &o, None).await?;
    }
    for i in 0..shape.peers {
        let id = peer_id(i);
        create(
            &teps,
            &TunnelEndpoint::new(&id, tunnel_endpoint(i)),
            Some(tunnel_status(i, now)),
        )
        .await?;
        let nc_status = json!({"processed": true, "podCIDRNAT": view(2 * i),
            "externalCIDRNAT": view(2 * i + 1),
            "conditions": [condition("Processed", "Remapped", now)]});
        // each peer's NetworkConfig lives in its own namespace, as `isthmus peer` makes it
        let home = isthmus_api::peer_namespace(NAMESPACE, &id.parse().expect("id"));
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        let ns = serde_json::from_value(json!({"metadata": {"name": home}})).expect("namespace");
        match namespaces.create(&Default::default(), &ns).await {
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            other => drop(other?),
        }
        let ncs: Api<NetworkConfig> = Api::namespaced(client.clone(), &home);
        create(
            &ncs,
            &NetworkConfig::new(&id, network_config(i)),
            Some(nc_status),
        )
        .await?;
        let fc = ForeignCluster::new(
            &id,
            ForeignClusterSpec {
                cluster_id: id.parse().expect("id"),
                kubeconfig_secret_ref: None,
                lab_cluster: Some(id.clone()),
            },
        );
        let conditions: Vec<Value> = ["PeerAPIReachable", "PeerProcessed", "LocalProcessed"]
            .iter()
            .map(|t| condition(t, "Processed", now))
            .chain([condition("Ready", "TunnelEndpointReady", now)])
            .collect();
        create(
            &fcs,
            &fc,
            Some(json!({"phase": "Peered", "conditions": conditions})),
        )
        .await?;
        let mappings = (0..shape.mappings_per_peer)
            .map(|j| {
                let (real, external) = endpoint(i, j, shape.mappings_per_peer);
                (external, real)
            })
            .collect();
        let spec = NatMappingSpec {
            cluster_id: id.parse().expect("id"),
            block: None,
            cluster_mappings: mappings,
        };
        create(&nms, &NatMapping::new(&id, spec), None).await?;
    }
    Ok(FixtureCounts {
        peers: shape.peers,
        connected: (0..shape.peers).filter(|i| connected(*i)).count(),
        endpoint_mappings: shape.peers * shape.mappings_per_peer,
    })
}
