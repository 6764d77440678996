//! A kindnet-like CNI masquerade on every node of a lab (`isthmus lab up --cni-masquerade`): a
//! table that is not ours, `ip cni-nat`, whose nat chain at `postrouting` priority `srcnat`
//! masquerades everything a pod sends outside the cluster's Pod CIDR, as kindnet, flannel,
//! Calico's natOutgoing or ip-masq-agent do. Installed before the daemons start, removed with the
//! namespaces. isthmus must keep its traffic out of it (docs/datapath.md).

use std::io::Write;
use std::process::{Command, Stdio};

use ipnet::Ipv4Net;

use crate::{Error, Result, TopologyRecord};

/// The foreign table's name (family `ip`).
pub const CNI_TABLE: &str = "cni-nat";

/// The ruleset of one node (pure): `ip saddr <podCIDR> ip daddr != <podCIDR> masquerade`.
pub fn masquerade_ruleset(pod_cidr: Ipv4Net) -> String {
    format!(
        "table ip {CNI_TABLE} {{\n\tchain postrouting {{\n\t\ttype nat hook postrouting priority \
         srcnat; policy accept;\n\t\tip saddr {pod_cidr} ip daddr != {pod_cidr} masquerade\n\t}}\n}}\n"
    )
}

/// `nft -f -` with `ruleset` inside namespace `ns` (also loads the [`crate::exposure`] NATs).
pub(crate) fn nft_load(ns: &str, ruleset: &str) -> Result<()> {
    let command = format!("ip netns exec {ns} nft -f -");
    let failed = |message: String| Error::Command {
        command: command.clone(),
        message,
    };
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| failed(e.to_string()))?;
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(ruleset.as_bytes())
        .map_err(|e| failed(e.to_string()))?;
    let out = child
        .wait_with_output()
        .map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        return Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    Ok(())
}

/// Installs the masquerade on every node of every cluster of `lab`.
pub fn install_masquerade(lab: &TopologyRecord) -> Result<()> {
    for cluster in &lab.clusters {
        let ruleset = masquerade_ruleset(cluster.pod_cidr);
        for node in &cluster.nodes {
            nft_load(&node.namespace, &ruleset)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_masquerades_everything_leaving_the_pod_cidr() {
        let text = masquerade_ruleset("10.0.0.0/16".parse().unwrap());
        assert!(text.starts_with("table ip cni-nat {"));
        assert!(text.contains("type nat hook postrouting priority srcnat;"));
        assert!(text.contains("ip saddr 10.0.0.0/16 ip daddr != 10.0.0.0/16 masquerade"));
    }
}
