//! The event history, kept per resource type as the API server's watch cache does: each type
//! remembers its last `history_limit` events, so heavy writes to one type expire only the
//! watches (and paginated lists) of that type. The history also serves reads at an older
//! resourceVersion: the objects of a type as they were at version N are the current ones with
//! every later event of that type undone.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;

use super::{EventKind, HistoryEvent, ObjKey, State, object_key};
use crate::resource::TypeKey;

/// One type's retained events.
#[derive(Debug, Default)]
pub(super) struct TypeHistory {
    /// Events in version order.
    pub(super) events: VecDeque<HistoryEvent>,
    /// Highest resourceVersion dropped from `events` (0 = nothing dropped yet).
    compacted: u64,
}

impl State {
    /// Records a committed event in its type's history, dropping the oldest beyond the limit.
    pub(super) fn record(&mut self, event: HistoryEvent) {
        let limit = self.history_limit;
        let history = self.history.entry(event.key.clone()).or_default();
        history.events.push_back(event);
        while history.events.len() > limit {
            if let Some(dropped) = history.events.pop_front() {
                history.compacted = dropped.rv;
            }
        }
    }

    /// The oldest resourceVersion a watch or a read of `key` may start from: every event of
    /// the type after it is still known.
    pub(super) fn oldest_version(&self, key: &TypeKey) -> u64 {
        let own = self.history.get(key).map_or(0, |h| h.compacted);
        own.max(self.compacted)
    }

    /// Events of `key` after `rv`, in order.
    pub(super) fn events_after(
        &self,
        key: &TypeKey,
        rv: u64,
    ) -> impl Iterator<Item = &HistoryEvent> + '_ {
        let events = self
            .history
            .get(key)
            .into_iter()
            .flat_map(|h| h.events.iter());
        events.filter(move |e| e.rv > rv)
    }

    /// Forgets every type's history up to the current version (etcd compaction).
    pub(super) fn forget_history(&mut self) {
        self.history.clear();
        self.compacted = self.rv;
    }

    /// The objects of `key` as they were at `rv`, or `None` when that version is older than
    /// the history (or newer than the present).
    pub(super) fn objects_at(
        &self,
        key: &TypeKey,
        rv: u64,
    ) -> Option<BTreeMap<ObjKey, Arc<Value>>> {
        if rv < self.oldest_version(key) || rv > self.rv {
            return None;
        }
        let mut objects = self.objects.get(key).cloned().unwrap_or_default();
        let newer: Vec<&HistoryEvent> = self.events_after(key, rv).collect();
        for event in newer.into_iter().rev() {
            let okey = object_key(&event.object);
            match (event.kind, &event.old) {
                (EventKind::Added, _) => {
                    objects.remove(&okey);
                }
                (EventKind::Modified | EventKind::Deleted, Some(old)) => {
                    objects.insert(okey, old.clone());
                }
                (_, None) => {}
            }
        }
        Some(objects)
    }
}
