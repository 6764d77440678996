//! The benchmark's topologies: two sites of the namespace lab, connected plainly or through
//! the gateway in one of its configurations.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::gateway::LinuxGateway;
use crate::lab::{self, Lab};
use crate::model::{GatewaySpec, Mapping, PeerSpec, PrefixNat};
use crate::tunnel::Backend;
use crate::{PrivateKey, Result};

/// What sits between the two pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Routed over the underlay veths, no tunnel.
    PlainVeth,
    /// The tunnel, distinct PodCIDRs, no NAT.
    Tunnel(Backend),
    /// The tunnel, both sites on 10.0.0.0/24, prefix SNAT/DNAT through remapped views.
    PrefixNat,
    /// The tunnel plus a DNAT map with this many entries; the client targets the last one.
    DnatMap(usize),
}

impl Path {
    /// Row label.
    pub fn label(&self) -> String {
        match self {
            Path::PlainVeth => "plain veth (routed, no tunnel)".into(),
            Path::Tunnel(Backend::WireguardGo) => "tunnel, Debian wireguard-go (reference)".into(),
            Path::Tunnel(backend) => format!("tunnel, {backend}"),
            Path::PrefixNat => "tunnel + prefix NAT (both 10.0.0.0/24)".into(),
            Path::DnatMap(n) => format!(
                "tunnel + DNAT map, {n} entr{}",
                if *n == 1 { "y" } else { "ies" }
            ),
        }
    }
}

/// A running topology: drop it to tear everything down.
#[derive(Debug)]
pub struct Topology {
    /// The lab (sites 0 = client, 1 = server).
    pub lab: Lab,
    /// Gateways, when the path has a tunnel.
    pub gateways: Vec<LinuxGateway>,
    /// Where the client sends.
    pub target: Ipv4Addr,
}

const PORT: u16 = 51820;
const MAP_BASE: u32 = 0x0a32_0000; // 10.50.0.0

fn net(text: &str) -> ipnet::IpNet {
    text.parse().expect("static CIDR")
}

fn peer_spec(
    lab: &Lab,
    to: usize,
    key: &PrivateKey,
    remote: &[&str],
    nat: &[(&str, &str)],
) -> PeerSpec {
    PeerSpec {
        name: format!("site-{to}"),
        public_key: key.public_key().to_string(),
        endpoint: Some(SocketAddr::new(IpAddr::V4(lab.sites[to].underlay), PORT)),
        keepalive: None,
        remote: remote.iter().map(|s| net(s)).collect(),
        local_nat: nat
            .iter()
            .map(|(r, v)| PrefixNat {
                real: net(r),
                view: net(v),
            })
            .collect(),
        mappings: Vec::new(),
    }
}

/// Builds the topology for `path`.
pub fn build(path: Path) -> Result<Topology> {
    lab::require_root();
    let nat = path == Path::PrefixNat;
    let mut lab = Lab::new()?;
    lab.add_site("10.0.0.0/24".parse().expect("v4"))?;
    let server_cidr = if nat { "10.0.0.0/24" } else { "10.1.0.0/24" };
    lab.add_site(server_cidr.parse().expect("v4"))?;
    let backend = match path {
        Path::PlainVeth => return plain(lab),
        Path::Tunnel(backend) => backend,
        _ => Backend::Userspace,
    };
    let keys = [PrivateKey::generate(), PrivateKey::generate()];
    let (client_peer, server_peer, target) = peers_for(path, &lab, &keys);
    let mut gateways = Vec::new();
    for (i, peer) in [client_peer, server_peer].into_iter().enumerate() {
        let mut gateway = LinuxGateway::linux_on(lab.sites[i].gw_rt.clone(), backend)?;
        gateway.reconcile(&gateway_spec(&lab, i, &keys[i], peer))?;
        gateways.push(gateway);
    }
    Ok(Topology {
        lab,
        gateways,
        target,
    })
}

/// The two gateways' peers (client's view of the server, server's view of the client) and
/// the address the client sends to.
fn peers_for(path: Path, lab: &Lab, keys: &[PrivateKey; 2]) -> (PeerSpec, PeerSpec, Ipv4Addr) {
    match path {
        Path::PrefixNat => (
            peer_spec(
                lab,
                1,
                &keys[1],
                &["10.101.0.0/24"],
                &[("10.0.0.0/24", "10.110.0.0/24")],
            ),
            peer_spec(
                lab,
                0,
                &keys[0],
                &["10.110.0.0/24"],
                &[("10.0.0.0/24", "10.101.0.0/24")],
            ),
            Ipv4Addr::new(10, 101, 0, 10),
        ),
        Path::DnatMap(entries) => {
            let mut server_peer = peer_spec(lab, 0, &keys[0], &["10.0.0.0/24"], &[]);
            server_peer.mappings = (0..entries as u32)
                .map(|i| map_entry(i, Ipv4Addr::new(10, 1, 0, 10)))
                .collect();
            let last = Ipv4Addr::from(MAP_BASE + entries as u32 - 1);
            (
                peer_spec(lab, 1, &keys[1], &["10.1.0.0/24", "10.50.0.0/16"], &[]),
                server_peer,
                last,
            )
        }
        _ => (
            peer_spec(lab, 1, &keys[1], &["10.1.0.0/24"], &[]),
            peer_spec(lab, 0, &keys[0], &["10.0.0.0/24"], &[]),
            Ipv4Addr::new(10, 1, 0, 10),
        ),
    }
}

/// NatMapping entry number `i`: 10.50.0.0 + i -> `target`.
pub fn map_entry(i: u32, target: Ipv4Addr) -> Mapping {
    Mapping {
        new_ip: IpAddr::V4(Ipv4Addr::from(MAP_BASE + i)),
        target: IpAddr::V4(target),
    }
}

/// The spec of site `i`'s gateway with one peer.
pub fn gateway_spec(lab: &Lab, i: usize, key: &PrivateKey, peer: PeerSpec) -> GatewaySpec {
    GatewaySpec {
        interface: lab.sites[i].ifname.clone(),
        private_key: key.clone(),
        listen_port: PORT,
        mtu: 1420,
        transit_source: None,
        peers: vec![peer],
    }
}

fn plain(lab: Lab) -> Result<Topology> {
    for (i, (dst, via)) in [
        ("10.1.0.0/24", "192.168.100.11"),
        ("10.0.0.0/24", "192.168.100.10"),
    ]
    .iter()
    .enumerate()
    {
        let gw = &lab.sites[i].gw.name;
        lab::run(&[
            "ip",
            "netns",
            "exec",
            gw,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ])?;
        lab::ip(gw, &format!("route add {dst} via {via}"))?;
    }
    Ok(Topology {
        lab,
        gateways: Vec::new(),
        target: Ipv4Addr::new(10, 1, 0, 10),
    })
}
