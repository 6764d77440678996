//! Our nftables table as comparable data ([`TableView`]), read either from a rendered batch
//! ([`TableView::from_batch`]: what we asked for) or from `nft -j list table` ([`TableView::from_listing`]:
//! what the kernel holds), and the pure [`diff`] between the two. No I/O.
//!
//! Rules are compared as text in `nft list` style (`iifname "wg-b" ip saddr 10.110.0.0/24 dnat ip
//! to ip daddr map @dnat_cluster_a`), which is also how they are reported. Counter values and
//! object handles are ignored; a statement this module does not know is kept as compact JSON, so
//! a foreign rule is still seen (as an extra rule) rather than silently skipped.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// A table: base or regular chains with their rules, and maps (or sets) with their elements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableView {
    /// Chains by name.
    pub chains: BTreeMap<String, ChainView>,
    /// Maps and sets by name.
    pub maps: BTreeMap<String, MapView>,
}

/// One chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainView {
    /// `type nat hook prerouting priority -100 policy accept` for a base chain, `None` otherwise.
    pub base: Option<String>,
    /// Rule texts in order.
    pub rules: Vec<String>,
}

/// One map (or set).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapView {
    /// `ipv4_addr : ipv4_addr` (a set: just the key type).
    pub types: String,
    /// Key → value (empty for set elements).
    pub elements: BTreeMap<String, String>,
}

/// One map element.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Element {
    /// The map.
    pub map: String,
    /// Its key.
    pub key: String,
    /// Its value.
    pub value: String,
}

/// An element present in both, with different values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedElement {
    /// The map.
    pub map: String,
    /// The key.
    pub key: String,
    /// The value asked for.
    pub want: String,
    /// The value found.
    pub have: String,
}

/// A rule in one chain.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChainRule {
    /// The chain.
    pub chain: String,
    /// The rule text.
    pub rule: String,
}

/// What differs between the wanted table and the one found (each list sorted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableDiff {
    /// Chains asked for and absent.
    pub missing_chains: Vec<String>,
    /// Chains found and not asked for.
    pub extra_chains: Vec<String>,
    /// Chains whose type, hook, priority or policy differ: `(chain, want, have)`.
    pub changed_chains: Vec<(String, String, String)>,
    /// Rules asked for and absent (per occurrence).
    pub missing_rules: Vec<ChainRule>,
    /// Rules found and not asked for.
    pub extra_rules: Vec<ChainRule>,
    /// Chains holding exactly the wanted rules in another order (order matters: the map
    /// lookup must come before the prefix DNAT).
    pub reordered: Vec<String>,
    /// Maps asked for and absent.
    pub missing_maps: Vec<String>,
    /// Maps found and not asked for.
    pub extra_maps: Vec<String>,
    /// Maps whose key or value type differ: `(map, want, have)`.
    pub changed_maps: Vec<(String, String, String)>,
    /// Elements asked for and absent (in maps that exist).
    pub missing_elements: Vec<Element>,
    /// Elements found and not asked for.
    pub extra_elements: Vec<Element>,
    /// Elements whose value differs.
    pub changed_elements: Vec<ChangedElement>,
}

impl TableDiff {
    /// True when the kernel holds exactly what was asked for.
    pub fn is_empty(&self) -> bool {
        *self == TableDiff::default()
    }
}

fn is_ours(object: &Value, family: &str, table: &str) -> bool {
    object["family"].as_str() == Some(family) && object["table"].as_str() == Some(table)
}

impl TableView {
    /// What applying `batch` (as [`render`](super::render) builds it) to an empty kernel leaves
    /// in table `inet <table>`: `add`s build it up, `delete table` empties it, element deletes
    /// remove elements.
    pub fn from_batch(batch: &Value, table: &str) -> TableView {
        let mut view = TableView::default();
        for command in batch["nftables"].as_array().into_iter().flatten() {
            if let Some(object) = command.get("add").or_else(|| command.get("create")) {
                view.add(object, table);
            } else if let Some(object) = command.get("delete") {
                view.delete(object, table);
            } else if let Some(object) = command.get("flush") {
                view.flush(object, table);
            }
        }
        view
    }

    /// The table `inet <table>` in an `nft -j list table inet <table>` (or whole-ruleset) listing.
    pub fn from_listing(listing: &Value, table: &str) -> TableView {
        let mut view = TableView::default();
        for object in listing["nftables"].as_array().into_iter().flatten() {
            view.add(object, table);
        }
        view
    }

    fn add(&mut self, object: &Value, table: &str) {
        if let Some(chain) = object.get("chain").filter(|c| is_ours(c, "inet", table)) {
            let name = text(&chain["name"]);
            let entry = self.chains.entry(name).or_default();
            if chain.get("hook").is_some() {
                entry.base = Some(chain_base(chain));
            }
        } else if let Some(rule) = object.get("rule").filter(|r| is_ours(r, "inet", table)) {
            let exprs = rule["expr"].as_array().map(Vec::as_slice).unwrap_or(&[]);
            self.chains
                .entry(text(&rule["chain"]))
                .or_default()
                .rules
                .push(rule_text(exprs));
        } else if let Some(map) = object
            .get("map")
            .or_else(|| object.get("set"))
            .filter(|m| is_ours(m, "inet", table))
        {
            let entry = self.maps.entry(text(&map["name"])).or_default();
            entry.types = map_types(map);
            entry.elements.extend(elements(&map["elem"]));
        } else if let Some(element) = object.get("element").filter(|e| is_ours(e, "inet", table)) {
            let entry = self.maps.entry(text(&element["name"])).or_default();
            entry.elements.extend(elements(&element["elem"]));
        }
    }

    fn delete(&mut self, object: &Value, table: &str) {
        if let Some(t) = object.get("table") {
            if t["family"].as_str() == Some("inet") && t["name"].as_str() == Some(table) {
                *self = TableView::default();
            }
        } else if let Some(element) = object.get("element").filter(|e| is_ours(e, "inet", table))
            && let Some(map) = self.maps.get_mut(&text(&element["name"]))
        {
            for (key, _) in elements(&element["elem"]) {
                map.elements.remove(&key);
            }
        }
    }

    fn flush(&mut self, object: &Value, table: &str) {
        if let Some(t) = object.get("table")
            && t["family"].as_str() == Some("inet")
            && t["name"].as_str() == Some(table)
        {
            self.chains.values_mut().for_each(|c| c.rules.clear());
            self.maps.values_mut().for_each(|m| m.elements.clear());
        }
    }
}

fn chain_base(chain: &Value) -> String {
    let mut out = format!(
        "type {} hook {} priority {}",
        text(&chain["type"]),
        text(&chain["hook"]),
        text(&chain["prio"])
    );
    if let Some(policy) = chain["policy"].as_str() {
        out.push_str(&format!(" policy {policy}"));
    }
    out
}

fn map_types(map: &Value) -> String {
    let key = type_text(&map["type"]);
    match map.get("map") {
        Some(value) => format!("{key} : {}", type_text(value)),
        None => key,
    }
}

fn type_text(value: &Value) -> String {
    match value {
        Value::Array(parts) => parts.iter().map(text).collect::<Vec<_>>().join(" . "),
        other => text(other),
    }
}

/// `[[key, value], …]` or `[key, …]` (sets), each side maybe wrapped as `{"elem": {"val": …}}`.
fn elements(elem: &Value) -> Vec<(String, String)> {
    let unwrap = |v: &Value| match v.get("elem") {
        Some(inner) => inner["val"].clone(),
        None => v.clone(),
    };
    elem.as_array()
        .into_iter()
        .flatten()
        .map(|entry| match entry.as_array() {
            Some(pair) if pair.len() == 2 => {
                (expr_text(&unwrap(&pair[0])), expr_text(&unwrap(&pair[1])))
            }
            _ => (expr_text(&unwrap(entry)), String::new()),
        })
        .collect()
}

/// A JSON string as plain text, anything else as compact JSON.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One rule in `nft list` style.
pub fn rule_text(exprs: &[Value]) -> String {
    exprs
        .iter()
        .map(statement_text)
        .collect::<Vec<_>>()
        .join(" ")
}

fn statement_text(stmt: &Value) -> String {
    let Some((kind, body)) = stmt.as_object().and_then(|o| o.iter().next()) else {
        return stmt.to_string();
    };
    match kind.as_str() {
        "match" => match_text(body),
        "dnat" | "snat" => nat_text(kind, body),
        "mangle" => format!(
            "{} set {}",
            expr_text(&body["key"]),
            expr_text(&body["value"])
        ),
        "accept" | "drop" | "continue" | "return" | "masquerade" | "notrack" => kind.clone(),
        "counter" => "counter".into(),
        "jump" | "goto" => format!("{kind} {}", text(&body["target"])),
        _ => stmt.to_string(),
    }
}

fn match_text(body: &Value) -> String {
    let left = &body["left"];
    let interface_name = matches!(
        left["meta"]["key"].as_str(),
        Some("iifname" | "oifname" | "iif" | "oif")
    );
    let right = match (&body["right"], interface_name) {
        (Value::String(name), true) => format!("{name:?}"),
        (other, _) => expr_text(other),
    };
    match body["op"].as_str() {
        None | Some("==" | "in") => format!("{} {right}", expr_text(left)),
        Some(op) => format!("{} {op} {right}", expr_text(left)),
    }
}

fn flags(value: &Value) -> BTreeSet<String> {
    match value {
        Value::String(s) => [s.clone()].into(),
        Value::Array(list) => list.iter().map(text).collect(),
        _ => BTreeSet::new(),
    }
}

fn nat_text(kind: &str, body: &Value) -> String {
    let mut out = kind.to_owned();
    if let Some(family) = body["family"].as_str() {
        out.push_str(&format!(" {family}"));
    }
    let mut flag_set = flags(&body["flags"]);
    let type_flags = flags(&body["type_flags"]);
    if type_flags.contains("prefix") {
        out.push_str(" prefix");
        // nft prints a prefix translation with `netmap` as plain `prefix to`.
        flag_set.remove("netmap");
    }
    if !body["addr"].is_null() {
        out.push_str(&format!(" to {}", expr_text(&body["addr"])));
    }
    if !body["port"].is_null() {
        out.push_str(&format!(":{}", expr_text(&body["port"])));
    }
    if !flag_set.is_empty() {
        out.push_str(&format!(
            " {}",
            flag_set.into_iter().collect::<Vec<_>>().join(",")
        ));
    }
    out
}

fn expr_text(expr: &Value) -> String {
    match expr {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Array(list) => list.iter().map(expr_text).collect::<Vec<_>>().join(" . "),
        Value::Object(object) => match object.iter().next() {
            Some((kind, body)) if object.len() == 1 => named_expr_text(kind, body, expr),
            _ => expr.to_string(),
        },
        Value::Null => String::new(),
    }
}

fn named_expr_text(kind: &str, body: &Value, whole: &Value) -> String {
    match kind {
        "meta" => match body["key"].as_str() {
            Some(key @ ("iifname" | "oifname" | "iif" | "oif" | "mark" | "l4proto")) => {
                key.to_owned()
            }
            _ => format!("meta {}", text(&body["key"])),
        },
        "payload" => format!("{} {}", text(&body["protocol"]), text(&body["field"])),
        "prefix" => format!("{}/{}", expr_text(&body["addr"]), text(&body["len"])),
        "range" => match body.as_array() {
            Some(ends) if ends.len() == 2 => {
                format!("{}-{}", expr_text(&ends[0]), expr_text(&ends[1]))
            }
            _ => whole.to_string(),
        },
        "map" => format!(
            "{} map {}",
            expr_text(&body["key"]),
            expr_text(&body["data"])
        ),
        "set" => {
            let items: Vec<String> = body
                .as_array()
                .into_iter()
                .flatten()
                .map(expr_text)
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
        "tcp option" => format!(
            "tcp option {} {}",
            text(&body["name"]),
            text(&body["field"])
        ),
        "rt" => format!("rt {}", text(&body["key"])),
        "ct" => format!("ct {}", text(&body["key"])),
        _ => whole.to_string(),
    }
}

/// Removes one occurrence of each item of `take` from `from`; what is left of `from`.
fn minus(from: &[String], take: &[String]) -> Vec<String> {
    let mut left: Vec<String> = from.to_vec();
    for item in take {
        if let Some(pos) = left.iter().position(|x| x == item) {
            left.remove(pos);
        }
    }
    left
}

/// What `have` lacks of `want` and holds beyond it.
pub fn diff(want: &TableView, have: &TableView) -> TableDiff {
    let mut out = TableDiff::default();
    for (name, w) in &want.chains {
        let Some(h) = have.chains.get(name) else {
            out.missing_chains.push(name.clone());
            continue;
        };
        if w.base != h.base {
            let show = |b: &Option<String>| b.clone().unwrap_or_else(|| "regular chain".into());
            out.changed_chains
                .push((name.clone(), show(&w.base), show(&h.base)));
        }
        let missing = minus(&w.rules, &h.rules);
        let extra = minus(&h.rules, &w.rules);
        if missing.is_empty() && extra.is_empty() && w.rules != h.rules {
            out.reordered.push(name.clone());
        }
        let tag = |rule: String| ChainRule {
            chain: name.clone(),
            rule,
        };
        out.missing_rules.extend(missing.into_iter().map(tag));
        out.extra_rules.extend(extra.into_iter().map(tag));
    }
    for (name, h) in &have.chains {
        if !want.chains.contains_key(name) {
            out.extra_chains.push(name.clone());
            out.extra_rules.extend(h.rules.iter().map(|rule| ChainRule {
                chain: name.clone(),
                rule: rule.clone(),
            }));
        }
    }
    diff_maps(want, have, &mut out);
    out
}

fn diff_maps(want: &TableView, have: &TableView, out: &mut TableDiff) {
    let element = |map: &str, key: &str, value: &str| Element {
        map: map.to_owned(),
        key: key.to_owned(),
        value: value.to_owned(),
    };
    for (name, w) in &want.maps {
        let Some(h) = have.maps.get(name) else {
            out.missing_maps.push(name.clone());
            continue;
        };
        if w.types != h.types {
            out.changed_maps
                .push((name.clone(), w.types.clone(), h.types.clone()));
        }
        for (key, value) in &w.elements {
            match h.elements.get(key) {
                None => out.missing_elements.push(element(name, key, value)),
                Some(found) if found != value => out.changed_elements.push(ChangedElement {
                    map: name.clone(),
                    key: key.clone(),
                    want: value.clone(),
                    have: found.clone(),
                }),
                Some(_) => {}
            }
        }
        for (key, value) in &h.elements {
            if !w.elements.contains_key(key) {
                out.extra_elements.push(element(name, key, value));
            }
        }
    }
    out.extra_maps = have
        .maps
        .keys()
        .filter(|name| !want.maps.contains_key(*name))
        .cloned()
        .collect();
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
