//! Kubeconfig files for a served instance (pure): [`kubeconfig_yaml`], over the renderer every
//! isthmus component shares (`isthmus_kubeclient::kubeconfig`, re-exported here).

pub use isthmus_kubeclient::kubeconfig::{
    Credential, KubeconfigSpec, base64, pem_certificate, render,
};

/// The cluster, user and context name in kubeconfigs rendered by [`kubeconfig_yaml`].
pub const KUBECONFIG_NAME: &str = "memkube";

/// A kubeconfig (YAML) for the API at `server` (e.g. [`crate::HttpServer::url`]), trusting
/// `ca_pem` (e.g. [`crate::HttpServer::ca_pem`]; `None` for plain HTTP), authenticating with
/// `token`, with `namespace` as the default namespace.
pub fn kubeconfig_yaml(server: &str, ca_pem: Option<&str>, token: &str, namespace: &str) -> String {
    render(&KubeconfigSpec {
        name: KUBECONFIG_NAME,
        server,
        ca_pem,
        tls_server_name: None,
        credential: Credential::Token(token),
        namespace,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_reads_the_rendered_kubeconfig() {
        let yaml = kubeconfig_yaml("https://127.0.0.1:6443", Some("PEM"), "t0k", "isthmus");
        let kc = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        assert_eq!(cluster.certificate_authority_data.as_deref(), Some("UEVN"));
        let ctx = kc.contexts[0].context.as_ref().unwrap();
        assert_eq!(ctx.namespace.as_deref(), Some("isthmus"));
        assert_eq!(kc.current_context.as_deref(), Some("memkube"));
        let plain = kubeconfig_yaml("http://127.0.0.1:1", None, "t", "default");
        assert!(!plain.contains("certificate-authority"));
    }
}
