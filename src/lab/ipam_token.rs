//! The token the lab's IPAM clients (the reflector, `lab bench`, the tests) send to a cluster's
//! gRPC IPAM: minted through the TokenRequest API for the chart's `<release>-ipam-client`
//! ServiceAccount with the IPAM's audience, as a virtual kubelet's projected token is, and
//! renewed well before it expires, as a kubelet renews projected tokens.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use isthmus_kubetarget::ApiServer;
use tokio::task::JoinHandle;

use crate::grpc::auth::DEFAULT_AUDIENCE;
use crate::grpc::client::BearerToken;

/// The chart's ServiceAccount for IPAM clients (release `isthmus`: fullname `isthmus`).
pub const IPAM_CLIENT_ACCOUNT: &str = "isthmus-ipam-client";
/// Lifetime of the tokens minted (a kubelet's projected tokens default to one hour).
const TOKEN_TTL: Duration = Duration::from_secs(3600);
/// How often they are renewed.
const RENEWAL: Duration = Duration::from_secs(20 * 60);

/// A cluster's IPAM client token, kept fresh until dropped.
#[derive(Debug)]
pub struct IpamToken {
    bearer: BearerToken,
    renewal: JoinHandle<()>,
}

impl IpamToken {
    /// Mints the first token (the chart must be installed) and starts renewing it.
    pub async fn mint(api: Arc<ApiServer>, namespace: &str) -> anyhow::Result<Self> {
        let bearer = BearerToken::new(&fresh(&api, namespace).await?)?;
        let renewal = tokio::spawn({
            let (bearer, namespace) = (bearer.clone(), namespace.to_owned());
            async move {
                loop {
                    tokio::time::sleep(RENEWAL).await;
                    let renewed = fresh(&api, &namespace)
                        .await
                        .and_then(|t| Ok(bearer.set(&t)?));
                    if let Err(e) = renewed {
                        tracing::warn!("renewing the IPAM client token failed: {e:#}");
                    }
                }
            }
        });
        Ok(IpamToken { bearer, renewal })
    }

    /// The token, shared: clients built from it send the renewed token too.
    pub fn bearer(&self) -> BearerToken {
        self.bearer.clone()
    }
}

impl Drop for IpamToken {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

async fn fresh(api: &ApiServer, namespace: &str) -> anyhow::Result<String> {
    api.token_for(
        namespace,
        IPAM_CLIENT_ACCOUNT,
        TOKEN_TTL,
        &[DEFAULT_AUDIENCE],
    )
    .await
    .with_context(|| {
        format!("a token of ServiceAccount {namespace}/{IPAM_CLIENT_ACCOUNT} for the gRPC IPAM")
    })
}
