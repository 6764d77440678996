//! The kubeconfig a peer's network-manager uses to reach a cluster's API: one cluster, one user,
//! one context; the server URL, the CA inline (`certificate-authority-data`), the bearer token
//! inline. Nothing that runs a command (`exec`) or reads a file, so it works inside the
//! network-manager's image, which has neither cloud CLIs nor the user's files. Pure.

use k8s_openapi::ByteString;
use serde_json::json;

/// What the kubeconfig says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerKubeconfig<'a> {
    /// Name of the cluster, user and context entries (the reached cluster's ID).
    pub name: &'a str,
    pub server: &'a str,
    /// PEM of the CA of the API's certificate (none: plain HTTP or publicly trusted).
    pub ca_pem: Option<&'a str>,
    /// The name the API's certificate carries when the URL's host differs.
    pub tls_server_name: Option<&'a str>,
    pub token: &'a str,
    /// The context's namespace.
    pub namespace: &'a str,
}

/// The kubeconfig as YAML.
pub fn render(spec: &PeerKubeconfig<'_>) -> String {
    let mut cluster = json!({ "server": spec.server });
    if let Some(ca) = spec.ca_pem {
        cluster["certificate-authority-data"] = json!(base64(ca.as_bytes()));
    }
    if let Some(name) = spec.tls_server_name {
        cluster["tls-server-name"] = json!(name);
    }
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": spec.name, "cluster": cluster }],
        "users": [{ "name": spec.name, "user": { "token": spec.token } }],
        "contexts": [{ "name": spec.name, "context": {
            "cluster": spec.name, "user": spec.name, "namespace": spec.namespace
        } }],
        "current-context": spec.name,
    });
    serde_yaml::to_string(&config).expect("a JSON value is valid YAML")
}

/// Standard base64 with padding, as Kubernetes writes bytes.
pub fn base64(bytes: &[u8]) -> String {
    match serde_json::to_value(ByteString(bytes.to_vec())) {
        Ok(serde_json::Value::String(s)) => s,
        _ => unreachable!("ByteString serializes as a base64 string"),
    }
}

/// One DER certificate as PEM.
pub fn pem_certificate(der: &[u8]) -> String {
    let body = base64(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_rfc_4648_with_padding() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn pem_lines_are_64_characters() {
        let pem = pem_certificate(&[7u8; 100]);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines.last(), Some(&"-----END CERTIFICATE-----"));
    }

    #[test]
    fn kube_reads_it_back_with_only_inline_credentials() {
        let yaml = render(&PeerKubeconfig {
            name: "cluster-b",
            server: "https://10.0.0.3:6443",
            ca_pem: Some("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"),
            tls_server_name: Some("kubernetes"),
            token: "t0k",
            namespace: "isthmus",
        });
        let kc = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://10.0.0.3:6443"));
        assert_eq!(cluster.tls_server_name.as_deref(), Some("kubernetes"));
        assert!(cluster.certificate_authority.is_none());
        let user = kc.auth_infos[0].auth_info.as_ref().unwrap();
        assert!(user.exec.is_none() && user.token_file.is_none() && user.client_key.is_none());
        assert_eq!(kc.current_context.as_deref(), Some("cluster-b"));
        assert_eq!(
            kc.contexts[0]
                .context
                .as_ref()
                .unwrap()
                .namespace
                .as_deref(),
            Some("isthmus")
        );
    }
}
