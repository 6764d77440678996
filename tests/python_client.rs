//! Wire compatibility: a client generated from `proto/ipam.proto` alone, in Python (grpcio-tools,
//! installed by `scripts/setup test` into the project's environment `.tools/venv`; `ISTHMUS_PYTHON`
//! names another interpreter), calls every method of the real server and checks the answers and
//! error codes. Fails (never skips) when Python's gRPC tools are missing.

use crate::common;

use std::process::Command;

use common::Server;

/// The interpreter with the project's Python tools.
fn python() -> std::path::PathBuf {
    std::env::var_os("ISTHMUS_PYTHON").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/python3"),
        Into::into,
    )
}

#[test]
fn a_python_client_generated_from_the_proto_calls_every_method() {
    let probe = Command::new(python())
        .args(["-c", "import grpc, grpc_tools"])
        .status();
    assert!(
        matches!(probe, Ok(s) if s.success()),
        "{} with grpcio and grpcio-tools is required: run `sudo scripts/setup test`",
        python().display()
    );
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "10.2.0.0/16");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/ipam_client.py");
    let out = Command::new(python())
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
