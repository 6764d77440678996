//! Request routing (pure): turns a URL path into a [`Route`] and the query string into [`Query`].

use std::collections::BTreeMap;

/// What a path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/version`
    Version,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/{group}`
    Group(String),
    /// `/api/v1` or `/apis/{group}/{version}`
    ResourceList {
        /// API group ("" for core).
        group: String,
        /// Version.
        version: String,
    },
    /// `/healthz`, `/readyz`, `/livez`
    Health,
    /// `/openapi/v3`
    OpenApiIndex,
    /// `/openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`
    OpenApi {
        /// API group ("" for core).
        group: String,
        /// Version.
        version: String,
    },
    /// A resource collection, object, or subresource.
    Resource(Target),
    /// Anything else.
    Unknown,
}

/// A resource path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// API group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Plural resource name.
    pub plural: String,
    /// Namespace from the path, if any.
    pub namespace: Option<String>,
    /// Object name, if the path names one.
    pub name: Option<String>,
    /// Subresource (e.g. `status`), if any.
    pub sub: Option<String>,
}

/// Parses a path. `is_namespaced(group, version, plural)` disambiguates core paths such as
/// `/api/v1/namespaces/x/status` (a namespace's subresource) from `/api/v1/namespaces/x/secrets`.
pub fn parse_path(path: &str, is_namespaced: impl Fn(&str, &str, &str) -> bool) -> Route {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "readyz" | "livez", ..] => Route::Health,
        ["openapi", "v3"] => Route::OpenApiIndex,
        ["openapi", "v3", "api", version] => Route::OpenApi {
            group: String::new(),
            version: version.to_string(),
        },
        ["openapi", "v3", "apis", group, version] => Route::OpenApi {
            group: group.to_string(),
            version: version.to_string(),
        },
        ["api"] => Route::CoreVersions,
        ["apis"] => Route::Groups,
        ["apis", group] => Route::Group(group.to_string()),
        ["api", version] => Route::ResourceList {
            group: String::new(),
            version: version.to_string(),
        },
        ["apis", group, version] => Route::ResourceList {
            group: group.to_string(),
            version: version.to_string(),
        },
        ["api", version, rest @ ..] => resource_route("", version, rest, &is_namespaced),
        ["apis", group, version, rest @ ..] => resource_route(group, version, rest, &is_namespaced),
        _ => Route::Unknown,
    }
}

fn resource_route(
    group: &str,
    version: &str,
    rest: &[&str],
    is_namespaced: &impl Fn(&str, &str, &str) -> bool,
) -> Route {
    let target = |namespace: Option<&str>, plural: &str, name: Option<&str>, sub: Option<&str>| {
        Route::Resource(Target {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            namespace: namespace.map(Into::into),
            name: name.map(Into::into),
            sub: sub.map(Into::into),
        })
    };
    match rest {
        ["namespaces", ns, plural, tail @ ..] if is_namespaced(group, version, plural) => {
            match tail {
                [] => target(Some(ns), plural, None, None),
                [name] => target(Some(ns), plural, Some(name), None),
                [name, sub] => target(Some(ns), plural, Some(name), Some(sub)),
                _ => Route::Unknown,
            }
        }
        [plural] => target(None, plural, None, None),
        [plural, name] => target(None, plural, Some(name), None),
        [plural, name, sub] => target(None, plural, Some(name), Some(sub)),
        _ => Route::Unknown,
    }
}

/// The query parameters memkube understands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// `watch=true|1`
    pub watch: bool,
    /// `resourceVersion`
    pub resource_version: Option<String>,
    /// `resourceVersionMatch`
    pub resource_version_match: Option<String>,
    /// `labelSelector`
    pub label_selector: String,
    /// `fieldSelector`
    pub field_selector: String,
    /// `timeoutSeconds`
    pub timeout_seconds: Option<u64>,
    /// `allowWatchBookmarks`
    pub allow_bookmarks: bool,
    /// `sendInitialEvents`
    pub send_initial_events: Option<bool>,
    /// `limit` (0 = none)
    pub limit: usize,
    /// `continue`
    pub continue_token: Option<String>,
    /// `fieldManager`
    pub field_manager: Option<String>,
    /// `force`
    pub force: bool,
    /// `dryRun=All`
    pub dry_run: bool,
    /// `fieldValidation=Strict`
    pub strict: bool,
    /// `includeObject` for Table output: `None`, `Metadata` (default) or `Object`.
    pub include_object: Option<String>,
    /// `propagationPolicy` given as a query parameter (kubectl sends it in the body).
    pub propagation_policy: Option<String>,
}

fn truthy(v: &str) -> bool {
    matches!(v, "true" | "1" | "True")
}

impl Query {
    /// Parses a query string; unknown parameters are ignored.
    pub fn parse(query: &str) -> Result<Self, String> {
        let mut q = Self::default();
        let pairs: BTreeMap<String, String> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let number = |k: &str, v: &str| v.parse::<u64>().map_err(|_| format!("invalid {k}: {v:?}"));
        for (k, v) in &pairs {
            match k.as_str() {
                "watch" => q.watch = truthy(v),
                "resourceVersion" if !v.is_empty() => q.resource_version = Some(v.clone()),
                "resourceVersionMatch" if !v.is_empty() => {
                    q.resource_version_match = Some(v.clone())
                }
                "labelSelector" => q.label_selector = v.clone(),
                "fieldSelector" => q.field_selector = v.clone(),
                "timeoutSeconds" => q.timeout_seconds = Some(number(k, v)?),
                "allowWatchBookmarks" => q.allow_bookmarks = truthy(v),
                "sendInitialEvents" => q.send_initial_events = Some(truthy(v)),
                "limit" => q.limit = usize::try_from(number(k, v)?).unwrap_or(usize::MAX),
                "continue" if !v.is_empty() => q.continue_token = Some(v.clone()),
                "fieldManager" if !v.is_empty() => q.field_manager = Some(v.clone()),
                "force" => q.force = truthy(v),
                "dryRun" => q.dry_run = v == "All",
                "fieldValidation" => q.strict = v == "Strict",
                "includeObject" => q.include_object = Some(v.clone()),
                "propagationPolicy" => q.propagation_policy = Some(v.clone()),
                _ => {}
            }
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core_namespaced(group: &str, _: &str, plural: &str) -> bool {
        !(group.is_empty() && matches!(plural, "status" | "finalize"))
    }

    fn target(path: &str) -> Target {
        match parse_path(path, core_namespaced) {
            Route::Resource(t) => t,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn discovery_paths() {
        assert_eq!(parse_path("/api", core_namespaced), Route::CoreVersions);
        assert_eq!(parse_path("/apis/", core_namespaced), Route::Groups);
        assert_eq!(
            parse_path("/apis/x.io", core_namespaced),
            Route::Group("x.io".into())
        );
        assert_eq!(
            parse_path("/apis/x.io/v1", core_namespaced),
            Route::ResourceList {
                group: "x.io".into(),
                version: "v1".into()
            }
        );
        assert_eq!(parse_path("/nope/x", core_namespaced), Route::Unknown);
        assert_eq!(
            parse_path("/openapi/v3", core_namespaced),
            Route::OpenApiIndex
        );
        assert_eq!(
            parse_path("/openapi/v3/apis/x.io/v1", core_namespaced),
            Route::OpenApi {
                group: "x.io".into(),
                version: "v1".into()
            }
        );
        assert_eq!(parse_path("/openapi/v2", core_namespaced), Route::Unknown);
    }

    #[test]
    fn namespaced_and_cluster_paths() {
        let t = target("/apis/x.io/v1/namespaces/ns1/widgets/w1/status");
        assert_eq!(t.namespace.as_deref(), Some("ns1"));
        assert_eq!(
            (t.plural.as_str(), t.name.as_deref(), t.sub.as_deref()),
            ("widgets", Some("w1"), Some("status"))
        );
        let t = target("/api/v1/secrets");
        assert_eq!((t.namespace, t.name), (None, None));
        let t = target("/api/v1/namespaces/ns1");
        assert_eq!(
            (t.plural.as_str(), t.name.as_deref()),
            ("namespaces", Some("ns1"))
        );
        let t = target("/api/v1/namespaces/ns1/status");
        assert_eq!(
            (t.plural.as_str(), t.sub.as_deref()),
            ("namespaces", Some("status"))
        );
        let t = target("/api/v1/namespaces/ns1/secrets");
        assert_eq!(
            (t.plural.as_str(), t.namespace.as_deref()),
            ("secrets", Some("ns1"))
        );
    }

    #[test]
    fn query_parsing() {
        let q = Query::parse("watch=1&resourceVersion=12&labelSelector=a%3Db&timeoutSeconds=5&allowWatchBookmarks=true").unwrap();
        assert!(q.watch && q.allow_bookmarks);
        assert_eq!(q.resource_version.as_deref(), Some("12"));
        assert_eq!(q.label_selector, "a=b");
        assert_eq!(q.timeout_seconds, Some(5));
        assert!(Query::parse("limit=x").is_err());
        assert!(!Query::parse("watch=false").unwrap().watch);
    }
}
