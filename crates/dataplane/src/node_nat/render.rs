//! Pure rendering of a [`NodeNatPlan`] into one nftables JSON batch (no I/O; snapshot-tested):
//!
//! ```text
//! table inet isthmus-node {
//!     chain postrouting {  # type nat hook postrouting priority srcnat - 10
//!         ip saddr 10.0.0.0/16 ip daddr 10.101.0.0/24 snat ip to ip saddr
//!     }
//! }
//! ```

use serde_json::{Value, json};

use super::{NodeNatPlan, SRCNAT_PRIORITY};
use crate::firewall::render::{POSTROUTING, null_snat};

fn prefix_match(field: &str, net: ipnet::Ipv4Net) -> Value {
    json!({ "match": {
        "op": "==",
        "left": { "payload": { "protocol": "ip", "field": field } },
        "right": { "prefix": { "addr": net.network().to_string(), "len": net.prefix_len() } },
    }})
}

/// The whole table as one atomic batch: ensure, delete, recreate with every rule.
pub fn render(plan: &NodeNatPlan) -> Value {
    let table = json!({ "family": "inet", "name": plan.table });
    let mut out = vec![
        json!({ "add": { "table": table } }),
        json!({ "delete": { "table": table } }),
        json!({ "add": { "table": table } }),
        json!({ "add": { "chain": {
            "family": "inet",
            "table": plan.table,
            "name": POSTROUTING,
            "type": "nat",
            "hook": "postrouting",
            "prio": SRCNAT_PRIORITY,
            "policy": "accept",
        }}}),
    ];
    let bind = serde_json::to_value(null_snat()).expect("statements serialize");
    for source in &plan.sources {
        for destination in &plan.destinations {
            out.push(json!({ "add": { "rule": {
                "family": "inet",
                "table": plan.table,
                "chain": POSTROUTING,
                "expr": [
                    prefix_match("saddr", *source),
                    prefix_match("daddr", *destination),
                    bind,
                ],
            }}}));
        }
    }
    json!({ "nftables": out })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::view::TableView;
    use crate::node_nat::NODE_TABLE;

    pub(crate) fn worker_plan() -> NodeNatPlan {
        let net = |s: &str| s.parse().unwrap();
        NodeNatPlan::new(
            [net("10.0.0.0/16")],
            [
                net("10.101.0.0/24"),
                net("10.201.0.0/24"),
                net("10.101.0.0/24"),
            ],
        )
    }

    #[test]
    fn worker_table_snapshot() {
        let path = format!(
            "{}/src/node_nat/snapshots/worker.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = serde_json::to_string_pretty(&render(&worker_plan())).unwrap() + "\n";
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        let expected = std::fs::read_to_string(&path).expect("snapshot (UPDATE_SNAPSHOTS=1)");
        assert!(
            expected == text,
            "snapshot worker differs; UPDATE_SNAPSHOTS=1 and review"
        );
    }

    #[test]
    fn reads_as_nft_lists_it() {
        let view = TableView::from_batch(&render(&worker_plan()), NODE_TABLE);
        let chain = &view.chains[POSTROUTING];
        assert_eq!(
            chain.base.as_deref(),
            Some("type nat hook postrouting priority 90 policy accept")
        );
        assert_eq!(
            chain.rules,
            [
                "ip saddr 10.0.0.0/16 ip daddr 10.101.0.0/24 snat ip to ip saddr",
                "ip saddr 10.0.0.0/16 ip daddr 10.201.0.0/24 snat ip to ip saddr",
            ]
        );
    }

    #[test]
    fn empty_plans() {
        assert!(NodeNatPlan::new([], ["10.1.0.0/24".parse().unwrap()]).is_empty());
        assert!(NodeNatPlan::new(["10.0.0.0/16".parse().unwrap()], []).is_empty());
        assert!(!worker_plan().is_empty());
    }
}
