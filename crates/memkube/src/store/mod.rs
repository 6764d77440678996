//! The simulated cluster's state: objects per type, the global resourceVersion counter, the
//! bounded event history of each type and the open watches. Every mutation goes through [`State::commit`],
//! which issues the next resourceVersion, records the event and fans it out to watchers, all
//! under the one lock the caller holds, so versions are strictly increasing and every watcher
//! sees events in version order.
//!
//! Reads and writes are split into submodules: `write` (create, replace, patch, apply),
//! `delete` (finalizers, garbage collection, namespaces), `history` (per-type event history,
//! reads at older versions), `watch` (watchers).

mod crd;
mod delete;
mod foreground;
mod history;
mod rules;
mod watch;
mod write;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

pub use delete::{DeleteOptions, DeleteOutcome, Propagation};
pub use watch::{WatchMsg, WatchStart};
pub use write::WriteCtx;

use crate::error::{ApiError, Subject};
use crate::resource::{Registry, ResourceType, TypeKey};
use crate::selector::{FieldSelector, LabelSelector};

/// (namespace, or "" for cluster-scoped; name)
pub type ObjKey = (String, String);

/// The kind of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `ADDED`
    Added,
    /// `MODIFIED`
    Modified,
    /// `DELETED`
    Deleted,
}

impl EventKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One recorded change.
#[derive(Debug, Clone)]
struct HistoryEvent {
    rv: u64,
    key: TypeKey,
    kind: EventKind,
    object: Arc<Value>,
    /// The previous state, for MODIFIED and DELETED (selector transitions and reads at older
    /// versions need it).
    old: Option<Arc<Value>>,
}

/// All state of one simulated cluster.
#[derive(Debug)]
pub struct State {
    /// Served types.
    pub registry: Registry,
    rv: u64,
    objects: BTreeMap<TypeKey, BTreeMap<ObjKey, Arc<Value>>>,
    /// How many stored objects have an ownerReference to each uid, kept by [`State::commit`]:
    /// garbage collection asks it on every removal instead of scanning every object.
    owned: BTreeMap<String, usize>,
    /// Events per type (see `history`).
    history: BTreeMap<TypeKey, history::TypeHistory>,
    /// Events each type's history keeps.
    history_limit: usize,
    /// Version up to which every history was forgotten at once (`compact`).
    compacted: u64,
    watchers: Vec<watch::Watcher>,
}

/// The subject of errors about an object of `ty`.
pub fn subject(ty: &ResourceType, name: &str) -> Subject {
    Subject {
        group: ty.group.clone(),
        kind: ty.plural.clone(),
        name: name.into(),
    }
}

/// The object as served at `version` (memkube stores one representation per type and only
/// rewrites `apiVersion`: multi-version CRDs get the `None` conversion strategy), converted
/// when `ty` is a view of another type's store (see `alias`).
pub fn present(ty: &ResourceType, version: &str, obj: &Value) -> Value {
    let mut obj = obj.clone();
    if crate::alias::is_events_view(ty) {
        crate::alias::to_view(&mut obj);
    }
    obj["apiVersion"] = Value::String(ty.api_version(version));
    obj["kind"] = Value::String(ty.kind.clone());
    obj
}

impl State {
    /// An empty cluster with the built-in types and the initial namespaces.
    pub fn new(history_limit: usize, now: chrono::DateTime<chrono::Utc>) -> Self {
        let mut state = Self {
            registry: Registry::with_builtins(),
            rv: 0,
            objects: BTreeMap::new(),
            owned: BTreeMap::new(),
            history: BTreeMap::new(),
            history_limit: history_limit.max(1),
            compacted: 0,
            watchers: Vec::new(),
        };
        let ns_type = state
            .registry
            .lookup("", "v1", "namespaces")
            .cloned()
            .expect("builtin");
        for ns in crate::builtin::INITIAL_NAMESPACES {
            let body = serde_json::json!({"metadata": {"name": ns}});
            let ctx = WriteCtx::new("memkube", now);
            state
                .create(&ns_type, None, body, &ctx)
                .expect("initial namespace");
        }
        state
    }

    /// The current (latest issued) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// Drops all retained history: any watch resuming from an older version gets 410 Expired,
    /// and so does a list continued from an older version.
    pub fn compact(&mut self) {
        self.forget_history();
    }

    /// Looks an object up.
    pub fn get(
        &self,
        ty: &ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        let okey = (ns.unwrap_or_default().to_string(), name.to_string());
        self.objects
            .get(&ty.key())
            .and_then(|objs| objs.get(&okey))
            .cloned()
            .ok_or_else(|| ApiError::NotFound(subject(ty, name)))
    }

    /// Objects of a type, in one namespace or all, that match the selectors; ordered by
    /// namespace then name. Returns the current resourceVersion too.
    pub fn list(
        &self,
        ty: &ResourceType,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> (Vec<Arc<Value>>, u64) {
        let objs = self
            .objects
            .get(&ty.key())
            .into_iter()
            .flat_map(|m| m.iter());
        let items = objs
            .filter(|((obj_ns, _), _)| ns.is_none_or(|ns| ns == obj_ns))
            .filter(|(_, obj)| labels.matches(obj) && fields.matches(obj))
            .map(|(_, obj)| obj.clone())
            .collect();
        (items, self.rv)
    }

    /// Like [`State::list`], but as the objects were at `rv`; `None` when that version is
    /// older than the type's history (compacted away) or newer than the present.
    pub fn list_at(
        &self,
        ty: &ResourceType,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        rv: u64,
    ) -> Option<Vec<Arc<Value>>> {
        let objects = self.objects_at(&ty.key(), rv)?;
        let items = objects
            .into_iter()
            .filter(|((obj_ns, _), _)| ns.is_none_or(|ns| ns == obj_ns))
            .filter(|(_, obj)| labels.matches(obj) && fields.matches(obj))
            .map(|(_, obj)| obj)
            .collect();
        Some(items)
    }

    /// Whether a namespace object exists, and whether it is terminating.
    fn namespace_state(&self, ns: &str) -> Option<bool> {
        let key = TypeKey {
            group: String::new(),
            plural: "namespaces".into(),
        };
        let obj = self
            .objects
            .get(&key)?
            .get(&(String::new(), ns.to_string()))?;
        Some(obj.pointer("/metadata/deletionTimestamp").is_some())
    }

    /// Issues the next resourceVersion, stores (or removes, for `Deleted`) the object, records
    /// the event and notifies watchers. Returns the stored object.
    fn commit(
        &mut self,
        key: &TypeKey,
        kind: EventKind,
        mut obj: Value,
        old: Option<Arc<Value>>,
    ) -> Arc<Value> {
        self.rv += 1;
        crate::meta::metadata_mut(&mut obj)
            .insert("resourceVersion".into(), Value::String(self.rv.to_string()));
        let obj = Arc::new(obj);
        let okey = object_key(&obj);
        let objs = self.objects.entry(key.clone()).or_default();
        let replaced = if kind == EventKind::Deleted {
            objs.remove(&okey)
        } else {
            objs.insert(okey, obj.clone())
        };
        if let Some(replaced) = replaced {
            self.count_owners(&replaced, false);
        }
        if kind != EventKind::Deleted {
            self.count_owners(&obj, true);
        }
        let event = HistoryEvent {
            rv: self.rv,
            key: key.clone(),
            kind,
            object: obj.clone(),
            old,
        };
        self.notify(&event);
        self.record(event);
        obj
    }

    /// Counts (or uncounts) the ownerReferences of a stored (or no longer stored) object.
    fn count_owners(&mut self, obj: &Value, stored: bool) {
        for uid in crate::meta::owner_uids(obj) {
            if stored {
                *self.owned.entry(uid).or_default() += 1;
            } else if let Some(n) = self.owned.get_mut(&uid) {
                *n -= 1;
                if *n == 0 {
                    self.owned.remove(&uid);
                }
            }
        }
    }

    /// Whether some stored object has an ownerReference to `uid`.
    fn has_dependents(&self, uid: &str) -> bool {
        self.owned.contains_key(uid)
    }

    /// All objects of every type (for garbage collection and namespace cleanup).
    fn all_objects(&self) -> impl Iterator<Item = (&TypeKey, &ObjKey, &Arc<Value>)> {
        self.objects
            .iter()
            .flat_map(|(k, objs)| objs.iter().map(move |(o, v)| (k, o, v)))
    }
}

/// The storage key of an object from its metadata.
fn object_key(obj: &Value) -> ObjKey {
    let ns = crate::meta::meta_str(obj, "namespace")
        .unwrap_or_default()
        .to_string();
    let name = crate::meta::meta_str(obj, "name")
        .unwrap_or_default()
        .to_string();
    (ns, name)
}

#[cfg(test)]
mod tests;
