//! [`forbidden_endpoint`]: the addresses `MapEndpointIP` must never accept as an endpoint, because
//! the gateway would DNAT a peer's traffic to them. A peer (or whoever speaks for it to the
//! IPAM) names the endpoint; these classes would let it reach this cluster's loopback, the cloud
//! metadata service, its Services, its own reflection addresses or ranges the operator reserved
//! (node networks), none of which is a pod. Pure: one function of the address and the local
//! networks.

use std::fmt;
use std::net::Ipv4Addr;

use crate::{Cidr, LocalNetworks};

/// Why an address can never be an endpoint. Its `Display` says which class, for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForbiddenEndpoint {
    /// 0.0.0.0/8 ("this network").
    Unspecified,
    /// 127.0.0.0/8.
    Loopback,
    /// 169.254.0.0/16, which holds the cloud metadata service 169.254.169.254.
    LinkLocal,
    /// 224.0.0.0/4.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// 240.0.0.0/4 (reserved for future use; 255.255.255.255 is [`Self::Broadcast`]).
    FutureUse,
    /// The local Service CIDR: ClusterIPs are not endpoints.
    ServiceCidr(Cidr),
    /// The local ExternalCIDR: it only holds reflection addresses.
    ExternalCidr(Cidr),
    /// A range the operator reserved (`reserved`: node networks and the like).
    Reserved(Cidr),
}

impl fmt::Display for ForbiddenEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unspecified => write!(f, "unspecified (0.0.0.0/8)"),
            Self::Loopback => write!(f, "loopback (127.0.0.0/8)"),
            Self::LinkLocal => {
                write!(f, "link-local (169.254.0.0/16, includes cloud metadata)")
            }
            Self::Multicast => write!(f, "multicast (224.0.0.0/4)"),
            Self::Broadcast => write!(f, "broadcast (255.255.255.255)"),
            Self::FutureUse => write!(f, "reserved for future use (240.0.0.0/4)"),
            Self::ServiceCidr(c) => write!(f, "in the local Service CIDR {c}"),
            Self::ExternalCidr(c) => {
                write!(
                    f,
                    "in the local ExternalCIDR {c}, which holds reflection addresses only"
                )
            }
            Self::Reserved(c) => write!(f, "in the reserved range {c}"),
        }
    }
}

/// The class that forbids `ip` as an endpoint, or `None` when it may be one.
pub fn forbidden_endpoint(ip: Ipv4Addr, local: &LocalNetworks) -> Option<ForbiddenEndpoint> {
    use ForbiddenEndpoint as F;
    let class = match ip {
        _ if ip.octets()[0] == 0 => F::Unspecified,
        _ if ip.is_loopback() => F::Loopback,
        _ if ip.is_link_local() => F::LinkLocal,
        _ if ip.is_multicast() => F::Multicast,
        _ if ip.is_broadcast() => F::Broadcast,
        _ if ip.octets()[0] >= 240 => F::FutureUse,
        _ => return local_class(ip, local),
    };
    Some(class)
}

/// The local range `ip` lies in, of those that are never endpoints.
fn local_class(ip: Ipv4Addr, local: &LocalNetworks) -> Option<ForbiddenEndpoint> {
    if let Some(s) = local.service_cidr.filter(|s| s.contains(ip)) {
        return Some(ForbiddenEndpoint::ServiceCidr(s));
    }
    if local.external_cidr.contains(ip) {
        return Some(ForbiddenEndpoint::ExternalCidr(local.external_cidr));
    }
    let reserved = local.reserved.iter().find(|r| r.contains(ip));
    reserved.map(|r| ForbiddenEndpoint::Reserved(*r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn local() -> LocalNetworks {
        LocalNetworks {
            pod_cidr: c("10.0.0.0/16"),
            service_cidr: Some(c("10.96.0.0/12")),
            external_cidr: c("10.2.0.0/16"),
            pools: vec![c("10.0.0.0/8")],
            reserved: vec![c("172.18.0.0/16"), c("192.168.7.0/24")],
        }
    }

    fn class(ip: &str) -> Option<ForbiddenEndpoint> {
        forbidden_endpoint(ip.parse().unwrap(), &local())
    }

    #[test]
    fn every_forbidden_class_is_named() {
        use ForbiddenEndpoint as F;
        let cases = [
            ("0.0.0.0", F::Unspecified),
            ("0.1.2.3", F::Unspecified),
            ("127.0.0.1", F::Loopback),
            ("127.255.255.254", F::Loopback),
            ("169.254.169.254", F::LinkLocal),
            ("169.254.0.1", F::LinkLocal),
            ("224.0.0.1", F::Multicast),
            ("239.255.255.250", F::Multicast),
            ("255.255.255.255", F::Broadcast),
            ("240.0.0.1", F::FutureUse),
            ("10.96.0.1", F::ServiceCidr(c("10.96.0.0/12"))),
            ("10.111.255.255", F::ServiceCidr(c("10.96.0.0/12"))),
            ("10.2.0.9", F::ExternalCidr(c("10.2.0.0/16"))),
            ("172.18.0.2", F::Reserved(c("172.18.0.0/16"))),
            ("192.168.7.200", F::Reserved(c("192.168.7.0/24"))),
        ];
        for (ip, want) in cases {
            assert_eq!(class(ip), Some(want), "{ip}");
        }
    }

    #[test]
    fn pods_and_other_clusters_addresses_may_be_endpoints() {
        for ip in [
            "10.0.3.4",
            "10.80.1.1",
            "10.95.255.255",
            "10.112.0.0",
            "172.19.0.1",
            "169.253.255.255",
            "169.255.0.1",
            "126.255.255.255",
            "128.0.0.1",
            "223.255.255.255",
            "1.0.0.1",
        ] {
            assert_eq!(class(ip), None, "{ip}");
        }
    }

    #[test]
    fn without_a_service_cidr_nothing_is_refused_for_it() {
        let mut l = local();
        l.service_cidr = None;
        assert_eq!(forbidden_endpoint("10.96.0.1".parse().unwrap(), &l), None);
    }

    #[test]
    fn the_message_names_the_class() {
        let m = class("169.254.169.254").unwrap().to_string();
        assert!(m.contains("link-local") && m.contains("metadata"), "{m}");
        let m = class("10.96.0.10").unwrap().to_string();
        assert!(m.contains("Service CIDR 10.96.0.0/12"), "{m}");
        let m = class("172.18.0.2").unwrap().to_string();
        assert!(m.contains("reserved range 172.18.0.0/16"), "{m}");
    }
}
