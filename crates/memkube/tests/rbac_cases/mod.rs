//! RBAC and token semantics as async functions over any cluster: each case takes a
//! [`Cluster`] (an admin client and a way to build a client from a token) and uses only the
//! Kubernetes API, so the same cases can run against a real API server. Names of cluster-scoped
//! objects are unique, namespaces generated, so cases can share a cluster. Messages asserted
//! are the real API server's. `rules` covers rule shapes, `tokens` TokenRequest, token
//! invalidation and legacy token Secrets, `reviews` the access and subject reviews.

pub mod reviews;
pub mod rules;
pub mod tokens;

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{SelfSubjectReview, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use kube::api::{ObjectMeta, PostParams};
use kube::core::Status;
use kube::{Api, Client};

/// A cluster the cases run against.
pub trait Cluster: Sync {
    /// A client that may do everything.
    fn admin(&self) -> Client;
    /// A client that authenticates with `token`.
    fn with_token(&self, token: &str) -> Client;
    /// How long policy changes take to reach the authorizer (informer caches on a real
    /// server; nothing on memkube).
    fn settle(&self) -> Duration {
        Duration::ZERO
    }
}

/// `prefix` plus a random suffix, for cluster-scoped names.
pub fn unique(prefix: &str) -> String {
    let suffix: String = (0..6).map(|_| fastrand::lowercase()).collect();
    format!("{prefix}-{suffix}")
}

/// A fresh namespace; returns its name.
pub async fn namespace(admin: &Client) -> String {
    let ns = Namespace {
        metadata: ObjectMeta {
            generate_name: Some("rbac-".into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    let api: Api<Namespace> = Api::all(admin.clone());
    let created = api
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    created.metadata.name.expect("generated name")
}

/// A ServiceAccount and a client acting as it.
#[derive(Clone)]
pub struct Actor {
    /// Client authenticating with a fresh TokenRequest token.
    pub client: Client,
    /// The token.
    pub token: String,
    /// `system:serviceaccount:<ns>:<name>`
    pub user: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// Creates ServiceAccount `name` in `ns`.
pub async fn create_service_account(admin: &Client, ns: &str, name: &str) -> ServiceAccount {
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(admin.clone(), ns);
    api.create(&PostParams::default(), &sa)
        .await
        .expect("service account")
}

/// A TokenRequest for ServiceAccount `name` in `ns` by `client`.
pub async fn request_token(
    client: &Client,
    ns: &str,
    name: &str,
    seconds: Option<i64>,
) -> kube::Result<TokenRequest> {
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: seconds,
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let api: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    api.create_token_request(name, &PostParams::default(), &request)
        .await
}

/// Creates a ServiceAccount and returns a client authenticated with a token for it.
pub async fn actor(c: &impl Cluster, ns: &str, name: &str) -> Actor {
    create_service_account(&c.admin(), ns, name).await;
    let tr = request_token(&c.admin(), ns, name, None)
        .await
        .expect("token");
    let token = tr.status.and_then(|s| s.token).expect("a token");
    Actor {
        client: c.with_token(&token),
        token,
        user: format!("system:serviceaccount:{ns}:{name}"),
        namespace: ns.into(),
        name: name.into(),
    }
}

/// A rule: verbs on resources of API groups.
pub fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> PolicyRule {
    let owned = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    PolicyRule {
        verbs: owned(verbs),
        api_groups: Some(owned(groups)),
        resources: Some(owned(resources)),
        ..PolicyRule::default()
    }
}

/// A subject of `kind` (`User`, `Group`, `ServiceAccount`).
pub fn subject(kind: &str, name: &str, namespace: Option<&str>) -> Subject {
    let api_group = (kind != "ServiceAccount").then(|| "rbac.authorization.k8s.io".to_string());
    Subject {
        api_group,
        kind: kind.into(),
        name: name.into(),
        namespace: namespace.map(Into::into),
    }
}

/// The subject for an actor.
pub fn sa(actor: &Actor) -> Subject {
    subject("ServiceAccount", &actor.name, Some(&actor.namespace))
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        ..ObjectMeta::default()
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: kind.into(),
        name: name.into(),
    }
}

/// Creates Role `name` in `ns`.
pub async fn role(c: &impl Cluster, ns: &str, name: &str, rules: Vec<PolicyRule>) {
    let role = Role {
        metadata: meta(name),
        rules: Some(rules),
    };
    let api: Api<Role> = Api::namespaced(c.admin(), ns);
    api.create(&PostParams::default(), &role)
        .await
        .expect("role");
}

/// Creates ClusterRole `name`.
pub async fn cluster_role(c: &impl Cluster, name: &str, rules: Vec<PolicyRule>) {
    let role = ClusterRole {
        metadata: meta(name),
        rules: Some(rules),
        ..ClusterRole::default()
    };
    let api: Api<ClusterRole> = Api::all(c.admin());
    api.create(&PostParams::default(), &role)
        .await
        .expect("cluster role");
}

/// Creates RoleBinding `name` in `ns` to the `role_kind` (`Role`/`ClusterRole`) `role_name`.
pub async fn role_binding(
    c: &impl Cluster,
    ns: &str,
    name: &str,
    (role_kind, role_name): (&str, &str),
    subjects: Vec<Subject>,
) {
    let binding = RoleBinding {
        metadata: meta(name),
        role_ref: role_ref(role_kind, role_name),
        subjects: Some(subjects),
    };
    let api: Api<RoleBinding> = Api::namespaced(c.admin(), ns);
    api.create(&PostParams::default(), &binding)
        .await
        .expect("role binding");
    tokio::time::sleep(c.settle()).await;
}

/// Creates ClusterRoleBinding `name` to ClusterRole `role_name`.
pub async fn cluster_role_binding(
    c: &impl Cluster,
    name: &str,
    role_name: &str,
    subjects: Vec<Subject>,
) {
    let binding = ClusterRoleBinding {
        metadata: meta(name),
        role_ref: role_ref("ClusterRole", role_name),
        subjects: Some(subjects),
    };
    let api: Api<ClusterRoleBinding> = Api::all(c.admin());
    api.create(&PostParams::default(), &binding)
        .await
        .expect("cluster role binding");
    tokio::time::sleep(c.settle()).await;
}

/// The Status of a failed call that must have failed with `code`.
pub fn failure<T: Debug>(result: kube::Result<T>, code: u16) -> Box<Status> {
    match result {
        Err(kube::Error::Api(status)) if status.code == code => status,
        other => panic!("expected a {code} Status, got {other:?}"),
    }
}

/// Asserts a 403 with exactly `message`, reason Forbidden.
pub fn assert_forbidden<T: Debug>(result: kube::Result<T>, message: &str) -> Box<Status> {
    let status = failure(result, 403);
    assert_eq!(status.message, message);
    assert_eq!(status.reason, "Forbidden");
    status
}

/// Asserts the call was not refused by the authorizer (it may still fail otherwise).
pub fn assert_allowed<T: Debug>(result: &kube::Result<T>) {
    if let Err(kube::Error::Api(status)) = result {
        assert!(
            status.code != 403 && status.code != 401,
            "refused: {status:?}"
        );
    }
    if let Err(e @ (kube::Error::Auth(_) | kube::Error::Service(_))) = result {
        panic!("request failed: {e}");
    }
}

/// Who a client is, by SelfSubjectReview.
pub async fn whoami(client: &Client) -> kube::Result<String> {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    let review = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await?;
    let user = review
        .status
        .and_then(|s| s.user_info)
        .and_then(|u| u.username);
    Ok(user.unwrap_or_default())
}

/// Polls `check` until it is true (up to 10 s): for effects a real cluster applies
/// asynchronously (controllers, caches). On memkube they are immediate.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("gave up waiting: {what}");
}

/// The message prefix of a denial of `user`.
pub fn denied(what: &str, user: &str, rest: &str) -> String {
    format!("{what} is forbidden: User \"{user}\" cannot {rest}")
}

/// Every RBAC case that describes a real API server, named once: `portable_rbac_cases!(m)` is
/// `m!(module::case, …)`. memkube's tests and the real-API tier both take the list from here.
#[macro_export]
macro_rules! portable_rbac_cases {
    ($m:ident) => {
        $m! {
            rules::verbs_are_matched_exactly,
            rules::api_groups_must_match,
            rules::subresources_need_their_own_rules,
            rules::resource_names_never_match_unnamed_requests,
            rules::bindings_scope_their_grants,
            rules::namespaces_are_in_their_own_namespace,
            rules::subjects_match_users_groups_and_service_accounts,
            rules::missing_roles_are_named_in_the_denial,
            rules::non_resource_urls_need_cluster_role_bindings,
            tokens::token_requests_honour_expiration_seconds,
            tokens::token_requests_are_authorized_on_the_subresource,
            tokens::unknown_tokens_are_unauthorized,
            tokens::deleting_the_service_account_revokes_its_tokens,
            tokens::token_reviews_honour_audiences,
            reviews::self_reviews_answer_for_the_caller,
            reviews::self_rules_review_lists_the_rules,
            reviews::subject_access_reviews_ask_about_others,
        }
    };
}
