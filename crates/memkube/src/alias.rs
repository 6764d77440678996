//! events.k8s.io/v1 `Event` is a second view of core/v1 `Event`, as in the API server: one store
//! (core shape), with top-level fields renamed on the way in and out (`regarding` ↔
//! `involvedObject`, `note` ↔ `message`, `reportingController` ↔ `reportingComponent`,
//! `deprecatedSource` ↔ `source`, `deprecatedFirstTimestamp` ↔ `firstTimestamp`,
//! `deprecatedLastTimestamp` ↔ `lastTimestamp`, `deprecatedCount` ↔ `count`). Pure.

use serde_json::{Map, Value};

use crate::patch::PatchKind;
use crate::resource::ResourceType;

/// (events.k8s.io name, core/v1 name)
const RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Whether `ty` is the events.k8s.io view.
pub fn is_events_view(ty: &ResourceType) -> bool {
    ty.group == "events.k8s.io" && ty.plural == "events"
}

/// The (group, version, plural) that stores objects of a view type.
pub fn storage_of(ty: &ResourceType) -> Option<(&'static str, &'static str, &'static str)> {
    is_events_view(ty).then_some(("", "v1", "events"))
}

fn rename_field(name: &str, to_storage: bool) -> &str {
    let found = RENAMES.iter().find(|(view, core)| {
        if to_storage {
            *view == name
        } else {
            *core == name
        }
    });
    match found {
        Some((view, core)) => {
            if to_storage {
                core
            } else {
                view
            }
        }
        None => name,
    }
}

fn rename_keys(value: &mut Value, to_storage: bool) {
    let Some(map) = value.as_object_mut() else {
        return;
    };
    let renamed: Map<String, Value> = std::mem::take(map)
        .into_iter()
        .map(|(k, v)| (rename_field(&k, to_storage).to_string(), v))
        .collect();
    *map = renamed;
}

/// A view-shaped object (or merge patch, or apply configuration) in storage shape.
pub fn to_storage(value: &mut Value) {
    rename_keys(value, true);
}

/// A stored object in view shape.
pub fn to_view(value: &mut Value) {
    rename_keys(value, false);
}

/// A view-shaped patch body in storage shape (JSON patch paths are renamed too).
pub fn patch_to_storage(kind: PatchKind, patch: &mut Value) {
    if kind != PatchKind::Json {
        return to_storage(patch);
    }
    for op in patch.as_array_mut().into_iter().flatten() {
        for key in ["path", "from"] {
            let Some(path) = op.get(key).and_then(Value::as_str) else {
                continue;
            };
            let mut segs: Vec<&str> = path.split('/').collect();
            if segs.len() > 1 {
                segs[1] = rename_field(segs[1], true);
            }
            op[key] = Value::String(segs.join("/"));
        }
    }
}

/// A field selector over view fields rewritten over storage fields.
pub fn selector_to_storage(selector: &str) -> String {
    let parts: Vec<String> = selector
        .split(',')
        .map(|req| {
            let end = req.find(['.', '=', '!']).unwrap_or(req.len());
            format!("{}{}", rename_field(req[..end].trim(), true), &req[end..])
        })
        .collect();
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn objects_round_trip_between_shapes() {
        let view =
            json!({"regarding": {"name": "w"}, "note": "hi", "reason": "R", "deprecatedCount": 2});
        let mut stored = view.clone();
        to_storage(&mut stored);
        assert_eq!(
            stored,
            json!({"involvedObject": {"name": "w"}, "message": "hi", "reason": "R", "count": 2})
        );
        to_view(&mut stored);
        assert_eq!(stored, view);
    }

    #[test]
    fn json_patch_paths_and_selectors_are_renamed() {
        let mut patch = json!([{"op": "replace", "path": "/note", "value": "x"}, {"op": "add", "path": "/series/count", "value": 1}]);
        patch_to_storage(PatchKind::Json, &mut patch);
        assert_eq!(patch[0]["path"], "/message");
        assert_eq!(patch[1]["path"], "/series/count");
        assert_eq!(
            selector_to_storage("regarding.name=w,reason=R"),
            "involvedObject.name=w,reason=R"
        );
        assert_eq!(selector_to_storage("note!=x"), "message!=x");
    }
}
