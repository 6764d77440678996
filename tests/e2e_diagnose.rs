//! End to end (root): `isthmus diagnose` against a real hub lab. First every check is `ok` (the
//! WireGuard backend `warn`s: userspace here), through the library and through the binary with
//! `--lab`. Then things are broken for real in the hub gateway's namespace — a DNAT map element
//! deleted, a proto-153 route deleted, the tunnel MTU raised above the underlay's, our table
//! flushed — and diagnose must report exactly those as `fail`, with the right messages.
//!
//! The gateway repairs every one of these at its next probe tick (1 s in the lab; its check of
//! our table is an exact comparison, map elements included), so each break is made and observed
//! again until diagnose catches it (an observation takes a few tens of milliseconds), and the
//! test then waits for the repair before the next break.

use crate::e2e_common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use e2e_common::*;
use isthmus::inspect::diagnose::{
    self, CheckId, LinuxObserver, NodeObserver, Report, Status, Target,
};
use isthmus::lab::cluster::NAMESPACE;
use isthmus::lab::plan::Shape;
use isthmus::lab::runner::{Lab, LabOptions};
use isthmus::lab::state::{ClusterState, LabState, Phase};
use isthmus_dataplane::Netns;

/// The hub (cluster b): it has NatMappings (a ↔ c go through it).
const HUB: usize = 1;

/// Every check and its verdict.
fn verdicts(report: &Report) -> BTreeMap<CheckId, Status> {
    report.checks.iter().map(|c| (c.id, c.status)).collect()
}

/// The failing checks.
fn failing(report: &Report) -> Vec<CheckId> {
    report
        .checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.id)
        .collect()
}

fn fail_messages(report: &Report, id: CheckId) -> Vec<String> {
    report
        .check(id)
        .map(|c| c.with(Status::Fail).map(|f| f.message.clone()).collect())
        .unwrap_or_default()
}

fn healthy(report: &Report) -> bool {
    report.checks.len() == 7
        && report.checks.iter().all(|c| match c.id {
            CheckId::WireguardBackend => c.status == Status::Warn,
            _ => c.status == Status::Ok,
        })
}

struct Diagnosis {
    client: kube::Client,
    target: Target,
    observer: Arc<dyn NodeObserver>,
    ns: String,
}

impl Diagnosis {
    async fn run(&self) -> Report {
        diagnose::diagnose(self.client.clone(), &self.target, self.observer.clone())
            .await
            .expect("diagnose runs")
    }

    /// `ip …` / `nft …` in the hub gateway's namespace; errors ignored (a repeated break may
    /// find the thing already gone).
    fn exec(&self, args: &[&str]) {
        let mut argv = vec!["ip", "netns", "exec", self.ns.as_str()];
        argv.extend(args);
        let _ = isthmus_dataplane::lab::run(&argv);
    }

    /// Breaks with `exec` and diagnoses at once, until `caught` holds for a report.
    async fn catch(
        &self,
        what: &str,
        breaks: &[&[&str]],
        caught: impl Fn(&Report) -> bool,
    ) -> Report {
        for _ in 0..40 {
            for args in breaks {
                self.exec(args);
            }
            let report = self.run().await;
            if caught(&report) {
                return report;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        panic!(
            "diagnose never reported {what}: {}",
            self.run().await.render_text()
        );
    }

    /// Waits until every check is back to healthy (the gateway repaired what was broken).
    async fn wait_healthy(&self, after: &str) {
        for _ in 0..150 {
            if healthy(&self.run().await) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!(
            "not healthy again after {after}: {}",
            self.run().await.render_text()
        );
    }
}

/// A lab state file for this in-process lab, so the binary's `--lab` finds it.
fn write_state(lab: &Lab, dir: &Path) {
    let state = LabState {
        pid: std::process::id(),
        phase: Phase::Ready,
        error: None,
        shape: Shape::Hub,
        topology_file: lab.options.topology_file.clone(),
        clusters: lab.clusters.iter().map(ClusterState::of).collect(),
        peerings: lab.peerings.clone(),
        reflections: lab.reflections.clone(),
        timings: Default::default(),
        matrix: Default::default(),
    };
    state.save(dir).unwrap();
}

/// `isthmus diagnose --lab b --lab-dir DIR -o json`: exit success and the report.
async fn binary(dir: &Path) -> (bool, serde_json::Value) {
    let dir = dir.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_isthmus"))
            .args(["diagnose", "--lab", "b", "--lab-dir"])
            .arg(&dir)
            .args(["-o", "json"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), json)
}

fn json_status(json: &serde_json::Value, id: &str) -> String {
    json["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .map(|c| c["status"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn diagnose_sees_a_healthy_hub_then_exactly_what_was_broken() {
    let dir = tempfile::tempdir().unwrap();
    let lab = lab_with(LabOptions {
        clusters: 3,
        shape: Shape::Hub,
        topology_file: Some(dir.path().join("topology.json")),
        ..e2e_common::options()
    })
    .await;
    let ns = gateway_ns(&lab, HUB);
    let netns = Netns::Named(ns.clone());
    let observer = tokio::task::spawn_blocking(move || LinuxObserver::new(netns))
        .await
        .unwrap()
        .unwrap();
    let d = Diagnosis {
        client: lab.clusters[HUB].client(),
        target: Target {
            namespace: NAMESPACE.into(),
            interface: lab.clusters[HUB].site.wg_interface.clone(),
            interface_given: true,
            node_name: Some("node0".into()),
            listen_port: Some(isthmus::lab::cluster::WIREGUARD_PORT),
            api: "lab cluster b".into(),
            lab: None,
            overlay: Default::default(),
        },
        observer: Arc::new(observer),
        ns,
    };
    write_state(&lab, dir.path());

    healthy_through_library_and_binary(&d, dir.path()).await;
    deleted_route(&d, &lab).await;
    raised_mtu(&d).await;
    flushed_table(&d).await;
    deleted_map_element(&d, &lab, dir.path()).await;

    lab.shutdown().await;
}

/// Everything ok but the userspace backend, in the library and in the binary.
async fn healthy_through_library_and_binary(d: &Diagnosis, dir: &Path) {
    let report = d.run().await;
    assert!(healthy(&report), "{}", report.render_text());
    assert_eq!(report.context.role, "gateway");
    let backend = report.check(CheckId::WireguardBackend).unwrap();
    let first = &backend.findings[0].message;
    assert!(
        first.starts_with("userspace WireGuard (gotatun)"),
        "{first}"
    );
    let (success, json) = binary(dir).await;
    assert!(success, "{json:#}");
    assert_eq!(json_status(&json, "wireguard-backend"), "warn", "{json:#}");
    for id in [
        "mtu",
        "nftables",
        "routes",
        "overlap",
        "overlay",
        "gateway-udp",
    ] {
        assert_eq!(json_status(&json, id), "ok", "{id}: {json:#}");
    }
}

/// A proto-153 route deleted: routes fail, naming the range and its peer.
async fn deleted_route(d: &Diagnosis, lab: &Lab) {
    let tep = lab.tunnel_endpoint(HUB, 0).await.unwrap();
    let route = tep.spec.remote_nat_external_cidr.to_string();
    let report = d
        .catch(
            "the deleted route",
            &[&["ip", "route", "del", &route, "proto", "153"]],
            |r| failing(r) == [CheckId::Routes],
        )
        .await;
    assert_eq!(
        fail_messages(&report, CheckId::Routes),
        [format!(
            "no route for {route} (peer a's ExternalCIDR as we address it) dev {} proto 153: \
             traffic to it does not reach the peer",
            d.target.interface
        )]
    );
    d.wait_healthy("the route deletion").await;
}

/// The tunnel MTU above the underlay's: the MTU check fails for both peers.
async fn raised_mtu(d: &Diagnosis) {
    let interface = d.target.interface.clone();
    let report = d
        .catch(
            "the raised MTU",
            &[&["ip", "link", "set", &interface, "mtu", "1500"]],
            |r| failing(r) == [CheckId::Mtu],
        )
        .await;
    let mtu = fail_messages(&report, CheckId::Mtu);
    assert_eq!(mtu.len(), 2, "{mtu:?}");
    for (msg, peer) in mtu.iter().zip(["a", "c"]) {
        assert_eq!(
            *msg,
            format!(
                "{interface} MTU 1500 is above what the underlay to peer {peer} carries: u0 MTU 1500 − 60 \
                 (WireGuard over IPv4) = 1440; tunnel packets of 1441..1500 bytes are fragmented or dropped"
            )
        );
    }
    d.wait_healthy("the MTU change").await;
}

/// Our table flushed: nftables fails chain by chain, and MSS clamping is gone with it.
async fn flushed_table(d: &Diagnosis) {
    let report = d
        .catch(
            "the flushed table",
            &[&["nft", "flush", "table", "inet", "isthmus"]],
            |r| failing(r) == [CheckId::Mtu, CheckId::Nftables],
        )
        .await;
    assert_eq!(
        fail_messages(&report, CheckId::Nftables),
        [
            "chain forward is empty: all its 4 rules are missing (flushed from outside?)",
            "chain postrouting is empty: all its 16 rules are missing (flushed from outside?)",
            "chain prerouting is empty: all its 12 rules are missing (flushed from outside?)",
        ]
    );
    assert!(fail_messages(&report, CheckId::Mtu)[0].starts_with("MSS clamping rule missing"));
    d.wait_healthy("the flush").await;
}

/// A DNAT map element deleted: diagnose names it, the binary exits non-zero on it, and the
/// gateway's repair pass (an exact comparison of our table) puts it back.
async fn deleted_map_element(d: &Diagnosis, lab: &Lab, dir: &Path) {
    let (map, (key, value)) = hub_mapping(lab).await;
    let element = format!("{{ {key} }}");
    let delete: &[&str] = &[
        "nft", "delete", "element", "inet", "isthmus", &map, &element,
    ];
    let expected = format!(
        "DNAT map {map} lacks {key} → {value} (NatMapping of peer {})",
        &map[5..]
    );
    let report = d
        .catch("the deleted map element", &[delete], |r| {
            failing(r) == [CheckId::Nftables]
        })
        .await;
    assert_eq!(
        fail_messages(&report, CheckId::Nftables),
        std::slice::from_ref(&expected)
    );
    assert_eq!(verdicts(&report)[&CheckId::Routes], Status::Ok);
    d.wait_healthy("the element deletion (the gateway restores it)")
        .await;
    let mut failed = None;
    for _ in 0..40 {
        d.exec(delete);
        let (success, json) = binary(dir).await;
        if !success {
            failed = Some(json);
            break;
        }
    }
    let json = failed.expect("the binary never caught the deleted element");
    assert_eq!(json_status(&json, "nftables"), "fail", "{json:#}");
    assert_eq!(json["summary"]["fail"], 1, "{json:#}");
    d.wait_healthy("the element deletion, again").await;
}

/// One NatMapping entry of the hub: (map name, (new IP, target)).
async fn hub_mapping(lab: &Lab) -> (String, (String, String)) {
    use isthmus_api::NatMapping;
    use kube::Api;
    let api: Api<NatMapping> = Api::namespaced(lab.clusters[HUB].client(), NAMESPACE);
    let list = api.list(&Default::default()).await.unwrap();
    let nm = list
        .items
        .iter()
        .find(|n| !n.spec.cluster_mappings.is_empty())
        .expect("the hub has NatMapping entries");
    let (key, value) = nm.spec.cluster_mappings.iter().next().unwrap();
    (
        format!("dnat_{}", nm.spec.cluster_id),
        (key.to_string(), value.to_string()),
    )
}
