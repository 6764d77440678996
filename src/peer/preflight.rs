//! The checks `peer` and `unpeer` make before they write anything: per cluster ([`inspect`],
//! reads only) the API answers, isthmus's CRDs are served, the namespace exists, the chart's
//! cluster-info ConfigMap names the cluster ID (and, for `peer`, the network-manager's
//! ServiceAccount, which must exist: each peer's namespace binds it); and across the two ([`check_pair`], pure) that they are different clusters
//! installed in namespaces of the same name, with no ForeignCluster in the way.

use std::str::FromStr;

use isthmus_api::{ClusterId, ForeignCluster, LABEL_PEER_CLUSTER, peer_namespace};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{ListParams, ObjectMeta};
use kube::{Api, ResourceExt};

use crate::peer::error::{PeerError, Result, request_error};
use crate::peer::plan::MANAGED_BY_SELECTOR;
use crate::peer::side::{Connection, Label};

/// The label of the chart's cluster-info ConfigMap.
pub const CLUSTER_INFO_LABEL: &str = "net.isthmus.io/cluster-info";

/// The isthmus kinds a peering involves, by plural name.
const KINDS: [(&str, &str); 4] = [
    ("foreignclusters", "ForeignCluster"),
    ("networkconfigs", "NetworkConfig"),
    ("tunnelendpoints", "TunnelEndpoint"),
    ("natmappings", "NatMapping"),
];

/// What `peer` or `unpeer` needs to be true.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Peer,
    Unpeer,
}

/// What the chart says about the installation (its cluster-info ConfigMap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    pub config_map: String,
    pub cluster_id: ClusterId,
    /// The network-manager's ServiceAccount (in the release namespace).
    pub network_manager_account: String,
    /// The ConfigMap where the gateway publishes its public key.
    pub gateway_public_key: String,
    pub gateway_lease: String,
}

/// What the preflight found in one cluster.
#[derive(Debug, Clone)]
pub struct Facts {
    pub conn: Connection,
    pub info: ClusterInfo,
    /// Every ForeignCluster of the cluster.
    pub foreign_clusters: Vec<ForeignCluster>,
    /// Metadata of the peer namespaces `isthmus peer` made (each holds one peer's identity and
    /// the kubeconfig Secret for reaching it).
    pub peer_namespaces: Vec<ObjectMeta>,
}

impl Facts {
    pub fn id(&self) -> &ClusterId {
        &self.info.cluster_id
    }

    pub fn label(&self) -> &Label {
        &self.conn.label
    }
}

/// Reads what `purpose` needs from one cluster; writes nothing.
pub async fn inspect(conn: Connection, purpose: Purpose) -> Result<Facts> {
    answers(&conn).await?;
    crds(&conn).await?;
    namespace(&conn).await?;
    let info = cluster_info(&conn).await?;
    if purpose == Purpose::Peer {
        network_manager_account(&conn, &info).await?;
    }
    let fcs: Api<ForeignCluster> = Api::all(conn.client.clone());
    let foreign_clusters = fcs
        .list(&ListParams::default())
        .await
        .map_err(|e| api_error(&conn, "listing ForeignClusters", e))?
        .items;
    let namespaces: Api<Namespace> = Api::all(conn.client.clone());
    let selector = ListParams::default().labels(MANAGED_BY_SELECTOR);
    let peer_namespaces = namespaces
        .list_metadata(&selector)
        .await
        .map_err(|e| api_error(&conn, "listing Namespaces", e))?
        .items
        .into_iter()
        .map(|m| m.metadata)
        .filter(|m| is_peer_namespace_of(m, &conn.namespace))
        .collect();
    Ok(Facts {
        conn,
        info,
        foreign_clusters,
        peer_namespaces,
    })
}

/// The error of a failed request, one line.
pub fn api_error(conn: &Connection, what: &str, error: kube::Error) -> PeerError {
    PeerError::Api {
        side: conn.label.clone(),
        what: what.to_owned(),
        message: request_error(&error),
    }
}

async fn answers(conn: &Connection) -> Result<()> {
    conn.client
        .apiserver_version()
        .await
        .map(|_| ())
        .map_err(|e| PeerError::Unreachable {
            side: conn.label.clone(),
            server: conn.server.clone(),
            message: request_error(&e),
        })
}

async fn crds(conn: &Connection) -> Result<()> {
    let group = format!("{}/{}", isthmus_api::GROUP, isthmus_api::VERSION);
    let served: Vec<String> = match conn.client.list_api_group_resources(&group).await {
        Ok(list) => list.resources.into_iter().map(|r| r.name).collect(),
        Err(kube::Error::Api(s)) if s.code == 404 => Vec::new(),
        Err(e) => return Err(api_error(conn, "reading the API's discovery", e)),
    };
    let missing: Vec<&'static str> = KINDS
        .iter()
        .filter(|(plural, _)| !served.iter().any(|s| s == plural))
        .map(|(_, kind)| *kind)
        .collect();
    match missing.is_empty() {
        true => Ok(()),
        false => Err(PeerError::NoCrds {
            side: conn.label.clone(),
            missing,
        }),
    }
}

async fn namespace(conn: &Connection) -> Result<()> {
    let api: Api<Namespace> = Api::all(conn.client.clone());
    match api.get_opt(&conn.namespace).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(PeerError::NoNamespace {
            side: conn.label.clone(),
            namespace: conn.namespace.clone(),
            flag: conn.label.role.flag(),
        }),
        Err(e) => Err(api_error(conn, "reading the namespace", e)),
    }
}

async fn cluster_info(conn: &Connection) -> Result<ClusterInfo> {
    let api: Api<ConfigMap> = Api::namespaced(conn.client.clone(), &conn.namespace);
    let list = api
        .list(&ListParams::default().labels(&format!("{CLUSTER_INFO_LABEL}=true")))
        .await
        .map_err(|e| api_error(conn, "listing ConfigMaps", e))?;
    let mut found = list.items;
    if found.len() > 1 {
        let names: Vec<String> = found.iter().map(ResourceExt::name_any).collect();
        return Err(PeerError::Config {
            side: conn.label.clone(),
            message: format!(
                "namespace {} holds several isthmus releases ({}); install one per namespace",
                conn.namespace,
                names.join(", ")
            ),
        });
    }
    let cm = found.pop().ok_or_else(|| PeerError::NotInstalled {
        side: conn.label.clone(),
        namespace: conn.namespace.clone(),
        label: CLUSTER_INFO_LABEL,
    })?;
    parse_cluster_info(&cm).map_err(|message| PeerError::BadClusterInfo {
        side: conn.label.clone(),
        namespace: conn.namespace.clone(),
        name: cm.name_any(),
        message,
    })
}

/// The chart's ConfigMap, read.
pub fn parse_cluster_info(cm: &ConfigMap) -> std::result::Result<ClusterInfo, String> {
    let data = cm.data.clone().unwrap_or_default();
    let get = |key: &str| {
        data.get(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let raw_id = get("clusterID").ok_or("it has no clusterID")?;
    let cluster_id =
        ClusterId::from_str(&raw_id).map_err(|e| format!("clusterID {raw_id:?}: {e}"))?;
    Ok(ClusterInfo {
        config_map: cm.name_any(),
        cluster_id,
        network_manager_account: get("networkManagerServiceAccount").ok_or(
            "it has no networkManagerServiceAccount (chart 0.3.0 or later names it; upgrade the chart)",
        )?,
        gateway_public_key: get("gatewayPublicKey").ok_or("it has no gatewayPublicKey")?,
        gateway_lease: get("gatewayLease").ok_or("it has no gatewayLease")?,
    })
}

async fn network_manager_account(conn: &Connection, info: &ClusterInfo) -> Result<()> {
    let name = &info.network_manager_account;
    let api: Api<ServiceAccount> = Api::namespaced(conn.client.clone(), &conn.namespace);
    match api.get_opt(name).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(PeerError::NoNetworkManagerAccount {
            side: conn.label.clone(),
            namespace: conn.namespace.clone(),
            name: name.clone(),
        }),
        Err(e) => Err(api_error(
            conn,
            "reading the network-manager's ServiceAccount",
            e,
        )),
    }
}

/// Whether namespace `m` is a peer namespace of the release in `release_namespace` (its name
/// is derived from the release namespace and the peer's cluster ID it is labelled with).
pub fn is_peer_namespace_of(m: &ObjectMeta, release_namespace: &str) -> bool {
    let peer = m
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_PEER_CLUSTER))
        .and_then(|v| v.parse::<ClusterId>().ok());
    peer.is_some_and(|p| m.name.as_deref() == Some(&peer_namespace(release_namespace, &p)))
}

/// Checks across both clusters, on what [`inspect`] found.
pub fn check_pair(local: &Facts, remote: &Facts, purpose: Purpose) -> Result<()> {
    if local.id() == remote.id() {
        return Err(PeerError::SameCluster {
            why: format!("both have cluster ID {}", local.id()),
        });
    }
    if same_server(&local.conn.server, &remote.conn.server) {
        return Err(PeerError::SameCluster {
            why: format!("both kubeconfigs reach {}", local.conn.server),
        });
    }
    if purpose == Purpose::Unpeer {
        return Ok(());
    }
    if local.conn.namespace != remote.conn.namespace {
        return Err(PeerError::NamespaceMismatch {
            local: local.conn.namespace.clone(),
            remote: remote.conn.namespace.clone(),
        });
    }
    for (holder, peer) in [(local, remote), (remote, local)] {
        if let Some(message) = foreign_cluster_conflict(&holder.foreign_clusters, peer.id()) {
            return Err(PeerError::Conflict {
                side: holder.label().clone(),
                message,
            });
        }
    }
    Ok(())
}

/// Why the ForeignCluster `isthmus peer` would write for `peer` cannot be written.
pub fn foreign_cluster_conflict(fcs: &[ForeignCluster], peer: &ClusterId) -> Option<String> {
    for fc in fcs {
        let name = fc.name_any();
        let for_peer = fc.spec.cluster_id == *peer;
        if for_peer && name != peer.as_str() {
            return Some(format!(
                "ForeignCluster {name} already peers with {peer} (it was not made by isthmus \
                 peer); delete it first, or keep managing this peering by hand"
            ));
        }
        if name == peer.as_str() && !for_peer {
            return Some(format!(
                "ForeignCluster {name} exists but is for cluster {}; delete it first",
                fc.spec.cluster_id
            ));
        }
        if name == peer.as_str() && fc.metadata.deletion_timestamp.is_some() {
            return Some(format!(
                "ForeignCluster {name} is being deleted (an unpeering is in progress); wait until \
                 it is gone (`isthmus unpeer` waits for it), then peer again"
            ));
        }
    }
    None
}

/// Whether two server URLs name the same endpoint (case and a trailing slash ignored).
pub fn same_server(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.trim_end_matches('/').to_ascii_lowercase();
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use isthmus_api::ForeignClusterSpec;
    use std::collections::BTreeMap;

    fn fc(name: &str, peer: &str) -> ForeignCluster {
        ForeignCluster::new(
            name,
            ForeignClusterSpec {
                cluster_id: peer.parse().unwrap(),
                kubeconfig_secret_ref: None,
                lab_cluster: Some(peer.into()),
            },
        )
    }

    #[test]
    fn a_foreign_cluster_in_the_way_is_named() {
        let b: ClusterId = "cluster-b".parse().unwrap();
        assert_eq!(
            foreign_cluster_conflict(&[fc("cluster-b", "cluster-b")], &b),
            None
        );
        assert_eq!(
            foreign_cluster_conflict(&[fc("cluster-c", "cluster-c")], &b),
            None
        );
        let by_hand = foreign_cluster_conflict(&[fc("peer-b", "cluster-b")], &b).unwrap();
        assert!(by_hand.starts_with("ForeignCluster peer-b already peers with cluster-b"));
        let other = foreign_cluster_conflict(&[fc("cluster-b", "cluster-x")], &b).unwrap();
        assert!(other.contains("is for cluster cluster-x"), "{other}");
        let mut going = fc("cluster-b", "cluster-b");
        going.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            ));
        let going = foreign_cluster_conflict(&[going], &b).unwrap();
        assert!(going.contains("is being deleted"), "{going}");
    }

    #[test]
    fn the_cluster_info_needs_an_id_and_the_gateway_names() {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("isthmus-cluster".into());
        let data = |pairs: &[(&str, &str)]| {
            Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<BTreeMap<_, _>>(),
            )
        };
        cm.data = data(&[
            ("clusterID", "cluster-a"),
            ("networkManagerServiceAccount", "isthmus-network-manager"),
            ("gatewayPublicKey", "isthmus-gateway-pubkey"),
            ("gatewayLease", "isthmus-gateway"),
        ]);
        let info = parse_cluster_info(&cm).unwrap();
        assert_eq!(info.cluster_id.as_str(), "cluster-a");
        assert_eq!(info.network_manager_account, "isthmus-network-manager");
        cm.data = data(&[("clusterID", "Not_A_Label")]);
        assert!(
            parse_cluster_info(&cm)
                .unwrap_err()
                .starts_with("clusterID \"Not_A_Label\"")
        );
        cm.data = data(&[]);
        assert_eq!(parse_cluster_info(&cm).unwrap_err(), "it has no clusterID");
    }

    #[test]
    fn servers_compare_without_case_or_trailing_slash() {
        assert!(same_server(
            "https://API.example:6443/",
            "https://api.example:6443"
        ));
        assert!(!same_server("https://a:6443", "https://b:6443"));
    }
}
