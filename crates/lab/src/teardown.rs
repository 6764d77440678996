//! Tearing labs down: every namespace and userspace WireGuard socket carrying the lab's tag, and
//! its state file. Teardown keeps going past errors and reports them all; it is idempotent and
//! works from a record alone (another process, after a crash) or from a bare tag.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::kernel::{ip_batch, list_netns, netns_exists};
use crate::record::TopologyRecord;
use crate::{Error, Result, naming};

/// Directory of userspace WireGuard UAPI sockets (shared by every namespace on the host).
pub use isthmus_dataplane::tunnel::linux::UAPI_DIR;

/// The UAPI socket of a userspace WireGuard interface.
pub fn uapi_socket(ifname: &str) -> PathBuf {
    Path::new(UAPI_DIR).join(format!("{ifname}.sock"))
}

/// Destroys the lab of `record`: its namespaces (those it lists and any other carrying its tag),
/// its WireGuard sockets and its state file. Blocks. A second call succeeds.
pub fn destroy(record: &TopologyRecord) -> Result<()> {
    let sockets = record.clusters.iter().map(|c| uapi_socket(&c.wg_interface));
    teardown(
        &record.tag,
        record.namespaces(),
        sockets.collect(),
        record.state_file.as_deref(),
    )
}

/// Destroys everything carrying `tag` (namespaces, sockets) and the state file if given.
pub fn destroy_tag(tag: &str, state_file: Option<&Path>) -> Result<()> {
    if naming::tag_of(tag) != Some(tag) {
        return Err(Error::spec(format!("{tag} is not a lab tag")));
    }
    teardown(tag, Vec::new(), Vec::new(), state_file)
}

fn teardown(
    tag: &str,
    namespaces: Vec<String>,
    sockets: Vec<PathBuf>,
    state_file: Option<&Path>,
) -> Result<()> {
    let mut errors = Vec::new();
    let mut doomed: BTreeSet<String> = namespaces.into_iter().filter(|n| netns_exists(n)).collect();
    match list_netns() {
        Ok(all) => doomed.extend(all.into_iter().filter(|n| naming::belongs_to(n, tag))),
        Err(error) => errors.push(error),
    }
    let lines: Vec<String> = doomed.iter().map(|n| format!("netns del {n}")).collect();
    let batch = ip_batch(None, &lines, true);
    let left: Vec<&String> = doomed.iter().filter(|n| netns_exists(n)).collect();
    if let (Err(error), false) = (batch, left.is_empty()) {
        errors.push(error);
    }
    errors.extend(left.into_iter().map(|n| Error::Command {
        command: format!("ip netns del {n}"),
        message: "the namespace is still there".into(),
    }));
    let mut files: BTreeSet<PathBuf> = sockets.into_iter().collect();
    files.extend(tagged_sockets(tag));
    files.extend(state_file.map(Path::to_owned));
    for file in files {
        remove_file(&file, &mut errors);
    }
    tracing::info!(%tag, errors = errors.len(), "lab destroyed");
    Error::collect(errors)
}

fn remove_file(path: &Path, errors: &mut Vec<Error>) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {}
        Err(source) => errors.push(Error::StateFile {
            path: path.to_owned(),
            source,
        }),
    }
}

fn tagged_sockets(tag: &str) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(UAPI_DIR).into_iter().flatten().flatten();
    entries
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.strip_suffix(".sock")
                .is_some_and(|stem| naming::belongs_to(stem, tag))
        })
        .map(|e| e.path())
        .collect()
}

/// Whether any namespace of the lab of `record` is still there.
pub fn exists(record: &TopologyRecord) -> bool {
    record.namespaces().iter().any(|n| netns_exists(n))
}

/// Whether process `pid` runs: it exists and is not a zombie (a killed process whose parent has
/// not reaped it still has its `/proc` entry; in a container whose init does not reap, forever).
pub fn process_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| stat_says_running(&stat))
}

/// Parses `/proc/PID/stat`: the state is the first field after the command's closing `)`.
fn stat_says_running(stat: &str) -> bool {
    let state = stat
        .rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next());
    !matches!(state, Some("Z" | "X" | "x") | None)
}

/// Every lab tag present on the host: in namespace names, WireGuard sockets and the state files
/// of `state_dir` (if given), with whether its owning process is still alive.
pub fn lab_tags(state_dir: Option<&Path>) -> Result<Vec<(String, bool)>> {
    let mut tags = BTreeSet::new();
    for name in list_netns()? {
        tags.extend(naming::tag_of(&name).map(str::to_owned));
    }
    for socket in std::fs::read_dir(UAPI_DIR).into_iter().flatten().flatten() {
        let name = socket.file_name().to_string_lossy().into_owned();
        let stem = name.trim_end_matches(".sock");
        tags.extend(naming::tag_of(stem).map(str::to_owned));
    }
    if let Some(dir) = state_dir {
        tags.extend(TopologyRecord::load_dir(dir).into_iter().map(|r| r.tag));
    }
    Ok(tags
        .into_iter()
        .map(|tag| {
            let alive = naming::pid_of(&tag).is_some_and(process_alive);
            (tag, alive)
        })
        .collect())
}

/// Destroys every lab whose owning process is dead (its namespaces, sockets and, in `state_dir`,
/// its state file `<tag>.json`). Labs of live processes are never touched. Returns the tags
/// destroyed; keeps going past errors and reports them all.
pub fn destroy_stale(state_dir: Option<&Path>) -> Result<Vec<String>> {
    let mut destroyed = Vec::new();
    let mut errors = Vec::new();
    for (tag, alive) in lab_tags(state_dir)? {
        if alive {
            continue;
        }
        let state_file = state_dir.map(|d| d.join(format!("{tag}.json")));
        match destroy_tag(&tag, state_file.as_deref()) {
            Ok(()) => destroyed.push(tag),
            Err(error) => errors.push(error),
        }
    }
    Error::collect(errors).map(|()| destroyed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zombies_and_dead_processes_are_not_running() {
        assert!(stat_says_running("42 (isthmus) S 1 42 42 0 -1"));
        assert!(
            stat_says_running("42 (a) b) R 1"),
            "the command may contain ')'"
        );
        assert!(!stat_says_running("42 (isthmus) Z 1 42 42 0 -1"));
        assert!(!stat_says_running("42 (isthmus) X 1"));
        assert!(!stat_says_running("garbage"));
        assert!(process_alive(std::process::id()));
        assert!(!process_alive(u32::MAX));
    }
}
