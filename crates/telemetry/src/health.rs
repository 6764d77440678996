//! Liveness and readiness of one daemon: what `/healthz` and `/readyz` answer.
//!
//! - **Liveness**: every long-running loop holds a [`Heartbeat`] registered with the longest
//!   silence it may keep (a few of its periods). The daemon is live while every heartbeat beat
//!   in time; a heartbeat whose loop ended (dropped) or that [`Heartbeat::fail`]ed makes it not
//!   live, so the kubelet restarts a process whose work silently stopped.
//! - **Readiness**: named [`Gate`]s, each open or closed with a reason (e.g. "ipam: store not
//!   loaded", "leader: standby, lease held by gw-1"). Ready when every gate is open.
//!
//! Both answers list every check, as the Kubernetes API server's `?verbose` output does.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The health of one daemon; clones share it.
#[derive(Clone, Debug, Default)]
pub struct Health {
    inner: Arc<Mutex<State>>,
}

/// A check evaluated at each request: `Err(why)` when it fails.
type Probe = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

#[derive(Default)]
struct State {
    beats: BTreeMap<String, Beat>,
    gates: BTreeMap<String, Result<(), String>>,
    live_probes: BTreeMap<String, Probe>,
    ready_probes: BTreeMap<String, Probe>,
}

impl fmt::Debug for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("State")
            .field("beats", &self.beats)
            .field("gates", &self.gates)
            .field("live_probes", &self.live_probes.keys().collect::<Vec<_>>())
            .field(
                "ready_probes",
                &self.ready_probes.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Evaluates probes (outside the lock: they may take their own locks).
fn run_probes(probes: Vec<(String, Probe)>) -> impl Iterator<Item = Check> {
    probes.into_iter().map(|(name, probe)| Check {
        name,
        problem: probe().err(),
    })
}

#[derive(Debug)]
struct Beat {
    last: Instant,
    max_silence: Duration,
    failed: Option<String>,
}

/// One check in a [`Report`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    /// `None` when the check passes, else why not.
    pub problem: Option<String>,
}

/// The answer of `/healthz` or `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// Every check passes (an empty report passes: nothing registered, nothing wrong).
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.problem.is_none())
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for check in &self.checks {
            match &check.problem {
                None => writeln!(f, "[+] {} ok", check.name)?,
                Some(why) => writeln!(f, "[-] {} failed: {why}", check.name)?,
            }
        }
        if self.ok() {
            writeln!(f, "ok")
        } else {
            writeln!(f, "failed")
        }
    }
}

impl Health {
    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps inconsistent (single inserts).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers (or re-registers) a loop's heartbeat; it counts as having just beaten.
    pub fn heartbeat(&self, name: &str, max_silence: Duration) -> Heartbeat {
        self.state().beats.insert(
            name.to_owned(),
            Beat {
                last: Instant::now(),
                max_silence,
                failed: None,
            },
        );
        Heartbeat {
            health: self.clone(),
            name: name.to_owned(),
            done: false,
        }
    }

    /// Registers a readiness gate, closed with `reason` until opened.
    pub fn gate(&self, name: &str, reason: &str) -> Gate {
        self.state()
            .gates
            .insert(name.to_owned(), Err(reason.to_owned()));
        Gate {
            health: self.clone(),
            name: name.to_owned(),
        }
    }

    /// Adds a liveness check evaluated at each request (e.g. "the IPAM store has not failed").
    pub fn liveness_probe(
        &self,
        name: &str,
        probe: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) {
        self.state()
            .live_probes
            .insert(name.to_owned(), Arc::new(probe));
    }

    /// Adds a readiness check evaluated at each request.
    pub fn readiness_probe(
        &self,
        name: &str,
        probe: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) {
        self.state()
            .ready_probes
            .insert(name.to_owned(), Arc::new(probe));
    }

    /// Whether every loop beat in time at `now` and every liveness probe passes.
    pub fn liveness(&self, now: Instant) -> Report {
        let (mut checks, probes) = self.beats(now);
        checks.extend(run_probes(probes));
        Report { checks }
    }

    fn beats(&self, now: Instant) -> (Vec<Check>, Vec<(String, Probe)>) {
        let state = self.state();
        let probes = state
            .live_probes
            .iter()
            .map(|(n, p)| (n.clone(), p.clone()))
            .collect();
        let checks = state
            .beats
            .iter()
            .map(|(name, beat)| {
                let silent = now.saturating_duration_since(beat.last);
                let problem = match &beat.failed {
                    Some(why) => Some(why.clone()),
                    None if silent > beat.max_silence => Some(format!(
                        "no progress for {:.1}s (allowed {:.1}s)",
                        silent.as_secs_f64(),
                        beat.max_silence.as_secs_f64()
                    )),
                    None => None,
                };
                Check {
                    name: name.clone(),
                    problem,
                }
            })
            .collect();
        (checks, probes)
    }

    /// Whether every gate is open; not ready while no gate is registered yet (starting).
    pub fn readiness(&self) -> Report {
        let (mut checks, probes): (Vec<Check>, Vec<(String, Probe)>) = {
            let state = self.state();
            let gates = state
                .gates
                .iter()
                .map(|(name, gate)| Check {
                    name: name.clone(),
                    problem: gate.as_ref().err().cloned(),
                })
                .collect();
            let probes = state
                .ready_probes
                .iter()
                .map(|(n, p)| (n.clone(), p.clone()))
                .collect();
            (gates, probes)
        };
        checks.extend(run_probes(probes));
        if checks.is_empty() {
            checks.push(Check {
                name: "startup".to_owned(),
                problem: Some("still starting".to_owned()),
            });
        }
        Report { checks }
    }
}

/// A loop's proof of life. Dropping it without [`Heartbeat::retire`] (the loop ended or
/// panicked) fails liveness.
#[derive(Debug)]
pub struct Heartbeat {
    health: Health,
    name: String,
    done: bool,
}

impl Heartbeat {
    /// The loop made progress.
    pub fn beat(&self) {
        if let Some(beat) = self.health.state().beats.get_mut(&self.name) {
            beat.last = Instant::now();
            beat.failed = None;
        }
    }

    /// The loop is stuck or broken beyond repair: liveness fails with `why` until the next beat.
    pub fn fail(&self, why: &str) {
        if let Some(beat) = self.health.state().beats.get_mut(&self.name) {
            beat.failed = Some(why.to_owned());
        }
    }

    /// The loop ended on purpose (shutdown, standing down): it no longer counts.
    pub fn retire(mut self) {
        self.done = true;
        self.health.state().beats.remove(&self.name);
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        if !self.done
            && let Some(beat) = self.health.state().beats.get_mut(&self.name)
        {
            beat.failed = Some("the loop ended".to_owned());
        }
    }
}

/// A readiness condition; dropping it leaves it as it was.
#[derive(Debug, Clone)]
pub struct Gate {
    health: Health,
    name: String,
}

impl Gate {
    /// Opens the gate.
    pub fn open(&self) {
        self.health.state().gates.insert(self.name.clone(), Ok(()));
    }

    /// Closes the gate with a reason.
    pub fn close(&self, reason: &str) {
        self.health
            .state()
            .gates
            .insert(self.name.clone(), Err(reason.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_silent_loop_fails_liveness_and_a_beat_restores_it() {
        let health = Health::default();
        let beat = health.heartbeat("controller", Duration::from_secs(10));
        let now = Instant::now();
        assert!(health.liveness(now).ok());
        let later = now + Duration::from_secs(11);
        let report = health.liveness(later);
        assert!(!report.ok());
        assert!(
            report
                .to_string()
                .contains("[-] controller failed: no progress")
        );
        beat.beat();
        assert!(health.liveness(Instant::now()).ok());
    }

    #[test]
    fn an_ended_loop_fails_liveness_unless_retired() {
        let health = Health::default();
        drop(health.heartbeat("watch", Duration::from_secs(60)));
        let report = health.liveness(Instant::now());
        assert_eq!(report.checks[0].problem.as_deref(), Some("the loop ended"));
        health.heartbeat("watch", Duration::from_secs(60)).retire();
        assert!(health.liveness(Instant::now()).checks.is_empty());
    }

    #[test]
    fn a_failed_heartbeat_reports_why() {
        let health = Health::default();
        let beat = health.heartbeat("ipam", Duration::from_secs(60));
        beat.fail("store write failed: disk full");
        assert!(
            health
                .liveness(Instant::now())
                .to_string()
                .contains("store write failed")
        );
    }

    #[test]
    fn probes_are_evaluated_at_each_request() {
        let health = Health::default();
        let broken = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = broken.clone();
        health.liveness_probe("ipam-store", move || {
            match flag.load(std::sync::atomic::Ordering::SeqCst) {
                true => Err("the store failed; restart to reload it".into()),
                false => Ok(()),
            }
        });
        health.readiness_probe("peers", || Ok(()));
        assert!(health.liveness(Instant::now()).ok());
        assert!(health.readiness().ok());
        broken.store(true, std::sync::atomic::Ordering::SeqCst);
        let report = health.liveness(Instant::now());
        assert!(
            report
                .to_string()
                .contains("[-] ipam-store failed: the store failed")
        );
    }

    #[test]
    fn ready_only_when_every_gate_is_open() {
        let health = Health::default();
        assert!(!health.readiness().ok(), "nothing registered yet: starting");
        let ipam = health.gate("ipam", "store not loaded");
        let grpc = health.gate("grpc", "not listening");
        assert!(!health.readiness().ok());
        ipam.open();
        let report = health.readiness();
        assert!(!report.ok());
        assert!(
            report
                .to_string()
                .contains("[-] grpc failed: not listening")
        );
        assert!(report.to_string().contains("[+] ipam ok"));
        grpc.open();
        assert!(health.readiness().ok());
        grpc.close("listener closed");
        assert!(!health.readiness().ok());
    }
}
