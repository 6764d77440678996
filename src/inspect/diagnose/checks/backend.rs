//! Check 1, the WireGuard backend: is the kernel module there, which backend carries the tunnel
//! on this node (a `wireguard` link, or a TUN device with a userspace engine behind its UAPI
//! socket), which one the gateway reports in the TunnelEndpoints' status, and what a userspace
//! tunnel costs and how to get the module.

use std::collections::BTreeSet;

use isthmus_dataplane::tunnel::{Backend, DeviceView, ModuleState};

use super::{Inputs, gateway_logs, restart_gateway};
use crate::inspect::diagnose::desired::Target;
use crate::inspect::diagnose::report::{Check, CheckId, Finding};

const COST: &str = "The userspace engine works, but costs CPU per packet and caps throughput well below the \
kernel module (docs/BENCHMARKS.md).";

/// The module situation in one sentence, and how to get the kernel backend.
fn module_advice(module: &ModuleState, target: &Target) -> (String, String) {
    let restart = format!(
        "then restart the gateway, which picks the backend when it starts: {}",
        restart_gateway(target)
    );
    match module {
        ModuleState::Missing {
            release,
            modules_dir: false,
        } => (
            format!(
                "the wireguard module is not loaded and /lib/modules/{release} is not visible here \
                 (a kernel without modules, or a container without the host's /lib/modules)"
            ),
            format!(
                "{COST}\nFor the kernel backend run a kernel with CONFIG_WIREGUARD (mainline since 5.6; \
                 the stock Debian/Ubuntu/RHEL kernels have it), `modprobe wireguard`, {restart}"
            ),
        ),
        ModuleState::Missing { release, .. } => (
            format!("kernel {release} ships no wireguard module"),
            format!(
                "{COST}\nInstall the module for this kernel (e.g. `apt install linux-modules-extra-$(uname -r)` \
                 on Ubuntu; built in on Debian and RHEL kernels), `modprobe wireguard`, {restart}"
            ),
        ),
        ModuleState::Loadable => (
            "the wireguard module is installed but not loaded".into(),
            format!(
                "{COST}\n`modprobe wireguard` (and list it in /etc/modules-load.d/ for reboots), {restart}"
            ),
        ),
        ModuleState::Loaded | ModuleState::Builtin => (
            "the kernel module is available, yet the gateway runs the userspace engine: it started \
             before the module was loaded"
                .into(),
            format!("{COST}\nRestart the gateway to switch: {}", restart_gateway(target)),
        ),
    }
}

fn backend_word(backend: Backend) -> &'static str {
    match backend {
        Backend::Kernel => "kernel",
        Backend::Userspace | Backend::WireguardGo => "userspace",
    }
}

/// What the device on this node says.
fn observed(i: &Inputs<'_>) -> (Vec<Finding>, Option<Backend>) {
    let iface = &i.target.interface;
    match &i.facts.device {
        Err(err) => (
            vec![Finding::fail(
                format!("cannot read the WireGuard device {iface}: {err}"),
                format!(
                    "diagnose needs root (CAP_NET_ADMIN) in the gateway's network namespace (hostNetwork), \
                     and for a userspace engine its socket /var/run/wireguard/{iface}.sock"
                ),
            )],
            None,
        ),
        Ok(None) => {
            let reported = reported_interfaces(i);
            let other = reported
                .iter()
                .find(|r| *r != iface)
                .map(|r| format!(" The gateway reports interface {r}: pass --interface {r}."))
                .unwrap_or_default();
            (
                vec![Finding::fail(
                    format!("no interface {iface} on this node: no tunnel to any peer"),
                    format!(
                        "The gateway creates it when it leads and has at least one peer; with the userspace \
                         backend it exists only while the gateway process runs. Check that the gateway runs \
                         on this node and its logs: {}.{other}",
                        gateway_logs(i.target)
                    ),
                )],
                None,
            )
        }
        Ok(Some(DeviceView { backend, .. })) => {
            let finding = match backend {
                Backend::Kernel => Finding::ok(format!(
                    "kernel WireGuard carries the tunnel ({iface} is a wireguard link)"
                )),
                _ => {
                    let (why, hint) = module_advice(&i.facts.module, i.target);
                    Finding::warn(
                        format!(
                            "userspace WireGuard (gotatun) carries the tunnel on {iface}: {why}"
                        ),
                        hint,
                    )
                }
            };
            (vec![finding], Some(*backend))
        }
    }
}

fn reported_interfaces(i: &Inputs<'_>) -> BTreeSet<String> {
    i.desired
        .peers
        .iter()
        .filter_map(|p| p.status.as_ref()?.interface_name.clone())
        .collect()
}

/// What the TunnelEndpoints' status says, compared with what this node holds.
fn reported(i: &Inputs<'_>, here: Option<Backend>) -> Vec<Finding> {
    let peers = &i.desired.peers;
    if peers.is_empty() {
        return vec![Finding::warn(
            format!(
                "no TunnelEndpoint in namespace {}: nothing is peered",
                i.target.namespace
            ),
            "Peer a cluster (create its ForeignCluster), or point diagnose at the right namespace \
             (--namespace) and API (--kubeconfig, --server)",
        )];
    }
    let backends: BTreeSet<String> = peers
        .iter()
        .filter_map(|p| p.status.as_ref()?.backend.clone())
        .collect();
    let mut out = Vec::new();
    let ns = &i.target.namespace;
    match (backends.iter().next(), here) {
        (None, _) => out.push(Finding::warn(
            "no TunnelEndpoint reports a backend: the gateway has not written any status",
            format!(
                "Is a gateway running and leading? kubectl -n {ns} get lease; {}",
                gateway_logs(i.target)
            ),
        )),
        (Some(r), Some(b)) if backends.len() == 1 && r == backend_word(b) => {
            out.push(Finding::ok(format!("the gateway reports backend {r}")));
        }
        (Some(_), Some(b)) => out.push(Finding::warn(
            format!(
                "TunnelEndpoints report backend {} but the interface here is {}: their status is stale, \
                 or the gateway runs elsewhere",
                join(&backends),
                backend_word(b)
            ),
            "The gateway rewrites its status every probe interval; if it does not, it is not leading \
             (kubectl get lease) or runs on another node",
        )),
        (Some(_), None) if backends.contains("userspace") && !i.role.gateway => {
            let node = i.role.gateway_node.as_deref().unwrap_or("the gateway node");
            out.push(Finding::warn(
                format!(
                    "the gateway reports the userspace WireGuard backend: the kernel module was not \
                     usable on {node} when it started"
                ),
                format!("{COST}\nRun diagnose on {node}: it says how to get the module there."),
            ));
        }
        (Some(_), None) => {
            out.push(Finding::ok(format!("the gateway reports backend {}", join(&backends))));
        }
    }
    out
}

/// The interface the gateway reports, when it is not the one inspected.
fn other_interface(i: &Inputs<'_>) -> Option<Finding> {
    let interfaces = reported_interfaces(i);
    let other = interfaces.iter().find(|r| **r != i.target.interface)?;
    Some(Finding::warn(
        format!(
            "the gateway reports interface {other}, diagnose inspects {}",
            i.target.interface
        ),
        format!("Pass --interface {other}"),
    ))
}

fn join(set: &BTreeSet<String>) -> String {
    set.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// The check.
pub fn check(i: &Inputs<'_>) -> Check {
    let mut findings = Vec::new();
    let here = if i.role.gateway {
        let (found, backend) = observed(i);
        findings.extend(found);
        backend
    } else {
        None
    };
    findings.extend(reported(i, here));
    findings.extend(other_interface(i));
    Check::new(CheckId::WireguardBackend, findings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::diagnose::checks::fixtures::World;
    use crate::inspect::diagnose::report::Status;

    #[test]
    fn userspace_without_a_module_warns_with_the_cost_and_how_to_get_it() {
        let check = World::healthy().check(CheckId::WireguardBackend);
        assert_eq!(check.status, Status::Warn, "{check:#?}");
        let warn = check.with(Status::Warn).next().unwrap();
        assert!(
            warn.message.contains("userspace WireGuard (gotatun)"),
            "{warn:?}"
        );
        assert!(
            warn.message
                .contains("/lib/modules/6.18.0-test is not visible here"),
            "{warn:?}"
        );
        let hint = warn.hint.as_deref().unwrap();
        assert!(
            hint.contains("throughput") && hint.contains("modprobe wireguard"),
            "{hint}"
        );
        assert!(
            check
                .findings
                .iter()
                .any(|f| f.message == "the gateway reports backend userspace")
        );
    }

    #[test]
    fn a_loadable_module_says_modprobe_and_a_loaded_one_says_restart() {
        let mut w = World::healthy();
        w.facts.module = ModuleState::Loadable;
        let check = w.check(CheckId::WireguardBackend);
        assert!(
            check.findings[0]
                .message
                .contains("installed but not loaded")
        );
        w.facts.module = ModuleState::Loaded;
        let check = w.check(CheckId::WireguardBackend);
        assert!(
            check.findings[0]
                .message
                .contains("started before the module was loaded")
        );
        assert!(
            check.findings[0]
                .hint
                .as_deref()
                .unwrap()
                .contains("rollout restart")
        );
        // In the lab there is no Deployment to restart: the hint names the lab's own commands.
        w.target.lab = Some(crate::inspect::diagnose::desired::LabHints {
            command: "target/release/isthmus".into(),
            log: "/run/isthmus-lab/lab.log".into(),
        });
        let hint = w.check(CheckId::WireguardBackend).findings[0]
            .hint
            .clone()
            .unwrap();
        assert!(!hint.contains("kubectl"), "{hint}");
        assert!(
            hint.contains("sudo target/release/isthmus lab down"),
            "{hint}"
        );
    }

    #[test]
    fn the_kernel_backend_is_ok() {
        let mut w = World::healthy();
        w.set_backend(Backend::Kernel, "kernel");
        let check = w.check(CheckId::WireguardBackend);
        assert_eq!(check.status, Status::Ok, "{check:#?}");
    }

    #[test]
    fn a_missing_interface_fails_and_names_the_one_the_gateway_reports() {
        let mut w = World::healthy();
        w.facts.device = Ok(None);
        w.target.interface = "wg9".into();
        w.target.interface_given = true;
        w.facts
            .links
            .as_mut()
            .unwrap()
            .retain(|l| l.name != "isthmus0");
        w.target.node_name = Some("node0".into());
        let check = w.check(CheckId::WireguardBackend);
        assert_eq!(check.status, Status::Fail);
        let fail = check.with(Status::Fail).next().unwrap();
        assert!(fail.message.contains("no interface wg9"), "{fail:?}");
        assert!(
            fail.hint
                .as_deref()
                .unwrap()
                .contains("--interface isthmus0"),
            "{fail:?}"
        );
    }

    #[test]
    fn a_stale_status_backend_warns() {
        let mut w = World::healthy();
        w.set_backend(Backend::Kernel, "userspace");
        let check = w.check(CheckId::WireguardBackend);
        assert_eq!(check.status, Status::Warn);
        assert!(
            check
                .findings
                .iter()
                .any(|f| f.message.contains("status is stale"))
        );
    }
}
