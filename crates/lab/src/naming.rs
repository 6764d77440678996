//! The naming scheme: a host-unique lab tag, and every namespace and interface name derived from it.
//!
//! A tag is `il<pid>x<n>` (`n` in hex, per process), e.g. `il48213x0`. Every namespace the lab
//! creates is `<tag>-<what>`, and the per-cluster WireGuard interface is `<tag>-<cluster id>`
//! (at most 15 characters). The owner's pid in the tag lets [`crate::destroy_stale`] find labs
//! whose process died. Interface names inside the lab's namespaces are fixed (`eth0`, `u0`, `br0`,
//! `cni0`, …): each namespace is its own name space.

use std::sync::atomic::{AtomicU32, Ordering};

/// Prefix of every lab tag.
pub const TAG_PREFIX: &str = "il";

/// Longest Linux interface name.
pub const IFNAME_MAX: usize = 15;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A new tag for this process: `il<pid>x<n>`, `n` counting the labs this process built.
/// `taken` says whether a tag is already in use on the host (a leftover with a reused pid);
/// such tags are skipped.
pub fn new_tag(taken: impl Fn(&str) -> bool) -> String {
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{TAG_PREFIX}{}x{n:x}", std::process::id());
        if !taken(&tag) {
            return tag;
        }
    }
}

/// The tag a lab name starts with (`il123x4-a-node0` → `il123x4`), if it is a lab name.
pub fn tag_of(name: &str) -> Option<&str> {
    let tag = name.split('-').next()?;
    let rest = tag.strip_prefix(TAG_PREFIX)?;
    let (pid, counter) = rest.split_once('x')?;
    let pid_ok = !pid.is_empty() && pid.chars().all(|c| c.is_ascii_digit());
    let counter_ok = !counter.is_empty() && counter.chars().all(|c| c.is_ascii_hexdigit());
    (pid_ok && counter_ok).then_some(tag)
}

/// The owner's pid encoded in a tag.
pub fn pid_of(tag: &str) -> Option<u32> {
    let tag = tag_of(tag)?;
    tag[TAG_PREFIX.len()..].split_once('x')?.0.parse().ok()
}

/// Whether `name` (a namespace, an interface, a socket stem) belongs to the lab `tag`.
pub fn belongs_to(name: &str, tag: &str) -> bool {
    tag_of(name) == Some(tag)
}

/// Cluster IDs in order: `a`, `b`, … `z`.
pub fn cluster_id(index: usize) -> Option<String> {
    let letter = u8::try_from(index).ok().filter(|i| *i < 26)?;
    Some(char::from(b'a' + letter).to_string())
}

/// The underlay namespace.
pub fn wan_namespace(tag: &str) -> String {
    format!("{tag}-wan")
}

/// A cluster's LAN namespace (the node network's bridge).
pub fn lan_namespace(tag: &str, cluster: &str) -> String {
    format!("{tag}-{cluster}-lan")
}

/// A node's name inside its cluster.
pub fn node_name(node: usize) -> String {
    format!("node{node}")
}

/// A pod's name inside its cluster: `pod<node>-<k>`.
pub fn pod_name(node: usize, pod: usize) -> String {
    format!("pod{node}-{pod}")
}

/// The namespace of a node or pod `name` of `cluster`.
pub fn member_namespace(tag: &str, cluster: &str, name: &str) -> String {
    format!("{tag}-{cluster}-{name}")
}

/// The WireGuard interface of a cluster's gateway, unique on the host.
pub fn wg_interface(tag: &str, cluster: &str) -> String {
    format!("{tag}-{cluster}")
}

/// The gateway node's port on the WAN bridge.
pub fn wan_port(cluster: &str) -> String {
    format!("u-{cluster}")
}

/// The WAN bridge port of node `j` of `cluster` (node 0: [`wan_port`]; a second gateway-capable
/// node: `u-<cluster><j>`).
pub fn wan_port_of(cluster: &str, j: usize) -> String {
    if j == 0 {
        wan_port(cluster)
    } else {
        format!("u-{cluster}{j}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_carry_their_pid_and_own_their_names() {
        let tag = new_tag(|_| false);
        assert_eq!(pid_of(&tag), Some(std::process::id()));
        assert!(belongs_to(&wan_namespace(&tag), &tag));
        assert!(belongs_to(&wg_interface(&tag, "a"), &tag));
        assert!(belongs_to(&tag, &tag));
        assert!(!belongs_to(&format!("{tag}0-wan"), &tag));
        assert_eq!(tag_of("il4242x1f-a-node0"), Some("il4242x1f"));
        assert_eq!(pid_of("il4242x1f"), Some(4242));
        assert_eq!(tag_of("ilo-x1"), None);
        assert_eq!(tag_of("il12xzz-wan"), None);
        assert_eq!(tag_of("ist4242x1-gw0"), None);
    }

    #[test]
    fn taken_tags_are_skipped() {
        let next = new_tag(|t| !t.ends_with('f'));
        assert!(next.ends_with('f'), "{next}");
    }

    #[test]
    fn wg_interface_fits_for_the_largest_pid() {
        let tag = "il4194304x3ff";
        assert!(wg_interface(tag, "z").len() <= IFNAME_MAX);
        assert_eq!(cluster_id(0).as_deref(), Some("a"));
        assert_eq!(cluster_id(25).as_deref(), Some("z"));
        assert_eq!(cluster_id(26), None);
    }
}
