//! Kernel tests of the topology: build time, routing inside a cluster, isolation between clusters,
//! the WAN, teardown and the state file. Root required; each test builds (and destroys) its own lab.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use isthmus_lab::probe::{WhoamiServer, ping_all, ping_rtt, whoami};
use isthmus_lab::{
    Topology, TopologyGuard, TopologyRecord, TopologySpec, destroy, destroy_stale, list_netns,
    naming, require_root, uapi_socket,
};

const WAIT: Duration = Duration::from_secs(1);

fn lab(clusters: usize) -> TopologyGuard {
    require_root();
    Topology::build(&TopologySpec::with_clusters(clusters))
        .expect("lab builds")
        .guard()
}

fn tagged(tag: &str) -> Vec<String> {
    let all = list_netns().expect("ip netns list");
    all.into_iter()
        .filter(|n| naming::belongs_to(n, tag))
        .collect()
}

#[test]
fn two_clusters_build_quickly_and_pods_reach_each_other_across_nodes() {
    let lab = lab(2);
    eprintln!("2 clusters built in {:?}", lab.build_time);
    assert!(
        lab.build_time < Duration::from_secs(3),
        "{:?}",
        lab.build_time
    );
    assert_eq!(tagged(&lab.tag).len(), lab.namespaces().len());
    for cluster in &lab.clusters {
        let on_gateway = cluster.pods_on("node0").next().unwrap();
        let on_worker = cluster.pods_on("node1").next().unwrap();
        let there = ping_rtt(on_worker, on_gateway.ip, 3, WAIT).unwrap();
        let back = ping_rtt(on_gateway, on_worker.ip, 3, WAIT).unwrap();
        eprintln!("cluster {}: rtt {there:?} / {back:?}", cluster.id);
        assert!(there.is_some() && back.is_some(), "cluster {}", cluster.id);
        // Nodes reach each other and the pods of other nodes.
        let worker = cluster.workers().next().unwrap();
        assert!(
            ping_rtt(worker, cluster.gateway().ip, 1, WAIT)
                .unwrap()
                .is_some()
        );
        assert!(ping_rtt(worker, on_gateway.ip, 1, WAIT).unwrap().is_some());
    }
}

#[test]
fn three_clusters_build_time() {
    let lab = lab(3);
    eprintln!("3 clusters built in {:?}", lab.build_time);
    assert!(
        lab.build_time < Duration::from_secs(5),
        "{:?}",
        lab.build_time
    );
    assert_eq!(lab.namespaces().len(), 16);
}

#[test]
fn clusters_share_pod_addresses_but_do_not_reach_each_other() {
    let lab = lab(2);
    let (a, b) = (&lab.clusters[0], &lab.clusters[1]);
    let ips = |c: &isthmus_lab::ClusterRecord| c.pods.iter().map(|p| p.ip).collect::<Vec<_>>();
    assert_eq!(ips(a), ips(b), "same Pod CIDR, same pod addresses");
    assert_eq!(a.pod_cidr, b.pod_cidr);

    let target = b.pod("pod1-0").unwrap();
    let server = WhoamiServer::start(target, 0).unwrap();
    // Inside b, the server answers and sees the client pod's own address.
    let local = b.pod("pod0-0").unwrap();
    let seen = whoami(local, target.ip, server.port(), WAIT).unwrap();
    assert_eq!(seen, Some(IpAddr::V4(local.ip)));
    // From a, the same address is a's own pod (no listener there): b's server is not reached.
    let foreign = a.pod("pod0-0").unwrap();
    assert_eq!(
        whoami(foreign, target.ip, server.port(), WAIT).unwrap(),
        None
    );
    // Nor is b's gateway on the WAN: no overlay yet (and b's node addresses are a's own).
    let short = Duration::from_millis(300);
    assert_eq!(ping_rtt(foreign, b.underlay, 2, short).unwrap(), None);
}

#[test]
fn gateway_nodes_reach_each_other_over_the_wan_and_workers_do_not() {
    let lab = lab(2);
    let (a, b) = (&lab.clusters[0], &lab.clusters[1]);
    assert_eq!(a.underlay, Ipv4Addr::new(192, 168, 100, 10));
    assert_eq!(b.underlay, Ipv4Addr::new(192, 168, 100, 11));
    assert!(
        ping_rtt(a.gateway(), b.underlay, 3, WAIT)
            .unwrap()
            .is_some()
    );
    assert!(
        ping_rtt(b.gateway(), a.underlay, 3, WAIT)
            .unwrap()
            .is_some()
    );
    let worker = a.workers().next().unwrap();
    assert_eq!(ping_rtt(worker, b.underlay, 1, WAIT).unwrap(), None);
}

#[test]
fn destroy_leaves_nothing_tagged_and_a_second_destroy_succeeds() {
    require_root();
    let lab = Topology::build(&TopologySpec::with_clusters(2))
        .unwrap()
        .guard();
    let record = lab.record.clone();
    // A userspace WireGuard socket left by a crashed engine.
    std::fs::create_dir_all(isthmus_lab::UAPI_DIR).unwrap();
    let socket = uapi_socket(&record.clusters[1].wg_interface);
    std::fs::write(&socket, b"").unwrap();
    destroy(&record).unwrap();
    assert_eq!(tagged(&record.tag), Vec::<String>::new());
    assert!(!socket.exists());
    destroy(&record).expect("a second destroy succeeds");
    drop(lab); // and a third, from the guard
    assert_eq!(tagged(&record.tag), Vec::<String>::new());
}

#[test]
fn record_round_trips_through_the_state_file_and_destroys_the_lab() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lab.json");
    let spec = TopologySpec {
        state_file: Some(path.clone()),
        ..TopologySpec::with_clusters(2)
    };
    let lab = Topology::build(&spec).unwrap().guard();
    let loaded = TopologyRecord::load(&path).unwrap();
    assert_eq!(loaded, lab.record);
    assert_eq!(loaded.state_file.as_deref(), Some(path.as_path()));
    assert_eq!(TopologyRecord::load_dir(dir.path()), vec![loaded.clone()]);
    destroy(&loaded).unwrap();
    assert_eq!(tagged(&loaded.tag), Vec::<String>::new());
    assert!(!path.exists(), "the state file goes with the lab");
    destroy(&loaded).unwrap();
}

/// A pid no process has now (a child that already exited).
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    assert!(!Path::new(&format!("/proc/{pid}")).exists());
    pid
}

#[test]
fn destroy_stale_removes_labs_of_dead_owners_only() {
    let live = lab(1);
    let dir = tempfile::tempdir().unwrap();
    let tag = format!("il{}x0", dead_pid());
    let mut record = TopologySpec::with_clusters(1).plan(&tag).unwrap();
    record
        .save(&dir.path().join(format!("{tag}.json")))
        .unwrap();
    for ns in [
        naming::wan_namespace(&tag),
        naming::lan_namespace(&tag, "a"),
    ] {
        isthmus_dataplane::lab::run(&["ip", "netns", "add", &ns]).unwrap();
    }
    std::fs::create_dir_all(isthmus_lab::UAPI_DIR).unwrap();
    std::fs::write(uapi_socket(&record.clusters[0].wg_interface), b"").unwrap();

    // Another test process building a lab at this moment may remove the dead lab's namespaces
    // first (every build removes stale labs); its state file is only known here.
    let destroyed = destroy_stale(Some(dir.path())).unwrap();
    assert!(destroyed.contains(&tag), "{destroyed:?}");
    assert!(!destroyed.contains(&live.tag));
    assert_eq!(tagged(&tag), Vec::<String>::new());
    assert!(!uapi_socket(&record.clusters[0].wg_interface).exists());
    assert!(TopologyRecord::load_dir(dir.path()).is_empty());
    assert_eq!(
        tagged(&live.tag).len(),
        live.namespaces().len(),
        "live lab untouched"
    );
}

#[test]
fn every_pod_reaches_every_pod_of_its_cluster_with_more_nodes_and_pods() {
    require_root();
    let spec = TopologySpec {
        workers: 2,
        pods_per_node: 2,
        ..TopologySpec::with_clusters(1)
    };
    let lab = Topology::build(&spec).unwrap().guard();
    let a = &lab.clusters[0];
    assert_eq!((a.nodes.len(), a.pods.len()), (3, 6));
    let pairs: Vec<_> = a
        .pods
        .iter()
        .flat_map(|from| {
            a.pods
                .iter()
                .filter(move |to| to.name != from.name)
                .map(move |to| (from, to))
        })
        .collect();
    let probes: Vec<_> = pairs.iter().map(|(from, to)| (*from, to.ip)).collect();
    let results = ping_all(&probes, 1, WAIT, 8);
    assert_eq!(results.len(), 30);
    for ((from, to), rtt) in pairs.iter().zip(results) {
        assert!(rtt.unwrap().is_some(), "{} -> {}", from.name, to.name);
    }
}

#[test]
fn a_failed_build_leaves_nothing_behind() {
    require_root();
    // The state file cannot be written (its parent is a regular file): the build fails after the
    // kernel part and must roll all of it back.
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"").unwrap();
    let spec = TopologySpec {
        state_file: Some(blocker.join("lab.json")),
        ..TopologySpec::with_clusters(2)
    };
    let error = Topology::build(&spec).unwrap_err();
    assert!(
        matches!(error, isthmus_lab::Error::StateFile { .. }),
        "{error}"
    );
    let ours = format!("il{}x", std::process::id());
    let left: Vec<String> = list_netns()
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with(&ours))
        .collect();
    assert_eq!(left, Vec::<String>::new());
}
