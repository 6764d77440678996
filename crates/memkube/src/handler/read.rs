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

pub(super) fn selectors(
    req: &ResourceRequest<'_>,
) -> Result<(LabelSelector, FieldSelector), ApiError> {
    crate::field_labels::check(&req.ty, &req.query.field_selector).map_err(ApiError::BadRequest)?;
    let labels = LabelSelector::parse(&req.query.label_selector).map_err(ApiError::BadRequest)?;
    let fields = FieldSelector::parse(&req.field_selector(), !req.ty.custom)
        .map_err(ApiError::BadRequest)?;
    Ok((labels, fields))
}

fn parse_rv(rv: &str) -> Result<u64, ApiError> {
    rv.parse()
        .map_err(|_| ApiError::BadRequest(format!("invalid resource version: {rv:?}")))
}

/// A continue token: the version the list is pinned at (`None`: the latest, after the pinned
/// one was compacted away) and the last key returned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ContinueToken {
    rv: Option<u64>,
    after: (String, String),
}

impl ContinueToken {
    fn parse(token: &str) -> Result<Self, ApiError> {
        let bad = || ApiError::BadRequest(format!("invalid continue token {token:?}"));
        let mut parts = token.splitn(3, '/');
        let rv = match parts.next().ok_or_else(bad)? {
            "-1" => None,
            rv => Some(rv.parse().map_err(|_| bad())?),
        };
        let ns = parts.next().ok_or_else(bad)?.to_string();
        let name = parts.next().ok_or_else(bad)?.to_string();
        Ok(Self {
            rv,
            after: (ns, name),
        })
    }

    fn encode(&self) -> String {
        let rv = self
            .rv
            .map_or_else(|| "-1".to_string(), |rv| rv.to_string());
        format!("{rv}/{}/{}", self.after.0, self.after.1)
    }
}

/// LIST. A `continue` token pins the version of the first page, so every page comes from the
/// same snapshot (410 with a token to continue inconsistently once that version is compacted
/// away); `resourceVersionMatch=Exact` reads at the given version (410 once compacted);
/// anything else reads the current state.
pub fn list(
    shared: &Arc<Shared>,
    req: &ResourceRequest<'_>,
) -> Result<Response<ResponseBody>, ApiError> {
    let (labels, fields) = selectors(req)?;
    let token = req
        .query
        .continue_token
        .as_deref()
        .map(ContinueToken::parse)
        .transpose()?;
    let exact = req.query.resource_version_match.as_deref() == Some("Exact");
    let asked = match req.query.resource_version.as_deref() {
        Some(rv) if exact && rv != "0" => Some(parse_rv(rv)?),
        _ => None,
    };
    let state = shared.lock();
    let current = state.resource_version();
    let at = token
        .as_ref()
        .and_then(|t| t.rv)
        .or(asked)
        .unwrap_or(current);
    let items = state
        .list_at(&req.store_ty, req.ns(), &labels, &fields, at)
        .ok_or_else(|| ApiError::ListExpired {
            continue_token: token.as_ref().map(|t| {
                let latest = ContinueToken {
                    rv: None,
                    ..t.clone()
                };
                latest.encode()
            }),
        })?;
    drop(state);
    let (page, meta) = paginate(&items, at, token.map(|t| t.after), req.query.limit);
    let page: Vec<&Value> = page.into_iter().map(|o| &**o).collect();
    let doc = req
        .format
        .list(&req.ty, req.version(), &page, meta, req.now);
    Ok(json_response(StatusCode::OK, &doc))
}

/// Cuts the page after `after`, at most `limit` long (0: no limit), in (namespace, name)
/// order; returns it with the list metadata.
fn paginate(
    items: &[Arc<Value>],
    list_rv: u64,
    after: Option<(String, String)>,
    limit: usize,
) -> (Vec<&Arc<Value>>, Value) {
    let key = |o: &Value| {
        let m = |f| crate::meta::meta_str(o, f).unwrap_or_default().to_string();
        (m("namespace"), m("name"))
    };
    let mut page: Vec<&Arc<Value>> = items
        .iter()
        .filter(|o| after.as_ref().is_none_or(|a| key(o) > *a))
        .collect();
    let mut meta = json!({"resourceVersion": list_rv.to_string()});
    if limit > 0 && page.len() > limit {
        meta["remainingItemCount"] = json!(page.len() - limit);
        page.truncate(limit);
        let token = ContinueToken {
            rv: Some(list_rv),
            after: key(page[limit - 1]),
        };
        meta["continue"] = json!(token.encode());
    }
    (page, meta)
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
        // as the watch cache does, a client that allows bookmarks learns where the initial
        // events end
        (None | Some("0"), _) => WatchStart::Current {
            end_bookmark: req.query.allow_bookmarks,
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
