//! memkube: an in-memory Kubernetes API server, with watch, for controller tests and the lab.
//!
//! One [`MemKube`] is one simulated cluster's API. It is a `tower::Service` that
//! `kube::Client::new` accepts ([`MemKube::client`]), and it can also serve itself over HTTP on
//! 127.0.0.1 for `kubectl` ([`MemKube::serve_http`]). Custom resources are served once their
//! CustomResourceDefinition is registered ([`MemKube::register_crd`]) or created through the
//! API. See the crate README for exactly what is and is not supported.
//!
//! Requests are authenticated and authorized as a real API server does (`authn`, `rbac`,
//! `gate`): [`MemKube::client`] is the admin, [`MemKube::client_with_token`] and HTTP clients
//! with a bearer token are whoever the token says, and RBAC objects stored in the instance
//! decide what they may do. [`MemKube::serve_https`] serves with a certificate from the
//! instance's CA; [`kubeconfig_yaml`] renders a kubeconfig for a served instance.
//!
//! This file owns the public handle and its `tower::Service` implementation; requests pass
//! `gate` and are dispatched in `handler`, state lives in `store`.

mod alias;
mod apply;
mod authn;
mod body;
mod builtin;
mod discovery;
mod error;
mod etcd_size;
mod event_rules;
mod faults;
mod field_labels;
mod format;
mod gate;
mod handler;
mod kubeconfig;
mod managed;
mod meta;
mod numbers;
mod object_meta;
mod openapi;
mod patch;
mod protobuf;
mod rbac;
mod resource;
mod route;
mod schema;
mod selector;
mod server;
mod service;
mod store;
mod table;
mod tls;
mod token_client;
mod watch_stream;

use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use http::{Request, Response};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

pub use body::{ResponseBody, StreamCut};
pub use error::{ApiError, Error, Result};
pub use faults::{ConnectionRefused, Faults, ServerError, Verbs};
pub use kubeconfig::{
    Credential, KUBECONFIG_NAME, KubeconfigSpec, base64, kubeconfig_yaml, pem_certificate,
    render as render_kubeconfig,
};
pub use resource::{PrinterColumn, ResourceType};
pub use server::HttpServer;
pub use service::MAX_REQUEST_BODY_BYTES;
pub use tls::TlsOptions;

/// Tunables of one instance.
#[derive(Debug, Clone)]
pub struct Config {
    /// How many events the watch history keeps per resource type; a watch resuming from an
    /// older resourceVersion gets `410 Expired` and must relist.
    pub history_limit: usize,
    /// How often a watch with `allowWatchBookmarks=true` receives a BOOKMARK (the API server:
    /// every minute, and once 2 s before the watch's timeout).
    pub bookmark_interval: Duration,
    /// Watch duration when the client gives no `timeoutSeconds`.
    pub default_watch_timeout: Duration,
    /// How long a get or list asking for a resourceVersion newer than the latest waits for
    /// it before failing with 504 (the API server: 3 s).
    pub future_version_wait: Duration,
    /// Whether an HTTP request without credentials is the admin (`true`, the default: what
    /// the lab's kubectl relies on) or 401 Unauthorized, as on an API server with anonymous
    /// authentication disabled. In-process clients without a token are always the admin.
    pub anonymous_is_admin: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            history_limit: 1000,
            bookmark_interval: Duration::from_secs(60),
            default_watch_timeout: Duration::from_secs(1800),
            future_version_wait: Duration::from_secs(3),
            anonymous_is_admin: true,
        }
    }
}

/// State shared by every clone of a [`MemKube`].
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<store::State>,
    config: Config,
    faults: Faults,
    auth: authn::AuthState,
}

impl Shared {
    /// Locks the state (a panic while holding the lock does not make it unusable).
    pub(crate) fn lock(&self) -> MutexGuard<'_, store::State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One simulated cluster's API: a cheap, cloneable, thread-safe handle.
#[derive(Debug, Clone)]
pub struct MemKube {
    shared: Arc<Shared>,
}

impl Default for MemKube {
    fn default() -> Self {
        Self::new()
    }
}

impl MemKube {
    /// A fresh cluster with the built-in types and namespaces `default`, `kube-system`,
    /// `kube-public` and `kube-node-lease`.
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    /// A fresh cluster with the given tunables.
    pub fn with_config(config: Config) -> Self {
        let now = chrono::Utc::now();
        let mut state = store::State::new(config.history_limit, now);
        rbac::bootstrap::install(&mut state, now);
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                config,
                faults: Faults::default(),
                auth: authn::AuthState::default(),
            }),
        }
    }

    /// Serves a custom resource type, storing the CRD object itself too (so it is listed as a
    /// `customresourcedefinitions.apiextensions.k8s.io`). Registering again replaces the type.
    pub fn register_crd(&self, crd: &CustomResourceDefinition) -> Result<()> {
        let defined = ResourceType::from_crd(crd)?;
        let name = crd.metadata.name.clone().unwrap_or_default();
        let mut body = serde_json::to_value(crd).map_err(|e| Error::InvalidCrd {
            name: name.clone(),
            reason: e.to_string(),
        })?;
        let mut state = self.shared.lock();
        let crd_type = state
            .registry
            .lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .cloned()
            .expect("builtin");
        let ctx = store::WriteCtx::new("memkube", chrono::Utc::now());
        let result = match state.get(&crd_type, None, &name) {
            Ok(existing) => {
                body["metadata"]["resourceVersion"] =
                    existing["metadata"]["resourceVersion"].clone();
                state.replace(&crd_type, None, &name, body, &ctx)
            }
            Err(_) => state.create(&crd_type, None, body, &ctx),
        };
        result.map_err(|e| Error::InvalidCrd {
            name,
            reason: e.to_string(),
        })?;
        state.registry.insert(defined);
        Ok(())
    }

    /// Creates a namespace directly in the store (fixtures: no client, no runtime needed). An
    /// existing namespace of that name is an error.
    pub fn create_namespace(&self, name: &str) -> Result<()> {
        let mut state = self.shared.lock();
        let ns_type = state
            .registry
            .lookup("", "v1", "namespaces")
            .cloned()
            .expect("builtin");
        let ctx = store::WriteCtx::new("memkube", chrono::Utc::now());
        let body = serde_json::json!({"metadata": {"name": name}});
        state
            .create(&ns_type, None, body, &ctx)
            .map(|_| ())
            .map_err(|e| Error::Namespace {
                name: name.to_owned(),
                reason: e.to_string(),
            })
    }

    /// A `kube::Client` talking to this instance as the admin (`system:masters`); its default
    /// namespace is `default`. Call it inside a tokio runtime (the client spawns its request
    /// buffer there).
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.clone(), "default")
    }

    /// An in-process `kube::Client` that authenticates with `token` (a ServiceAccount token
    /// from a TokenRequest or a token Secret, or [`MemKube::admin_token`]), so RBAC applies
    /// to it as to an HTTP client with that token. Default namespace `default`.
    pub fn client_with_token(&self, token: &str) -> kube::Client {
        kube::Client::new(
            token_client::TokenService::new(self.clone(), token),
            "default",
        )
    }

    /// The instance's admin bearer token (random, fixed for the instance's life): user
    /// `memkube-admin` in groups `system:masters` and `system:authenticated`.
    pub fn admin_token(&self) -> String {
        self.shared.auth.tokens().admin().to_string()
    }

    /// The instance's CA certificate (PEM): it signs the HTTPS serving certificates and is the
    /// `ca.crt` of ServiceAccount token Secrets. Generated on first use.
    pub fn ca_pem(&self) -> Result<String> {
        Ok(self.shared.auth.ca()?.cert_pem().to_string())
    }

    /// Makes every token issued by TokenRequest expire now (test hook): requests with them
    /// get 401 from now on. Legacy Secret tokens and the admin token do not expire.
    pub fn expire_tokens(&self) {
        self.shared.auth.tokens().expire_all(chrono::Utc::now());
    }

    /// The latest resourceVersion issued (strictly increasing across all types).
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().resource_version()
    }

    /// Forgets the watch history, as etcd compaction does: watches resuming from any earlier
    /// resourceVersion get `410 Expired` and their clients relist.
    pub fn compact_history(&self) {
        self.shared.lock().compact();
    }

    /// Ends every open watch with a `410 Expired` error event and compacts the history, as a
    /// real API server does to a watcher that fell too far behind: clients must relist.
    pub fn expire_watches(&self) {
        self.shared.lock().expire_watches();
    }

    /// The fault-injection handle of this instance (every fault is off until set).
    pub fn faults(&self) -> Faults {
        self.shared.faults.clone()
    }

    /// Number of open watch streams.
    pub fn watch_count(&self) -> usize {
        self.shared.lock().watcher_count()
    }

    /// Serves this instance over HTTP/1.1 on `addr` (use port 0 for a random port) until the
    /// returned handle is shut down or dropped.
    pub async fn serve_http(&self, addr: std::net::SocketAddr) -> Result<HttpServer> {
        server::serve(self.clone(), addr, None).await
    }

    /// Serves this instance over HTTPS on `addr` with a fresh serving certificate signed by
    /// the instance's CA, valid for 127.0.0.1, `localhost` and `tls`'s names; clients trust
    /// [`HttpServer::ca_pem`]. Stops when the handle is shut down or dropped.
    pub async fn serve_https(
        &self,
        addr: std::net::SocketAddr,
        tls: TlsOptions,
    ) -> Result<HttpServer> {
        let ca = self.shared.auth.ca()?;
        let tls = server::Tls {
            config: ca.server_config(&tls)?,
            ca_pem: ca.cert_pem().to_string(),
        };
        server::serve(self.clone(), addr, Some(tls)).await
    }

    fn respond(&self, parts: &http::request::Parts, body: &[u8]) -> Response<ResponseBody> {
        gate::handle(&self.shared, parts, body, chrono::Utc::now())
    }
}

impl<B> tower::Service<Request<B>> for MemKube
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::fmt::Display,
{
    type Response = Response<ResponseBody>;
    type Error = ConnectionRefused;
    type Future = BoxFuture<'static, std::result::Result<Self::Response, ConnectionRefused>>;

    fn poll_ready(
        &mut self,
        _cx: &mut Context<'_>,
    ) -> Poll<std::result::Result<(), ConnectionRefused>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        Box::pin(service::serve(self.clone(), req))
    }
}
