//! Which cluster a received NetworkConfig may speak for, decided purely from where it was found.
//!
//! Each peer writes into a namespace of its own in our cluster ([`peer_namespace`]), where only
//! its ServiceAccount may write NetworkConfigs (the API server's RBAC enforces that). The
//! namespace → cluster mapping comes from our ForeignClusters (their cluster IDs, through
//! [`peer_namespace`]), never from the object: so a NetworkConfig is processed only when its
//! `originClusterID` and its name are the cluster whose namespace it is in. A peer that forges
//! another cluster's ID in its own namespace is refused with [`REASON_ORIGIN_MISMATCH`], and the
//! IPAM, the TunnelEndpoints and every other peering are left as they were.

use isthmus_api::{ClusterId, peer_namespace};

/// Condition reason: the NetworkConfig claims to come from a cluster other than the one whose
/// namespace it is in.
pub const REASON_ORIGIN_MISMATCH: &str = "OriginMismatch";

/// What to do with a NetworkConfig found in a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It speaks for this cluster, whose live ForeignCluster owns the namespace: process it.
    Process(ClusterId),
    /// It speaks for the cluster whose namespace it is in, but we have no (live) ForeignCluster
    /// for that cluster: refused with reason `NoForeignCluster` once its spec is checked.
    Unpeered(ClusterId),
    /// Refuse it with a condition (the namespace is a peer's, so we may write its status).
    Refuse {
        reason: &'static str,
        message: String,
    },
    /// Not in any peer's namespace (the release namespace, an unrelated one): not ours to
    /// process nor to answer.
    Ignore,
}

/// The verdict on NetworkConfig `name` (claiming `origin`) found in `namespace`, given the
/// cluster IDs of our live ForeignClusters and our release namespace.
pub fn verdict(
    release_namespace: &str,
    live_peers: &[ClusterId],
    namespace: &str,
    name: &str,
    origin: &ClusterId,
) -> Verdict {
    let owner = live_peers
        .iter()
        .find(|p| peer_namespace(release_namespace, p) == namespace);
    match owner {
        Some(owner) if owner == origin && name == owner.as_str() => Verdict::Process(owner.clone()),
        Some(owner) => Verdict::Refuse {
            reason: REASON_ORIGIN_MISMATCH,
            message: mismatch(namespace, owner.as_str(), name, origin),
        },
        None if peer_namespace(release_namespace, origin) != namespace => Verdict::Ignore,
        None if name != origin.as_str() => Verdict::Refuse {
            reason: REASON_ORIGIN_MISMATCH,
            message: mismatch(namespace, origin.as_str(), name, origin),
        },
        None => Verdict::Unpeered(origin.clone()),
    }
}

fn mismatch(namespace: &str, owner: &str, name: &str, origin: &ClusterId) -> String {
    format!(
        "namespace {namespace} belongs to peer {owner}, which may write only NetworkConfig \
         {owner} with originClusterID {owner}; this one is {name:?} with originClusterID \
         {origin}: refused, nothing changed"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ClusterId {
        s.parse().unwrap()
    }

    #[test]
    fn a_peer_speaks_only_for_itself_in_its_own_namespace() {
        let peers = [id("b"), id("c")];
        let v =
            |ns: &str, name: &str, origin: &str| verdict("isthmus", &peers, ns, name, &id(origin));
        assert_eq!(v("isthmus-peer-b", "b", "b"), Verdict::Process(id("b")));
        // b forging c's identity in its own namespace
        let forged = v("isthmus-peer-b", "c", "c");
        assert!(
            matches!(&forged, Verdict::Refuse { reason: REASON_ORIGIN_MISMATCH, message }
                if message.contains("belongs to peer b") && message.contains("originClusterID c")),
            "{forged:?}"
        );
        // the right origin under another name is refused too (one object per peer)
        assert!(matches!(
            v("isthmus-peer-b", "x", "b"),
            Verdict::Refuse {
                reason: REASON_ORIGIN_MISMATCH,
                ..
            }
        ));
        // the release namespace and unrelated namespaces are nobody's
        assert_eq!(v("isthmus", "b", "b"), Verdict::Ignore);
        assert_eq!(v("default", "c", "c"), Verdict::Ignore);
    }

    #[test]
    fn a_peer_without_a_foreign_cluster_is_told_so() {
        let v = verdict("isthmus", &[], "isthmus-peer-d", "d", &id("d"));
        assert_eq!(v, Verdict::Unpeered(id("d")));
        let v = verdict("isthmus", &[], "isthmus-peer-d", "e", &id("e"));
        assert_eq!(v, Verdict::Ignore);
    }
}
