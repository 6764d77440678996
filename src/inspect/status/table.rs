//! `-o table`: the report for people. The summary line first, then the local networks and IPAM
//! usage, the peers (state, handshake age, RTT, bytes, NatMapping entries, and why a peer is not
//! connected), how each side addresses the other, and the warnings. Columns are sized to their
//! content so a few peers fit in 80 columns. Pure.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::inspect::status::human;
use crate::inspect::status::report::{
    LocalNetworks, NatViews, PeerState, PeerStatus, RangeView, StatusReport, Usage,
};

/// The whole table output.
pub fn render(r: &StatusReport) -> String {
    let mut out = String::new();
    let cluster = r.cluster_id.as_deref().unwrap_or("(ID unknown)");
    let _ = writeln!(out, "cluster {cluster}: {}", r.summary.text);
    let _ = writeln!(
        out,
        "  read from {} namespace {} at {}",
        r.server, r.namespace, r.generated_at
    );
    if let Some(local) = &r.local {
        out.push('\n');
        out.push_str(&render_local(local, r.usage.as_ref(), &r.peers));
    }
    if !r.peers.is_empty() {
        out.push('\n');
        out.push_str(&render_peers(&r.peers));
    }
    if r.peers.iter().any(|p| p.nat != NatViews::default()) {
        out.push('\n');
        out.push_str(&render_addressing(&r.peers));
    }
    if !r.warnings.is_empty() {
        out.push_str("\nWARNINGS\n");
        for w in &r.warnings {
            let _ = writeln!(out, "  ! {w}");
        }
    }
    out
}

/// Rows aligned under headers; `right` marks right-aligned columns. Trailing spaces trimmed.
pub fn align(headers: &[&str], rows: &[Vec<String>], right: &[bool]) -> Vec<String> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i > 0 {
                s.push_str("  ");
            }
            if right.get(i).copied().unwrap_or(false) {
                s.push_str(&" ".repeat(pad));
                s.push_str(cell);
            } else {
                s.push_str(cell);
                s.push_str(&" ".repeat(pad));
            }
        }
        s.trim_end().to_owned()
    };
    std::iter::once(line(headers.to_vec()))
        .chain(
            rows.iter()
                .map(|r| line(r.iter().map(String::as_str).collect())),
        )
        .collect()
}

fn render_local(l: &LocalNetworks, usage: Option<&Usage>, peers: &[PeerStatus]) -> String {
    let mut out = String::from("LOCAL\n");
    let opt = |c: Option<isthmus_api::Cidr>| c.map_or("-".to_owned(), |c| c.to_string());
    let _ = writeln!(out, "  Pod CIDR      {}", l.pod_cidr);
    let _ = writeln!(out, "  Service CIDR  {}", opt(l.service_cidr));
    let mut ext = format!("  ExternalCIDR  {}", l.external_cidr);
    if let Some(e) = usage.map(|u| &u.external) {
        let _ = write!(
            ext,
            "  {} of {} mapped ({}), {} free",
            e.allocated,
            e.capacity,
            human::percent(e.allocated, e.capacity),
            e.available
        );
    }
    let _ = writeln!(out, "{ext}");
    if let Some(u) = usage {
        let rows: Vec<Vec<String>> = u
            .pools
            .iter()
            .map(|p| {
                let n = p.networks.len();
                vec![
                    p.cidr.to_string(),
                    format!("{}/{}", p.allocated, p.size),
                    format!("({})", human::percent(p.allocated, p.size)),
                    format!("{n} network{}", if n == 1 { "" } else { "s" }),
                ]
            })
            .collect();
        for (i, line) in align(&["", "", "", ""], &rows, &[false, true, true])
            .iter()
            .skip(1)
            .enumerate()
        {
            let label = if i == 0 { "Pools" } else { "" };
            let _ = writeln!(out, "  {label:<12}  {line}");
        }
    }
    if !l.reserved.is_empty() {
        let list: Vec<String> = l.reserved.iter().map(|c| c.to_string()).collect();
        let _ = writeln!(out, "  Reserved      {}", list.join(", "));
    }
    out.push_str(&render_gateways(peers));
    out
}

/// One line per distinct gateway the TunnelEndpoints report (normally exactly one).
fn render_gateways(peers: &[PeerStatus]) -> String {
    let mut gateways: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for p in peers
        .iter()
        .filter(|p| p.gateway_node.is_some() || p.backend.is_some())
    {
        let ip = p.gateway_ip.map(|i| format!(" {i}")).unwrap_or_default();
        let backend = p.backend.as_deref().unwrap_or("?");
        let iface = p
            .interface
            .as_deref()
            .map(|i| format!(" on {i}"))
            .unwrap_or_default();
        let node = p.gateway_node.as_deref().unwrap_or("?");
        let key = format!("{node}{ip}, WireGuard {backend}{iface}");
        gateways.entry(key).or_default().push(&p.cluster_id);
    }
    let single = gateways.len() == 1;
    let mut out = String::new();
    for (i, (gw, who)) in gateways.iter().enumerate() {
        let label = if i == 0 { "Gateway" } else { "" };
        if single {
            let _ = writeln!(out, "  {label:<12}  {gw}");
        } else {
            let _ = writeln!(out, "  {label:<12}  {gw} (peers {})", who.join(", "));
        }
    }
    out
}

fn dash<T>(v: Option<T>, f: impl FnOnce(T) -> String) -> String {
    v.map_or("-".to_owned(), f)
}

fn render_peers(peers: &[PeerStatus]) -> String {
    let headers = ["PEER", "STATE", "HANDSHAKE", "RTT", "RX", "TX", "NATMAP"];
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|p| {
            vec![
                p.cluster_id.clone(),
                p.state.as_str().to_owned(),
                match (p.handshake_age_seconds, p.tunnel_endpoint) {
                    (Some(s), _) => human::age(s),
                    (None, true) => "never".to_owned(),
                    (None, false) => "-".to_owned(),
                },
                dash(p.rtt_ms, human::rtt_ms),
                dash(p.rx_bytes, human::bytes),
                dash(p.tx_bytes, human::bytes),
                p.nat_mappings.to_string(),
            ]
        })
        .collect();
    let right = [false, false, true, true, true, true, true];
    let lines = align(&headers, &rows, &right);
    let mut out = String::from("PEERS\n");
    out.push_str(&lines[0]);
    out.push('\n');
    for (p, line) in peers.iter().zip(&lines[1..]) {
        out.push_str(line);
        out.push('\n');
        out.push_str(&explain(p));
    }
    out
}

/// The lines under a peer's row: why it is not connected, and its warnings.
fn explain(p: &PeerStatus) -> String {
    let mut out = String::new();
    if p.state != PeerState::Connected {
        let why = match (&p.reason, &p.message) {
            (Some(r), Some(m)) => format!("{r}: {m}"),
            (Some(s), None) | (None, Some(s)) => s.clone(),
            (None, None) => String::new(),
        };
        if !why.is_empty() {
            let _ = writeln!(out, "  └ {why}");
        }
    }
    for w in &p.warnings {
        let _ = writeln!(out, "  ! {w}");
    }
    out
}

fn view(v: Option<&RangeView>) -> String {
    match v {
        Some(v) if v.remapped => format!("{}*", v.addressed_as),
        Some(v) => v.addressed_as.to_string(),
        None => "-".to_owned(),
    }
}

fn render_addressing(peers: &[PeerStatus]) -> String {
    let headers = [
        "PEER",
        "THEIR PODS AS",
        "THEIR EXT AS",
        "OUR PODS AS",
        "OUR EXT AS",
    ];
    let rows: Vec<Vec<String>> = peers
        .iter()
        .filter(|p| p.nat != NatViews::default())
        .map(|p| {
            vec![
                p.cluster_id.clone(),
                view(p.nat.peer_pods.as_ref()),
                view(p.nat.peer_external.as_ref()),
                view(p.nat.local_pods.as_ref()),
                view(p.nat.local_external.as_ref()),
            ]
        })
        .collect();
    let mut out = String::from(
        "ADDRESSING  THEIR: how we address the peer; OUR: how it addresses us; * remapped\n",
    );
    for line in align(&headers, &rows, &[]) {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
