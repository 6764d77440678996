//! `isthmus bench auth-api`: the Kubernetes API an authenticated IPAM benchmark needs, in one
//! process: memkube served over HTTPS with authentication and RBAC, a ServiceAccount
//! `bench/ipam-client`, and in `--dir` a kubeconfig for the network-manager (`kubeconfig`, whose
//! client reviews tokens) and a token of that ServiceAccount minted for the IPAM's audience
//! (`token`, for `bench ipam --token-file`). Serves until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use isthmus_kubetarget::ApiServer;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::PostParams;

use crate::grpc::auth::DEFAULT_AUDIENCE;

/// Namespace and name of the ServiceAccount whose token the clients send.
pub const CLIENT_NAMESPACE: &str = "bench";
pub const CLIENT_NAME: &str = "ipam-client";

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthApiOptions {
    /// Where `kubeconfig` and `token` are written (created if missing).
    #[arg(long)]
    pub dir: PathBuf,
}

/// Serves the API until a shutdown signal.
pub async fn run(options: AuthApiOptions) -> anyhow::Result<()> {
    let api = ApiServer::memkube("bench").await?;
    api.ensure_namespace(CLIENT_NAMESPACE).await?;
    let sa: ServiceAccount = serde_json::from_value(serde_json::json!({
        "metadata": {"name": CLIENT_NAME, "namespace": CLIENT_NAMESPACE}
    }))?;
    Api::<ServiceAccount>::namespaced(api.admin(), CLIENT_NAMESPACE)
        .create(&PostParams::default(), &sa)
        .await
        .context("creating the client ServiceAccount")?;
    let token = api
        .token_for(
            CLIENT_NAMESPACE,
            CLIENT_NAME,
            Duration::from_secs(24 * 3600),
            &[DEFAULT_AUDIENCE],
        )
        .await?;
    std::fs::create_dir_all(&options.dir)?;
    // the token last: its presence says the API is ready
    std::fs::write(options.dir.join("kubeconfig"), api.admin_kubeconfig()?)?;
    std::fs::write(options.dir.join("token"), token)?;
    println!(
        "serving {} (client {CLIENT_NAMESPACE}/{CLIENT_NAME}); files in {}",
        api.url,
        options.dir.display()
    );
    crate::standalone::shutdown_signal().await;
    Ok(())
}
