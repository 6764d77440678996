//! The lab's process model: `lab up` starts `lab run` in the background and waits for its state
//! file to say ready; `lab run` owns the lab until SIGTERM; `lab status` reads the state and
//! measures again; `lab down` stops the daemon and removes every namespace a lab left.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::lab::UpArgs;
use crate::lab::report;
use crate::lab::runner::{Lab, probe_all};
use crate::lab::state::{ClusterState, LabState, Phase, log_file};

/// How long `lab up` waits for the daemon.
const UP_TIMEOUT: Duration = Duration::from_secs(240);

fn lab_args(args: &UpArgs) -> Vec<String> {
    vec![
        "lab".into(),
        "run".into(),
        format!("--clusters={}", args.clusters),
        format!("--topology={}", args.topology),
        format!("--pod-cidr={}", args.pod_cidr),
        format!("--workers={}", args.workers),
        format!("--pods-per-node={}", args.pods_per_node),
        format!("--state-dir={}", args.state_dir.display()),
        format!("--gateway-replicas={}", args.gateway_replicas),
        format!("--exposure={}", args.exposure),
    ]
    .into_iter()
    .chain(args.kubeconfigs.iter().map(|k| format!("--kubeconfig={k}")))
    .chain(args.cni_masquerade.then(|| "--cni-masquerade".to_owned()))
    .chain(args.worker_subnet.then(|| "--worker-subnet".to_owned()))
    .collect()
}

/// `lab up`: start the daemon, wait until it is ready, print what it measured.
pub async fn up(args: UpArgs) -> anyhow::Result<()> {
    let dir = args.state_dir.clone();
    if let Some(state) = LabState::load(&dir)? {
        if state.alive() {
            bail!(
                "a lab is already running (pid {}); `isthmus lab down` first",
                state.pid
            );
        }
        println!(
            "removing what a previous lab (pid {}) left behind",
            state.pid
        );
        println!("{}", remove(&dir).await?);
    }
    std::fs::create_dir_all(&dir)?;
    let log = std::fs::File::create(log_file(&dir))?;
    let mut child = std::os::unix::process::CommandExt::process_group(
        Command::new(std::env::current_exe()?)
            .args(lab_args(&args))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log),
        0,
    )
    .spawn()
    .context("starting the lab daemon")?;
    println!(
        "starting {} clusters ({}) in the background; log: {}",
        args.clusters,
        args.topology,
        log_file(&dir).display()
    );
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if let Some(status) = child.try_wait()? {
            let tail = log_tail(&dir);
            let error = LabState::load(&dir).ok().flatten().and_then(|s| s.error);
            let _ = remove(&dir).await;
            match error {
                Some(error) => bail!("the lab failed: {error}\n\nlast lines of its log:\n{tail}"),
                None => bail!(
                    "the lab daemon exited ({status}) before it was ready; last lines of its log:\n{tail}"
                ),
            }
        }
        match LabState::load(&dir)? {
            Some(state) if state.phase == Phase::Ready => return print_ready(&state).await,
            _ if started.elapsed() > UP_TIMEOUT => {
                let _ = remove(&dir).await;
                bail!(
                    "the lab was not ready after {}s; last lines of its log:\n{}",
                    UP_TIMEOUT.as_secs(),
                    log_tail(&dir)
                );
            }
            _ => {}
        }
    }
}

async fn print_ready(state: &LabState) -> anyhow::Result<()> {
    println!("{}", report::render_clusters(state));
    let tunnels = report::fetch_tunnels(state).await?;
    println!("{}", report::render_tunnels(&tunnels));
    println!(
        "{}",
        report::render_matrix(&state.matrix, state.clusters.len())
    );
    println!("{}", report::render_timings(&state.timings));
    let me = self_command();
    println!("`sudo {me} lab status` measures again; `sudo {me} lab down` removes the lab.");
    if !state.matrix.all_reachable() {
        bail!("some pods could not reach each other (see the matrix above)");
    }
    Ok(())
}

fn log_tail(dir: &Path) -> String {
    let text = std::fs::read_to_string(log_file(dir)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// `lab run`: the daemon. Builds the lab, publishes its state, runs until SIGTERM or Ctrl-C,
/// then removes everything.
pub async fn run(args: UpArgs, foreground: bool) -> anyhow::Result<()> {
    let dir = args.state_dir.clone();
    let options = args.options()?;
    let mut state = LabState {
        pid: std::process::id(),
        phase: Phase::Starting,
        error: None,
        shape: options.shape,
        topology_file: options.topology_file.clone(),
        clusters: Vec::new(),
        peerings: Vec::new(),
        reflections: Vec::new(),
        timings: Default::default(),
        matrix: Default::default(),
    };
    state.save(&dir)?;
    let (lab, matrix) = match Lab::up(options).await {
        Ok(up) => up,
        Err(err) => {
            state.phase = Phase::Failed;
            state.error = Some(format!("{err:#}"));
            state.save(&dir)?;
            return Err(err);
        }
    };
    state.clusters = lab.clusters.iter().map(ClusterState::of).collect();
    state.peerings = lab.peerings.clone();
    state.reflections = lab.reflections.clone();
    state.timings = lab.timings.clone();
    state.matrix = matrix;
    state.phase = Phase::Ready;
    state.save(&dir)?;
    tracing::info!("lab ready");
    if foreground {
        print_ready(&state).await.ok();
        println!("running; Ctrl-C stops and removes the lab");
    }
    crate::standalone::shutdown_signal().await;
    tracing::info!("stopping the lab");
    lab.shutdown().await;
    let _ = std::fs::remove_file(crate::lab::state::state_file(&dir));
    if let Some(file) = &state.topology_file {
        let _ = std::fs::remove_file(file);
    }
    Ok(())
}

/// `lab status`.
pub async fn status(dir: &Path, json: bool) -> anyhow::Result<()> {
    let me = self_command();
    let Some(state) = LabState::load(dir)? else {
        bail!("no lab is running; start one with `sudo {me} lab up`");
    };
    if !state.alive() {
        bail!(
            "the lab is not running: its daemon (pid {}) is gone (it crashed or was killed); \
             `sudo {me} lab down` removes what it left",
            state.pid
        );
    }
    if state.phase != Phase::Ready {
        bail!(
            "the lab is {}; see {}",
            state.phase,
            log_file(dir).display()
        );
    }
    let tunnels = report::fetch_tunnels(&state).await?;
    let topology_file = state
        .topology_file
        .clone()
        .context("the lab recorded no topology")?;
    let topology = isthmus_lab::TopologyRecord::load(&topology_file)?;
    let matrix = probe_all(&topology, &state.reflections).await;
    if json {
        println!("{}", report::status_json(&state, &tunnels, &matrix)?);
    } else {
        println!("{}", report::render_clusters(&state));
        println!("{}", report::render_tunnels(&tunnels));
        println!("{}", report::render_matrix(&matrix, state.clusters.len()));
    }
    Ok(())
}

/// What `lab down` found and did.
#[derive(Debug, Default)]
pub struct Removal {
    /// The daemon was running and was stopped (it removed its own namespaces).
    pub stopped: Option<u32>,
    /// The daemon of the state file was gone (crashed or killed): `lab down` cleaned up.
    pub dead: Option<u32>,
    /// Labs whose namespaces `lab down` removed itself (tags).
    pub removed: Vec<String>,
}

impl std::fmt::Display for Removal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let removed = self.removed.join(", ");
        match (self.stopped, self.dead) {
            (Some(pid), _) if self.removed.is_empty() => {
                write!(f, "stopped the lab (pid {pid}); it removed its namespaces")
            }
            (Some(pid), _) => write!(
                f,
                "stopped the lab (pid {pid}), then removed what it had left: {removed}"
            ),
            (None, Some(pid)) if self.removed.is_empty() => write!(
                f,
                "the lab daemon (pid {pid}) was not running (it crashed or was killed); it left \
                 no namespaces"
            ),
            (None, Some(pid)) => write!(
                f,
                "the lab daemon (pid {pid}) was not running (it crashed or was killed); removed \
                 what it left: {removed}"
            ),
            (None, None) if self.removed.is_empty() => f.write_str("no lab to remove"),
            (None, None) => write!(f, "removed what earlier labs left: {removed}"),
        }
    }
}

/// `lab down`.
pub async fn down(dir: &Path) -> anyhow::Result<()> {
    println!("{}", remove(dir).await?);
    Ok(())
}

/// Stops the daemon, then removes every lab namespace whose owner is gone.
pub async fn remove(dir: &Path) -> anyhow::Result<Removal> {
    let state = LabState::load(dir)?;
    let mut removal = Removal::default();
    match state.as_ref() {
        Some(state) if state.alive() => {
            stop_daemon(state.pid).await;
            removal.stopped = Some(state.pid);
        }
        Some(state) => removal.dead = Some(state.pid),
        None => {}
    }
    if let Some(file) = state.as_ref().and_then(|s| s.topology_file.clone())
        && file.exists()
    {
        let record = isthmus_lab::TopologyRecord::load(&file)?;
        if isthmus_lab::exists(&record) {
            isthmus_lab::destroy(&record)?;
            removal.removed.push(record.tag.clone());
        }
        let _ = std::fs::remove_file(&file);
    }
    removal
        .removed
        .extend(isthmus_lab::destroy_stale(Some(dir))?);
    removal.removed.dedup();
    let _ = std::fs::remove_file(crate::lab::state::state_file(dir));
    Ok(removal)
}

/// How to run this binary again, as the user should type it: `isthmus` when that is what `PATH`
/// finds, else its path (relative to the working directory when under it).
pub fn self_command() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "isthmus".to_owned();
    };
    let on_path = std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths)
            .any(|dir| std::fs::canonicalize(dir.join("isthmus")).is_ok_and(|found| found == exe))
    });
    if on_path {
        return "isthmus".to_owned();
    }
    match std::env::current_dir() {
        Ok(cwd) => exe
            .strip_prefix(&cwd)
            .map_or_else(|_| exe.display().to_string(), |p| p.display().to_string()),
        Err(_) => exe.display().to_string(),
    }
}

async fn stop_daemon(pid: u32) {
    let pid_t = Pid::from_raw(pid as i32);
    let _ = kill(pid_t, Signal::SIGTERM);
    let alive = || Path::new(&format!("/proc/{pid}")).exists();
    for _ in 0..120 {
        if !alive() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!("the lab daemon (pid {pid}) did not stop in 30 s; killing it");
    let _ = kill(pid_t, Signal::SIGKILL);
    for _ in 0..40 {
        if !alive() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use isthmus_lab::exposure::Exposure;

    use super::*;

    fn parse(argv: &[&str]) -> Result<UpArgs, clap::Error> {
        crate::cli::parse_flags(argv)
    }

    #[test]
    fn the_exposure_reaches_the_daemon_and_defaults_to_the_node() {
        assert_eq!(parse(&[]).unwrap().exposure, Exposure::Node);
        let up = parse(&["--exposure", "nodeport"]).unwrap();
        let daemon_args = lab_args(&up);
        assert!(daemon_args.contains(&"--exposure=nodeport".to_owned()));
        let again: Vec<&str> = daemon_args[2..].iter().map(String::as_str).collect();
        assert_eq!(parse(&again).unwrap().exposure, Exposure::NodePort);
        let err = parse(&["--exposure", "clusterip"]).unwrap_err().to_string();
        assert!(err.contains("node, nodeport or loadbalancer"), "{err}");
    }
}
