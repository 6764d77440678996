//! The lab's pure planning: which clusters peer (mesh or hub), which cluster reaches which and
//! through whom, and the chain of `MapEndpointIP` calls that exposes a pod along that path. No
//! I/O: the runner executes these plans, tests assert on them.

use std::fmt;

/// How the clusters peer.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Shape {
    /// Every cluster peers with every other.
    Mesh,
    /// Cluster `b` (the second) peers with every other; the others reach each other through it.
    Hub,
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Shape::Mesh => "mesh",
            Shape::Hub => "hub",
        })
    }
}

/// Index of the hub cluster in hub topology (`b`).
pub const HUB: usize = 1;

/// The peerings of `n` clusters, each pair once, lower index first.
pub fn peerings(n: usize, shape: Shape) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            let peer = match shape {
                Shape::Mesh => true,
                Shape::Hub => i == HUB || j == HUB || n == 2,
            };
            if peer {
                pairs.push((i, j));
            }
        }
    }
    pairs
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}→{}", cluster_name(self.from), cluster_name(self.to))?;
        match self.via {
            Some(via) => write!(f, " via {}", cluster_name(via)),
            None => Ok(()),
        }
    }
}

/// How cluster `from` reaches the pods of cluster `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Path {
    pub from: usize,
    pub to: usize,
    /// The cluster in the middle, when `from` and `to` do not peer.
    pub via: Option<usize>,
}

impl Path {
    /// The `MapEndpointIP` calls that expose a pod of `to` to `from`, in order: `(caller, peer)`.
    /// The first call maps the pod's real address; each next call maps the previous answer.
    /// Direct: `to` maps its pod for `from`. Through a hub `h`: `to` maps it for `h`, then `h`
    /// maps `h`'s view of it for `from` (an ExternalCIDR address of `h`, seed chapter 4).
    pub fn map_calls(&self) -> Vec<(usize, usize)> {
        match self.via {
            None => vec![(self.to, self.from)],
            Some(hub) => vec![(self.to, hub), (hub, self.from)],
        }
    }
}

/// Every ordered pair of clusters that can reach each other, directly or through one common
/// peer (the lowest-indexed one).
pub fn paths(n: usize, pairs: &[(usize, usize)]) -> Vec<Path> {
    let peered = |a: usize, b: usize| pairs.contains(&(a.min(b), a.max(b)));
    let mut out = Vec::new();
    for from in 0..n {
        for to in 0..n {
            if from == to {
                continue;
            }
            let via = if peered(from, to) {
                None
            } else {
                match (0..n).find(|&h| h != from && h != to && peered(from, h) && peered(h, to)) {
                    Some(hub) => Some(hub),
                    None => continue,
                }
            };
            out.push(Path { from, to, via });
        }
    }
    out
}

/// The cluster ID of lab cluster `i`: `a`, `b`, … `z`.
pub fn cluster_name(i: usize) -> String {
    char::from(b'a' + (i % 26) as u8).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_peers_only_through_b() {
        assert_eq!(peerings(3, Shape::Hub), vec![(0, 1), (1, 2)]);
        assert_eq!(peerings(4, Shape::Hub), vec![(0, 1), (1, 2), (1, 3)]);
        assert_eq!(peerings(2, Shape::Hub), vec![(0, 1)]);
        assert_eq!(peerings(3, Shape::Mesh), vec![(0, 1), (0, 2), (1, 2)]);
    }

    #[test]
    fn a_reaches_c_through_b_with_two_map_calls() {
        let all = paths(3, &peerings(3, Shape::Hub));
        assert_eq!(all.len(), 6);
        let a_to_c = all.iter().find(|p| p.from == 0 && p.to == 2).unwrap();
        assert_eq!(a_to_c.via, Some(1));
        assert_eq!(a_to_c.map_calls(), vec![(2, 1), (1, 0)]);
        let a_to_b = all.iter().find(|p| p.from == 0 && p.to == 1).unwrap();
        assert_eq!(a_to_b.map_calls(), vec![(1, 0)]);
    }

    #[test]
    fn mesh_paths_are_all_direct() {
        let all = paths(3, &peerings(3, Shape::Mesh));
        assert_eq!(all.len(), 6);
        assert!(all.iter().all(|p| p.via.is_none()));
    }

    #[test]
    fn unreachable_pairs_have_no_path() {
        // Two separate pairs: 0-1 and 2-3.
        let all = paths(4, &[(0, 1), (2, 3)]);
        assert_eq!(all.len(), 4);
        assert!(all.iter().all(|p| p.via.is_none()));
    }
}
