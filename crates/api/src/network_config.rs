//! `NetworkConfig`: what cluster X tells peer Y about its networks and gateway. X writes the spec
//! into Y's API; Y processes it and writes its decision (accepted or remapped) into the status,
//! which X copies back. Never carries a private key.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::validate::{ValidationError, validate_endpoint};
use crate::{BACKEND_PUBLIC_KEY, Cidr, ClusterId};

/// The tunnel technology between two gateways.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackendType {
    #[default]
    WireGuard,
}

/// X's networks and gateway, as offered to peer `clusterID`.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "net.isthmus.io",
    version = "v1alpha1",
    kind = "NetworkConfig",
    namespaced,
    status = "NetworkConfigStatus",
    shortname = "nc",
    category = "isthmus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"From","type":"string","jsonPath":".spec.originClusterID"}"#,
    printcolumn = r#"{"name":"To","type":"string","jsonPath":".spec.clusterID"}"#,
    printcolumn = r#"{"name":"Pod CIDR","type":"string","jsonPath":".spec.podCIDR"}"#,
    printcolumn = r#"{"name":"Processed","type":"boolean","jsonPath":".status.processed"}"#,
    printcolumn = r#"{"name":"Pod CIDR NAT","type":"string","jsonPath":".status.podCIDRNAT"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct NetworkConfigSpec {
    /// The cluster that receives this NetworkConfig.
    #[serde(rename = "clusterID")]
    pub cluster_id: ClusterId,
    /// The cluster that wrote it.
    #[serde(rename = "originClusterID")]
    pub origin_cluster_id: ClusterId,
    /// The origin's real Pod CIDR.
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Cidr,
    /// The origin's ExternalCIDR.
    #[serde(rename = "externalCIDR")]
    pub external_cidr: Cidr,
    /// The origin gateway's public endpoint, `host:port`.
    pub endpoint: String,
    #[serde(rename = "backendType", default)]
    pub backend_type: BackendType,
    /// Public connection parameters (`publicKey` for WireGuard).
    #[serde(rename = "backendConfig", default)]
    pub backend_config: BTreeMap<String, String>,
}

/// The receiver's decision about the origin's networks.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct NetworkConfigStatus {
    /// Whether the receiver has processed the spec.
    #[serde(default)]
    pub processed: bool,
    /// The network the receiver uses for the origin's Pod CIDR, when it had to remap it.
    #[serde(
        rename = "podCIDRNAT",
        default,
        with = "isthmus_addr::none_as_absent",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<Cidr>")]
    pub pod_cidr_nat: Option<Cidr>,
    /// The network the receiver uses for the origin's ExternalCIDR, when it had to remap it.
    #[serde(
        rename = "externalCIDRNAT",
        default,
        with = "isthmus_addr::none_as_absent",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<Cidr>")]
    pub external_cidr_nat: Option<Cidr>,
    #[serde(
        rename = "observedGeneration",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<crate::schema::Condition>")]
    pub conditions: Vec<Condition>,
}

impl NetworkConfigSpec {
    /// Rules beyond the schema: distinct clusters, disjoint networks, a usable endpoint, a public
    /// key present and no secret material.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.cluster_id == self.origin_cluster_id {
            return Err(ValidationError::field(
                "spec.clusterID",
                "equals originClusterID",
            ));
        }
        if self.pod_cidr.overlaps(&self.external_cidr) {
            return Err(ValidationError::field(
                "spec.externalCIDR",
                format!("{} overlaps podCIDR {}", self.external_cidr, self.pod_cidr),
            ));
        }
        validate_endpoint(&self.endpoint)?;
        if let Some(k) = self
            .backend_config
            .keys()
            .find(|k| k.to_lowercase().contains("private"))
        {
            return Err(ValidationError::field(
                "spec.backendConfig",
                format!("key {k:?} looks like secret material; only public parameters belong here"),
            ));
        }
        if !self.backend_config.contains_key(BACKEND_PUBLIC_KEY) {
            return Err(ValidationError::field(
                "spec.backendConfig",
                "publicKey is missing",
            ));
        }
        Ok(())
    }
}
