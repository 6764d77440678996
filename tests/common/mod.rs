//! Shared helpers of the integration tests: a standalone network-manager process (the real
//! binary) on a free port, and a connected gRPC client.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use isthmus::grpc::pb::ipam_client::IpamClient;
use tonic::transport::Channel;

/// Peers of the test server: `b` collides with our networks (remapped) and sees our pods as
/// 10.7.0.0/16; `c` is accepted as-is.
pub const PEERS: &str = "\
- clusterID: cluster-b
  podCIDR: 10.0.0.0/16
  externalCIDR: 10.2.0.0/16
  podCIDRNAT: 10.7.0.0/16
- clusterID: cluster-c
  podCIDR: 10.80.0.0/16
  externalCIDR: 10.81.0.0/16
  externalCIDRNAT: 172.16.0.0/16
";

/// A free TCP port on loopback (racy in theory; fine for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `isthmus network-manager --standalone`, killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub state_dir: PathBuf,
}

impl Server {
    /// Starts the binary with `dir` as state and peers file; waits until it accepts connections.
    pub fn start(dir: &Path, external_cidr: &str) -> Server {
        Self::start_with(dir, external_cidr, PEERS)
    }

    /// Same, with the given peers file contents.
    pub fn start_with(dir: &Path, external_cidr: &str, peers_yaml: &str) -> Server {
        Self::start_with_args(dir, external_cidr, peers_yaml, &[])
    }

    /// Same, with more command-line arguments.
    pub fn start_with_args(
        dir: &Path,
        external_cidr: &str,
        peers_yaml: &str,
        extra_args: &[&str],
    ) -> Server {
        let state_dir = dir.join("state");
        let mut args = vec!["--state-dir".to_owned(), state_dir.display().to_string()];
        args.extend(extra_args.iter().map(|a| a.to_string()));
        Self::spawn(dir, state_dir, external_cidr, peers_yaml, &args, &[])
            .unwrap_or_else(|status| panic!("server exited before listening: {status}"))
    }

    /// Same, with more environment variables.
    pub fn start_with_env(
        dir: &Path,
        external_cidr: &str,
        peers_yaml: &str,
        extra_args: &[&str],
        env: &[(&str, String)],
    ) -> Server {
        let state_dir = dir.join("state");
        let mut args = vec!["--state-dir".to_owned(), state_dir.display().to_string()];
        args.extend(extra_args.iter().map(|a| a.to_string()));
        Self::spawn(dir, state_dir, external_cidr, peers_yaml, &args, env)
            .unwrap_or_else(|status| panic!("server exited before listening: {status}"))
    }

    /// The same server with its state in IpamStorage objects of `namespace`, through the API
    /// that `kubeconfig` names (`--ipam-store kubernetes`); its exit status if it exits before it
    /// listens (a test hook may make it abort on purpose).
    pub fn try_start_kube(
        dir: &Path,
        kubeconfig: &Path,
        namespace: &str,
        external_cidr: &str,
        peers_yaml: &str,
        extra_args: &[&str],
    ) -> Result<Server, std::process::ExitStatus> {
        let mut args: Vec<String> = ["--ipam-store", "kubernetes", "--namespace", namespace]
            .map(String::from)
            .to_vec();
        args.extend(extra_args.iter().map(|a| a.to_string()));
        let env = [("KUBECONFIG", kubeconfig.display().to_string())];
        Self::spawn(dir, dir.to_owned(), external_cidr, peers_yaml, &args, &env)
    }

    /// Starts the binary; waits until it accepts connections (its exit status if it exits
    /// first; a panic if it does neither within 20 s).
    fn spawn(
        dir: &Path,
        state_dir: PathBuf,
        external_cidr: &str,
        peers_yaml: &str,
        args: &[String],
        env: &[(&str, String)],
    ) -> Result<Server, std::process::ExitStatus> {
        let peers = dir.join("peers.yaml");
        std::fs::write(&peers, peers_yaml).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let mut child = Command::new(env!("CARGO_BIN_EXE_isthmus"))
            .args([
                "network-manager",
                "--standalone",
                "--pod-cidr",
                "10.0.0.0/16",
            ])
            .args([
                "--service-cidr",
                "10.1.0.0/16",
                "--external-cidr",
                external_cidr,
            ])
            .arg("--peers")
            .arg(&peers)
            .args(["--listen", &addr])
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot start the isthmus binary");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&addr).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(status);
            }
            assert!(
                Instant::now() < deadline,
                "server on {addr} did not come up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Server {
            child,
            addr,
            state_dir,
        })
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub async fn client(&self) -> IpamClient<Channel> {
        IpamClient::connect(format!("http://{}", self.addr))
            .await
            .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
