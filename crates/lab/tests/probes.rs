//! Kernel tests of the probes: ping round-trip times, and a long-lived echo session that holds,
//! then reports the break when its server goes away. Root required.

use std::time::Duration;

use isthmus_lab::probe::{EchoServer, EchoSession, first_answer, ping};
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
fn an_echo_stream_is_answered_once_a_nat_rule_added_meanwhile_applies() {
    require_root();
    let lab = Topology::build(&TopologySpec::with_clusters(1))
        .unwrap()
        .guard();
    let a = &lab.clusters[0];
    let (p0, p1) = (a.pod("pod0-0").unwrap(), a.pod("pod1-0").unwrap());
    let every = Duration::from_micros(200);
    assert!(
        first_answer(p1, p0.ip, every, Duration::from_secs(2))
            .unwrap()
            .is_some()
    );
    // Nothing lives at .99 until node0 DNATs it to pod0-0, 300 ms into the stream (node0 has a
    // NAT chain already, so conntrack runs there as on a gateway): the stream is answered after
    // the rule exists, and not before.
    let node0 = a.gateway().namespace.clone();
    let nft = move |args: &[&str]| {
        let mut argv = vec!["ip", "netns", "exec", node0.as_str(), "nft"];
        argv.extend(args);
        isthmus_dataplane::lab::run(&argv).unwrap();
    };
    nft(&["add", "table", "ip", "probe-test"]);
    nft(&["add chain ip probe-test pre { type nat hook prerouting priority dstnat; }"]);
    let target = p0.ip;
    let adder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let dnat = format!("add rule ip probe-test pre ip daddr 10.0.0.99 dnat to {target}");
        nft(&[dnat.as_str()]);
    });
    let started = std::time::Instant::now();
    let answered = first_answer(
        p1,
        "10.0.0.99".parse().unwrap(),
        every,
        Duration::from_secs(3),
    )
    .unwrap()
    .expect("answered once the DNAT exists");
    adder.join().unwrap();
    assert!(answered.duration_since(started) >= Duration::from_millis(300));
    let absent = first_answer(
        p1,
        "10.0.0.98".parse().unwrap(),
        every,
        Duration::from_millis(300),
    );
    assert_eq!(absent.unwrap(), None);
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
