//! The gateway's finalizer on TunnelEndpoints, [`FINALIZER`]: the fact "this peer may still be
//! in the kernel". The leader puts it on a TunnelEndpoint before it programs that peer, and
//! takes it off a deleted TunnelEndpoint only after a reconcile without the peer (or the removal
//! of the whole datapath) succeeded: the peer's WireGuard peer, routes and NAT rules are gone.
//! So a TunnelEndpoint that has disappeared from the API has nothing left in the kernel, and
//! whoever waits for it (`isthmus unpeer`) waits for the kernel too.
//!
//! The patches are pure ([`add_patch`], [`remove_patch`]) and guarded by a JSON-patch `test`,
//! so two writers never lose each other's finalizers; [`Finalizers`] sends them.

use std::collections::BTreeSet;

use isthmus_api::TunnelEndpoint;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

/// The gateway's finalizer.
pub const FINALIZER: &str = "net.isthmus.io/gateway";

/// Whether the TunnelEndpoint is being deleted.
pub fn deleting(tep: &TunnelEndpoint) -> bool {
    tep.metadata.deletion_timestamp.is_some()
}

/// Whether the TunnelEndpoint carries the gateway's finalizer.
pub fn held(tep: &TunnelEndpoint) -> bool {
    tep.finalizers().iter().any(|f| f == FINALIZER)
}

/// A JSON patch adding [`FINALIZER`] to an object whose finalizers are `current`; it fails
/// (422) if they changed meanwhile.
pub fn add_patch(current: &[String]) -> Value {
    if current.is_empty() {
        return json!([
            { "op": "test", "path": "/metadata/finalizers", "value": null },
            { "op": "add", "path": "/metadata/finalizers", "value": [FINALIZER] },
        ]);
    }
    json!([
        { "op": "test", "path": "/metadata/finalizers", "value": current },
        { "op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER },
    ])
}

/// A JSON patch removing [`FINALIZER`] from `current`; `None` when it is not there.
pub fn remove_patch(current: &[String]) -> Option<Value> {
    let index = current.iter().position(|f| f == FINALIZER)?;
    let path = format!("/metadata/finalizers/{index}");
    Some(json!([
        { "op": "test", "path": path, "value": FINALIZER },
        { "op": "remove", "path": path },
    ]))
}

fn json_patch(value: Value) -> Patch<()> {
    Patch::Json(serde_json::from_value(value).expect("a JSON patch built here parses"))
}

/// Sends the finalizer patches; remembers which TunnelEndpoints (by uid) it has marked, because
/// the watch store may not show its own patch yet.
#[derive(Debug, Default)]
pub struct Finalizers {
    marked: BTreeSet<String>,
}

impl Finalizers {
    /// Puts the finalizer on every TunnelEndpoint of `teps` that lacks it; returns how many
    /// patches failed. A failure is logged: the peer is programmed anyway (a missing
    /// finalizer only means its deletion will not wait for the kernel), and retried next time.
    pub async fn hold(&mut self, api: &Api<TunnelEndpoint>, teps: &[&TunnelEndpoint]) -> usize {
        let mut failed = 0;
        for tep in teps {
            let uid = tep.uid().unwrap_or_default();
            if held(tep) || self.marked.contains(&uid) || deleting(tep) {
                continue;
            }
            let patch = json_patch(add_patch(tep.finalizers()));
            match api
                .patch(&tep.name_any(), &PatchParams::default(), &patch)
                .await
            {
                Ok(_) => {
                    self.marked.insert(uid);
                }
                Err(err) => {
                    failed += 1;
                    tracing::warn!(tunnel_endpoint = %tep.name_any(), error = %err,
                        "cannot add the gateway finalizer; programming the peer anyway");
                }
            }
        }
        failed
    }

    /// Takes the finalizer off TunnelEndpoint `name` (read again: the store may be stale).
    /// Call only once the peer is out of the kernel.
    pub async fn release(&mut self, api: &Api<TunnelEndpoint>, name: &str) -> kube::Result<()> {
        let Some(tep) = api.get_opt(name).await? else {
            return Ok(());
        };
        self.marked.remove(&tep.uid().unwrap_or_default());
        let Some(patch) = remove_patch(tep.finalizers()) else {
            return Ok(());
        };
        match api
            .patch(name, &PatchParams::default(), &json_patch(patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(err) => Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adding_tests_the_list_it_extends() {
        assert_eq!(
            add_patch(&[]),
            json!([
                {"op": "test", "path": "/metadata/finalizers", "value": null},
                {"op": "add", "path": "/metadata/finalizers", "value": ["net.isthmus.io/gateway"]},
            ])
        );
        let other = vec!["example.com/keep".to_owned()];
        assert_eq!(
            add_patch(&other),
            json!([
                {"op": "test", "path": "/metadata/finalizers", "value": ["example.com/keep"]},
                {"op": "add", "path": "/metadata/finalizers/-", "value": "net.isthmus.io/gateway"},
            ])
        );
    }

    #[test]
    fn removing_tests_the_entry_it_removes_and_leaves_others() {
        let list = vec!["example.com/keep".to_owned(), FINALIZER.to_owned()];
        assert_eq!(
            remove_patch(&list),
            Some(json!([
                {"op": "test", "path": "/metadata/finalizers/1", "value": "net.isthmus.io/gateway"},
                {"op": "remove", "path": "/metadata/finalizers/1"},
            ]))
        );
        assert_eq!(remove_patch(&list[..1]), None);
    }
}
