//! Server-side apply (pure), at the leaf granularity described in [`crate::managed`]:
//!
//! 1. Every leaf in the applied configuration whose value differs from the live object and is
//!    owned by *another* manager (any operation), or overlaps such a leaf (a parent/child path),
//!    is a conflict. Conflicts fail the request with 409 unless `force=true`, which moves the
//!    leaves to the applier.
//! 2. Leaves the applier owned from its previous apply but left out of this configuration are
//!    removed from the object, unless another manager also owns them; emptied parent objects
//!    are removed with them.
//! 3. The configuration is merged in: objects recursively, scalars and lists replaced whole,
//!    except `metadata.finalizers` (a set) and `metadata.ownerReferences` (keyed by `uid`),
//!    whose elements merge one by one (live order first, new elements after), so managers own
//!    their own elements; `null` values and empty objects in the configuration are merged but
//!    never owned.
//! 4. The applier's `Apply` entry becomes exactly the configuration's leaves (never `.`
//!    markers); equal values stay shared with their other owners.

use std::collections::BTreeSet;
use std::ops::Bound;

use serde_json::Value;

use crate::managed::{self, FieldPath, ManagedEntry, Seg, Writer};

/// A field another manager owns with a different value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The leaf.
    pub path: FieldPath,
    /// Its current owner.
    pub manager: String,
}

impl Conflict {
    /// `.spec.port`-style rendering, as the API server writes conflict causes.
    pub fn field(&self) -> String {
        self.path.iter().map(Seg::display).collect()
    }
}

/// The merged object (with `managedFields` written) or the conflicts.
pub fn apply(
    live: &Value,
    config: &Value,
    w: &Writer<'_>,
    force: bool,
) -> Result<Value, Vec<Conflict>> {
    let empty_object = Value::Object(serde_json::Map::new());
    let cfg: managed::Leaves = managed::leaves(config)
        .into_iter()
        .filter(|(p, v)| !v.is_null() && *v != empty_object && p.last() != Some(&Seg::Itself))
        .collect();
    let live_leaves = managed::leaves(live);
    let mut entries = managed::read(live);
    let conflicts = find_conflicts(&cfg, &live_leaves, &entries, w.manager);
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    let is_writer = |e: &ManagedEntry| {
        e.manager == w.manager && e.operation == "Apply" && e.subresource == w.subresource
    };
    let previous: BTreeSet<FieldPath> = entries
        .iter()
        .filter(|e| is_writer(e))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let mut object = live.clone();
    for path in previous.iter().filter(|p| !cfg.contains_key(*p)) {
        let shared = entries
            .iter()
            .any(|e| !is_writer(e) && e.fields.contains(path));
        if !shared {
            remove_path(&mut object, path);
        }
    }
    merge_into(&mut object, config);
    let taken: BTreeSet<FieldPath> = conflicts.iter().map(|c| c.path.clone()).collect();
    for e in entries.iter_mut().filter(|e| !is_writer(e)) {
        e.fields.retain(|f| !taken.contains(f));
    }
    entries.retain(|e| !is_writer(e));
    let present = managed::leaves(&object);
    for e in &mut entries {
        e.fields.retain(|f| present.contains_key(f));
    }
    entries.push(ManagedEntry {
        manager: w.manager.into(),
        operation: "Apply".into(),
        subresource: w.subresource.into(),
        api_version: w.api_version.into(),
        time: w.time.into(),
        fields: cfg.into_keys().collect(),
    });
    entries.retain(|e| !e.fields.is_empty());
    managed::write(&mut object, &entries);
    Ok(object)
}

/// The first path of a sorted set that `path` extends or that extends `path` (in the set's
/// order), by lookups instead of a scan: the paths extending `path` sort right after it, and
/// the ones it extends are its own prefixes. A scan made every new map key cost the size of
/// the object, and an apply that adds k keys to an object of n, k × n comparisons.
fn first_overlap<'a, I, R>(path: &FieldPath, contains: I, from: R) -> Option<&'a FieldPath>
where
    I: Fn(&[Seg]) -> Option<&'a FieldPath>,
    R: FnOnce(&FieldPath) -> Option<&'a FieldPath>,
{
    (0..=path.len())
        .find_map(|len| contains(&path[..len]))
        .or_else(|| from(path).filter(|k| k.starts_with(path)))
}

fn overlap_in_leaves<'a>(live: &'a managed::Leaves, path: &FieldPath) -> Option<&'a FieldPath> {
    first_overlap(
        path,
        |prefix| live.get_key_value(prefix).map(|(k, _)| k),
        |p| {
            live.range::<[Seg], _>((Bound::Included(&p[..]), Bound::Unbounded))
                .next()
                .map(|(k, _)| k)
        },
    )
}

fn overlap_in_set<'a>(set: &'a BTreeSet<FieldPath>, path: &FieldPath) -> Option<&'a FieldPath> {
    first_overlap(
        path,
        |prefix| set.get(prefix),
        |p| {
            set.range::<[Seg], _>((Bound::Included(&p[..]), Bound::Unbounded))
                .next()
        },
    )
}

fn find_conflicts(
    cfg: &managed::Leaves,
    live: &managed::Leaves,
    entries: &[ManagedEntry],
    manager: &str,
) -> Vec<Conflict> {
    let mut out = Vec::new();
    for (path, value) in cfg {
        let differs = match live.get(path) {
            Some(live_value) => live_value != value,
            None => overlap_in_leaves(live, path).is_some(),
        };
        if !differs {
            continue;
        }
        for e in entries.iter().filter(|e| e.manager != manager) {
            if let Some(owned) = overlap_in_set(&e.fields, path) {
                out.push(Conflict {
                    path: owned.clone(),
                    manager: e.manager.clone(),
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.path, &a.manager).cmp(&(&b.path, &b.manager)));
    out.dedup();
    out
}

/// Removes the leaf at `path` (a key, or a list element), then any parent objects or lists
/// it left empty (never `metadata`).
fn remove_path(obj: &mut Value, path: &[Seg]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = &mut *obj;
    for seg in parents {
        match (seg, node.get_mut(field_name(seg))) {
            (Seg::Field(_), Some(child)) => node = child,
            _ => return,
        }
    }
    let emptied = match (last, node) {
        (Seg::Field(name), Value::Object(map)) => {
            map.remove(name);
            map.is_empty()
        }
        (Seg::Value(_) | Seg::Key(_), Value::Array(items)) => {
            let list = parents.last().map(field_name).unwrap_or_default();
            items.retain(|item| managed::element_seg(list, item).as_ref() != Some(last));
            items.is_empty()
        }
        _ => false,
    };
    let is_metadata = matches!(parents, [Seg::Field(m)] if m == "metadata");
    if emptied && !parents.is_empty() && !is_metadata {
        remove_path(obj, parents);
    }
}

fn field_name(seg: &Seg) -> &str {
    match seg {
        Seg::Field(name) => name,
        _ => "",
    }
}

/// Merges a configuration into the live object: see the module doc.
pub fn merge_into(target: &mut Value, config: &Value) {
    let (Value::Object(t), Value::Object(c)) = (&mut *target, config) else {
        return merge_values(target, config);
    };
    for (k, v) in c {
        match (k.as_str(), t.get_mut(k)) {
            ("metadata", Some(meta @ Value::Object(_))) if v.is_object() => merge_metadata(meta, v),
            _ => merge_key(t, k, v),
        }
    }
}

/// Recursive merge: objects merge key by key, everything else replaces; nulls are skipped.
fn merge_values(target: &mut Value, config: &Value) {
    match (target, config) {
        (Value::Object(t), Value::Object(c)) => {
            for (k, v) in c {
                merge_key(t, k, v);
            }
        }
        (t, c) => *t = c.clone(),
    }
}

fn merge_key(target: &mut serde_json::Map<String, Value>, key: &str, value: &Value) {
    if value.is_null() {
        return;
    }
    match target.get_mut(key) {
        Some(existing) if existing.is_object() && value.is_object() => {
            merge_values(existing, value)
        }
        _ => {
            target.insert(key.to_string(), value.clone());
        }
    }
}

/// `metadata`: `finalizers` and `ownerReferences` merge element by element.
fn merge_metadata(target: &mut Value, config: &Value) {
    let (Value::Object(t), Value::Object(c)) = (target, config) else {
        return;
    };
    for (k, v) in c {
        let associative = matches!(k.as_str(), "finalizers" | "ownerReferences");
        match (t.get_mut(k), v) {
            (Some(Value::Array(live)), Value::Array(wanted)) if associative => {
                merge_elements(k, live, wanted)
            }
            // an empty list adds nothing
            (None, Value::Array(wanted)) if associative && wanted.is_empty() => {}
            _ => merge_key(t, k, v),
        }
    }
}

/// Elements of `wanted` replace (merge into, for objects) live elements with the same key;
/// new ones are appended in order.
fn merge_elements(list: &str, live: &mut Vec<Value>, wanted: &[Value]) {
    for element in wanted {
        let seg = managed::element_seg(list, element);
        match live
            .iter_mut()
            .find(|l| managed::element_seg(list, l) == seg)
        {
            Some(existing) => merge_values(existing, element),
            None => live.push(element.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn w(manager: &str) -> Writer<'_> {
        Writer {
            manager,
            operation: "Apply",
            subresource: "",
            api_version: "x/v1",
            time: "t",
        }
    }

    fn spec(obj: &Value) -> &Value {
        &obj["spec"]
    }

    #[test]
    fn first_apply_owns_its_fields() {
        let obj = apply(
            &json!({}),
            &json!({"spec": {"a": 1, "l": [1]}}),
            &w("alice"),
            false,
        )
        .unwrap();
        assert_eq!(spec(&obj), &json!({"a": 1, "l": [1]}));
        let entries = managed::read(&obj);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].operation, "Apply");
        assert_eq!(entries[0].fields.len(), 2);
    }

    #[test]
    fn differing_value_owned_by_other_manager_conflicts_unless_forced() {
        let live = apply(&json!({}), &json!({"spec": {"a": 1}}), &w("alice"), false).unwrap();
        let err = apply(&live, &json!({"spec": {"a": 2}}), &w("bob"), false).unwrap_err();
        assert_eq!(
            err,
            vec![Conflict {
                path: vec![Seg::Field("spec".into()), Seg::Field("a".into())],
                manager: "alice".into()
            }]
        );
        assert_eq!(err[0].field(), ".spec.a");
        let forced = apply(&live, &json!({"spec": {"a": 2}}), &w("bob"), true).unwrap();
        assert_eq!(spec(&forced)["a"], 2);
        let owners: Vec<_> = managed::read(&forced)
            .into_iter()
            .map(|e| e.manager)
            .collect();
        assert_eq!(owners, vec!["bob"]);
    }

    #[test]
    fn equal_values_are_shared_without_conflict() {
        let live = apply(&json!({}), &json!({"spec": {"a": 1}}), &w("alice"), false).unwrap();
        let shared = apply(&live, &json!({"spec": {"a": 1, "b": 2}}), &w("bob"), false).unwrap();
        assert_eq!(managed::read(&shared).len(), 2);
        // alice drops a: bob still owns it, so it stays
        let after = apply(&shared, &json!({"spec": {}}), &w("alice"), false).unwrap();
        assert_eq!(spec(&after)["a"], 1);
    }

    #[test]
    fn fields_dropped_from_config_are_removed() {
        let live = apply(
            &json!({}),
            &json!({"spec": {"a": 1, "b": {"c": 1}}}),
            &w("alice"),
            false,
        )
        .unwrap();
        let after = apply(&live, &json!({"spec": {"a": 1}}), &w("alice"), false).unwrap();
        assert_eq!(spec(&after), &json!({"a": 1}));
    }

    #[test]
    fn same_manager_never_conflicts_with_itself() {
        let live = apply(&json!({}), &json!({"spec": {"a": 1}}), &w("alice"), false).unwrap();
        let after = apply(&live, &json!({"spec": {"a": 5}}), &w("alice"), false).unwrap();
        assert_eq!(spec(&after)["a"], 5);
    }

    #[test]
    fn type_change_overlapping_owned_subtree_conflicts() {
        let live = apply(
            &json!({}),
            &json!({"spec": {"a": {"b": 1}}}),
            &w("alice"),
            false,
        )
        .unwrap();
        let err = apply(&live, &json!({"spec": {"a": 3}}), &w("bob"), false).unwrap_err();
        assert_eq!(err[0].manager, "alice");
    }

    #[test]
    fn finalizers_of_two_managers_merge_and_leave_separately() {
        let meta = |f: Value| json!({"metadata": {"finalizers": f}});
        let live = apply(&json!({}), &meta(json!(["a.io/f"])), &w("alice"), false).unwrap();
        let both = apply(&live, &meta(json!(["b.io/f"])), &w("bob"), false).unwrap();
        assert_eq!(both["metadata"]["finalizers"], json!(["a.io/f", "b.io/f"]));
        let alice = managed::read(&both)
            .into_iter()
            .find(|e| e.manager == "alice")
            .unwrap();
        assert_eq!(alice.fields.len(), 1);
        let v1 = &both["metadata"]["managedFields"][0]["fieldsV1"];
        assert_eq!(
            v1,
            &json!({"f:metadata": {"f:finalizers": {"v:\"a.io/f\"": {}}}})
        );
        let after = apply(&both, &meta(json!([])), &w("alice"), false).unwrap();
        assert_eq!(after["metadata"]["finalizers"], json!(["b.io/f"]));
        let gone = apply(&after, &meta(json!([])), &w("bob"), false).unwrap();
        assert!(gone["metadata"].get("finalizers").is_none());
    }

    #[test]
    fn owner_references_merge_by_uid() {
        let owner = |uid: &str, name: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": name, "uid": uid});
        let meta = |refs: Value| json!({"metadata": {"ownerReferences": refs}});
        let live = apply(
            &json!({}),
            &meta(json!([owner("u1", "a")])),
            &w("alice"),
            false,
        )
        .unwrap();
        let both = apply(&live, &meta(json!([owner("u2", "b")])), &w("bob"), false).unwrap();
        let uids: Vec<&Value> = both["metadata"]["ownerReferences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["uid"])
            .collect();
        assert_eq!(uids, [&json!("u1"), &json!("u2")]);
        let err = apply(
            &both,
            &meta(json!([owner("u1", "renamed")])),
            &w("bob"),
            false,
        )
        .unwrap_err();
        assert_eq!(err[0].field(), r#".metadata.ownerReferences[uid="u1"]"#);
        assert_eq!(err[0].manager, "alice");
    }

    #[test]
    fn overlap_lookups_find_what_a_scan_finds() {
        let p = |s: &str| -> FieldPath {
            s.split('.')
                .filter(|f| !f.is_empty())
                .map(|f| Seg::Field(f.into()))
                .collect()
        };
        let set: BTreeSet<FieldPath> = ["spec.a", "spec.b.c", "spec.b.d", "spec.ba", "status"]
            .iter()
            .map(|s| p(s))
            .collect();
        let leaves: managed::Leaves = set.iter().map(|k| (k.clone(), json!(1))).collect();
        let scan = |path: &FieldPath| {
            set.iter()
                .find(|k| k.starts_with(path) || path.starts_with(k))
        };
        let queries = [
            "",
            "spec",
            "spec.a",
            "spec.a.x",
            "spec.b",
            "spec.b.c.d",
            "spec.bb",
            "spec.c",
            "status.x",
            "t",
        ];
        for q in queries {
            let q = p(q);
            assert_eq!(overlap_in_set(&set, &q), scan(&q), "{q:?}");
            assert_eq!(overlap_in_leaves(&leaves, &q), scan(&q), "{q:?}");
        }
    }
}
