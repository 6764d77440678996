//! Watches: registering a watcher (replaying history from a resourceVersion, or synthetic ADDED
//! events for the current state), and fanning each committed event out to the watchers whose
//! namespace and selectors it concerns. An object moving into or out of a watcher's selector is
//! delivered as ADDED or DELETED, as the API server does.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::{EventKind, HistoryEvent, State};
use crate::error::ApiError;
use crate::resource::{ResourceType, TypeKey};
use crate::selector::{FieldSelector, LabelSelector};

/// What a watch stream carries.
#[derive(Debug, Clone)]
pub enum WatchMsg {
    /// An object event.
    Event(EventKind, Arc<Value>),
    /// A bookmark at this resourceVersion.
    Bookmark(u64),
    /// The bookmark that ends the initial events of a `sendInitialEvents=true` watch.
    InitialEventsEnd(u64),
    /// The watch fell out of the history window: an `ERROR` event with a 410, then the end.
    Expired(u64),
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchStart {
    /// ADDED for every current object first (resourceVersion unset or "0"); with `end_bookmark`
    /// a bookmark annotated `k8s.io/initial-events-end` follows them (`sendInitialEvents=true`).
    Current {
        /// Send the initial-events-end bookmark.
        end_bookmark: bool,
    },
    /// Every event after this resourceVersion (410 Expired if history no longer reaches back).
    After(u64),
}

/// One open watch.
#[derive(Debug)]
pub(super) struct Watcher {
    key: TypeKey,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    tx: UnboundedSender<WatchMsg>,
}

impl Watcher {
    fn selects(&self, obj: &Value) -> bool {
        let ns_ok = self
            .namespace
            .as_deref()
            .is_none_or(|ns| crate::meta::meta_str(obj, "namespace").unwrap_or_default() == ns);
        ns_ok && self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// The event this watcher sees for a committed change, if any.
    fn translate(&self, event: &HistoryEvent) -> Option<WatchMsg> {
        if event.key != self.key {
            return None;
        }
        let now = self.selects(&event.object);
        let kind = match event.kind {
            EventKind::Added if now => EventKind::Added,
            EventKind::Deleted if now => EventKind::Deleted,
            EventKind::Modified => {
                let before = event.old.as_deref().is_some_and(|o| self.selects(o));
                match (before, now) {
                    (true, true) => EventKind::Modified,
                    (false, true) => EventKind::Added,
                    (true, false) => EventKind::Deleted,
                    (false, false) => return None,
                }
            }
            _ => return None,
        };
        Some(WatchMsg::Event(kind, event.object.clone()))
    }
}

impl State {
    /// Opens a watch. Events already due are queued on the returned receiver before it is
    /// registered, so nothing is missed or duplicated.
    pub fn watch(
        &mut self,
        ty: &ResourceType,
        namespace: Option<&str>,
        labels: LabelSelector,
        fields: FieldSelector,
        start: WatchStart,
    ) -> Result<UnboundedReceiver<WatchMsg>, ApiError> {
        let (tx, rx) = unbounded_channel();
        let watcher = Watcher {
            key: ty.key(),
            namespace: namespace.map(Into::into),
            labels,
            fields,
            tx,
        };
        let oldest = self.oldest_version(&watcher.key);
        match start {
            WatchStart::After(rv) if rv < oldest => {
                return Err(ApiError::Expired {
                    requested: rv,
                    oldest,
                });
            }
            WatchStart::After(rv) => {
                for event in self.events_after(&watcher.key, rv) {
                    if let Some(msg) = watcher.translate(event) {
                        let _ = watcher.tx.send(msg);
                    }
                }
            }
            WatchStart::Current { end_bookmark } => {
                let objs = self
                    .objects
                    .get(&ty.key())
                    .into_iter()
                    .flat_map(|m| m.values());
                for obj in objs.filter(|o| watcher.selects(o)) {
                    let _ = watcher
                        .tx
                        .send(WatchMsg::Event(EventKind::Added, obj.clone()));
                }
                if end_bookmark {
                    let _ = watcher.tx.send(WatchMsg::InitialEventsEnd(self.rv));
                }
            }
        }
        self.watchers.push(watcher);
        Ok(rx)
    }

    /// Delivers a committed event; watchers whose receiver is gone are dropped.
    pub(super) fn notify(&mut self, event: &HistoryEvent) {
        self.watchers.retain(|w| match w.translate(event) {
            Some(msg) => w.tx.send(msg).is_ok(),
            None => !w.tx.is_closed(),
        });
    }

    /// Ends every open watch with a 410 `Expired` error event and compacts the history, so
    /// clients must relist (what a real API server does when a watcher falls too far behind).
    pub fn expire_watches(&mut self) {
        self.compact();
        for w in self.watchers.drain(..) {
            let _ = w.tx.send(WatchMsg::Expired(self.compacted));
        }
    }

    /// Number of open watches (for tests and diagnostics).
    pub fn watcher_count(&self) -> usize {
        self.watchers.iter().filter(|w| !w.tx.is_closed()).count()
    }
}
