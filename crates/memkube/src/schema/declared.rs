//! Which fields of an object its CRD schema does not declare (pure), as server-side apply's
//! typed conversion finds them: it refuses such a configuration outright (`field not declared
//! in schema`), where the other writes prune the fields silently.

use serde_json::Value;

use crate::resource::ResourceType;

/// The fields `ObjectMeta` declares.
const OBJECT_META: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// The fields an `OwnerReference` declares.
const OWNER_REFERENCE: &[&str] = &[
    "apiVersion",
    "kind",
    "name",
    "uid",
    "controller",
    "blockOwnerDeletion",
];

fn preserves_unknown(schema: &Value) -> bool {
    schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// The paths (`.spec.bogus`) of the fields of `obj` that the schema of `ty`'s storage version
/// does not declare, at most one per object (the first, in key order), as the API server
/// reports them. Types without a schema declare everything.
pub fn undeclared_fields(ty: &ResourceType, obj: &Value) -> Vec<String> {
    let Some(schema) = ty.schemas.get(ty.preferred_version()) else {
        return Vec::new();
    };
    let Some(map) = obj.as_object() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in map {
        let path = format!(".{k}");
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => metadata(v, &mut out),
            _ => match schema.pointer(&format!("/properties/{}", escape(k))) {
                Some(sub) => walk(sub, v, &path, &mut out),
                None if !preserves_unknown(schema) => out.push(path),
                None => {}
            },
        }
    }
    out
}

/// A JSON pointer token.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn metadata(value: &Value, out: &mut Vec<String>) {
    let Some(map) = value.as_object() else {
        return;
    };
    if let Some(k) = map.keys().find(|k| !OBJECT_META.contains(&k.as_str())) {
        out.push(format!(".metadata.{k}"));
    }
    let refs = map.get("ownerReferences").and_then(Value::as_array);
    for (i, r) in refs.into_iter().flatten().enumerate() {
        let unknown = r
            .as_object()
            .and_then(|r| r.keys().find(|k| !OWNER_REFERENCE.contains(&k.as_str())));
        if let Some(k) = unknown {
            out.push(format!(".metadata.ownerReferences[{i}].{k}"));
        }
    }
}

fn walk(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    if preserves_unknown(schema) {
        return;
    }
    match value {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let mut first_unknown = None;
            for (k, v) in map {
                match props.and_then(|p| p.get(k)).or(additional) {
                    Some(sub) => walk(sub, v, &format!("{path}.{k}"), out),
                    None => {
                        first_unknown.get_or_insert_with(|| format!("{path}.{k}"));
                    }
                }
            }
            out.extend(first_unknown);
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items").filter(|s| s.is_object()) {
                for (i, item) in items.iter().enumerate() {
                    walk(item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}
