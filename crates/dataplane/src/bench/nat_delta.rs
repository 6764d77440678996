//! The NatMapping delta benchmark (`isthmus bench nat-delta`): the time the gateway's firewall
//! driver takes to apply one-element deltas ([`FirewallDriver::apply_delta`]), through an `nft`
//! process per delta and through one netlink batch, in a namespace it creates and removes.

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Instant;

use super::measure::Latency;
use crate::firewall::delta::MapDelta;
use crate::firewall::nft::{ElementPath, NftFirewall};
use crate::firewall::{Applied, FirewallDriver, NatPlan, PeerNat, TABLE};
use crate::lab::{self, NsGuard};
use crate::netns::NsRuntime;
use crate::{Error, Result};

/// What to run.
#[derive(Debug, Clone)]
pub struct NatDeltaBenchOptions {
    /// One-element deltas timed per path.
    pub deltas: usize,
    /// The paths measured, in order.
    pub paths: Vec<ElementPath>,
}

/// One path's apply times (µs).
#[derive(Debug, Clone)]
pub struct PathTimes {
    /// The path.
    pub path: ElementPath,
    /// Per delta.
    pub latency: Latency,
}

/// Everything measured.
#[derive(Debug, Clone)]
pub struct NatDeltaReport {
    /// Deltas per path.
    pub deltas: usize,
    /// Per path.
    pub paths: Vec<PathTimes>,
}

/// Runs the benchmark. Needs root.
pub fn run(options: &NatDeltaBenchOptions) -> Result<NatDeltaReport> {
    let ns = NsGuard::new(lab::unique("nlbn"))?;
    let rt = NsRuntime::new(ns.netns(), 1)?;
    let mut firewall = NftFirewall::new(rt);
    let plan = NatPlan {
        table: TABLE.into(),
        tunnel: "wg0".into(),
        peers: vec![PeerNat {
            name: "site-1".into(),
            ranges: vec!["10.1.0.0/24".parse().expect("v4")],
            prefix_nat: vec![],
            transit_snat: None,
            mappings: Default::default(),
        }],
    };
    let mut paths = Vec::new();
    for path in &options.paths {
        firewall.forget();
        firewall.apply(&plan)?; // a fresh, empty map for each path
        firewall.set_element_path(*path);
        paths.push(PathTimes {
            path: *path,
            latency: time_deltas(&mut firewall, options.deltas)?,
        });
    }
    firewall.remove()?;
    Ok(NatDeltaReport {
        deltas: options.deltas,
        paths,
    })
}

/// Applies `count` deltas, each adding one new key, and times each.
fn time_deltas(firewall: &mut NftFirewall, count: usize) -> Result<Latency> {
    let base = u32::from(Ipv4Addr::new(10, 50, 0, 0));
    let mut samples = Vec::with_capacity(count);
    for i in 0..count as u32 {
        let delta = MapDelta {
            peer: "site-1".into(),
            entries: vec![(Ipv4Addr::from(base + i), Some(Ipv4Addr::new(10, 0, 0, 10)))],
        };
        let start = Instant::now();
        let applied = firewall.apply_delta(&[delta])?;
        samples.push(start.elapsed().as_secs_f64() * 1e6);
        if applied != Applied::Incremental {
            return Err(Error::invalid(format!("delta {i} was {applied:?}")));
        }
    }
    Ok(Latency::from_samples(samples))
}

fn label(path: ElementPath) -> &'static str {
    match path {
        ElementPath::Nft => "nft -j -f - per delta",
        ElementPath::Netlink => "netlink batch",
    }
}

impl fmt::Display for NatDeltaReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "NatMapping deltas: {} one-element applies per path (µs).\n",
            self.deltas
        )?;
        writeln!(f, "| path | mean | p50 | p99 | max |")?;
        writeln!(f, "|---|---:|---:|---:|---:|")?;
        for p in &self.paths {
            let l = &p.latency;
            writeln!(
                f,
                "| {} | {:.0} | {:.0} | {:.0} | {:.0} |",
                label(p.path),
                l.mean_us,
                l.p50_us,
                l.p99_us,
                l.max_us
            )?;
        }
        Ok(())
    }
}
