//! Check 8, node NAT exemption (nodes other than the gateway node): the route agent's table
//! `inet isthmus-node`, which binds connections from our Pod CIDR to the peers' ranges to their
//! own source before a CNI's masquerade can rewrite it, against the table the route agent's own
//! renderer builds from its plan. Missing rules mean a CNI that masquerades turns our pods'
//! sources into the node's address, which the peer's gateway refuses.

use isthmus_dataplane::firewall::view::{TableView, diff};
use isthmus_dataplane::node_nat::{NODE_TABLE, render};

use super::{Inputs, capped, restart_route_agents};
use crate::inspect::diagnose::report::{Check, CheckId, Finding};

fn hint(i: &Inputs<'_>) -> String {
    format!(
        "The route agent of this node rebuilds table inet {NODE_TABLE} at its next resync. If it \
         keeps changing, another program rewrites nftables (find it with `nft monitor`); if it \
         never comes, the route agent does not run here: {}",
        restart_route_agents(i.target)
    )
}

/// The check.
pub fn check(i: &Inputs<'_>) -> Check {
    let have = match &i.facts.node_table {
        Ok(have) => have.as_ref(),
        Err(err) => {
            return Check::new(
                CheckId::NodeNat,
                vec![Finding::fail(
                    format!("cannot read table inet {NODE_TABLE}: {err}"),
                    "diagnose needs `nft` and the node's network namespace (hostNetwork)",
                )],
            );
        }
    };
    let plan = &i.desired.node_routes.nat;
    let findings = match (plan.is_empty(), have) {
        (true, None) => vec![Finding::ok(
            "no peer range routed here: no exemption needed",
        )],
        (true, Some(_)) => vec![Finding::warn(
            format!("table inet {NODE_TABLE} exists but no peer range is routed here: a leftover"),
            hint(i),
        )],
        (false, None) => vec![Finding::fail(
            format!(
                "table inet {NODE_TABLE} is missing: a CNI that masquerades rewrites our pods' \
                 sources for traffic to {} peer range(s), and the peers refuse them",
                plan.destinations.len()
            ),
            hint(i),
        )],
        (false, Some(have)) => {
            let want = TableView::from_batch(&render::render(plan), NODE_TABLE);
            let d = diff(&want, have);
            if d.is_empty() {
                vec![Finding::ok(format!(
                    "{} source range(s) to {} peer range(s) bound to their own source before any \
                     CNI masquerade",
                    plan.sources.len(),
                    plan.destinations.len()
                ))]
            } else {
                let mut out: Vec<Finding> = d
                    .missing_chains
                    .iter()
                    .map(|c| format!("chain {c} is missing"))
                    .chain(d.changed_chains.iter().map(|(c, w, h)| {
                        format!("chain {c} is `{h}`, the route agent wants `{w}`")
                    }))
                    .chain(
                        d.missing_rules
                            .iter()
                            .map(|r| format!("rule missing in {}: {}", r.chain, r.rule)),
                    )
                    .chain(
                        d.extra_rules
                            .iter()
                            .map(|r| format!("rule not ours in {}: {}", r.chain, r.rule)),
                    )
                    .chain(
                        d.reordered
                            .iter()
                            .map(|c| format!("chain {c}: rules out of order")),
                    )
                    .map(|m| Finding::fail(format!("table inet {NODE_TABLE}: {m}"), hint(i)))
                    .collect();
                if out.is_empty() {
                    out.push(Finding::fail(
                        format!("table inet {NODE_TABLE} differs from the route agent's plan"),
                        hint(i),
                    ));
                }
                capped(out, 8, "differences")
            }
        }
    };
    Check::new(CheckId::NodeNat, findings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::diagnose::checks::fixtures::World;
    use crate::inspect::diagnose::report::Status;

    #[test]
    fn the_route_agents_table_matches_its_plan() {
        let check = World::worker(true).check(CheckId::NodeNat);
        assert_eq!(check.status, Status::Ok, "{check:#?}");
        assert!(
            check.findings[0]
                .message
                .contains("bound to their own source"),
            "{check:#?}"
        );
    }

    #[test]
    fn a_missing_table_fails_and_names_the_masquerade() {
        let mut w = World::worker(false);
        w.facts.node_table = Ok(None);
        let check = w.check(CheckId::NodeNat);
        assert_eq!(check.status, Status::Fail);
        assert!(
            check.findings[0].message.contains("masquerades"),
            "{check:#?}"
        );
    }

    #[test]
    fn a_table_for_other_ranges_fails_with_its_rules() {
        let mut w = World::worker(true);
        let mut other = w.desired().node_routes.nat;
        other.destinations = vec!["10.99.0.0/16".parse().unwrap()];
        w.facts.node_table = Ok(Some(TableView::from_batch(
            &render::render(&other),
            NODE_TABLE,
        )));
        let check = w.check(CheckId::NodeNat);
        assert_eq!(check.status, Status::Fail, "{check:#?}");
        assert!(
            check
                .findings
                .iter()
                .any(|f| f.message.contains("rule missing")),
            "{check:#?}"
        );
    }

    #[test]
    fn it_does_not_run_on_the_gateway_node() {
        let report = World::healthy().report();
        assert!(report.check(CheckId::NodeNat).is_none());
    }
}
