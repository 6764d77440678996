//! Unit tests of the authorizer over a static policy.

use serde_json::{Value, json};

use super::*;
use crate::rbac::attributes::ResourceAttributes;

#[derive(Default)]
struct Static {
    roles: Vec<Value>,
    cluster_roles: Vec<Value>,
    bindings: Vec<Value>,
}

fn name_ns(v: &Value) -> (&str, &str) {
    let m = &v["metadata"];
    (
        m["name"].as_str().unwrap_or_default(),
        m["namespace"].as_str().unwrap_or_default(),
    )
}

impl PolicySource for Static {
    fn cluster_role_bindings(&self) -> Vec<Binding> {
        let b = self.bindings.iter().filter(|b| name_ns(b).1.is_empty());
        b.map(Binding::from_json).collect()
    }
    fn role_bindings(&self, namespace: &str) -> Vec<Binding> {
        let b = self.bindings.iter().filter(|b| name_ns(b).1 == namespace);
        b.map(Binding::from_json).collect()
    }
    fn role(&self, namespace: &str, name: &str) -> Option<Vec<PolicyRule>> {
        let r = self.roles.iter().find(|r| name_ns(r) == (name, namespace));
        r.map(PolicyRule::rules_of)
    }
    fn cluster_role(&self, name: &str) -> Option<Vec<PolicyRule>> {
        let r = self.cluster_roles.iter().find(|r| name_ns(r).0 == name);
        r.map(PolicyRule::rules_of)
    }
}

fn agent() -> UserInfo {
    UserInfo::service_account("isthmus", "agent", "u")
}

fn get_secret(ns: &str) -> Attributes {
    Attributes::Resource(ResourceAttributes {
        verb: "get".into(),
        resource: "secrets".into(),
        name: "s".into(),
        namespace: ns.into(),
        version: "v1".into(),
        ..ResourceAttributes::default()
    })
}

fn secret_reader() -> Value {
    json!({"metadata": {"name": "reader"}, "rules": [
        {"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]},
        {"verbs": ["get"], "nonResourceURLs": ["/metrics"]},
    ]})
}

fn binding(name: &str, ns: Option<&str>, kind: &str, role: &str, subject: Value) -> Value {
    let mut meta = json!({"name": name});
    if let Some(ns) = ns {
        meta["namespace"] = json!(ns);
    }
    json!({"metadata": meta, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role}, "subjects": [subject]})
}

#[test]
fn masters_are_allowed_without_any_binding() {
    let d = authorize(&Static::default(), &UserInfo::admin(), &get_secret("x"));
    assert_eq!((d.allowed, d.reason.as_str()), (true, ""));
}

#[test]
fn a_role_binding_to_a_cluster_role_grants_only_in_its_namespace() {
    let src = Static {
        cluster_roles: vec![secret_reader()],
        bindings: vec![binding(
            "rb",
            Some("isthmus"),
            "ClusterRole",
            "reader",
            json!({"kind": "ServiceAccount", "name": "agent"}),
        )],
        ..Static::default()
    };
    let d = authorize(&src, &agent(), &get_secret("isthmus"));
    assert!(d.allowed);
    assert_eq!(
        d.reason,
        "RBAC: allowed by RoleBinding \"rb/isthmus\" of ClusterRole \"reader\" to ServiceAccount \"agent/isthmus\""
    );
    assert!(!authorize(&src, &agent(), &get_secret("other")).allowed);
    assert!(!authorize(&src, &agent(), &get_secret("")).allowed);
    let metrics = Attributes::NonResource {
        verb: "get".into(),
        path: "/metrics".into(),
    };
    assert!(
        !authorize(&src, &agent(), &metrics).allowed,
        "non-resource rules only through ClusterRoleBindings"
    );
}

#[test]
fn a_cluster_role_binding_grants_everywhere() {
    let src = Static {
        cluster_roles: vec![secret_reader()],
        bindings: vec![binding(
            "crb",
            None,
            "ClusterRole",
            "reader",
            json!({"kind": "Group", "name": "system:serviceaccounts"}),
        )],
        ..Static::default()
    };
    for ns in ["isthmus", "other", ""] {
        assert!(authorize(&src, &agent(), &get_secret(ns)).allowed, "{ns}");
    }
    let metrics = Attributes::NonResource {
        verb: "get".into(),
        path: "/metrics".into(),
    };
    let d = authorize(&src, &agent(), &metrics);
    assert_eq!(
        d.reason,
        "RBAC: allowed by ClusterRoleBinding \"crb\" of ClusterRole \"reader\" to Group \"system:serviceaccounts\""
    );
}

#[test]
fn missing_roles_are_the_reason_of_a_denial() {
    let src = Static {
        bindings: vec![
            binding(
                "a",
                Some("isthmus"),
                "Role",
                "gone",
                json!({"kind": "User", "name": "system:serviceaccount:isthmus:agent"}),
            ),
            binding(
                "b",
                None,
                "ClusterRole",
                "gone",
                json!({"kind": "Group", "name": "system:authenticated"}),
            ),
            binding(
                "c",
                None,
                "ClusterRole",
                "gone",
                json!({"kind": "Group", "name": "system:authenticated"}),
            ),
            binding(
                "d",
                None,
                "ClusterRole",
                "other",
                json!({"kind": "Group", "name": "nobody"}),
            ),
        ],
        ..Static::default()
    };
    let d = authorize(&src, &agent(), &get_secret("isthmus"));
    assert!(!d.allowed);
    assert_eq!(
        d.reason,
        "RBAC: [clusterrole.rbac.authorization.k8s.io \"gone\" not found, role.rbac.authorization.k8s.io \"gone\" not found]"
    );
    assert_eq!(
        authorize(&Static::default(), &agent(), &get_secret("isthmus")).reason,
        ""
    );
}

#[test]
fn rules_for_lists_resource_and_non_resource_rules() {
    let src = Static {
        cluster_roles: vec![secret_reader()],
        bindings: vec![binding(
            "crb",
            None,
            "ClusterRole",
            "reader",
            json!({"kind": "ServiceAccount", "name": "agent", "namespace": "isthmus"}),
        )],
        ..Static::default()
    };
    let set = rules_for(&src, &agent(), "isthmus");
    assert_eq!(set.resource_rules.len(), 1);
    assert_eq!(
        set.non_resource_rules[0].non_resource_urls,
        vec!["/metrics"]
    );
    let admin = rules_for(&src, &UserInfo::admin(), "isthmus");
    assert_eq!(admin.resource_rules[0].resources, vec!["*"]);
}
