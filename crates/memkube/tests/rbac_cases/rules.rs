//! Rule shapes: verbs, API groups, resources and subresources, resourceNames, namespace and
//! cluster scope, RoleBindings to ClusterRoles, subjects, unresolvable roles and
//! nonResourceURLs; each denial checked against the API server's exact message.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, ObjectMeta, Patch,
    PatchParams, PostParams, WatchParams,
};
use kube::{Api, Client};
use serde_json::json;

use super::*;

fn configmap(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    }
}

async fn configmaps(c: &impl Cluster, ns: &str, names: &[&str]) {
    let api: Api<ConfigMap> = Api::namespaced(c.admin(), ns);
    for name in names {
        api.create(&PostParams::default(), &configmap(name))
            .await
            .expect("configmap");
    }
}

/// Only the verbs a rule lists are allowed; each other verb is denied with its own message.
pub async fn verbs_are_matched_exactly(c: &impl Cluster) {
    let ns = namespace(&c.admin()).await;
    configmaps(c, &ns, &["c1"]).await;
    let a = actor(c, &ns, "reader").await;
    role(
        c,
        &ns,
        "read",
        vec![rule(&["get", "list"], &[""], &["configmaps"])],
    )
    .await;
    role_binding(c, &ns, "read", ("Role", "read"), vec![sa(&a)]).await;
    let api: Api<ConfigMap> = Api::namespaced(a.client.clone(), &ns);
    assert_allowed(&api.get("c1").await);
    assert_allowed(&api.list(&ListParams::default()).await);
    let msg = |what: &str, verb: &str| {
        let rest =
            format!("{verb} resource \"configmaps\" in API group \"\" in the namespace \"{ns}\"");
        denied(what, &a.user, &rest)
    };
    let pp = PostParams::default();
    assert_forbidden(
        api.create(&pp, &configmap("c2")).await,
        &msg("configmaps", "create"),
    );
    let named = "configmaps \"c1\"";
    assert_forbidden(
        api.replace("c1", &pp, &configmap("c1")).await,
        &msg(named, "update"),
    );
    let merge = Patch::Merge(json!({"data": {"k": "v"}}));
    assert_forbidden(
        api.patch("c1", &PatchParams::default(), &merge).await,
        &msg(named, "patch"),
    );
    let apply = Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}}));
    assert_forbidden(
        api.patch("c1", &PatchParams::apply("t"), &apply).await,
        &msg(named, "patch"),
    );
    let status = assert_forbidden(
        api.delete("c1", &DeleteParams::default()).await,
        &msg(named, "delete"),
    );
    assert_eq!(
        details(&status),
        ("c1".into(), "".into(), "configmaps".into())
    );
    let dc = api
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
    assert_forbidden(dc, &msg("configmaps", "deletecollection"));
    let watch = api.watch(&WatchParams::default(), "0").await.map(|_| ());
    assert_forbidden(watch, &msg("configmaps", "watch"));
}

/// `apiGroups` must name the request's group (or be `*`).
pub async fn api_groups_must_match(c: &impl Cluster) {
    let ns = namespace(&c.admin()).await;
    configmaps(c, &ns, &["c1"]).await;
    let wrong = actor(c, &ns, "wrong-group").await;
    let any = actor(c, &ns, "any-group").await;
    role(
        c,
        &ns,
        "apps-cm",
        vec![rule(&["get"], &["apps"], &["configmaps"])],
    )
    .await;
    role(
        c,
        &ns,
        "any-cm",
        vec![rule(&["get"], &["*"], &["configmaps"])],
    )
    .await;
    role_binding(c, &ns, "wrong", ("Role", "apps-cm"), vec![sa(&wrong)]).await;
    role_binding(c, &ns, "any", ("Role", "any-cm"), vec![sa(&any)]).await;
    let rest = format!("get resource \"configmaps\" in API group \"\" in the namespace \"{ns}\"");
    let api: Api<ConfigMap> = Api::namespaced(wrong.client.clone(), &ns);
    assert_forbidden(
        api.get("c1").await,
        &denied("configmaps \"c1\"", &wrong.user, &rest),
    );
    let api: Api<ConfigMap> = Api::namespaced(any.client.clone(), &ns);
    assert_allowed(&api.get("c1").await);
}

const GIZMO_GROUP: &str = "rbac.memkube.test";

/// A namespaced custom resource with a status subresource (created once per cluster).
async fn gizmo_type(admin: &Client) -> ApiResource {
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": format!("gizmos.{GIZMO_GROUP}")},
        "spec": {"group": GIZMO_GROUP, "scope": "Namespaced",
                 "names": {"kind": "Gizmo", "plural": "gizmos", "singular": "gizmo"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .expect("crd");
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    match crds.create(&PostParams::default(), &crd).await {
        Ok(_) | Err(kube::Error::Api(_)) => {}
        Err(e) => panic!("creating the gizmo CRD: {e}"),
    }
    let gvk = GroupVersionKind::gvk(GIZMO_GROUP, "v1", "Gizmo");
    let ty = ApiResource::from_gvk_with_plural(&gvk, "gizmos");
    let probe: Api<DynamicObject> = Api::all_with(admin.clone(), &ty);
    eventually("gizmos are served", || {
        let probe = probe.clone();
        async move { probe.list(&ListParams::default()).await.is_ok() }
    })
    .await;
    ty
}

/// Gizmo `g1` in a fresh namespace, and one actor per grant of `patch` on gizmos: `main`
/// (`gizmos`), `status` (`gizmos/status`), `any-status` (`*/status`), `everything` (`*`).
async fn gizmo_patchers(c: &impl Cluster) -> (ApiResource, String, Vec<Actor>) {
    let ty = gizmo_type(&c.admin()).await;
    let ns = namespace(&c.admin()).await;
    let gizmos: Api<DynamicObject> = Api::namespaced_with(c.admin(), &ns, &ty);
    let gizmo = json!({"apiVersion": format!("{GIZMO_GROUP}/v1"), "kind": "Gizmo", "metadata": {"name": "g1"}, "spec": {"size": 1}});
    let gizmo: DynamicObject = serde_json::from_value(gizmo).expect("gizmo");
    gizmos
        .create(&PostParams::default(), &gizmo)
        .await
        .expect("gizmo");
    let grants: [(&str, &[&str]); 4] = [
        ("main", &["gizmos"]),
        ("status", &["gizmos/status"]),
        ("any-status", &["*/status"]),
        ("everything", &["*"]),
    ];
    let mut actors = Vec::new();
    for (name, resources) in grants {
        let a = actor(c, &ns, name).await;
        role(
            c,
            &ns,
            name,
            vec![rule(&["patch"], &[GIZMO_GROUP], resources)],
        )
        .await;
        role_binding(c, &ns, name, ("Role", name), vec![sa(&a)]).await;
        actors.push(a);
    }
    (ty, ns, actors)
}

/// `details` of a denial as (name, group, kind).
fn details(status: &Status) -> (String, String, String) {
    let d = status.details.as_ref().expect("details");
    (d.name.clone(), d.group.clone(), d.kind.clone())
}

/// A subresource needs a rule naming it (`gizmos/status`) or `*/status`; the main resource's
/// rule does not cover it, nor the reverse.
pub async fn subresources_need_their_own_rules(c: &impl Cluster) {
    let (ty, ns, actors) = gizmo_patchers(c).await;
    let [main, status_only, any_status, everything] = &actors[..] else {
        panic!("four actors");
    };
    let spec = Patch::Merge(json!({"spec": {"size": 2}}));
    let status = Patch::Merge(json!({"status": {"ready": true}}));
    let pp = PatchParams::default();
    let message = |a: &Actor, resource: &str| {
        let rest = format!(
            "patch resource \"{resource}\" in API group \"{GIZMO_GROUP}\" in the namespace \"{ns}\""
        );
        denied(&format!("gizmos.{GIZMO_GROUP} \"g1\""), &a.user, &rest)
    };
    let api = |a: &Actor| Api::<DynamicObject>::namespaced_with(a.client.clone(), &ns, &ty);
    assert_allowed(&api(main).patch("g1", &pp, &spec).await);
    let denial = assert_forbidden(
        api(main).patch_status("g1", &pp, &status).await,
        &message(main, "gizmos/status"),
    );
    assert_eq!(
        details(&denial),
        ("g1".into(), GIZMO_GROUP.into(), "gizmos".into())
    );
    assert_allowed(&api(status_only).patch_status("g1", &pp, &status).await);
    assert_forbidden(
        api(status_only).patch("g1", &pp, &spec).await,
        &message(status_only, "gizmos"),
    );
    assert_allowed(&api(any_status).patch_status("g1", &pp, &status).await);
    assert_forbidden(
        api(any_status).patch("g1", &pp, &spec).await,
        &message(any_status, "gizmos"),
    );
    assert_allowed(&api(everything).patch("g1", &pp, &spec).await);
    assert_allowed(&api(everything).patch_status("g1", &pp, &status).await);
}

/// `resourceNames` allow requests naming a listed object, never requests without a name
/// (create, list, watch, deletecollection); a list whose field selector pins
/// `metadata.name` names that object.
pub async fn resource_names_never_match_unnamed_requests(c: &impl Cluster) {
    let ns = namespace(&c.admin()).await;
    configmaps(c, &ns, &["allowed", "other"]).await;
    let a = actor(c, &ns, "named").await;
    let mut named = rule(
        &[
            "get",
            "list",
            "watch",
            "create",
            "update",
            "delete",
            "deletecollection",
        ],
        &[""],
        &["configmaps"],
    );
    named.resource_names = Some(vec!["allowed".into()]);
    role(c, &ns, "named", vec![named]).await;
    role_binding(c, &ns, "named", ("Role", "named"), vec![sa(&a)]).await;
    let api: Api<ConfigMap> = Api::namespaced(a.client.clone(), &ns);
    let msg = |what: &str, verb: &str| {
        let rest =
            format!("{verb} resource \"configmaps\" in API group \"\" in the namespace \"{ns}\"");
        denied(what, &a.user, &rest)
    };
    assert_allowed(&api.get("allowed").await);
    assert_forbidden(api.get("other").await, &msg("configmaps \"other\"", "get"));
    assert_forbidden(
        api.list(&ListParams::default()).await,
        &msg("configmaps", "list"),
    );
    assert_allowed(
        &api.list(&ListParams::default().fields("metadata.name=allowed"))
            .await,
    );
    let pp = PostParams::default();
    assert_forbidden(
        api.create(&pp, &configmap("allowed")).await,
        &msg("configmaps", "create"),
    );
    let dc = api
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
    assert_forbidden(dc, &msg("configmaps", "deletecollection"));
    assert_allowed(&api.delete("allowed", &DeleteParams::default()).await);
}

/// A RoleBinding grants a ClusterRole's rules only in its namespace; a ClusterRoleBinding
/// everywhere and at the cluster scope.
pub async fn bindings_scope_their_grants(c: &impl Cluster) {
    let (ns, other) = (namespace(&c.admin()).await, namespace(&c.admin()).await);
    let local = actor(c, &ns, "local").await;
    let global = actor(c, &ns, "global").await;
    let reader = unique("secret-reader");
    cluster_role(
        c,
        &reader,
        vec![rule(&["get", "list"], &[""], &["secrets"])],
    )
    .await;
    role_binding(c, &ns, &reader, ("ClusterRole", &reader), vec![sa(&local)]).await;
    cluster_role_binding(c, &unique("global-reader"), &reader, vec![sa(&global)]).await;
    let lp = ListParams::default();
    let secrets = |a: &Actor, ns: &str| Api::<Secret>::namespaced(a.client.clone(), ns);
    assert_allowed(&secrets(&local, &ns).list(&lp).await);
    let in_ns = format!("list resource \"secrets\" in API group \"\" in the namespace \"{other}\"");
    assert_forbidden(
        secrets(&local, &other).list(&lp).await,
        &denied("secrets", &local.user, &in_ns),
    );
    let all = Api::<Secret>::all(local.client.clone()).list(&lp).await;
    let cluster = "list resource \"secrets\" in API group \"\" at the cluster scope";
    assert_forbidden(all, &denied("secrets", &local.user, cluster));
    assert_allowed(&secrets(&global, &other).list(&lp).await);
    assert_allowed(&Api::<Secret>::all(global.client.clone()).list(&lp).await);
}

/// A Namespace is addressed in its own namespace, so a RoleBinding lets its subject read that
/// namespace only; a cluster-scoped resource cannot be granted by a RoleBinding at all.
pub async fn namespaces_are_in_their_own_namespace(c: &impl Cluster) {
    let (ns, other) = (namespace(&c.admin()).await, namespace(&c.admin()).await);
    let local = actor(c, &ns, "local").await;
    let ns_getter = unique("ns-getter");
    let roles_getter = unique("roles-getter");
    cluster_role(
        c,
        &ns_getter,
        vec![rule(&["get", "list"], &[""], &["namespaces"])],
    )
    .await;
    cluster_role(
        c,
        &roles_getter,
        vec![rule(
            &["get"],
            &["rbac.authorization.k8s.io"],
            &["clusterroles"],
        )],
    )
    .await;
    for role in [&ns_getter, &roles_getter] {
        role_binding(c, &ns, role, ("ClusterRole", role), vec![sa(&local)]).await;
    }
    let namespaces: Api<Namespace> = Api::all(local.client.clone());
    assert_allowed(&namespaces.get(&ns).await);
    let get_other =
        format!("get resource \"namespaces\" in API group \"\" in the namespace \"{other}\"");
    assert_forbidden(
        namespaces.get(&other).await,
        &denied(&format!("namespaces \"{other}\""), &local.user, &get_other),
    );
    let list_all = "list resource \"namespaces\" in API group \"\" at the cluster scope";
    assert_forbidden(
        namespaces.list(&ListParams::default()).await,
        &denied("namespaces", &local.user, list_all),
    );
    let cluster_roles: Api<ClusterRole> = Api::all(local.client.clone());
    let rest = "get resource \"clusterroles\" in API group \"rbac.authorization.k8s.io\" at the cluster scope";
    let what = format!("clusterroles.rbac.authorization.k8s.io \"{ns_getter}\"");
    assert_forbidden(
        cluster_roles.get(&ns_getter).await,
        &denied(&what, &local.user, rest),
    );
}

/// User, Group and ServiceAccount subjects; a ServiceAccount subject without a namespace is
/// in the RoleBinding's namespace.
pub async fn subjects_match_users_groups_and_service_accounts(c: &impl Cluster) {
    let (ns, other) = (namespace(&c.admin()).await, namespace(&c.admin()).await);
    configmaps(c, &ns, &["c1"]).await;
    let by_user = actor(c, &ns, "by-user").await;
    let by_sa = actor(c, &ns, "by-sa").await;
    let stranger = actor(c, &other, "stranger").await;
    role(c, &ns, "read", vec![rule(&["get"], &[""], &["configmaps"])]).await;
    let get = |a: &Actor| {
        let api: Api<ConfigMap> = Api::namespaced(a.client.clone(), &ns);
        async move { api.get("c1").await }
    };
    let rest = format!("get resource \"configmaps\" in API group \"\" in the namespace \"{ns}\"");
    for a in [&by_user, &by_sa, &stranger] {
        assert_forbidden(get(a).await, &denied("configmaps \"c1\"", &a.user, &rest));
    }
    role_binding(
        c,
        &ns,
        "user",
        ("Role", "read"),
        vec![subject("User", &by_user.user, None)],
    )
    .await;
    role_binding(
        c,
        &ns,
        "sa",
        ("Role", "read"),
        vec![subject("ServiceAccount", "by-sa", None)],
    )
    .await;
    role_binding(
        c,
        &ns,
        "wrong-ns",
        ("Role", "read"),
        vec![subject("ServiceAccount", "stranger", None)],
    )
    .await;
    assert_allowed(&get(&by_user).await);
    assert_allowed(&get(&by_sa).await);
    assert_forbidden(
        get(&stranger).await,
        &denied("configmaps \"c1\"", &stranger.user, &rest),
    );
    let group = format!("system:serviceaccounts:{other}");
    role_binding(
        c,
        &ns,
        "group",
        ("Role", "read"),
        vec![subject("Group", &group, None)],
    )
    .await;
    assert_allowed(&get(&stranger).await);
}

/// A binding whose role does not exist grants nothing, and the denial says why.
pub async fn missing_roles_are_named_in_the_denial(c: &impl Cluster) {
    let ns = namespace(&c.admin()).await;
    let a = actor(c, &ns, "orphan").await;
    role_binding(c, &ns, "dangling", ("Role", "missing"), vec![sa(&a)]).await;
    let api: Api<ConfigMap> = Api::namespaced(a.client.clone(), &ns);
    let rest = format!(
        "list resource \"configmaps\" in API group \"\" in the namespace \"{ns}\": RBAC: role.rbac.authorization.k8s.io \"missing\" not found"
    );
    assert_forbidden(
        api.list(&ListParams::default()).await,
        &denied("configmaps", &a.user, &rest),
    );
}

async fn get_path(client: &Client, path: &str) -> kube::Result<String> {
    let request = http::Request::get(path).body(Vec::new()).expect("request");
    client.request_text(request).await
}

/// Every authenticated identity may read discovery, `/version` and health; other paths need a
/// ClusterRole's `nonResourceURLs` (exact, or a `*` prefix) through a ClusterRoleBinding.
pub async fn non_resource_urls_need_cluster_role_bindings(c: &impl Cluster) {
    let ns = namespace(&c.admin()).await;
    let a = actor(c, &ns, "paths").await;
    let b = actor(c, &ns, "paths-by-role-binding").await;
    for path in [
        "/version",
        "/healthz",
        "/livez",
        "/readyz",
        "/api",
        "/api/v1",
        "/apis",
        "/apis/rbac.authorization.k8s.io/v1",
        "/openapi/v3",
    ] {
        assert_allowed(&get_path(&a.client, path).await);
    }
    let denial =
        |user: &str, path: &str| format!("forbidden: User \"{user}\" cannot get path \"{path}\"");
    let status = assert_forbidden(
        get_path(&a.client, "/metrics").await,
        &denial(&a.user, "/metrics"),
    );
    assert_eq!(details(&status), ("".into(), "".into(), "".into()));
    let role = unique("paths");
    let urls = PolicyRule {
        verbs: vec!["get".into()],
        non_resource_urls: Some(vec!["/metrics".into(), "/debug/*".into()]),
        ..PolicyRule::default()
    };
    cluster_role(c, &role, vec![urls]).await;
    cluster_role_binding(c, &role, &role, vec![sa(&a)]).await;
    role_binding(c, &ns, &role, ("ClusterRole", &role), vec![sa(&b)]).await;
    assert_allowed(&get_path(&a.client, "/metrics").await);
    assert_allowed(&get_path(&a.client, "/debug/pprof").await);
    assert_forbidden(
        get_path(&a.client, "/debug").await,
        &denial(&a.user, "/debug"),
    );
    assert_forbidden(
        get_path(&b.client, "/metrics").await,
        &denial(&b.user, "/metrics"),
    );
}
