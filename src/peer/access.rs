//! A peer's identity in one cluster, decided without I/O: for cluster X peering with Y, the
//! namespace `<X's release namespace>-peer-<Y>` ([`peer_namespace`]) holding
//!
//! - ServiceAccount `isthmus-peer`: Y's identity in X (its token goes into Y's kubeconfig
//!   Secret), bound to Role `isthmus-peer`: NetworkConfigs of this namespace only (Y writes its
//!   own there and reads our decision from it), `networkconfigs/status` read only (the decision
//!   is X's alone to write), nothing else, no Secret;
//! - Role `isthmus-network-manager`, bound to X's network-manager: answer and remove the
//!   NetworkConfig Y wrote, read the one kubeconfig Secret with which X reaches Y (by name), and
//!   write Events about that NetworkConfig.
//!
//! So the API server's RBAC, not trust, binds a NetworkConfig to the cluster it speaks for: Y's
//! token can write only in Y's namespace, and the network-manager accepts there only Y's
//! NetworkConfig. Deleting the namespace (`isthmus unpeer`) revokes Y's tokens at once.

use std::collections::BTreeMap;

use isthmus_api::{ClusterId, LABEL_PEER_CLUSTER, peer_namespace};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::ObjectMeta;

use crate::peer::plan::MANAGED_BY;
use crate::peer::side::Role as Side;

/// The ServiceAccount (and its Role) a peer uses in its namespace.
pub const PEER_ACCOUNT: &str = "isthmus-peer";
/// The Role of our network-manager in a peer's namespace.
pub const NETWORK_MANAGER_ROLE: &str = "isthmus-network-manager";

/// One peer's namespace in one cluster and what lives in it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerSpace {
    /// The cluster it is made in.
    pub side: Side,
    pub cluster_id: ClusterId,
    /// The peer it is for.
    pub peer: ClusterId,
    pub namespace: String,
    /// Where the network-manager's ServiceAccount lives (the release namespace), and its name.
    pub release_namespace: String,
    pub network_manager_account: String,
    /// The kubeconfig Secret with which this cluster reaches the peer (it lives here).
    pub kubeconfig_secret: String,
}

impl PeerSpace {
    pub fn new(
        side: Side,
        cluster_id: &ClusterId,
        release_namespace: &str,
        network_manager_account: &str,
        peer: &ClusterId,
        kubeconfig_secret: &str,
    ) -> Self {
        PeerSpace {
            side,
            cluster_id: cluster_id.clone(),
            peer: peer.clone(),
            namespace: peer_namespace(release_namespace, peer),
            release_namespace: release_namespace.to_owned(),
            network_manager_account: network_manager_account.to_owned(),
            kubeconfig_secret: kubeconfig_secret.to_owned(),
        }
    }

    fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
            (LABEL_PEER_CLUSTER.to_owned(), self.peer.to_string()),
        ])
    }

    fn meta(&self, name: &str, namespaced: bool) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: namespaced.then(|| self.namespace.clone()),
            labels: Some(self.labels()),
            ..ObjectMeta::default()
        }
    }

    /// The namespace, labelled with the peer's cluster ID.
    pub fn namespace(&self) -> Namespace {
        Namespace {
            metadata: self.meta(&self.namespace, false),
            ..Namespace::default()
        }
    }

    /// The peer's ServiceAccount.
    pub fn service_account(&self) -> ServiceAccount {
        ServiceAccount {
            metadata: self.meta(PEER_ACCOUNT, true),
            ..ServiceAccount::default()
        }
    }

    /// The two Roles and their bindings: the peer's, then the network-manager's.
    pub fn roles(&self) -> Vec<(Role, RoleBinding)> {
        let nc = |resource: &str, verbs: &[&str]| rule("net.isthmus.io", resource, verbs, None);
        let peer_rules = vec![
            nc(
                "networkconfigs",
                &[
                    "get", "list", "watch", "create", "patch", "update", "delete",
                ],
            ),
            nc("networkconfigs/status", &["get"]),
        ];
        let nm_rules = vec![
            nc("networkconfigs", &["get", "list", "watch", "delete"]),
            nc("networkconfigs/status", &["get", "patch"]),
            rule("", "secrets", &["get"], Some(&self.kubeconfig_secret)),
            rule("events.k8s.io", "events", &["create", "patch"], None),
        ];
        let peer = Subject {
            kind: "ServiceAccount".into(),
            name: PEER_ACCOUNT.into(),
            namespace: Some(self.namespace.clone()),
            ..Subject::default()
        };
        let nm = Subject {
            kind: "ServiceAccount".into(),
            name: self.network_manager_account.clone(),
            namespace: Some(self.release_namespace.clone()),
            ..Subject::default()
        };
        vec![
            self.role(PEER_ACCOUNT, peer_rules, peer),
            self.role(NETWORK_MANAGER_ROLE, nm_rules, nm),
        ]
    }

    fn role(&self, name: &str, rules: Vec<PolicyRule>, subject: Subject) -> (Role, RoleBinding) {
        let role = Role {
            metadata: self.meta(name, true),
            rules: Some(rules),
        };
        let binding = RoleBinding {
            metadata: self.meta(name, true),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "Role".into(),
                name: name.into(),
            },
            subjects: Some(vec![subject]),
        };
        (role, binding)
    }
}

fn rule(group: &str, resource: &str, verbs: &[&str], name: Option<&str>) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(vec![resource.to_owned()]),
        resource_names: name.map(|n| vec![n.to_owned()]),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        ..PolicyRule::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space() -> PeerSpace {
        PeerSpace::new(
            Side::Local,
            &"cluster-a".parse().unwrap(),
            "isthmus",
            "isthmus-network-manager",
            &"cluster-b".parse().unwrap(),
            "isthmus-peer-cluster-b",
        )
    }

    #[test]
    fn the_peer_may_write_its_network_configs_and_read_nothing_else() {
        let s = space();
        assert_eq!(s.namespace, "isthmus-peer-cluster-b");
        let roles = s.roles();
        let (peer, binding) = &roles[0];
        let rules = peer.rules.as_ref().unwrap();
        let all: Vec<(&str, Vec<&str>)> = rules
            .iter()
            .map(|r| {
                let res = r.resources.as_ref().unwrap()[0].as_str();
                (res, r.verbs.iter().map(String::as_str).collect())
            })
            .collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[1], ("networkconfigs/status", vec!["get"]));
        assert!(!all.iter().any(|(r, _)| *r == "secrets"));
        let subject = &binding.subjects.as_ref().unwrap()[0];
        assert_eq!(
            (subject.name.as_str(), subject.namespace.as_deref()),
            (PEER_ACCOUNT, Some("isthmus-peer-cluster-b"))
        );
    }

    #[test]
    fn the_network_manager_reads_one_secret_by_name() {
        let roles = space().roles();
        let (nm, binding) = &roles[1];
        let secrets: Vec<&PolicyRule> = nm
            .rules
            .as_ref()
            .unwrap()
            .iter()
            .filter(|r| r.resources.as_ref().unwrap()[0] == "secrets")
            .collect();
        assert_eq!(secrets.len(), 1);
        assert_eq!(
            secrets[0].resource_names.as_deref(),
            Some(&["isthmus-peer-cluster-b".to_owned()][..])
        );
        assert_eq!(secrets[0].verbs, ["get"]);
        let subject = &binding.subjects.as_ref().unwrap()[0];
        assert_eq!(subject.namespace.as_deref(), Some("isthmus"));
    }
}
