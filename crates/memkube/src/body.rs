//! The response body type and the helpers that build JSON and error responses.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use serde_json::Value;

use crate::error::ApiError;

/// The body of every memkube response: whole JSON documents, or a watch stream (which an
/// injected fault may cut).
pub type ResponseBody = UnsyncBoxBody<Bytes, StreamCut>;

/// Why a response body stopped before its end: the connection was cut (see
/// [`crate::Faults::drop_watches`]). Its source is an `io::Error` of kind `UnexpectedEof`, what
/// a client reading a connection that closed mid-stream sees.
#[derive(Debug, thiserror::Error)]
#[error("connection closed before message completed")]
pub struct StreamCut {
    #[source]
    source: std::io::Error,
}

impl StreamCut {
    /// A cut connection.
    pub(crate) fn new() -> Self {
        Self {
            source: std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
        }
    }
}

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// A JSON response with the given status code.
pub fn json_response(code: StatusCode, value: &Value) -> Response<ResponseBody> {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(bytes))
        .expect("static response parts are valid")
}

/// A `Status` error response.
pub fn error_response(err: &ApiError) -> Response<ResponseBody> {
    let code = StatusCode::from_u16(err.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &err.to_status())
}

/// A plain-text response (health endpoints).
pub fn text_response(code: StatusCode, text: &'static str) -> Response<ResponseBody> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(full(text))
        .expect("static response parts are valid")
}
