//! Kubeconfigs this crate writes: one server, one bearer token (inline), the server's CA
//! (inline), a default namespace. Nothing that runs a command or reads a file, so a kubeconfig
//! written here is safe to hand to any component.

use serde_json::json;

/// What a kubeconfig says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeconfigSpec<'a> {
    /// Name of the cluster, user and context entries.
    pub name: &'a str,
    /// `https://…` or `http://…`.
    pub server: &'a str,
    /// PEM of the CA that signed the server's certificate (none: plain HTTP or a trusted CA).
    pub ca_pem: Option<&'a str>,
    /// Name the server's certificate must carry when it differs from the URL's host (the URL
    /// reaches the server through a forwarder).
    pub tls_server_name: Option<&'a str>,
    /// Bearer token.
    pub token: &'a str,
    /// Default namespace.
    pub namespace: &'a str,
}

/// The kubeconfig YAML.
pub fn render(spec: &KubeconfigSpec<'_>) -> String {
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

/// Standard base64 with padding (RFC 4648), as kubeconfigs carry certificates.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn a_rendered_kubeconfig_is_read_back_by_kube() {
        let yaml = render(&KubeconfigSpec {
            name: "a",
            server: "https://127.0.0.1:6443",
            ca_pem: Some("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n"),
            tls_server_name: Some("localhost"),
            token: "t0k",
            namespace: "isthmus",
        });
        let kc = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        assert_eq!(cluster.tls_server_name.as_deref(), Some("localhost"));
        let user = kc.auth_infos[0].auth_info.as_ref().unwrap();
        assert!(user.exec.is_none() && user.token_file.is_none());
        assert_eq!(kc.current_context.as_deref(), Some("a"));
    }
}
