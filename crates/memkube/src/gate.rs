//! The request pipeline in front of the API handlers, in a real API server's order:
//! authenticate (401), derive the request's attributes and authorize them (403), then answer
//! the endpoints that need the caller's identity here (access and subject reviews,
//! TokenRequest, TokenReview) and everything else in `handler`. After a successful write to
//! Secrets or ServiceAccounts the legacy token controller runs.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use http::request::Parts;
use http::{Response, StatusCode, header};
use serde_json::Value;

use crate::Shared;
use crate::authn::{self, UserInfo, legacy, review as authn_review, token_request};
use crate::body::{ResponseBody, error_response, json_response};
use crate::error::ApiError;
use crate::rbac::attributes::{self, Attributes, ResourceAttributes};
use crate::rbac::kinds::{AUTHN, AUTHZ};
use crate::rbac::review::{self, Review};

/// An endpoint served here rather than by `handler`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Review(Review),
    SelfSubject,
    TokenReview,
    TokenRequest,
}

impl Endpoint {
    /// The endpoint a request addresses, if it is one of ours.
    fn of(r: &ResourceAttributes) -> Option<Self> {
        if r.version != "v1" {
            return None;
        }
        let endpoint = match (
            r.group.as_str(),
            r.resource.as_str(),
            r.subresource.as_str(),
        ) {
            (AUTHZ, "selfsubjectaccessreviews", "") => Self::Review(Review::SelfAccess),
            (AUTHZ, "subjectaccessreviews", "") => Self::Review(Review::Access),
            (AUTHZ, "localsubjectaccessreviews", "") => Self::Review(Review::LocalAccess),
            (AUTHZ, "selfsubjectrulesreviews", "") => Self::Review(Review::SelfRules),
            (AUTHN, "selfsubjectreviews", "") => Self::SelfSubject,
            (AUTHN, "tokenreviews", "") => Self::TokenReview,
            ("", "serviceaccounts", "token") => Self::TokenRequest,
            _ => return None,
        };
        Some(endpoint)
    }

    /// The kind posted to the endpoint.
    fn kind(self) -> &'static str {
        match self {
            Self::Review(Review::SelfAccess) => "SelfSubjectAccessReview",
            Self::Review(Review::Access) => "SubjectAccessReview",
            Self::Review(Review::LocalAccess) => "LocalSubjectAccessReview",
            Self::Review(Review::SelfRules) => "SelfSubjectRulesReview",
            Self::SelfSubject => "SelfSubjectReview",
            Self::TokenReview => "TokenReview",
            Self::TokenRequest => "TokenRequest",
        }
    }

    /// 405 unless the request creates; 404 when the path has the wrong shape for the kind.
    fn check_shape(self, r: &ResourceAttributes) -> Result<(), ApiError> {
        if r.verb != "create" {
            return Err(ApiError::MethodNotAllowed);
        }
        let (wants_namespace, wants_name) = match self {
            Self::Review(Review::LocalAccess) => (true, false),
            Self::TokenRequest => (true, true),
            _ => (false, false),
        };
        let shape_ok = wants_namespace != r.namespace.is_empty() && wants_name != r.name.is_empty();
        if shape_ok {
            Ok(())
        } else {
            Err(ApiError::NoRoute)
        }
    }
}

/// Authenticates and authorizes a request without serving it: what the API server checks
/// before anything else, for answers the request pipeline gives on its own (413, injected
/// failures, a future resourceVersion).
pub(crate) fn admit(
    shared: &Arc<Shared>,
    parts: &Parts,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let query = parts.uri.query().unwrap_or_default();
    let attrs = attributes::from_request(&parts.method, parts.uri.path(), query);
    let user = authn::authenticate(shared, parts, now)?;
    crate::rbac::authorize(shared, &user, &attrs)
}

/// Handles one request completely (watch bodies stream afterwards).
pub(crate) fn handle(
    shared: &Arc<Shared>,
    parts: &Parts,
    body: &[u8],
    now: DateTime<Utc>,
) -> Response<ResponseBody> {
    let query = parts.uri.query().unwrap_or_default();
    let attrs = attributes::from_request(&parts.method, parts.uri.path(), query);
    let admitted = authn::authenticate(shared, parts, now)
        .and_then(|user| crate::rbac::authorize(shared, &user, &attrs).map(|()| user));
    let user = match admitted {
        Ok(user) => user,
        Err(e) => {
            tracing::debug!(method = %parts.method, uri = %parts.uri, status = e.code(), "memkube request refused");
            return error_response(&e);
        }
    };
    if let Attributes::Resource(r) = &attrs
        && let Some(endpoint) = Endpoint::of(r)
    {
        return serve_endpoint(shared, &user, endpoint, r, parts, body, now)
            .unwrap_or_else(|e| error_response(&e));
    }
    let response = crate::handler::handle(shared, parts, body, now);
    if response.status().is_success() && writes_token_inputs(&attrs) {
        legacy::sync(shared, now);
    }
    response
}

/// Whether a request wrote Secrets or ServiceAccounts (what the token controller watches).
fn writes_token_inputs(attrs: &Attributes) -> bool {
    let Attributes::Resource(r) = attrs else {
        return false;
    };
    let write = matches!(
        r.verb.as_str(),
        "create" | "update" | "patch" | "delete" | "deletecollection"
    );
    write && r.group.is_empty() && matches!(r.resource.as_str(), "secrets" | "serviceaccounts")
}

fn serve_endpoint(
    shared: &Shared,
    user: &UserInfo,
    endpoint: Endpoint,
    r: &ResourceAttributes,
    parts: &Parts,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Response<ResponseBody>, ApiError> {
    endpoint.check_shape(r)?;
    let object = request_object(parts, body, endpoint.kind())?;
    let answer = match endpoint {
        Endpoint::Review(kind) => review::answer(shared, user, kind, &r.namespace, object)?,
        Endpoint::SelfSubject => authn_review::self_subject(user, object),
        Endpoint::TokenReview => authn_review::token_review(shared, object, now),
        Endpoint::TokenRequest => {
            token_request::token_request(shared, &r.namespace, &r.name, object, now)?
        }
    };
    Ok(json_response(StatusCode::CREATED, &answer))
}

/// The posted object (JSON, or YAML or Kubernetes protobuf by content type).
fn request_object(parts: &Parts, body: &[u8], kind: &str) -> Result<Value, ApiError> {
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let parsed = if content_type.contains("protobuf") {
        crate::protobuf::decode(kind, body)
    } else if content_type.contains("yaml") {
        serde_yaml::from_slice(body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| ApiError::BadRequest(format!("the request body is not a valid object: {e}")))
}
