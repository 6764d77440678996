//! NatMapping deltas: some entries of some peers' DNAT maps changed and nothing else did, so
//! only those map elements are sent, in one batch, without re-planning or diffing the whole
//! table. A delta says, per key, the value wanted now (`None`: no entry), so applying it twice
//! or after a full apply that already has it changes nothing.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::{Applied, ElementChange, NatPlan};
use crate::{Error, Result};

/// The entries of one peer's DNAT map wanted now, for the keys that changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapDelta {
    /// Peer cluster ID (the peer's name in the plan).
    pub peer: String,
    /// New IP → its target now, or `None` when the entry is gone.
    pub entries: Vec<(Ipv4Addr, Option<Ipv4Addr>)>,
}

impl MapDelta {
    /// How many keys it names.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it names no key.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The element changes that take `applied` to what `deltas` want (later deltas win for a key).
/// Peers the plan does not hold are skipped: their full programming will bring their entries.
pub fn element_changes(applied: &NatPlan, deltas: &[MapDelta]) -> Vec<ElementChange> {
    let mut wanted: BTreeMap<&str, BTreeMap<Ipv4Addr, Option<Ipv4Addr>>> = BTreeMap::new();
    for delta in deltas {
        let keys = wanted.entry(delta.peer.as_str()).or_default();
        keys.extend(delta.entries.iter().copied());
    }
    let mut out = Vec::new();
    for peer in &applied.peers {
        let Some(keys) = wanted.get(peer.name.as_str()) else {
            continue;
        };
        let mut change = ElementChange {
            map: peer.map_name(),
            ..Default::default()
        };
        for (key, want) in keys {
            match (peer.mappings.get(key), want) {
                (Some(have), Some(want)) if have == want => {}
                (Some(_), Some(want)) => {
                    change.delete.push(*key);
                    change.upsert.push((*key, *want));
                }
                (None, Some(want)) => change.upsert.push((*key, *want)),
                (Some(_), None) => change.delete.push(*key),
                (None, None) => {}
            }
        }
        if !change.upsert.is_empty() || !change.delete.is_empty() {
            out.push(change);
        }
    }
    out
}

/// Records element changes in the applied plan.
fn record(applied: &mut NatPlan, changes: &[ElementChange]) {
    for change in changes {
        let Some(peer) = applied
            .peers
            .iter_mut()
            .find(|p| p.map_name() == change.map)
        else {
            continue;
        };
        for key in &change.delete {
            peer.mappings.remove(key);
        }
        peer.mappings.extend(change.upsert.iter().copied());
    }
}

/// The delta logic both drivers share: element changes against the record, one batch (`send`
/// gets the table and the changes), the record updated on success. Nothing applied yet is an error (a full apply is needed); a
/// failed batch forgets the record, so the next full apply rebuilds the table.
pub(crate) fn apply_delta_with(
    applied: &mut Option<NatPlan>,
    deltas: &[MapDelta],
    mut send: impl FnMut(&str, &[ElementChange]) -> Result<()>,
) -> Result<Applied> {
    let Some(plan) = applied.as_mut() else {
        return Err(Error::Firewall(
            "no table applied yet: a NatMapping delta needs a full apply first".into(),
        ));
    };
    let changes = element_changes(plan, deltas);
    if changes.is_empty() {
        return Ok(Applied::Unchanged);
    }
    if let Err(err) = send(&plan.table, &changes) {
        *applied = None;
        return Err(err);
    }
    let elements: usize = changes
        .iter()
        .map(|c| c.upsert.len() + c.delete.len())
        .sum();
    tracing::debug!(table = %plan.table, maps = changes.len(), elements, "NatMapping delta applied");
    record(plan, &changes);
    Ok(Applied::Incremental)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::{PeerNat, TABLE};

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 201, 0, last)
    }

    fn plan() -> NatPlan {
        NatPlan {
            table: TABLE.into(),
            tunnel: "wg0".into(),
            peers: vec![PeerNat {
                name: "cluster-b".into(),
                ranges: vec!["10.101.0.0/24".parse().unwrap()],
                prefix_nat: vec![],
                transit_snat: None,
                mappings: [(ip(1), ip(101)), (ip(2), ip(102))].into(),
            }],
        }
    }

    #[test]
    fn only_the_named_keys_that_differ_are_sent_and_recorded() {
        let mut applied = Some(plan());
        let deltas = [
            MapDelta {
                peer: "cluster-b".into(),
                entries: vec![
                    (ip(1), Some(ip(101))),
                    (ip(2), None),
                    (ip(3), Some(ip(103))),
                ],
            },
            MapDelta {
                peer: "unknown".into(),
                entries: vec![(ip(9), Some(ip(109)))],
            },
        ];
        let mut sent = Vec::new();
        let outcome = apply_delta_with(&mut applied, &deltas, |table, changes| {
            sent.push(crate::firewall::render::render_elements(table, changes));
            Ok(())
        })
        .unwrap();
        assert_eq!(outcome, Applied::Incremental);
        assert_eq!(sent.len(), 1);
        let text = sent[0].to_string();
        assert!(text.contains("10.201.0.2") && text.contains("10.201.0.3"));
        assert!(!text.contains("10.201.0.1\"") && !text.contains("10.201.0.9"));
        let mappings = &applied.as_ref().unwrap().peers[0].mappings;
        assert_eq!(mappings, &[(ip(1), ip(101)), (ip(3), ip(103))].into());
        // the same delta again changes nothing
        let again = apply_delta_with(&mut applied, &deltas, |_, _| panic!("nothing to send"));
        assert_eq!(again.unwrap(), Applied::Unchanged);
    }

    #[test]
    fn a_changed_target_is_deleted_then_added_and_a_failure_forgets_the_record() {
        let changes = element_changes(
            &plan(),
            &[MapDelta {
                peer: "cluster-b".into(),
                entries: vec![(ip(1), Some(ip(7)))],
            }],
        );
        assert_eq!(changes[0].delete, [ip(1)]);
        assert_eq!(changes[0].upsert, [(ip(1), ip(7))]);
        let mut applied = Some(plan());
        let delta = [MapDelta {
            peer: "cluster-b".into(),
            entries: vec![(ip(4), Some(ip(104)))],
        }];
        let failed = apply_delta_with(&mut applied, &delta, |_, _| {
            Err(Error::Firewall("x".into()))
        });
        assert!(failed.is_err() && applied.is_none());
        assert!(apply_delta_with(&mut None, &delta, |_, _| Ok(())).is_err());
    }
}
