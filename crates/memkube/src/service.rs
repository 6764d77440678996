//! The asynchronous part of serving one request, in front of the synchronous `gate` and
//! handler: an outage refuses the connection, the body is read up to the API server's limit
//! (413 beyond it), injected latency and 5xx answers apply, and a get or list asking for a
//! resourceVersion the server has not reached waits for it, then times out with 504 as the
//! API server's watch cache does. Those answers come after authentication and authorization,
//! as on the API server: a request refused there gets its 401 or 403 instead.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{Method, Request, Response};
use http_body_util::BodyExt;

use crate::MemKube;
use crate::body::{ResponseBody, error_response};
use crate::error::ApiError;
use crate::faults::{ConnectionRefused, VerbClass};
use crate::route::Query;

/// The largest request body the API server reads (3 MiB).
pub const MAX_REQUEST_BODY_BYTES: usize = 3 * 1024 * 1024;

/// How often a request waiting for a future resourceVersion looks again.
const VERSION_POLL: Duration = Duration::from_millis(5);

/// Serves one request.
pub(crate) async fn serve<B>(
    kube: MemKube,
    req: Request<B>,
) -> Result<Response<ResponseBody>, ConnectionRefused>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::fmt::Display,
{
    let faults = kube.faults();
    if faults.is_down() {
        return Err(ConnectionRefused::new());
    }
    let (parts, body) = req.into_parts();
    let query = Query::parse(parts.uri.query().unwrap_or_default()).unwrap_or_default();
    let class = VerbClass::of(&parts.method, query.watch);
    let body = match read_body(&parts.method, body).await {
        Ok(body) => body,
        Err(e) => return Ok(refused(&kube, &parts, e)),
    };
    let latency = faults.latency(class);
    if !latency.is_zero() {
        wait_exactly(latency).await;
    }
    if faults.is_down() {
        return Err(ConnectionRefused::new());
    }
    if faults.has_failures() {
        // refused requests never reach the storage whose failure is injected
        if let Err(e) = crate::gate::admit(&kube.shared, &parts, chrono::Utc::now()) {
            return Ok(error_response(&e));
        }
        if let Some(e) = faults.injected_failure(class) {
            return Ok(error_response(&e));
        }
    }
    if class == VerbClass::Read && wants_future_version(&kube, &query) {
        if let Err(e) = crate::gate::admit(&kube.shared, &parts, chrono::Utc::now()) {
            return Ok(error_response(&e));
        }
        if let Err(e) = wait_for_version(&kube, &query).await {
            return Ok(error_response(&e));
        }
    }
    Ok(kube.respond(&parts, &body))
}

/// Waits `latency`, to within tens of microseconds. tokio's timer fires on its next
/// millisecond tick after the deadline, so its 3 ms sleep lasted 3.1-4.5 ms (4.1 ms on
/// average); a thread of the blocking pool sleeps with the kernel's high-resolution timer.
async fn wait_exactly(latency: Duration) {
    // an error means the runtime is shutting down: nothing is served any more anyway
    let _ = tokio::task::spawn_blocking(move || std::thread::sleep(latency)).await;
}

/// The answer to a request the pipeline refuses with `err`: the authentication or
/// authorization failure first, if there is one.
fn refused(kube: &MemKube, parts: &http::request::Parts, err: ApiError) -> Response<ResponseBody> {
    let admitted = crate::gate::admit(&kube.shared, parts, chrono::Utc::now());
    error_response(&admitted.err().unwrap_or(err))
}

/// Whether a read asks for a resourceVersion newer than the latest issued.
fn wants_future_version(kube: &MemKube, query: &Query) -> bool {
    query.continue_token.is_none()
        && query
            .resource_version
            .as_deref()
            .and_then(|rv| rv.parse::<u64>().ok())
            .is_some_and(|rv| rv > kube.resource_version())
}

/// Reads the body of a write, refusing one over the limit (reading stops there); reads carry
/// none worth reading.
async fn read_body<B>(method: &Method, body: B) -> Result<Bytes, ApiError>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::fmt::Display,
{
    if matches!(*method, Method::GET | Method::HEAD) {
        return Ok(Bytes::new());
    }
    let mut body = std::pin::pin!(body);
    let mut bytes = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::BadRequest(format!("reading the request body: {e}")))?;
        if let Ok(mut data) = frame.into_data() {
            if bytes.len() + data.remaining() > MAX_REQUEST_BODY_BYTES {
                return Err(ApiError::RequestEntityTooLarge {
                    limit: MAX_REQUEST_BODY_BYTES,
                });
            }
            bytes.put(&mut data);
        }
    }
    Ok(bytes.freeze())
}

/// For a get or list with `resourceVersion` newer than the latest issued: waits up to
/// `Config::future_version_wait` for it, then fails with 504 `Too large resource version`.
async fn wait_for_version(kube: &MemKube, query: &Query) -> Result<(), ApiError> {
    let requested = match (&query.resource_version, &query.continue_token) {
        (Some(rv), None) => match rv.parse::<u64>() {
            Ok(rv) => rv,
            Err(_) => return Ok(()),
        },
        _ => return Ok(()),
    };
    let deadline = tokio::time::Instant::now() + kube.shared.config.future_version_wait;
    loop {
        let current = kube.resource_version();
        if requested <= current {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::TooLargeResourceVersion { requested, current });
        }
        tokio::time::sleep(VERSION_POLL).await;
    }
}
