//! The Linux firewall driver: JSON batches through the `nft` binary, run inside the namespace.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use nftables::helper::{self, DEFAULT_ARGS, DEFAULT_NFT, NftablesError};
use serde_json::Value;

use super::{Applied, FirewallDriver, NatPlan, TABLE, apply_with, render};
use crate::netns::NsRuntime;
use crate::{Error, Result};

/// Drives our nftables table in one namespace and remembers what it applied.
#[derive(Debug)]
pub struct NftFirewall {
    ns: Arc<NsRuntime>,
    table: String,
    applied: Option<NatPlan>,
}

impl NftFirewall {
    /// A driver for the table `isthmus` in the runtime's namespace. Nothing is applied yet:
    /// the first apply rebuilds the table, which is how a restarted gateway converges.
    pub fn new(ns: Arc<NsRuntime>) -> Self {
        NftFirewall {
            ns,
            table: TABLE.into(),
            applied: None,
        }
    }

    fn send(&self, batch: &Value) -> Result<()> {
        let payload = batch.to_string();
        self.ns
            .run_blocking(move || helper::apply_ruleset_raw(&payload, DEFAULT_NFT, DEFAULT_ARGS))
            .map(drop)
            .map_err(|err| Error::Firewall(describe(err)))
    }

    /// The table as the kernel has it (terse: without map elements), or `None` when it is absent.
    fn list_terse(&self) -> Result<Option<Value>> {
        list(&self.ns, &self.table, true)
    }
}

/// `nft -j list table inet <table>` inside the runtime's namespace, map elements included:
/// `None` when the table does not exist. Read-only; for inspection (`isthmus diagnose`), to be
/// read with [`TableView::from_listing`](super::view::TableView::from_listing).
pub fn read_table(ns: &NsRuntime, table: &str) -> Result<Option<Value>> {
    list(ns, table, false)
}

fn list(ns: &NsRuntime, table: &str, terse: bool) -> Result<Option<Value>> {
    let table = table.to_owned();
    let out = ns.run_blocking(move || {
        let mut args = vec!["list", "table", "inet", table.as_str()];
        if terse {
            args.insert(0, "-t");
        }
        helper::get_current_ruleset_raw(DEFAULT_NFT, args)
    });
    match out {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Firewall(e.to_string())),
        Err(NftablesError::NftFailed { stderr, .. }) if stderr.contains("No such file") => Ok(None),
        Err(NftablesError::NftFailed { .. }) if terse => Ok(None),
        Err(err) => Err(Error::Firewall(describe(err))),
    }
}

fn describe(err: NftablesError) -> String {
    match err {
        NftablesError::NftFailed { stderr, .. } => stderr.trim().to_owned(),
        other => other.to_string(),
    }
}

/// Rule counts per chain and map names found in a terse listing.
fn census(listing: &Value) -> (BTreeMap<String, usize>, BTreeSet<String>) {
    let mut rules = BTreeMap::new();
    let mut maps = BTreeSet::new();
    for object in listing["nftables"].as_array().into_iter().flatten() {
        if let Some(chain) = object["rule"]["chain"].as_str() {
            *rules.entry(chain.to_owned()).or_insert(0) += 1;
        }
        if let Some(name) = object["map"]["name"].as_str() {
            maps.insert(name.to_owned());
        }
    }
    (rules, maps)
}

impl FirewallDriver for NftFirewall {
    fn apply(&mut self, plan: &NatPlan) -> Result<Applied> {
        let mut applied = self.applied.take();
        let result = apply_with(&mut applied, plan, |batch| self.send(batch));
        self.applied = applied;
        result
    }

    fn intact(&mut self) -> Result<bool> {
        let Some(plan) = &self.applied else {
            return Ok(false);
        };
        let Some(listing) = self.list_terse()? else {
            return Ok(false);
        };
        let (rules, maps) = census(&listing);
        let want_maps: BTreeSet<String> = plan.peers.iter().map(|p| p.map_name()).collect();
        Ok(rules == render::rule_counts(plan) && maps == want_maps)
    }

    fn applied(&self) -> Option<&NatPlan> {
        self.applied.as_ref()
    }

    fn forget(&mut self) {
        self.applied = None;
    }

    fn remove(&mut self) -> Result<()> {
        self.send(&render::render_removal(&self.table))?;
        self.applied = None;
        Ok(())
    }
}
