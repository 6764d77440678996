//! Where a peer's objects live in our cluster: one namespace per peer,
//! `<release namespace>-peer-<peer cluster ID>`, derived here (pure) from values of ours (the
//! release namespace and the cluster ID our ForeignCluster names), never from anything the peer
//! wrote. The peer's ServiceAccount lives in it and may write NetworkConfigs there only, so the
//! API server's authorization binds a NetworkConfig to the cluster it speaks for: the
//! network-manager accepts in this namespace only the NetworkConfig of that cluster.
//!
//! A namespace name is a DNS label of at most 63 characters; a longer name is cut and ends with
//! 8 hexadecimal digits of a hash of the whole, so different peers keep different namespaces.

use isthmus_addr::ClusterId;

/// The longest namespace name (a DNS-1123 label).
pub const NAMESPACE_MAX: usize = 63;

/// Label on a peer namespace naming the peer's cluster ID (set by `isthmus peer`, for people
/// and for `isthmus unpeer`; the network-manager derives the mapping from its ForeignClusters).
pub const LABEL_PEER_CLUSTER: &str = "net.isthmus.io/peer-cluster-id";

/// The namespace in a cluster whose isthmus release is in `release_namespace` where the objects
/// of peer `peer` live: its ServiceAccount, the NetworkConfig it writes, and the kubeconfig
/// Secret with which we reach it.
pub fn peer_namespace(release_namespace: &str, peer: &ClusterId) -> String {
    let full = format!("{release_namespace}-peer-{peer}");
    if full.len() <= NAMESPACE_MAX {
        return full;
    }
    let suffix = format!("{:08x}", fnv1a(full.as_bytes()) as u32);
    let head = full[..NAMESPACE_MAX - suffix.len() - 1].trim_end_matches('-');
    format!("{head}-{suffix}")
}

/// FNV-1a, 64 bits: stable across releases and platforms (a name must never change).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ClusterId {
        s.parse().unwrap()
    }

    #[test]
    fn short_names_are_readable() {
        assert_eq!(
            peer_namespace("isthmus", &id("cluster-b")),
            "isthmus-peer-cluster-b"
        );
    }

    #[test]
    fn long_names_are_cut_to_a_dns_label_and_stay_distinct() {
        let long_a = id(&format!("a{}", "x".repeat(62)));
        let long_b = id(&format!("b{}", "x".repeat(62)));
        let (a, b) = (
            peer_namespace("isthmus", &long_a),
            peer_namespace("isthmus", &long_b),
        );
        assert_ne!(a, b);
        for n in [&a, &b] {
            assert!(n.len() <= NAMESPACE_MAX, "{n}");
            assert!(n.parse::<ClusterId>().is_ok(), "{n} is a DNS label");
        }
        // a cut that lands on a '-' does not leave "--" or a trailing '-'
        let dashy = id(&format!("{}-{}", "y".repeat(40), "z".repeat(22)));
        let n = peer_namespace("isthmus", &dashy);
        assert!(n.parse::<ClusterId>().is_ok(), "{n}");
        assert_eq!(peer_namespace("isthmus", &dashy), n, "stable");
    }
}
