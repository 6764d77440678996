//! Clients from kubeconfigs (the rendering is memkube's: [`isthmus_memkube::render_kubeconfig`]).

/// A client from a kubeconfig this crate rendered (or any kubeconfig without exec plugins).
pub async fn client(yaml: &str) -> Result<kube::Client, crate::Error> {
    let kc = kube::config::Kubeconfig::from_yaml(yaml)
        .map_err(|e| crate::Error::Kubeconfig(e.to_string()))?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| crate::Error::Kubeconfig(e.to_string()))?;
    kube::Client::try_from(raw_answers(config)).map_err(|e| crate::Error::Kubeconfig(e.to_string()))
}

/// Tests and the lab see the API's answers as they are: kube's default retry of 429, 503 and
/// 504 answers would turn an answer a test expects into a wait.
pub fn raw_answers(mut config: kube::Config) -> kube::Config {
    config.default_retry = false;
    config
}
