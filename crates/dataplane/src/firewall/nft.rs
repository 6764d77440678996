//! The Linux firewall driver: JSON batches through the `nft` binary, run inside the namespace,
//! for whole tables and plan-driven element changes; NatMapping deltas as one netlink batch
//! ([`super::netlink`]) unless told to use `nft` for them too ([`ElementPath`]).
//!
//! The repair check ([`FirewallDriver::intact`]) lists the whole table only when it must: the
//! namespace's ruleset generation (one netlink request) grows with every commit to any table,
//! so when it is still the one at which the table was last known to equal the record, and every
//! commit since was one of ours that kept it so, nothing can have changed.

use crate::firewall::view::{TableView, diff};
use std::sync::Arc;

use nftables::helper::{self, DEFAULT_ARGS, DEFAULT_NFT, NftablesError};
use serde_json::Value;

use super::delta::{MapDelta, apply_delta_with};
use super::netlink::NlNftError;
use super::netlink::socket::ElementSocket;
use super::{Applied, ElementChange, FirewallDriver, NatPlan, TABLE, apply_with, render};
use crate::netns::NsRuntime;
use crate::{Error, Result};

/// How NatMapping deltas reach the kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ElementPath {
    /// One nfnetlink batch on a socket kept open in the namespace.
    #[default]
    Netlink,
    /// A JSON batch through an `nft` process, like everything else (the benchmark's reference).
    Nft,
}

/// Drives our nftables table in one namespace and remembers what it applied.
#[derive(Debug)]
pub struct NftFirewall {
    ns: Arc<NsRuntime>,
    table: String,
    applied: Option<NatPlan>,
    path: ElementPath,
    socket: Option<ElementSocket>,
    /// The ruleset generation at which the kernel's table was known to equal `applied`.
    clean: Option<u32>,
    /// How many repair checks listed the whole table.
    listings: u64,
}

impl NftFirewall {
    /// A driver for the table `isthmus` in the runtime's namespace. Nothing is applied yet:
    /// the first apply rebuilds the table, which is how a restarted gateway converges.
    pub fn new(ns: Arc<NsRuntime>) -> Self {
        NftFirewall {
            ns,
            table: TABLE.into(),
            applied: None,
            path: ElementPath::default(),
            socket: None,
            clean: None,
            listings: 0,
        }
    }

    /// Chooses how NatMapping deltas are sent (netlink by default).
    pub fn set_element_path(&mut self, path: ElementPath) {
        self.path = path;
    }

    /// How many repair checks had to list the whole table (the others were answered by the
    /// ruleset generation).
    pub fn listings(&self) -> u64 {
        self.listings
    }

    /// The netfilter socket, opened in the namespace on first use.
    fn socket(&mut self) -> Result<&mut ElementSocket> {
        let socket = match self.socket.take() {
            Some(socket) => socket,
            None => self.ns.run_blocking(ElementSocket::open)?,
        };
        Ok(self.socket.insert(socket))
    }

    /// The namespace's ruleset generation, or `None` when it cannot be read (the socket is
    /// dropped, to be reopened; the repair check then lists the table).
    fn generation(&mut self) -> Option<u32> {
        match self.socket().map(ElementSocket::generation) {
            Ok(Ok(generation)) => Some(generation),
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "ruleset generation unreadable");
                self.socket = None;
                None
            }
            Err(err) => {
                tracing::debug!(error = %err, "ruleset generation unreadable");
                None
            }
        }
    }

    /// Runs one commit of ours and keeps the table known clean only if it was before and the
    /// generation moved by exactly this one commit.
    fn committed(&mut self, commit: impl FnOnce(&mut Self) -> Result<()>) -> Result<()> {
        let before = self.clean.take().and_then(|clean| {
            let now = self.generation()?;
            (now == clean).then_some(now)
        });
        commit(self)?;
        if let Some(before) = before
            && self.generation() == Some(before.wrapping_add(1))
        {
            self.clean = Some(before.wrapping_add(1));
        }
        Ok(())
    }

    /// Sends element changes the way [`ElementPath`] says. A batch too large for one netlink
    /// send goes through `nft`; a socket error drops the socket so the next delta reopens it.
    fn send_elements(&mut self, table: &str, changes: &[ElementChange]) -> Result<()> {
        self.committed(|this| this.send_elements_now(table, changes))
    }

    fn send_elements_now(&mut self, table: &str, changes: &[ElementChange]) -> Result<()> {
        if self.path == ElementPath::Nft {
            return self.send_now(&render::render_elements(table, changes));
        }
        match self.socket()?.apply(table, changes) {
            Ok(()) => Ok(()),
            Err(NlNftError::TooLarge { bytes }) => {
                tracing::debug!(bytes, "element batch too large for netlink; using nft");
                self.send_now(&render::render_elements(table, changes))
            }
            Err(err) => {
                if matches!(err, NlNftError::Io { .. }) {
                    self.socket = None;
                }
                Err(err.into())
            }
        }
    }

    /// One `nft -j -f -` batch: one commit.
    fn send(&mut self, batch: &Value) -> Result<()> {
        self.committed(|this| this.send_now(batch))
    }

    fn send_now(&self, batch: &Value) -> Result<()> {
        let payload = batch.to_string();
        self.ns
            .run_blocking(move || helper::apply_ruleset_raw(&payload, DEFAULT_NFT, DEFAULT_ARGS))
            .map(drop)
            .map_err(|err| Error::Firewall(describe(err)))
    }
}

/// `nft -j list table inet <table>` inside the runtime's namespace, map elements included:
/// `None` when the table does not exist. Read-only: the repair check and `isthmus diagnose`
/// read it with [`TableView::from_listing`](super::view::TableView::from_listing).
pub fn read_table(ns: &NsRuntime, table: &str) -> Result<Option<Value>> {
    let table = table.to_owned();
    let out = ns.run_blocking(move || {
        let args = vec!["list", "table", "inet", table.as_str()];
        helper::get_current_ruleset_raw(DEFAULT_NFT, args)
    });
    match out {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| Error::Firewall(e.to_string())),
        Err(NftablesError::NftFailed { stderr, .. }) if stderr.contains("No such file") => Ok(None),
        Err(err) => Err(Error::Firewall(describe(err))),
    }
}

fn describe(err: NftablesError) -> String {
    match err {
        NftablesError::NftFailed { stderr, .. } => stderr.trim().to_owned(),
        other => other.to_string(),
    }
}

impl FirewallDriver for NftFirewall {
    fn apply(&mut self, plan: &NatPlan) -> Result<Applied> {
        let mut applied = self.applied.take();
        let result = apply_with(&mut applied, plan, |batch| self.send(batch));
        self.applied = applied;
        result
    }

    fn apply_delta(&mut self, deltas: &[MapDelta]) -> Result<Applied> {
        let mut applied = self.applied.take();
        let result = apply_delta_with(&mut applied, deltas, |table, changes| {
            self.send_elements(table, changes)
        });
        self.applied = applied;
        result
    }

    /// Exact: the kernel's table (chains, rules, maps and every element) compared with what
    /// the applied plan renders to. A rule edited in place or one DNAT element deleted from
    /// outside counts as a change, and the next apply rebuilds the table. The listing is
    /// skipped while the ruleset generation shows no commit but ours since the last one.
    fn intact(&mut self) -> Result<bool> {
        if self.applied.is_none() {
            return Ok(false);
        }
        // read before the listing: a commit between the two only makes the next check list again
        let generation = self.generation();
        if generation.is_some() && generation == self.clean {
            return Ok(true);
        }
        self.clean = None;
        self.listings += 1;
        let Some(listing) = read_table(&self.ns, &self.table)? else {
            return Ok(false);
        };
        let Some(plan) = &self.applied else {
            return Ok(false);
        };
        let want = TableView::from_batch(&render::render(plan), &self.table);
        let have = TableView::from_listing(&listing, &self.table);
        let diff = diff(&want, &have);
        if !diff.is_empty() {
            tracing::debug!(?diff, "our nftables table differs from what was applied");
            return Ok(false);
        }
        self.clean = generation;
        Ok(true)
    }

    fn applied(&self) -> Option<&NatPlan> {
        self.applied.as_ref()
    }

    fn forget(&mut self) {
        self.applied = None;
        self.clean = None;
    }

    fn remove(&mut self) -> Result<()> {
        self.send(&render::render_removal(&self.table))?;
        self.applied = None;
        Ok(())
    }
}
