//! An async face for a gateway: the controllers' reconcilers are async, the drivers block.
//!
//! [`GatewayHandle`] is cheap to clone; each call runs the blocking driver work on tokio's
//! blocking pool, one call at a time per gateway.

use std::sync::{Arc, Mutex, PoisonError};

use crate::firewall::delta::MapDelta;
use crate::firewall::{Applied, FirewallDriver};
use crate::gateway::{Gateway, GatewayStatus};
use crate::model::GatewaySpec;
use crate::routes::RouteDriver;
use crate::tunnel::TunnelDriver;
use crate::{Error, Result};

/// A gateway shared by async tasks.
#[derive(Debug)]
pub struct GatewayHandle<T, F, R> {
    inner: Arc<Mutex<Gateway<T, F, R>>>,
}

impl<T, F, R> Clone for GatewayHandle<T, F, R> {
    fn clone(&self) -> Self {
        GatewayHandle {
            inner: self.inner.clone(),
        }
    }
}

impl<T, F, R> GatewayHandle<T, F, R>
where
    T: TunnelDriver + 'static,
    F: FirewallDriver + 'static,
    R: RouteDriver + 'static,
{
    /// Wraps a gateway.
    pub fn new(gateway: Gateway<T, F, R>) -> Self {
        GatewayHandle {
            inner: Arc::new(Mutex::new(gateway)),
        }
    }

    async fn with<X: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Gateway<T, F, R>) -> Result<X> + Send + 'static,
    ) -> Result<X> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut gateway = inner.lock().unwrap_or_else(PoisonError::into_inner);
            work(&mut gateway)
        })
        .await
        .map_err(|err| Error::Io(std::io::Error::other(err)))?
    }

    /// [`Gateway::reconcile`] without blocking the caller's runtime.
    pub async fn reconcile(&self, spec: GatewaySpec) -> Result<GatewayStatus> {
        self.with(move |gateway| gateway.reconcile(&spec)).await
    }

    /// [`Gateway::reconcile_nat`] without blocking the caller's runtime.
    pub async fn reconcile_nat(&self, spec: GatewaySpec) -> Result<Applied> {
        self.with(move |gateway| gateway.reconcile_nat(&spec)).await
    }

    /// [`Gateway::reconcile_nat_delta`] without blocking the caller's runtime.
    pub async fn reconcile_nat_delta(&self, deltas: Vec<MapDelta>) -> Result<Applied> {
        self.with(move |gateway| gateway.reconcile_nat_delta(&deltas))
            .await
    }

    /// [`Gateway::shutdown`] (on SIGTERM).
    pub async fn shutdown(&self) -> Result<()> {
        self.with(|gateway| gateway.shutdown()).await
    }

    /// [`Gateway::remove_leftovers`].
    pub async fn remove_leftovers(&self, ifname: &str) -> Result<(bool, usize)> {
        let ifname = ifname.to_owned();
        self.with(move |gateway| gateway.remove_leftovers(&ifname))
            .await
    }

    /// [`Gateway::teardown`].
    pub async fn teardown(&self) -> Result<()> {
        self.with(|gateway| gateway.teardown()).await
    }

    /// Runs `look` on the gateway, on the caller's thread: for tests that inspect or script
    /// recording fakes. It blocks while a driver call is in flight.
    pub fn inspect<X>(&self, look: impl FnOnce(&mut Gateway<T, F, R>) -> X) -> X {
        let mut gateway = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        look(&mut gateway)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PrivateKey;
    use crate::firewall::fake::FakeFirewall;
    use crate::routes::fake::FakeRoutes;
    use crate::tunnel::Backend;
    use crate::tunnel::fake::FakeTunnel;

    #[tokio::test]
    async fn reconciles_from_async_code() {
        let gateway = Gateway::new(
            FakeTunnel::new(Backend::Userspace),
            FakeFirewall::default(),
            FakeRoutes::default(),
        );
        let handle = GatewayHandle::new(gateway);
        let spec = GatewaySpec {
            interface: "wg-async".into(),
            private_key: PrivateKey::generate(),
            listen_port: 51820,
            mtu: 1420,
            transit_source: None,
            peers: vec![],
        };
        let status = handle.clone().reconcile(spec.clone()).await.unwrap();
        assert_eq!(status.firewall, Applied::Replaced);
        assert_eq!(
            handle.reconcile_nat(spec).await.unwrap(),
            Applied::Unchanged
        );
        handle.shutdown().await.unwrap();
    }
}
