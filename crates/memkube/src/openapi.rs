//! A minimal OpenAPI v3 document (pure), enough for kubectl: the `/openapi/v3` index of group
//! versions and, per group version, each resource's PATCH operation tagged with its
//! group-version-kind and the `fieldValidation` parameter (so kubectl uses server-side field
//! validation instead of client-side schema checks), plus each kind's schema under
//! `components.schemas` (the CRD's schema, or an open object for built-in kinds).

use serde_json::{Map, Value, json};

use crate::resource::{Registry, ResourceType};

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: the group-version index.
pub fn root(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for (group, versions) in registry.group_versions() {
        for version in versions {
            let path = gv_path(&group, &version);
            let url = format!("/openapi/v3/{path}");
            paths.insert(path, json!({"serverRelativeURL": url}));
        }
    }
    json!({"paths": paths})
}

fn schema_name(ty: &ResourceType, version: &str) -> String {
    let group = if ty.group.is_empty() {
        "core".to_string()
    } else {
        ty.group.clone()
    };
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{}", reversed.join("."), ty.kind)
}

fn kind_schema(ty: &ResourceType, version: &str, gvk: &Value) -> Value {
    let mut schema = ty
        .schemas
        .get(version)
        .map(|s| Value::clone(s))
        .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert("apiVersion".into(), json!({"type": "string"}));
        props.insert("kind".into(), json!({"type": "string"}));
        props.insert(
            "metadata".into(),
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        );
    }
    schema["x-kubernetes-group-version-kind"] = json!([gvk]);
    schema
}

/// `/openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`, if served.
pub fn group_version(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let types: Vec<&ResourceType> = registry
        .all()
        .filter(|t| t.group == group && t.serves(version))
        .collect();
    if types.is_empty() {
        return None;
    }
    let (mut paths, mut schemas) = (Map::new(), Map::new());
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    for ty in types {
        let gvk = json!({"group": ty.group, "version": version, "kind": ty.kind});
        let scope = if ty.namespaced {
            "/namespaces/{namespace}"
        } else {
            ""
        };
        let patch = json!({
            "x-kubernetes-group-version-kind": gvk,
            "x-kubernetes-action": "patch",
            "parameters": [
                {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
                {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
            ],
            "responses": {"200": {"description": "OK"}},
        });
        paths.insert(
            format!("{prefix}{scope}/{}/{{name}}", ty.plural),
            json!({"patch": patch}),
        );
        schemas.insert(schema_name(ty, version), kind_schema(ty, version, &gvk));
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "memkube", "version": "v1.32.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_lists_every_group_version() {
        let doc = root(&Registry::with_builtins());
        assert_eq!(
            doc["paths"]["api/v1"]["serverRelativeURL"],
            "/openapi/v3/api/v1"
        );
        assert!(doc["paths"]["apis/coordination.k8s.io/v1"].is_object());
    }

    #[test]
    fn group_version_doc_declares_field_validation_on_patch() {
        let doc = group_version(&Registry::with_builtins(), "", "v1").unwrap();
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/secrets/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Secret");
        assert_eq!(patch["parameters"][0]["name"], "fieldValidation");
        assert!(doc["paths"]["/api/v1/nodes/{name}"].is_object());
        assert!(doc["components"]["schemas"]["core.v1.Secret"].is_object());
        assert!(group_version(&Registry::with_builtins(), "nope.io", "v1").is_none());
    }
}
