//! Kubeconfig files for a served instance (pure): one cluster, one user with a bearer token,
//! one context, current. What `kubectl --kubeconfig` and `kube::Config::from_custom_kubeconfig`
//! read.

use k8s_openapi::ByteString;
use serde_json::{Value, json};

/// The cluster, user and context name in rendered kubeconfigs.
pub const KUBECONFIG_NAME: &str = "memkube";

/// A kubeconfig (YAML) for the API at `server` (e.g. [`crate::HttpServer::url`]), trusting
/// `ca_pem` (e.g. [`crate::HttpServer::ca_pem`]; `None` for plain HTTP), authenticating with
/// `token`, with `namespace` as the default namespace.
pub fn kubeconfig_yaml(server: &str, ca_pem: Option<&str>, token: &str, namespace: &str) -> String {
    let mut cluster = json!({"server": server});
    if let Some(pem) = ca_pem {
        cluster["certificate-authority-data"] =
            serde_json::to_value(ByteString(pem.as_bytes().to_vec())).unwrap_or(Value::Null);
    }
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": KUBECONFIG_NAME, "cluster": cluster}],
        "users": [{"name": KUBECONFIG_NAME, "user": {"token": token}}],
        "contexts": [{"name": KUBECONFIG_NAME, "context": {
            "cluster": KUBECONFIG_NAME, "user": KUBECONFIG_NAME, "namespace": namespace,
        }}],
        "current-context": KUBECONFIG_NAME,
        "preferences": {},
    });
    serde_yaml::to_string(&config).expect("a JSON object with string keys always renders as YAML")
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
