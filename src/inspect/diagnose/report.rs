//! What `isthmus diagnose` reports: per check a verdict (`ok` / `warn` / `fail`) with findings,
//! each a message and, when something is wrong, how to fix it; rendered for people (a list
//! grouped by check) or as JSON (`-o json`). Pure.

use std::fmt::Write as _;

use serde::Serialize;

/// A verdict, ordered from good to bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }
}

/// One thing a check found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub status: Status,
    /// What is the case, concretely (addresses, names, numbers).
    pub message: String,
    /// How to fix it, for `warn` and `fail`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Finding {
    /// A finding without a hint.
    pub fn ok(message: impl Into<String>) -> Self {
        Finding {
            status: Status::Ok,
            message: message.into(),
            hint: None,
        }
    }

    /// A warning with its hint.
    pub fn warn(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Finding {
            status: Status::Warn,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    /// A failure with its hint.
    pub fn fail(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Finding {
            status: Status::Fail,
            message: message.into(),
            hint: Some(hint.into()),
        }
    }
}

/// The identity of a check (stable: scripts match on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckId {
    WireguardBackend,
    Mtu,
    Nftables,
    Routes,
    Overlap,
    GatewayUdp,
    Overlay,
    NodeNat,
}

impl CheckId {
    /// The heading people read.
    pub fn title(self) -> &'static str {
        match self {
            CheckId::WireguardBackend => "WireGuard backend",
            CheckId::Mtu => "MTU and MSS clamping",
            CheckId::Nftables => "nftables",
            CheckId::Routes => "routes",
            CheckId::Overlap => "overlapping ranges",
            CheckId::GatewayUdp => "gateway UDP reachability",
            CheckId::Overlay => "overlay to the gateway node",
            CheckId::NodeNat => "NAT exemption on this node",
        }
    }
}

/// One check's verdict: the worst of its findings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub id: CheckId,
    pub title: &'static str,
    pub status: Status,
    pub findings: Vec<Finding>,
}

impl Check {
    /// A check with its findings (at least one; an empty list reads as one `ok`).
    pub fn new(id: CheckId, mut findings: Vec<Finding>) -> Self {
        if findings.is_empty() {
            findings.push(Finding::ok("nothing to check"));
        }
        let status = findings
            .iter()
            .map(|f| f.status)
            .max()
            .unwrap_or(Status::Ok);
        Check {
            id,
            title: id.title(),
            status,
            findings,
        }
    }

    /// The findings of `status`.
    pub fn with(&self, status: Status) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.status == status)
    }
}

/// Where diagnose looked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Context {
    /// The API (URL, kubeconfig context, lab cluster).
    pub api: String,
    pub namespace: String,
    /// The node inspected (`--node-name`, the lab node), if known.
    pub node: Option<String>,
    /// `gateway` or `node`.
    pub role: String,
    /// Why that role.
    pub role_basis: String,
    pub interface: String,
    pub tunnel_endpoints: Vec<String>,
    pub nat_mappings: usize,
}

/// Counts of check verdicts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub ok: usize,
    pub warn: usize,
    pub fail: usize,
}

/// The whole diagnosis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub context: Context,
    pub checks: Vec<Check>,
    /// Checks not run on this node, with why.
    pub skipped: Vec<String>,
    pub summary: Summary,
}

impl Report {
    /// A report of `checks`.
    pub fn new(context: Context, checks: Vec<Check>, skipped: Vec<String>) -> Self {
        let mut summary = Summary::default();
        for check in &checks {
            match check.status {
                Status::Ok => summary.ok += 1,
                Status::Warn => summary.warn += 1,
                Status::Fail => summary.fail += 1,
            }
        }
        Report {
            context,
            checks,
            skipped,
            summary,
        }
    }

    /// Whether any check failed (the command then exits non-zero).
    pub fn failed(&self) -> bool {
        self.summary.fail > 0
    }

    /// The check `id`, if it ran.
    pub fn check(&self, id: CheckId) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// The report for people: context, then every check with its findings and fixes.
    pub fn render_text(&self) -> String {
        let c = &self.context;
        let mut out = String::new();
        let node = c.node.as_deref().unwrap_or("(this node)");
        let _ = writeln!(
            out,
            "isthmus diagnose: node {node}, {} role ({}), interface {}",
            c.role, c.role_basis, c.interface
        );
        let teps = if c.tunnel_endpoints.is_empty() {
            "none".to_owned()
        } else {
            c.tunnel_endpoints.join(", ")
        };
        let _ = writeln!(
            out,
            "API {}, namespace {}: TunnelEndpoints {teps}; {} NatMapping(s)\n",
            c.api, c.namespace, c.nat_mappings
        );
        for check in &self.checks {
            render_check(&mut out, check);
        }
        for skipped in &self.skipped {
            let _ = writeln!(out, "SKIP  {skipped}");
        }
        let s = self.summary;
        let _ = write!(
            out,
            "\n{} check(s): {} failed, {} with warnings, {} ok",
            self.checks.len(),
            s.fail,
            s.warn,
            s.ok
        );
        out
    }
}

fn render_check(out: &mut String, check: &Check) {
    let _ = writeln!(
        out,
        "{:<5} {}",
        check.status.label().to_uppercase(),
        check.title
    );
    for (i, finding) in check.findings.iter().enumerate() {
        let _ = writeln!(
            out,
            "      {:<5} {}",
            finding.status.label(),
            finding.message
        );
        let next_hint = check.findings.get(i + 1).and_then(|f| f.hint.as_deref());
        // A hint shared by consecutive findings is printed once, after the last of them.
        if let Some(hint) = finding.hint.as_deref()
            && next_hint != Some(hint)
        {
            for (j, line) in hint.lines().enumerate() {
                let lead = if j == 0 { "fix:" } else { "" };
                let _ = writeln!(out, "            {lead:<4} {line}");
            }
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> Report {
        let checks = vec![
            Check::new(CheckId::Routes, vec![Finding::ok("2 routes into isthmus0")]),
            Check::new(
                CheckId::Nftables,
                vec![
                    Finding::fail(
                        "map dnat_a lacks 10.70.0.5 → 10.0.1.7",
                        "restart the gateway",
                    ),
                    Finding::fail(
                        "map dnat_a lacks 10.70.0.6 → 10.0.1.8",
                        "restart the gateway",
                    ),
                ],
            ),
            Check::new(
                CheckId::WireguardBackend,
                vec![Finding::warn("userspace", "modprobe")],
            ),
        ];
        Report::new(
            Context::default(),
            checks,
            vec!["mtu: not the gateway node".into()],
        )
    }

    #[test]
    fn the_worst_finding_decides_and_any_fail_fails() {
        let r = report();
        assert_eq!(r.check(CheckId::Nftables).unwrap().status, Status::Fail);
        assert_eq!(
            r.summary,
            Summary {
                ok: 1,
                warn: 1,
                fail: 1
            }
        );
        assert!(r.failed());
        let fine = Report::new(Context::default(), vec![r.checks[0].clone()], vec![]);
        assert!(!fine.failed());
    }

    #[test]
    fn text_groups_findings_and_prints_a_shared_hint_once() {
        let text = report().render_text();
        assert!(text.contains("FAIL  nftables"), "{text}");
        assert!(
            text.contains("      fail  map dnat_a lacks 10.70.0.5 → 10.0.1.7"),
            "{text}"
        );
        assert_eq!(text.matches("restart the gateway").count(), 1, "{text}");
        assert!(text.contains("SKIP  mtu: not the gateway node"), "{text}");
        assert!(
            text.ends_with("3 check(s): 1 failed, 1 with warnings, 1 ok"),
            "{text}"
        );
    }

    #[test]
    fn json_names_checks_and_statuses_for_scripts() {
        let json = serde_json::to_value(report()).unwrap();
        assert_eq!(json["checks"][1]["id"], "nftables");
        assert_eq!(json["checks"][1]["status"], "fail");
        assert_eq!(json["checks"][0]["findings"][0].get("hint"), None);
        assert_eq!(json["summary"]["fail"], 1);
    }
}
