//! The Helm chart (deploy/helm/isthmus) passes `scripts/check-chart`: real `helm lint` and
//! `helm template`, every rendered object validated against the Kubernetes JSON schemas
//! (kubernetes-validate), the chart's CRDs identical to `crds/`, and every daemon's rendered
//! command line accepted by this very binary.
//!
//! Never skipped: missing tools fail the test, with the command that installs them.

use std::path::Path;
use std::process::Command;

#[test]
fn chart_lints_renders_validates_and_matches_the_binary() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(root.join("scripts/check-chart"))
        .env("ISTHMUS_BIN", env!("CARGO_BIN_EXE_isthmus"))
        .current_dir(root)
        .output()
        .expect("cannot run scripts/check-chart");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    match out.status.code() {
        Some(0) => assert!(stdout.contains("all checks passed"), "unexpected output"),
        Some(2) => panic!(
            "the chart check's tools are missing (helm, kubernetes-validate): run `sudo scripts/setup`\n{stderr}"
        ),
        _ => panic!("scripts/check-chart failed ({}):\n{stderr}", out.status),
    }
}
