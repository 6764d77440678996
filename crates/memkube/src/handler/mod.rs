//! Request dispatch: routes a request to discovery or to a resource verb, and turns every
//! [`ApiError`] into a `Status` response. Reads live in `read`, writes in `write`.

mod read;
mod write;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use http::request::Parts;
use http::{Method, Response, StatusCode, header};

use crate::Shared;
use crate::body::{ResponseBody, error_response, json_response, text_response};
use crate::error::ApiError;
use crate::format::Format;
use crate::resource::ResourceType;
use crate::route::{Query, Route, Target, parse_path};
use crate::{alias, discovery, openapi};

/// A parsed request addressed to a resource.
#[derive(Debug)]
struct ResourceRequest<'a> {
    parts: &'a Parts,
    body: &'a [u8],
    query: Query,
    now: DateTime<Utc>,
    /// The type as addressed (what responses render as).
    ty: ResourceType,
    /// The type whose store holds the objects (differs from `ty` for views, see `alias`).
    store_ty: ResourceType,
    target: Target,
    /// Namespace for namespaced types (None = all namespaces, or cluster-scoped).
    ns: Option<String>,
    /// Addressed through `/status`.
    status: bool,
    /// Representation asked for by `Accept`.
    format: Format,
}

impl ResourceRequest<'_> {
    fn ns(&self) -> Option<&str> {
        self.ns.as_deref()
    }

    fn name(&self) -> &str {
        self.target.name.as_deref().unwrap_or_default()
    }

    fn version(&self) -> &str {
        &self.target.version
    }

    /// Whether the addressed type is a view of another type's store.
    fn is_view(&self) -> bool {
        alias::is_events_view(&self.ty)
    }

    /// The `fieldSelector`, over storage fields.
    fn field_selector(&self) -> String {
        let sel = &self.query.field_selector;
        if self.is_view() {
            alias::selector_to_storage(sel)
        } else {
            sel.clone()
        }
    }

    fn header(&self, name: header::HeaderName) -> &str {
        self.parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// Handles one request completely (watch bodies stream afterwards).
pub fn handle(
    shared: &Arc<Shared>,
    parts: &Parts,
    body: &[u8],
    now: DateTime<Utc>,
) -> Response<ResponseBody> {
    let response = dispatch(shared, parts, body, now).unwrap_or_else(|e| error_response(&e));
    tracing::debug!(method = %parts.method, uri = %parts.uri, status = %response.status(), "memkube request");
    response
}

fn dispatch(
    shared: &Arc<Shared>,
    parts: &Parts,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Response<ResponseBody>, ApiError> {
    let query =
        Query::parse(parts.uri.query().unwrap_or_default()).map_err(ApiError::BadRequest)?;
    let state = shared.lock();
    let registry = &state.registry;
    let route = parse_path(parts.uri.path(), |g, v, p| {
        registry.lookup(g, v, p).is_some_and(|t| t.namespaced)
    });
    let ok = |v: serde_json::Value| Ok(json_response(StatusCode::OK, &v));
    if !matches!(route, Route::Resource(_)) && parts.method != Method::GET {
        return Err(ApiError::MethodNotAllowed);
    }
    match route {
        Route::Version => ok(discovery::version()),
        Route::Health => Ok(text_response(StatusCode::OK, "ok")),
        Route::CoreVersions => ok(discovery::core_versions()),
        Route::Groups => ok(discovery::groups(registry)),
        Route::Group(g) => discovery::group(registry, &g).map_or(Err(ApiError::NoRoute), ok),
        Route::ResourceList { group, version } => {
            discovery::resource_list(registry, &group, &version).map_or(Err(ApiError::NoRoute), ok)
        }
        Route::OpenApiIndex => ok(openapi::root(registry)),
        Route::OpenApi { group, version } => {
            openapi::group_version(registry, &group, &version).map_or(Err(ApiError::NoRoute), ok)
        }
        Route::Unknown => Err(ApiError::NoRoute),
        Route::Resource(target) => {
            let ty = registry
                .lookup(&target.group, &target.version, &target.plural)
                .cloned()
                .ok_or(ApiError::NoRoute)?;
            let store_ty = alias::storage_of(&ty)
                .and_then(|(g, v, p)| registry.lookup(g, v, p).cloned())
                .unwrap_or_else(|| ty.clone());
            drop(state);
            let req = resource_request(parts, body, query, now, (ty, store_ty), target)?;
            serve_resource(shared, req)
        }
    }
}

fn resource_request<'a>(
    parts: &'a Parts,
    body: &'a [u8],
    query: Query,
    now: DateTime<Utc>,
    (ty, store_ty): (ResourceType, ResourceType),
    target: Target,
) -> Result<ResourceRequest<'a>, ApiError> {
    if !ty.namespaced && target.namespace.is_some() {
        return Err(ApiError::NoRoute);
    }
    let status = match target.sub.as_deref() {
        None => false,
        Some("status") if ty.status_subresource && target.name.is_some() => true,
        Some(_) => return Err(ApiError::NoRoute),
    };
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let format = Format::from_accept(accept, query.include_object.as_deref());
    let ns = if ty.namespaced {
        target.namespace.clone()
    } else {
        None
    };
    Ok(ResourceRequest {
        parts,
        body,
        query,
        now,
        ty,
        store_ty,
        target,
        ns,
        status,
        format,
    })
}

fn serve_resource(
    shared: &Arc<Shared>,
    req: ResourceRequest<'_>,
) -> Result<Response<ResponseBody>, ApiError> {
    let named = req.target.name.is_some();
    match (&req.parts.method, named) {
        (&Method::GET, _) if req.query.watch => read::watch(shared, &req),
        (&Method::GET, false) => read::list(shared, &req),
        (&Method::GET, true) => read::get(shared, &req),
        (&Method::POST, false) if !req.ty.namespaced || req.ns.is_some() => {
            write::create(shared, &req)
        }
        (&Method::PUT, true) => write::replace(shared, &req),
        (&Method::PATCH, true) => write::patch(shared, &req),
        (&Method::DELETE, true) => write::delete(shared, &req),
        (&Method::DELETE, false) => write::delete_collection(shared, &req),
        _ => Err(ApiError::MethodNotAllowed),
    }
}
