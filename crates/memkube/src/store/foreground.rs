//! Foreground cascading deletion: the owner gets the `foregroundDeletion` finalizer and a
//! `deletionTimestamp`, its dependents are deleted (foreground too, recursively; a dependent
//! that also has another live owner just loses its reference to this one), and the owner is
//! released — the finalizer removed, then the object if no other finalizer holds it — once no
//! object references it any more. Dependents held by their own finalizers keep the owner
//! waiting, as with the API server's garbage collector.

use std::sync::Arc;

use serde_json::{Value, json};

use super::delete::{DeleteOptions, DeleteOutcome, Propagation};
use super::{EventKind, ObjKey, State, object_key};
use crate::meta;
use crate::resource::{ResourceType, TypeKey};

/// The finalizer that marks an owner waiting for its dependents.
pub(super) const FOREGROUND: &str = "foregroundDeletion";

impl State {
    /// Objects with an ownerReference to `uid`.
    pub(super) fn dependents_of(&self, uid: &str) -> Vec<(TypeKey, Arc<Value>)> {
        if !self.has_dependents(uid) {
            return Vec::new();
        }
        self.all_objects()
            .filter(|(_, _, o)| meta::owner_uids(o).iter().any(|u| u == uid))
            .map(|(k, _, o)| (k.clone(), o.clone()))
            .collect()
    }

    fn by_uid(&self, uid: &str) -> Option<(TypeKey, ObjKey, Arc<Value>)> {
        self.all_objects()
            .find(|(_, _, o)| meta::meta_str(o, "uid") == Some(uid))
            .map(|(k, o, v)| (k.clone(), o.clone(), v.clone()))
    }

    /// Whether `uid` names an object that is not itself waiting in a foreground deletion.
    fn is_solid_owner(&self, uid: &str) -> bool {
        self.by_uid(uid)
            .is_some_and(|(_, _, o)| !meta::finalizers(&o).iter().any(|f| f == FOREGROUND))
    }

    /// Starts a foreground deletion of `old`; returns its state afterwards.
    pub(super) fn delete_foreground(
        &mut self,
        ty: &ResourceType,
        old: &Arc<Value>,
        now: &str,
    ) -> DeleteOutcome {
        let uid = meta::meta_str(old, "uid").unwrap_or_default().to_string();
        let marked = self.mark_foreground(ty, old, now);
        for (key, dependent) in self.dependents_of(&uid) {
            let other_owner = meta::owner_uids(&dependent)
                .iter()
                .any(|u| *u != uid && self.is_solid_owner(u));
            if other_owner {
                let mut kept = (*dependent).clone();
                if let Some(refs) = kept
                    .pointer_mut("/metadata/ownerReferences")
                    .and_then(Value::as_array_mut)
                {
                    refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid.as_str()));
                }
                self.commit(&key, EventKind::Modified, kept, Some(dependent));
                continue;
            }
            let Some(dep_ty) = self.registry.get(&key).cloned() else {
                continue;
            };
            let (ns, name) = object_key(&dependent);
            let opts = DeleteOptions {
                propagation: Propagation::Foreground,
                now: now.into(),
                ..Default::default()
            };
            // already gone through another chain is fine
            let _ = self.delete(
                &dep_ty,
                (!ns.is_empty()).then_some(ns.as_str()),
                &name,
                &opts,
            );
        }
        self.release_foreground_owners(std::slice::from_ref(&uid), now);
        let (ns, name) = object_key(&marked);
        match self.get(ty, (!ns.is_empty()).then_some(ns.as_str()), &name) {
            Ok(current) => DeleteOutcome::Pending((*current).clone()),
            Err(_) => DeleteOutcome::Deleted((*marked).clone()),
        }
    }

    /// Adds the `foregroundDeletion` finalizer and the deletion timestamp (once).
    fn mark_foreground(&mut self, ty: &ResourceType, old: &Arc<Value>, now: &str) -> Arc<Value> {
        let mut new = (**old).clone();
        let mut finalizers = meta::finalizers(old);
        if !finalizers.iter().any(|f| f == FOREGROUND) {
            finalizers.push(FOREGROUND.into());
        }
        let m = meta::metadata_mut(&mut new);
        m.insert("finalizers".into(), json!(finalizers));
        m.entry("deletionTimestamp").or_insert_with(|| json!(now));
        m.entry("deletionGracePeriodSeconds")
            .or_insert_with(|| json!(0));
        if old.pointer("/metadata/deletionTimestamp").is_none() {
            super::delete::bump_generation(&mut new);
        }
        if new == **old {
            return old.clone();
        }
        self.commit(&ty.key(), EventKind::Modified, new, Some(old.clone()))
    }

    /// Releases owners (by uid) waiting in a foreground deletion once nothing references them.
    pub(super) fn release_foreground_owners(&mut self, owner_uids: &[String], now: &str) {
        for uid in owner_uids {
            let Some((key, okey, owner)) = self.by_uid(uid) else {
                continue;
            };
            let waiting = meta::finalizers(&owner).iter().any(|f| f == FOREGROUND);
            if !waiting || !self.dependents_of(uid).is_empty() {
                continue;
            }
            let Some(ty) = self.registry.get(&key).cloned() else {
                continue;
            };
            let mut released = (*owner).clone();
            let rest: Vec<String> = meta::finalizers(&owner)
                .into_iter()
                .filter(|f| f != FOREGROUND)
                .collect();
            meta::metadata_mut(&mut released).insert("finalizers".into(), json!(rest));
            if rest.is_empty() {
                // deleted as last stored, as when a client removes the last finalizer
                self.remove_object(&ty, &okey, (*owner).clone(), now);
            } else {
                self.commit(&key, EventKind::Modified, released, Some(owner));
            }
        }
    }
}
