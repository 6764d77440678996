//! The lab's two ways into the kernel: `ip` batches (one process per namespace and phase) and
//! closures run on a short-lived thread that entered a namespace (sysctls, sockets).
//!
//! Sockets are bound to the namespace of the thread that creates them and keep working from any
//! thread afterwards, so probes create theirs with [`in_netns`] and use them anywhere.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};

use crate::{Error, Result};

/// Where `ip netns` keeps its namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Whether the named namespace exists.
pub fn netns_exists(name: &str) -> bool {
    Path::new(NETNS_DIR).join(name).exists()
}

/// Names of every named namespace on the host.
pub fn list_netns() -> Result<Vec<String>> {
    let text = isthmus_dataplane::lab::run(&["ip", "netns", "list"])?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Runs `lines` as one `ip -batch` (in namespace `ns`, or the caller's for `None`).
/// With `force`, `ip` keeps going past failing lines (teardown); it still reports failure.
pub fn ip_batch(ns: Option<&str>, lines: &[String], force: bool) -> Result<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut args: Vec<&str> = Vec::new();
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    if force {
        args.push("-force");
    }
    args.extend(["-batch", "-"]);
    let command = || format!("ip {} <<< {}", args.join(" "), lines.join("; "));
    let fail = |message: String| Error::Command {
        command: command(),
        message,
    };
    let mut child = Command::new("ip")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let text = lines.join("\n") + "\n";
    let written = stdin.write_all(text.as_bytes());
    drop(stdin);
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(String::from_utf8_lossy(&out.stderr).trim().to_owned()));
    }
    written.map_err(|e| fail(e.to_string()))
}

/// Runs the batches of one phase, one process per namespace, all at once; collects every error.
pub fn ip_batches(batches: &[(String, Vec<String>)]) -> Result<()> {
    let errors: Vec<Error> = std::thread::scope(|scope| {
        let handles: Vec<_> = batches
            .iter()
            .map(|(ns, lines)| scope.spawn(move || ip_batch(Some(ns), lines, false)))
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().expect("an ip batch thread panicked").err())
            .collect()
    });
    Error::collect(errors).map_err(|e| match e {
        Error::Teardown(mut list) if list.len() == 1 => list.remove(0),
        other => other,
    })
}

/// Runs `work` on a new thread that entered the network namespace `ns`, and waits for it.
/// Blocks the caller.
pub fn in_netns<T, F>(ns: &str, work: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send,
    T: Send,
{
    let netns_err = |source| Error::Netns {
        name: ns.to_owned(),
        source,
    };
    let file = File::open(Path::new(NETNS_DIR).join(ns)).map_err(netns_err)?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                setns(&file, CloneFlags::CLONE_NEWNET)
                    .map_err(|errno| netns_err(std::io::Error::from(errno)))?;
                work()
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// Sets sysctls under `/proc/sys` (e.g. `net/ipv4/ip_forward`) inside namespace `ns`, in order.
pub fn sysctls(ns: &str, settings: &[(&str, &str)]) -> Result<()> {
    in_netns(ns, || {
        for (key, value) in settings {
            let path = Path::new("/proc/sys").join(key);
            std::fs::write(&path, value).map_err(|e| Error::Command {
                command: format!("write {value} to {} in {ns}", path.display()),
                message: e.to_string(),
            })?;
        }
        Ok(())
    })
}

/// Which link must be ready, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Operationally up with its queue attached (a veth: carrier processed by link watch).
    Up,
    /// Carrier on and queue attached; its operational state may still lag (a bridge brought up
    /// after its ports: its queue is attached at once, its operstate only at the next link watch).
    Carrier,
}

/// Whether a line of `ip -o link` shows link `name` ready as `how` demands.
fn ready(line: &str, how: Readiness) -> bool {
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |key: &str| {
        words
            .iter()
            .position(|w| *w == key)
            .and_then(|i| words.get(i + 1))
    };
    let queue = after("qdisc").is_some_and(|q| *q != "noop");
    let carrier = line.contains(",LOWER_UP>") || line.contains("<LOWER_UP");
    let up = after("state").is_some_and(|s| *s == "UP");
    queue && carrier && (up || how == Readiness::Carrier)
}

fn link_name(line: &str) -> Option<&str> {
    let name = line.split(": ").nth(1)?;
    name.split('@').next()
}

/// Waits until every link named in each `(namespace, links)` is ready, polling the namespaces in
/// parallel; fails naming the links still not ready after `timeout`.
pub fn wait_links_ready(
    expected: &[(String, Vec<(String, Readiness)>)],
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let errors: Vec<Error> = std::thread::scope(|scope| {
        let handles: Vec<_> = expected
            .iter()
            .filter(|(_, links)| !links.is_empty())
            .map(|(ns, links)| scope.spawn(move || wait_ns_links(ns, links, deadline)))
            .collect();
        let results = handles
            .into_iter()
            .map(|h| h.join().expect("link wait thread"));
        results.filter_map(Result::err).collect()
    });
    Error::collect(errors)
}

fn wait_ns_links(ns: &str, links: &[(String, Readiness)], deadline: Instant) -> Result<()> {
    loop {
        let text = isthmus_dataplane::lab::run(&["ip", "-n", ns, "-o", "link", "show"])?;
        let is_ready = |(name, how): &&(String, Readiness)| {
            text.lines()
                .any(|l| link_name(l) == Some(name.as_str()) && ready(l, *how))
        };
        let waiting: Vec<&String> = links
            .iter()
            .filter(|l| !is_ready(l))
            .map(|(n, _)| n)
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Command {
                command: format!("ip -n {ns} link show"),
                message: format!("links still not ready: {waiting:?}"),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_link_readiness() {
        let veth = "2: eth0@if7: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT";
        let early = "2: eth0@if7: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noop state DOWN mode DEFAULT";
        let bridge = "4: br0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state DOWN mode DEFAULT";
        let empty =
            "3: cni0: <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 1500 qdisc noqueue state DOWN";
        assert_eq!(link_name(veth), Some("eth0"));
        assert!(ready(veth, Readiness::Up));
        assert!(!ready(early, Readiness::Up) && !ready(early, Readiness::Carrier));
        assert!(ready(bridge, Readiness::Carrier) && !ready(bridge, Readiness::Up));
        assert!(!ready(empty, Readiness::Carrier));
    }
}
