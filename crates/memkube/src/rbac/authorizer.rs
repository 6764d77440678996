//! The authorizer (pure over a [`PolicySource`]): `system:masters` may do everything (the API
//! server's privileged-group authorizer, ahead of RBAC); everyone else gets what RBAC grants,
//! evaluated as Kubernetes' RBAC authorizer does: every ClusterRoleBinding, then (for a
//! namespaced request) the RoleBindings of the request's namespace, whose subjects include the
//! user, with the rules of the Role or ClusterRole they reference. The first rule that allows
//! the request decides; a denial's reason lists the bindings whose role could not be found.

use super::attributes::Attributes;
use super::policy::{Binding, PolicyRule};
use crate::authn::UserInfo;

/// Where the authorizer reads RBAC objects from.
pub trait PolicySource {
    /// Every ClusterRoleBinding.
    fn cluster_role_bindings(&self) -> Vec<Binding>;
    /// The RoleBindings of one namespace.
    fn role_bindings(&self, namespace: &str) -> Vec<Binding>;
    /// The rules of a Role, if it exists.
    fn role(&self, namespace: &str, name: &str) -> Option<Vec<PolicyRule>>;
    /// The rules of a ClusterRole, if it exists.
    fn cluster_role(&self, name: &str) -> Option<Vec<PolicyRule>>;
}

/// The outcome of authorizing one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Why: `RBAC: allowed by ...`, the resolution errors of a denial, or "".
    pub reason: String,
}

/// The rules a user has in a namespace (SelfSubjectRulesReview).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSet {
    /// Rules with `resources`.
    pub resource_rules: Vec<PolicyRule>,
    /// Rules with `nonResourceURLs`.
    pub non_resource_rules: Vec<PolicyRule>,
    /// Bindings whose role could not be resolved.
    pub errors: Vec<String>,
}

/// The rules of the role a binding references.
fn referenced_rules(src: &impl PolicySource, binding: &Binding) -> Result<Vec<PolicyRule>, String> {
    let name = &binding.role_name;
    match binding.role_kind.as_str() {
        "Role" => src
            .role(&binding.namespace, name)
            .ok_or_else(|| format!("role.rbac.authorization.k8s.io {name:?} not found")),
        "ClusterRole" => src
            .cluster_role(name)
            .ok_or_else(|| format!("clusterrole.rbac.authorization.k8s.io {name:?} not found")),
        other => Err(format!("unsupported role reference kind: {other:?}")),
    }
}

/// ClusterRoleBindings, then the namespace's RoleBindings (none for cluster-scoped requests).
fn bindings_for(src: &impl PolicySource, namespace: &str) -> Vec<Binding> {
    let mut bindings = src.cluster_role_bindings();
    if !namespace.is_empty() {
        bindings.extend(src.role_bindings(namespace));
    }
    bindings
}

/// Errors joined as Kubernetes' error aggregate prints them: one as is, several deduplicated
/// in `[a, b]`.
fn aggregate(errors: &[String]) -> String {
    let mut unique: Vec<&str> = Vec::new();
    for e in errors {
        if !unique.contains(&e.as_str()) {
            unique.push(e);
        }
    }
    match unique.as_slice() {
        [] => String::new(),
        [one] => (*one).to_string(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// Authorizes one request.
pub fn authorize(src: &impl PolicySource, user: &UserInfo, attrs: &Attributes) -> Decision {
    if user.is_master() {
        return Decision {
            allowed: true,
            reason: String::new(),
        };
    }
    let mut errors = Vec::new();
    for binding in bindings_for(src, attrs.namespace()) {
        let Some(subject) = binding.subject_for(user) else {
            continue;
        };
        match referenced_rules(src, &binding) {
            Err(e) => errors.push(e),
            Ok(rules) if rules.iter().any(|r| r.allows(attrs)) => {
                return Decision {
                    allowed: true,
                    reason: format!("RBAC: allowed by {}", binding.describe(subject)),
                };
            }
            Ok(_) => {}
        }
    }
    let reason = if errors.is_empty() {
        String::new()
    } else {
        format!("RBAC: {}", aggregate(&errors))
    };
    Decision {
        allowed: false,
        reason,
    }
}

/// Every rule the user has in `namespace`: `system:masters` first gets `*` on everything, then
/// RBAC's rules in binding order.
pub fn rules_for(src: &impl PolicySource, user: &UserInfo, namespace: &str) -> RuleSet {
    let mut set = RuleSet::default();
    let star = || vec!["*".to_string()];
    if user.is_master() {
        set.resource_rules.push(PolicyRule {
            verbs: star(),
            api_groups: star(),
            resources: star(),
            ..PolicyRule::default()
        });
        set.non_resource_rules.push(PolicyRule {
            verbs: star(),
            non_resource_urls: star(),
            ..PolicyRule::default()
        });
    }
    for binding in bindings_for(src, namespace) {
        if binding.subject_for(user).is_none() {
            continue;
        }
        match referenced_rules(src, &binding) {
            Err(e) => set.errors.push(e),
            Ok(rules) => {
                for rule in rules {
                    if !rule.resources.is_empty() {
                        set.resource_rules.push(rule.clone());
                    }
                    if !rule.non_resource_urls.is_empty() {
                        set.non_resource_rules.push(rule);
                    }
                }
            }
        }
    }
    set
}

/// A resolution error list as a SelfSubjectRulesReview's `evaluationError` shows it.
pub fn evaluation_error(errors: &[String]) -> String {
    aggregate(errors)
}

#[cfg(test)]
mod tests;
