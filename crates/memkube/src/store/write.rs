//! Writes: create, replace, patch and server-side apply, all funnelled through one update path
//! that enforces the status subresource split, immutable server metadata, optimistic
//! concurrency, schema validation, `generation`, field ownership and no-op detection.

use std::sync::Arc;

use serde_json::{Value, json};

use super::rules::{
    apply_scope, check_apply_configuration, check_event, check_kind, check_metadata,
    check_no_new_finalizers, generation_part, keep_server_metadata, normalize_builtin,
    object_subject, patch_error, same_ownership, stale, stamp_new_object, writable_part,
};
use super::{EventKind, ObjKey, State, subject};
use crate::error::{ApiError, Cause};
use crate::etcd_size::{self, Txn};
use crate::managed::{self, Writer};
use crate::meta;
use crate::patch::{PatchKind, patch_document};
use crate::resource::ResourceType;

/// Who writes, through which endpoint, when.
#[derive(Debug, Clone)]
pub struct WriteCtx {
    /// Field manager (from `fieldManager`, else the client's user agent).
    pub manager: String,
    /// Writing through the `/status` subresource.
    pub status: bool,
    /// `dryRun=All`: validate and return the result without storing it.
    pub dry_run: bool,
    /// `force=true` for server-side apply.
    pub force: bool,
    /// `fieldValidation=Strict`: unknown fields are rejected rather than pruned.
    pub strict: bool,
    /// Written through events.k8s.io/v1 (its stricter Event rules apply).
    pub events_v1: bool,
    /// The request time.
    pub now: chrono::DateTime<chrono::Utc>,
}

impl WriteCtx {
    /// A plain main-resource write.
    pub fn new(manager: &str, now: chrono::DateTime<chrono::Utc>) -> Self {
        Self {
            manager: manager.into(),
            status: false,
            dry_run: false,
            force: false,
            strict: false,
            events_v1: false,
            now,
        }
    }

    fn subresource(&self) -> &'static str {
        if self.status { "status" } else { "" }
    }
}

/// How the write's field ownership is recorded.
#[derive(Debug, Clone)]
pub enum FieldOwnership {
    /// Create/replace/patch: the writer takes the leaves it changed.
    Update,
    /// Server-side apply: the `managedFields` already computed on the candidate are kept.
    Apply,
}

impl State {
    /// Creates an object. `ns` is the namespace from the URL (namespaced types only).
    pub fn create(
        &mut self,
        ty: &ResourceType,
        ns: Option<&str>,
        obj: Value,
        ctx: &WriteCtx,
    ) -> Result<Value, ApiError> {
        self.create_with(ty, ns, obj, ctx, FieldOwnership::Update)
    }

    fn create_with(
        &mut self,
        ty: &ResourceType,
        ns: Option<&str>,
        mut obj: Value,
        ctx: &WriteCtx,
        ownership: FieldOwnership,
    ) -> Result<Value, ApiError> {
        check_kind(ty, &obj)?;
        crate::numbers::normalize(&mut obj);
        let name = self.choose_name(ty, ns, &obj)?;
        self.check_namespace(ty, ns, &obj)?;
        if self.get(ty, ns, &name).is_ok() {
            return Err(ApiError::AlreadyExists(subject(ty, &name)));
        }
        if ty.status_subresource
            && !ctx.status
            && let Some(map) = obj.as_object_mut()
        {
            map.remove("status");
        }
        let now = meta::timestamp(ctx.now);
        let keep_managed = matches!(ownership, FieldOwnership::Apply);
        let versioned = meta::meta_str(&obj, "resourceVersion")
            .and_then(|rv| rv.parse::<u64>().ok())
            .is_some_and(|rv| rv != 0);
        stamp_new_object(ty, &mut obj, (ns, &name), &now, keep_managed);
        normalize_builtin(ty, &mut obj);
        crate::object_meta::normalize(&mut obj);
        check_metadata(ty, &obj)?;
        check_event(ty, &obj, None, ctx.events_v1)?;
        crate::schema::validate_object(ty, &mut obj, ctx.strict)?;
        if matches!(ownership, FieldOwnership::Update) {
            let api_version = ty.api_version(ty.preferred_version());
            managed::record_update(None, &mut obj, &writer(ctx, "Update", &api_version, &now));
        } else {
            managed::retain_present(&mut obj);
        }
        self.check_crd_object(ty, &obj)?;
        if ctx.dry_run {
            return Ok(obj);
        }
        if versioned {
            // etcd's create refuses it, after validation (a dry run never gets there)
            return Err(ApiError::Plain {
                code: 500,
                message: "resourceVersion should not be set on objects to be created".into(),
            });
        }
        fit_new_in_etcd(ty, ns, &name, &mut obj, &ownership)?;
        let stored = self.commit(&ty.key(), EventKind::Added, obj, None);
        self.after_crd_write(ty, &stored);
        if !meta::owner_uids(&stored).is_empty() {
            // owners that do not exist: the garbage collector deletes the new object at once
            self.collect_dependents(&now);
        }
        Ok((*stored).clone())
    }

    /// Replaces an object (PUT), with optimistic concurrency on `metadata.resourceVersion`.
    pub fn replace(
        &mut self,
        ty: &ResourceType,
        ns: Option<&str>,
        name: &str,
        obj: Value,
        ctx: &WriteCtx,
    ) -> Result<Value, ApiError> {
        check_kind(ty, &obj)?;
        let old = self.get(ty, ns, name)?;
        if let Some(body_name) = meta::meta_str(&obj, "name").filter(|n| *n != name) {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        match meta::meta_str(&obj, "resourceVersion").filter(|rv| !rv.is_empty()) {
            Some(rv) if Some(rv) != meta::meta_str(&old, "resourceVersion") => {
                return Err(stale(ty, name));
            }
            None if !crate::builtin::allows_unconditional_update(ty) => {
                let err = "Invalid value: 0x0: must be specified for an update".to_string();
                return Err(ApiError::invalid(
                    object_subject(ty, name),
                    "FieldValueInvalid",
                    "metadata.resourceVersion",
                    err,
                ));
            }
            _ => {}
        }
        self.update_existing(ty, &old, obj, ctx, FieldOwnership::Update)
    }

    /// Applies a merge/JSON/strategic patch or a server-side apply configuration.
    pub fn patch(
        &mut self,
        ty: &ResourceType,
        ns: Option<&str>,
        name: &str,
        kind: PatchKind,
        patch: &Value,
        ctx: &WriteCtx,
    ) -> Result<Value, ApiError> {
        if kind == PatchKind::Apply {
            return self.server_side_apply(ty, ns, name, patch, ctx);
        }
        let old = self.get(ty, ns, name)?;
        let candidate =
            patch_document(kind, &old, patch).map_err(|e| patch_error(ty, name, kind, e))?;
        if meta::meta_str(&candidate, "resourceVersion") != meta::meta_str(&old, "resourceVersion")
        {
            return Err(stale(ty, name));
        }
        self.update_existing(ty, &old, candidate, ctx, FieldOwnership::Update)
    }

    fn server_side_apply(
        &mut self,
        ty: &ResourceType,
        ns: Option<&str>,
        name: &str,
        config: &Value,
        ctx: &WriteCtx,
    ) -> Result<Value, ApiError> {
        check_kind(ty, config)?;
        if meta::meta_str(config, "name").is_some_and(|n| n != name) {
            return Err(ApiError::BadRequest(format!(
                "the name of the object does not match the name on the URL ({name})"
            )));
        }
        check_apply_configuration(ty, config)?;
        let mut config = apply_scope(ty, config, ctx.status);
        crate::numbers::normalize(&mut config);
        let now = meta::timestamp(ctx.now);
        let api_version = ty.api_version(ty.preferred_version());
        let w = writer(ctx, "Apply", &api_version, &now);
        let old = match self.get(ty, ns, name) {
            Ok(old) => old,
            Err(not_found) if ctx.status => return Err(not_found),
            Err(_) => {
                let created = crate::apply::apply(&json!({}), &config, &w, true);
                let mut obj =
                    created.map_err(|_| ApiError::Internal("apply on create conflicted".into()))?;
                meta::metadata_mut(&mut obj).insert("name".into(), json!(name));
                return self.create_with(ty, ns, obj, ctx, FieldOwnership::Apply);
            }
        };
        let merged = crate::apply::apply(&old, &config, &w, ctx.force).map_err(|conflicts| {
            let causes: Vec<Cause> = conflicts
                .iter()
                .map(|c| Cause {
                    reason: "FieldManagerConflict".into(),
                    field: c.field(),
                    message: format!("conflict with \"{}\"", c.manager),
                })
                .collect();
            let list: Vec<String> = causes
                .iter()
                .map(|c| format!("{}: {}", c.message, c.field))
                .collect();
            let message = format!(
                "Apply failed with {} conflict(s): {}",
                causes.len(),
                list.join(", ")
            );
            ApiError::Conflict {
                subject: subject(ty, name),
                message,
                causes,
            }
        })?;
        self.update_existing(ty, &old, merged, ctx, FieldOwnership::Apply)
    }

    /// The shared update path for an existing object.
    pub(super) fn update_existing(
        &mut self,
        ty: &ResourceType,
        old: &Arc<Value>,
        candidate: Value,
        ctx: &WriteCtx,
        ownership: FieldOwnership,
    ) -> Result<Value, ApiError> {
        let name = meta::meta_str(old, "name").unwrap_or_default().to_string();
        let mut new = writable_part(ty, old, candidate, ctx.status);
        crate::numbers::normalize(&mut new);
        keep_server_metadata(old, &mut new, matches!(ownership, FieldOwnership::Update));
        normalize_builtin(ty, &mut new);
        crate::object_meta::normalize(&mut new);
        check_no_new_finalizers(ty, old, &new)?;
        check_metadata(ty, &new)?;
        check_event(ty, &new, Some(old), ctx.events_v1)?;
        crate::schema::validate_object(ty, &mut new, ctx.strict)?;
        if matches!(ownership, FieldOwnership::Apply) {
            managed::retain_present(&mut new);
        }
        if meta::comparable(old) == meta::comparable(&new) && same_ownership(old, &new) {
            return Ok((**old).clone());
        }
        bump_generation_on_change(ty, old, &mut new);
        if matches!(ownership, FieldOwnership::Update) {
            let now = meta::timestamp(ctx.now);
            let api_version = ty.api_version(ty.preferred_version());
            managed::record_update(
                Some(old),
                &mut new,
                &writer(ctx, "Update", &api_version, &now),
            );
        }
        self.check_crd_object(ty, &new)?;
        if ctx.dry_run {
            return Ok(new);
        }
        let okey: ObjKey = (
            meta::meta_str(old, "namespace").unwrap_or_default().into(),
            name,
        );
        if !is_removed_by_update(ty, &new) {
            fit_update_in_etcd(ty, &okey, old, &mut new, &ownership)?;
        }
        let now = meta::timestamp(ctx.now);
        let stored = self.store_update(ty, &okey, old.clone(), new, &now);
        self.after_crd_write(ty, &stored);
        if meta::owner_uids(&stored) != meta::owner_uids(old) {
            self.collect_dependents(&now);
            self.release_foreground_owners(&meta::owner_uids(old), &now);
        }
        Ok((*stored).clone())
    }

    fn choose_name(
        &self,
        ty: &ResourceType,
        ns: Option<&str>,
        obj: &Value,
    ) -> Result<String, ApiError> {
        let invalid = |msg: String, field: &str| {
            ApiError::invalid(object_subject(ty, ""), "FieldValueInvalid", field, msg)
        };
        let name = match (
            meta::meta_str(obj, "name"),
            meta::meta_str(obj, "generateName"),
        ) {
            (Some(name), _) if !name.is_empty() => name.to_string(),
            (_, Some(prefix)) if !prefix.is_empty() => (0..16)
                .map(|_| meta::generated_name(prefix))
                .find(|n| self.get(ty, ns, n).is_err())
                .ok_or_else(|| ApiError::AlreadyExists(subject(ty, prefix)))?,
            _ => {
                return Err(invalid(
                    "name or generateName is required".into(),
                    "metadata.name",
                ));
            }
        };
        crate::rbac::kinds::validate_name(ty, &name).map_err(|m| invalid(m, "metadata.name"))?;
        Ok(name)
    }

    fn check_namespace(
        &self,
        ty: &ResourceType,
        ns: Option<&str>,
        obj: &Value,
    ) -> Result<(), ApiError> {
        if !ty.namespaced {
            return Ok(());
        }
        let Some(ns) = ns else {
            return Err(ApiError::BadRequest(
                "the namespace of the object must be set in the URL".into(),
            ));
        };
        if meta::meta_str(obj, "namespace")
            .is_some_and(|body_ns| !body_ns.is_empty() && body_ns != ns)
        {
            return Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ));
        }
        match self.namespace_state(ns) {
            None => Err(ApiError::NotFound(crate::error::Subject {
                group: String::new(),
                kind: "namespaces".into(),
                name: ns.into(),
            })),
            Some(true) => Err(ApiError::Forbidden(format!(
                "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                ty.plural,
                meta::meta_str(obj, "name").unwrap_or_default()
            ))),
            Some(false) => Ok(()),
        }
    }

    /// Stores an updated object, or removes it when it is being deleted and has no finalizers.
    fn store_update(
        &mut self,
        ty: &ResourceType,
        okey: &ObjKey,
        old: Arc<Value>,
        new: Value,
        now: &str,
    ) -> Arc<Value> {
        let deleting = new.pointer("/metadata/deletionTimestamp").is_some();
        let is_namespace = ty.group.is_empty() && ty.plural == "namespaces";
        if is_removed_by_update(ty, &new) {
            // The API server deletes the object as last stored instead of writing the update:
            // the DELETED event (and the answer) still list the finalizers just removed.
            return self.remove_object(ty, okey, (*old).clone(), now);
        }
        let stored = self.commit(&ty.key(), EventKind::Modified, new, Some(old));
        if deleting && is_namespace {
            // a terminating namespace whose own finalizers are now gone may be removable
            self.finish_namespace_if_empty(&okey.1, now);
        }
        stored
    }
}

/// Whether an update removes the object instead of storing it: it is being deleted and no
/// finalizer holds it any more (namespaces wait for their contents instead).
fn is_removed_by_update(ty: &ResourceType, new: &Value) -> bool {
    let deleting = new.pointer("/metadata/deletionTimestamp").is_some();
    let is_namespace = ty.group.is_empty() && ty.plural == "namespaces";
    deleting && meta::finalizers(new).is_empty() && !is_namespace
}

/// `generation` goes up when something other than metadata (and a status subresource) changes.
fn bump_generation_on_change(ty: &ResourceType, old: &Value, new: &mut Value) {
    if generation_part(ty, old) != generation_part(ty, new) {
        let generation = old.pointer("/metadata/generation").and_then(Value::as_i64);
        let next = json!(generation.unwrap_or(0) + 1);
        meta::metadata_mut(new).insert("generation".into(), next);
    }
}

/// Fits a new object into its creating transaction: POST creates; apply creates through the
/// update path (a comparison with revision 0).
fn fit_new_in_etcd(
    ty: &ResourceType,
    ns: Option<&str>,
    name: &str,
    obj: &mut Value,
    ownership: &FieldOwnership,
) -> Result<(), ApiError> {
    let (txn, retry) = match ownership {
        FieldOwnership::Update => (Txn::Create, true),
        FieldOwnership::Apply => (Txn::Update { mod_revision: 0 }, false),
    };
    fit_in_etcd(ty, ns, name, obj, txn, retry)
}

/// Fits an updated object into an update transaction against `old`'s revision.
fn fit_update_in_etcd(
    ty: &ResourceType,
    (ns, name): &ObjKey,
    old: &Value,
    new: &mut Value,
    ownership: &FieldOwnership,
) -> Result<(), ApiError> {
    let ns = (!ns.is_empty()).then_some(ns.as_str());
    let mod_revision = meta::meta_str(old, "resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0);
    let retry = matches!(ownership, FieldOwnership::Update);
    fit_in_etcd(ty, ns, name, new, Txn::Update { mod_revision }, retry)
}

/// Fits an object into one etcd transaction. A write that is not server-side apply is retried
/// once without `managedFields` when too large, as the API server does, so it is stored
/// without them; apply is never retried.
fn fit_in_etcd(
    ty: &ResourceType,
    ns: Option<&str>,
    name: &str,
    obj: &mut Value,
    txn: Txn,
    retry_without_managed_fields: bool,
) -> Result<(), ApiError> {
    let key = etcd_size::key(ty, ns, name);
    match etcd_size::check(&key, obj, txn) {
        Err(e) if retry_without_managed_fields && etcd_size::is_too_large(&e) => {
            meta::metadata_mut(obj).remove("managedFields");
            etcd_size::check(&key, obj, txn)
        }
        result => result,
    }
}

fn writer<'a>(
    ctx: &'a WriteCtx,
    operation: &'a str,
    api_version: &'a str,
    time: &'a str,
) -> Writer<'a> {
    Writer {
        manager: &ctx.manager,
        operation,
        subresource: ctx.subresource(),
        api_version,
        time,
    }
}
