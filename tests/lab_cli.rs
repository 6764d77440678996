//! `isthmus lab` as a newcomer meets it, through the real binary: bad input is refused in one
//! sentence before anything starts (no daemon, no state file, no root needed), and a lab whose
//! daemon was killed is reported as not running by `lab status` and cleaned up by `lab down`
//! with messages that say what happened, with no log lines or colour codes around them.

use std::path::Path;
use std::process::{Command, Output};

fn isthmus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_isthmus"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("isthmus runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// One line, `error: ` first, no escape sequence.
fn assert_one_clean_error(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert!(!out.status.success(), "{err}");
    assert_eq!(err.lines().count(), 1, "one line, not:\n{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains('\u{1b}'), "colour codes: {err:?}");
    for needle in needles {
        assert!(err.contains(needle), "{needle:?} missing from: {err}");
    }
}

#[test]
fn bad_lab_input_fails_at_once_in_one_sentence_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("lab");
    let state = state_dir.to_str().unwrap();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--pod-cidr", "10.0.0.0/8"],
            &[
                "cannot choose an ExternalCIDR",
                "/8",
                "use a smaller --pod-cidr",
            ],
        ),
        (
            &["--pod-cidr", "172.16.0.0/16"],
            &["overlaps the lab's node network 172.16.0.0/24"],
        ),
        (
            &["--pod-cidr", "192.168.100.0/24"],
            &["overlaps the lab's underlay between gateways 192.168.100.0/24"],
        ),
        (
            &["--pod-cidr", "10.0.0.0/11", "--clusters", "8"],
            &["cannot address cluster", "fewer --clusters"],
        ),
        (
            &["--clusters", "1"],
            &["--clusters must be between 2 and 8"],
        ),
        (&["--pods-per-node", "0"], &["--pods-per-node"]),
        (&["--workers", "300"], &["has fewer than 301 /24s"]),
        (
            &["--gateway-replicas", "2"],
            &["--gateway-replicas 2 needs --exposure loadbalancer"],
        ),
        (
            &["--gateway-replicas", "3", "--exposure", "loadbalancer"],
            &["--gateway-replicas must be 1 or 2"],
        ),
        (
            &[
                "--gateway-replicas",
                "2",
                "--exposure",
                "loadbalancer",
                "--workers",
                "0",
            ],
            &["needs at least 1 worker"],
        ),
    ];
    for (args, needles) in cases {
        let mut all = vec!["lab", "up", "--state-dir", state];
        all.extend_from_slice(args);
        let out = isthmus(&all);
        assert_one_clean_error(&out, needles);
        assert!(
            String::from_utf8_lossy(&out.stdout).is_empty(),
            "{args:?} printed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(!state_dir.exists(), "{args:?} created the state directory");
    }
}

/// A process that is killed and never reaped: what a lab daemon killed with `kill -9` looks like
/// in a container whose init does not reap.
fn zombie() -> u32 {
    let mut child = Command::new("sleep").arg("600").spawn().unwrap();
    let pid = child.id();
    child.kill().unwrap();
    // Not waited for: it stays a zombie until this test process exits.
    std::mem::forget(child);
    for _ in 0..100 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.contains(") Z ") {
            return pid;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("pid {pid} did not become a zombie");
}

fn write_state(dir: &Path, pid: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let state = serde_json::json!({
        "pid": pid, "phase": "ready", "shape": "hub", "clusters": [], "peerings": [],
        "reflections": [], "timings": {
            "topology": {"secs": 0, "nanos": 0}, "components": {"secs": 0, "nanos": 0},
            "first_packet": null, "peered": {"secs": 0, "nanos": 0},
            "reflected": {"secs": 0, "nanos": 0}, "full_connectivity": null
        }
    });
    std::fs::write(dir.join("lab.json"), state.to_string()).unwrap();
}

#[test]
fn a_killed_lab_is_reported_as_not_running_and_down_says_who_cleaned_up() {
    isthmus_lab::require_root();
    let dir = tempfile::tempdir().unwrap();
    let pid = zombie();
    write_state(dir.path(), pid);
    let state = dir.path().to_str().unwrap();

    let out = isthmus(&["lab", "status", "--state-dir", state]);
    assert_one_clean_error(
        &out,
        &[
            "the lab is not running",
            &format!("pid {pid}"),
            "crashed or was killed",
            "lab down` removes what it left",
        ],
    );

    let out = isthmus(&["lab", "down", "--state-dir", state]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.starts_with(&format!("the lab daemon (pid {pid}) was not running")),
        "{said}"
    );
    assert!(!said.contains("stopped"), "{said}");
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    assert!(!dir.path().join("lab.json").exists());

    let out = isthmus(&["lab", "status", "--state-dir", state]);
    assert_one_clean_error(&out, &["no lab is running"]);
}
