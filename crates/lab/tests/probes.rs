//! Kernel tests of the probes: ping round-trip times, and a long-lived echo session that holds,
//! then reports the break when its server goes away. Root required.

use std::time::Duration;

use isthmus_lab::probe::{EchoServer, EchoSession, ping};
use isthmus_lab::{Topology, TopologySpec, require_root};

#[test]
fn ping_reports_every_reply_and_nothing_for_an_absent_address() {
    require_root();
    let lab = Topology::build(&TopologySpec::with_clusters(1))
        .unwrap()
        .guard();
    let a = &lab.clusters[0];
    let (p0, p1) = (a.pod("pod0-0").unwrap(), a.pod("pod1-0").unwrap());
    let report = ping(p1, p0.ip, 5, Duration::from_secs(1)).unwrap();
    assert_eq!(report.sent, 5);
    assert_eq!(report.rtts.len(), 5, "{report:?}");
    assert!(report.median().unwrap() < Duration::from_millis(100));
    // No such pod: the requests are lost, not an error.
    let absent = std::net::Ipv4Addr::new(10, 0, 1, 99);
    let lost = ping(p0, absent, 2, Duration::from_millis(300)).unwrap();
    assert!(!lost.reached());
    // No route at all (a pod address outside the Pod CIDR from a worker node).
    let worker = a.workers().next().unwrap();
    let lost = ping(
        worker,
        "10.9.0.1".parse().unwrap(),
        1,
        Duration::from_millis(200),
    )
    .unwrap();
    assert!(!lost.reached());
}

#[test]
fn echo_session_holds_and_reports_a_break() {
    require_root();
    let lab = Topology::build(&TopologySpec::with_clusters(1))
        .unwrap()
        .guard();
    let a = &lab.clusters[0];
    let (p0, p1) = (a.pod("pod0-0").unwrap(), a.pod("pod1-0").unwrap());
    let server = EchoServer::start(p0, 0).unwrap();
    let interval = Duration::from_millis(20);
    let session =
        EchoSession::open(p1, p0.ip, server.port(), interval, Duration::from_secs(1)).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let status = session.status();
    assert!(status.broken.is_none(), "{status:?}");
    assert!(status.exchanges >= 5, "{status:?}");
    assert_eq!(status.local.ip(), std::net::IpAddr::V4(p1.ip));

    drop(server);
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while !session.is_broken() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = session.stop();
    assert!(status.broken.is_some(), "the break is reported: {status:?}");
}
