//! Clients from kubeconfigs (the rendering is memkube's: [`isthmus_memkube::render_kubeconfig`]).

/// A client from a kubeconfig this crate rendered (or any kubeconfig without exec plugins).
pub async fn client(yaml: &str) -> Result<kube::Client, crate::Error> {
    let kc = kube::config::Kubeconfig::from_yaml(yaml)
        .map_err(|e| crate::Error::Kubeconfig(e.to_string()))?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| crate::Error::Kubeconfig(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| crate::Error::Kubeconfig(e.to_string()))
}
