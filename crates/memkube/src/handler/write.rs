//! Write verbs: create, replace, patch (merge, JSON, strategic-as-merge for built-ins, 415 for
//! custom resources, server-side apply), delete and deletecollection; parsing bodies and
//! `DeleteOptions`.

use std::sync::Arc;

use http::{Response, StatusCode, header};
use serde_json::{Value, json};

use super::ResourceRequest;
use crate::Shared;
use crate::body::{ResponseBody, json_response};
use crate::error::ApiError;
use crate::patch::{CUSTOM_RESOURCE_PATCH_MEDIA_TYPES, PATCH_MEDIA_TYPES, PatchKind};
use crate::store::{DeleteOptions, DeleteOutcome, Propagation, WriteCtx, present};

fn write_ctx(req: &ResourceRequest<'_>) -> WriteCtx {
    let agent = req
        .header(header::USER_AGENT)
        .split('/')
        .next()
        .unwrap_or_default();
    let manager = req.query.field_manager.clone().unwrap_or_else(|| {
        if agent.is_empty() {
            "unknown".to_string()
        } else {
            agent.to_string()
        }
    });
    WriteCtx {
        manager,
        status: req.status,
        dry_run: req.query.dry_run,
        force: req.query.force,
        strict: req.query.strict,
        events_v1: req.is_view(),
        now: req.now,
    }
}

fn parse_body(req: &ResourceRequest<'_>) -> Result<Value, ApiError> {
    let content_type = req.header(header::CONTENT_TYPE);
    let parsed = if content_type.contains("protobuf") {
        // typed client-go clients (kubectl, Helm's release storage) send built-ins this way
        if !crate::protobuf::supports(&req.ty.kind) {
            return Err(ApiError::UnsupportedMediaType(
                "application/json, application/yaml".into(),
            ));
        }
        crate::protobuf::decode(&req.ty.kind, req.body)
    } else if content_type.contains("yaml") {
        serde_yaml::from_slice(req.body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(req.body).map_err(|e| e.to_string())
    };
    let mut body = parsed.map_err(|e| {
        ApiError::BadRequest(format!("the request body is not a valid object: {e}"))
    })?;
    if req.is_view() {
        crate::alias::to_storage(&mut body);
    }
    Ok(body)
}

fn respond(req: &ResourceRequest<'_>, code: StatusCode, obj: &Value) -> Response<ResponseBody> {
    json_response(code, &present(&req.ty, req.version(), obj))
}

/// POST to a collection.
pub fn create(
    shared: &Arc<Shared>,
    req: &ResourceRequest<'_>,
) -> Result<Response<ResponseBody>, ApiError> {
    let body = parse_body(req)?;
    let created = shared
        .lock()
        .create(&req.store_ty, req.ns(), body, &write_ctx(req))?;
    Ok(respond(req, StatusCode::CREATED, &created))
}

/// PUT of an object or its status.
pub fn replace(
    shared: &Arc<Shared>,
    req: &ResourceRequest<'_>,
) -> Result<Response<ResponseBody>, ApiError> {
    let body = parse_body(req)?;
    let updated =
        shared
            .lock()
            .replace(&req.store_ty, req.ns(), req.name(), body, &write_ctx(req))?;
    Ok(respond(req, StatusCode::OK, &updated))
}

/// PATCH of an object or its status; server-side apply may create the object (201).
pub fn patch(
    shared: &Arc<Shared>,
    req: &ResourceRequest<'_>,
) -> Result<Response<ResponseBody>, ApiError> {
    let kind = PatchKind::from_content_type(req.header(header::CONTENT_TYPE))
        .ok_or_else(|| ApiError::UnsupportedMediaType(PATCH_MEDIA_TYPES.into()))?;
    if kind == PatchKind::Strategic && req.ty.custom {
        // custom resources have no strategic merge information
        return Err(ApiError::UnsupportedMediaType(
            CUSTOM_RESOURCE_PATCH_MEDIA_TYPES.into(),
        ));
    }
    let mut body = kind.parse_body(req.body).map_err(ApiError::BadRequest)?;
    if req.is_view() {
        crate::alias::patch_to_storage(kind, &mut body);
    }
    if kind == PatchKind::Apply && req.query.field_manager.is_none() {
        return Err(ApiError::BadRequest(
            "PATCH with apply requires a fieldManager".into(),
        ));
    }
    let mut state = shared.lock();
    let existed = state.get(&req.store_ty, req.ns(), req.name()).is_ok();
    let updated = state.patch(
        &req.store_ty,
        req.ns(),
        req.name(),
        kind,
        &body,
        &write_ctx(req),
    )?;
    // the answer is rendered without the lock: every other request of this API waits on it
    drop(state);
    let code = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(respond(req, code, &updated))
}

fn delete_options(req: &ResourceRequest<'_>) -> Result<DeleteOptions, ApiError> {
    let body: Value = if req.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(req.body)
            .map_err(|e| ApiError::BadRequest(format!("invalid DeleteOptions: {e}")))?
    };
    let text = |p: &str| body.pointer(p).and_then(Value::as_str).map(String::from);
    let mut propagation =
        match text("/propagationPolicy").or_else(|| req.query.propagation_policy.clone()) {
            Some(p) => Propagation::parse(&p)?,
            None => Propagation::Background,
        };
    if body.get("orphanDependents").and_then(Value::as_bool) == Some(true) {
        propagation = Propagation::Orphan;
    }
    let dry_run = req.query.dry_run
        || body
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    Ok(DeleteOptions {
        propagation,
        uid: text("/preconditions/uid"),
        resource_version: text("/preconditions/resourceVersion"),
        dry_run,
        now: crate::meta::timestamp(req.now),
    })
}

fn success_status(req: &ResourceRequest<'_>, obj: &Value) -> Value {
    let uid = crate::meta::meta_str(obj, "uid").unwrap_or_default();
    let mut details = json!({"name": req.name(), "kind": req.ty.plural, "uid": uid});
    if !req.ty.group.is_empty() {
        details["group"] = json!(req.ty.group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

/// DELETE of one object: the object while finalizers hold it, a success `Status` once gone.
pub fn delete(
    shared: &Arc<Shared>,
    req: &ResourceRequest<'_>,
) -> Result<Response<ResponseBody>, ApiError> {
    if req.status {
        return Err(ApiError::MethodNotAllowed);
    }
    let opts = delete_options(req)?;
    let outcome = shared
        .lock()
        .delete(&req.store_ty, req.ns(), req.name(), &opts)?;
    Ok(match outcome {
        DeleteOutcome::Pending(obj) => respond(req, StatusCode::OK, &obj),
        DeleteOutcome::Deleted(obj) => json_response(StatusCode::OK, &success_status(req, &obj)),
    })
}

/// DELETE of a collection: a list of the deleted (or now terminating) objects.
pub fn delete_collection(
    shared: &Arc<Shared>,
    req: &ResourceRequest<'_>,
) -> Result<Response<ResponseBody>, ApiError> {
    let (labels, fields) = super::read::selectors(req)?;
    let opts = delete_options(req)?;
    let mut state = shared.lock();
    let outcomes = state.delete_collection(&req.store_ty, req.ns(), &labels, &fields, &opts)?;
    let rv = state.resource_version();
    drop(state);
    let items: Vec<&Value> = outcomes
        .iter()
        .map(|o| match o {
            DeleteOutcome::Pending(obj) | DeleteOutcome::Deleted(obj) => obj,
        })
        .collect();
    let meta = json!({"resourceVersion": rv.to_string()});
    let list = req
        .format
        .list(&req.ty, req.version(), &items, meta, req.now);
    Ok(json_response(StatusCode::OK, &list))
}
