//! The checks: pure functions from what the resources ask for ([`Desired`], [`Role`]), what the
//! node holds ([`NodeFacts`]) and the time, to one [`Check`] each. No I/O; unit-tested with the
//! fixtures below.
//!
//! On the gateway node every check but the node NAT exemption runs; on another node only those about that node's own
//! routes and ranges (and what the gateway reports), the rest is listed as skipped.

pub mod backend;
pub mod mtu;
pub mod nftables;
pub mod node_nat;
pub mod overlap;
pub mod overlay;
pub mod routes;
pub mod udp;

#[cfg(test)]
pub(crate) mod fixtures;

use std::time::{Duration, SystemTime};

use super::desired::{Desired, Role, Target};
use super::facts::NodeFacts;
use super::report::{Check, CheckId, Finding, Status};

/// Everything a check may look at.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    pub target: &'a Target,
    pub role: &'a Role,
    pub desired: &'a Desired,
    pub facts: &'a NodeFacts,
    pub now: SystemTime,
}

/// Runs the checks that apply to this node's role; also returns what was skipped and why.
pub fn run(inputs: &Inputs<'_>) -> (Vec<Check>, Vec<String>) {
    let mut checks = vec![backend::check(inputs)];
    let mut skipped = Vec::new();
    if inputs.role.gateway {
        checks.push(mtu::check(inputs));
        checks.push(nftables::check(inputs));
    } else {
        let gateway = inputs
            .role
            .gateway_node
            .clone()
            .unwrap_or_else(|| "the gateway node".into());
        for id in [CheckId::Mtu, CheckId::Nftables, CheckId::GatewayUdp] {
            skipped.push(format!(
                "{}: only on the gateway node (run diagnose on {gateway})",
                id.title()
            ));
        }
    }
    checks.push(routes::check(inputs));
    checks.push(overlap::check(inputs));
    checks.push(overlay::check(inputs));
    if inputs.role.gateway {
        checks.push(udp::check(inputs));
        skipped.push(format!(
            "{}: not on the gateway node (the gateway's own table binds its pods' traffic)",
            CheckId::NodeNat.title()
        ));
    } else {
        checks.push(node_nat::check(inputs));
    }
    (checks, skipped)
}

/// At most `max` of `findings`; the rest become one finding (`… and N more what`) with the
/// worst status and the hint of the first one left out.
pub(crate) fn capped(mut findings: Vec<Finding>, max: usize, what: &str) -> Vec<Finding> {
    if findings.len() <= max {
        return findings;
    }
    let rest = findings.split_off(max);
    let status = rest.iter().map(|f| f.status).max().unwrap_or(Status::Ok);
    findings.push(Finding {
        status,
        message: format!("… and {} more {what}", rest.len()),
        hint: rest[0].hint.clone(),
    });
    findings
}

/// `42s`, `3m05s`, `2h10m`: a duration for people.
pub(crate) fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// How to restart the gateway: on a cluster installed by the Helm chart, or in the lab.
pub(crate) fn restart_gateway(target: &Target) -> String {
    match &target.lab {
        Some(lab) => lab.restart(),
        None => format!(
            "kubectl -n {} rollout restart deployment -l app.kubernetes.io/component=gateway",
            target.namespace
        ),
    }
}

/// How to restart the route agents.
pub(crate) fn restart_route_agents(target: &Target) -> String {
    match &target.lab {
        Some(lab) => lab.restart(),
        None => format!(
            "kubectl -n {} rollout restart daemonset -l app.kubernetes.io/component=route-agent",
            target.namespace
        ),
    }
}

/// Where the gateway's logs are.
pub(crate) fn gateway_logs(target: &Target) -> String {
    match &target.lab {
        Some(lab) => format!("the lab's log, {}", lab.log.display()),
        None => format!(
            "kubectl -n {} logs deployment -l app.kubernetes.io/component=gateway",
            target.namespace
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lists_are_capped_with_a_count() {
        let many: Vec<Finding> = (0..5)
            .map(|i| Finding::fail(format!("x{i}"), "h"))
            .collect();
        let out = capped(many, 3, "missing entries");
        assert_eq!(out.len(), 4);
        assert_eq!(out[3].message, "… and 2 more missing entries");
        assert_eq!(out[3].status, Status::Fail);
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(Duration::from_secs(42)), "42s");
        assert_eq!(age(Duration::from_secs(185)), "3m05s");
        assert_eq!(age(Duration::from_secs(7800)), "2h10m");
    }
}
