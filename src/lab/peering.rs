//! Peering two lab clusters the way a user does: in each cluster, a Secret holding a kubeconfig
//! for the OTHER cluster's peer identity (the chart's `isthmus-peer` ServiceAccount, with a
//! token minted through TokenRequest, reaching the other API at its address on the underlay),
//! and a ForeignCluster naming it. Unpeering deletes both.

use std::time::Duration;

use anyhow::Context;
use isthmus_api::{ForeignCluster, ForeignClusterSpec, SecretKeyRef};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams};

use crate::lab::cluster::{ClusterRuntime, NAMESPACE};

/// The chart's peer identity.
const PEER_ACCOUNT: &str = "isthmus-peer";
/// How long a peer token lives.
const PEER_TOKEN_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
/// Field manager of what the lab writes.
const MANAGER: &str = "isthmus-lab";

fn secret_name(peer: &str) -> String {
    format!("isthmus-peer-{peer}")
}

/// Makes `local` peer with `remote` (one direction: run it both ways).
pub async fn peer_towards(local: &ClusterRuntime, remote: &ClusterRuntime) -> anyhow::Result<()> {
    let remote_id = remote.site.id.to_string();
    let token = remote
        .api
        .token(NAMESPACE, PEER_ACCOUNT, PEER_TOKEN_TTL)
        .await
        .with_context(|| format!("a token for cluster {remote_id}'s peer identity"))?;
    let url = remote.site.api_url_on_underlay(&remote.api);
    let kubeconfig = remote.api.kubeconfig_for(&token, NAMESPACE, Some(&url));
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(&remote_id)),
            namespace: Some(NAMESPACE.to_owned()),
            ..Default::default()
        },
        data: Some([("kubeconfig".to_owned(), ByteString(kubeconfig.into_bytes()))].into()),
        ..Default::default()
    };
    let params = PatchParams::apply(MANAGER).force();
    Api::<Secret>::namespaced(local.client(), NAMESPACE)
        .patch(&secret_name(&remote_id), &params, &Patch::Apply(&secret))
        .await
        .with_context(|| {
            format!(
                "writing the kubeconfig of {remote_id} into {}",
                local.site.id
            )
        })?;
    let mut fc = ForeignCluster::new(
        &remote_id,
        ForeignClusterSpec {
            cluster_id: remote.site.id.clone(),
            kubeconfig_secret_ref: Some(SecretKeyRef {
                name: secret_name(&remote_id),
                namespace: NAMESPACE.to_owned(),
                key: None,
            }),
            lab_cluster: None,
        },
    );
    fc.metadata.managed_fields = None;
    Api::<ForeignCluster>::all(local.client())
        .patch(&remote_id, &params, &Patch::Apply(&fc))
        .await
        .with_context(|| format!("creating ForeignCluster {remote_id} in {}", local.site.id))?;
    Ok(())
}

/// Deletes `local`'s ForeignCluster for `remote` (its finalizer then cleans up, which needs the
/// kubeconfig: see [`forget_towards`]).
pub async fn unpeer_towards(local: &ClusterRuntime, remote: &ClusterRuntime) -> anyhow::Result<()> {
    let remote_id = remote.site.id.to_string();
    match Api::<ForeignCluster>::all(local.client())
        .delete(&remote_id, &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e)
            .with_context(|| format!("deleting ForeignCluster {remote_id} in {}", local.site.id)),
    }
}

/// Waits until `local`'s ForeignCluster for `remote` is gone (its cleanup, which reaches the
/// peer's API through the kubeconfig, is done), then deletes the kubeconfig's Secret.
pub async fn forget_towards(
    local: &ClusterRuntime,
    remote: &ClusterRuntime,
    timeout: Duration,
) -> anyhow::Result<()> {
    let remote_id = remote.site.id.to_string();
    let fcs = Api::<ForeignCluster>::all(local.client());
    let deadline = std::time::Instant::now() + timeout;
    while fcs.get_opt(&remote_id).await?.is_some() {
        if std::time::Instant::now() > deadline {
            anyhow::bail!(
                "ForeignCluster {remote_id} in {} still exists after {} s (its cleanup did not finish)",
                local.site.id,
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secrets = Api::<Secret>::namespaced(local.client(), NAMESPACE);
    match secrets
        .delete(&secret_name(&remote_id), &DeleteParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e).context("deleting the peer kubeconfig Secret"),
    }
}
