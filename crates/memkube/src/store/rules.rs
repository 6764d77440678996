//! Pure rules of the write path: which parts of a candidate object a write may change,
//! which metadata the server keeps, and the checks that turn a write into a 400 or 422.

use serde_json::{Value, json};

use super::subject;
use crate::error::{ApiError, Subject};
use crate::managed;
use crate::meta;
use crate::patch::PatchKind;
use crate::resource::ResourceType;

/// Metadata only the server sets.
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

/// Sets the metadata the server gives a new object (name, namespace, uid, creationTimestamp,
/// generation 1, apiVersion/kind) and drops what a client may not set on create.
pub(super) fn stamp_new_object(
    ty: &ResourceType,
    obj: &mut Value,
    (ns, name): (Option<&str>, &str),
    now: &str,
    keep_managed_fields: bool,
) {
    let m = meta::metadata_mut(obj);
    for k in [
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "resourceVersion",
        "selfLink",
        "generateName",
    ] {
        m.remove(k);
    }
    if !keep_managed_fields {
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
}

/// Copies server-owned metadata (and `apiVersion`/`kind`) from `old` onto `new`. For
/// non-apply writes `managedFields` is taken from `old` too (the client's copy is ignored).
pub(super) fn keep_server_metadata(old: &Value, new: &mut Value, keep_managed_fields: bool) {
    let old_meta = old
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let new_meta = meta::metadata_mut(new);
    for k in IMMUTABLE_META.iter().filter(|k| **k != "managedFields") {
        match old_meta.get(*k) {
            Some(v) => new_meta.insert((*k).into(), v.clone()),
            None => new_meta.remove(*k),
        };
    }
    if keep_managed_fields {
        let managed_fields = old_meta.get("managedFields").cloned().unwrap_or(json!([]));
        new_meta.insert("managedFields".into(), managed_fields);
    }
    new["apiVersion"] = old["apiVersion"].clone();
    new["kind"] = old["kind"].clone();
}

/// Whether two objects have the same field owners (ignoring timestamps and apiVersions).
pub(super) fn same_ownership(a: &Value, b: &Value) -> bool {
    let sets = |o: &Value| -> Vec<_> {
        managed::read(o)
            .into_iter()
            .map(|e| (e.manager, e.operation, e.subresource, e.fields))
            .collect()
    };
    sets(a) == sets(b)
}

/// What `generation` tracks: everything but metadata, and but status when it is a subresource.
pub(super) fn generation_part(ty: &ResourceType, obj: &Value) -> serde_json::Map<String, Value> {
    let mut part = meta::spec_part(obj);
    if !ty.status_subresource
        && let Some(status) = obj.get("status")
    {
        part.insert("status".into(), status.clone());
    }
    part
}

/// The subject of 422s, which name the Kind rather than the plural.
pub(super) fn object_subject(ty: &ResourceType, name: &str) -> Subject {
    Subject {
        group: ty.group.clone(),
        kind: ty.kind.clone(),
        name: name.into(),
    }
}

pub(super) fn stale(ty: &ResourceType, name: &str) -> ApiError {
    ApiError::conflict(
        subject(ty, name),
        "the object has been modified; please apply your changes to the latest version and try again",
    )
}

pub(super) fn patch_error(
    ty: &ResourceType,
    name: &str,
    kind: PatchKind,
    message: String,
) -> ApiError {
    match kind {
        PatchKind::Json => {
            ApiError::invalid(object_subject(ty, name), "FieldValueInvalid", "", message)
        }
        _ => ApiError::BadRequest(message),
    }
}

pub(super) fn check_kind(ty: &ResourceType, obj: &Value) -> Result<(), ApiError> {
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
pub(super) fn writable_part(
    ty: &ResourceType,
    old: &Value,
    candidate: Value,
    status_write: bool,
) -> Value {
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
pub(super) fn apply_scope(ty: &ResourceType, config: &Value, status_write: bool) -> Value {
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

pub(super) fn check_no_new_finalizers(
    ty: &ResourceType,
    old: &Value,
    new: &Value,
) -> Result<(), ApiError> {
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

/// The object's labels, annotations, finalizers and ownerReferences, checked as the API
/// server does for every type (422 with one cause per problem).
pub(super) fn check_metadata(ty: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    let causes = crate::object_meta::validate(obj);
    if causes.is_empty() {
        return Ok(());
    }
    let name = meta::meta_str(obj, "name").unwrap_or_default();
    Err(ApiError::Invalid {
        subject: object_subject(ty, name),
        causes,
    })
}

/// Built-in write-time conversions, as the API server does: a Secret's `stringData` is merged
/// into `data` (base64); a Namespace without a phase is `Active`.
pub(super) fn normalize_builtin(ty: &ResourceType, obj: &mut Value) {
    if ty.group.is_empty() && ty.plural == "namespaces" && obj.pointer("/status/phase").is_none() {
        if !obj.get("status").is_some_and(Value::is_object) {
            obj["status"] = json!({});
        }
        obj["status"]["phase"] = json!("Active");
    }
    if !(ty.group.is_empty() && ty.plural == "secrets") {
        return;
    }
    let Some(Value::Object(string_data)) = obj.as_object_mut().and_then(|m| m.remove("stringData"))
    else {
        return;
    };
    if !obj.get("data").is_some_and(Value::is_object) {
        obj["data"] = json!({});
    }
    for (k, v) in string_data {
        let bytes = v.as_str().unwrap_or_default().as_bytes().to_vec();
        let encoded = serde_json::to_value(k8s_openapi::ByteString(bytes)).unwrap_or_default();
        obj["data"][k] = encoded;
    }
}

/// What server-side apply refuses before merging: a configuration carrying `managedFields`
/// (400), or one with fields the CRD schema does not declare (500 with the field manager's
/// message, whatever `fieldValidation` says; other writes prune such fields).
pub(super) fn check_apply_configuration(ty: &ResourceType, config: &Value) -> Result<(), ApiError> {
    if config
        .pointer("/metadata/managedFields")
        .is_some_and(|m| !m.is_null())
    {
        return Err(ApiError::BadRequest(
            "metadata.managedFields must be nil".into(),
        ));
    }
    let undeclared = crate::schema::undeclared_fields(ty, config);
    if undeclared.is_empty() {
        return Ok(());
    }
    let errors: Vec<String> = undeclared
        .iter()
        .map(|path| format!("{path}: field not declared in schema"))
        .collect();
    let detail = match errors.as_slice() {
        [one] => one.clone(),
        many => format!("errors:\n  {}", many.join("\n  ")),
    };
    let api_version = config
        .get("apiVersion")
        .and_then(Value::as_str)
        .map_or_else(|| ty.api_version(ty.preferred_version()), String::from);
    let ns = meta::meta_str(config, "namespace").unwrap_or_default();
    let name = meta::meta_str(config, "name").unwrap_or_default();
    Err(ApiError::Plain {
        code: 500,
        message: format!(
            "failed to create typed patch object ({ns}/{name}; {api_version}, Kind={}): {detail}",
            ty.kind
        ),
    })
}

/// Events (stored in the core/v1 shape) checked as the API server does, more strictly when
/// written through events.k8s.io/v1; other types pass.
pub(super) fn check_event(
    ty: &ResourceType,
    event: &Value,
    old: Option<&Value>,
    events_v1: bool,
) -> Result<(), ApiError> {
    if !(ty.group.is_empty() && ty.plural == "events") {
        return Ok(());
    }
    let causes = match old {
        None => crate::event_rules::validate_create(event, events_v1),
        Some(old) => crate::event_rules::validate_update(event, old, events_v1),
    };
    if causes.is_empty() {
        return Ok(());
    }
    let mut subject = object_subject(ty, meta::meta_str(event, "name").unwrap_or_default());
    if events_v1 {
        subject.group = "events.k8s.io".into();
    }
    Err(ApiError::Invalid { subject, causes })
}
