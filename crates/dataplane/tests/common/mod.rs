//! Shared builders for the namespace tests: sites, specs and the addresses of the scenarios.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use isthmus_dataplane::lab::{Lab, Site};
use isthmus_dataplane::netns::NsRuntime;
use isthmus_dataplane::tunnel::Backend;
use isthmus_dataplane::{GatewaySpec, LinuxGateway, Mapping, PeerSpec, PrefixNat, PrivateKey};

pub const PORT: u16 = 51820;
pub const WHOAMI: u16 = 8080;

/// A site of the lab with its key and its gateway drivers.
pub struct Cluster {
    pub name: String,
    pub key: PrivateKey,
    pub gateway: LinuxGateway,
    pub index: usize,
}

pub fn net(text: &str) -> ipnet::IpNet {
    text.parse().unwrap()
}

pub fn v4(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

/// Builds the lab with one site per PodCIDR and a gateway (automatic backend) on each.
pub fn clusters(pod_cidrs: &[&str]) -> (Lab, Vec<Cluster>) {
    isthmus_dataplane::lab::require_root();
    let mut lab = Lab::new().unwrap();
    let mut out = Vec::new();
    for (index, cidr) in pod_cidrs.iter().enumerate() {
        let site = lab.add_site(cidr.parse().unwrap()).unwrap();
        isthmus_dataplane::lab::start_whoami(&site.pod_rt, WHOAMI).unwrap();
        let gateway = gateway_on(site);
        let name = format!("cluster-{}", (b'a' + index as u8) as char);
        out.push(Cluster {
            name,
            key: PrivateKey::generate(),
            gateway,
            index,
        });
    }
    (lab, out)
}

pub fn gateway_on(site: &Site) -> LinuxGateway {
    let backend = isthmus_dataplane::tunnel::linux::detect_backend(&site.gw_rt);
    assert_ne!(backend, Backend::WireguardGo);
    LinuxGateway::linux_on(site.gw_rt.clone(), backend).unwrap()
}

/// Peer `to` as seen from a gateway: its key, endpoint, the ranges we route to it, and our
/// ranges in its view.
pub fn peer(lab: &Lab, to: &Cluster, remote: &[&str], local_nat: &[(&str, &str)]) -> PeerSpec {
    let site = &lab.sites[to.index];
    PeerSpec {
        name: to.name.clone(),
        public_key: to.key.public_key().to_string(),
        endpoint: Some(SocketAddr::new(IpAddr::V4(site.underlay), PORT)),
        keepalive: Some(25),
        remote: remote.iter().map(|s| net(s)).collect(),
        local_nat: local_nat
            .iter()
            .map(|(real, view)| PrefixNat {
                real: net(real),
                view: net(view),
            })
            .collect(),
        mappings: Vec::new(),
    }
}

pub fn spec(lab: &Lab, me: &Cluster, peers: Vec<PeerSpec>) -> GatewaySpec {
    GatewaySpec {
        interface: lab.sites[me.index].ifname.clone(),
        private_key: me.key.clone(),
        listen_port: PORT,
        mtu: 1420,
        transit_source: None,
        peers,
    }
}

pub fn mapping(new_ip: Ipv4Addr, target: Ipv4Addr) -> Mapping {
    Mapping {
        new_ip: IpAddr::V4(new_ip),
        target: IpAddr::V4(target),
    }
}

/// TCP from a pod to `dst`: the source address the server saw.
pub fn whoami(rt: &NsRuntime, dst: Ipv4Addr) -> IpAddr {
    isthmus_dataplane::lab::tcp_whoami(rt, dst, WHOAMI)
        .unwrap_or_else(|e| panic!("TCP to {dst}: {e}"))
}

pub fn assert_ping(rt: &NsRuntime, dst: Ipv4Addr) {
    assert!(
        isthmus_dataplane::lab::ping(rt, dst, 5).unwrap(),
        "no ICMP echo reply from {dst}"
    );
}

/// Our table as text, and our routes, for before/after comparisons.
pub fn kernel_state(site: &Site) -> (String, String) {
    let table = isthmus_dataplane::lab::ip(&site.gw.name, "route show proto 153").unwrap();
    let nft = isthmus_dataplane::lab::run(&[
        "ip",
        "netns",
        "exec",
        &site.gw.name,
        "nft",
        "list",
        "table",
        "inet",
        "isthmus",
    ])
    .unwrap_or_default();
    (nft, table)
}

pub fn wg_peers(site: &Site) -> String {
    isthmus_dataplane::lab::run(&[
        "ip",
        "netns",
        "exec",
        &site.gw.name,
        "wg",
        "show",
        &site.ifname,
        "allowed-ips",
    ])
    .unwrap()
}
