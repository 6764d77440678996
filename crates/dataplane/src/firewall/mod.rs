//! Firewall: the NAT plan (docs/datapath.md), the driver trait, and what changes between two plans.
//!
//! One nftables table (`inet isthmus`) is ours. [`NatPlan`] is pure data derived from the validated
//! gateway spec; [`render`](render::render) turns it into one atomic JSON batch; [`changes`] decides
//! whether a new plan only adds or removes NatMapping map elements (sent as one small batch) or
//! needs the whole table replaced; [`delta`] sends just the NatMapping entries a watch saw
//! change, without planning the whole table, over [`netlink`] (no `nft` process). [`view`] reads a table back as comparable data
//! (inspection).

pub mod delta;
pub mod fake;
pub mod netlink;
pub mod nft;
pub mod render;
pub mod view;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::Result;
use crate::model::ValidSpec;

/// The table we own.
pub const TABLE: &str = "isthmus";

/// The NAT and forwarding plan of one gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatPlan {
    /// Table name (`isthmus`).
    pub table: String,
    /// The WireGuard interface.
    pub tunnel: String,
    /// Per-peer rules, sorted by peer name.
    pub peers: Vec<PeerNat>,
}

/// The rules for one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerNat {
    /// Peer cluster ID.
    pub name: String,
    /// The peer's ranges in our view: the key of every rule below.
    pub ranges: Vec<Ipv4Net>,
    /// `(real, view)`: SNAT `real -> view` out to the peer, DNAT `view -> real` in from it.
    pub prefix_nat: Vec<(Ipv4Net, Ipv4Net)>,
    /// Source for hub-path packets forwarded to this peer, in its view.
    pub transit_snat: Option<Ipv4Addr>,
    /// NatMapping entries for packets from this peer: `new_ip -> target`.
    pub mappings: BTreeMap<Ipv4Addr, Ipv4Addr>,
}

impl PeerNat {
    /// The nftables name of this peer's DNAT map.
    pub fn map_name(&self) -> String {
        format!("dnat_{}", self.name.replace('-', "_"))
    }
}

/// Translates `addr` inside `real` to the same host offset inside `view`.
fn translate(addr: Ipv4Addr, real: Ipv4Net, view: Ipv4Net) -> Ipv4Addr {
    let offset = u32::from(addr) & !u32::from(real.netmask());
    Ipv4Addr::from(u32::from(view.network()) | offset)
}

impl NatPlan {
    /// Derives the plan from a validated spec.
    pub fn from_spec(spec: &ValidSpec) -> NatPlan {
        let peers = spec
            .peers
            .iter()
            .map(|peer| {
                let transit_snat = spec.transit_source.map(|source| {
                    peer.local_nat
                        .iter()
                        .find(|(real, _)| real.contains(&source))
                        .map_or(source, |(real, view)| translate(source, *real, *view))
                });
                PeerNat {
                    name: peer.name.clone(),
                    ranges: peer.remote.clone(),
                    prefix_nat: peer.local_nat.clone(),
                    transit_snat,
                    mappings: peer.mappings.clone(),
                }
            })
            .collect();
        NatPlan {
            table: TABLE.into(),
            tunnel: spec.interface.clone(),
            peers,
        }
    }

    /// The plan without any map element: what a full replace is keyed on.
    pub fn skeleton(&self) -> NatPlan {
        let mut plan = self.clone();
        plan.peers.iter_mut().for_each(|peer| peer.mappings.clear());
        plan
    }

    /// Total NatMapping entries.
    pub fn mapping_count(&self) -> usize {
        self.peers.iter().map(|peer| peer.mappings.len()).sum()
    }
}

/// Map element changes for one peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ElementChange {
    /// The map (`dnat_<peer>`).
    pub map: String,
    /// Entries to add or overwrite.
    pub upsert: Vec<(Ipv4Addr, Ipv4Addr)>,
    /// Keys to delete (including keys whose target changed, deleted before re-adding).
    pub delete: Vec<Ipv4Addr>,
}

/// What it takes to go from the applied plan to the desired one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Nothing.
    None,
    /// Only map elements differ.
    Elements(Vec<ElementChange>),
    /// Rebuild the whole table atomically.
    Replace,
}

/// Pure diff between what was applied and what is wanted.
pub fn changes(applied: Option<&NatPlan>, desired: &NatPlan) -> Change {
    let Some(applied) = applied else {
        return Change::Replace;
    };
    if applied.skeleton() != desired.skeleton() {
        return Change::Replace;
    }
    let mut out = Vec::new();
    for (old, new) in applied.peers.iter().zip(&desired.peers) {
        let mut change = ElementChange {
            map: new.map_name(),
            ..Default::default()
        };
        for (key, target) in &new.mappings {
            match old.mappings.get(key) {
                Some(current) if current == target => {}
                Some(_) => {
                    change.delete.push(*key);
                    change.upsert.push((*key, *target));
                }
                None => change.upsert.push((*key, *target)),
            }
        }
        change.delete.extend(
            old.mappings
                .keys()
                .filter(|k| !new.mappings.contains_key(k)),
        );
        if !change.upsert.is_empty() || !change.delete.is_empty() {
            out.push(change);
        }
    }
    if out.is_empty() {
        Change::None
    } else {
        Change::Elements(out)
    }
}

/// How an apply went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Already in place.
    Unchanged,
    /// Map elements were changed in one batch.
    Incremental,
    /// The whole table was (re)built in one batch.
    Replaced,
}

/// The firewall of one network namespace.
pub trait FirewallDriver: Send {
    /// Makes our table match `plan` in one atomic batch, using element changes when they suffice.
    fn apply(&mut self, plan: &NatPlan) -> Result<Applied>;
    /// Changes only the DNAT map elements `deltas` name, in one batch, on top of what was
    /// applied (an error when nothing was; a failed batch forgets the record).
    fn apply_delta(&mut self, deltas: &[delta::MapDelta]) -> Result<Applied>;
    /// Whether the kernel still holds what was applied (false after an outside flush or delete).
    fn intact(&mut self) -> Result<bool>;
    /// The last plan applied, if any.
    fn applied(&self) -> Option<&NatPlan>;
    /// Forgets the record so the next apply rebuilds the table.
    fn forget(&mut self);
    /// Deletes our table. Other tables are never touched.
    fn remove(&mut self) -> Result<()>;
}

/// The apply logic both drivers share: diff, send one batch, record on success.
///
/// An element batch that fails (say the map vanished under us) falls back to a full replace.
pub(crate) fn apply_with(
    applied: &mut Option<NatPlan>,
    plan: &NatPlan,
    mut send: impl FnMut(&serde_json::Value) -> Result<()>,
) -> Result<Applied> {
    let outcome = match changes(applied.as_ref(), plan) {
        Change::None => return Ok(Applied::Unchanged),
        Change::Elements(list) => match send(&render::render_elements(&plan.table, &list)) {
            Ok(()) => Applied::Incremental,
            Err(err) => {
                tracing::warn!(error = %err, "element batch failed; rebuilding the table");
                *applied = None;
                send(&render::render(plan))?;
                Applied::Replaced
            }
        },
        Change::Replace => {
            *applied = None;
            send(&render::render(plan))?;
            Applied::Replaced
        }
    };
    tracing::debug!(table = %plan.table, ?outcome, peers = plan.peers.len(), mappings = plan.mapping_count(), "nftables applied");
    *applied = Some(plan.clone());
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(mappings: &[(u8, u8)]) -> NatPlan {
        NatPlan {
            table: TABLE.into(),
            tunnel: "wg0".into(),
            peers: vec![PeerNat {
                name: "cluster-b".into(),
                ranges: vec!["10.101.0.0/24".parse().unwrap()],
                prefix_nat: vec![],
                transit_snat: None,
                mappings: mappings
                    .iter()
                    .map(|(k, v)| (Ipv4Addr::new(10, 201, 0, *k), Ipv4Addr::new(10, 112, 0, *v)))
                    .collect(),
            }],
        }
    }

    #[test]
    fn first_apply_replaces() {
        assert_eq!(changes(None, &plan(&[])), Change::Replace);
    }

    #[test]
    fn element_only_changes_are_incremental() {
        let change = changes(Some(&plan(&[(1, 1), (2, 2)])), &plan(&[(2, 9), (3, 3)]));
        let Change::Elements(list) = change else {
            panic!("{change:?}")
        };
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].map, "dnat_cluster_b");
        assert_eq!(
            list[0].delete,
            [Ipv4Addr::new(10, 201, 0, 2), Ipv4Addr::new(10, 201, 0, 1)]
        );
        assert_eq!(list[0].upsert.len(), 2);
        assert_eq!(
            changes(Some(&plan(&[(1, 1)])), &plan(&[(1, 1)])),
            Change::None
        );
    }

    #[test]
    fn rule_changes_replace() {
        let mut other = plan(&[]);
        other.peers[0].ranges.push("10.201.0.0/24".parse().unwrap());
        assert_eq!(changes(Some(&plan(&[])), &other), Change::Replace);
    }

    #[test]
    fn transit_source_is_translated_into_the_peer_view() {
        let real: Ipv4Net = "10.200.0.0/24".parse().unwrap();
        let view: Ipv4Net = "10.210.0.0/24".parse().unwrap();
        assert_eq!(
            translate(Ipv4Addr::new(10, 200, 0, 1), real, view),
            Ipv4Addr::new(10, 210, 0, 1)
        );
    }
}
