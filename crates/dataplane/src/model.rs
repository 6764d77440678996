//! Desired state of one gateway, as plain data, and its validation.
//!
//! This is what TunnelEndpoints and NatMappings will hold once the controllers translate them:
//! our key and port, and for each peer its key, endpoint, the ranges we route to it (how *we* see
//! its pods and external CIDR), how *it* sees our ranges when it remapped them, and the NatMapping
//! entries for packets it sends us. Validation is complete before any driver is touched, so bad
//! input changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net};

use crate::keys::{PrivateKey, PublicKey};
use crate::{Error, Result};

/// Everything one gateway should be.
#[derive(Debug, Clone)]
pub struct GatewaySpec {
    /// WireGuard interface name; unique on the host (the userspace socket directory is shared).
    pub interface: String,
    /// Our private key.
    pub private_key: PrivateKey,
    /// UDP listen port.
    pub listen_port: u16,
    /// Tunnel MTU (underlay - 80 by default).
    pub mtu: u32,
    /// An address of ours (in our external CIDR) used as the source of hub-path packets we
    /// forward from one peer to another; translated to each receiver's view of it.
    pub transit_source: Option<IpAddr>,
    /// The peers.
    pub peers: Vec<PeerSpec>,
}

/// One peer cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    /// Peer cluster ID: lowercase letters, digits and `-`, at most 24 characters.
    pub name: String,
    /// Its public key (base64), as the TunnelEndpoint holds it.
    pub public_key: String,
    /// Where to reach it; `None` waits for the peer to reach us.
    pub endpoint: Option<SocketAddr>,
    /// Persistent keepalive in seconds.
    pub keepalive: Option<u16>,
    /// The peer's ranges as we address them (`view_us(peer.pod)`, `view_us(peer.ext)`):
    /// WireGuard AllowedIPs, routes into the tunnel, and the key of every NAT rule for this peer.
    pub remote: Vec<IpNet>,
    /// Our ranges as the peer addresses them, when it remapped them.
    pub local_nat: Vec<PrefixNat>,
    /// NatMapping entries: packets from this peer to `new_ip` go to `target`.
    pub mappings: Vec<Mapping>,
}

/// One of our ranges and how a peer sees it (same prefix length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefixNat {
    /// The real range (our PodCIDR or ExternalCIDR).
    pub real: IpNet,
    /// The peer's view of it.
    pub view: IpNet,
}

/// One NatMapping entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mapping {
    /// The address the peer sends to.
    pub new_ip: IpAddr,
    /// Where we deliver it (a local address, or another peer's address in our view).
    pub target: IpAddr,
}

/// A peer after validation: IPv4 only, key parsed, mappings de-duplicated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidPeer {
    /// Peer cluster ID.
    pub name: String,
    /// Parsed public key.
    pub public_key: PublicKey,
    /// Endpoint.
    pub endpoint: Option<SocketAddr>,
    /// Keepalive seconds.
    pub keepalive: Option<u16>,
    /// Ranges routed to the peer.
    pub remote: Vec<Ipv4Net>,
    /// Our ranges in the peer's view.
    pub local_nat: Vec<(Ipv4Net, Ipv4Net)>,
    /// NatMapping entries, `new_ip -> target`.
    pub mappings: BTreeMap<Ipv4Addr, Ipv4Addr>,
}

/// A gateway spec after validation.
#[derive(Debug, Clone)]
pub struct ValidSpec {
    /// Interface name.
    pub interface: String,
    /// Private key.
    pub private_key: PrivateKey,
    /// Listen port.
    pub listen_port: u16,
    /// MTU.
    pub mtu: u32,
    /// Hub-path source address.
    pub transit_source: Option<Ipv4Addr>,
    /// Peers, sorted by name.
    pub peers: Vec<ValidPeer>,
}

fn v4net(net: &IpNet, what: &str, peer: &str) -> Result<Ipv4Net> {
    match net {
        IpNet::V4(net) => Ok(net.trunc()),
        IpNet::V6(_) => Err(Error::invalid(format!(
            "peer {peer}: {what} {net} is IPv6; the overlay is IPv4 (wrong address family)"
        ))),
    }
}

fn v4addr(addr: &IpAddr, what: &str, peer: &str) -> Result<Ipv4Addr> {
    match addr {
        IpAddr::V4(addr) => Ok(*addr),
        IpAddr::V6(_) => Err(Error::invalid(format!(
            "peer {peer}: {what} {addr} is IPv6; the overlay is IPv4 (wrong address family)"
        ))),
    }
}

fn check_interface(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!("bad interface name {name:?}")))
    }
}

fn check_peer_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 24
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!("bad peer name {name:?}")))
    }
}

impl PeerSpec {
    /// Validates one peer on its own.
    pub fn validate(&self) -> Result<ValidPeer> {
        let name = self.name.as_str();
        check_peer_name(name)?;
        let public_key = self
            .public_key
            .parse::<PublicKey>()
            .map_err(|err| Error::invalid(format!("peer {name}: {err}")))?;
        let remote = self
            .remote
            .iter()
            .map(|net| v4net(net, "remote range", name))
            .collect::<Result<Vec<_>>>()?;
        if remote.is_empty() {
            return Err(Error::invalid(format!("peer {name}: no remote range")));
        }
        let mut local_nat = Vec::new();
        for nat in &self.local_nat {
            let real = v4net(&nat.real, "local range", name)?;
            let view = v4net(&nat.view, "local view", name)?;
            if real.prefix_len() != view.prefix_len() {
                return Err(Error::invalid(format!(
                    "peer {name}: view {view} of {real} has a different prefix length"
                )));
            }
            local_nat.push((real, view));
        }
        let mut mappings = BTreeMap::new();
        for mapping in &self.mappings {
            let new_ip = v4addr(&mapping.new_ip, "mapping address", name)?;
            let target = v4addr(&mapping.target, "mapping target", name)?;
            if mappings
                .insert(new_ip, target)
                .is_some_and(|old| old != target)
            {
                return Err(Error::invalid(format!(
                    "peer {name}: {new_ip} mapped twice"
                )));
            }
        }
        Ok(ValidPeer {
            name: self.name.clone(),
            public_key,
            endpoint: self.endpoint,
            keepalive: self.keepalive,
            remote,
            local_nat,
            mappings,
        })
    }
}

impl GatewaySpec {
    /// Validates the whole spec: every peer, then what must hold across peers.
    pub fn validate(&self) -> Result<ValidSpec> {
        check_interface(&self.interface)?;
        let mut peers = self
            .peers
            .iter()
            .map(PeerSpec::validate)
            .collect::<Result<Vec<_>>>()?;
        peers.sort_by(|a, b| a.name.cmp(&b.name));
        check_unique(&peers, &self.private_key.public_key())?;
        check_no_overlap(&peers)?;
        let transit_source = match &self.transit_source {
            Some(addr) => Some(v4addr(addr, "transit source", "(gateway)")?),
            None => None,
        };
        Ok(ValidSpec {
            interface: self.interface.clone(),
            private_key: self.private_key.clone(),
            listen_port: self.listen_port,
            mtu: self.mtu,
            transit_source,
            peers,
        })
    }
}

fn check_unique(peers: &[ValidPeer], own: &PublicKey) -> Result<()> {
    let mut names = BTreeSet::new();
    let mut keys = BTreeSet::new();
    for peer in peers {
        if !names.insert(peer.name.as_str()) {
            return Err(Error::invalid(format!("peer {} listed twice", peer.name)));
        }
        if &peer.public_key == own || !keys.insert(&peer.public_key) {
            return Err(Error::invalid(format!(
                "peer {}: public key already in use",
                peer.name
            )));
        }
    }
    Ok(())
}

/// WireGuard routes out by destination: two peers must never claim overlapping ranges.
fn check_no_overlap(peers: &[ValidPeer]) -> Result<()> {
    for (i, a) in peers.iter().enumerate() {
        for b in &peers[i + 1..] {
            for x in &a.remote {
                if let Some(y) = b.remote.iter().find(|y| x.contains(*y) || y.contains(x)) {
                    return Err(Error::invalid(format!(
                        "allowed IPs overlap: peer {} has {x}, peer {} has {y}",
                        a.name, b.name
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Minimal valid specs for unit tests of this crate.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    /// A peer with a fresh key, no endpoint and one remote range.
    pub(crate) fn peer(name: &str, remote: &str) -> PeerSpec {
        PeerSpec {
            name: name.into(),
            public_key: PrivateKey::generate().public_key().to_string(),
            endpoint: None,
            keepalive: None,
            remote: vec![remote.parse().unwrap()],
            local_nat: vec![],
            mappings: vec![],
        }
    }

    /// A gateway on interface `wgtest` with a fresh key.
    pub(crate) fn spec(peers: Vec<PeerSpec>) -> GatewaySpec {
        GatewaySpec {
            interface: "wgtest".into(),
            private_key: PrivateKey::generate(),
            listen_port: 51820,
            mtu: 1420,
            transit_source: None,
            peers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{peer, spec};
    use super::*;

    #[test]
    fn rejects_overlapping_allowed_ips() {
        let err = spec(vec![peer("a", "10.1.0.0/16"), peer("b", "10.1.2.0/24")]).validate();
        assert!(err.unwrap_err().to_string().contains("overlap"));
    }

    #[test]
    fn rejects_wrong_family_and_bad_key() {
        let err = spec(vec![peer("a", "fd00::/64")]).validate().unwrap_err();
        assert!(err.to_string().contains("wrong address family"), "{err}");
        let mut bad = peer("a", "10.1.0.0/24");
        bad.public_key = "xyz".into();
        assert!(
            spec(vec![bad])
                .validate()
                .unwrap_err()
                .to_string()
                .contains("public key")
        );
    }

    #[test]
    fn rejects_view_with_other_prefix_length() {
        let mut p = peer("a", "10.1.0.0/24");
        p.local_nat = vec![PrefixNat {
            real: "10.0.0.0/24".parse().unwrap(),
            view: "10.9.0.0/16".parse().unwrap(),
        }];
        assert!(spec(vec![p]).validate().is_err());
    }

    #[test]
    fn sorts_peers_by_name() {
        let valid = spec(vec![peer("b", "10.2.0.0/24"), peer("a", "10.1.0.0/24")]).validate();
        let names: Vec<_> = valid.unwrap().peers.into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["a", "b"]);
    }
}
