//! The connectivity matrix: every pod to every remote pod it can reach, through the address the
//! reflector got from `MapEndpointIP`, with the measured round-trip time; rendered as a list and as
//! a cluster-by-cluster summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::Duration;

use crate::lab::plan::cluster_name;

/// One probe: a pod of `from` to a pod of `to`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Probe {
    pub from: usize,
    pub from_pod: String,
    pub to: usize,
    pub to_pod: String,
    pub via: Option<usize>,
    /// The address dialled.
    pub address: Ipv4Addr,
    /// Round-trip time, `None` when no reply came.
    pub rtt: Option<Duration>,
}

/// All probes of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Matrix {
    pub probes: Vec<Probe>,
}

/// `0.42 ms`
pub fn format_rtt(rtt: Option<Duration>) -> String {
    match rtt {
        Some(d) => format!("{:.2} ms", d.as_secs_f64() * 1e3),
        None => "no reply".to_owned(),
    }
}

impl Matrix {
    /// Whether every probe got a reply.
    pub fn all_reachable(&self) -> bool {
        !self.probes.is_empty() && self.probes.iter().all(|p| p.rtt.is_some())
    }

    /// The list: one line per probe.
    pub fn render_list(&self) -> String {
        let mut out = format!(
            "{:<12} {:<12} {:<16} {:<5} {}\n",
            "FROM", "TO", "ADDRESS", "VIA", "RTT"
        );
        for p in &self.probes {
            let via = p.via.map_or("-".to_owned(), cluster_name);
            let _ = writeln!(
                out,
                "{:<12} {:<12} {:<16} {:<5} {}",
                format!("{}/{}", cluster_name(p.from), p.from_pod),
                format!("{}/{}", cluster_name(p.to), p.to_pod),
                p.address,
                via,
                format_rtt(p.rtt)
            );
        }
        out
    }

    /// The summary: clusters by clusters, `ok` (or `ok via b`) when every probe between them got
    /// a reply, with the median round-trip time.
    pub fn render_summary(&self, clusters: usize) -> String {
        let mut cells: BTreeMap<(usize, usize), Vec<&Probe>> = BTreeMap::new();
        for p in &self.probes {
            cells.entry((p.from, p.to)).or_default().push(p);
        }
        let width = 22;
        let mut out = format!("{:<8}", "from\\to");
        for to in 0..clusters {
            let _ = write!(out, "{:<width$}", cluster_name(to));
        }
        out.push('\n');
        for from in 0..clusters {
            let _ = write!(out, "{:<8}", cluster_name(from));
            for to in 0..clusters {
                let cell = match cells.get(&(from, to)) {
                    _ if from == to => "·".to_owned(),
                    None => "(no path)".to_owned(),
                    Some(probes) => summarize(probes),
                };
                let _ = write!(out, "{cell:<width$}");
            }
            out.push('\n');
        }
        out
    }
}

fn summarize(probes: &[&Probe]) -> String {
    let ok = probes.iter().filter(|p| p.rtt.is_some()).count();
    if ok < probes.len() {
        return format!("FAIL {ok}/{}", probes.len());
    }
    let mut rtts: Vec<Duration> = probes.iter().filter_map(|p| p.rtt).collect();
    rtts.sort();
    let median = rtts[rtts.len() / 2];
    match probes[0].via {
        Some(hub) => format!("ok {} via {}", format_rtt(Some(median)), cluster_name(hub)),
        None => format!("ok {}", format_rtt(Some(median))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(from: usize, to: usize, via: Option<usize>, rtt_us: Option<u64>) -> Probe {
        Probe {
            from,
            from_pod: "p0".into(),
            to,
            to_pod: "p0".into(),
            via,
            address: Ipv4Addr::new(10, 1, 0, 10),
            rtt: rtt_us.map(Duration::from_micros),
        }
    }

    #[test]
    fn summary_names_the_hub_and_failures() {
        let m = Matrix {
            probes: vec![
                probe(0, 1, None, Some(400)),
                probe(0, 2, Some(1), Some(900)),
                probe(2, 0, Some(1), None),
            ],
        };
        assert!(!m.all_reachable());
        let s = m.render_summary(3);
        assert!(s.contains("ok 0.40 ms"), "{s}");
        assert!(s.contains("ok 0.90 ms via b"), "{s}");
        assert!(s.contains("FAIL 0/1"), "{s}");
        assert!(s.contains("(no path)"), "{s}");
        assert!(m.render_list().contains("a/p0"));
    }
}
