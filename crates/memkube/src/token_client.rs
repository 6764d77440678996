//! In-process clients with a bearer token: [`TokenService`] puts `Authorization: Bearer
//! <token>` on every request and hands it to the instance, so an in-process `kube::Client`
//! authenticates exactly as a client over HTTP with that token would.

use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, header};

use crate::MemKube;
use crate::body::ResponseBody;
use crate::faults::ConnectionRefused;

/// A `tower::Service` sending every request to `kube` with one bearer token.
#[derive(Debug, Clone)]
pub(crate) struct TokenService {
    kube: MemKube,
    authorization: HeaderValue,
}

impl TokenService {
    /// A service authenticating with `token`. A token that cannot be a header value is sent
    /// as a token that never authenticates, so every request gets 401 as a server would give.
    pub(crate) fn new(kube: MemKube, token: &str) -> Self {
        let authorization = HeaderValue::from_str(&format!("Bearer {token}"))
            .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid-token"));
        Self {
            kube,
            authorization,
        }
    }
}

impl<B> tower::Service<Request<B>> for TokenService
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::fmt::Display,
{
    type Response = Response<ResponseBody>;
    type Error = ConnectionRefused;
    type Future = <MemKube as tower::Service<Request<B>>>::Future;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectionRefused>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        req.headers_mut()
            .insert(header::AUTHORIZATION, self.authorization.clone());
        tower::Service::call(&mut self.kube, req)
    }
}
