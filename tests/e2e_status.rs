//! `isthmus status` against a real lab (root; real namespaces, real tunnels): the built binary
//! reads the hub cluster's API over HTTP and must agree with the objects in it — every peer
//! connected with traffic counted and an RTT, NatMapping entries as in the NatMapping objects,
//! ExternalCIDR usage as in the IpamStorage shards. Needs root (fails without it, never skips);
//! runs in the `e2e` test group (one lab at a time).

use crate::e2e_common;

use std::process::Output;

use e2e_common::*;
use isthmus::lab::cluster::NAMESPACE;
use isthmus::lab::plan::Shape;
use isthmus_api::{IpamStorage, NatMapping, TunnelEndpoint};
use kube::Api;
use kube::api::ListParams;
use serde_json::Value;

async fn status(args: &[&str]) -> String {
    let out: Output = tokio::process::Command::new(env!("CARGO_BIN_EXE_isthmus"))
        .arg("status")
        .args(args)
        .output()
        .await
        .expect("isthmus runs");
    assert!(
        out.status.success(),
        "isthmus status {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_of_the_hub_matches_its_objects() {
    isthmus_lab::require_root();
    let lab = lab_up(3, Shape::Hub).await;
    let hub = 1;
    let kubeconfig = lab.clusters[hub].admin_kubeconfig.display().to_string();
    let report: Value =
        serde_json::from_str(&status(&["--kubeconfig", &kubeconfig, "-o", "json"]).await)
            .expect("JSON report");

    // What the hub's API holds, read directly.
    let client = lab.clusters[hub].client();
    let lp = ListParams::default();
    let teps = Api::<TunnelEndpoint>::namespaced(client.clone(), NAMESPACE)
        .list(&lp)
        .await
        .unwrap()
        .items;
    let nat_mappings = Api::<NatMapping>::namespaced(client.clone(), NAMESPACE)
        .list(&lp)
        .await
        .unwrap()
        .items;
    let storages = Api::<IpamStorage>::namespaced(client, NAMESPACE)
        .list(&lp)
        .await
        .unwrap()
        .items;

    assert_eq!(report["clusterID"], "b");
    assert_eq!(report["summary"]["peers"], 2, "{}", report["summary"]);
    assert_eq!(report["summary"]["connected"], 2, "{}", report["summary"]);
    assert_eq!(report["summary"]["text"], "2/2 peers connected");
    assert_eq!(teps.len(), 2);
    for tep in &teps {
        let id = tep.spec.cluster_id.as_str();
        let p = report["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["clusterID"] == id)
            .unwrap_or_else(|| panic!("no row for {id}: {report}"));
        assert_eq!(p["state"], "connected", "{p}");
        assert!(p["rxBytes"].as_u64().unwrap() > 0, "{p}");
        assert!(p["txBytes"].as_u64().unwrap() > 0, "{p}");
        assert!(p["rttMs"].as_f64().unwrap() > 0.0, "{p}");
        assert!(p["handshakeAgeSeconds"].is_u64(), "{p}");
        assert!(
            p["gatewayIP"].is_string() && p["backend"].is_string(),
            "{p}"
        );
        let nat = nat_mappings
            .iter()
            .find(|m| m.spec.cluster_id.as_str() == id)
            .map_or(0, |m| m.spec.cluster_mappings.len());
        assert_eq!(p["natMappings"], nat, "NatMapping entries for {id}");
        let pods = &p["nat"]["peerPods"];
        assert_eq!(
            pods["addressedAs"],
            tep.spec.remote_nat_pod_cidr.to_string()
        );
        assert_eq!(pods["remapped"], true, "identical Pod CIDRs are remapped");
    }
    assert!(
        nat_mappings
            .iter()
            .any(|m| !m.spec.cluster_mappings.is_empty()),
        "the hub maps a↔c endpoints: the check above must not compare zeros only"
    );
    let mappings: usize = isthmus_ipam_store::stored_snapshot("ipam", &storages)
        .unwrap()
        .map_or(0, |s| s.endpoints.len());
    assert!(mappings > 0);
    assert_eq!(report["usage"]["external"]["allocated"], mappings);
    let capacity = report["usage"]["external"]["capacity"].as_u64().unwrap();
    assert_eq!(
        report["usage"]["external"]["available"],
        capacity - mappings as u64
    );

    let table = status(&["--kubeconfig", &kubeconfig]).await;
    eprintln!("{table}");
    assert!(
        table.starts_with("cluster b: 2/2 peers connected\n"),
        "{table}"
    );
    for peer in ["a", "c"] {
        assert!(
            table
                .lines()
                .any(|l| l.split_whitespace().take(2).eq([peer, "connected"])),
            "no row for {peer}:\n{table}"
        );
    }
    lab.shutdown().await;
}
