//! The default policy of a new cluster, stored as real objects (labelled
//! `kubernetes.io/bootstrapping: rbac-defaults`, as the API server's bootstrap does):
//! `cluster-admin` for `system:masters`; `system:discovery` (discovery, `/version`, health,
//! OpenAPI), `system:basic-user` (SelfSubjectAccessReview, SelfSubjectRulesReview,
//! SelfSubjectReview) and `system:public-info-viewer` (`/version`, health) for every
//! authenticated identity. The aggregated `admin`, `edit` and `view` roles are not created.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::GROUP;
use super::kinds::{AUTHN, AUTHZ};
use crate::store::{State, WriteCtx};

fn metadata(name: &str) -> Value {
    json!({
        "name": name,
        "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
        "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
    })
}

/// The default ClusterRoles.
pub fn cluster_roles() -> Vec<Value> {
    let health = ["/healthz", "/livez", "/readyz", "/version", "/version/"];
    let mut discovery: Vec<&str> = vec![
        "/api",
        "/api/*",
        "/apis",
        "/apis/*",
        "/openapi",
        "/openapi/*",
    ];
    discovery.extend(health);
    let role = |name: &str, rules: Value| json!({"metadata": metadata(name), "rules": rules});
    vec![
        role(
            "cluster-admin",
            json!([
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]},
            ]),
        ),
        role(
            "system:discovery",
            json!([{"nonResourceURLs": discovery, "verbs": ["get"]}]),
        ),
        role(
            "system:basic-user",
            json!([
                {"apiGroups": [AUTHN], "resources": ["selfsubjectreviews"], "verbs": ["create"]},
                {"apiGroups": [AUTHZ], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
            ]),
        ),
        role(
            "system:public-info-viewer",
            json!([{"nonResourceURLs": health, "verbs": ["get"]}]),
        ),
    ]
}

/// The default ClusterRoleBindings (each named after its ClusterRole).
pub fn cluster_role_bindings() -> Vec<Value> {
    let group = |name: &str| json!({"apiGroup": GROUP, "kind": "Group", "name": name});
    let binding = |name: &str, subjects: Value| {
        json!({
            "metadata": metadata(name),
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": name},
            "subjects": subjects,
        })
    };
    vec![
        binding("cluster-admin", json!([group("system:masters")])),
        binding("system:discovery", json!([group("system:authenticated")])),
        binding("system:basic-user", json!([group("system:authenticated")])),
        binding(
            "system:public-info-viewer",
            json!([
                group("system:authenticated"),
                group("system:unauthenticated")
            ]),
        ),
    ]
}

/// Stores the default policy in a fresh instance.
pub fn install(state: &mut State, now: DateTime<Utc>) {
    let ctx = WriteCtx::new("kube-apiserver", now);
    let objects = [
        ("clusterroles", cluster_roles()),
        ("clusterrolebindings", cluster_role_bindings()),
    ];
    for (plural, items) in objects {
        let Some(ty) = state.registry.lookup(GROUP, "v1", plural).cloned() else {
            tracing::warn!(plural, "memkube: RBAC type missing, no default policy");
            return;
        };
        for item in items {
            if let Err(e) = state.create(&ty, None, item, &ctx) {
                tracing::warn!(error = %e, plural, "memkube: default RBAC object not stored");
            }
        }
    }
}
