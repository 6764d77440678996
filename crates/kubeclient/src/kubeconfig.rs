//! Kubeconfigs isthmus writes (pure): one cluster, one user, one context, current. Never a
//! command to run: the bearer token is inline, or (for a daemon whose token is rotated under it,
//! as a kubelet does with projected ServiceAccount tokens) a file the client re-reads; the CA is
//! inline. What `kubectl --kubeconfig` and `kube::Config::from_custom_kubeconfig` read.

use k8s_openapi::ByteString;
use serde_json::{Value, json};

/// Where the bearer token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// In the kubeconfig.
    Token(&'a str),
    /// In a file the client re-reads (rotated tokens).
    TokenFile(&'a std::path::Path),
}

/// What a kubeconfig says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeconfigSpec<'a> {
    /// Name of the cluster, user and context entries.
    pub name: &'a str,
    /// `https://…` or `http://…`.
    pub server: &'a str,
    /// PEM of the CA that signed the server's certificate (none: plain HTTP or a trusted CA).
    pub ca_pem: Option<&'a str>,
    /// Name (or IP) the server's certificate must carry when it differs from the URL's host
    /// (the URL reaches the server through a forwarder).
    pub tls_server_name: Option<&'a str>,
    /// The bearer token.
    pub credential: Credential<'a>,
    /// Default namespace.
    pub namespace: &'a str,
}

/// Standard base64 (RFC 4648, padded), as Kubernetes writes bytes in JSON.
pub fn base64(bytes: &[u8]) -> String {
    match serde_json::to_value(ByteString(bytes.to_vec())) {
        Ok(Value::String(s)) => s,
        _ => String::new(),
    }
}

/// The kubeconfig YAML.
pub fn render(spec: &KubeconfigSpec<'_>) -> String {
    let mut cluster = json!({ "server": spec.server });
    if let Some(pem) = spec.ca_pem {
        cluster["certificate-authority-data"] = json!(base64(pem.as_bytes()));
    }
    if let Some(name) = spec.tls_server_name {
        cluster["tls-server-name"] = json!(name);
    }
    let user = match spec.credential {
        Credential::Token(token) => json!({ "token": token }),
        Credential::TokenFile(path) => json!({ "tokenFile": path.display().to_string() }),
    };
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": spec.name, "cluster": cluster}],
        "users": [{"name": spec.name, "user": user}],
        "contexts": [{"name": spec.name, "context": {
            "cluster": spec.name, "user": spec.name, "namespace": spec.namespace,
        }}],
        "current-context": spec.name,
        "preferences": {},
    });
    serde_yaml::to_string(&config).expect("a JSON object with string keys always renders as YAML")
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
    fn a_forwarded_server_and_a_token_file_are_written_as_kube_reads_them() {
        let yaml = render(&KubeconfigSpec {
            name: "a",
            server: "https://172.16.0.2:6443",
            ca_pem: None,
            tls_server_name: Some("127.0.0.1"),
            credential: Credential::TokenFile(std::path::Path::new("/run/t")),
            namespace: "isthmus",
        });
        let kc = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.tls_server_name.as_deref(), Some("127.0.0.1"));
        let user = kc.auth_infos[0].auth_info.as_ref().unwrap();
        assert_eq!(user.token_file.as_deref(), Some("/run/t"));
        assert!(user.exec.is_none() && user.token.is_none());
    }

    #[test]
    fn an_inline_token_and_ca_and_nothing_that_runs_or_reads() {
        let yaml = render(&KubeconfigSpec {
            name: "cluster-b",
            server: "https://10.0.0.3:6443",
            ca_pem: Some("PEM"),
            tls_server_name: None,
            credential: Credential::Token("t0k"),
            namespace: "isthmus",
        });
        let kc = kube::config::Kubeconfig::from_yaml(&yaml).unwrap();
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.certificate_authority_data.as_deref(), Some("UEVN"));
        assert!(cluster.certificate_authority.is_none());
        let user = kc.auth_infos[0].auth_info.as_ref().unwrap();
        assert!(user.exec.is_none() && user.token_file.is_none() && user.client_key.is_none());
        assert_eq!(kc.current_context.as_deref(), Some("cluster-b"));
    }

    #[test]
    fn base64_and_pem_are_as_kubernetes_writes_them() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
        let pem = pem_certificate(&[7u8; 100]);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines.last(), Some(&"-----END CERTIFICATE-----"));
    }
}
