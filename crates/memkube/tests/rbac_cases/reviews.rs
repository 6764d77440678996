//! Access and subject reviews: SelfSubjectAccessReview (with RBAC's "allowed by" reason),
//! SelfSubjectReview, SelfSubjectRulesReview, SubjectAccessReview and
//! LocalSubjectAccessReview, and who may create them.

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::authorization::v1::{
    LocalSubjectAccessReview, NonResourceAttributes, ResourceAttributes, SelfSubjectAccessReview,
    SelfSubjectAccessReviewSpec, SelfSubjectRulesReview, SelfSubjectRulesReviewSpec,
    SubjectAccessReview, SubjectAccessReviewSpec, SubjectAccessReviewStatus,
};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

use super::*;

fn resource(verb: &str, resource: &str, ns: &str) -> ResourceAttributes {
    ResourceAttributes {
        verb: Some(verb.into()),
        group: Some(String::new()),
        resource: Some(resource.into()),
        namespace: Some(ns.into()),
        ..ResourceAttributes::default()
    }
}

async fn can_i(client: &Client, spec: SelfSubjectAccessReviewSpec) -> SubjectAccessReviewStatus {
    let review = SelfSubjectAccessReview {
        spec,
        ..SelfSubjectAccessReview::default()
    };
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let answer = api
        .create(&PostParams::default(), &review)
        .await
        .expect("ssar");
    answer.status.expect("status")
}

async fn can_i_resource(client: &Client, attrs: ResourceAttributes) -> SubjectAccessReviewStatus {
    let spec = SelfSubjectAccessReviewSpec {
        resource_attributes: Some(attrs),
        ..SelfSubjectAccessReviewSpec::default()
    };
    can_i(client, spec).await
}

/// A ServiceAccount asks what it may do: allowed with RBAC's reason, or not; discovery paths
/// always; and who it is.
pub async fn self_reviews_answer_for_the_caller(c: &impl Cluster) {
    let ns = namespace(&c.admin()).await;
    let a = actor(c, &ns, "curious").await;
    role(
        c,
        &ns,
        "reader",
        vec![rule(&["get"], &[""], &["configmaps"])],
    )
    .await;
    role_binding(c, &ns, "reads", ("Role", "reader"), vec![sa(&a)]).await;
    let yes = can_i_resource(&a.client, resource("get", "configmaps", &ns)).await;
    assert!(yes.allowed);
    let reason = format!(
        "RBAC: allowed by RoleBinding \"reads/{ns}\" of Role \"reader\" to ServiceAccount \"curious/{ns}\""
    );
    assert_eq!(yes.reason.as_deref(), Some(reason.as_str()));
    let no = can_i_resource(&a.client, resource("list", "secrets", &ns)).await;
    assert!(!no.allowed);
    let version = NonResourceAttributes {
        verb: Some("get".into()),
        path: Some("/version".into()),
    };
    let spec = SelfSubjectAccessReviewSpec {
        non_resource_attributes: Some(version),
        ..SelfSubjectAccessReviewSpec::default()
    };
    assert!(can_i(&a.client, spec).await.allowed);
    let api: Api<SelfSubjectReview> = Api::all(a.client.clone());
    let me = api
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("whoami");
    let info = me.status.and_then(|s| s.user_info).expect("userInfo");
    assert_eq!(info.username.as_deref(), Some(a.user.as_str()));
    let groups = info.groups.unwrap_or_default();
    for g in [
        "system:serviceaccounts",
        &format!("system:serviceaccounts:{ns}"),
        "system:authenticated",
    ] {
        assert!(
            groups.iter().any(|have| have == g),
            "{g} missing from {groups:?}"
        );
    }
    assert!(info.uid.is_some_and(|uid| !uid.is_empty()));
}

/// SelfSubjectRulesReview lists the caller's rules in a namespace.
pub async fn self_rules_review_lists_the_rules(c: &impl Cluster) {
    let ns = namespace(&c.admin()).await;
    let a = actor(c, &ns, "lister").await;
    role(
        c,
        &ns,
        "reader",
        vec![rule(&["get", "watch"], &[""], &["configmaps"])],
    )
    .await;
    role_binding(c, &ns, "reads", ("Role", "reader"), vec![sa(&a)]).await;
    let review = SelfSubjectRulesReview {
        spec: SelfSubjectRulesReviewSpec {
            namespace: Some(ns.clone()),
        },
        ..SelfSubjectRulesReview::default()
    };
    let api: Api<SelfSubjectRulesReview> = Api::all(a.client.clone());
    let status = api
        .create(&PostParams::default(), &review)
        .await
        .expect("ssrr")
        .status
        .expect("status");
    let wanted = |r: &k8s_openapi::api::authorization::v1::ResourceRule| {
        r.verbs == ["get", "watch"]
            && r.resources.as_deref() == Some(&["configmaps".to_string()][..])
    };
    assert!(
        status.resource_rules.iter().any(wanted),
        "{:?}",
        status.resource_rules
    );
    let discovery = status
        .non_resource_rules
        .iter()
        .flat_map(|r| r.non_resource_urls.iter().flatten());
    assert!(
        discovery.clone().any(|u| u == "/version"),
        "{:?}",
        status.non_resource_rules
    );
    assert!(!status.incomplete);
}

/// A SubjectAccessReview: may `user` (in `system:authenticated`) get configmaps in `ns`?
fn access_review(user: &str, ns: &str) -> SubjectAccessReview {
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.into()),
            groups: Some(vec!["system:authenticated".into()]),
            resource_attributes: Some(resource("get", "configmaps", ns)),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    }
}

/// An admin asks about another user; a ServiceAccount may not.
pub async fn subject_access_reviews_ask_about_others(c: &impl Cluster) {
    let ns = namespace(&c.admin()).await;
    let a = actor(c, &ns, "subject").await;
    role(
        c,
        &ns,
        "reader",
        vec![rule(&["get"], &[""], &["configmaps"])],
    )
    .await;
    role_binding(c, &ns, "reads", ("Role", "reader"), vec![sa(&a)]).await;
    let review = |user: &str| access_review(user, &ns);
    let admin: Api<SubjectAccessReview> = Api::all(c.admin());
    let pp = PostParams::default();
    let yes = admin
        .create(&pp, &review(&a.user))
        .await
        .expect("sar")
        .status
        .expect("status");
    assert!(yes.allowed);
    let no = admin
        .create(&pp, &review("nobody"))
        .await
        .expect("sar")
        .status
        .expect("status");
    assert!(!no.allowed);
    let local = LocalSubjectAccessReview {
        metadata: ObjectMeta {
            namespace: Some(ns.clone()),
            ..ObjectMeta::default()
        },
        spec: review(&a.user).spec,
        ..LocalSubjectAccessReview::default()
    };
    let locals: Api<LocalSubjectAccessReview> = Api::namespaced(c.admin(), &ns);
    assert!(
        locals
            .create(&pp, &local)
            .await
            .expect("lsar")
            .status
            .expect("status")
            .allowed
    );
    let by_sa: Api<SubjectAccessReview> = Api::all(a.client.clone());
    let rest = "create resource \"subjectaccessreviews\" in API group \"authorization.k8s.io\" at the cluster scope";
    assert_forbidden(
        by_sa.create(&pp, &review(&a.user)).await,
        &denied("subjectaccessreviews.authorization.k8s.io", &a.user, rest),
    );
}
