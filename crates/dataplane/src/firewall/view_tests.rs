//! Tests of [`TableView`] and [`diff`]: the rendered hub table reads as `nft list` prints it, a
//! listing captured from the kernel (nft 1.0.6) reads the same, and every kind of drift shows.

use serde_json::{Value, json};

use super::*;
use crate::firewall::render::tests::hub_plan;
use crate::firewall::render::{render, render_elements};
use crate::firewall::{ElementChange, TABLE};

fn rendered() -> TableView {
    TableView::from_batch(&render(&hub_plan()), TABLE)
}

fn captured_listing() -> Value {
    let path = format!(
        "{}/src/firewall/snapshots/hub_gateway_listing.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_rendered_table_reads_as_nft_lists_it() {
    let view = rendered();
    assert_eq!(
        view.chains["prerouting"].base.as_deref(),
        Some("type nat hook prerouting priority -110 policy accept")
    );
    assert_eq!(
        view.chains["prerouting"].rules[..2],
        [
            r#"iifname "wg-b" ip saddr 10.110.0.0/24 dnat ip to ip daddr map @dnat_cluster_a"#,
            r#"iifname "wg-b" ip saddr 10.110.0.0/24 ip daddr 10.101.0.0/24 dnat ip prefix to 10.0.0.0/24"#,
        ]
    );
    assert_eq!(
        view.chains["postrouting"].rules[0],
        r#"iifname "wg-b" oifname "wg-b" ip daddr 10.110.0.0/24 snat ip to 10.201.0.1"#
    );
    assert_eq!(
        view.chains["forward"].rules,
        [
            r#"iifname "wg-b" tcp flags syn tcp option maxseg size set rt mtu"#,
            r#"oifname "wg-b" tcp flags syn tcp option maxseg size set rt mtu"#,
            r#"iifname "wg-b" accept"#,
            r#"oifname "wg-b" accept"#,
        ]
    );
    let map = &view.maps["dnat_cluster_a"];
    assert_eq!(map.types, "ipv4_addr : ipv4_addr");
    assert_eq!(map.elements["10.201.0.7"], "10.112.0.10");
    assert!(view.maps["dnat_cluster_c"].elements.is_empty());
}

#[test]
fn a_kernel_listing_reads_like_the_batch_it_came_from() {
    let listed = TableView::from_listing(&captured_listing(), TABLE);
    assert_eq!(listed, rendered());
    assert!(diff(&rendered(), &listed).is_empty());
}

#[test]
fn other_tables_in_a_listing_are_ignored() {
    let mut listing = captured_listing();
    listing["nftables"]
        .as_array_mut()
        .unwrap()
        .push(json!({"rule": {
            "family": "inet", "table": "other", "chain": "prerouting", "expr": [{"accept": null}]
        }}));
    assert_eq!(TableView::from_listing(&listing, TABLE), rendered());
}

#[test]
fn element_batches_and_table_deletes_are_replayed() {
    let change = ElementChange {
        map: "dnat_cluster_a".into(),
        upsert: vec![(
            "10.201.0.8".parse().unwrap(),
            "10.112.0.11".parse().unwrap(),
        )],
        delete: vec!["10.201.0.7".parse().unwrap()],
    };
    let mut batch = render(&hub_plan());
    let extra = render_elements(TABLE, &[change]);
    let list = batch["nftables"].as_array_mut().unwrap();
    list.extend(extra["nftables"].as_array().unwrap().iter().cloned());
    let view = TableView::from_batch(&batch, TABLE);
    let elements = &view.maps["dnat_cluster_a"].elements;
    assert_eq!(elements.len(), 1);
    assert_eq!(elements["10.201.0.8"], "10.112.0.11");
    let removal = crate::firewall::render::render_removal(TABLE);
    list_push(&mut batch, &removal);
    assert_eq!(TableView::from_batch(&batch, TABLE), TableView::default());
}

fn list_push(batch: &mut Value, more: &Value) {
    let list = batch["nftables"].as_array_mut().unwrap();
    list.extend(more["nftables"].as_array().unwrap().iter().cloned());
}

#[test]
fn a_deleted_element_a_changed_one_and_an_extra_one_are_told_apart() {
    let want = rendered();
    let mut have = want.clone();
    let elements = &mut have.maps.get_mut("dnat_cluster_a").unwrap().elements;
    elements.remove("10.201.0.7");
    have.maps
        .get_mut("dnat_cluster_c")
        .unwrap()
        .elements
        .insert("10.210.0.9".into(), "10.110.0.3".into());
    let d = diff(&want, &have);
    assert_eq!(
        d.missing_elements,
        [Element {
            map: "dnat_cluster_a".into(),
            key: "10.201.0.7".into(),
            value: "10.112.0.10".into()
        }]
    );
    assert_eq!(d.extra_elements.len(), 1);
    assert!(d.missing_rules.is_empty() && d.missing_maps.is_empty());

    let mut changed = want.clone();
    changed
        .maps
        .get_mut("dnat_cluster_a")
        .unwrap()
        .elements
        .insert("10.201.0.7".into(), "10.112.0.99".into());
    let d = diff(&want, &changed);
    assert_eq!(d.changed_elements.len(), 1);
    assert_eq!(d.changed_elements[0].have, "10.112.0.99");
}

#[test]
fn missing_extra_and_reordered_rules_and_chains() {
    let want = rendered();
    let mut have = want.clone();
    let pre = &mut have.chains.get_mut("prerouting").unwrap().rules;
    let gone = pre.remove(1);
    pre.push("meta mark 7 drop".into());
    have.chains.remove("forward");
    have.chains.insert(
        "foreign".into(),
        ChainView {
            base: None,
            rules: vec!["accept".into()],
        },
    );
    let d = diff(&want, &have);
    assert_eq!(d.missing_chains, ["forward"]);
    assert_eq!(d.extra_chains, ["foreign"]);
    assert_eq!(d.missing_rules[0].rule, gone);
    let extra: Vec<_> = d.extra_rules.iter().map(|r| r.rule.as_str()).collect();
    assert_eq!(extra, ["meta mark 7 drop", "accept"]);

    let mut swapped = want.clone();
    swapped
        .chains
        .get_mut("postrouting")
        .unwrap()
        .rules
        .swap(0, 1);
    let d = diff(&want, &swapped);
    assert_eq!(d.reordered, ["postrouting"]);
    assert!(d.missing_rules.is_empty() && d.extra_rules.is_empty());
}

#[test]
fn a_changed_hook_and_a_missing_map_show() {
    let want = rendered();
    let mut have = want.clone();
    have.chains.get_mut("forward").unwrap().base =
        Some("type filter hook forward priority 10 policy accept".into());
    have.maps.remove("dnat_cluster_c");
    let d = diff(&want, &have);
    assert_eq!(d.changed_chains[0].0, "forward");
    assert_eq!(d.missing_maps, ["dnat_cluster_c"]);
}

#[test]
fn unknown_statements_stay_visible_and_counters_ignore_their_values() {
    let exprs = [
        json!({"counter": {"packets": 12, "bytes": 3400}}),
        json!({"queue": {"num": 3}}),
    ];
    assert_eq!(rule_text(&exprs), r#"counter {"queue":{"num":3}}"#);
    let op = [json!({"match": {"op": "!=", "left": {"meta": {"key": "oifname"}}, "right": "lo"}})];
    assert_eq!(rule_text(&op), r#"oifname != "lo""#);
}
