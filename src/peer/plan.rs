//! What `isthmus peer` writes, decided without I/O: in each cluster, the other's namespace and
//! identity ([`PeerSpace`]); then for each direction, in the cluster that reaches out (the
//! holder), a Secret `isthmus-peer-<reached cluster ID>` in the reached cluster's namespace there,
//! holding a kubeconfig for the holder's own ServiceAccount in the reached cluster (server URL,
//! CA inline, token inline: nothing that runs a command or reads a file), and a ForeignCluster
//! `<reached cluster ID>` naming it.
//! Both are server-side applied with field manager [`FIELD_MANAGER`], so running `peer` again
//! rewrites them (a fresh token) and changes nothing else. Also the warnings worth a line before
//! anything is written, and the text `--dry-run` prints (the token redacted).

use std::collections::BTreeMap;

use isthmus_api::{
    ClusterId, ForeignCluster, ForeignClusterSpec, LABEL_REMOTE_CLUSTER, SecretKeyRef,
    peer_namespace,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

use crate::peer::access::{PEER_ACCOUNT, PeerSpace};
use crate::peer::kubeconfig::{Credential, KubeconfigSpec, render};
use crate::peer::preflight::Facts;
use crate::peer::side::Role;
use crate::peer::token::Minted;

/// The field manager of everything `isthmus peer` writes.
pub const FIELD_MANAGER: &str = "isthmus-peer";
/// The label on everything `isthmus peer` writes.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "isthmus-peer");
/// [`MANAGED_BY`] as a label selector.
pub const MANAGED_BY_SELECTOR: &str = "app.kubernetes.io/managed-by=isthmus-peer";
/// The Secret's data key (the ForeignCluster's default).
pub const KUBECONFIG_KEY: &str = "kubeconfig";
/// When the token in the Secret expires (RFC 3339), as the API granted it.
pub const TOKEN_EXPIRES_ANNOTATION: &str = "net.isthmus.io/token-expires";
/// What stands for the token in `--dry-run` output.
pub const REDACTED: &str = "<redacted: minted when applied>";

/// The Secret holding the kubeconfig for cluster `reached`.
pub fn secret_name(reached: &ClusterId) -> String {
    format!("isthmus-peer-{reached}")
}

/// What the plan needs to know of one cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanSide {
    pub role: Role,
    pub context: String,
    pub cluster_id: ClusterId,
    /// The release namespace.
    pub namespace: String,
    /// The network-manager's ServiceAccount (in `namespace`).
    pub network_manager_account: String,
    /// Where the other cluster reaches this API.
    pub api_url: String,
    pub ca_pem: Option<String>,
    pub tls_server_name: Option<String>,
    pub foreign_clusters: Vec<ForeignCluster>,
}

impl PlanSide {
    pub fn of(facts: &Facts) -> PlanSide {
        PlanSide {
            role: facts.conn.label.role,
            context: facts.conn.label.context.clone(),
            cluster_id: facts.info.cluster_id.clone(),
            namespace: facts.conn.namespace.clone(),
            network_manager_account: facts.info.network_manager_account.clone(),
            api_url: facts.conn.api_url.clone(),
            ca_pem: facts.conn.ca_pem.clone(),
            tls_server_name: facts.conn.tls_server_name.clone(),
            foreign_clusters: facts.foreign_clusters.clone(),
        }
    }
}

/// One direction of the peering.
#[derive(Debug, Clone, PartialEq)]
pub struct Direction {
    /// The cluster the Secret and the ForeignCluster are written into.
    pub holder: Role,
    pub holder_id: ClusterId,
    /// Where the Secret goes in the holder: the reached cluster's peer namespace there.
    pub namespace: String,
    /// The cluster the kubeconfig reaches (a token of the holder's ServiceAccount there).
    pub reached: PlanSide,
    /// The holder's peer namespace in the reached cluster, where its ServiceAccount
    /// ([`PEER_ACCOUNT`]) lives and its NetworkConfig goes.
    pub token_namespace: String,
    pub secret_name: String,
    pub foreign_cluster: ForeignCluster,
}

/// Everything `peer` writes, and what deserves a warning first.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// In each cluster, the other's namespace and identity (written first).
    pub spaces: Vec<PeerSpace>,
    pub directions: Vec<Direction>,
    pub warnings: Vec<String>,
}

/// The plan for peering `local` and `remote` (both checked by the preflight).
pub fn plan(local: &PlanSide, remote: &PlanSide) -> Plan {
    let mut warnings = Vec::new();
    let spaces = [(local, remote), (remote, local)]
        .into_iter()
        .map(|(holder, peer)| space(holder, peer))
        .collect();
    let directions = [(local, remote), (remote, local)]
        .into_iter()
        .map(|(holder, reached)| {
            warnings.extend(reach_warnings(reached));
            warnings.extend(replaced_secret(holder, reached));
            direction(holder, reached)
        })
        .collect();
    Plan {
        spaces,
        directions,
        warnings,
    }
}

/// `peer`'s namespace and identity in `holder`.
fn space(holder: &PlanSide, peer: &PlanSide) -> PeerSpace {
    PeerSpace::new(
        holder.role,
        &holder.cluster_id,
        &holder.namespace,
        &holder.network_manager_account,
        &peer.cluster_id,
        &secret_name(&peer.cluster_id),
    )
}

fn direction(holder: &PlanSide, reached: &PlanSide) -> Direction {
    let secret_name = secret_name(&reached.cluster_id);
    let namespace = peer_namespace(&holder.namespace, &reached.cluster_id);
    let spec = ForeignClusterSpec {
        cluster_id: reached.cluster_id.clone(),
        kubeconfig_secret_ref: Some(SecretKeyRef {
            name: secret_name.clone(),
            namespace: namespace.clone(),
            key: None,
        }),
        lab_cluster: None,
    };
    let mut foreign_cluster = ForeignCluster::new(reached.cluster_id.as_str(), spec);
    foreign_cluster.metadata.labels = Some(labels(&reached.cluster_id));
    Direction {
        holder: holder.role,
        holder_id: holder.cluster_id.clone(),
        namespace,
        reached: reached.clone(),
        token_namespace: peer_namespace(&reached.namespace, &holder.cluster_id),
        secret_name,
        foreign_cluster,
    }
}

fn labels(reached: &ClusterId) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        (LABEL_REMOTE_CLUSTER.to_owned(), reached.to_string()),
    ])
}

/// What might keep the other cluster from reaching `reached`'s API with the kubeconfig.
fn reach_warnings(reached: &PlanSide) -> Vec<String> {
    let mut out = Vec::new();
    let id = &reached.cluster_id;
    let url = &reached.api_url;
    let host = url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(['/', ':']).next())
        .unwrap_or_default();
    if host == "localhost" || host.starts_with("127.") || host == "[::1]" {
        out.push(format!(
            "{id}'s API is given to the other cluster as {url}, a loopback address: from the \
             other cluster's pods that is themselves. Pass --{}api-url with an address they can \
             reach (kind: https://<control-plane container IP>:6443)",
            reached.role.flag()
        ));
    }
    // a plain HTTP URL never gets here: `side` refuses it (network-managers would refuse the
    // kubeconfig)
    if reached.ca_pem.is_none() {
        out.push(format!(
            "the kubeconfig of {id} carries no CA: the other cluster will check {url}'s \
             certificate against public roots only"
        ));
    }
    out
}

/// A ForeignCluster made by hand whose Secret the plan's Secret replaces.
fn replaced_secret(holder: &PlanSide, reached: &PlanSide) -> Option<String> {
    let fc = holder
        .foreign_clusters
        .iter()
        .find(|fc| fc.name_any() == reached.cluster_id.as_str())?;
    let old = fc.spec.kubeconfig_secret_ref.as_ref()?;
    let new = secret_name(&reached.cluster_id);
    let ns = peer_namespace(&holder.namespace, &reached.cluster_id);
    (old.name != new || old.namespace != ns).then(|| {
        format!(
            "ForeignCluster {} in {} will use Secret {ns}/{new} instead of {}/{}, which is left \
             as it is",
            reached.cluster_id, holder.cluster_id, old.namespace, old.name
        )
    })
}

/// The kubeconfig for `d.reached`'s API with `token`: server, CA and token inline, default
/// namespace the holder's own namespace there.
pub fn kubeconfig(d: &Direction, token: &str) -> String {
    let reached = &d.reached;
    render(&KubeconfigSpec {
        name: reached.cluster_id.as_str(),
        server: &reached.api_url,
        ca_pem: reached.ca_pem.as_deref(),
        tls_server_name: reached.tls_server_name.as_deref(),
        credential: Credential::Token(token),
        namespace: &d.token_namespace,
    })
}

/// The Secret of `direction`, carrying `minted`'s token.
pub fn secret(direction: &Direction, minted: &Minted) -> Secret {
    let mut s = Secret::default();
    s.metadata.name = Some(direction.secret_name.clone());
    s.metadata.namespace = Some(direction.namespace.clone());
    s.metadata.labels = Some(labels(&direction.reached.cluster_id));
    if let Some(expires) = &minted.expires {
        s.metadata.annotations = Some(BTreeMap::from([(
            TOKEN_EXPIRES_ANNOTATION.to_owned(),
            expires.clone(),
        )]));
    }
    s.type_ = Some("Opaque".to_owned());
    let text = kubeconfig(direction, minted.token.expose());
    s.data = Some(BTreeMap::from([(
        KUBECONFIG_KEY.to_owned(),
        ByteString(text.into_bytes()),
    )]));
    s
}

/// What `--dry-run` prints: per direction the Secret (its kubeconfig with the token redacted)
/// and the ForeignCluster, as YAML.
pub fn describe(plan: &Plan) -> String {
    let mut out = String::new();
    for d in &plan.directions {
        out.push_str(&format!(
            "# in {} ({} cluster), namespace {}: how it reaches {}'s API at {} as \
             ServiceAccount {}/{}\n",
            d.holder_id,
            d.holder.name(),
            d.namespace,
            d.reached.cluster_id,
            d.reached.api_url,
            d.token_namespace,
            PEER_ACCOUNT,
        ));
        let kubeconfig = kubeconfig(d, REDACTED);
        let secret = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {
                "name": d.secret_name, "namespace": d.namespace,
                "labels": labels(&d.reached.cluster_id),
            },
            "type": "Opaque",
            "stringData": { KUBECONFIG_KEY: kubeconfig },
        });
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&secret).unwrap_or_default());
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&d.foreign_cluster).unwrap_or_default());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::token::Token;

    pub fn side(role: Role, id: &str, url: &str) -> PlanSide {
        PlanSide {
            role,
            context: format!("kind-{id}"),
            cluster_id: id.parse().unwrap(),
            namespace: "isthmus".into(),
            network_manager_account: "isthmus-network-manager".into(),
            api_url: url.into(),
            ca_pem: Some("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into()),
            tls_server_name: None,
            foreign_clusters: vec![],
        }
    }

    #[test]
    fn each_cluster_gets_a_secret_and_a_foreign_cluster_for_the_other() {
        let a = side(Role::Local, "cluster-a", "https://172.18.0.2:6443");
        let b = side(Role::Remote, "cluster-b", "https://172.18.0.3:6443");
        let p = plan(&a, &b);
        assert_eq!(p.warnings, Vec::<String>::new());
        let into_a = &p.directions[0];
        assert_eq!(
            (into_a.holder, into_a.holder_id.as_str()),
            (Role::Local, "cluster-a")
        );
        assert_eq!(into_a.secret_name, "isthmus-peer-cluster-b");
        assert_eq!(into_a.foreign_cluster.name_any(), "cluster-b");
        let r = into_a
            .foreign_cluster
            .spec
            .kubeconfig_secret_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            (r.name.as_str(), r.namespace.as_str()),
            ("isthmus-peer-cluster-b", "isthmus-peer-cluster-b")
        );
        assert_eq!(into_a.token_namespace, "isthmus-peer-cluster-a");
        assert_eq!(
            (
                p.spaces[0].namespace.as_str(),
                p.spaces[1].namespace.as_str()
            ),
            ("isthmus-peer-cluster-b", "isthmus-peer-cluster-a")
        );
        assert_eq!(p.directions[1].foreign_cluster.name_any(), "cluster-a");
        assert_eq!(p.directions[1].reached.api_url, "https://172.18.0.2:6443");
    }

    #[test]
    fn the_kubeconfig_carries_only_inline_credentials() {
        let a = side(Role::Local, "cluster-a", "https://172.18.0.2:6443");
        let b = side(Role::Remote, "cluster-b", "https://172.18.0.3:6443");
        let d = &plan(&a, &b).directions[0];
        let minted = Minted {
            token: Token::new("tok-123".into()),
            expires: Some("2027-01-01T00:00:00Z".into()),
        };
        let s = secret(d, &minted);
        let text = String::from_utf8(s.data.unwrap()[KUBECONFIG_KEY].0.clone()).unwrap();
        let kc = kube::config::Kubeconfig::from_yaml(&text).unwrap();
        let cluster = kc.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://172.18.0.3:6443"));
        assert!(cluster.certificate_authority_data.is_some());
        assert!(cluster.certificate_authority.is_none());
        let user = kc.auth_infos[0].auth_info.as_ref().unwrap();
        assert!(user.exec.is_none() && user.token_file.is_none());
        assert!(user.client_certificate.is_none() && user.client_key.is_none());
        assert_eq!(
            s.metadata.annotations.unwrap()[TOKEN_EXPIRES_ANNOTATION],
            "2027-01-01T00:00:00Z"
        );
    }

    #[test]
    fn the_secret_written_is_what_network_managers_accept() {
        use isthmus_network_manager::peer_kubeconfig::{self, PeerCredential};
        let a = side(Role::Local, "cluster-a", "https://172.18.0.2:6443");
        let mut b = side(Role::Remote, "cluster-b", "https://172.18.0.3:6443");
        for tls_server_name in [None, Some("kubernetes".to_owned())] {
            b.tls_server_name = tls_server_name.clone();
            let d = &plan(&a, &b).directions[0];
            let minted = Minted {
                token: Token::new("tok-123".into()),
                expires: None,
            };
            let s = secret(d, &minted);
            let text = String::from_utf8(s.data.unwrap()[KUBECONFIG_KEY].0.clone()).unwrap();
            let k = peer_kubeconfig::parse(&text).unwrap();
            assert_eq!(k.server.to_string(), "https://172.18.0.3:6443/");
            assert_eq!(k.credential, PeerCredential::Token("tok-123".into()));
            assert_eq!(k.ca.as_ref().map(Vec::len), Some(1));
            assert_eq!(k.tls_server_name, tls_server_name);
            assert_eq!(k.namespace.as_deref(), Some("isthmus-peer-cluster-a"));
        }
    }

    #[test]
    fn the_dry_run_shows_everything_but_the_token() {
        let a = side(Role::Local, "cluster-a", "https://172.18.0.2:6443");
        let b = side(Role::Remote, "cluster-b", "https://172.18.0.3:6443");
        let text = describe(&plan(&a, &b));
        assert!(text.contains("name: isthmus-peer-cluster-b"));
        assert!(text.contains("kind: ForeignCluster"));
        assert!(text.contains(REDACTED));
        assert_eq!(text.matches("kind: Secret").count(), 2);
    }

    #[test]
    fn loopback_urls_and_missing_cas_are_warned_about() {
        let mut a = side(Role::Local, "cluster-a", "https://127.0.0.1:39000");
        a.ca_pem = None;
        let b = side(Role::Remote, "cluster-b", "https://10.0.0.3:6443");
        let w = plan(&a, &b).warnings;
        assert_eq!(w.len(), 2, "{w:#?}");
        let has = |needle: &str| w.iter().any(|l| l.contains(needle));
        assert!(has("a loopback address") && has("Pass --api-url"), "{w:#?}");
        assert!(has("the kubeconfig of cluster-a carries no CA"), "{w:#?}");
    }

    #[test]
    fn a_hand_made_secret_being_replaced_is_named() {
        let mut a = side(Role::Local, "cluster-a", "https://10.0.0.2:6443");
        let b = side(Role::Remote, "cluster-b", "https://10.0.0.3:6443");
        let mut fc = ForeignCluster::new(
            "cluster-b",
            ForeignClusterSpec {
                cluster_id: b.cluster_id.clone(),
                kubeconfig_secret_ref: Some(SecretKeyRef {
                    name: "peer-cluster-b".into(),
                    namespace: "isthmus".into(),
                    key: None,
                }),
                lab_cluster: None,
            },
        );
        fc.metadata.uid = Some("u".into());
        a.foreign_clusters = vec![fc];
        let w = plan(&a, &b).warnings;
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("Secret isthmus-peer-cluster-b/isthmus-peer-cluster-b instead of isthmus/peer-cluster-b"),
            "{}",
            w[0]
        );
    }
}
