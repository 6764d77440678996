//! The resources as a client sees them: JSON round trips, Liqo's "None" accepted, validation of
//! what the schema cannot express.

use isthmus_api::{ForeignClusterSpec, NetworkConfig, NetworkConfigSpec, NetworkConfigStatus};
use serde_json::json;

fn spec() -> NetworkConfigSpec {
    serde_json::from_value(json!({
        "clusterID": "cluster-b",
        "originClusterID": "cluster-a",
        "podCIDR": "10.0.0.0/16",
        "externalCIDR": "10.2.0.0/16",
        "endpoint": "192.168.1.10:51820",
        "backendType": "wireguard",
        "backendConfig": {"publicKey": "k"}
    }))
    .unwrap()
}

#[test]
fn a_valid_network_config_round_trips() {
    let nc = NetworkConfig::new("nc-a", spec());
    assert!(nc.spec.validate().is_ok());
    let v = serde_json::to_value(&nc).unwrap();
    assert_eq!(v["apiVersion"], "net.isthmus.io/v1alpha1");
    assert_eq!(v["spec"]["podCIDR"], "10.0.0.0/16");
    let back: NetworkConfig = serde_json::from_value(v).unwrap();
    assert_eq!(back.spec, nc.spec);
}

#[test]
fn liqo_none_means_absent() {
    let st: NetworkConfigStatus = serde_json::from_value(json!({
        "processed": true, "podCIDRNAT": "None", "externalCIDRNAT": "10.9.0.0/16"
    }))
    .unwrap();
    assert_eq!(st.pod_cidr_nat, None);
    assert_eq!(st.external_cidr_nat.unwrap().to_string(), "10.9.0.0/16");
    let v = serde_json::to_value(&st).unwrap();
    assert!(
        v.get("podCIDRNAT").is_none(),
        "absent is written as absent: {v}"
    );
}

#[test]
fn bad_input_is_refused_with_the_field_named() {
    let bad_cidr = json!({"clusterID": "b", "originClusterID": "a", "podCIDR": "10.0.0.1/16",
        "externalCIDR": "10.2.0.0/16", "endpoint": "h:1"});
    let err = serde_json::from_value::<NetworkConfigSpec>(bad_cidr).unwrap_err();
    assert!(err.to_string().contains("host bits set"), "{err}");

    let mut s = spec();
    s.external_cidr = "10.0.128.0/17".parse().unwrap();
    assert!(
        s.validate()
            .unwrap_err()
            .to_string()
            .contains("overlaps podCIDR")
    );
    let mut s = spec();
    s.backend_config
        .insert("privateKey".into(), "secret".into());
    assert!(
        s.validate()
            .unwrap_err()
            .to_string()
            .contains("secret material")
    );
    let mut s = spec();
    s.backend_config.clear();
    assert!(
        s.validate()
            .unwrap_err()
            .to_string()
            .contains("publicKey is missing")
    );
    let mut s = spec();
    s.origin_cluster_id = s.cluster_id.clone();
    assert!(s.validate().is_err());
    let mut s = spec();
    s.endpoint = "10.0.0.1".into();
    assert!(s.validate().is_err());
}

#[test]
fn a_foreign_cluster_needs_exactly_one_way_in() {
    let neither: ForeignClusterSpec = serde_json::from_value(json!({"clusterID": "b"})).unwrap();
    assert!(neither.validate().is_err());
    let lab: ForeignClusterSpec =
        serde_json::from_value(json!({"clusterID": "b", "labCluster": "b"})).unwrap();
    assert!(lab.validate().is_ok());
}
