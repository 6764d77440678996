//! RBAC objects as the authorizer reads them (pure): [`PolicyRule`] with Kubernetes' matching
//! rules (`*` for verbs, groups and resources, `*/subresource`, `resourceNames` that never match
//! a request without a name, `nonResourceURLs` with a trailing `*` prefix match), and
//! [`Binding`]s with their [`Subject`]s and role reference. Stored objects are read leniently:
//! memkube does not validate RBAC objects on write, so a missing list is an empty one.

use serde_json::Value;

use super::attributes::{Attributes, ResourceAttributes};
use crate::authn::UserInfo;

/// One `rules[]` entry of a Role or ClusterRole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyRule {
    /// `verbs`
    pub verbs: Vec<String>,
    /// `apiGroups`
    pub api_groups: Vec<String>,
    /// `resources` (may be `resource/subresource`, `*`, or `*/subresource`)
    pub resources: Vec<String>,
    /// `resourceNames`
    pub resource_names: Vec<String>,
    /// `nonResourceURLs`
    pub non_resource_urls: Vec<String>,
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

impl PolicyRule {
    /// Reads one rule object.
    pub fn from_json(v: &Value) -> Self {
        Self {
            verbs: strings(v, "verbs"),
            api_groups: strings(v, "apiGroups"),
            resources: strings(v, "resources"),
            resource_names: strings(v, "resourceNames"),
            non_resource_urls: strings(v, "nonResourceURLs"),
        }
    }

    /// The `rules` of a Role or ClusterRole object.
    pub fn rules_of(role: &Value) -> Vec<Self> {
        role.get("rules")
            .and_then(Value::as_array)
            .map(|rules| rules.iter().map(Self::from_json).collect())
            .unwrap_or_default()
    }

    /// Whether this rule allows the request (Kubernetes' `RuleAllows`).
    pub fn allows(&self, attrs: &Attributes) -> bool {
        match attrs {
            Attributes::Resource(r) => self.allows_resource(r),
            Attributes::NonResource { verb, path } => {
                self.verb_matches(verb) && self.url_matches(path)
            }
        }
    }

    fn allows_resource(&self, r: &ResourceAttributes) -> bool {
        self.verb_matches(&r.verb)
            && self.api_groups.iter().any(|g| g == "*" || *g == r.group)
            && self.resource_matches(&r.combined_resource(), &r.subresource)
            && (self.resource_names.is_empty() || self.resource_names.contains(&r.name))
    }

    fn verb_matches(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == "*" || v == verb)
    }

    fn resource_matches(&self, combined: &str, subresource: &str) -> bool {
        self.resources.iter().any(|res| {
            res == "*"
                || res == combined
                || (!subresource.is_empty() && res.strip_prefix("*/") == Some(subresource))
        })
    }

    fn url_matches(&self, path: &str) -> bool {
        self.non_resource_urls.iter().any(|url| {
            url == "*"
                || url == path
                || url
                    .strip_suffix('*')
                    .is_some_and(|prefix| path.starts_with(prefix.trim_end_matches('*')))
        })
    }
}

/// One `subjects[]` entry of a binding.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    /// `User`, `Group` or `ServiceAccount`.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Namespace (ServiceAccount subjects only; "" = the binding's namespace).
    pub namespace: String,
}

impl Subject {
    /// Whether the subject is this user; `binding_ns` is the RoleBinding's namespace ("" for a
    /// ClusterRoleBinding, where a ServiceAccount subject without a namespace matches nobody).
    pub fn applies_to(&self, user: &UserInfo, binding_ns: &str) -> bool {
        match self.kind.as_str() {
            "User" => user.name == self.name,
            "Group" => user.groups.contains(&self.name),
            "ServiceAccount" => {
                let ns = if self.namespace.is_empty() {
                    binding_ns
                } else {
                    &self.namespace
                };
                !ns.is_empty() && user.name == format!("system:serviceaccount:{ns}:{}", self.name)
            }
            _ => false,
        }
    }

    /// How RBAC names the subject in an "allowed by" reason: `ServiceAccount "name/ns"`,
    /// `User "name"`, `Group "name"`.
    pub fn describe(&self, binding_ns: &str) -> String {
        if self.kind == "ServiceAccount" {
            let ns = if self.namespace.is_empty() {
                binding_ns
            } else {
                &self.namespace
            };
            format!("{} \"{}/{ns}\"", self.kind, self.name)
        } else {
            format!("{} \"{}\"", self.kind, self.name)
        }
    }
}

/// A RoleBinding (with its namespace) or a ClusterRoleBinding (namespace "").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Binding {
    /// `metadata.name`
    pub name: String,
    /// `metadata.namespace` ("" for a ClusterRoleBinding).
    pub namespace: String,
    /// `roleRef.kind`: `Role` or `ClusterRole`.
    pub role_kind: String,
    /// `roleRef.name`
    pub role_name: String,
    /// `subjects`
    pub subjects: Vec<Subject>,
}

impl Binding {
    /// Reads a stored binding object.
    pub fn from_json(obj: &Value) -> Self {
        let meta = obj.get("metadata").unwrap_or(&Value::Null);
        let role_ref = obj.get("roleRef").unwrap_or(&Value::Null);
        let subjects = obj
            .get("subjects")
            .and_then(Value::as_array)
            .map(|subjects| {
                subjects
                    .iter()
                    .map(|s| Subject {
                        kind: text(s, "kind"),
                        name: text(s, "name"),
                        namespace: text(s, "namespace"),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            name: text(meta, "name"),
            namespace: text(meta, "namespace"),
            role_kind: text(role_ref, "kind"),
            role_name: text(role_ref, "name"),
            subjects,
        }
    }

    /// The first subject that is this user.
    pub fn subject_for(&self, user: &UserInfo) -> Option<&Subject> {
        self.subjects
            .iter()
            .find(|s| s.applies_to(user, &self.namespace))
    }

    /// RBAC's description of a grant through this binding, e.g. `RoleBinding "rb/ns" of Role
    /// "r" to ServiceAccount "sa/ns"`.
    pub fn describe(&self, subject: &Subject) -> String {
        let (kind, name) = if self.namespace.is_empty() {
            ("ClusterRoleBinding", self.name.clone())
        } else {
            ("RoleBinding", format!("{}/{}", self.name, self.namespace))
        };
        format!(
            "{kind} \"{name}\" of {} \"{}\" to {}",
            self.role_kind,
            self.role_name,
            subject.describe(&self.namespace)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes::Resource(ResourceAttributes {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
            namespace: "ns".into(),
            version: "v1".into(),
        })
    }

    fn rule(v: Value) -> PolicyRule {
        PolicyRule::from_json(&v)
    }

    #[test]
    fn verbs_groups_and_resources_match_exactly_or_by_star() {
        let r = rule(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}));
        assert!(r.allows(&attrs("get", "", "secrets", "", "a")));
        assert!(!r.allows(&attrs("list", "", "secrets", "", "")));
        assert!(!r.allows(&attrs("get", "apps", "secrets", "", "a")));
        assert!(!r.allows(&attrs("get", "", "configmaps", "", "a")));
        let all = rule(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}));
        assert!(all.allows(&attrs("deletecollection", "x.io", "widgets", "status", "")));
        assert!(!all.allows(&Attributes::NonResource {
            verb: "get".into(),
            path: "/version".into()
        }));
    }

    #[test]
    fn subresources_need_their_own_rule_or_star_slash() {
        let main =
            rule(json!({"verbs": ["patch"], "apiGroups": ["x.io"], "resources": ["widgets"]}));
        assert!(!main.allows(&attrs("patch", "x.io", "widgets", "status", "w")));
        let status = rule(
            json!({"verbs": ["patch"], "apiGroups": ["x.io"], "resources": ["widgets/status"]}),
        );
        assert!(status.allows(&attrs("patch", "x.io", "widgets", "status", "w")));
        assert!(!status.allows(&attrs("patch", "x.io", "widgets", "", "w")));
        let any =
            rule(json!({"verbs": ["patch"], "apiGroups": ["x.io"], "resources": ["*/status"]}));
        assert!(any.allows(&attrs("patch", "x.io", "gadgets", "status", "g")));
        assert!(!any.allows(&attrs("patch", "x.io", "gadgets", "scale", "g")));
    }

    #[test]
    fn resource_names_never_match_unnamed_requests() {
        let r = rule(
            json!({"verbs": ["*"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"]}),
        );
        assert!(r.allows(&attrs("get", "", "configmaps", "", "a")));
        assert!(!r.allows(&attrs("get", "", "configmaps", "", "b")));
        for verb in ["list", "watch", "create", "deletecollection"] {
            assert!(!r.allows(&attrs(verb, "", "configmaps", "", "")), "{verb}");
        }
    }

    #[test]
    fn non_resource_urls_match_exactly_or_by_prefix() {
        let r = rule(json!({"verbs": ["get"], "nonResourceURLs": ["/healthz", "/apis/*"]}));
        let get = |p: &str| Attributes::NonResource {
            verb: "get".into(),
            path: p.into(),
        };
        assert!(r.allows(&get("/healthz")));
        assert!(!r.allows(&get("/healthz/ping")));
        assert!(r.allows(&get("/apis/apps/v1")));
        assert!(!r.allows(&get("/apis")));
        assert!(!r.allows(&Attributes::NonResource {
            verb: "post".into(),
            path: "/healthz".into()
        }));
        assert!(!r.allows(&attrs("get", "", "healthz", "", "")));
    }

    #[test]
    fn subjects_match_users_groups_and_service_accounts() {
        let sa = UserInfo::service_account("isthmus", "agent", "u1");
        let subject = |kind: &str, name: &str, ns: &str| Subject {
            kind: kind.into(),
            name: name.into(),
            namespace: ns.into(),
        };
        assert!(subject("ServiceAccount", "agent", "isthmus").applies_to(&sa, ""));
        assert!(subject("ServiceAccount", "agent", "").applies_to(&sa, "isthmus"));
        assert!(!subject("ServiceAccount", "agent", "").applies_to(&sa, ""));
        assert!(!subject("ServiceAccount", "agent", "other").applies_to(&sa, "isthmus"));
        assert!(subject("User", "system:serviceaccount:isthmus:agent", "").applies_to(&sa, ""));
        assert!(subject("Group", "system:serviceaccounts:isthmus", "").applies_to(&sa, ""));
        assert!(!subject("Group", "system:masters", "").applies_to(&sa, ""));
        assert_eq!(
            subject("ServiceAccount", "agent", "").describe("isthmus"),
            "ServiceAccount \"agent/isthmus\""
        );
    }
}
