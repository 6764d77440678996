//! TokenRequest (`POST .../serviceaccounts/{name}/token`, `authentication.k8s.io/v1`): issues
//! a token for an existing ServiceAccount that expires after `spec.expirationSeconds` (default
//! 3600, at least 600, at most 2^32, as the API server validates it) and is valid for
//! `spec.audiences` (the API server's own audience when none is given). `boundObjectRef` is
//! refused: memkube does not bind tokens to Pods or Secrets.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use super::review::AUDIENCE;
use super::tokens::AccountRef;
use crate::Shared;
use crate::error::{ApiError, Subject};
use crate::meta::{meta_str, timestamp};
use crate::rbac::kinds::AUTHN;

/// Default token lifetime.
const DEFAULT_SECONDS: i64 = 3600;
/// Shortest lifetime the API server accepts.
const MIN_SECONDS: i64 = 600;
/// Longest lifetime the API server accepts.
const MAX_SECONDS: i64 = 1 << 32;

fn invalid(value: &Value, detail: &str) -> ApiError {
    let subject = Subject {
        group: AUTHN.into(),
        kind: "TokenRequest".into(),
        name: String::new(),
    };
    let message = format!("Invalid value: {value}: {detail}");
    ApiError::invalid(
        subject,
        "FieldValueInvalid",
        "spec.expirationSeconds",
        message,
    )
}

/// `spec.expirationSeconds`, validated.
fn lifetime(spec: &Value) -> Result<i64, ApiError> {
    let Some(raw) = spec.get("expirationSeconds").filter(|v| !v.is_null()) else {
        return Ok(DEFAULT_SECONDS);
    };
    let seconds = raw.as_i64().ok_or_else(|| {
        ApiError::BadRequest(format!(
            "spec.expirationSeconds must be an integer, got {raw}"
        ))
    })?;
    if seconds < MIN_SECONDS {
        return Err(invalid(
            raw,
            "may not specify a duration less than 10 minutes",
        ));
    }
    if seconds > MAX_SECONDS {
        return Err(invalid(
            raw,
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    Ok(seconds)
}

/// `spec.audiences`: the API server's own when absent or empty.
fn requested_audiences(spec: &Value) -> Result<Vec<String>, ApiError> {
    let Some(list) = spec.get("audiences").filter(|v| !v.is_null()) else {
        return Ok(vec![AUDIENCE.to_string()]);
    };
    let list = list
        .as_array()
        .and_then(|a| {
            a.iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "spec.audiences must be a list of strings, got {list}"
            ))
        })?;
    Ok(if list.is_empty() {
        vec![AUDIENCE.to_string()]
    } else {
        list
    })
}

/// Answers a TokenRequest for ServiceAccount `name` in `namespace`.
pub(crate) fn token_request(
    shared: &Shared,
    namespace: &str,
    name: &str,
    body: Value,
    now: DateTime<Utc>,
) -> Result<Value, ApiError> {
    let mut spec = body
        .get("spec")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let seconds = lifetime(&spec)?;
    if spec.get("boundObjectRef").is_some_and(|r| !r.is_null()) {
        return Err(ApiError::BadRequest(
            "memkube does not bind tokens to objects: boundObjectRef is not supported".into(),
        ));
    }
    let uid = {
        let state = shared.lock();
        let ty = state
            .registry
            .lookup("", "v1", "serviceaccounts")
            .ok_or_else(|| ApiError::Internal("serviceaccounts are not served".into()))?;
        let sa = state.get(ty, Some(namespace), name)?;
        meta_str(&sa, "uid").unwrap_or_default().to_string()
    };
    let expires = now + Duration::seconds(seconds);
    let account = AccountRef {
        namespace: namespace.into(),
        name: name.into(),
        uid,
    };
    let audiences = requested_audiences(&spec)?;
    spec["audiences"] = json!(audiences);
    let token = shared.auth.tokens().issue(account, audiences, expires, now);
    spec["expirationSeconds"] = json!(seconds);
    Ok(json!({
        "kind": "TokenRequest",
        "apiVersion": format!("{AUTHN}/v1"),
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
        "status": {"token": token, "expirationTimestamp": timestamp(expires)},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_default_and_are_bounded() {
        assert_eq!(lifetime(&json!({})).unwrap(), 3600);
        assert_eq!(lifetime(&json!({"expirationSeconds": 600})).unwrap(), 600);
        let err = lifetime(&json!({"expirationSeconds": 599})).unwrap_err();
        assert_eq!(err.code(), 422);
        assert!(err.to_string().ends_with(
            "spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"
        ), "{err}");
        assert_eq!(
            lifetime(&json!({"expirationSeconds": (1i64 << 32) + 1}))
                .unwrap_err()
                .code(),
            422
        );
        assert_eq!(
            lifetime(&json!({"expirationSeconds": "x"}))
                .unwrap_err()
                .code(),
            400
        );
    }
}
