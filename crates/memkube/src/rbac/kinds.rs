//! The built-in types that authentication and authorization bring, as rows of the built-in
//! table: the stored RBAC kinds, NetworkPolicy and PodDisruptionBudget (schemaless, so charts
//! that ship them install), and the create-only review kinds, which are never stored (the
//! `gate` answers them). Also what discovery says about them: review kinds and
//! `serviceaccounts/token` have only the `create` verb. RBAC objects' names are path segments,
//! not DNS names.

use serde_json::{Value, json};

use crate::builtin::Row;
use crate::resource::ResourceType;

/// (group, version, kind, plural, short names, namespaced, status subresource)
pub(crate) const ROWS: &[Row] = &[
    (super::GROUP, "v1", "Role", "roles", &[], true, false),
    (
        super::GROUP,
        "v1",
        "ClusterRole",
        "clusterroles",
        &[],
        false,
        false,
    ),
    (
        super::GROUP,
        "v1",
        "RoleBinding",
        "rolebindings",
        &[],
        true,
        false,
    ),
    (
        super::GROUP,
        "v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        &[],
        false,
        false,
    ),
    (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        &["netpol"],
        true,
        false,
    ),
    (
        "policy",
        "v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        &["pdb"],
        true,
        true,
    ),
    (
        AUTHZ,
        "v1",
        "SelfSubjectAccessReview",
        "selfsubjectaccessreviews",
        &[],
        false,
        false,
    ),
    (
        AUTHZ,
        "v1",
        "SelfSubjectRulesReview",
        "selfsubjectrulesreviews",
        &[],
        false,
        false,
    ),
    (
        AUTHZ,
        "v1",
        "SubjectAccessReview",
        "subjectaccessreviews",
        &[],
        false,
        false,
    ),
    (
        AUTHZ,
        "v1",
        "LocalSubjectAccessReview",
        "localsubjectaccessreviews",
        &[],
        true,
        false,
    ),
    (
        AUTHN,
        "v1",
        "SelfSubjectReview",
        "selfsubjectreviews",
        &[],
        false,
        false,
    ),
    (
        AUTHN,
        "v1",
        "TokenReview",
        "tokenreviews",
        &[],
        false,
        false,
    ),
];

/// `authorization.k8s.io`
pub(crate) const AUTHZ: &str = "authorization.k8s.io";
/// `authentication.k8s.io`
pub(crate) const AUTHN: &str = "authentication.k8s.io";

/// Whether `(group, plural)` is a create-only review kind.
pub(crate) fn is_review(group: &str, plural: &str) -> bool {
    ROWS.iter()
        .any(|r| r.0 == group && r.3 == plural && (group == AUTHZ || group == AUTHN))
}

/// The verbs discovery lists for a type, when they are not the usual eight.
pub(crate) fn verbs(ty: &ResourceType) -> Option<&'static [&'static str]> {
    is_review(&ty.group, &ty.plural).then_some(&["create"])
}

/// Checks an object name: RBAC objects need only be valid path segments (so
/// `system:discovery` is a name), everything else a DNS-1123 subdomain.
pub(crate) fn validate_name(ty: &ResourceType, name: &str) -> Result<(), String> {
    if ty.group != super::GROUP {
        return crate::meta::validate_name(name);
    }
    match name {
        "" => Err("name or generateName is required".into()),
        "." | ".." => Err(format!("may not be '{name}'")),
        _ if name.contains('/') => Err("may not contain '/'".into()),
        _ if name.contains('%') => Err("may not contain '%'".into()),
        _ => Ok(()),
    }
}

/// Subresource entries discovery lists besides `status` (`serviceaccounts/token`).
pub(crate) fn extra_entries(ty: &ResourceType) -> Vec<Value> {
    if !(ty.group.is_empty() && ty.plural == "serviceaccounts") {
        return Vec::new();
    }
    vec![json!({
        "name": "serviceaccounts/token", "singularName": "", "namespaced": true,
        "group": AUTHN, "version": "v1", "kind": "TokenRequest", "verbs": ["create"],
    })]
}
