//! A memkube client that records every request it sends (method and path): what a test counts
//! to show how many API calls, and which, a piece of work cost.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::{Method, Request};
use isthmus_memkube::MemKube;

/// The requests sent so far, shared with the test.
#[derive(Debug, Clone, Default)]
pub struct ApiLog(Arc<Mutex<Vec<(Method, String)>>>);

impl ApiLog {
    /// Every request since the last [`ApiLog::clear`], in order.
    pub fn requests(&self) -> Vec<(Method, String)> {
        self.0.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }

    /// Writes (anything but GET) whose path contains `kind` (a plural such as `natmappings`),
    /// as (method, object name).
    pub fn writes_of(&self, kind: &str) -> Vec<(Method, String)> {
        let marker = format!("/{kind}/");
        self.requests()
            .into_iter()
            .filter(|(m, _)| *m != Method::GET)
            .filter_map(|(m, path)| {
                let name = path.split_once(&marker)?.1;
                Some((m, name.to_owned()))
            })
            .collect()
    }

    /// GETs of the collection `kind` (lists and watches).
    pub fn lists_of(&self, kind: &str) -> usize {
        let suffix = format!("/{kind}");
        self.requests()
            .iter()
            .filter(|(m, path)| *m == Method::GET && path.ends_with(&suffix))
            .count()
    }
}

/// [`MemKube`] behind a recorder.
#[derive(Clone)]
pub struct Logged {
    inner: MemKube,
    log: ApiLog,
}

impl Logged {
    /// A `kube::Client` to `kube` (admin, default namespace `default`) that records into `log`.
    pub fn client(kube: &MemKube, log: &ApiLog) -> kube::Client {
        let svc = Logged {
            inner: kube.clone(),
            log: log.clone(),
        };
        kube::Client::new(svc, "default")
    }
}

impl<B> tower::Service<Request<B>> for Logged
where
    MemKube: tower::Service<Request<B>>,
{
    type Response = <MemKube as tower::Service<Request<B>>>::Response;
    type Error = <MemKube as tower::Service<Request<B>>>::Error;
    type Future = <MemKube as tower::Service<Request<B>>>::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let path = req.uri().path().to_owned();
        self.log
            .0
            .lock()
            .unwrap()
            .push((req.method().clone(), path));
        self.inner.call(req)
    }
}
