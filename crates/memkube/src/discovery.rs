//! Discovery documents (pure): `/version`, `/api`, `/apis`, `/apis/{group}` and the
//! per-group-version `APIResourceList`s, built from the [`Registry`].

use serde_json::{Value, json};

use crate::resource::{Registry, ResourceType};

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// The Kubernetes version memkube reports (kubectl picks a matching client from it).
pub fn version() -> Value {
    json!({
        "major": "1", "minor": "32", "gitVersion": "v1.32.0-memkube",
        "gitCommit": "memkube", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.23", "compiler": "gc", "platform": "linux/amd64",
    })
}

/// `/api`
pub fn core_versions() -> Value {
    json!({
        "kind": "APIVersions", "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
    })
}

fn group_doc(group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": versions, "preferredVersion": versions[0]})
}

/// `/apis`: every non-core group.
pub fn groups(registry: &Registry) -> Value {
    let groups: Vec<Value> = registry
        .group_versions()
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, vs)| group_doc(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`, if the group is served.
pub fn group(registry: &Registry, name: &str) -> Option<Value> {
    let gvs = registry.group_versions();
    let versions = gvs.get(name).filter(|_| !name.is_empty())?;
    let mut doc = group_doc(name, versions);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(doc)
}

fn resource_entries(ty: &ResourceType) -> Vec<Value> {
    let mut main = json!({
        "name": ty.plural, "singularName": ty.singular, "namespaced": ty.namespaced,
        "kind": ty.kind, "verbs": crate::rbac::kinds::verbs(ty).unwrap_or(VERBS),
    });
    if !ty.short_names.is_empty() {
        main["shortNames"] = json!(ty.short_names);
    }
    if !ty.categories.is_empty() {
        main["categories"] = json!(ty.categories);
    }
    let mut out = vec![main];
    out.extend(crate::rbac::kinds::extra_entries(ty));
    if ty.status_subresource {
        out.push(json!({
            "name": format!("{}/status", ty.plural), "singularName": "", "namespaced": ty.namespaced,
            "kind": ty.kind, "verbs": ["get", "patch", "update"],
        }));
    }
    out
}

/// `/api/v1` or `/apis/{group}/{version}`, if served.
pub fn resource_list(registry: &Registry, group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = registry
        .all()
        .filter(|t| t.group == group && t.serves(version))
        .flat_map(resource_entries)
        .collect();
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_group_is_not_listed_under_apis() {
        let doc = groups(&Registry::with_builtins());
        let names: Vec<&str> = doc["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"coordination.k8s.io"));
        assert!(!names.contains(&""));
        assert_eq!(
            group(&Registry::with_builtins(), "apps").unwrap()["preferredVersion"]["version"],
            "v1"
        );
        assert!(group(&Registry::with_builtins(), "nope.io").is_none());
    }

    #[test]
    fn resource_list_has_status_subresources_and_scope() {
        let doc = resource_list(&Registry::with_builtins(), "", "v1").unwrap();
        let res = doc["resources"].as_array().unwrap();
        let find = |n: &str| res.iter().find(|r| r["name"] == n).unwrap();
        assert_eq!(find("namespaces")["namespaced"], false);
        assert_eq!(find("secrets")["namespaced"], true);
        assert_eq!(
            find("nodes/status")["verbs"],
            json!(["get", "patch", "update"])
        );
        assert!(resource_list(&Registry::with_builtins(), "", "v2").is_none());
    }
}
