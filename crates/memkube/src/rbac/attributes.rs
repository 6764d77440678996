//! Request attributes as the API server's authorizer sees them (pure): the Kubernetes verb,
//! API group, resource, subresource, name and namespace of a resource request, or the verb and
//! path of a non-resource request, derived from the HTTP method, path and query exactly as the
//! apiserver's request-info parser does (`GET` of a collection is `list`, or `watch` with
//! `watch=true`; `DELETE` of a collection is `deletecollection`; a list or watch whose field
//! selector pins `metadata.name` carries that name; `/namespaces/{ns}` addresses the namespace
//! object *in* that namespace).

use http::Method;

/// What a resource request addresses and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceAttributes {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`, ...
    pub verb: String,
    /// API group ("" for core).
    pub group: String,
    /// API version.
    pub version: String,
    /// Plural resource name, e.g. `secrets`.
    pub resource: String,
    /// Subresource, e.g. `status` ("" for none).
    pub subresource: String,
    /// Object name ("" when the request names none).
    pub name: String,
    /// Namespace ("" for cluster scope or all namespaces).
    pub namespace: String,
}

impl ResourceAttributes {
    /// `resource` or `resource/subresource`, as RBAC rules and denial messages spell it.
    pub fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// The attributes of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attributes {
    /// A request under `/api/{version}/...` or `/apis/{group}/{version}/...`.
    Resource(ResourceAttributes),
    /// Anything else (`/version`, `/healthz`, `/api`, `/apis/{group}`, `/openapi/v3`, ...):
    /// the verb is the lowercase HTTP method.
    NonResource {
        /// Lowercase HTTP method.
        verb: String,
        /// URL path as sent.
        path: String,
    },
}

impl Attributes {
    /// The namespace the request is scoped to ("" for none).
    pub fn namespace(&self) -> &str {
        match self {
            Self::Resource(r) => &r.namespace,
            Self::NonResource { .. } => "",
        }
    }
}

/// Subresources of a namespace: `/api/v1/namespaces/{ns}/status` is the namespace's status, not
/// a resource called `status` in namespace `ns`.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// Derives the attributes of a request from its method, path and query string.
pub fn from_request(method: &Method, path: &str, query: &str) -> Attributes {
    let non_resource = || Attributes::NonResource {
        verb: method.as_str().to_ascii_lowercase(),
        path: path.to_string(),
    };
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", rest @ ..] if rest.len() >= 2 => ("", rest),
        ["apis", group, rest @ ..] if rest.len() >= 2 => (*group, rest),
        _ => return non_resource(),
    };
    let (version, mut rest) = (rest[0], &rest[1..]);
    let mut verb = match *method {
        Method::POST => "create",
        Method::GET | Method::HEAD => "get",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    }
    .to_string();
    let mut by_path_prefix = false;
    if let [special @ ("watch" | "proxy"), tail @ ..] = rest
        && !tail.is_empty()
    {
        verb = special.to_string();
        rest = tail;
        by_path_prefix = true;
    }
    let mut attrs = ResourceAttributes {
        verb,
        group: group.to_string(),
        version: version.to_string(),
        ..ResourceAttributes::default()
    };
    if let ["namespaces", ns, tail @ ..] = rest {
        attrs.namespace = ns.to_string();
        if !tail.is_empty() && !NAMESPACE_SUBRESOURCES.contains(&tail[0]) {
            rest = tail;
        }
    }
    fill_resource_parts(&mut attrs, rest, by_path_prefix);
    refine_collection_verb(&mut attrs, query);
    Attributes::Resource(attrs)
}

/// `resource/name/subresource` from the parts after the namespace (`proxy` takes no
/// subresource).
fn fill_resource_parts(attrs: &mut ResourceAttributes, parts: &[&str], by_path_prefix: bool) {
    if let Some(resource) = parts.first() {
        attrs.resource = resource.to_string();
    }
    if let Some(name) = parts.get(1) {
        attrs.name = name.to_string();
    }
    let proxy = by_path_prefix && attrs.verb == "proxy";
    if let Some(sub) = parts.get(2).filter(|_| !proxy) {
        attrs.subresource = sub.to_string();
    }
}

/// A `get` without a name is `list` or `watch` (and may name an object through
/// `fieldSelector=metadata.name=x`); a `delete` without a name is `deletecollection`.
fn refine_collection_verb(attrs: &mut ResourceAttributes, query: &str) {
    if attrs.name.is_empty() && attrs.verb == "get" {
        let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let first = |key: &str| params.iter().find(|(k, _)| k == key).map(|(_, v)| v);
        let watch = first("watch")
            .is_some_and(|v| !matches!(v.to_ascii_lowercase().as_str(), "false" | "0"));
        attrs.verb = if watch { "watch" } else { "list" }.to_string();
        if let Some(name) = first("fieldSelector").and_then(|s| exact_name(s)) {
            attrs.name = name;
        }
    }
    if attrs.name.is_empty() && attrs.verb == "delete" {
        attrs.verb = "deletecollection".to_string();
    }
}

/// The name a field selector requires exactly (`metadata.name=x` or `metadata.name==x` among
/// its terms), if it is a valid path segment.
fn exact_name(selector: &str) -> Option<String> {
    selector.split(',').find_map(|term| {
        let (field, value) = term.split_once("==").or_else(|| {
            let (f, v) = term.split_once('=')?;
            (!f.ends_with('!')).then_some((f, v))
        })?;
        let valid = !matches!(value, "." | "..") && !value.contains(['/', '%']);
        (field.trim() == "metadata.name" && valid).then(|| value.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(method: Method, path: &str, query: &str) -> ResourceAttributes {
        match from_request(&method, path, query) {
            Attributes::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn verbs_follow_method_and_name() {
        let p = "/apis/net.isthmus.io/v1alpha1/namespaces/isthmus/networkconfigs";
        assert_eq!(res(Method::GET, p, "").verb, "list");
        assert_eq!(res(Method::GET, p, "watch=true").verb, "watch");
        assert_eq!(res(Method::GET, p, "watch=0").verb, "list");
        assert_eq!(res(Method::POST, p, "").verb, "create");
        assert_eq!(res(Method::DELETE, p, "").verb, "deletecollection");
        let named = format!("{p}/a");
        assert_eq!(res(Method::GET, &named, "").verb, "get");
        assert_eq!(res(Method::GET, &named, "watch=true").verb, "get");
        assert_eq!(res(Method::PUT, &named, "").verb, "update");
        assert_eq!(res(Method::PATCH, &named, "").verb, "patch");
        assert_eq!(res(Method::DELETE, &named, "").verb, "delete");
        let r = res(Method::PATCH, &format!("{named}/status"), "");
        assert_eq!(
            (r.group.as_str(), r.namespace.as_str(), r.name.as_str()),
            ("net.isthmus.io", "isthmus", "a")
        );
        assert_eq!(r.combined_resource(), "networkconfigs/status");
    }

    #[test]
    fn field_selector_on_name_names_the_object() {
        let r = res(
            Method::GET,
            "/api/v1/namespaces/n/secrets",
            "fieldSelector=metadata.name%3Ds1&watch=1",
        );
        assert_eq!((r.verb.as_str(), r.name.as_str()), ("watch", "s1"));
        let r = res(
            Method::GET,
            "/api/v1/secrets",
            "fieldSelector=metadata.name!%3Ds1",
        );
        assert_eq!(r.name, "");
        let r = res(
            Method::GET,
            "/api/v1/secrets",
            "fieldSelector=type%3Dx,metadata.name%3D%3Ds2",
        );
        assert_eq!(r.name, "s2");
    }

    #[test]
    fn namespaces_are_their_own_namespace() {
        let r = res(Method::GET, "/api/v1/namespaces/foo", "");
        assert_eq!(
            (r.resource.as_str(), r.name.as_str(), r.namespace.as_str()),
            ("namespaces", "foo", "foo")
        );
        let r = res(Method::PUT, "/api/v1/namespaces/foo/status", "");
        assert_eq!(
            (r.resource.as_str(), r.subresource.as_str()),
            ("namespaces", "status")
        );
        let r = res(Method::GET, "/api/v1/namespaces", "");
        assert_eq!((r.verb.as_str(), r.namespace.as_str()), ("list", ""));
        let r = res(
            Method::POST,
            "/api/v1/namespaces/n/serviceaccounts/sa/token",
            "",
        );
        assert_eq!(r.combined_resource(), "serviceaccounts/token");
    }

    #[test]
    fn discovery_and_other_paths_are_non_resource() {
        for path in [
            "/api",
            "/api/v1",
            "/apis",
            "/apis/apps",
            "/apis/apps/v1",
            "/version",
            "/healthz",
            "/openapi/v3/apis/apps/v1",
            "/",
        ] {
            assert!(
                matches!(from_request(&Method::GET, path, ""), Attributes::NonResource { ref verb, .. } if verb == "get"),
                "{path}"
            );
        }
        let r = res(Method::GET, "/api/v1/watch/namespaces/n/pods", "");
        assert_eq!(
            (r.verb.as_str(), r.namespace.as_str(), r.resource.as_str()),
            ("watch", "n", "pods")
        );
    }
}
