//! The built-in (non-CRD) types memkube serves. They are schemaless: objects are stored as sent,
//! with Kubernetes metadata semantics but no per-kind validation or defaulting.

use std::collections::BTreeMap;

use crate::resource::ResourceType;

/// (group, version, kind, plural, short names, namespaced, status subresource)
pub(crate) type Row = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    bool,
    bool,
);

const BUILTINS: &[Row] = &[
    ("", "v1", "Namespace", "namespaces", &["ns"], false, true),
    ("", "v1", "Node", "nodes", &["no"], false, true),
    ("", "v1", "Secret", "secrets", &[], true, false),
    ("", "v1", "ConfigMap", "configmaps", &["cm"], true, false),
    ("", "v1", "Event", "events", &["ev"], true, false),
    ("", "v1", "Pod", "pods", &["po"], true, true),
    ("", "v1", "Service", "services", &["svc"], true, true),
    (
        "",
        "v1",
        "ServiceAccount",
        "serviceaccounts",
        &["sa"],
        true,
        false,
    ),
    ("", "v1", "Endpoints", "endpoints", &["ep"], true, false),
    (
        "apps",
        "v1",
        "Deployment",
        "deployments",
        &["deploy"],
        true,
        true,
    ),
    ("apps", "v1", "DaemonSet", "daemonsets", &["ds"], true, true),
    (
        "coordination.k8s.io",
        "v1",
        "Lease",
        "leases",
        &[],
        true,
        false,
    ),
    (
        "discovery.k8s.io",
        "v1",
        "EndpointSlice",
        "endpointslices",
        &[],
        true,
        false,
    ),
    (
        "events.k8s.io",
        "v1",
        "Event",
        "events",
        &["ev"],
        true,
        false,
    ),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        &["crd", "crds"],
        false,
        true,
    ),
];

/// The built-in types, in table order.
pub fn builtin_types() -> Vec<ResourceType> {
    BUILTINS
        .iter()
        .chain(crate::rbac::kinds::ROWS)
        .map(
            |&(group, version, kind, plural, short, namespaced, status)| ResourceType {
                group: group.into(),
                versions: vec![version.into()],
                kind: kind.into(),
                plural: plural.into(),
                singular: kind.to_lowercase(),
                short_names: short.iter().map(|s| s.to_string()).collect(),
                categories: Vec::new(),
                namespaced,
                status_subresource: status,
                custom: false,
                schemas: BTreeMap::new(),
                printer_columns: BTreeMap::new(),
            },
        )
        .collect()
}

/// Whether a PUT without `metadata.resourceVersion` replaces the object unconditionally, as
/// most built-in types' strategies allow; custom resources, Leases and CRDs require the version
/// (422 `must be specified for an update`).
pub fn allows_unconditional_update(ty: &ResourceType) -> bool {
    let requires_version = matches!(
        (ty.group.as_str(), ty.plural.as_str()),
        ("coordination.k8s.io", "leases") | ("apiextensions.k8s.io", "customresourcedefinitions")
    );
    !ty.custom && !requires_version
}

/// Namespaces that exist in a fresh instance, as in a new cluster.
pub const INITIAL_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_core_types_are_present() {
        let types = builtin_types();
        let has = |g: &str, p: &str| types.iter().any(|t| t.group == g && t.plural == p);
        assert!(has("", "namespaces") && has("", "secrets") && has("", "nodes"));
        assert!(has("coordination.k8s.io", "leases"));
        let ns = types.iter().find(|t| t.plural == "namespaces").unwrap();
        assert!(!ns.namespaced);
    }
}
