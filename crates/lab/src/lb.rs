//! A load balancer in front of a cluster's gateway replicas, as a cloud's UDP load balancer (or
//! a Service's virtual address) is: a virtual address on the underlay, `.(50+i)` for cluster `i`,
//! held by the WAN namespace, whose packets to the WireGuard port are sent on to the node that
//! runs the active replica. Stateless (no conntrack entry outlives a change of backend, which
//! kube-proxy has to flush for UDP) and direct return: the gateway answers from its own address,
//! and WireGuard on the other side roams to it. The backend is changed by whoever follows the
//! gateway's Lease (the lab's runner); one chain per cluster in table `ip lab-lb`, which is not
//! ours.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::cni::nft_load;
use crate::{Error, Result};

/// The load balancer's table in the WAN namespace (family `ip`).
pub const LB_TABLE: &str = "lab-lb";
/// First host number of the virtual addresses (cluster `i` = `.(50+i)`).
pub const VIP_FIRST_HOST: u32 = 50;

/// The virtual address of cluster `index` on `wan`.
pub fn vip(wan: Ipv4Net, index: usize) -> Result<Ipv4Addr> {
    let host = u32::from(wan.network()) + VIP_FIRST_HOST + index as u32;
    let addr = Ipv4Addr::from(host);
    if !wan.contains(&addr) || addr == wan.broadcast() {
        return Err(Error::spec(format!(
            "{wan} has no room for a load balancer address"
        )));
    }
    Ok(addr)
}

/// The ruleset pointing `vip:port` at `backend` for cluster `cluster` (pure). Replaces the
/// cluster's chain in one transaction, so no packet sees half of a change.
pub fn ruleset(cluster: &str, vip: Ipv4Addr, port: u16, backend: Option<Ipv4Addr>) -> String {
    let chain = format!("lb-{cluster}");
    let rule = match backend {
        Some(to) => format!("\t\tip daddr {vip} udp dport {port} notrack ip daddr set {to}\n"),
        // no active replica: what reaches the address is dropped, as by a load balancer with
        // no healthy target
        None => format!("\t\tip daddr {vip} udp dport {port} drop\n"),
    };
    format!(
        "table ip {LB_TABLE} {{\n\tchain {chain} {{\n\t\ttype filter hook prerouting priority raw; \
         policy accept;\n\t}}\n}}\nflush chain ip {LB_TABLE} {chain}\ntable ip {LB_TABLE} {{\n\t\
         chain {chain} {{\n{rule}\t}}\n}}\n"
    )
}

/// Puts `vip` on the WAN bridge of namespace `wan_ns` (idempotent) and lets that namespace
/// route between the underlay's hosts.
pub fn install(wan_ns: &str, wan: Ipv4Net, vip: Ipv4Addr) -> Result<()> {
    let address = format!("{vip}/{}", wan.prefix_len());
    let line = format!("addr replace {address} dev {}", crate::BRIDGE);
    crate::kernel::ip_batch(Some(wan_ns), &[line], false)?;
    let redirects = format!("net/ipv4/conf/{}/send_redirects", crate::BRIDGE);
    crate::kernel::sysctls(
        wan_ns,
        &[
            ("net/ipv4/ip_forward", "1"),
            ("net/ipv4/conf/all/send_redirects", "0"),
            (redirects.as_str(), "0"),
            ("net/ipv4/conf/all/rp_filter", "0"),
        ],
    )
}

/// Points cluster `cluster`'s virtual address at `backend` (`None`: nobody).
pub fn point_at(
    wan_ns: &str,
    cluster: &str,
    vip: Ipv4Addr,
    port: u16,
    backend: Option<Ipv4Addr>,
) -> Result<()> {
    nft_load(wan_ns, &ruleset(cluster, vip, port, backend))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ruleset_replaces_one_clusters_chain() {
        let address = Ipv4Addr::new(192, 168, 100, 50);
        let text = ruleset("a", address, 51820, Some(Ipv4Addr::new(192, 168, 100, 100)));
        assert!(text.contains("flush chain ip lab-lb lb-a"), "{text}");
        assert!(
            text.contains(
                "ip daddr 192.168.100.50 udp dport 51820 notrack ip daddr set 192.168.100.100"
            ),
            "{text}"
        );
        assert!(ruleset("a", address, 51820, None).contains("udp dport 51820 drop"));
        let wan: Ipv4Net = "192.168.100.0/24".parse().unwrap();
        assert_eq!(vip(wan, 2).unwrap(), Ipv4Addr::new(192, 168, 100, 52));
        assert!(vip("192.168.100.0/28".parse().unwrap(), 0).is_err());
    }
}
