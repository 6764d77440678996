//! Deletion: preconditions, finalizers and `deletionTimestamp`, ownerReference garbage
//! collection (synchronous, at the moment the owner is removed; foreground cascades live in
//! `foreground`), and namespace termination
//! (a deleted namespace turns `Terminating`, its contents are deleted, and it is removed once
//! empty).

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};

use super::{EventKind, ObjKey, State, object_key, subject};
use crate::error::ApiError;
use crate::meta;
use crate::resource::{ResourceType, TypeKey};
use crate::selector::{FieldSelector, LabelSelector};

/// `propagationPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    /// Dependents are deleted once the owner is gone (the default for custom resources).
    #[default]
    Background,
    /// The owner waits (finalizer `foregroundDeletion`) until its dependents are gone.
    Foreground,
    /// The owner's reference is removed from dependents, which are kept.
    Orphan,
}

impl Propagation {
    /// Parses the policy name.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "Background" => Ok(Self::Background),
            "Foreground" => Ok(Self::Foreground),
            "Orphan" => Ok(Self::Orphan),
            other => Err(ApiError::BadRequest(format!(
                "unknown propagationPolicy {other:?}"
            ))),
        }
    }
}

/// `DeleteOptions` memkube honours.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// Propagation policy.
    pub propagation: Propagation,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun: [All]`.
    pub dry_run: bool,
    /// Timestamp written to `deletionTimestamp`.
    pub now: String,
}

/// What a delete did.
#[derive(Debug, Clone, PartialEq)]
pub enum DeleteOutcome {
    /// The object has finalizers: it now carries `deletionTimestamp` and stays.
    Pending(Value),
    /// The object is gone; this was its last state.
    Deleted(Value),
}

impl State {
    /// Deletes one object.
    pub fn delete(
        &mut self,
        ty: &ResourceType,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<DeleteOutcome, ApiError> {
        let old = self.get(ty, ns, name)?;
        let failed = |what: &str, want: &str, have: &str| {
            let msg = format!(
                "Precondition failed: {what} in precondition: {want}, {what} in object meta: {have}"
            );
            Err(ApiError::conflict(subject(ty, name), msg))
        };
        let have_uid = meta::meta_str(&old, "uid").unwrap_or_default();
        if let Some(uid) = opts.uid.as_deref().filter(|u| *u != have_uid) {
            return failed("UID", uid, have_uid);
        }
        let have_rv = meta::meta_str(&old, "resourceVersion").unwrap_or_default();
        if let Some(rv) = opts.resource_version.as_deref().filter(|r| *r != have_rv) {
            return failed("ResourceVersion", rv, have_rv);
        }
        if opts.dry_run {
            return Ok(DeleteOutcome::Pending((*old).clone()));
        }
        match opts.propagation {
            Propagation::Orphan => self.orphan_dependents(have_uid),
            Propagation::Foreground if !self.dependents_of(have_uid).is_empty() => {
                return Ok(self.delete_foreground(ty, &old, &opts.now));
            }
            _ => {}
        }
        let okey = object_key(&old);
        let is_namespace = ty.group.is_empty() && ty.plural == "namespaces";
        if !meta::finalizers(&old).is_empty() || is_namespace {
            let pending = self.mark_deleting(ty, &okey, &old, &opts.now);
            if is_namespace {
                self.terminate_namespace(name, &opts.now);
                if let Ok(current) = self.get(ty, None, name) {
                    return Ok(DeleteOutcome::Pending((*current).clone()));
                }
                return Ok(DeleteOutcome::Deleted(pending));
            }
            return Ok(DeleteOutcome::Pending(pending));
        }
        let gone = self.remove_object(ty, &okey, (*old).clone(), &opts.now);
        Ok(DeleteOutcome::Deleted((*gone).clone()))
    }

    /// Deletes every matching object (each as [`State::delete`] would); returns the outcomes.
    pub fn delete_collection(
        &mut self,
        ty: &ResourceType,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        opts: &DeleteOptions,
    ) -> Result<Vec<DeleteOutcome>, ApiError> {
        let (items, _) = self.list(ty, ns, labels, fields);
        let mut out = Vec::new();
        for obj in items {
            let (obj_ns, name) = object_key(&obj);
            let obj_ns = (!obj_ns.is_empty()).then_some(obj_ns.as_str());
            match self.delete(ty, obj_ns, &name, opts) {
                Ok(outcome) => out.push(outcome),
                Err(ApiError::NotFound(_)) => {} // removed by garbage collection meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Sets `deletionTimestamp` (once) and returns the current state.
    fn mark_deleting(
        &mut self,
        ty: &ResourceType,
        okey: &ObjKey,
        old: &Arc<Value>,
        now: &str,
    ) -> Value {
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            return (**old).clone();
        }
        let mut new = (**old).clone();
        let m = meta::metadata_mut(&mut new);
        m.insert("deletionTimestamp".into(), json!(now));
        m.insert("deletionGracePeriodSeconds".into(), json!(0));
        if ty.group.is_empty() && ty.plural == "namespaces" {
            new["status"] = json!({"phase": "Terminating"});
        } else {
            bump_generation(&mut new);
        }
        debug_assert_eq!(&object_key(&new), okey);
        (*self.commit(&ty.key(), EventKind::Modified, new, Some(old.clone()))).clone()
    }

    /// Removes an object for good (DELETED event), then collects its garbage: dependents whose
    /// owners are all gone are deleted, and an emptied terminating namespace is removed.
    pub(super) fn remove_object(
        &mut self,
        ty: &ResourceType,
        okey: &ObjKey,
        last: Value,
        now: &str,
    ) -> Arc<Value> {
        let old = self
            .objects
            .get(&ty.key())
            .and_then(|m| m.get(okey))
            .cloned();
        let gone = self.commit(&ty.key(), EventKind::Deleted, last, old);
        // Only the dependents of what just went can have lost their last owner, so the whole
        // collection runs only when there are some (most objects own nothing).
        if self.has_dependents(meta::meta_str(&gone, "uid").unwrap_or_default()) {
            self.collect_dependents(now);
        }
        self.release_foreground_owners(&meta::owner_uids(&gone), now);
        if ty.namespaced {
            self.finish_namespace_if_empty(&okey.0, now);
        }
        if ty.group == "apiextensions.k8s.io" && ty.plural == "customresourcedefinitions" {
            self.after_crd_removed(&gone);
        }
        gone
    }

    /// Deletes every object that has ownerReferences of which none exists any more.
    pub(super) fn collect_dependents(&mut self, now: &str) {
        let uids: BTreeSet<String> = self
            .all_objects()
            .filter_map(|(_, _, o)| meta::meta_str(o, "uid").map(String::from))
            .collect();
        let orphans: Vec<(TypeKey, ObjKey)> = self
            .all_objects()
            .filter(|(_, _, o)| {
                let owners = meta::owner_uids(o);
                !owners.is_empty() && owners.iter().all(|u| !uids.contains(u))
            })
            .filter(|(_, _, o)| o.pointer("/metadata/deletionTimestamp").is_none())
            .map(|(k, o, _)| (k.clone(), o.clone()))
            .collect();
        for (key, (ns, name)) in orphans {
            let Some(ty) = self.registry.get(&key).cloned() else {
                continue;
            };
            let opts = DeleteOptions {
                now: now.into(),
                ..Default::default()
            };
            let ns = (!ns.is_empty()).then_some(ns.as_str());
            // Already gone (collected through another chain) is fine.
            let _ = self.delete(&ty, ns, &name, &opts);
        }
    }

    /// Removes ownerReferences to `uid` from every dependent.
    fn orphan_dependents(&mut self, uid: &str) {
        let dependents = self.dependents_of(uid);
        for (key, old) in dependents {
            let mut new = (*old).clone();
            if let Some(refs) = new
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
            }
            self.commit(&key, EventKind::Modified, new, Some(old));
        }
    }

    /// Deletes everything in a namespace being terminated; removes it when empty.
    fn terminate_namespace(&mut self, ns: &str, now: &str) {
        let contents: Vec<(TypeKey, ObjKey)> = self
            .all_objects()
            .filter(|(_, (obj_ns, _), _)| obj_ns == ns)
            .map(|(k, o, _)| (k.clone(), o.clone()))
            .collect();
        for (key, (_, name)) in contents {
            let Some(ty) = self.registry.get(&key).cloned() else {
                continue;
            };
            let opts = DeleteOptions {
                now: now.into(),
                ..Default::default()
            };
            let _ = self.delete(&ty, Some(ns), &name, &opts);
        }
        self.finish_namespace_if_empty(ns, now);
    }

    /// Removes a terminating namespace once it is empty and has no finalizers of its own.
    pub(super) fn finish_namespace_if_empty(&mut self, ns: &str, now: &str) {
        if ns.is_empty() || self.namespace_state(ns) != Some(true) {
            return;
        }
        if self.all_objects().any(|(_, (obj_ns, _), _)| obj_ns == ns) {
            return;
        }
        let Some(ty) = self.registry.lookup("", "v1", "namespaces").cloned() else {
            return;
        };
        let okey = (String::new(), ns.to_string());
        match self.get(&ty, None, ns) {
            Ok(last) if meta::finalizers(&last).is_empty() => {
                self.remove_object(&ty, &okey, (*last).clone(), now);
            }
            _ => {}
        }
    }
}

/// The first deletion of an object changes its behaviour, so the API server bumps its
/// `generation` (when it has one) as it sets `deletionTimestamp`; namespaces are the exception.
pub(super) fn bump_generation(obj: &mut Value) {
    let generation = obj.pointer("/metadata/generation").and_then(Value::as_i64);
    if let Some(generation) = generation.filter(|g| *g > 0) {
        meta::metadata_mut(obj).insert("generation".into(), json!(generation + 1));
    }
}
