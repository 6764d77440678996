//! What `isthmus status` reads: the five kinds of isthmus objects as values, plus the objects
//! that did not parse as their type (an invalid NetworkConfig a peer wrote must not hide the
//! rest). Filled by `fetch`, consumed by `build`; pure data.

use isthmus_api::{ForeignCluster, IpamStorage, NatMapping, NetworkConfig, TunnelEndpoint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde_json::Value;

/// Every isthmus object of one cluster (namespaced kinds from one namespace).
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    pub tunnel_endpoints: Vec<TunnelEndpoint>,
    pub network_configs: Vec<NetworkConfig>,
    pub foreign_clusters: Vec<ForeignCluster>,
    pub nat_mappings: Vec<NatMapping>,
    pub ipam_storages: Vec<IpamStorage>,
    pub unreadable: Vec<Unreadable>,
}

impl Fetched {
    /// Whether the namespace holds no isthmus object at all (ForeignClusters are cluster-wide
    /// and do not count).
    pub fn namespace_is_empty(&self) -> bool {
        self.tunnel_endpoints.is_empty()
            && self.network_configs.is_empty()
            && self.nat_mappings.is_empty()
            && self.ipam_storages.is_empty()
            && !self.unreadable.iter().any(|u| u.kind != "ForeignCluster")
    }
}

/// An object that is not a valid instance of its type.
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    pub kind: &'static str,
    pub name: String,
    /// Its namespace (None: cluster-scoped).
    pub namespace: Option<String>,
    /// The peer it concerns, when its spec says so.
    pub peer: Option<String>,
    /// Whatever conditions its status carries.
    pub conditions: Vec<Condition>,
    /// Why it did not parse.
    pub error: String,
}

impl Unreadable {
    /// Salvages what it can from the raw object: name, peer (`spec.originClusterID` of a
    /// NetworkConfig, `spec.clusterID` of the others) and the conditions that parse.
    pub fn from_raw(kind: &'static str, raw: &Value, error: String) -> Self {
        let peer_field = if kind == "NetworkConfig" {
            "originClusterID"
        } else {
            "clusterID"
        };
        let conditions = raw["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| serde_json::from_value(c.clone()).ok())
            .collect();
        Unreadable {
            kind,
            name: raw["metadata"]["name"].as_str().unwrap_or("?").to_owned(),
            namespace: raw["metadata"]["namespace"].as_str().map(str::to_owned),
            peer: raw["spec"][peer_field].as_str().map(str::to_owned),
            conditions,
            error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_network_config_keeps_its_peer_and_conditions() {
        let raw = serde_json::json!({
            "metadata": {"name": "z"},
            "spec": {"clusterID": "a", "originClusterID": "z", "podCIDR": "10.0.0.1/16"},
            "status": {"conditions": [
                {"type": "Processed", "status": "False", "reason": "InvalidSpec",
                 "message": "host bits set", "lastTransitionTime": "2025-01-01T00:00:00Z"},
                {"type": "broken"}
            ]}
        });
        let u = Unreadable::from_raw("NetworkConfig", &raw, "bad CIDR".into());
        assert_eq!(u.name, "z");
        assert_eq!(u.peer.as_deref(), Some("z"));
        assert_eq!(u.conditions.len(), 1);
        assert_eq!(u.conditions[0].reason, "InvalidSpec");
        let tep = Unreadable::from_raw("TunnelEndpoint", &raw, String::new());
        assert_eq!(tep.peer.as_deref(), Some("a"));
    }

    #[test]
    fn foreign_clusters_alone_leave_the_namespace_empty() {
        let mut f = Fetched::default();
        f.unreadable.push(Unreadable::from_raw(
            "ForeignCluster",
            &serde_json::json!({}),
            String::new(),
        ));
        assert!(f.namespace_is_empty());
        f.unreadable.push(Unreadable::from_raw(
            "NatMapping",
            &serde_json::json!({}),
            String::new(),
        ));
        assert!(!f.namespace_is_empty());
    }
}
