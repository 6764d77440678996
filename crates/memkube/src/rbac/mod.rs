//! Authorization by RBAC, as a real API server does it: the request's attributes
//! (`attributes`), the rules and bindings (`policy`), the authorizer (`authorizer`), the
//! default policy of a new cluster (`bootstrap`), the built-in types this needs (`kinds`), and
//! the access review endpoints (`review`). This file reads the policy from the store and turns
//! a denial into the API server's 403.

pub(crate) mod attributes;
pub(crate) mod authorizer;
pub(crate) mod bootstrap;
pub(crate) mod kinds;
pub(crate) mod policy;
pub(crate) mod review;

use std::sync::Arc;

use serde_json::Value;

use crate::Shared;
use crate::authn::UserInfo;
use crate::error::ApiError;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::State;
use attributes::Attributes;
use authorizer::PolicySource;
use policy::{Binding, PolicyRule};

/// The RBAC API group.
pub const GROUP: &str = "rbac.authorization.k8s.io";

/// The policy as stored in an instance.
#[derive(Debug)]
pub(crate) struct StoreSource<'a>(pub &'a State);

impl StoreSource<'_> {
    fn objects(&self, plural: &str, namespace: Option<&str>) -> Vec<Arc<Value>> {
        let Some(ty) = self.0.registry.lookup(GROUP, "v1", plural) else {
            return Vec::new();
        };
        let everything = (LabelSelector::default(), FieldSelector::default());
        self.0.list(ty, namespace, &everything.0, &everything.1).0
    }

    fn one(&self, plural: &str, namespace: Option<&str>, name: &str) -> Option<Arc<Value>> {
        let ty = self.0.registry.lookup(GROUP, "v1", plural)?;
        self.0.get(ty, namespace, name).ok()
    }
}

impl PolicySource for StoreSource<'_> {
    fn cluster_role_bindings(&self) -> Vec<Binding> {
        let objects = self.objects("clusterrolebindings", None);
        objects.iter().map(|b| Binding::from_json(b)).collect()
    }

    fn role_bindings(&self, namespace: &str) -> Vec<Binding> {
        let objects = self.objects("rolebindings", Some(namespace));
        objects.iter().map(|b| Binding::from_json(b)).collect()
    }

    fn role(&self, namespace: &str, name: &str) -> Option<Vec<PolicyRule>> {
        let role = self.one("roles", Some(namespace), name)?;
        Some(PolicyRule::rules_of(&role))
    }

    fn cluster_role(&self, name: &str) -> Option<Vec<PolicyRule>> {
        let role = self.one("clusterroles", None, name)?;
        Some(PolicyRule::rules_of(&role))
    }
}

/// Authorizes a request; a denial is the API server's 403.
pub(crate) fn authorize(
    shared: &Shared,
    user: &UserInfo,
    attrs: &Attributes,
) -> Result<(), ApiError> {
    if user.is_master() {
        return Ok(());
    }
    let decision = authorizer::authorize(&StoreSource(&shared.lock()), user, attrs);
    if decision.allowed {
        Ok(())
    } else {
        Err(denial(user, attrs, &decision.reason))
    }
}

/// The API server's authorization failure: the forbidden message (with the authorizer's
/// reason appended when there is one) wrapped as `NewForbidden` wraps it, e.g.
/// `networkconfigs.net.isthmus.io "a" is forbidden: User "x" cannot patch resource
/// "networkconfigs/status" in API group "net.isthmus.io" in the namespace "isthmus"`.
pub(crate) fn denial(user: &UserInfo, attrs: &Attributes, reason: &str) -> ApiError {
    let user_name = &user.name;
    let message = match attrs {
        Attributes::NonResource { verb, path } => {
            format!("User {user_name:?} cannot {verb} path {path:?}")
        }
        Attributes::Resource(r) => {
            let scope = if r.namespace.is_empty() {
                "at the cluster scope".to_string()
            } else {
                format!("in the namespace {:?}", r.namespace)
            };
            let resource = r.combined_resource();
            format!(
                "User {user_name:?} cannot {} resource {resource:?} in API group {:?} {scope}",
                r.verb, r.group
            )
        }
    };
    let message = message
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let detail = if reason.is_empty() {
        message
    } else {
        format!("{message}: {reason}")
    };
    let (group, resource, name) = match attrs {
        Attributes::Resource(r) => (r.group.clone(), r.resource.clone(), r.name.clone()),
        Attributes::NonResource { .. } => Default::default(),
    };
    let qualified = match (resource.is_empty(), group.is_empty()) {
        (true, true) => String::new(),
        (_, true) => resource.clone(),
        _ => format!("{resource}.{group}"),
    };
    let message = match (qualified.is_empty(), name.is_empty()) {
        (true, _) => format!("forbidden: {detail}"),
        (false, true) => format!("{qualified} is forbidden: {detail}"),
        (false, false) => format!("{qualified} {name:?} is forbidden: {detail}"),
    };
    ApiError::Denied {
        group,
        resource,
        name,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn denied(method: Method, path: &str, query: &str) -> serde_json::Value {
        let user = UserInfo::service_account("isthmus", "isthmus-route-agent", "u");
        let attrs = attributes::from_request(&method, path, query);
        denial(&user, &attrs, "").to_status()
    }

    #[test]
    fn denials_read_as_the_api_server_writes_them() {
        let s = denied(
            Method::POST,
            "/apis/net.isthmus.io/v1alpha1/namespaces/isthmus/networkconfigs",
            "",
        );
        assert_eq!(s["code"], 403);
        assert_eq!(s["reason"], "Forbidden");
        assert_eq!(
            s["message"],
            "networkconfigs.net.isthmus.io is forbidden: User \"system:serviceaccount:isthmus:isthmus-route-agent\" cannot create resource \"networkconfigs\" in API group \"net.isthmus.io\" in the namespace \"isthmus\""
        );
        assert_eq!(
            s["details"],
            serde_json::json!({"group": "net.isthmus.io", "kind": "networkconfigs"})
        );
        let s = denied(
            Method::PATCH,
            "/apis/net.isthmus.io/v1alpha1/namespaces/isthmus/networkconfigs/a/status",
            "",
        );
        assert!(s["message"].as_str().unwrap().starts_with("networkconfigs.net.isthmus.io \"a\" is forbidden: User \"system:serviceaccount:isthmus:isthmus-route-agent\" cannot patch resource \"networkconfigs/status\""));
        assert_eq!(s["details"]["name"], "a");
        let s = denied(Method::GET, "/api/v1/secrets", "");
        assert_eq!(
            s["message"],
            "secrets is forbidden: User \"system:serviceaccount:isthmus:isthmus-route-agent\" cannot list resource \"secrets\" in API group \"\" at the cluster scope"
        );
        assert_eq!(s["details"], serde_json::json!({"kind": "secrets"}));
        let s = denied(Method::GET, "/metrics", "");
        assert_eq!(
            s["message"],
            "forbidden: User \"system:serviceaccount:isthmus:isthmus-route-agent\" cannot get path \"/metrics\""
        );
        assert_eq!(s["details"], serde_json::json!({}));
    }

    #[test]
    fn the_reason_follows_the_message() {
        let user = UserInfo::service_account("n", "s", "u");
        let attrs = attributes::from_request(&Method::GET, "/api/v1/namespaces/n/pods", "");
        let msg = denial(
            &user,
            &attrs,
            "RBAC: role.rbac.authorization.k8s.io \"r\" not found",
        )
        .to_string();
        assert!(
            msg.ends_with(
                "in the namespace \"n\": RBAC: role.rbac.authorization.k8s.io \"r\" not found"
            ),
            "{msg}"
        );
    }
}
