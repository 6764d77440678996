//! Read verbs: get, list (selectors, resourceVersion semantics, limit/continue, Table output)
//! and watch.

use std::sync::Arc;
use std::time::Duration;

use http::{Response, StatusCode, header};
use serde_json::{Value, json};

use super::ResourceRequest;
use crate::Shared;
use crate::body::{ResponseBody, json_response};
use crate::error::ApiError;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::WatchStart;
use crate::watch_stream::{StreamParams, error_body, watch_body};

/// GET of one object.
pub fn get(
    shared: &Arc<Shared>,
    req: &ResourceRequest<'_>,
) -> Result<Response<ResponseBody>, ApiError> {
    let obj = shared.lock().get(&req.store_ty, req.ns(), req.name())?;
    let doc = req.format.one(&req.ty, req.version(), &obj, req.now);
    Ok(json_response(StatusCode::OK, &doc))
}

fn selectors(req: &ResourceRequest<'_>) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(&req.query.label_selector).map_err(ApiError::BadRequest)?;
    let fields = FieldSelector::parse(&req.field_selector(), !req.ty.custom)
        .map_err(ApiError::BadRequest)?;
    Ok((labels, fields))
}

fn parse_rv(rv: &str) -> Result<u64, ApiError> {
    rv.parse()
        .map_err(|_| ApiError::BadRequest(format!("invalid resource version: {rv:?}")))
}

/// A continue token: the list's resourceVersion and the last key returned.
fn parse_continue(token: &str) -> Result<(u64, String, String), ApiError> {
    let bad = || ApiError::BadRequest(format!("invalid continue token {token:?}"));
    let mut parts = token.splitn(3, '/');
    let rv = parts.next().and_then(|r| r.parse().ok()).ok_or_else(bad)?;
    let ns = parts.next().ok_or_else(bad)?.to_string();
    let name = parts.next().ok_or_else(bad)?.to_string();
    Ok((rv, ns, name))
}

/// LIST. Always served from the current state: `resourceVersion` unset, "0" or not newer than
/// the current version (NotOlderThan) is fine; `Exact` for any other version is 410 Expired.
pub fn list(
    shared: &Arc<Shared>,
    req: &ResourceRequest<'_>,
) -> Result<Response<ResponseBody>, ApiError> {
    let (labels, fields) = selectors(req)?;
    let (items, current) = shared
        .lock()
        .list(&req.store_ty, req.ns(), &labels, &fields);
    let asked = req
        .query
        .resource_version
        .as_deref()
        .filter(|rv| *rv != "0");
    let exact = req.query.resource_version_match.as_deref() == Some("Exact");
    if let Some(rv) = asked.map(parse_rv).transpose()?
        && exact
        && rv != current
    {
        return Err(ApiError::Expired {
            requested: rv,
            oldest: current,
        });
    }
    let (page, meta) = paginate(&items, current, req)?;
    let page: Vec<&Value> = page.into_iter().map(|o| &**o).collect();
    let doc = req
        .format
        .list(&req.ty, req.version(), &page, meta, req.now);
    Ok(json_response(StatusCode::OK, &doc))
}

/// Applies `continue` and `limit`; returns the page and the list metadata. Pages are cut from
/// the current state in (namespace, name) order, not from a snapshot at the first page.
fn paginate<'a>(
    items: &'a [Arc<Value>],
    current: u64,
    req: &ResourceRequest<'_>,
) -> Result<(Vec<&'a Arc<Value>>, Value), ApiError> {
    let (mut list_rv, mut after) = (current, None);
    if let Some(token) = &req.query.continue_token {
        let (rv, ns, name) = parse_continue(token)?;
        (list_rv, after) = (rv, Some((ns, name)));
    }
    let key = |o: &Value| {
        let m = |f| crate::meta::meta_str(o, f).unwrap_or_default().to_string();
        (m("namespace"), m("name"))
    };
    let mut page: Vec<&Arc<Value>> = items
        .iter()
        .filter(|o| after.as_ref().is_none_or(|a| key(o) > *a))
        .collect();
    let mut meta = json!({"resourceVersion": list_rv.to_string()});
    let limit = req.query.limit;
    if limit > 0 && page.len() > limit {
        meta["remainingItemCount"] = json!(page.len() - limit);
        page.truncate(limit);
        let (ns, name) = key(page[limit - 1]);
        meta["continue"] = json!(format!("{list_rv}/{ns}/{name}"));
    }
    Ok((page, meta))
}

/// WATCH (`watch=true`): a streaming 200 response. An expired resourceVersion is reported as
/// an `ERROR` event carrying a 410 `Status`, as the API server does.
pub fn watch(
    shared: &Arc<Shared>,
    req: &ResourceRequest<'_>,
) -> Result<Response<ResponseBody>, ApiError> {
    let (labels, mut fields) = selectors(req)?;
    if let Some(name) = req.target.name.as_deref() {
        fields = FieldSelector::parse(&format!("metadata.name={name}"), false)
            .map_err(ApiError::BadRequest)?;
    }
    let start = match (
        req.query.resource_version.as_deref(),
        req.query.send_initial_events,
    ) {
        (_, Some(true)) => WatchStart::Current { end_bookmark: true },
        (None | Some("0"), _) => WatchStart::Current {
            end_bookmark: false,
        },
        (Some(rv), _) => WatchStart::After(parse_rv(rv)?),
    };
    let registered = shared
        .lock()
        .watch(&req.store_ty, req.ns(), labels, fields, start);
    let body = match registered {
        Ok(rx) => {
            let config = &shared.config;
            let params = StreamParams {
                ty: req.ty.clone(),
                version: req.version().to_string(),
                bookmarks: req.query.allow_bookmarks,
                bookmark_interval: config.bookmark_interval,
                timeout: req
                    .query
                    .timeout_seconds
                    .map_or(config.default_watch_timeout, Duration::from_secs),
                format: req.format,
            };
            watch_body(shared.clone(), rx, params)
        }
        Err(e @ ApiError::Expired { .. }) => error_body(&e.to_status()),
        Err(e) => return Err(e),
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .expect("static response parts are valid"))
}
