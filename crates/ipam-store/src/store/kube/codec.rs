//! Conversions between the IPAM's types and the `IpamStorage` fields, and the block-index
//! ranges the root lists (`0-3,7,9-12`).

use isthmus_api::ClusterSubnets;
use isthmus_ipam::PeerNetworks;

/// A peer's networks as stored.
pub fn subnets(p: &PeerNetworks) -> ClusterSubnets {
    ClusterSubnets {
        remote_pod_cidr: p.remote_pod,
        remote_nat_pod_cidr: p.remote_pod_view,
        remote_external_cidr: p.remote_external,
        remote_nat_external_cidr: p.remote_external_view,
        local_nat_pod_cidr: p.local_pod_nat,
        local_nat_external_cidr: p.local_external_nat,
        peer_view_known: p.view_known,
    }
}

/// A peer's networks from storage.
pub fn peer_networks(s: &ClusterSubnets) -> PeerNetworks {
    PeerNetworks {
        remote_pod: s.remote_pod_cidr,
        remote_pod_view: s.remote_nat_pod_cidr,
        remote_external: s.remote_external_cidr,
        remote_external_view: s.remote_nat_external_cidr,
        local_pod_nat: s.local_nat_pod_cidr,
        local_external_nat: s.local_nat_external_cidr,
        view_known: s.peer_view_known,
    }
}

/// Sorted, distinct indexes as ranges: `[0,1,2,3,7]` → `0-3,7`.
pub fn encode_ranges(indexes: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < indexes.len() {
        let start = indexes[i];
        let mut end = start;
        while i + 1 < indexes.len() && indexes[i + 1] == end + 1 {
            i += 1;
            end = indexes[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}

/// The indexes of `0-3,7`; `None` when the text is not such a list.
pub fn decode_ranges(text: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
            None => {
                let a: u32 = part.parse().ok()?;
                (a, a)
            }
        };
        if a > b {
            return None;
        }
        out.extend(a..=b);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_round_trip() {
        for idx in [vec![], vec![5], vec![0, 1, 2, 3, 7, 9, 10, 11, 12]] {
            let text = encode_ranges(&idx);
            assert_eq!(decode_ranges(&text), Some(idx), "{text}");
        }
        assert_eq!(encode_ranges(&[0, 1, 2, 3, 7]), "0-3,7");
        assert_eq!(decode_ranges("3-1"), None);
        assert_eq!(decode_ranges("x"), None);
    }
}
