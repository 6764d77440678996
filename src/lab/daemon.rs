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
    ]
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
        down(&dir).await?;
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
            let _ = down(&dir).await;
            bail!("the lab daemon exited ({status}) before it was ready:\n{tail}");
        }
        match LabState::load(&dir)? {
            Some(state) if state.phase == Phase::Ready => return print_ready(&state).await,
            Some(state) if state.phase == Phase::Failed => {
                let error = state.error.clone().unwrap_or_default();
                let _ = down(&dir).await;
                bail!("the lab failed: {error}\n{}", log_tail(&dir));
            }
            _ if started.elapsed() > UP_TIMEOUT => {
                let _ = down(&dir).await;
                bail!(
                    "the lab was not ready after {UP_TIMEOUT:?}:\n{}",
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
    println!("`sudo isthmus lab status` measures again; `sudo isthmus lab down` removes the lab.");
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
    let options = args.options();
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
    let Some(state) = LabState::load(dir)? else {
        bail!("no lab is running; start one with `sudo isthmus lab up`");
    };
    if !state.alive() {
        bail!(
            "the lab daemon (pid {}) is not running; `sudo isthmus lab down` removes what it left",
            state.pid
        );
    }
    if state.phase != Phase::Ready {
        bail!(
            "the lab is {:?}; see {}",
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
        let out =
            serde_json::json!({ "clusters": state.clusters, "tunnels": tunnels, "matrix": matrix });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{}", report::render_clusters(&state));
        println!("{}", report::render_tunnels(&tunnels));
        println!("{}", report::render_matrix(&matrix, state.clusters.len()));
    }
    Ok(())
}

/// `lab down`: stop the daemon, then remove every lab namespace whose owner is gone.
pub async fn down(dir: &Path) -> anyhow::Result<()> {
    let state = LabState::load(dir)?;
    let mut removed = Vec::new();
    if let Some(state) = state.as_ref().filter(|s| s.alive()) {
        stop_daemon(state.pid).await;
        removed.push(format!(
            "the lab of pid {} (stopped; it removed its namespaces)",
            state.pid
        ));
    }
    if let Some(file) = state.as_ref().and_then(|s| s.topology_file.clone())
        && file.exists()
    {
        let record = isthmus_lab::TopologyRecord::load(&file)?;
        isthmus_lab::destroy(&record)?;
        removed.push(record.tag.clone());
        let _ = std::fs::remove_file(&file);
    }
    removed.extend(isthmus_lab::destroy_stale(Some(dir))?);
    let _ = std::fs::remove_file(crate::lab::state::state_file(dir));
    if removed.is_empty() {
        println!("no lab to remove");
    } else {
        println!("removed lab(s) {}", removed.join(", "));
    }
    Ok(())
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
