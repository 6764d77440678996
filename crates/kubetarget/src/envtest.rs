//! A real control plane from envtest's binaries (`KUBEBUILDER_ASSETS`: a directory holding
//! `etcd` and `kube-apiserver`, as `setup-envtest` installs them): one etcd and one
//! kube-apiserver per API server, each with its own data directory and ports, RBAC on, a static
//! admin token, ServiceAccount token signing (so TokenRequest works) and a serving certificate
//! from a CA made for it. No kube-controller-manager runs, as in envtest: nothing deletes a
//! namespace's contents or collects garbage. The processes are stopped when the
//! [`ControlPlane`] is dropped; their pids are public so that a supervisor that crashed can be
//! cleaned up after (`isthmus lab down`).
//!
//! Not exercised on the machines the project is developed on (no kube-apiserver can be installed
//! there); the command lines are unit-tested, the rest is written against the documented flags.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;
use crate::certs::{ServingPki, serving_pki, signing_key_pem};

/// How long a control plane may take to answer `/readyz`.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Where one control plane keeps its files, and its ports.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
    pub etcd_client: SocketAddr,
    pub etcd_peer: SocketAddr,
    pub secure: SocketAddr,
    /// Extra addresses the serving certificate must carry (a forwarder's address).
    pub extra_ips: Vec<IpAddr>,
}

impl Layout {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// The static admin token of every control plane started here (a random per start in practice:
/// see [`ControlPlane::start`]).
fn token_file_line(token: &str) -> String {
    // token,user,uid,"group1,group2"
    format!("{token},isthmus-admin,isthmus-admin,\"system:masters\"\n")
}

/// etcd's command line.
pub fn etcd_args(l: &Layout) -> Vec<String> {
    let client = format!("http://{}", l.etcd_client);
    let peer = format!("http://{}", l.etcd_peer);
    vec![
        format!("--data-dir={}", l.path("etcd").display()),
        "--name=default".into(),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=default={peer}"),
        "--initial-cluster-state=new".into(),
        // a control plane per test or lab cluster: bounded, and compacted like a real cluster's
        "--quota-backend-bytes=2147483648".into(),
        "--auto-compaction-mode=periodic".into(),
        "--auto-compaction-retention=5m".into(),
    ]
}

/// kube-apiserver's command line.
pub fn apiserver_args(l: &Layout) -> Vec<String> {
    let p = |n: &str| l.path(n).display().to_string();
    vec![
        format!("--etcd-servers=http://{}", l.etcd_client),
        format!("--bind-address={}", l.secure.ip()),
        format!("--advertise-address={}", l.secure.ip()),
        format!("--secure-port={}", l.secure.port()),
        format!("--cert-dir={}", p("certs")),
        format!("--tls-cert-file={}", p("serving.crt")),
        format!("--tls-private-key-file={}", p("serving.key")),
        format!("--token-auth-file={}", p("tokens.csv")),
        "--authorization-mode=RBAC".into(),
        "--anonymous-auth=false".into(),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={}", p("sa.key")),
        format!("--service-account-signing-key-file={}", p("sa.key")),
        "--service-cluster-ip-range=10.96.0.0/12".into(),
        "--allow-privileged=true".into(),
        // no controller-manager fills in token Secrets, so admission must not insist on them
        "--disable-admission-plugins=ServiceAccount".into(),
    ]
}

/// A free loopback port (the listener is closed again; a race with another process is unlikely
/// and shows as a start failure naming the port).
fn free_port() -> Result<SocketAddr, Error> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| Error::Envtest(format!("no free port: {e}")))
}

/// One running etcd and kube-apiserver.
#[derive(Debug)]
pub struct ControlPlane {
    pub layout: Layout,
    /// Where the binaries are (a restart uses them again).
    pub assets: PathBuf,
    pub ca_pem: String,
    pub admin_token: String,
    etcd: Child,
    apiserver: Child,
    _dir: Option<tempfile::TempDir>,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver from `assets` and waits until the API is ready.
    pub async fn start(assets: &Path, extra_ips: &[IpAddr]) -> Result<ControlPlane, Error> {
        for bin in ["etcd", "kube-apiserver"] {
            if !assets.join(bin).is_file() {
                return Err(Error::Envtest(format!(
                    "{} has no {bin} (KUBEBUILDER_ASSETS must name envtest's binaries)",
                    assets.display()
                )));
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("isthmus-envtest-")
            .tempdir()
            .map_err(|e| Error::Envtest(format!("temporary directory: {e}")))?;
        let layout = Layout {
            dir: dir.path().to_owned(),
            etcd_client: free_port()?,
            etcd_peer: free_port()?,
            secure: free_port()?,
            extra_ips: extra_ips.to_vec(),
        };
        let (pki, admin_token) = write_files(&layout)?;
        let etcd = spawn(
            &assets.join("etcd"),
            &etcd_args(&layout),
            &layout.path("etcd.log"),
        )?;
        let apiserver = spawn(
            &assets.join("kube-apiserver"),
            &apiserver_args(&layout),
            &layout.path("kube-apiserver.log"),
        )?;
        let plane = ControlPlane {
            layout,
            assets: assets.to_owned(),
            ca_pem: pki.ca_pem,
            admin_token,
            etcd,
            apiserver,
            _dir: Some(dir),
        };
        plane.wait_ready().await?;
        Ok(plane)
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.layout.secure)
    }

    /// The pids of etcd and kube-apiserver.
    pub fn pids(&self) -> [u32; 2] {
        [self.etcd.id(), self.apiserver.id()]
    }

    /// Kills kube-apiserver at once (SIGKILL), as a crash would; etcd keeps the data.
    pub fn kill_apiserver(&mut self) {
        let _ = self.apiserver.kill();
        let _ = self.apiserver.wait();
    }

    /// Starts kube-apiserver again on the same port and data.
    pub async fn restart_apiserver(&mut self) -> Result<(), Error> {
        self.apiserver = spawn(
            &self.assets.join("kube-apiserver"),
            &apiserver_args(&self.layout),
            &self.layout.path("kube-apiserver.log"),
        )?;
        self.wait_ready().await
    }

    async fn wait_ready(&self) -> Result<(), Error> {
        let yaml = isthmus_memkube::render_kubeconfig(&isthmus_memkube::KubeconfigSpec {
            name: "envtest",
            server: &self.url(),
            ca_pem: Some(&self.ca_pem),
            tls_server_name: None,
            credential: isthmus_memkube::Credential::Token(&self.admin_token),
            namespace: "default",
        });
        let client = crate::kubeconfig::client(&yaml).await?;
        let started = Instant::now();
        loop {
            let ready = client
                .request_text(
                    http::Request::get("/readyz")
                        .body(Vec::new())
                        .expect("a static request"),
                )
                .await;
            match ready {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                _ if started.elapsed() > START_TIMEOUT => {
                    return Err(Error::Envtest(format!(
                        "kube-apiserver not ready after {} s; see {}",
                        START_TIMEOUT.as_secs(),
                        self.layout.path("kube-apiserver.log").display()
                    )));
                }
                _ => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        for child in [&mut self.apiserver, &mut self.etcd] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `bin` with stdout and stderr appended to `log`.
fn spawn(bin: &Path, args: &[String], log: &Path) -> Result<Child, Error> {
    let io = |e: std::io::Error| Error::Envtest(format!("{}: {e}", log.display()));
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io)?;
    let err = out.try_clone().map_err(io)?;
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| Error::Envtest(format!("starting {}: {e}", bin.display())))
}

fn write_files(l: &Layout) -> Result<(ServingPki, String), Error> {
    let io = |what: &str, e: std::io::Error| Error::Envtest(format!("{what}: {e}"));
    std::fs::create_dir_all(l.path("certs")).map_err(|e| io("certs", e))?;
    let pki = serving_pki(&l.extra_ips, &["kubernetes", "kubernetes.default"])?;
    let token = random_token();
    for (name, text) in [
        ("serving.crt", pki.cert_pem.clone()),
        ("serving.key", pki.key_pem.clone()),
        ("ca.crt", pki.ca_pem.clone()),
        ("sa.key", signing_key_pem()?),
        ("tokens.csv", token_file_line(&token)),
    ] {
        std::fs::write(l.path(name), text).map_err(|e| io(name, e))?;
    }
    Ok((pki, token))
}

/// 32 random lower-case letters and digits.
pub fn random_token() -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..32)
        .map(|_| char::from(CHARS[fastrand::usize(..CHARS.len())]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            dir: PathBuf::from("/tmp/x"),
            etcd_client: "127.0.0.1:2379".parse().unwrap(),
            etcd_peer: "127.0.0.1:2380".parse().unwrap(),
            secure: "127.0.0.1:6443".parse().unwrap(),
            extra_ips: Vec::new(),
        }
    }

    #[test]
    fn the_apiserver_talks_to_its_etcd_with_rbac_and_token_signing() {
        let l = layout();
        let api = apiserver_args(&l);
        assert!(api.contains(&"--etcd-servers=http://127.0.0.1:2379".to_owned()));
        assert!(api.contains(&"--authorization-mode=RBAC".to_owned()));
        assert!(api.contains(&"--secure-port=6443".to_owned()));
        assert!(
            api.iter()
                .any(|a| a == "--service-account-signing-key-file=/tmp/x/sa.key")
        );
        assert!(
            api.iter()
                .any(|a| a == "--token-auth-file=/tmp/x/tokens.csv")
        );
        let etcd = etcd_args(&l);
        assert!(etcd.contains(&"--listen-client-urls=http://127.0.0.1:2379".to_owned()));
        assert!(etcd.contains(&"--data-dir=/tmp/x/etcd".to_owned()));
        assert_eq!(
            token_file_line("t"),
            "t,isthmus-admin,isthmus-admin,\"system:masters\"\n"
        );
        assert_eq!(random_token().len(), 32);
    }

    #[tokio::test]
    async fn missing_binaries_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = ControlPlane::start(dir.path(), &[]).await.unwrap_err();
        assert!(err.to_string().contains("has no etcd"), "{err}");
    }
}
