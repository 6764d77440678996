//! Authentication and RBAC on memkube: every portable case of `rbac_cases` run against an
//! in-process instance (tokens through `client_with_token`), then what only memkube has: the
//! admin token and in-process admin, anonymous HTTP requests by `Config::anonymous_is_admin`,
//! the exact 401 body, token expiry by test hook, the default policy and discovery.

use crate::rbac_cases::{self, Cluster, actor, failure, namespace, reviews, rules, tokens, whoami};

use http_body_util::BodyExt;
use isthmus_memkube::{Config, MemKube};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};

/// A memkube instance as a [`Cluster`].
struct Mem(MemKube);

impl Cluster for Mem {
    fn admin(&self) -> Client {
        self.0.client()
    }
    fn with_token(&self, token: &str) -> Client {
        self.0.client_with_token(token)
    }
}

fn mem() -> Mem {
    Mem(MemKube::new())
}

macro_rules! on_memkube {
    ($($module:ident :: $case:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $case() {
            $module::$case(&mem()).await;
        }
    )*};
}

crate::portable_rbac_cases!(on_memkube);

// memkube's legacy token controller (not part of the real-API tier: a real cluster's
// controller manager runs it, which a bare API server may not)
on_memkube!(
    tokens::legacy_token_secrets_are_filled_in,
    tokens::token_secrets_without_their_service_account_are_deleted,
);

/// GET `path` with `client`; the status code and the body as JSON.
async fn raw_get(client: &Client, path: &str) -> (u16, Value) {
    let request = http::Request::get(path)
        .body(kube::client::Body::empty())
        .unwrap();
    let response = client.send(request).await.unwrap();
    let code = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn unauthorized_body() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
}

#[tokio::test]
async fn a_bad_token_gets_the_real_401_body() {
    let kube = MemKube::new();
    for token in ["garbage", "", "Bearer"] {
        let client = kube.client_with_token(&format!("{token}x"));
        assert_eq!(
            raw_get(&client, "/api/v1/namespaces").await,
            (401, unauthorized_body())
        );
    }
    let odd = kube.client_with_token("line\nbreak");
    assert_eq!(raw_get(&odd, "/version").await.0, 401);
}

#[tokio::test]
async fn the_admin_token_and_the_in_process_client_are_masters() {
    let kube = MemKube::new();
    let token = kube.admin_token();
    assert_eq!(token, kube.admin_token(), "fixed per instance");
    assert_ne!(token, MemKube::new().admin_token(), "random per instance");
    for client in [kube.client(), kube.client_with_token(&token)] {
        assert_eq!(whoami(&client).await.unwrap(), "memkube-admin");
        let (code, review) = raw_get(&client, "/api/v1/namespaces").await;
        assert_eq!(code, 200, "{review}");
    }
    let (_, review) = post_self_subject_review(&kube.client()).await;
    assert_eq!(
        review["status"]["userInfo"]["groups"],
        json!(["system:masters", "system:authenticated"])
    );
}

async fn post_self_subject_review(client: &Client) -> (u16, Value) {
    let body = serde_json::to_vec(
        &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
    )
    .unwrap();
    let request = http::Request::post("/apis/authentication.k8s.io/v1/selfsubjectreviews")
        .header("content-type", "application/json")
        .body(kube::client::Body::from(body))
        .unwrap();
    let response = client.send(request).await.unwrap();
    let code = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn anonymous_http_requests_follow_the_config() {
    for anonymous_is_admin in [true, false] {
        let kube = MemKube::with_config(Config {
            anonymous_is_admin,
            ..Config::default()
        });
        let server = kube
            .serve_http("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let client = Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap();
        for path in ["/api/v1/namespaces", "/healthz", "/version"] {
            let (code, body) = raw_get(&client, path).await;
            if anonymous_is_admin {
                assert_eq!(code, 200, "{path}");
            } else {
                assert_eq!((code, body), (401, unauthorized_body()), "{path}");
            }
        }
        assert_eq!(
            whoami(&kube.client()).await.unwrap(),
            "memkube-admin",
            "in-process stays admin"
        );
        let mut with_token = kube::Config::new(server.url().parse().unwrap());
        with_token.auth_info.token = Some(kube.admin_token().into());
        let client = Client::try_from(with_token).unwrap();
        assert_eq!(raw_get(&client, "/api/v1/namespaces").await.0, 200);
    }
}

#[tokio::test]
async fn expired_tokens_are_unauthorized() {
    let m = mem();
    let ns = namespace(&m.admin()).await;
    let a = actor(&m, &ns, "expiring").await;
    assert_eq!(whoami(&a.client).await.unwrap(), a.user);
    m.0.expire_tokens();
    failure(whoami(&a.client).await, 401);
    assert_eq!(
        whoami(&m.0.client_with_token(&m.0.admin_token()))
            .await
            .unwrap(),
        "memkube-admin"
    );
}

#[tokio::test]
async fn a_new_instance_stores_the_default_policy() {
    let kube = MemKube::new();
    let roles: Api<ClusterRole> = Api::all(kube.client());
    let names: Vec<String> = roles
        .list(&ListParams::default())
        .await
        .unwrap()
        .iter()
        .map(|r| r.name_any())
        .collect();
    let expected = [
        "cluster-admin",
        "system:basic-user",
        "system:discovery",
        "system:public-info-viewer",
    ];
    assert_eq!(names, expected);
    let bindings: Api<ClusterRoleBinding> = Api::all(kube.client());
    let masters = bindings.get("cluster-admin").await.unwrap();
    assert_eq!(masters.subjects.as_ref().unwrap()[0].name, "system:masters");
    assert_eq!(
        masters.labels()["kubernetes.io/bootstrapping"],
        "rbac-defaults"
    );
}

#[tokio::test]
async fn discovery_lists_the_new_types_with_their_verbs() {
    let kube = MemKube::new();
    let client = kube.client();
    let (_, authz) = raw_get(&client, "/apis/authorization.k8s.io/v1").await;
    let resources = authz["resources"].as_array().unwrap();
    let ssar = resources
        .iter()
        .find(|r| r["name"] == "selfsubjectaccessreviews")
        .unwrap();
    assert_eq!(ssar["verbs"], json!(["create"]));
    assert!(
        resources
            .iter()
            .any(|r| r["name"] == "localsubjectaccessreviews" && r["namespaced"] == true)
    );
    let (_, core) = raw_get(&client, "/api/v1").await;
    let token = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "serviceaccounts/token")
        .unwrap();
    assert_eq!(
        (token["kind"].clone(), token["group"].clone()),
        (json!("TokenRequest"), json!("authentication.k8s.io"))
    );
    for (group, plural) in [
        ("rbac.authorization.k8s.io", "rolebindings"),
        ("networking.k8s.io", "networkpolicies"),
        ("policy", "poddisruptionbudgets"),
    ] {
        let (code, list) = raw_get(&client, &format!("/apis/{group}/v1/{plural}")).await;
        assert_eq!(
            (
                code,
                list["kind"].as_str().unwrap_or_default().ends_with("List")
            ),
            (200, true),
            "{plural}"
        );
    }
    let (code, _) = raw_get(
        &client,
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
    )
    .await;
    assert_eq!(code, 405);
    let namespaces: Api<Namespace> = Api::all(client);
    assert!(namespaces.get("default").await.is_ok());
}

#[tokio::test]
async fn a_token_review_names_the_token_owner() {
    let m = mem();
    let ns = namespace(&m.admin()).await;
    let a = actor(&m, &ns, "reviewed").await;
    let review = |token: &str| json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}});
    let api: Api<k8s_openapi::api::authentication::v1::TokenReview> = Api::all(m.admin());
    let pp = kube::api::PostParams::default();
    let ok = api
        .create(&pp, &serde_json::from_value(review(&a.token)).unwrap())
        .await
        .unwrap();
    let status = ok.status.unwrap();
    assert_eq!(status.authenticated, Some(true));
    assert_eq!(
        status.user.unwrap().username.as_deref(),
        Some(a.user.as_str())
    );
    let bad = api
        .create(&pp, &serde_json::from_value(review("nope")).unwrap())
        .await
        .unwrap();
    assert_ne!(bad.status.unwrap().authenticated, Some(true));
    rbac_cases::failure(
        Api::<k8s_openapi::api::authentication::v1::TokenReview>::all(a.client.clone())
            .create(&pp, &serde_json::from_value(review(&a.token)).unwrap())
            .await,
        403,
    );
}
