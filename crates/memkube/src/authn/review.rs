//! The reviews of `authentication.k8s.io/v1`: SelfSubjectReview (who am I? what `kubectl auth
//! whoami` asks) and TokenReview (who is this token, for which audiences?). Each takes the posted object and returns
//! it with `status` filled in.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::UserInfo;
use crate::Shared;
use crate::rbac::kinds::AUTHN;

/// The audience memkube's tokens are for (a real API server's default issuer).
pub const AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

fn answered(kind: &str, mut body: Value, status: Value) -> Value {
    if !body.is_object() {
        body = json!({});
    }
    body["kind"] = json!(kind);
    body["apiVersion"] = json!(format!("{AUTHN}/v1"));
    if !body.get("metadata").is_some_and(Value::is_object) {
        body["metadata"] = json!({});
    }
    body["status"] = status;
    body
}

/// Answers a SelfSubjectReview for the caller.
pub(crate) fn self_subject(caller: &UserInfo, body: Value) -> Value {
    answered(
        "SelfSubjectReview",
        body,
        json!({"userInfo": caller.to_json()}),
    )
}

/// Answers a TokenReview of `spec.token` for `spec.audiences` (the API server's own when
/// none is given): authenticated only when the token is valid for one of them, and
/// `status.audiences` lists those, as a real API server answers.
pub(crate) fn token_review(shared: &Shared, body: Value, now: DateTime<Utc>) -> Value {
    let token = body
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut wanted: Vec<String> = body
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if wanted.is_empty() {
        wanted.push(AUDIENCE.to_string());
    }
    let user = (!token.is_empty())
        .then(|| super::user_for_token(shared, &token, now, &wanted))
        .flatten();
    let status = match user {
        Some((user, audiences)) => {
            json!({"authenticated": true, "user": user.to_json(), "audiences": audiences})
        }
        None => json!({"user": {}, "error": "invalid bearer token"}),
    };
    answered("TokenReview", body, status)
}
