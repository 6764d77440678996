//! Errors: the library's [`Error`] (setup and serving problems) and [`ApiError`], a request that
//! failed with a Kubernetes `Status`. `ApiError::to_status` is the one place an error becomes a
//! `metav1.Status` body with its `reason`, `code` and `details`.

use serde_json::{Value, json};

/// Errors from setting up or serving a [`crate::MemKube`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A CustomResourceDefinition could not be registered.
    #[error("invalid CustomResourceDefinition {name}: {reason}")]
    InvalidCrd {
        /// `metadata.name` of the CRD.
        name: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A namespace could not be created.
    #[error("creating namespace {name}: {reason}")]
    Namespace {
        /// The namespace.
        name: String,
        /// Why not.
        reason: String,
    },
    /// The HTTP listener could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// Address we tried to bind.
        addr: std::net::SocketAddr,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate authority, a serving certificate or the TLS configuration could
    /// not be made.
    #[error("TLS setup: {reason}")]
    Tls {
        /// What failed.
        reason: String,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The object a `Status` error is about (`details.group`, `details.kind`, `details.name`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    /// API group ("" for core).
    pub group: String,
    /// Resource plural, as the real API server reports it in `details.kind` for most errors.
    pub kind: String,
    /// Object name.
    pub name: String,
}

/// One invalid field in a 422 response (`details.causes[]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, `FieldValueForbidden`...
    pub reason: String,
    /// Path of the field, e.g. `spec.port`.
    pub field: String,
    /// Human-readable message.
    pub message: String,
}

/// A request that failed; rendered as a Kubernetes `Status` object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// 404 NotFound.
    #[error("{} \"{}\" not found", qualified(&.0.kind, &.0.group), .0.name)]
    NotFound(Subject),
    /// 409 AlreadyExists.
    #[error("{} \"{}\" already exists", qualified(&.0.kind, &.0.group), .0.name)]
    AlreadyExists(Subject),
    /// 409 Conflict (stale resourceVersion, failed precondition, apply conflict).
    #[error("Operation cannot be fulfilled on {} \"{}\": {message}", qualified(&.subject.kind, &.subject.group), .subject.name)]
    Conflict {
        /// The object.
        subject: Subject,
        /// Why.
        message: String,
        /// Per-field causes (server-side apply conflicts).
        causes: Vec<Cause>,
    },
    /// 410 Expired: the resourceVersion is older than the retained event history.
    #[error("too old resource version: {requested} ({oldest})")]
    Expired {
        /// The version the client asked for.
        requested: u64,
        /// The oldest version we can still resume from.
        oldest: u64,
    },
    /// 422 Invalid.
    #[error("{} \"{}\" is invalid: {}", qualified(&.subject.kind, &.subject.group), .subject.name, join_causes(.causes))]
    Invalid {
        /// The object (here `kind` is the object's Kind, as the API server reports it).
        subject: Subject,
        /// The invalid fields.
        causes: Vec<Cause>,
    },
    /// 400 BadRequest.
    #[error("{0}")]
    BadRequest(String),
    /// 403 Forbidden (used for writes into a terminating namespace).
    #[error("{0}")]
    Forbidden(String),
    /// 403 Forbidden by the authorizer; `details` name the request's resource (see `rbac`).
    #[error("{message}")]
    Denied {
        /// API group of the request ("" for core or non-resource requests).
        group: String,
        /// Resource of the request, without subresource ("" for non-resource requests).
        resource: String,
        /// Object name ("" when the request names none).
        name: String,
        /// The whole message, e.g. `secrets is forbidden: User "x" cannot list ...`.
        message: String,
    },
    /// 401 Unauthorized: a bad bearer token, or no credentials where they are required.
    #[error("Unauthorized")]
    Unauthorized,
    /// 404 NotFound for a path that addresses nothing.
    #[error("the server could not find the requested resource")]
    NoRoute,
    /// 405 MethodNotAllowed.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// 406 NotAcceptable.
    #[error("{0}")]
    NotAcceptable(String),
    /// 415 UnsupportedMediaType.
    #[error("the body of the request was in an unknown format - accepted media types include: {0}")]
    UnsupportedMediaType(String),
    /// 500 InternalError.
    #[error("Internal error occurred: {0}")]
    Internal(String),
    /// 413 RequestEntityTooLarge: the request body is over the API server's limit.
    #[error("Request entity too large: limit is {limit}")]
    RequestEntityTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// A failure the API server passes on without a `reason` (an error that is not a
    /// `Status`: etcd's "request is too large", a field manager error...).
    #[error("{message}")]
    Plain {
        /// HTTP status code (500 for every case memkube produces but injected faults).
        code: u16,
        /// The message, verbatim.
        message: String,
    },
    /// 503 ServiceUnavailable.
    #[error("{0}")]
    ServiceUnavailable(String),
    /// 504 Timeout: a get or list asked for a resourceVersion the server has not reached.
    #[error("Timeout: Too large resource version: {requested}, current: {current}")]
    TooLargeResourceVersion {
        /// The version asked for.
        requested: u64,
        /// The latest version issued.
        current: u64,
    },
    /// 410 Expired: a list continued or read at a resourceVersion that is compacted away.
    #[error("{}", expired_list_message(.continue_token.is_some()))]
    ListExpired {
        /// A token continuing the list at the latest version (inconsistently), when the
        /// request was paginated.
        continue_token: Option<String>,
    },
}

fn expired_list_message(paginated: bool) -> &'static str {
    if paginated {
        "The provided continue parameter is too old to display a consistent list result. You \
         can start a new list without the continue parameter, or use the continue token in this \
         response to retrieve the remainder of the results. Continuing with the provided token \
         results in an inconsistent list - objects that were created, modified, or deleted \
         between the time the first chunk was returned and now may show up in the list."
    } else {
        "The resourceVersion for the provided list is too old."
    }
}

fn qualified(kind: &str, group: &str) -> String {
    if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    }
}

fn join_causes(causes: &[Cause]) -> String {
    let parts: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("[{}]", parts.join(", "))
    }
}

impl ApiError {
    /// HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            Self::NotFound(_) | Self::NoRoute => 404,
            Self::AlreadyExists(_) | Self::Conflict { .. } => 409,
            Self::Expired { .. } => 410,
            Self::Invalid { .. } => 422,
            Self::BadRequest(_) => 400,
            Self::Forbidden(_) | Self::Denied { .. } => 403,
            Self::Unauthorized => 401,
            Self::MethodNotAllowed => 405,
            Self::NotAcceptable(_) => 406,
            Self::UnsupportedMediaType(_) => 415,
            Self::Internal(_) => 500,
            Self::RequestEntityTooLarge { .. } => 413,
            Self::Plain { code, .. } => *code,
            Self::ServiceUnavailable(_) => 503,
            Self::TooLargeResourceVersion { .. } => 504,
            Self::ListExpired { .. } => 410,
        }
    }

    /// `Status.reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound(_) | Self::NoRoute => "NotFound",
            Self::AlreadyExists(_) => "AlreadyExists",
            Self::Conflict { .. } => "Conflict",
            Self::Expired { .. } => "Expired",
            Self::Invalid { .. } => "Invalid",
            Self::BadRequest(_) => "BadRequest",
            Self::Forbidden(_) | Self::Denied { .. } => "Forbidden",
            Self::Unauthorized => "Unauthorized",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::NotAcceptable(_) => "NotAcceptable",
            Self::UnsupportedMediaType(_) => "UnsupportedMediaType",
            Self::Internal(_) => "InternalError",
            Self::RequestEntityTooLarge { .. } => "RequestEntityTooLarge",
            Self::Plain { .. } => "",
            Self::ServiceUnavailable(_) => "ServiceUnavailable",
            Self::TooLargeResourceVersion { .. } => "Timeout",
            Self::ListExpired { .. } => "Expired",
        }
    }

    /// A single-cause 422.
    pub fn invalid(subject: Subject, reason: &str, field: &str, message: String) -> Self {
        let cause = Cause {
            reason: reason.into(),
            field: field.into(),
            message,
        };
        Self::Invalid {
            subject,
            causes: vec![cause],
        }
    }

    /// A 409 Conflict without causes.
    pub fn conflict(subject: Subject, message: impl Into<String>) -> Self {
        Self::Conflict {
            subject,
            message: message.into(),
            causes: Vec::new(),
        }
    }

    /// The `metav1.Status` body (without `reason` when the API server gives none).
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        if self.reason().is_empty()
            && let Some(map) = status.as_object_mut()
        {
            map.remove("reason");
        }
        if let Self::ListExpired {
            continue_token: Some(token),
        } = self
        {
            status["metadata"] = json!({ "continue": token });
        }
        if let Some(details) = self.details() {
            status["details"] = details;
        }
        status
    }

    fn details(&self) -> Option<Value> {
        if let Self::TooLargeResourceVersion { .. } = self {
            let cause = json!({"reason": "ResourceVersionTooLarge", "message": "Too large resource version"});
            return Some(json!({"causes": [cause], "retryAfterSeconds": 1}));
        }
        let (subject, causes) = match self {
            Self::NotFound(s) | Self::AlreadyExists(s) => (s, &[][..]),
            Self::Conflict {
                subject, causes, ..
            }
            | Self::Invalid { subject, causes } => (subject, causes.as_slice()),
            Self::Denied {
                group,
                resource,
                name,
                ..
            } => return Some(denied_details(group, resource, name)),
            _ => return None,
        };
        let mut details = json!({ "name": subject.name, "kind": subject.kind });
        if !subject.group.is_empty() {
            details["group"] = json!(subject.group);
        }
        if !causes.is_empty() {
            let causes: Vec<Value> = causes
                .iter()
                .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                .collect();
            details["causes"] = Value::Array(causes);
        }
        Some(details)
    }
}

/// `details` of an authorizer denial: only the non-empty fields, as Go's `omitempty` writes
/// them (a non-resource denial has `"details": {}`).
fn denied_details(group: &str, resource: &str, name: &str) -> Value {
    let mut details = serde_json::Map::new();
    for (key, value) in [("name", name), ("group", group), ("kind", resource)] {
        if !value.is_empty() {
            details.insert(key.into(), json!(value));
        }
    }
    Value::Object(details)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject {
        Subject {
            group: "example.io".into(),
            kind: "widgets".into(),
            name: "w1".into(),
        }
    }

    #[test]
    fn not_found_status_has_reason_code_and_details() {
        let status = ApiError::NotFound(subject()).to_status();
        assert_eq!(status["code"], 404);
        assert_eq!(status["reason"], "NotFound");
        assert_eq!(status["message"], "widgets.example.io \"w1\" not found");
        assert_eq!(status["details"]["group"], "example.io");
        assert_eq!(status["details"]["name"], "w1");
    }

    #[test]
    fn invalid_lists_causes() {
        let mut s = subject();
        s.kind = "Widget".into();
        let err = ApiError::invalid(s, "FieldValueInvalid", "spec.x", "bad".into());
        let status = err.to_status();
        assert_eq!(status["code"], 422);
        assert_eq!(status["details"]["causes"][0]["field"], "spec.x");
        assert_eq!(
            status["message"],
            "Widget.example.io \"w1\" is invalid: spec.x: bad"
        );
    }

    #[test]
    fn expired_is_410_without_details() {
        let status = ApiError::Expired {
            requested: 3,
            oldest: 9,
        }
        .to_status();
        assert_eq!(status["code"], 410);
        assert_eq!(status["reason"], "Expired");
        assert!(status.get("details").is_none());
    }

    #[test]
    fn plain_failures_have_no_reason() {
        let status = ApiError::Plain {
            code: 500,
            message: "etcdserver: request is too large".into(),
        }
        .to_status();
        let expected = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": "etcdserver: request is too large", "code": 500});
        assert_eq!(status, expected);
    }

    #[test]
    fn too_large_body_and_future_version_render_as_the_api_server_does() {
        let status = ApiError::RequestEntityTooLarge { limit: 3_145_728 }.to_status();
        assert_eq!(
            status["message"],
            "Request entity too large: limit is 3145728"
        );
        assert_eq!(
            (status["code"].as_u64(), status["reason"].as_str()),
            (Some(413), Some("RequestEntityTooLarge"))
        );
        let status = ApiError::TooLargeResourceVersion {
            requested: 9,
            current: 7,
        }
        .to_status();
        assert_eq!(
            status["message"],
            "Timeout: Too large resource version: 9, current: 7"
        );
        assert_eq!(status["details"]["retryAfterSeconds"], 1);
        assert_eq!(
            status["details"]["causes"][0]["reason"],
            "ResourceVersionTooLarge"
        );
    }

    #[test]
    fn expired_continue_carries_an_inconsistent_token() {
        let status = ApiError::ListExpired {
            continue_token: Some("t".into()),
        }
        .to_status();
        assert_eq!(status["metadata"]["continue"], "t");
        assert!(
            status["message"]
                .as_str()
                .unwrap()
                .contains("inconsistent list")
        );
        let plain = ApiError::ListExpired {
            continue_token: None,
        };
        assert_eq!(
            plain.to_string(),
            "The resourceVersion for the provided list is too old."
        );
    }
}
