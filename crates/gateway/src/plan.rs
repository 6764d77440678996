//! The pure planner: TunnelEndpoints, NatMappings (a peer's shards merged by
//! `nat_table::merge`) and configuration → the desired
//! [`GatewaySpec`], and per TunnelEndpoint the peer it configures or why it was left out.
//!
//! No I/O and no clock: endpoint host names are resolved by the caller and passed in. One bad
//! TunnelEndpoint never spoils the others: each peer is validated alone
//! ([`PeerSpec::validate`]), then checked against the peers already accepted (oldest first),
//! and left out with its own [`Error`] when anything is wrong.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net};
use isthmus_api::{BACKEND_PUBLIC_KEY, Cidr, NatMapping, TunnelEndpoint};
use isthmus_dataplane::model::ValidPeer;
use isthmus_dataplane::{GatewaySpec, Mapping, PeerSpec, PrefixNat, PrivateKey};
use kube::ResourceExt;

use crate::error::Error;

/// Endpoint text (`host:port`) → its resolved address, or why it has none.
pub type Resolved = BTreeMap<String, Result<SocketAddr, String>>;

/// What the planner needs besides the resources.
#[derive(Debug, Clone)]
pub struct Device<'a> {
    /// WireGuard interface name.
    pub interface: &'a str,
    /// Our private key.
    pub private_key: &'a PrivateKey,
    /// UDP listen port.
    pub listen_port: u16,
    /// Tunnel MTU.
    pub mtu: u32,
    /// Persistent keepalive for every peer.
    pub keepalive: Option<u16>,
}

/// The planner's answer for one TunnelEndpoint.
#[derive(Debug)]
pub struct PeerPlan {
    /// The peer cluster ID (the WireGuard peer's name).
    pub peer: String,
    /// The peer gateway's transit address in our view: what the RTT probe pings.
    pub probe_target: Ipv4Addr,
    /// Why the peer was left out of the spec; `None` when it is in.
    pub problem: Option<Error>,
}

/// The desired gateway and the fate of every TunnelEndpoint.
#[derive(Debug)]
pub struct Plan {
    /// What `Gateway::reconcile` gets.
    pub spec: GatewaySpec,
    /// By TunnelEndpoint name.
    pub endpoints: BTreeMap<String, PeerPlan>,
}

/// The first host address of a network (`10.200.0.0/24` → `10.200.0.1`): the transit address
/// the IPAM reserves in every ExternalCIDR.
pub fn first_host(cidr: &Cidr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cidr.network()).wrapping_add(1))
}

fn net(cidr: &Cidr) -> IpNet {
    IpNet::V4(Ipv4Net::new(cidr.network(), cidr.prefix_len()).expect("a Cidr is a valid network"))
}

/// Plans the gateway from the TunnelEndpoints and NatMappings of its namespace.
pub fn plan(
    device: &Device<'_>,
    teps: &[TunnelEndpoint],
    nat_mappings: &[NatMapping],
    resolved: &Resolved,
) -> Plan {
    let mut ordered: Vec<&TunnelEndpoint> = teps.iter().collect();
    ordered.sort_by_key(|t| {
        (
            t.metadata.creation_timestamp.clone().map(|t| t.0),
            t.name_any(),
        )
    });
    let external = ordered.first().map(|t| t.spec.local_external_cidr);
    let mut accepted: Vec<ValidPeer> = Vec::new();
    let mut peers = Vec::new();
    let mut endpoints = BTreeMap::new();
    for tep in ordered {
        let outcome = peer_spec(device, tep, nat_mappings, resolved, external).and_then(|spec| {
            let valid = spec
                .validate()
                .map_err(|e| Error::InvalidPeer(strip_invalid(&e)))?;
            check_against(&valid, &accepted, device.private_key)?;
            Ok((spec, valid))
        });
        let problem = match outcome {
            Ok((spec, valid)) => {
                peers.push(spec);
                accepted.push(valid);
                None
            }
            Err(err) => Some(err),
        };
        endpoints.insert(
            tep.name_any(),
            PeerPlan {
                peer: tep.spec.cluster_id.as_str().to_owned(),
                probe_target: first_host(&tep.spec.remote_nat_external_cidr),
                problem,
            },
        );
    }
    let spec = GatewaySpec {
        interface: device.interface.to_owned(),
        private_key: device.private_key.clone(),
        listen_port: device.listen_port,
        mtu: device.mtu,
        transit_source: external.map(|e| IpAddr::V4(first_host(&e))),
        peers,
    };
    Plan { spec, endpoints }
}

fn strip_invalid(err: &isthmus_dataplane::Error) -> String {
    match err {
        isthmus_dataplane::Error::Invalid(message) => message.clone(),
        other => other.to_string(),
    }
}

/// The WireGuard peer one TunnelEndpoint asks for, before validation.
fn peer_spec(
    device: &Device<'_>,
    tep: &TunnelEndpoint,
    nat_mappings: &[NatMapping],
    resolved: &Resolved,
    external: Option<Cidr>,
) -> Result<PeerSpec, Error> {
    let s = &tep.spec;
    if let Some(expected) = external.filter(|e| *e != s.local_external_cidr) {
        return Err(Error::ExternalCidrMismatch {
            found: s.local_external_cidr.to_string(),
            expected: expected.to_string(),
        });
    }
    let public_key = s
        .backend_config
        .get(BACKEND_PUBLIC_KEY)
        .ok_or_else(|| Error::InvalidPeer(format!("backendConfig has no {BACKEND_PUBLIC_KEY}")))?;
    let endpoint = match resolved.get(&s.endpoint) {
        Some(Ok(addr)) => *addr,
        Some(Err(message)) => {
            return Err(Error::Endpoint {
                endpoint: s.endpoint.clone(),
                message: message.clone(),
            });
        }
        None => {
            return Err(Error::Endpoint {
                endpoint: s.endpoint.clone(),
                message: "not resolved yet".into(),
            });
        }
    };
    let mut local_nat = Vec::new();
    for (real, view) in [
        (s.local_pod_cidr, s.local_nat_pod_cidr),
        (s.local_external_cidr, s.local_nat_external_cidr),
    ] {
        if real != view {
            local_nat.push(PrefixNat {
                real: net(&real),
                view: net(&view),
            });
        }
    }
    let peer_objects = nat_mappings
        .iter()
        .filter(|nm| nm.spec.cluster_id == s.cluster_id);
    let mappings: Vec<Mapping> = crate::nat_table::merge(peer_objects)
        .into_iter()
        .map(|(new_ip, target)| Mapping {
            new_ip: IpAddr::V4(new_ip),
            target: IpAddr::V4(target),
        })
        .collect();
    Ok(PeerSpec {
        name: s.cluster_id.as_str().to_owned(),
        public_key: public_key.clone(),
        endpoint: Some(endpoint),
        keepalive: device.keepalive,
        remote: vec![
            net(&s.remote_nat_pod_cidr),
            net(&s.remote_nat_external_cidr),
        ],
        local_nat,
        mappings,
    })
}

/// What must hold across peers: unique names and keys (not ours), no overlapping ranges.
fn check_against(peer: &ValidPeer, accepted: &[ValidPeer], own: &PrivateKey) -> Result<(), Error> {
    let conflict = |m: String| Err(Error::PeerConflict(m));
    if peer.public_key == own.public_key() {
        return conflict("the peer's public key is this gateway's own key".into());
    }
    for other in accepted {
        if other.name == peer.name {
            return conflict(format!(
                "another TunnelEndpoint already configures peer {}",
                peer.name
            ));
        }
        if other.public_key == peer.public_key {
            return conflict(format!("public key already used by peer {}", other.name));
        }
        for x in &peer.remote {
            if let Some(y) = other
                .remote
                .iter()
                .find(|y| x.contains(*y) || y.contains(x))
            {
                return conflict(format!("range {x} overlaps {y} of peer {}", other.name));
            }
        }
    }
    Ok(())
}

/// Whether two specs differ in NatMapping entries only (so the NAT fast path is enough).
pub fn differs_only_in_mappings(applied: &GatewaySpec, desired: &GatewaySpec) -> bool {
    let strip = |spec: &GatewaySpec| {
        let peers: Vec<PeerSpec> = spec
            .peers
            .iter()
            .map(|p| PeerSpec {
                mappings: Vec::new(),
                ..p.clone()
            })
            .collect();
        (
            spec.interface.clone(),
            spec.listen_port,
            spec.mtu,
            spec.transit_source,
            peers,
        )
    };
    applied.private_key == desired.private_key && strip(applied) == strip(desired)
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
