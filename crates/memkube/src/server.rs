//! The HTTP/1.1 listener (hyper 1) that serves one instance on a local address, for kubectl
//! and other out-of-process clients: plain text, or TLS with a certificate from the
//! instance's CA. Requests are marked as coming from the network, so that authentication
//! treats a request without credentials as `Config::anonymous_is_admin` says. During an
//! injected outage ([`crate::Faults::outage`]) nothing listens on the address and every open
//! connection is closed, as when the API server process is down; the listener comes back on
//! the same address when the outage ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::MemKube;
use crate::authn::FromNetwork;
use crate::error::{Error, Result};

/// How often binding the address again is retried after an outage, while it fails.
const REBIND_RETRY: Duration = Duration::from_millis(20);

/// A running HTTP server; dropping it (or [`HttpServer::shutdown`]) stops it and closes every
/// connection, including open watches.
#[derive(Debug)]
pub struct HttpServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    ca_pem: Option<String>,
}

impl HttpServer {
    /// The bound address (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, or `https://ADDR` when served with TLS, for `kubectl --server`.
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The PEM certificate of the CA that signed the serving certificate (HTTPS only), for
    /// kubeconfigs (`certificate-authority-data`, see [`crate::kubeconfig_yaml`]).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Stops accepting, closes all connections, and waits for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// TLS settings of a server: the rustls configuration and the CA certificate clients trust.
#[derive(Debug)]
pub struct Tls {
    /// The server configuration (serving certificate and key).
    pub config: Arc<rustls::ServerConfig>,
    /// The CA certificate, PEM.
    pub ca_pem: String,
}

/// Binds `addr` and serves `kube` on it (with TLS when `tls` is given) from a spawned task.
pub async fn serve(kube: MemKube, addr: SocketAddr, tls: Option<Tls>) -> Result<HttpServer> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| Error::Bind { addr, source })?;
    let (stop, stopped) = oneshot::channel::<()>();
    let ca_pem = tls.as_ref().map(|t| t.ca_pem.clone());
    let acceptor = tls.map(|t| TlsAcceptor::from(t.config));
    let task = tokio::spawn(run(kube, listener, bound, acceptor, stopped));
    Ok(HttpServer {
        addr: bound,
        stop: Some(stop),
        task: Some(task),
        ca_pem,
    })
}

/// Accepts and serves connections until stopped; closes everything during outages.
async fn run(
    kube: MemKube,
    listener: TcpListener,
    addr: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    mut stopped: oneshot::Receiver<()>,
) {
    let faults = kube.faults();
    let mut signals = faults.subscribe();
    let mut listener = Some(listener);
    let mut connections = JoinSet::new();
    loop {
        if faults.is_down() {
            drop(listener.take());
            connections.shutdown().await;
            tokio::select! {
                _ = &mut stopped => break,
                () = faults.wait_until_up() => {}
            }
        }
        let Some(current) = listener.as_ref() else {
            tokio::select! {
                _ = &mut stopped => break,
                bound = TcpListener::bind(addr) => match bound {
                    Ok(l) => listener = Some(l),
                    Err(e) => {
                        tracing::warn!(%addr, error = %e, "memkube cannot listen again yet");
                        tokio::time::sleep(REBIND_RETRY).await;
                    }
                },
            }
            continue;
        };
        tokio::select! {
            _ = &mut stopped => break,
            _ = signals.changed() => {}
            accepted = current.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                connections.spawn(accept(kube.clone(), stream, acceptor.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

/// Serves one accepted connection, after the TLS handshake when there is TLS. Small writes go
/// out at once (`TCP_NODELAY`, as Go's net/http, hence kube-apiserver, sets on every
/// connection): with Nagle's algorithm a watch event written while the previous one is not yet
/// acknowledged waited for the peer's delayed ACK, tens of milliseconds.
async fn accept(kube: MemKube, stream: tokio::net::TcpStream, tls: Option<TlsAcceptor>) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "memkube: TCP_NODELAY not set");
    }
    match tls {
        None => serve_connection(kube, stream).await,
        Some(acceptor) => match acceptor.accept(stream).await {
            Ok(stream) => serve_connection(kube, stream).await,
            Err(e) => tracing::debug!(error = %e, "memkube TLS handshake failed"),
        },
    }
}

async fn serve_connection<S>(kube: MemKube, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(FromNetwork);
            let mut kube = kube.clone();
            tower::Service::call(&mut kube, req)
        });
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "memkube connection ended with an error");
    }
}
