//! Writes: create, replace, patch and server-side apply, all funnelled through one update path
//! that enforces the status subresource split, immutable server metadata, optimistic
//! concurrency, schema validation, `generation`, field ownership and no-op detection.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{EventKind, ObjKey, State, subject};
use crate::error::{ApiError, Cause};
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

const IMMUTABLE_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "resourceVersion",
    "managedFields",
];

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
        let m = meta::metadata_mut(&mut obj);
        for k in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "resourceVersion",
            "selfLink",
            "generateName",
        ] {
            m.remove(k);
        }
        if matches!(ownership, FieldOwnership::Update) {
            m.remove("managedFields");
        }
        m.insert("name".into(), json!(name));
        match ns {
            Some(ns) if ty.namespaced => m.insert("namespace".into(), json!(ns)),
            _ => m.remove("namespace"),
        };
        m.insert("uid".into(), json!(meta::new_uid()));
        m.insert("creationTimestamp".into(), json!(now));
        m.insert("generation".into(), json!(1));
        obj["apiVersion"] = json!(ty.api_version(ty.preferred_version()));
        obj["kind"] = json!(ty.kind);
        check_owner_references(ty, &obj)?;
        crate::schema::validate_object(ty, &mut obj)?;
        if matches!(ownership, FieldOwnership::Update) {
            let api_version = ty.api_version(ty.preferred_version());
            managed::record_update(None, &mut obj, &writer(ctx, "Update", &api_version, &now));
        }
        self.check_crd_object(ty, &obj)?;
        if ctx.dry_run {
            return Ok(obj);
        }
        let stored = self.commit(&ty.key(), EventKind::Added, obj, None);
        self.after_crd_write(ty, &stored);
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
        match meta::meta_str(&obj, "resourceVersion") {
            Some(rv) if Some(rv) != meta::meta_str(&old, "resourceVersion") => {
                return Err(stale(ty, name));
            }
            None if ty.custom => {
                let err = "must be specified for an update".to_string();
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
        let config = apply_scope(ty, config, ctx.status);
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
        let old_meta = old
            .get("metadata")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let new_meta = meta::metadata_mut(&mut new);
        for k in IMMUTABLE_META.iter().filter(|k| **k != "managedFields") {
            match old_meta.get(*k) {
                Some(v) => new_meta.insert((*k).into(), v.clone()),
                None => new_meta.remove(*k),
            };
        }
        if matches!(ownership, FieldOwnership::Update) {
            new_meta.insert(
                "managedFields".into(),
                old_meta.get("managedFields").cloned().unwrap_or(json!([])),
            );
        }
        new["apiVersion"] = old["apiVersion"].clone();
        new["kind"] = old["kind"].clone();
        check_no_new_finalizers(ty, old, &new)?;
        check_owner_references(ty, &new)?;
        crate::schema::validate_object(ty, &mut new)?;
        if meta::comparable(old) == meta::comparable(&new) && same_ownership(old, &new) {
            return Ok((**old).clone());
        }
        if generation_part(ty, old) != generation_part(ty, &new) {
            let generation = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta::metadata_mut(&mut new).insert("generation".into(), json!(generation + 1));
        }
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
        let stored = self.store_update(ty, &okey, old.clone(), new, &meta::timestamp(ctx.now));
        self.after_crd_write(ty, &stored);
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
        meta::validate_name(&name).map_err(|m| invalid(m, "metadata.name"))?;
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
        if deleting && meta::finalizers(&new).is_empty() && !is_namespace {
            return self.remove_object(ty, okey, new, now);
        }
        self.commit(&ty.key(), EventKind::Modified, new, Some(old))
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

/// Whether two objects have the same field owners (ignoring timestamps and apiVersions).
fn same_ownership(a: &Value, b: &Value) -> bool {
    let sets = |o: &Value| -> Vec<_> {
        managed::read(o)
            .into_iter()
            .map(|e| (e.manager, e.operation, e.subresource, e.fields))
            .collect()
    };
    sets(a) == sets(b)
}

/// What `generation` tracks: everything but metadata, and but status when it is a subresource.
fn generation_part(ty: &ResourceType, obj: &Value) -> serde_json::Map<String, Value> {
    let mut part = meta::spec_part(obj);
    if !ty.status_subresource
        && let Some(status) = obj.get("status")
    {
        part.insert("status".into(), status.clone());
    }
    part
}

/// The subject of 422s, which name the Kind rather than the plural.
fn object_subject(ty: &ResourceType, name: &str) -> crate::error::Subject {
    crate::error::Subject {
        group: ty.group.clone(),
        kind: ty.kind.clone(),
        name: name.into(),
    }
}

fn stale(ty: &ResourceType, name: &str) -> ApiError {
    ApiError::conflict(
        subject(ty, name),
        "the object has been modified; please apply your changes to the latest version and try again",
    )
}

fn patch_error(ty: &ResourceType, name: &str, kind: PatchKind, message: String) -> ApiError {
    match kind {
        PatchKind::Json => {
            ApiError::invalid(object_subject(ty, name), "FieldValueInvalid", "", message)
        }
        _ => ApiError::BadRequest(message),
    }
}

fn check_kind(ty: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        ));
    }
    match obj.get("kind").and_then(Value::as_str) {
        Some(kind) if !kind.is_empty() && kind != ty.kind => Err(ApiError::BadRequest(format!(
            "the kind of the body ({kind}) does not match the resource ({})",
            ty.kind
        ))),
        _ => Ok(()),
    }
}

/// Which part of a candidate a write may change: `/status` writes change only `status`; main
/// writes to types with a status subresource keep the old `status`.
fn writable_part(ty: &ResourceType, old: &Value, candidate: Value, status_write: bool) -> Value {
    let (mut base, source) = if status_write {
        ((*old).clone(), candidate)
    } else {
        (candidate, old.clone())
    };
    if status_write || ty.status_subresource {
        let status = source.get("status").cloned();
        let map = base.as_object_mut().expect("objects are JSON objects");
        match status {
            Some(s) => map.insert("status".into(), s),
            None => map.remove("status"),
        };
    }
    if status_write {
        // status writes keep metadata, except that server-side apply records its managedFields
        if let Some(mf) = source.pointer("/metadata/managedFields").cloned() {
            meta::metadata_mut(&mut base).insert("managedFields".into(), mf);
        }
    }
    base
}

/// The part of an apply configuration that the endpoint writes.
fn apply_scope(ty: &ResourceType, config: &Value, status_write: bool) -> Value {
    let mut config = config.clone();
    let map = config.as_object_mut().expect("checked to be an object");
    map.remove("apiVersion");
    map.remove("kind");
    if status_write {
        map.retain(|k, _| k == "status");
    } else if ty.status_subresource {
        map.remove("status");
    }
    if let Some(m) = map.get_mut("metadata").and_then(Value::as_object_mut) {
        m.retain(|k, _| {
            matches!(
                k.as_str(),
                "labels" | "annotations" | "finalizers" | "ownerReferences"
            )
        });
    }
    config
}

fn check_no_new_finalizers(ty: &ResourceType, old: &Value, new: &Value) -> Result<(), ApiError> {
    if old.pointer("/metadata/deletionTimestamp").is_none() {
        return Ok(());
    }
    let before = meta::finalizers(old);
    let added: Vec<String> = meta::finalizers(new)
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    if added.is_empty() {
        return Ok(());
    }
    let name = meta::meta_str(old, "name").unwrap_or_default();
    let message = format!(
        "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
    );
    Err(ApiError::invalid(
        object_subject(ty, name),
        "FieldValueForbidden",
        "metadata.finalizers",
        message,
    ))
}

fn check_owner_references(ty: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    let refs = obj
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array);
    for (i, r) in refs.into_iter().flatten().enumerate() {
        for field in ["apiVersion", "kind", "name", "uid"] {
            if r.get(field)
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                let name = meta::meta_str(obj, "name").unwrap_or_default();
                let path = format!("metadata.ownerReferences[{i}].{field}");
                return Err(ApiError::invalid(
                    object_subject(ty, name),
                    "FieldValueRequired",
                    &path,
                    "Required value".into(),
                ));
            }
        }
    }
    Ok(())
}
