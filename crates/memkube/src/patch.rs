//! Patch formats (pure): which content type means which patch, and applying JSON merge patches
//! (RFC 7386) and JSON patches (RFC 6902). Strategic merge patches of built-in types are
//! applied as JSON merge patches (lists replaced whole, `$patch` directives not interpreted);
//! custom resources refuse them (415), as the API server does.

use serde_json::Value;

/// The patch a request carries, chosen by its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json`
    Merge,
    /// `application/strategic-merge-patch+json` (applied as a merge patch)
    Strategic,
    /// `application/json-patch+json`
    Json,
    /// `application/apply-patch+yaml` (server-side apply)
    Apply,
}

/// The media types accepted for PATCH of a custom resource, for 415 messages.
pub const CUSTOM_RESOURCE_PATCH_MEDIA_TYPES: &str =
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";

/// The media types accepted for PATCH, for 415 messages.
pub const PATCH_MEDIA_TYPES: &str = "application/json-patch+json, application/merge-patch+json, \
     application/strategic-merge-patch+json, application/apply-patch+yaml";

impl PatchKind {
    /// Maps a `Content-Type` (parameters ignored).
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        match content_type.split(';').next().unwrap_or_default().trim() {
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/json-patch+json" => Some(Self::Json),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(Self::Apply),
            _ => None,
        }
    }

    /// Parses the request body: JSON, or YAML (a superset of JSON) for apply. An apply body that
    /// is JSON (what kube-rs and client-go send) is read as JSON: the YAML parser took several
    /// times as long for the same document.
    pub fn parse_body(self, body: &[u8]) -> Result<Value, String> {
        match self {
            Self::Apply => serde_json::from_slice(body)
                .or_else(|_| serde_yaml::from_slice(body).map_err(|e| e.to_string())),
            _ => serde_json::from_slice(body).map_err(|e| e.to_string()),
        }
    }
}

/// Applies a merge or JSON patch to a copy of `doc` (not for [`PatchKind::Apply`]).
pub fn patch_document(kind: PatchKind, doc: &Value, patch: &Value) -> Result<Value, String> {
    let mut doc = doc.clone();
    match kind {
        PatchKind::Merge | PatchKind::Strategic => {
            if !patch.is_object() {
                return Err("a merge patch must be a JSON object".into());
            }
            json_patch::merge(&mut doc, patch);
        }
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| format!("invalid JSON patch: {e}"))?;
            for op in &ops.0 {
                // As the API server does, a `test` for null passes on a missing path
                // (kube_runtime's finalizer helper relies on it).
                if let json_patch::PatchOperation::Test(t) = op
                    && t.value.is_null()
                    && doc.pointer(t.path.as_str()).is_none()
                {
                    continue;
                }
                json_patch::patch(&mut doc, std::slice::from_ref(op)).map_err(|e| e.to_string())?;
            }
        }
        PatchKind::Apply => return Err("server-side apply is not a document patch".into()),
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn content_types_map_to_kinds() {
        assert_eq!(
            PatchKind::from_content_type("application/merge-patch+json"),
            Some(PatchKind::Merge)
        );
        assert_eq!(
            PatchKind::from_content_type("application/apply-patch+yaml; charset=utf-8"),
            Some(PatchKind::Apply)
        );
        assert_eq!(PatchKind::from_content_type("application/json"), None);
    }

    #[test]
    fn merge_patch_sets_and_deletes() {
        let doc = json!({"spec": {"a": 1, "b": 2, "l": [1, 2]}});
        let out = patch_document(
            PatchKind::Merge,
            &doc,
            &json!({"spec": {"a": null, "c": 3, "l": [9]}}),
        )
        .unwrap();
        assert_eq!(out, json!({"spec": {"b": 2, "c": 3, "l": [9]}}));
    }

    #[test]
    fn json_patch_ops_and_failed_test() {
        let doc = json!({"spec": {"a": 1}});
        let ok = json!([{"op": "replace", "path": "/spec/a", "value": 5}, {"op": "add", "path": "/spec/b", "value": 1}]);
        assert_eq!(
            patch_document(PatchKind::Json, &doc, &ok).unwrap(),
            json!({"spec": {"a": 5, "b": 1}})
        );
        let null_on_missing = json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata", "value": {"finalizers": ["f"]}}]);
        let out = patch_document(PatchKind::Json, &doc, &null_on_missing).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["f"]));
        let failing = json!([{"op": "test", "path": "/spec/a", "value": 2}]);
        assert!(patch_document(PatchKind::Json, &doc, &failing).is_err());
        assert!(patch_document(PatchKind::Json, &doc, &json!({"op": "x"})).is_err());
    }

    #[test]
    fn apply_body_accepts_yaml_and_json() {
        let yaml = b"spec:\n  a: 1\n";
        assert_eq!(
            PatchKind::Apply.parse_body(yaml).unwrap(),
            json!({"spec": {"a": 1}})
        );
        assert_eq!(
            PatchKind::Apply.parse_body(br#"{"spec":{"a":1}}"#).unwrap(),
            json!({"spec": {"a": 1}})
        );
    }
}
