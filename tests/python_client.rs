//! Wire compatibility: a client generated from `proto/ipam.proto` alone, in Python (grpcio-tools,
//! installed by `scripts/setup`), calls every method of the real server and checks the answers
//! and error codes. Fails (never skips) when Python's gRPC tools are missing.

mod common;

use std::process::Command;

use common::Server;

#[test]
fn a_python_client_generated_from_the_proto_calls_every_method() {
    let probe = Command::new("python3")
        .args(["-c", "import grpc, grpc_tools"])
        .status();
    assert!(
        matches!(probe, Ok(s) if s.success()),
        "python3 with grpcio and grpcio-tools is required: run scripts/setup"
    );
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "10.2.0.0/16");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/ipam_client.py");
    let out = Command::new("python3")
        .args([script, &server.addr, "check"])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "python client failed:\n{text}");
    assert!(text.contains("every method answered"), "{text}");
}
