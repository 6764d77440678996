//! Pure rendering of a [`NatPlan`] into nftables JSON batches (no I/O; snapshot-tested).
//!
//! Objects are built with the `nftables` crate's types. The crate has no way to say "prefix NAT"
//! (`snat ip prefix to 10.110.0.0/24`, JSON `"flags": "netmap", "type_flags": "prefix"`), so those
//! two statements are appended to the serialized rule as raw JSON.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use nftables::expr::{
    Expression, Map, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix, RT, RTKey,
    TcpOption,
};
use nftables::schema::{
    self, Chain, NfCmd, NfListObject, NfObject, Rule, SetType, SetTypeValue, Table,
};
use nftables::stmt::{Mangle, Match, NAT, NATFamily, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use serde_json::{Value, json};

use super::{ElementChange, NatPlan, PeerNat};

const FAMILY: NfFamily = NfFamily::INet;
/// Chain names and what they hold.
pub const PREROUTING: &str = "prerouting";
/// Source NAT out to peers, transit SNAT.
pub const POSTROUTING: &str = "postrouting";
/// MSS clamping and forward accepts.
pub const FORWARD: &str = "forward";

/// Priority of our prerouting chain: `dstnat - 10`, before kube-proxy's and any CNI's DNAT at
/// `dstnat` (-100), so a packet from a peer is bound by our DNAT first (docs/datapath.md).
pub const DSTNAT_PRIORITY: i32 = -110;
/// Priority of our postrouting chain: `srcnat - 10`, before every masquerade a CNI installs at
/// `srcnat` (100). A connection gets one source NAT binding and the first nat chain to make it
/// wins, so every connection leaving through the tunnel is bound here (for real or to its own
/// source) and later chains are skipped for it (docs/datapath.md, "A CNI that masquerades").
pub const SRCNAT_PRIORITY: i32 = 90;

fn table(name: &str) -> NfListObject<'static> {
    NfListObject::Table(Table {
        family: FAMILY,
        name: name.to_owned().into(),
        handle: None,
    })
}

fn base_chain(
    table: &str,
    name: &'static str,
    kind: NfChainType,
    hook: NfHook,
    prio: i32,
) -> NfListObject<'static> {
    NfListObject::Chain(Chain {
        family: FAMILY,
        table: table.to_owned().into(),
        name: name.into(),
        _type: Some(kind),
        hook: Some(hook),
        prio: Some(prio),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    })
}

fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: field.into(),
        },
    )))
}

fn prefix(net: Ipv4Net) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(Expression::String(net.network().to_string().into())),
        len: u32::from(net.prefix_len()),
    }))
}

fn addr(ip: Ipv4Addr) -> Expression<'static> {
    Expression::String(ip.to_string().into())
}

fn iif(name: &str) -> Statement<'static> {
    eq(
        meta(MetaKey::Iifname),
        Expression::String(name.to_owned().into()),
    )
}

fn oif(name: &str) -> Statement<'static> {
    eq(
        meta(MetaKey::Oifname),
        Expression::String(name.to_owned().into()),
    )
}

fn rule(plan: &NatPlan, chain: &'static str, expr: Vec<Statement<'static>>) -> Value {
    let rule = NfListObject::Rule(Rule {
        family: FAMILY,
        table: plan.table.clone().into(),
        chain: chain.into(),
        expr: Cow::Owned(expr),
        handle: None,
        index: None,
        comment: None,
    });
    add(rule)
}

/// A rule whose last statement is raw JSON the crate cannot express.
fn rule_with_raw(
    plan: &NatPlan,
    chain: &'static str,
    expr: Vec<Statement<'static>>,
    raw: Value,
) -> Value {
    let mut value = rule(plan, chain, expr);
    value["add"]["rule"]["expr"]
        .as_array_mut()
        .expect("rule has expr")
        .push(raw);
    value
}

fn add(object: NfListObject<'static>) -> Value {
    serde_json::to_value(NfObject::CmdObject(NfCmd::Add(object)))
        .expect("nftables objects serialize")
}

fn prefix_nat(kind: &str, to: Ipv4Net) -> Value {
    json!({ kind: {
        "family": "ip",
        "addr": { "prefix": { "addr": to.network().to_string(), "len": to.prefix_len() } },
        "flags": "netmap",
        "type_flags": "prefix",
    }})
}

fn dnat_map(plan: &NatPlan, peer: &PeerNat) -> NfListObject<'static> {
    let elem: Vec<Expression<'static>> = peer
        .mappings
        .iter()
        .map(|(k, v)| Expression::List(vec![addr(*k), addr(*v)]))
        .collect();
    NfListObject::Map(Box::new(schema::Map {
        family: FAMILY,
        table: plan.table.clone().into(),
        name: peer.map_name().into(),
        set_type: SetTypeValue::Single(SetType::Ipv4Addr),
        map: SetTypeValue::Single(SetType::Ipv4Addr),
        elem: (!elem.is_empty()).then(|| Cow::Owned(elem)),
        ..schema::Map::default()
    }))
}

/// Prerouting, per peer range: NatMapping lookup first, then prefix DNAT of our ranges.
fn prerouting(plan: &NatPlan, peer: &PeerNat, out: &mut Vec<Value>) {
    for range in &peer.ranges {
        let lookup = Expression::Named(NamedExpression::Map(Box::new(Map {
            key: payload("ip", "daddr"),
            data: Expression::String(format!("@{}", peer.map_name()).into()),
        })));
        let dnat = NAT {
            addr: Some(lookup),
            family: Some(NATFamily::IP),
            port: None,
            flags: None,
        };
        let base = vec![
            iif(&plan.tunnel),
            eq(payload("ip", "saddr"), prefix(*range)),
        ];
        let mut expr = base.clone();
        expr.push(Statement::DNAT(Some(dnat)));
        out.push(rule(plan, PREROUTING, expr));
        for (real, view) in &peer.prefix_nat {
            let mut expr = base.clone();
            expr.push(eq(payload("ip", "daddr"), prefix(*view)));
            out.push(rule_with_raw(
                plan,
                PREROUTING,
                expr,
                prefix_nat("dnat", *real),
            ));
        }
    }
}

/// A null source NAT (`snat ip to ip saddr`): a binding that keeps the source as it is, so that
/// no later nat chain at the hook (a CNI's masquerade) rewrites it.
pub fn null_snat() -> Statement<'static> {
    Statement::SNAT(Some(NAT {
        addr: Some(payload("ip", "saddr")),
        family: Some(NATFamily::IP),
        port: None,
        flags: None,
    }))
}

/// Postrouting, per peer range: transit SNAT for tunnel-to-tunnel traffic, then prefix SNAT,
/// then a null SNAT for everything else into the tunnel (our ranges the peer took as-is, the
/// transit address), so every connection to the peer is bound before a CNI's masquerade runs.
fn postrouting(plan: &NatPlan, peer: &PeerNat, out: &mut Vec<Value>) {
    for range in &peer.ranges {
        let to_peer = vec![
            oif(&plan.tunnel),
            eq(payload("ip", "daddr"), prefix(*range)),
        ];
        if let Some(source) = peer.transit_snat {
            let mut expr = vec![iif(&plan.tunnel)];
            expr.extend(to_peer.clone());
            let snat = NAT {
                addr: Some(addr(source)),
                family: Some(NATFamily::IP),
                port: None,
                flags: None,
            };
            expr.push(Statement::SNAT(Some(snat)));
            out.push(rule(plan, POSTROUTING, expr));
        }
        for (real, view) in &peer.prefix_nat {
            let mut expr = to_peer.clone();
            expr.push(eq(payload("ip", "saddr"), prefix(*real)));
            out.push(rule_with_raw(
                plan,
                POSTROUTING,
                expr,
                prefix_nat("snat", *view),
            ));
        }
        let mut expr = to_peer;
        expr.push(null_snat());
        out.push(rule(plan, POSTROUTING, expr));
    }
}

/// MSS clamping both ways on the tunnel, and forward accepts.
fn forward(plan: &NatPlan, out: &mut Vec<Value>) {
    let syn = Statement::Match(Match {
        left: payload("tcp", "flags"),
        right: Expression::String("syn".into()),
        op: Operator::IN,
    });
    let clamp = Statement::Mangle(Mangle {
        key: Expression::Named(NamedExpression::TcpOption(TcpOption {
            name: "maxseg".into(),
            field: Some("size".into()),
        })),
        value: Expression::Named(NamedExpression::RT(RT {
            key: RTKey::MTU,
            family: None,
        })),
    });
    for side in [iif(&plan.tunnel), oif(&plan.tunnel)] {
        out.push(rule(
            plan,
            FORWARD,
            vec![side.clone(), syn.clone(), clamp.clone()],
        ));
    }
    for side in [iif(&plan.tunnel), oif(&plan.tunnel)] {
        out.push(rule(plan, FORWARD, vec![side, Statement::Accept(None)]));
    }
}

/// The whole table as one atomic batch: ensure, delete, recreate with every rule and element.
pub fn render(plan: &NatPlan) -> Value {
    let mut out = vec![
        add(table(&plan.table)),
        delete_table_cmd(&plan.table),
        add(table(&plan.table)),
    ];
    out.push(add(base_chain(
        &plan.table,
        PREROUTING,
        NfChainType::NAT,
        NfHook::Prerouting,
        DSTNAT_PRIORITY,
    )));
    out.push(add(base_chain(
        &plan.table,
        POSTROUTING,
        NfChainType::NAT,
        NfHook::Postrouting,
        SRCNAT_PRIORITY,
    )));
    out.push(add(base_chain(
        &plan.table,
        FORWARD,
        NfChainType::Filter,
        NfHook::Forward,
        0,
    )));
    for peer in &plan.peers {
        out.push(add(dnat_map(plan, peer)));
    }
    for peer in &plan.peers {
        prerouting(plan, peer, &mut out);
    }
    for peer in &plan.peers {
        postrouting(plan, peer, &mut out);
    }
    forward(plan, &mut out);
    json!({ "nftables": out })
}

fn delete_table_cmd(name: &str) -> Value {
    serde_json::to_value(NfObject::CmdObject(NfCmd::Delete(table(name)))).expect("serializes")
}

/// Removing the table: `add` first so the batch succeeds when it is already gone.
pub fn render_removal(table_name: &str) -> Value {
    json!({ "nftables": [add(table(table_name)), delete_table_cmd(table_name)] })
}

/// Map element changes as one batch: all deletions, then all additions.
pub fn render_elements(table_name: &str, changes: &[ElementChange]) -> Value {
    let element = |map: &str, elem: Vec<Expression<'static>>| schema::Element {
        family: FAMILY,
        table: table_name.to_owned().into(),
        name: map.to_owned().into(),
        elem: Cow::Owned(elem),
    };
    let mut out = Vec::new();
    for change in changes.iter().filter(|c| !c.delete.is_empty()) {
        let keys = change.delete.iter().map(|k| addr(*k)).collect();
        let cmd = NfCmd::Delete(NfListObject::Element(element(&change.map, keys)));
        out.push(serde_json::to_value(NfObject::CmdObject(cmd)).expect("serializes"));
    }
    for change in changes.iter().filter(|c| !c.upsert.is_empty()) {
        let pairs = change
            .upsert
            .iter()
            .map(|(k, v)| Expression::List(vec![addr(*k), addr(*v)]))
            .collect();
        out.push(add(NfListObject::Element(element(&change.map, pairs))));
    }
    json!({ "nftables": out })
}

/// How many rules each chain holds once `plan` is applied (checked against the kernel).
pub fn rule_counts(plan: &NatPlan) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    if let Some(objects) = render(plan)["nftables"].as_array() {
        for object in objects {
            if let Some(chain) = object["add"]["rule"]["chain"].as_str() {
                *counts.entry(chain.to_owned()).or_insert(0) += 1;
            }
        }
    }
    counts
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::firewall::TABLE;

    /// Gateway B of the hub test: peer A (with one NatMapping entry) and peer C.
    pub(crate) fn hub_plan() -> NatPlan {
        let net = |s: &str| s.parse::<Ipv4Net>().unwrap();
        NatPlan {
            table: TABLE.into(),
            tunnel: "wg-b".into(),
            peers: vec![
                PeerNat {
                    name: "cluster-a".into(),
                    ranges: vec![net("10.110.0.0/24")],
                    prefix_nat: vec![
                        (net("10.0.0.0/24"), net("10.101.0.0/24")),
                        (net("10.200.0.0/24"), net("10.201.0.0/24")),
                    ],
                    transit_snat: Some(Ipv4Addr::new(10, 201, 0, 1)),
                    mappings: [(Ipv4Addr::new(10, 201, 0, 7), Ipv4Addr::new(10, 112, 0, 10))]
                        .into(),
                },
                PeerNat {
                    name: "cluster-c".into(),
                    ranges: vec![net("10.112.0.0/24")],
                    prefix_nat: vec![
                        (net("10.0.0.0/24"), net("10.121.0.0/24")),
                        (net("10.200.0.0/24"), net("10.210.0.0/24")),
                    ],
                    transit_snat: Some(Ipv4Addr::new(10, 210, 0, 1)),
                    mappings: Default::default(),
                },
            ],
        }
    }

    fn check_snapshot(name: &str, value: &Value) {
        let path = format!(
            "{}/src/firewall/snapshots/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = serde_json::to_string_pretty(value).unwrap() + "\n";
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(&path, &text).unwrap();
        }
        let expected =
            std::fs::read_to_string(&path).expect("snapshot exists (UPDATE_SNAPSHOTS=1 writes it)");
        assert!(
            expected == text,
            "snapshot {name} differs; rerun with UPDATE_SNAPSHOTS=1 and review the diff"
        );
    }

    #[test]
    fn hub_gateway_ruleset_snapshot() {
        check_snapshot("hub_gateway", &render(&hub_plan()));
    }

    #[test]
    fn element_batch_snapshot() {
        let change = ElementChange {
            map: "dnat_cluster_a".into(),
            upsert: vec![(Ipv4Addr::new(10, 201, 0, 8), Ipv4Addr::new(10, 112, 0, 11))],
            delete: vec![Ipv4Addr::new(10, 201, 0, 7)],
        };
        check_snapshot("element_batch", &render_elements(TABLE, &[change]));
        check_snapshot("removal", &render_removal(TABLE));
    }

    #[test]
    fn rule_counts_per_chain() {
        let counts = rule_counts(&hub_plan());
        assert_eq!(counts[PREROUTING], 6);
        assert_eq!(counts[POSTROUTING], 8);
        assert_eq!(counts[FORWARD], 4);
    }
}
