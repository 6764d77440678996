//! Check 3, nftables (gateway node): our table `inet isthmus` as the kernel holds it against
//! the table the gateway's own renderer builds from the TunnelEndpoints and NatMappings —
//! missing or extra chains, rules and maps, and every DNAT map element that is missing, extra or
//! pointing elsewhere, each named with the peer (and NatMapping) it belongs to.

use isthmus_dataplane::firewall::NatPlan;
use isthmus_dataplane::firewall::view::{TableDiff, TableView, diff};

use super::{Inputs, capped, restart_gateway};
use crate::inspect::diagnose::desired::Target;
use crate::inspect::diagnose::report::{Check, CheckId, Finding};

/// Findings shown per kind of difference before the rest is counted.
const SHOWN: usize = 10;

fn table_gone_hint(target: &Target) -> String {
    format!(
        "The gateway rebuilds its table at its next resync (every probe interval, 5 s by default). If \
         it keeps disappearing, another program flushes nftables: a firewall manager (firewalld, ufw), \
         `nft flush ruleset` or an iptables-nft restore in a provisioning script, a CNI. Watch with \
         `nft monitor`. To rebuild now, restart the gateway: {}",
        restart_gateway(target)
    )
}

fn rules_hint(target: &Target) -> String {
    format!(
        "The gateway compares the whole table with what it applied at every resync (each probe \
         interval, 5 s by default) and rebuilds it on any difference. If this persists, something \
         other than isthmus keeps writing to table inet isthmus: find it with `nft monitor`. \
         Restart the gateway to rebuild the table now: {}",
        restart_gateway(target)
    )
}

fn elements_hint(target: &Target) -> String {
    format!(
        "The gateway's repair pass compares every map element with what it applied and rebuilds \
         the table at its next resync (each probe interval). If this persists, something edits \
         the map behind isthmus (find it with `nft monitor`) or the gateway is not running. \
         Restart the gateway to rebuild now: {}.",
        restart_gateway(target)
    )
}

/// `(peer a)`, `(MSS clamping)` …: what a rule is for.
fn annotate(rule: &str, nat: Option<&NatPlan>) -> String {
    if rule.contains("maxseg") {
        return "MSS clamping".into();
    }
    let tokens: Vec<&str> = rule.split_whitespace().collect();
    let peer = nat.and_then(|n| {
        n.peers.iter().find(|p| {
            p.ranges
                .iter()
                .any(|r| tokens.contains(&r.to_string().as_str()))
                || tokens.contains(&format!("@{}", p.map_name()).as_str())
        })
    });
    match peer {
        Some(p) => format!("peer {}", p.name),
        None if rule.ends_with("accept") => "forward accept".into(),
        None => "no peer".into(),
    }
}

fn map_peer(map: &str, nat: Option<&NatPlan>) -> String {
    nat.and_then(|n| n.peers.iter().find(|p| p.map_name() == map))
        .map_or_else(|| "no peer".into(), |p| p.name.clone())
}

/// Chains that exist and hold none of their rules (flushed): one finding each instead of a line
/// per rule.
fn emptied(d: &TableDiff, want: &TableView, have: &TableView) -> Vec<String> {
    want.chains
        .iter()
        .filter(|(name, w)| {
            !w.rules.is_empty() && have.chains.get(*name).is_some_and(|h| h.rules.is_empty())
        })
        .map(|(name, _)| name.clone())
        .filter(|name| d.missing_rules.iter().any(|r| &r.chain == name))
        .collect()
}

/// Chains and maps: missing or changed (`fail`), and those not ours (`warn`).
fn objects(d: &TableDiff, nat: Option<&NatPlan>, hint: &str) -> (Vec<Finding>, Vec<Finding>) {
    let fail = |m: String| Finding::fail(m, hint);
    let mut out = Vec::new();
    for chain in &d.missing_chains {
        out.push(fail(format!(
            "chain {chain} is missing, and with it all its rules"
        )));
    }
    for (chain, want, have) in &d.changed_chains {
        out.push(fail(format!(
            "chain {chain} is `{have}`; the gateway creates `{want}`"
        )));
    }
    for map in &d.missing_maps {
        out.push(fail(format!(
            "map {map} is missing (DNAT map of peer {}): its NatMapping entries do nothing",
            map_peer(map, nat)
        )));
    }
    for (map, want, have) in &d.changed_maps {
        out.push(fail(format!(
            "map {map} has type `{have}`; the gateway creates `{want}`"
        )));
    }
    let mut foreign = Vec::new();
    for chain in &d.extra_chains {
        foreign.push(Finding::warn(
            format!("chain {chain} in table inet isthmus was not created by isthmus"),
            hint,
        ));
    }
    for map in &d.extra_maps {
        foreign.push(Finding::warn(
            format!("map {map} in table inet isthmus belongs to no configured peer"),
            hint,
        ));
    }
    (out, foreign)
}

/// Rules: emptied chains, missing and foreign rules (capped), wrong order.
fn rules(
    d: &TableDiff,
    (want, have): (&TableView, &TableView),
    nat: Option<&NatPlan>,
    hint: &str,
) -> Vec<Finding> {
    let fail = |m: String| Finding::fail(m, hint);
    let empty = emptied(d, want, have);
    let mut out: Vec<Finding> = empty
        .iter()
        .map(|chain| {
            fail(format!(
                "chain {chain} is empty: all its {} rules are missing (flushed from outside?)",
                want.chains[chain].rules.len()
            ))
        })
        .collect();
    let mut listed: Vec<Finding> = d
        .missing_rules
        .iter()
        .filter(|r| !empty.contains(&r.chain))
        .map(|r| {
            let what = annotate(&r.rule, nat);
            fail(format!("chain {} lacks `{}` ({what})", r.chain, r.rule))
        })
        .collect();
    listed.extend(d.extra_rules.iter().map(|r| {
        fail(format!(
            "chain {} has a rule isthmus did not render: `{}`",
            r.chain, r.rule
        ))
    }));
    out.extend(capped(listed, SHOWN, "rule differences"));
    out.extend(d.reordered.iter().map(|chain| {
        fail(format!(
            "chain {chain} holds the right rules in the wrong order (a NatMapping lookup must come \
             before the prefix DNAT of the same peer)"
        ))
    }));
    out
}

fn elements(d: &TableDiff, nat: Option<&NatPlan>, target: &Target) -> Vec<Finding> {
    let hint = elements_hint(target);
    let mut out: Vec<Finding> = d
        .missing_elements
        .iter()
        .map(|e| {
            Finding::fail(
                format!(
                    "DNAT map {} lacks {} → {} (NatMapping of peer {})",
                    e.map,
                    e.key,
                    e.value,
                    map_peer(&e.map, nat)
                ),
                hint.clone(),
            )
        })
        .collect();
    out.extend(d.changed_elements.iter().map(|e| {
        Finding::fail(
            format!(
                "DNAT map {} sends {} to {}; the NatMapping of peer {} says {}",
                e.map,
                e.key,
                e.have,
                map_peer(&e.map, nat),
                e.want
            ),
            hint.clone(),
        )
    }));
    out.extend(d.extra_elements.iter().map(|e| {
        Finding::fail(
            format!(
                "DNAT map {} has {} → {}, which no NatMapping of peer {} asks for: packets to {} \
                 still reach {}",
                e.map,
                e.key,
                e.value,
                map_peer(&e.map, nat),
                e.key,
                e.value
            ),
            hint.clone(),
        )
    }));
    capped(out, SHOWN, "map element differences")
}

fn summary(want: &TableView) -> String {
    let rules: usize = want.chains.values().map(|c| c.rules.len()).sum();
    let elements: usize = want.maps.values().map(|m| m.elements.len()).sum();
    format!(
        "table inet isthmus matches the plan: {} chains, {rules} rules, {} DNAT maps with {elements} \
         NatMapping entries",
        want.chains.len(),
        want.maps.len()
    )
}

/// The check.
pub fn check(i: &Inputs<'_>) -> Check {
    let nat = i.desired.nat.as_ref();
    let findings = match (&i.facts.table, &i.desired.table) {
        (Err(err), _) => vec![Finding::fail(
            format!("cannot read nftables: {err}"),
            "diagnose needs root and the `nft` binary (package nftables) in the gateway's network \
             namespace",
        )],
        (Ok(None), None) => vec![Finding::ok(
            "no peer is configured and there is no table inet isthmus, as expected",
        )],
        (Ok(Some(_)), None) => vec![Finding::warn(
            "table inet isthmus exists although no peer is configured: a leftover",
            "The gateway removes it when it runs with no peer; if no gateway runs, delete it: \
             nft delete table inet isthmus",
        )],
        (Ok(None), Some(_)) => vec![Finding::fail(
            "table inet isthmus does not exist: no NAT toward any peer (packets leave with their \
             real addresses, NatMapping addresses lead nowhere)",
            table_gone_hint(i.target),
        )],
        (Ok(Some(have)), Some(want)) => {
            let mut d = diff(want, have);
            let mut out = Vec::new();
            if let Some(err) = &i.desired.nat_mappings_error {
                d.missing_elements.clear();
                d.extra_elements.clear();
                d.changed_elements.clear();
                out.push(Finding::warn(
                    format!(
                        "NatMappings could not be listed ({err}): DNAT map elements not compared"
                    ),
                    "Give diagnose's account `list` on natmappings (the gateway's has it: run \
                     diagnose in the gateway pod)",
                ));
            }
            if d.is_empty() {
                out.insert(0, Finding::ok(summary(want)));
            } else {
                let hint = rules_hint(i.target);
                let (broken, foreign) = objects(&d, nat, &hint);
                out.extend(broken);
                out.extend(rules(&d, (want, have), nat, &hint));
                out.extend(foreign);
                out.extend(elements(&d, nat, i.target));
            }
            out
        }
    };
    Check::new(CheckId::Nftables, findings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::diagnose::checks::fixtures::World;
    use crate::inspect::diagnose::report::Status;

    fn table(w: &mut World) -> &mut TableView {
        w.facts.table.as_mut().unwrap().as_mut().unwrap()
    }

    #[test]
    fn a_matching_table_is_ok_and_counted() {
        let check = World::healthy().check(CheckId::Nftables);
        assert_eq!(check.status, Status::Ok, "{check:#?}");
        assert_eq!(
            check.findings[0].message,
            "table inet isthmus matches the plan: 3 chains, 32 rules, 2 DNAT maps with 1 NatMapping entries"
        );
    }

    #[test]
    fn a_deleted_map_element_is_named_with_its_natmapping() {
        let mut w = World::healthy();
        table(&mut w)
            .maps
            .get_mut("dnat_a")
            .unwrap()
            .elements
            .clear();
        let check = w.check(CheckId::Nftables);
        assert_eq!(check.status, Status::Fail);
        assert_eq!(
            check.findings[0].message,
            "DNAT map dnat_a lacks 10.6.0.5 → 10.7.0.10 (NatMapping of peer a)"
        );
        assert!(
            check.findings[0]
                .hint
                .as_deref()
                .unwrap()
                .contains("compares every map element with what it applied")
        );
    }

    #[test]
    fn a_stale_and_a_redirected_element_fail() {
        let mut w = World::healthy();
        let map = &mut table(&mut w).maps.get_mut("dnat_a").unwrap().elements;
        map.insert("10.6.0.5".into(), "10.7.0.99".into());
        map.insert("10.6.0.9".into(), "10.7.0.11".into());
        let check = w.check(CheckId::Nftables);
        let messages: Vec<_> = check.findings.iter().map(|f| f.message.as_str()).collect();
        assert!(messages.contains(&"DNAT map dnat_a sends 10.6.0.5 to 10.7.0.99; the NatMapping of peer a says 10.7.0.10"), "{messages:?}");
        assert!(messages.iter().any(|m| {
            m.starts_with("DNAT map dnat_a has 10.6.0.9 → 10.7.0.11, which no NatMapping")
        }));
    }

    #[test]
    fn a_flushed_or_deleted_table_fails_with_who_may_have_done_it() {
        let mut w = World::healthy();
        w.facts.table = Ok(None);
        let check = w.check(CheckId::Nftables);
        assert_eq!(check.status, Status::Fail);
        assert!(
            check.findings[0]
                .message
                .starts_with("table inet isthmus does not exist")
        );
        assert!(
            check.findings[0]
                .hint
                .as_deref()
                .unwrap()
                .contains("nft monitor")
        );

        let mut w = World::healthy();
        let t = table(&mut w);
        t.chains.values_mut().for_each(|c| c.rules.clear());
        t.maps.values_mut().for_each(|m| m.elements.clear());
        let check = w.check(CheckId::Nftables);
        let messages: Vec<_> = check.findings.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "chain forward is empty: all its 4 rules are missing (flushed from outside?)",
                "chain postrouting is empty: all its 16 rules are missing (flushed from outside?)",
                "chain prerouting is empty: all its 12 rules are missing (flushed from outside?)",
                "DNAT map dnat_a lacks 10.6.0.5 → 10.7.0.10 (NatMapping of peer a)",
            ]
        );
    }

    #[test]
    fn missing_rules_are_named_with_their_peer_and_long_lists_are_capped() {
        let mut w = World::healthy();
        let t = table(&mut w);
        let pre = &mut t.chains.get_mut("prerouting").unwrap().rules;
        let first = pre.remove(0);
        let check = w.check(CheckId::Nftables);
        assert_eq!(
            check.findings[0].message,
            format!("chain prerouting lacks `{first}` (peer a)")
        );
        let mut w = World::healthy();
        let t = table(&mut w);
        for c in t.chains.values_mut() {
            c.rules.truncate(1);
        }
        let check = w.check(CheckId::Nftables);
        assert_eq!(check.with(Status::Fail).count(), SHOWN + 1, "{check:#?}");
        assert!(
            check.findings[SHOWN]
                .message
                .starts_with("… and 19 more rule differences")
        );
    }

    #[test]
    fn missing_chains_maps_extra_rules_and_order_fail() {
        let mut w = World::healthy();
        let t = table(&mut w);
        t.chains.remove("forward");
        t.maps.remove("dnat_c");
        t.chains
            .get_mut("postrouting")
            .unwrap()
            .rules
            .push("meta mark 7 drop".into());
        t.chains.get_mut("prerouting").unwrap().rules.swap(0, 1);
        let check = w.check(CheckId::Nftables);
        let messages: Vec<_> = check.findings.iter().map(|f| f.message.as_str()).collect();
        assert!(messages.contains(&"chain forward is missing, and with it all its rules"));
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with("map dnat_c is missing (DNAT map of peer c)"))
        );
        assert!(
            messages.contains(
                &"chain postrouting has a rule isthmus did not render: `meta mark 7 drop`"
            )
        );
        assert!(messages.iter().any(|m| m.starts_with("chain prerouting holds the right rules in the wrong order")));
    }

    #[test]
    fn unreadable_natmappings_warn_and_skip_the_elements() {
        let w = World::healthy();
        let mut resources = w.resources();
        resources.nat_mappings.clear();
        resources.nat_mappings_error = Some("forbidden".into());
        let report = crate::inspect::diagnose::evaluate(
            &w.target,
            &resources,
            &w.facts,
            crate::inspect::diagnose::checks::fixtures::now(),
            &w.key,
        );
        let check = report.check(CheckId::Nftables).unwrap();
        assert_eq!(check.status, Status::Warn, "{check:#?}");
        let warn = check.with(Status::Warn).next().unwrap();
        assert!(
            warn.message
                .starts_with("NatMappings could not be listed (forbidden)")
        );
    }

    #[test]
    fn an_unreadable_table_and_a_leftover_table() {
        let mut w = World::healthy();
        w.facts.table = Err("nft: not found".into());
        assert!(
            w.check(CheckId::Nftables).findings[0]
                .hint
                .as_deref()
                .unwrap()
                .contains("package nftables")
        );
        let mut w = World::healthy();
        let leftover = w.facts.table.clone();
        w.teps.clear();
        w.facts.table = leftover;
        w.target.node_name = None;
        let check = w.check(CheckId::Nftables);
        assert_eq!(check.status, Status::Warn, "{check:#?}");
    }
}
