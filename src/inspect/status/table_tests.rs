//! Unit tests of the rendering: the table of a small cluster fits 80 columns and shows every
//! peer, and the JSON has exactly the documented fields.

use super::*;
use crate::inspect::status::build::build;
use crate::inspect::status::fixtures::*;

#[test]
fn the_table_of_a_small_cluster_fits_80_columns() {
    let mut f = hub();
    f.unreadable.clear();
    f.network_configs.truncate(2);
    f.foreign_clusters.clear();
    let text = render(&build(&f, &source()));
    for line in text.lines() {
        assert!(
            line.chars().count() <= 80,
            "{} columns: {line}\n{text}",
            line.chars().count()
        );
    }
    assert!(
        text.contains("\n  Gateway       b-node0 172.16.0.10, WireGuard userspace on isthmus0\n"),
        "{text}"
    );
    let peers = text.lines().skip_while(|l| *l != "PEERS").nth(1).unwrap();
    assert_eq!(
        peers.split_whitespace().collect::<Vec<_>>(),
        ["PEER", "STATE", "HANDSHAKE", "RTT", "RX", "TX", "NATMAP"]
    );
    let a = text
        .lines()
        .find(|l| l.starts_with("a ") && l.contains("connected"))
        .unwrap();
    assert_eq!(
        a.split_whitespace().collect::<Vec<_>>(),
        [
            "a",
            "connected",
            "12s",
            "0.89ms",
            "156",
            "B",
            "3.0",
            "MiB",
            "3"
        ]
    );
}

#[test]
fn the_json_has_the_documented_shape() {
    let json = serde_json::to_value(build(&hub(), &source())).unwrap();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(&json),
        [
            "clusterID",
            "formatVersion",
            "generatedAt",
            "local",
            "namespace",
            "peers",
            "server",
            "summary",
            "usage",
            "warnings"
        ]
    );
    let a = &json["peers"][0];
    assert_eq!(
        keys(a),
        [
            "backend",
            "clusterID",
            "conditions",
            "endpoint",
            "foreignCluster",
            "gatewayIP",
            "gatewayNode",
            "handshakeAgeSeconds",
            "interface",
            "lastHandshake",
            "message",
            "nat",
            "natMappings",
            "networkConfig",
            "phase",
            "reason",
            "rttMs",
            "rxBytes",
            "state",
            "tunnelEndpoint",
            "txBytes",
            "warnings"
        ]
    );
    assert_eq!(json["formatVersion"], 1);
    assert_eq!(json["generatedAt"], "2023-11-14T22:13:20Z");
    assert_eq!(a["state"], "connected");
    assert_eq!(a["handshakeAgeSeconds"], 12);
    assert_eq!(a["rttMs"], 0.892);
    assert_eq!(a["rxBytes"], 156);
    assert_eq!(a["gatewayIP"], "172.16.0.10");
    assert_eq!(
        a["nat"]["peerPods"],
        serde_json::json!({"cidr": "10.0.0.0/16", "addressedAs": "10.3.0.0/16", "remapped": true})
    );
    assert_eq!(json["summary"]["error"], 2);
    assert_eq!(json["usage"]["external"]["reservedByIpam"], 3);
    assert_eq!(
        json["usage"]["pools"][0]["networks"][0]["holder"],
        "localPods"
    );
    let d = &json["peers"][2];
    assert_eq!(
        d["rxBytes"],
        serde_json::Value::Null,
        "no tunnel: no counters"
    );
    assert_eq!(d["conditions"][2]["source"], "ForeignCluster");
    assert_eq!(d["conditions"][2]["type"], "LocalProcessed");
    let back: StatusReport = serde_json::from_value(json).unwrap();
    assert_eq!(
        back,
        build(&hub(), &source()),
        "the JSON reads back into the same report"
    );
}
