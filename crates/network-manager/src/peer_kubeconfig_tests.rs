//! Tests of `peer_kubeconfig`: what `isthmus peer` writes is accepted and becomes the same client
//! configuration; every refused field is named; no refusal quotes the Secret's bytes.

use super::*;
use isthmus_kubeclient::kubeconfig::{Credential, KubeconfigSpec, base64, pem_certificate, render};
use pretty_assertions::assert_eq;
use secrecy::ExposeSecret;

/// A token no error may ever contain.
const SECRET: &str = "s3cr3t-TOKEN-4f9a1c";

fn ca_pem() -> String {
    pem_certificate(&[0x30, 0x03, 0x02, 0x01, 0x01])
}

/// What `isthmus peer` writes (the renderer is the same one).
fn peer_kubeconfig() -> String {
    render(&KubeconfigSpec {
        name: "cluster-b",
        server: "https://172.18.0.3:6443",
        ca_pem: Some(&ca_pem()),
        tls_server_name: Some("kubernetes"),
        credential: Credential::Token(SECRET),
        namespace: "isthmus",
    })
}

/// A kubeconfig with `cluster` and `user` as the current context's entries (YAML flow maps).
fn with(cluster: &str, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\n\
         clusters: [{{name: c, cluster: {cluster}}}]\n\
         users: [{{name: u, user: {user}}}]\n\
         contexts: [{{name: x, context: {{cluster: c, user: u}}}}]\n\
         current-context: x\n"
    )
}

const CLUSTER: &str = "{server: \"https://10.0.0.3:6443\"}";

fn token_user() -> String {
    format!("{{token: {SECRET}}}")
}

fn refusal(text: &str) -> Refusal {
    match parse(text) {
        Ok(k) => panic!("accepted: {k:?}\n{text}"),
        Err(r) => r,
    }
}

#[test]
fn what_isthmus_peer_writes_is_accepted_and_becomes_the_client_configuration() {
    let k = parse(&peer_kubeconfig()).unwrap();
    assert_eq!(k.server.to_string(), "https://172.18.0.3:6443/");
    assert_eq!(k.tls_server_name.as_deref(), Some("kubernetes"));
    assert_eq!(k.ca, Some(vec![vec![0x30, 0x03, 0x02, 0x01, 0x01]]));
    assert_eq!(k.credential, PeerCredential::Token(SECRET.to_owned()));
    assert_eq!(k.namespace.as_deref(), Some("isthmus"));
    let c = client_config(&k);
    assert_eq!(c.cluster_url, k.server);
    assert_eq!(c.default_namespace, "isthmus");
    assert_eq!(c.root_cert, k.ca);
    assert_eq!(c.tls_server_name.as_deref(), Some("kubernetes"));
    assert!(!c.accept_invalid_certs && c.proxy_url.is_none());
    let token = c
        .auth_info
        .token
        .as_ref()
        .map(|t| t.expose_secret().to_owned());
    assert_eq!(token.as_deref(), Some(SECRET));
    let a = &c.auth_info;
    assert!(a.exec.is_none() && a.auth_provider.is_none() && a.token_file.is_none());
    assert_eq!(c.read_timeout, Some(isthmus_kubeclient::READ_TIMEOUT));
    assert!(!format!("{k:?}").contains(SECRET), "{k:?}");
}

#[test]
fn an_inline_client_certificate_and_no_ca_are_accepted() {
    let key = "-----BEGIN EC PRIVATE KEY-----\nAQID\n-----END EC PRIVATE KEY-----\n";
    let (cert, key) = (base64(ca_pem().as_bytes()), base64(key.as_bytes()));
    let user = format!("{{client-certificate-data: {cert}, client-key-data: {key}}}");
    let k = parse(&with(CLUSTER, &user)).unwrap();
    assert_eq!(k.ca, None, "the system roots");
    let c = client_config(&k);
    assert_eq!(c.auth_info.client_certificate_data.as_deref(), Some(&*cert));
    let got = c
        .auth_info
        .client_key_data
        .as_ref()
        .map(|k| k.expose_secret().to_owned());
    assert_eq!(got, Some(key));
    assert!(c.auth_info.token.is_none());
}

#[test]
fn every_refused_field_is_named() {
    let t = token_user();
    let user = |extra: &str| format!("{{token: {SECRET}, {extra}}}");
    let cluster = |extra: &str| format!("{{server: \"https://10.0.0.3\", {extra}}}");
    let cases: Vec<(String, &str, &str)> = vec![
        (
            with(CLUSTER, "{exec: {command: sh}}"),
            "users[0].user.exec",
            "runs a command",
        ),
        (
            with(CLUSTER, "{auth-provider: {name: gcp}}"),
            "users[0].user.auth-provider",
            "runs a command",
        ),
        (
            with(CLUSTER, "{tokenFile: /etc/shadow}"),
            "users[0].user.tokenFile",
            "reads a file",
        ),
        (
            with(CLUSTER, "{token-file: /etc/shadow}"),
            "users[0].user.token-file",
            "reads a file",
        ),
        (
            with(CLUSTER, &user("client-certificate: /c")),
            "users[0].user.client-certificate",
            "reads a file",
        ),
        (
            with(CLUSTER, &user("client-key: /k")),
            "users[0].user.client-key",
            "reads a file",
        ),
        (
            with(CLUSTER, "{username: admin, password: pw}"),
            "users[0].user.username",
            "basic authentication",
        ),
        (
            with(CLUSTER, "{password: pw}"),
            "users[0].user.password",
            "basic authentication",
        ),
        (
            with(CLUSTER, &user("as: system:admin")),
            "users[0].user.as",
            "impersonation",
        ),
        (
            with(CLUSTER, &user("something-new: 1")),
            "users[0].user",
            "not accepted",
        ),
        (with(CLUSTER, "{}"), "users[0].user", "no credential"),
        (
            with(CLUSTER, "{token: \"\"}"),
            "users[0].user.token",
            "empty",
        ),
        (
            with(&cluster("certificate-authority: /ca"), &t),
            "clusters[0].cluster.certificate-authority",
            "reads a file",
        ),
        (
            with(&cluster("insecure-skip-tls-verify: true"), &t),
            "clusters[0].cluster.insecure-skip-tls-verify",
            "check of the server's certificate",
        ),
        (
            with(&cluster("proxy-url: \"http://p:3128\""), &t),
            "clusters[0].cluster.proxy-url",
            "a proxy",
        ),
        (
            with(&cluster("certificate-authority-data: \"!!\""), &t),
            "clusters[0].cluster.certificate-authority-data",
            "base64",
        ),
        (
            with(&cluster("certificate-authority-data: aGVsbG8="), &t),
            "clusters[0].cluster.certificate-authority-data",
            "PEM CERTIFICATE",
        ),
        (
            with(&cluster("new-thing: 1"), &t),
            "clusters[0].cluster",
            "not accepted",
        ),
        (
            with("{server: \"http://10.0.0.3:8080\"}", &t),
            "clusters[0].cluster.server",
            "https://",
        ),
        (
            with("{server: \"https://user:pw@10.0.0.3\"}", &t),
            "clusters[0].cluster.server",
            "basic authentication",
        ),
        (
            with("{server: \"10.0.0.3\"}", &t),
            "clusters[0].cluster.server",
            "URL",
        ),
        (with("{}", &t), "clusters[0].cluster.server", "missing"),
        (
            with(
                CLUSTER,
                &format!(
                    "{{token: a, client-certificate-data: {}}}",
                    base64(ca_pem().as_bytes())
                ),
            ),
            "users[0].user",
            "both",
        ),
        (
            with(
                CLUSTER,
                &format!(
                    "{{client-certificate-data: {}}}",
                    base64(ca_pem().as_bytes())
                ),
            ),
            "users[0].user.client-certificate-data",
            "client-key-data",
        ),
        (
            with(CLUSTER, &t).replace("current-context: x\n", ""),
            "current-context",
            "missing",
        ),
        (
            with(CLUSTER, &t).replace("current-context: x", "current-context: y"),
            "current-context",
            "no entry of `contexts`",
        ),
        (
            with(CLUSTER, &t).replace("cluster: c, user", "cluster: d, user"),
            "contexts[0].context.cluster",
            "no entry of `clusters`",
        ),
        (
            with(CLUSTER, &t).replace("user: u}}", "user: v}}"),
            "contexts[0].context.user",
            "no entry of `users`",
        ),
        (
            with(CLUSTER, &t).replace("name: u, user", "name: u, nouser"),
            "users[0].user",
            "missing",
        ),
        (
            with(CLUSTER, &t).replace("clusters: [", "clusters: [{name: c, cluster: {}}, "),
            "contexts[0].context.cluster",
            "more than one",
        ),
        ("- a list\n".to_owned(), "kubeconfig", "a mapping"),
        ("clusters: [\n".to_owned(), "kubeconfig", "not valid YAML"),
    ];
    for (text, field, problem) in cases {
        let r = refusal(&text);
        assert_eq!(r.field, field, "{r}\n{text}");
        let shown = r.to_string();
        assert!(shown.starts_with(&format!("{field}: ")), "{shown}");
        assert!(shown.contains(problem), "{shown}\n{text}");
    }
}

#[test]
fn a_false_skip_flag_null_fields_and_unused_entries_are_fine() {
    let cluster = "{server: \"https://h:6443\", insecure-skip-tls-verify: false, exec: null}";
    let mut text = with(cluster, &token_user());
    // an entry the current context does not use is not read
    text = text.replace(
        "users: [",
        "users: [{name: other, user: {exec: {command: sh}}}, ",
    );
    let k = parse(&text).unwrap();
    assert_eq!(k.server.host(), Some("h"));
}

/// Hostile or malformed kubeconfigs with the token where a careless error would quote it.
fn hostile() -> Vec<String> {
    let s = SECRET;
    vec![
        format!("clusters: [\n  {s}: [\n"),
        format!("current-context: x\nusers: {s}\n"),
        format!("users: [{{name: u, user: {{token: {s}}}}}]\n\t{s}: tab\n"),
        format!("{s}: 1\n{s}: 2\n"),
        format!("current-context: {s}\ncontexts: []\n"),
        format!("a: !{s} x\n"),
        format!("a: &{s} [*{s}, *{s}]\nb: *nope\n"),
        format!("a: \"{s}\n"),
        format!("a: '{s}\n"),
        format!("{s}"),
        format!("---\na: {s}\n---\nb: {s}\n"),
        with(CLUSTER, &format!("{{{s}: 1}}")),
        with(CLUSTER, &format!("{{token: {s}, {s}: 2}}")),
        with(CLUSTER, &format!("{{token: [{s}]}}")),
        with(CLUSTER, &format!("{{token: {s}, client-key-data: {s}}}")),
        with(CLUSTER, &format!("{{exec: {{command: {s}, args: [{s}]}}}}")),
        with(CLUSTER, &format!("{{tokenFile: /{s}}}")),
        with(CLUSTER, &format!("{{username: {s}, password: {s}}}")),
        with(
            CLUSTER,
            &format!("{{client-certificate-data: \"{s}!\", client-key-data: {s}}}"),
        ),
        with(&format!("{{server: \"http://{s}:80\"}}"), &token_user()),
        with(&format!("{{server: \"https://{s}@h\"}}"), &token_user()),
        with(&format!("{{server: \"{s}\"}}"), &token_user()),
        with(
            &format!("{{server: \"https://h\", proxy-url: \"{s}\"}}"),
            &token_user(),
        ),
        with(
            &format!("{{server: \"https://h\", certificate-authority-data: {s}}}"),
            &token_user(),
        ),
        with(
            &format!("{{server: \"https://h\", insecure-skip-tls-verify: {s}}}"),
            &token_user(),
        ),
        with(CLUSTER, &token_user()).replace("user: u}}", &format!("user: {s}}}}}")),
        with(CLUSTER, &token_user())
            .replace("current-context: x", &format!("current-context: {s}")),
    ]
}

#[test]
fn no_refusal_quotes_the_secret() {
    for text in hostile() {
        let r = refusal(&text);
        for shown in [r.to_string(), format!("{r:?}"), format!("{r:#?}")] {
            assert!(!shown.contains(SECRET), "{shown}\nfrom\n{text}");
            assert!(!shown.contains("4f9a1c"), "{shown}\nfrom\n{text}");
        }
    }
}
