//! A memkube API behind a fault-injecting `tower` service, for what memkube's own fault
//! injection (`MemKube::faults()`) does not offer: a write applied whose answer is lost (the
//! ambiguous write a retry must recognise as its own), faults consumed by the next writes in a
//! given order, and a record of the writes served.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use isthmus_api::all_crds;
use isthmus_memkube::{MemKube, ResponseBody};

/// One injected fault, consumed by the next write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// 503 ServiceUnavailable, nothing done.
    Unavailable,
    /// The connection is refused, nothing done.
    Refused,
    /// The write is applied, then the connection drops before the answer.
    LoseAnswer,
}

#[derive(Debug, Default)]
struct State {
    next: VecDeque<Fault>,
    down: bool,
    write_latency: Duration,
    /// Extra latency of the writes to paths ending so.
    slow: Vec<(String, Duration)>,
    writes: Vec<(Method, String)>,
}

/// The API and its faults; clones share them.
#[derive(Clone)]
pub struct FaultyApi {
    pub kube: MemKube,
    state: Arc<Mutex<State>>,
}

impl FaultyApi {
    /// A memkube with the isthmus CRDs and namespace `isthmus`.
    pub fn new() -> Self {
        let kube = MemKube::new();
        for crd in all_crds() {
            kube.register_crd(&crd).unwrap();
        }
        kube.create_namespace("isthmus").unwrap();
        FaultyApi {
            kube,
            state: Arc::default(),
        }
    }

    /// A client whose requests go through the faults.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.clone(), "default")
    }

    /// The next writes fail with `faults`, in order.
    pub fn fail_next_writes(&self, faults: &[Fault]) {
        self.state.lock().unwrap().next.extend(faults);
    }

    /// Every request is refused until [`FaultyApi::up`].
    pub fn down(&self) {
        self.state.lock().unwrap().down = true;
    }

    pub fn up(&self) {
        self.state.lock().unwrap().down = false;
    }

    #[allow(dead_code)] // benchmarks and later tests
    pub fn set_write_latency(&self, latency: Duration) {
        self.state.lock().unwrap().write_latency = latency;
    }

    /// Writes to a path ending with `suffix` wait `latency` more (a slow object).
    #[allow(dead_code)] // some test binaries do not use it
    pub fn slow_writes_to(&self, suffix: &str, latency: Duration) {
        let mut s = self.state.lock().unwrap();
        s.slow.push((suffix.to_owned(), latency));
    }

    /// The writes served (applied) since the last call: method and path.
    pub fn take_writes(&self) -> Vec<(Method, String)> {
        std::mem::take(&mut self.state.lock().unwrap().writes)
    }
}

const UNAVAILABLE: &[u8] = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"the server is currently unable to handle the request","reason":"ServiceUnavailable","code":503}"#;

fn refused() -> tower::BoxError {
    Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
}

impl tower::Service<Request<kube::client::Body>> for FaultyApi {
    type Response = Response<ResponseBody>;
    type Error = tower::BoxError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<kube::client::Body>) -> Self::Future {
        let write = req.method() != Method::GET;
        let (fault, down, latency) = {
            let mut s = self.state.lock().unwrap();
            let fault = if write { s.next.pop_front() } else { None };
            let path = req.uri().path();
            let slow: Duration = s
                .slow
                .iter()
                .filter(|(suffix, _)| write && path.ends_with(suffix.as_str()))
                .map(|(_, d)| *d)
                .sum();
            (fault, s.down, s.write_latency + slow)
        };
        let mut kube = self.kube.clone();
        let state = self.state.clone();
        Box::pin(async move {
            if down || fault == Some(Fault::Refused) {
                return Err(refused());
            }
            if fault == Some(Fault::Unavailable) {
                let body = http_body_util::Full::new(bytes::Bytes::from_static(UNAVAILABLE))
                    .map_err(|never| match never {})
                    .boxed_unsync();
                return Ok(Response::builder()
                    .status(StatusCode::SERVICE_UNAVAILABLE)
                    .body(body)
                    .unwrap());
            }
            if write && !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            let (method, path) = (req.method().clone(), req.uri().path().to_owned());
            let resp = tower::Service::call(&mut kube, req)
                .await
                .map_err(|e| -> tower::BoxError { Box::new(e) })?;
            if write && resp.status().is_success() {
                state.lock().unwrap().writes.push((method, path));
            }
            if fault == Some(Fault::LoseAnswer) {
                return Err(refused());
            }
            Ok(resp)
        })
    }
}
