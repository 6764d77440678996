//! One pod of the chart as an OS process: `ip netns exec NODE isthmus ARGS…` with the pod's
//! environment, a kubeconfig whose token file the lab keeps fresh, and its output appended to a
//! log file of its own. A [`Starter`] for the lab's supervisor: one call runs the process until
//! it exits (an error when it failed) or until the supervisor asks it to stop (SIGTERM, then
//! SIGKILL after a grace period).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::FutureExt;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::pods::PodProcess;
use crate::lab::component::Starter;

/// How long a stopped process may take to exit before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(8);

/// The environment variable that makes an isthmus process exit when its parent (the lab) dies.
pub const EXIT_WITH_PARENT: &str = "ISTHMUS_EXIT_WITH_PARENT";

/// Everything needed to start one pod.
#[derive(Debug, Clone)]
pub struct Launch {
    pub pod: PodProcess,
    /// The `isthmus` binary.
    pub binary: PathBuf,
    /// The pod's kubeconfig (its ServiceAccount's token file).
    pub kubeconfig: PathBuf,
    /// Where its stdout and stderr go (appended across restarts).
    pub log: PathBuf,
    /// The pid of the running process (0 while none runs); shared by clones.
    pub pid: Arc<std::sync::atomic::AtomicU32>,
}

impl Launch {
    /// The command line: `ip netns exec NS BINARY ARGS…`.
    pub fn command_line(&self) -> Vec<String> {
        let mut line = vec![
            "ip".to_owned(),
            "netns".to_owned(),
            "exec".to_owned(),
            self.pod.node.netns.clone(),
            self.binary.display().to_string(),
        ];
        line.extend(self.pod.args.iter().cloned());
        line
    }

    /// The environment: only the pod's, plus PATH, KUBECONFIG and the lab's tether.
    pub fn environment(&self) -> Vec<(String, String)> {
        let mut env = vec![
            (
                "PATH".to_owned(),
                std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            ),
            (
                "KUBECONFIG".to_owned(),
                self.kubeconfig.display().to_string(),
            ),
            (EXIT_WITH_PARENT.to_owned(), "1".to_owned()),
        ];
        env.extend(self.pod.env.iter().cloned());
        env
    }

    /// A supervisor starter running this pod.
    pub fn starter(self) -> Starter {
        let launch = Arc::new(self);
        Arc::new(move |shutdown| {
            let launch = launch.clone();
            async move { launch.run(shutdown).await }.boxed()
        })
    }

    async fn run(&self, shutdown: futures::future::BoxFuture<'static, ()>) -> anyhow::Result<()> {
        let line = self.command_line();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let mut child = tokio::process::Command::new(&line[0])
            .args(&line[1..])
            .env_clear()
            .envs(self.environment())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.pod.pod_name))?;
        self.pid.store(
            child.id().unwrap_or_default(),
            std::sync::atomic::Ordering::Release,
        );
        tokio::select! {
            status = child.wait() => {
                let status = status?;
                if status.success() {
                    Ok(())
                } else {
                    bail!("{} exited with {status}; its log: {}", self.pod.pod_name, self.log.display())
                }
            }
            () = shutdown => {
                if let Some(pid) = child.id() {
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
                }
                if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_err() {
                    tracing::warn!(pod = %self.pod.pod_name, "did not stop in {} s; killed", STOP_GRACE.as_secs());
                    let _ = child.kill().await;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::kubelet::pods::LabNode;

    #[test]
    fn the_pod_runs_in_its_node_with_only_its_environment() {
        let launch = Launch {
            pod: PodProcess {
                component: "gateway".into(),
                pod_name: "isthmus-gateway-0".into(),
                namespace: "isthmus".into(),
                node: LabNode {
                    name: "node0".into(),
                    netns: "il1x0-a-node0".into(),
                    ip: "172.16.0.10".parse().unwrap(),
                },
                service_account: "isthmus-gateway".into(),
                args: vec!["gateway".into(), "--mtu=1420".into()],
                env: vec![("NODE_NAME".into(), "node0".into())],
            },
            binary: "/usr/local/bin/isthmus".into(),
            kubeconfig: "/run/x/isthmus-gateway.kubeconfig".into(),
            log: "/run/x/isthmus-gateway-0.log".into(),
            pid: Arc::default(),
        };
        assert_eq!(
            launch.command_line(),
            [
                "ip",
                "netns",
                "exec",
                "il1x0-a-node0",
                "/usr/local/bin/isthmus",
                "gateway",
                "--mtu=1420"
            ]
        );
        let env = launch.environment();
        assert!(env.contains(&(
            "KUBECONFIG".into(),
            "/run/x/isthmus-gateway.kubeconfig".into()
        )));
        assert!(env.contains(&("NODE_NAME".into(), "node0".into())));
        assert!(env.iter().any(|(k, _)| k == EXIT_WITH_PARENT));
    }
}
