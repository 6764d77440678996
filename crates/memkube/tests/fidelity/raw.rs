//! Raw HTTP through a `kube::Client`, for cases that must control the exact bytes sent or
//! read the exact `Status` body returned.

use http::{Method, Request};
use http_body_util::BodyExt;
use kube::Client;
use serde_json::Value;

/// The answer to one raw request: status code and JSON body (`Null` if it is not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status code.
    pub code: u16,
    /// The body.
    pub body: Value,
}

/// Sends `body` with `content_type` and returns the answer, whatever its status.
pub async fn send(
    client: &Client,
    method: Method,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> Answer {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(kube::client::Body::from(body))
        .expect("a valid request");
    let response = client.send(request).await.expect("the server answers");
    let code = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer { code, body }
}

/// GET `path`.
pub async fn get(client: &Client, path: &str) -> Answer {
    send(client, Method::GET, path, "application/json", Vec::new()).await
}

/// A JSON request.
pub async fn json(client: &Client, method: Method, path: &str, body: &Value) -> Answer {
    let bytes = serde_json::to_vec(body).expect("serializable");
    send(client, method, path, "application/json", bytes).await
}

/// A server-side apply of `body` (JSON) by `manager`.
pub async fn apply(client: &Client, path: &str, manager: &str, body: &Value) -> Answer {
    let separator = if path.contains('?') { '&' } else { '?' };
    let path = format!("{path}{separator}fieldManager={manager}");
    let bytes = serde_json::to_vec(body).expect("serializable");
    send(
        client,
        Method::PATCH,
        &path,
        "application/apply-patch+yaml",
        bytes,
    )
    .await
}

/// The path of a namespaced custom resource collection (or object, with `name`).
pub fn custom(group_version: &str, ns: &str, plural: &str, name: Option<&str>) -> String {
    let base = format!("/apis/{group_version}/namespaces/{ns}/{plural}");
    match name {
        Some(name) => format!("{base}/{name}"),
        None => base,
    }
}

/// The path of a core/v1 namespaced collection (or object, with `name`).
pub fn core(ns: &str, plural: &str, name: Option<&str>) -> String {
    let base = format!("/api/v1/namespaces/{ns}/{plural}");
    match name {
        Some(name) => format!("{base}/{name}"),
        None => base,
    }
}
