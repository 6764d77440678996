//! Tokens: TokenRequest (lifetimes, validation, a missing ServiceAccount, authorization as
//! `create` on `serviceaccounts/token`), invalid and revoked tokens (401), and legacy token
//! Secrets filled in by the token controller.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::{ByteString, jiff};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::{Api, ResourceExt};

use super::*;

fn expiry_in(tr: &TokenRequest) -> i64 {
    let status = tr.status.as_ref().expect("status");
    assert!(status.token.as_ref().is_some_and(|t| !t.is_empty()));
    let expires = status
        .expiration_timestamp
        .as_ref()
        .expect("expirationTimestamp");
    expires.0.as_second() - jiff::Timestamp::now().as_second()
}

/// Lifetimes: the default is an hour, at least ten minutes may be asked for; a missing
/// ServiceAccount is 404.
pub async fn token_requests_honour_expiration_seconds(c: &impl Cluster) {
    let admin = c.admin();
    let ns = namespace(&admin).await;
    create_service_account(&admin, &ns, "timed").await;
    let default = request_token(&admin, &ns, "timed", None)
        .await
        .expect("default");
    assert!(
        (3540..=3600).contains(&expiry_in(&default)),
        "{}",
        expiry_in(&default)
    );
    assert_eq!(
        default.spec.as_ref().and_then(|s| s.expiration_seconds),
        Some(3600)
    );
    let short = request_token(&admin, &ns, "timed", Some(600))
        .await
        .expect("600 s");
    assert!(
        (540..=600).contains(&expiry_in(&short)),
        "{}",
        expiry_in(&short)
    );
    let status = failure(request_token(&admin, &ns, "timed", Some(599)).await, 422);
    assert_eq!(status.reason, "Invalid");
    assert!(
        status.message.ends_with("spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"),
        "{}",
        status.message
    );
    let status = failure(request_token(&admin, &ns, "nope", None).await, 404);
    assert_eq!(status.message, "serviceaccounts \"nope\" not found");
}

/// Minting a token is `create` on `serviceaccounts/token`; `create` on `serviceaccounts`
/// does not cover it.
pub async fn token_requests_are_authorized_on_the_subresource(c: &impl Cluster) {
    let ns = namespace(&c.admin()).await;
    let minter = actor(c, &ns, "minter").await;
    let creator = actor(c, &ns, "creator").await;
    create_service_account(&c.admin(), &ns, "target").await;
    let mut tokens = rule(&["create"], &[""], &["serviceaccounts/token"]);
    tokens.resource_names = Some(vec!["target".into()]);
    role(c, &ns, "mint", vec![tokens]).await;
    role(
        c,
        &ns,
        "create-sa",
        vec![rule(&["create"], &[""], &["serviceaccounts"])],
    )
    .await;
    role_binding(c, &ns, "mint", ("Role", "mint"), vec![sa(&minter)]).await;
    role_binding(
        c,
        &ns,
        "create-sa",
        ("Role", "create-sa"),
        vec![sa(&creator)],
    )
    .await;
    let minted = request_token(&minter.client, &ns, "target", None)
        .await
        .expect("minted");
    let target = c.with_token(&minted.status.and_then(|s| s.token).expect("token"));
    assert_eq!(
        whoami(&target).await.expect("whoami"),
        format!("system:serviceaccount:{ns}:target")
    );
    let rest = format!(
        "create resource \"serviceaccounts/token\" in API group \"\" in the namespace \"{ns}\""
    );
    let what = |name: &str| format!("serviceaccounts \"{name}\"");
    let own = request_token(&minter.client, &ns, "minter", None).await;
    assert_forbidden(own, &denied(&what("minter"), &minter.user, &rest));
    let by_creator = request_token(&creator.client, &ns, "target", None).await;
    assert_forbidden(by_creator, &denied(&what("target"), &creator.user, &rest));
}

/// A token nobody issued is 401 Unauthorized.
pub async fn unknown_tokens_are_unauthorized(c: &impl Cluster) {
    let client = c.with_token("not-a-token-anyone-issued");
    let status = failure(
        Api::<Namespace>::all(client.clone())
            .list(&ListParams::default())
            .await,
        401,
    );
    assert_eq!(
        (status.message.as_str(), status.reason.as_str()),
        ("Unauthorized", "Unauthorized")
    );
    failure(whoami(&client).await, 401);
}

/// Deleting a ServiceAccount invalidates its tokens, also once one of that name exists again.
pub async fn deleting_the_service_account_revokes_its_tokens(c: &impl Cluster) {
    let admin = c.admin();
    let ns = namespace(&admin).await;
    let a = actor(c, &ns, "short-lived").await;
    assert_eq!(whoami(&a.client).await.expect("whoami"), a.user);
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), &ns);
    accounts
        .delete(&a.name, &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the token is refused", || {
        let client = a.client.clone();
        async move { matches!(whoami(&client).await, Err(kube::Error::Api(s)) if s.code == 401) }
    })
    .await;
    create_service_account(&admin, &ns, &a.name).await;
    failure(whoami(&a.client).await, 401);
}

fn decoded(secret: &Secret, key: &str) -> Option<String> {
    let data = secret.data.as_ref()?.get(key)?;
    String::from_utf8(data.0.clone()).ok()
}

async fn token_secret(admin: &Client, ns: &str, name: &str, account: &str) {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(BTreeMap::from([(
                "kubernetes.io/service-account.name".to_string(),
                account.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        type_: Some("kubernetes.io/service-account-token".into()),
        data: Some(BTreeMap::from([(
            "extra".to_string(),
            ByteString(b"kept".to_vec()),
        )])),
        ..Secret::default()
    };
    let api: Api<Secret> = Api::namespaced(admin.clone(), ns);
    api.create(&PostParams::default(), &secret)
        .await
        .expect("token secret");
}

/// A `kubernetes.io/service-account-token` Secret gets a token, the namespace and the CA;
/// the token authenticates as the ServiceAccount until the ServiceAccount is deleted, which
/// deletes the Secret too.
pub async fn legacy_token_secrets_are_filled_in(c: &impl Cluster) {
    let admin = c.admin();
    let ns = namespace(&admin).await;
    let account = create_service_account(&admin, &ns, "legacy").await;
    token_secret(&admin, &ns, "legacy-token", "legacy").await;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
    eventually("the token controller fills the Secret", || {
        let secrets = secrets.clone();
        async move {
            secrets
                .get("legacy-token")
                .await
                .is_ok_and(|s| decoded(&s, "token").is_some())
        }
    })
    .await;
    let secret = secrets.get("legacy-token").await.expect("secret");
    assert_eq!(decoded(&secret, "namespace").as_deref(), Some(ns.as_str()));
    assert_eq!(decoded(&secret, "extra").as_deref(), Some("kept"));
    let ca = decoded(&secret, "ca.crt").expect("ca.crt");
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    assert_eq!(
        secret
            .annotations()
            .get("kubernetes.io/service-account.uid"),
        account.metadata.uid.as_ref()
    );
    let client = c.with_token(&decoded(&secret, "token").expect("token"));
    assert_eq!(
        whoami(&client).await.expect("whoami"),
        format!("system:serviceaccount:{ns}:legacy")
    );
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), &ns);
    accounts
        .delete("legacy", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the token Secret is deleted", || {
        let secrets = secrets.clone();
        async move {
            matches!(secrets.get("legacy-token").await, Err(kube::Error::Api(s)) if s.code == 404)
        }
    })
    .await;
    failure(whoami(&client).await, 401);
}

/// A token Secret for a ServiceAccount that does not exist is deleted.
pub async fn token_secrets_without_their_service_account_are_deleted(c: &impl Cluster) {
    let admin = c.admin();
    let ns = namespace(&admin).await;
    token_secret(&admin, &ns, "ghost-token", "ghost").await;
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
    eventually("the orphaned token Secret is deleted", || {
        let secrets = secrets.clone();
        async move {
            matches!(secrets.get("ghost-token").await, Err(kube::Error::Api(s)) if s.code == 404)
        }
    })
    .await;
}

/// Audiences: a token minted for another audience is refused by the API itself (401) and by a
/// TokenReview that asks for no audience (the API server's own); a TokenReview for its audience
/// authenticates it and lists that audience; one for another audience does not.
pub async fn token_reviews_honour_audiences(c: &impl Cluster) {
    use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
    let admin = c.admin();
    let ns = namespace(&admin).await;
    create_service_account(&admin, &ns, "aud").await;
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec!["isthmus-test-aud".into()]),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let answer = Api::<ServiceAccount>::namespaced(admin.clone(), &ns)
        .create_token_request("aud", &PostParams::default(), &request)
        .await
        .expect("a token for an audience");
    assert_eq!(
        answer.spec.as_ref().and_then(|s| s.audiences.clone()),
        Some(vec!["isthmus-test-aud".to_string()])
    );
    let token = answer.status.and_then(|s| s.token).expect("a token");
    failure(whoami(&c.with_token(&token)).await, 401);
    let review = |audiences: Vec<String>| TokenReview {
        spec: TokenReviewSpec {
            token: token.clone(),
            audiences: Some(audiences),
        },
        ..TokenReview::default()
    };
    let reviews: Api<TokenReview> = Api::all(admin);
    let pp = PostParams::default();
    let ours = reviews
        .create(&pp, &review(vec!["isthmus-test-aud".into()]))
        .await
        .expect("a review")
        .status
        .expect("status");
    assert_eq!(ours.authenticated, Some(true));
    assert_eq!(
        ours.user.and_then(|u| u.username),
        Some(format!("system:serviceaccount:{ns}:aud"))
    );
    assert_eq!(ours.audiences, Some(vec!["isthmus-test-aud".to_string()]));
    for other in [vec!["another".to_string()], vec![]] {
        let status = reviews
            .create(&pp, &review(other.clone()))
            .await
            .expect("a review")
            .status
            .expect("status");
        assert_ne!(status.authenticated, Some(true), "audiences {other:?}");
    }
}
