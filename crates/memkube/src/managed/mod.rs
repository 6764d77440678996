//! Field ownership (`metadata.managedFields`), pure.
//!
//! Ownership is tracked per (manager, operation, subresource) at *leaf* granularity (see
//! `path`): scalars, atomic lists, empty objects, the elements of `metadata.finalizers` and
//! `metadata.ownerReferences`, and the `.` marker of each object or associative list, owned by
//! the update that created it. Under `metadata` only `labels.<key>`, `annotations.<key>`,
//! `finalizers` and `ownerReferences` are owned. Sets are stored in the real `FieldsV1` shape
//! (`{"f:spec": {".": {}, "f:port": {}}}`) so `kubectl get -o yaml --show-managed-fields`
//! reads them.

mod path;

use std::collections::BTreeSet;

use serde_json::{Value, json};

pub use path::{FieldPath, Leaves, Seg, element_seg, from_fields_v1, leaves};

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedEntry {
    /// Field manager name.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// `""` or `"status"`.
    pub subresource: String,
    /// `apiVersion` the manager wrote with.
    pub api_version: String,
    /// Time of the manager's last change.
    pub time: String,
    /// Owned leaves.
    pub fields: BTreeSet<FieldPath>,
}

/// Leaves whose value differs between two objects (added, removed or changed).
pub fn changed_leaves(old: &Value, new: &Value) -> BTreeSet<FieldPath> {
    let (a, b) = (leaves(old), leaves(new));
    let mut changed: BTreeSet<FieldPath> = BTreeSet::new();
    for (path, value) in &b {
        if a.get(path) != Some(value) {
            changed.insert(path.clone());
        }
    }
    changed.extend(a.keys().filter(|p| !b.contains_key(*p)).cloned());
    changed
}

/// Reads `metadata.managedFields`.
pub fn read(obj: &Value) -> Vec<ManagedEntry> {
    let list = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array);
    let text = |e: &Value, k: &str| {
        e.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    list.into_iter()
        .flatten()
        .map(|e| ManagedEntry {
            manager: text(e, "manager"),
            operation: text(e, "operation"),
            subresource: text(e, "subresource"),
            api_version: text(e, "apiVersion"),
            time: text(e, "time"),
            fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
        })
        .collect()
}

/// Writes `metadata.managedFields` (entries with no fields are dropped, as the API server does).
pub fn write(obj: &mut Value, entries: &[ManagedEntry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({
                "manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": path::to_fields_v1(&e.fields, obj),
            });
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    let meta = crate::meta::metadata_mut(obj);
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

/// Drops owned leaves the object no longer has (e.g. applied fields the schema pruned).
pub fn retain_present(obj: &mut Value) {
    let present = leaves(obj);
    let mut entries = read(obj);
    for e in &mut entries {
        e.fields.retain(|f| present.contains_key(f));
    }
    write(obj, &entries);
}

/// Identity of the entry a write is recorded under.
#[derive(Debug, Clone)]
pub struct Writer<'a> {
    /// Field manager.
    pub manager: &'a str,
    /// `Apply` or `Update`.
    pub operation: &'a str,
    /// `""` or `"status"`.
    pub subresource: &'a str,
    /// apiVersion written.
    pub api_version: &'a str,
    /// Timestamp.
    pub time: &'a str,
}

/// Moves ownership of `taken` leaves to `writer` (removing them from every other entry) and
/// returns the updated entry list.
pub fn take_ownership(
    mut entries: Vec<ManagedEntry>,
    taken: &BTreeSet<FieldPath>,
    w: &Writer<'_>,
) -> Vec<ManagedEntry> {
    let is_writer = |e: &ManagedEntry| {
        e.manager == w.manager && e.operation == w.operation && e.subresource == w.subresource
    };
    for e in entries.iter_mut().filter(|e| !is_writer(e)) {
        e.fields.retain(|f| !taken.contains(f));
    }
    match entries.iter_mut().find(|e| is_writer(e)) {
        Some(e) => {
            e.fields.extend(taken.iter().cloned());
            e.time = w.time.to_string();
            e.api_version = w.api_version.to_string();
        }
        None if !taken.is_empty() => entries.push(ManagedEntry {
            manager: w.manager.into(),
            operation: w.operation.into(),
            subresource: w.subresource.into(),
            api_version: w.api_version.into(),
            time: w.time.into(),
            fields: taken.clone(),
        }),
        None => {}
    }
    entries.retain(|e| !e.fields.is_empty());
    entries
}

/// Records a non-apply write (create, replace, patch): the writer takes ownership of every leaf
/// it changed; leaves that disappeared are dropped from every entry.
pub fn record_update(old: Option<&Value>, new: &mut Value, w: &Writer<'_>) {
    let empty = json!({});
    let old_obj = old.unwrap_or(&empty);
    let changed = changed_leaves(old_obj, new);
    let present = leaves(new);
    let taken: BTreeSet<FieldPath> = changed
        .iter()
        .filter(|p| present.contains_key(*p))
        .cloned()
        .collect();
    let mut entries = old.map(read).unwrap_or_default();
    for e in &mut entries {
        e.fields.retain(|f| present.contains_key(f));
    }
    let entries = take_ownership(entries, &taken, w);
    write(new, &entries);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `spec.a` → the field path; a trailing `.` is the node's marker.
    fn path(s: &str) -> FieldPath {
        s.split('.')
            .map(|f| match f {
                "" => Seg::Itself,
                f => Seg::Field(f.into()),
            })
            .collect()
    }

    fn writer(manager: &str) -> Writer<'_> {
        Writer {
            manager,
            operation: "Update",
            subresource: "",
            api_version: "v1",
            time: "t",
        }
    }

    #[test]
    fn leaves_treat_lists_as_atomic_but_metadata_lists_per_element() {
        let obj = json!({"apiVersion": "v1", "kind": "X",
            "metadata": {"name": "a", "labels": {"app": "x"}, "finalizers": ["f"],
                "ownerReferences": [{"uid": "u1", "name": "o"}]},
            "spec": {"ports": [1, 2], "nested": {"a": 1, "empty": {}}}});
        let keys: BTreeSet<_> = leaves(&obj).into_keys().collect();
        let mut finalizer = path("metadata.finalizers");
        finalizer.push(Seg::Value("\"f\"".into()));
        let mut owner = path("metadata.ownerReferences");
        owner.push(Seg::Key(r#"{"uid":"u1"}"#.into()));
        let mut expected: BTreeSet<_> = [
            "metadata.finalizers.",
            "metadata.labels.",
            "metadata.labels.app",
            "metadata.ownerReferences.",
            "spec.",
            "spec.nested.",
            "spec.nested.a",
            "spec.nested.empty",
            "spec.ports",
        ]
        .iter()
        .map(|s| path(s))
        .collect();
        expected.extend([finalizer, owner]);
        assert_eq!(keys, expected);
    }

    #[test]
    fn fields_v1_round_trips_and_lists_element_fields() {
        let mut owner = path("metadata.ownerReferences");
        owner.push(Seg::Key(r#"{"uid":"u1"}"#.into()));
        let set: BTreeSet<_> = [path("spec."), path("spec.a"), path("spec.b.c"), owner].into();
        let obj = json!({"metadata": {"ownerReferences": [{"uid": "u1", "name": "o"}]}});
        let v1 = path::to_fields_v1(&set, &obj);
        assert_eq!(v1["f:spec"]["."], json!({}));
        assert_eq!(v1["f:spec"]["f:b"]["f:c"], json!({}));
        assert_eq!(
            v1["f:metadata"]["f:ownerReferences"][r#"k:{"uid":"u1"}"#],
            json!({".": {}, "f:name": {}, "f:uid": {}})
        );
        assert_eq!(from_fields_v1(&v1), set);
    }

    #[test]
    fn update_takes_changed_fields_from_other_managers() {
        let mut v1 = json!({"spec": {"a": 1, "b": 1}});
        record_update(None, &mut v1, &writer("alice"));
        let mut v2 = json!({"spec": {"a": 2, "b": 1}});
        record_update(Some(&v1), &mut v2, &writer("bob"));
        let entries = read(&v2);
        let alice = entries.iter().find(|e| e.manager == "alice").unwrap();
        let bob = entries.iter().find(|e| e.manager == "bob").unwrap();
        assert_eq!(alice.fields, [path("spec."), path("spec.b")].into());
        assert_eq!(bob.fields, [path("spec.a")].into());
    }

    #[test]
    fn retain_present_drops_vanished_leaves() {
        let mut obj = json!({"spec": {"a": 1, "b": 2}});
        record_update(None, &mut obj, &writer("alice"));
        obj["spec"].as_object_mut().unwrap().remove("b");
        retain_present(&mut obj);
        assert_eq!(read(&obj)[0].fields, [path("spec."), path("spec.a")].into());
    }

    #[test]
    fn removed_fields_lose_their_owner_but_the_creator_keeps_the_node() {
        let mut v1 = json!({"spec": {"a": 1}});
        record_update(None, &mut v1, &writer("alice"));
        let mut v2 = json!({"spec": {"b": 1}});
        record_update(Some(&v1), &mut v2, &writer("bob"));
        let entries = read(&v2);
        let alice = entries.iter().find(|e| e.manager == "alice").unwrap();
        assert_eq!(alice.fields, [path("spec.")].into());
        let mut v3 = json!({});
        record_update(Some(&v2), &mut v3, &writer("carol"));
        assert!(
            read(&v3).is_empty(),
            "entries left without fields disappear"
        );
    }
}
