//! `ForeignCluster`: a peer. Creating one starts peering with that cluster; deleting it unpeers
//! and removes everything the peering created, in both clusters and in the kernel.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ClusterId;
use crate::validate::ValidationError;

/// How to reach a peer's API.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "net.isthmus.io",
    version = "v1alpha1",
    kind = "ForeignCluster",
    status = "ForeignClusterStatus",
    shortname = "fc",
    category = "isthmus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Cluster ID","type":"string","jsonPath":".spec.clusterID"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ForeignClusterSpec {
    /// The peer's cluster ID.
    #[serde(rename = "clusterID")]
    pub cluster_id: ClusterId,
    /// Secret holding a kubeconfig for the peer's API (production).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig_secret_ref: Option<SecretKeyRef>,
    /// Name of the peer in the lab (the lab resolves it to that cluster's in-memory API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lab_cluster: Option<String>,
}

/// A key of a Secret.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    pub name: String,
    pub namespace: String,
    /// Key inside the Secret's data; `kubeconfig` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// What the network-manager observed about the peering.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForeignClusterStatus {
    /// `Pending`, `Peering`, `Peered`, `Unpeering` or `Error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<crate::schema::Condition>")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

impl ForeignClusterSpec {
    /// Exactly one way to reach the peer must be given.
    pub fn validate(&self) -> Result<(), ValidationError> {
        match (&self.kubeconfig_secret_ref, &self.lab_cluster) {
            (Some(_), None) | (None, Some(_)) => Ok(()),
            _ => Err(ValidationError::field(
                "spec",
                "exactly one of kubeconfigSecretRef and labCluster must be set",
            )),
        }
    }
}
