//! kubectl smoke tests against memkube's HTTP server: `get` (server-side Table with the CRD's
//! printer columns), `get -o yaml`, `get -w` seeing a change, `delete`; and `create`/`apply`
//! from files with kubectl's default (server-side, strict) field validation. Needs the
//! machine's `kubectl` and fails loudly when it is missing.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::time::timeout;

fn kubectl_path() -> PathBuf {
    let candidates = ["/usr/bin/kubectl", "/usr/local/bin/kubectl"];
    let found = candidates.iter().map(PathBuf::from).find(|p| p.exists());
    found.expect("kubectl is required for this test (looked in /usr/bin and /usr/local/bin)")
}

/// A kubectl command for `server`, with discovery cache and HOME in `home`.
fn kubectl(server: &str, home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(kubectl_path());
    cmd.env("HOME", home)
        .env("KUBECONFIG", home.join("no-kubeconfig"))
        .arg("--server")
        .arg(server)
        .arg("--cache-dir")
        .arg(home.join("cache"))
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Runs kubectl; returns (success, stdout, stderr).
async fn try_run(server: &str, home: &Path, args: &[&str]) -> (bool, String, String) {
    let out = timeout(
        Duration::from_secs(30),
        kubectl(server, home, args).output(),
    )
    .await
    .expect("kubectl finished in time")
    .expect("kubectl runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    (out.status.success(), stdout, stderr)
}

async fn run(server: &str, home: &Path, args: &[&str]) -> String {
    let (ok, stdout, stderr) = try_run(server, home, args).await;
    assert!(ok, "kubectl {args:?} failed: {stderr}\n{stdout}");
    stdout
}

/// `kubectl get -w` prints the current row, then the row after a status change.
async fn watch_sees_status_change(url: &str, home: &Path, api: &kube::Api<Widget>) {
    let mut watch = kubectl(url, home, &["get", "widgets", "-w", "--no-headers"]);
    let mut child = watch
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = timeout(Duration::from_secs(30), out.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.starts_with("w1"), "{first}");
    let status = Patch::Merge(json!({"status": {"ready": true}}));
    api.patch_status("w1", &PatchParams::default(), &status)
        .await
        .unwrap();
    let changed = timeout(Duration::from_secs(30), out.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        changed.split_whitespace().collect::<Vec<_>>(),
        ["w1", "80", "true"],
        "{changed}"
    );
    child.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_yaml_watch_delete() {
    let (kube, client) = setup();
    let server = kube
        .serve_http("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = server.url();
    let home = tempfile::tempdir().unwrap();
    let api = widgets(&client);
    api.create(&PostParams::default(), &widget("w1", 80))
        .await
        .unwrap();

    let table = run(&url, home.path(), &["get", "widgets"]).await;
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "PORT", "READY"], "{table}");
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["w1", "80"]
    );

    let yaml = run(&url, home.path(), &["get", "wd", "w1", "-o", "yaml"]).await;
    let doc: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(doc["spec"]["port"], 80);
    assert_eq!(doc["kind"], "Widget");

    watch_sees_status_change(&url, home.path(), &api).await;

    let deleted = run(&url, home.path(), &["delete", "widget", "w1"]).await;
    assert!(deleted.contains("\"w1\" deleted"), "{deleted}");
    assert_eq!(code(api.get("w1").await.unwrap_err()), 404);
    let empty = run(&url, home.path(), &["get", "widgets", "-o", "name"]).await;
    assert!(empty.trim().is_empty(), "{empty}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_create_apply_with_strict_validation() {
    let (kube, client) = setup();
    let server = kube
        .serve_http("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let url = server.url();
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("w.yaml");
    let manifest = |port: u32, extra: &str| {
        format!(
            "apiVersion: example.io/v1\nkind: Widget\nmetadata:\n  name: w2\n  namespace: default\nspec:\n  port: {port}\n{extra}"
        )
    };
    let path = file.to_str().unwrap();
    std::fs::write(&file, manifest(80, "")).unwrap();
    let created = run(&url, home.path(), &["create", "-f", path]).await;
    assert!(
        created.contains("widget.example.io/w2 created"),
        "{created}"
    );
    std::fs::write(&file, manifest(81, "")).unwrap();
    let applied = run(&url, home.path(), &["apply", "-f", path]).await;
    assert!(applied.contains("configured"), "{applied}");
    assert_eq!(widgets(&client).get("w2").await.unwrap().spec.port, 81);

    std::fs::write(&file, manifest(82, "  surprise: 1\n")).unwrap();
    let (ok, _, stderr) = try_run(&url, home.path(), &["apply", "-f", path]).await;
    assert!(!ok && stderr.contains("unknown field"), "{stderr}");
    let (ok, _, stderr) = try_run(
        &url,
        home.path(),
        &["apply", "-f", path, "--validate=false"],
    )
    .await;
    assert!(ok, "{stderr}");
    let stored = widgets(&client).get("w2").await.unwrap();
    assert_eq!(
        stored.spec.port, 82,
        "unknown fields are pruned without strict validation"
    );

    std::fs::write(&file, manifest(0, "")).unwrap();
    let (ok, _, stderr) = try_run(&url, home.path(), &["apply", "-f", path]).await;
    assert!(
        !ok && stderr.contains("spec.port"),
        "schema minimum is enforced: {stderr}"
    );
    server.shutdown().await;
}
