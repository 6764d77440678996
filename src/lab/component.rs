//! One running component of a lab cluster (network-manager, gateway, a route agent), supervised
//! as a kubelet would: it is restarted after it fails, stopped cleanly on request (its shutdown
//! signal fires and it gets time to finish), or killed outright to simulate a crash.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Starts one run of a component; the future ends after the shutdown future resolves.
pub type Starter =
    Arc<dyn Fn(BoxFuture<'static, ()>) -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

/// Pause before a failed component is started again.
const RESTART_DELAY: Duration = Duration::from_millis(500);
/// How long a clean stop may take before the component is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A supervised component.
#[derive(Debug)]
pub struct Component {
    name: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Component {
    /// Starts `starter` and restarts it whenever it returns before being asked to stop.
    pub fn spawn(name: String, starter: Starter) -> Self {
        let (stop, stop_rx) = watch::channel(false);
        let label = name.clone();
        let task = tokio::spawn(async move {
            loop {
                let mut rx = stop_rx.clone();
                let shutdown: BoxFuture<'static, ()> = Box::pin(async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                });
                let result = starter(shutdown).await;
                if *stop_rx.borrow() {
                    if let Err(err) = result {
                        tracing::warn!(component = %label, "stopped with an error: {err:#}");
                    }
                    return;
                }
                match result {
                    Ok(()) => tracing::warn!(component = %label, "exited; restarting"),
                    Err(err) => tracing::warn!(component = %label, "failed: {err:#}; restarting"),
                }
                tokio::time::sleep(RESTART_DELAY).await;
            }
        });
        Component { name, stop, task }
    }

    /// The component's name (`a/gateway`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Asks it to stop and waits (killed after a grace period).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(STOP_GRACE, self.task).await.is_err() {
            tracing::warn!(component = %self.name, "did not stop in {STOP_GRACE:?}; killed");
            abort.abort();
        }
    }

    /// Kills it without warning, as a crash would (no clean shutdown runs).
    pub fn kill(self) {
        self.task.abort();
    }
}
