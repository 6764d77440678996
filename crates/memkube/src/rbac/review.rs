//! The access reviews of `authorization.k8s.io/v1`: SelfSubjectAccessReview (may the caller do
//! this?), SubjectAccessReview and LocalSubjectAccessReview (may this user and these groups do
//! this?) and SelfSubjectRulesReview (what may the caller do in a namespace?). Each takes the
//! posted object and returns it with `status` filled in by the authorizer.

use serde_json::{Value, json};

use super::StoreSource;
use super::attributes::{Attributes, ResourceAttributes};
use super::authorizer::{self, RuleSet};
use super::kinds::AUTHZ;
use super::policy::PolicyRule;
use crate::Shared;
use crate::authn::UserInfo;
use crate::error::{ApiError, Subject};

/// Which review was posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Review {
    /// `selfsubjectaccessreviews`
    SelfAccess,
    /// `subjectaccessreviews`
    Access,
    /// `localsubjectaccessreviews` (namespaced)
    LocalAccess,
    /// `selfsubjectrulesreviews`
    SelfRules,
}

impl Review {
    fn kind(self) -> &'static str {
        match self {
            Self::SelfAccess => "SelfSubjectAccessReview",
            Self::Access => "SubjectAccessReview",
            Self::LocalAccess => "LocalSubjectAccessReview",
            Self::SelfRules => "SelfSubjectRulesReview",
        }
    }
}

fn invalid(review: Review, field: &str, value: &str, detail: &str) -> ApiError {
    let subject = Subject {
        group: AUTHZ.into(),
        kind: review.kind().into(),
        name: String::new(),
    };
    let message = format!("Invalid value: {value:?}: {detail}");
    ApiError::invalid(subject, "FieldValueInvalid", field, message)
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The attributes a review asks about (exactly one of `resourceAttributes` and
/// `nonResourceAttributes`).
fn spec_attributes(review: Review, spec: &Value) -> Result<Attributes, ApiError> {
    let present = |key: &str| spec.get(key).filter(|v| v.is_object());
    match (
        present("resourceAttributes"),
        present("nonResourceAttributes"),
    ) {
        (Some(r), None) => Ok(Attributes::Resource(ResourceAttributes {
            verb: text(r, "verb"),
            group: text(r, "group"),
            version: text(r, "version"),
            resource: text(r, "resource"),
            subresource: text(r, "subresource"),
            name: text(r, "name"),
            namespace: text(r, "namespace"),
        })),
        (None, Some(_)) if review == Review::LocalAccess => Err(invalid(
            review,
            "spec.nonResourceAttributes",
            "object",
            "disallowed on this kind of request",
        )),
        (None, Some(n)) => Ok(Attributes::NonResource {
            verb: text(n, "verb"),
            path: text(n, "path"),
        }),
        (Some(_), Some(_)) => Err(invalid(
            review,
            "spec.nonResourceAttributes",
            "object",
            "cannot be specified in combination with resourceAttributes",
        )),
        (None, None) => Err(invalid(
            review,
            "spec.resourceAttributes",
            "null",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
    }
}

/// The user a SubjectAccessReview describes.
fn described_user(review: Review, spec: &Value) -> Result<UserInfo, ApiError> {
    let name = text(spec, "user");
    let groups: Vec<String> = spec
        .get("groups")
        .and_then(Value::as_array)
        .map(|g| {
            g.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    if name.is_empty() && groups.is_empty() {
        return Err(invalid(
            review,
            "spec.user",
            "",
            "at least one of user or group must be specified",
        ));
    }
    Ok(UserInfo::described(&name, &text(spec, "uid"), groups))
}

/// The posted object with `kind`, `apiVersion` and `status`.
fn answered(review: Review, mut body: Value, status: Value) -> Value {
    if !body.is_object() {
        body = json!({});
    }
    body["kind"] = json!(review.kind());
    body["apiVersion"] = json!(format!("{AUTHZ}/v1"));
    if !body.get("metadata").is_some_and(Value::is_object) {
        body["metadata"] = json!({});
    }
    body["status"] = status;
    body
}

/// Answers a review posted by `caller`; `namespace` is the request path's (LocalAccess only).
pub(crate) fn answer(
    shared: &Shared,
    caller: &UserInfo,
    review: Review,
    namespace: &str,
    body: Value,
) -> Result<Value, ApiError> {
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    if review == Review::SelfRules {
        let ns = text(&spec, "namespace");
        if ns.is_empty() {
            return Err(ApiError::BadRequest("no namespace on request".into()));
        }
        let set = authorizer::rules_for(&StoreSource(&shared.lock()), caller, &ns);
        return Ok(answered(review, body, rules_status(&set)));
    }
    let attrs = spec_attributes(review, &spec)?;
    let user = match review {
        Review::SelfAccess => caller.clone(),
        _ => described_user(review, &spec)?,
    };
    if review == Review::LocalAccess {
        check_local_namespace(review, &body, &attrs, namespace)?;
    }
    let decision = authorizer::authorize(&StoreSource(&shared.lock()), &user, &attrs);
    let mut status = json!({"allowed": decision.allowed});
    if !decision.reason.is_empty() {
        status["reason"] = json!(decision.reason);
    }
    Ok(answered(review, body, status))
}

/// A LocalSubjectAccessReview asks about its own namespace only.
fn check_local_namespace(
    review: Review,
    body: &Value,
    attrs: &Attributes,
    namespace: &str,
) -> Result<(), ApiError> {
    let meta_ns = body
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|ns| !ns.is_empty())
        .unwrap_or(namespace);
    if meta_ns != namespace {
        return Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        ));
    }
    if attrs.namespace() != namespace {
        return Err(invalid(
            review,
            "spec.resourceAttributes.namespace",
            attrs.namespace(),
            "must match metadata.namespace",
        ));
    }
    Ok(())
}

fn rule_json(rule: &PolicyRule, resource: bool) -> Value {
    let mut out = json!({"verbs": rule.verbs});
    let lists: &[(&str, &Vec<String>)] = if resource {
        &[
            ("apiGroups", &rule.api_groups),
            ("resources", &rule.resources),
            ("resourceNames", &rule.resource_names),
        ]
    } else {
        &[("nonResourceURLs", &rule.non_resource_urls)]
    };
    for (key, list) in lists {
        if !list.is_empty() {
            out[*key] = json!(list);
        }
    }
    out
}

/// A SelfSubjectRulesReview's `status`.
fn rules_status(set: &RuleSet) -> Value {
    let resource: Vec<Value> = set
        .resource_rules
        .iter()
        .map(|r| rule_json(r, true))
        .collect();
    let non_resource: Vec<Value> = set
        .non_resource_rules
        .iter()
        .map(|r| rule_json(r, false))
        .collect();
    let mut status =
        json!({"resourceRules": resource, "nonResourceRules": non_resource, "incomplete": false});
    if !set.errors.is_empty() {
        status["evaluationError"] = json!(authorizer::evaluation_error(&set.errors));
    }
    status
}
