//! Field paths and the leaves of an object (pure), and their `FieldsV1` form.
//!
//! A path is a list of [`Seg`]s: object keys (`f:`), elements of the two associative lists of
//! `metadata` (`finalizers`, a set: `v:"x.io/f"`; `ownerReferences`, a map keyed by `uid`:
//! `k:{"uid":"…"}`), and `.`, the node itself. A leaf is a path ending at a scalar, an atomic
//! list, an empty object, or one such list element; every non-empty object and associative
//! list also has a `.` marker leaf, which the writer that creates the node owns, as the API
//! server records it for updates (never for applies).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Seg {
    /// `f:<name>`: an object key.
    Field(String),
    /// `k:<json>`: an `ownerReferences` element, by its key fields (`{"uid":"…"}`).
    Key(String),
    /// `v:<json>`: a `finalizers` element, by value.
    Value(String),
    /// `.`: the node (an object or associative list with children) itself.
    Itself,
}

impl Seg {
    fn field(name: &str) -> Self {
        Self::Field(name.to_string())
    }

    /// The `FieldsV1` key.
    fn fields_v1_key(&self) -> String {
        match self {
            Self::Field(name) => format!("f:{name}"),
            Self::Key(key) => format!("k:{key}"),
            Self::Value(value) => format!("v:{value}"),
            Self::Itself => ".".into(),
        }
    }

    /// As the API server writes a path element in messages: `.name`, `[uid="u"]`, `[="x"]`.
    pub fn display(&self) -> String {
        match self {
            Self::Field(name) => format!(".{name}"),
            Self::Value(value) => format!("[={value}]"),
            Self::Key(key) => {
                let fields: Map<String, Value> = serde_json::from_str(key).unwrap_or_default();
                let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("[{}]", parts.join(","))
            }
            Self::Itself => String::new(),
        }
    }
}

/// A path from the root to a leaf.
pub type FieldPath = Vec<Seg>;

/// The leaves of an object with their values.
pub type Leaves = BTreeMap<FieldPath, Value>;

/// The key of an `ownerReferences` element.
pub fn owner_key(element: &Value) -> String {
    let uid = element.get("uid").cloned().unwrap_or(Value::Null);
    json!({ "uid": uid }).to_string()
}

/// The segment naming `element` in the list at `metadata.<list>`, if that list is associative.
pub fn element_seg(list: &str, element: &Value) -> Option<Seg> {
    match list {
        "finalizers" => Some(Seg::Value(element.to_string())),
        "ownerReferences" => Some(Seg::Key(owner_key(element))),
        _ => None,
    }
}

fn collect_leaves(value: &Value, path: &mut FieldPath, out: &mut Leaves) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            if !path.is_empty() {
                out.insert(with(path, Seg::Itself), Value::Null);
            }
            for (k, v) in map {
                path.push(Seg::Field(k.clone()));
                collect_leaves(v, path, out);
                path.pop();
            }
        }
        _ => {
            out.insert(path.clone(), value.clone());
        }
    }
}

fn with(path: &[Seg], seg: Seg) -> FieldPath {
    let mut out = path.to_vec();
    out.push(seg);
    out
}

/// The leaves of `metadata`: `labels.<k>`, `annotations.<k>`, and the elements of
/// `finalizers` and `ownerReferences`, each collection with its `.` marker.
fn metadata_leaves(meta: &Map<String, Value>, out: &mut Leaves) {
    for (key, value) in meta {
        let path = vec![Seg::field("metadata"), Seg::Field(key.clone())];
        match (key.as_str(), value) {
            ("labels" | "annotations", _) => collect_leaves(value, &mut path.clone(), out),
            // an empty list owns nothing (it is not even stored)
            ("finalizers" | "ownerReferences", Value::Array(items)) => {
                if !items.is_empty() {
                    out.insert(with(&path, Seg::Itself), Value::Null);
                }
                for item in items {
                    if let Some(seg) = element_seg(key, item) {
                        out.insert(with(&path, seg), item.clone());
                    }
                }
            }
            ("finalizers" | "ownerReferences", Value::Null) => {}
            ("finalizers" | "ownerReferences", _) => {
                out.insert(path, value.clone());
            }
            _ => {}
        }
    }
}

/// The owned leaves of an object (see the module doc).
pub fn leaves(obj: &Value) -> Leaves {
    let mut out = Leaves::new();
    let Some(map) = obj.as_object() else {
        return out;
    };
    for (k, v) in map {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                if let Some(meta) = v.as_object() {
                    metadata_leaves(meta, &mut out);
                }
            }
            _ => collect_leaves(v, &mut vec![Seg::Field(k.clone())], &mut out),
        }
    }
    out
}

/// The fields of the element a `k:` leaf names, for its `FieldsV1` node.
fn element_fields(obj: &Value, path: &[Seg]) -> Vec<String> {
    let Some((Seg::Key(key), parents)) = path.split_last() else {
        return Vec::new();
    };
    let list = parents
        .iter()
        .try_fold(obj, |node, seg| match seg {
            Seg::Field(name) => node.get(name),
            _ => None,
        })
        .and_then(Value::as_array);
    let element = list.into_iter().flatten().find(|e| owner_key(e) == *key);
    let fields = element.and_then(Value::as_object);
    fields
        .into_iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect()
}

/// Renders a set of leaves as `FieldsV1`; `obj` supplies the fields of `ownerReferences`
/// elements, which the API server lists under each element.
pub fn to_fields_v1(fields: &BTreeSet<FieldPath>, obj: &Value) -> Value {
    let mut root = Map::new();
    for path in fields {
        let mut node = &mut root;
        for seg in path {
            let entry = node.entry(seg.fields_v1_key()).or_insert_with(|| json!({}));
            node = entry.as_object_mut().expect("fields nodes are objects");
        }
        if matches!(path.last(), Some(Seg::Key(_))) {
            node.insert(".".into(), json!({}));
            for field in element_fields(obj, path) {
                node.insert(format!("f:{field}"), json!({}));
            }
        }
    }
    Value::Object(root)
}

/// Parses `FieldsV1` back into leaves (nodes without children, `.`, and list elements).
pub fn from_fields_v1(value: &Value) -> BTreeSet<FieldPath> {
    fn walk(node: &Map<String, Value>, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
        if node.is_empty() && !path.is_empty() {
            out.insert(path.clone());
        }
        for (k, v) in node {
            let seg = if k == "." {
                Seg::Itself
            } else if let Some(name) = k.strip_prefix("f:") {
                Seg::field(name)
            } else if let Some(key) = k.strip_prefix("k:") {
                out.insert(with(path, Seg::Key(key.into())));
                continue;
            } else if let Some(value) = k.strip_prefix("v:") {
                Seg::Value(value.into())
            } else {
                continue;
            };
            path.push(seg);
            walk(v.as_object().unwrap_or(&Map::new()), path, out);
            path.pop();
        }
    }
    let mut out = BTreeSet::new();
    walk(
        value.as_object().unwrap_or(&Map::new()),
        &mut Vec::new(),
        &mut out,
    );
    out
}
