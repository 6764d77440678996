//! One running component of a lab cluster (network-manager, gateway, a route agent), supervised
//! as a kubelet would: it is restarted after it fails, with a delay that doubles after each quick
//! failure (as CrashLoopBackOff does), stopped cleanly on request (its shutdown signal fires and
//! it gets time to finish), or killed outright to simulate a crash. Its failures are counted and
//! the last one kept, so that the lab's own errors can name a component that keeps failing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Starts one run of a component; the future ends after the shutdown future resolves.
pub type Starter =
    Arc<dyn Fn(BoxFuture<'static, ()>) -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

/// Pause before a failed component is started again the first time.
const RESTART_DELAY: Duration = Duration::from_millis(500);
/// Longest pause between restarts.
const RESTART_DELAY_MAX: Duration = Duration::from_secs(30);
/// A run this long resets the delay (the component had recovered).
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// A component's failures since it was spawned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failures {
    /// Runs that ended without being asked to stop.
    pub count: u32,
    /// How the last one ended.
    pub last: Option<String>,
}

/// The next pause after a run that lasted `ran`, given the previous pause.
fn next_delay(previous: Duration, ran: Duration) -> Duration {
    if ran >= HEALTHY_RUN {
        RESTART_DELAY
    } else {
        (previous * 2).min(RESTART_DELAY_MAX)
    }
}
/// How long a clean stop may take before the component is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// A supervised component.
#[derive(Debug)]
pub struct Component {
    name: String,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    failures: Arc<Mutex<Failures>>,
}

impl Component {
    /// Starts `starter` and restarts it whenever it returns before being asked to stop.
    pub fn spawn(name: String, starter: Starter) -> Self {
        let (stop, stop_rx) = watch::channel(false);
        let label = name.clone();
        let failures = Arc::new(Mutex::new(Failures::default()));
        let record = failures.clone();
        let task = tokio::spawn(async move {
            let mut delay = RESTART_DELAY / 2;
            loop {
                let mut rx = stop_rx.clone();
                let shutdown: BoxFuture<'static, ()> = Box::pin(async move {
                    let _ = rx.wait_for(|stop| *stop).await;
                });
                let started = Instant::now();
                let result = starter(shutdown).await;
                if *stop_rx.borrow() {
                    if let Err(err) = result {
                        tracing::warn!(component = %label, "stopped with an error: {err:#}");
                    }
                    return;
                }
                delay = next_delay(delay, started.elapsed());
                let how = match result {
                    Ok(()) => "exited".to_owned(),
                    Err(err) => format!("failed: {err:#}"),
                };
                tracing::warn!(component = %label, "{how}; restarting in {} ms", delay.as_millis());
                {
                    let mut f = record.lock().unwrap_or_else(|e| e.into_inner());
                    f.count += 1;
                    f.last = Some(how);
                }
                let mut rx = stop_rx.clone();
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = rx.wait_for(|stop| *stop) => return,
                }
            }
        });
        Component {
            name,
            stop,
            task,
            failures,
        }
    }

    /// Its failures so far.
    pub fn failures(&self) -> Failures {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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
            tracing::warn!(component = %self.name, "did not stop in {} s; killed", STOP_GRACE.as_secs());
            abort.abort();
        }
    }

    /// Kills it without warning, as a crash would (no clean shutdown runs).
    pub fn kill(self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_failures_back_off_to_a_cap_and_a_healthy_run_resets() {
        let mut delay = RESTART_DELAY / 2;
        let mut seen = Vec::new();
        for _ in 0..10 {
            delay = next_delay(delay, Duration::from_millis(10));
            seen.push(delay.as_millis());
        }
        assert_eq!(&seen[..4], &[500, 1000, 2000, 4000]);
        assert_eq!(*seen.last().unwrap(), RESTART_DELAY_MAX.as_millis());
        assert_eq!(next_delay(RESTART_DELAY_MAX, HEALTHY_RUN), RESTART_DELAY);
    }
}
