//! Unit tests of [`Authenticator`] with a scripted reviewer: the outcomes and their order of
//! checks, the cache (one review per token), allow-list entries and bearer metadata parsing.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// Answers every review with `answer` (or fails) and counts the reviews.
#[derive(Debug)]
struct Scripted {
    answer: Option<Reviewed>,
    reviews: AtomicUsize,
}

impl TokenReviewer for Scripted {
    fn review<'a>(
        &'a self,
        _token: &'a str,
        _audience: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Reviewed, ReviewError>> {
        self.reviews.fetch_add(1, Ordering::SeqCst);
        let answer = self.answer.clone();
        Box::pin(async move { answer.ok_or_else(|| ReviewError("connection refused".into())) })
    }
}

fn authenticator(answer: Option<Reviewed>) -> (Authenticator, Arc<Scripted>) {
    let reviewer = Arc::new(Scripted {
        answer,
        reviews: AtomicUsize::new(0),
    });
    let config = AuthConfig {
        audience: DEFAULT_AUDIENCE.into(),
        allowed: AllowList::new(["isthmus/vk".parse().unwrap(), "tenant-x/*".parse().unwrap()]),
        cache_ttl: Duration::from_secs(60),
    };
    (Authenticator::new(reviewer.clone(), config), reviewer)
}

fn user(name: &str, audience: &str) -> Option<Reviewed> {
    Some(Reviewed::Authenticated {
        username: name.into(),
        audiences: vec![audience.into()],
    })
}

fn with(value: &str) -> MetadataMap {
    let mut m = MetadataMap::new();
    m.insert("authorization", value.parse().unwrap());
    m
}

#[tokio::test]
async fn an_allowed_account_is_reviewed_once_then_cached() {
    let (auth, reviewer) =
        authenticator(user("system:serviceaccount:isthmus:vk", DEFAULT_AUDIENCE));
    for _ in 0..3 {
        let caller = auth.check(&with("Bearer t1")).await.unwrap();
        assert_eq!(caller.to_string(), "isthmus/vk");
    }
    assert_eq!(reviewer.reviews.load(Ordering::SeqCst), 1);
    auth.check(&with("bearer t2")).await.unwrap();
    assert_eq!(
        reviewer.reviews.load(Ordering::SeqCst),
        2,
        "another token, another review"
    );
}

#[tokio::test]
async fn a_namespace_wildcard_admits_its_accounts_only() {
    let (auth, _) = authenticator(user("system:serviceaccount:tenant-x:any", DEFAULT_AUDIENCE));
    assert!(auth.check(&with("Bearer t")).await.is_ok());
    let (auth, _) = authenticator(user("system:serviceaccount:tenant-y:any", DEFAULT_AUDIENCE));
    assert!(matches!(
        auth.check(&with("Bearer t")).await,
        Err(AuthError::NotAllowed(_))
    ));
}

#[tokio::test]
async fn refusals_are_not_cached() {
    let (auth, reviewer) = authenticator(user(
        "system:serviceaccount:isthmus:other",
        DEFAULT_AUDIENCE,
    ));
    for _ in 0..2 {
        let err = auth.check(&with("Bearer t")).await.unwrap_err();
        assert!(
            matches!(&err, AuthError::NotAllowed(u) if u == "system:serviceaccount:isthmus:other")
        );
    }
    assert_eq!(reviewer.reviews.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn every_failure_has_its_own_outcome() {
    let (auth, reviewer) =
        authenticator(user("system:serviceaccount:isthmus:vk", DEFAULT_AUDIENCE));
    assert!(matches!(
        auth.check(&MetadataMap::new()).await,
        Err(AuthError::Missing)
    ));
    for bad in ["Basic dTpw", "Bearer", "Bearer  ", "t0ken", "Bearer a b"] {
        assert!(
            matches!(auth.check(&with(bad)).await, Err(AuthError::Malformed)),
            "{bad:?}"
        );
    }
    assert_eq!(
        reviewer.reviews.load(Ordering::SeqCst),
        0,
        "nothing malformed is reviewed"
    );

    let (auth, _) = authenticator(Some(Reviewed::Refused("invalid bearer token".into())));
    assert!(matches!(
        auth.check(&with("Bearer t")).await,
        Err(AuthError::Refused(_))
    ));

    // an authenticator that does not confirm our audience did not check it
    let (auth, _) = authenticator(user(
        "system:serviceaccount:isthmus:vk",
        "https://kubernetes.default.svc",
    ));
    assert!(matches!(
        auth.check(&with("Bearer t")).await,
        Err(AuthError::Refused(_))
    ));

    // not a ServiceAccount at all
    let (auth, _) = authenticator(user("kubernetes-admin", DEFAULT_AUDIENCE));
    assert!(matches!(
        auth.check(&with("Bearer t")).await,
        Err(AuthError::NotAllowed(_))
    ));

    let (auth, _) = authenticator(None);
    assert!(matches!(
        auth.check(&with("Bearer t")).await,
        Err(AuthError::Unavailable(_))
    ));
}

#[test]
fn allow_list_entries_and_usernames_parse_strictly() {
    let sa: ServiceAccountRef = "isthmus/vk".parse().unwrap();
    assert_eq!((sa.namespace.as_str(), sa.name.as_str()), ("isthmus", "vk"));
    assert!("ns/*".parse::<ServiceAccountRef>().is_ok());
    for bad in ["", "vk", "/vk", "ns/", "*/vk", "NS/vk", "ns/v k", "ns/vk/x"] {
        assert!(bad.parse::<ServiceAccountRef>().is_err(), "{bad:?}");
    }
    assert_eq!(
        ServiceAccountRef::from_username("system:serviceaccount:a:b"),
        Some(ServiceAccountRef {
            namespace: "a".into(),
            name: "b".into()
        })
    );
    for bad in [
        "a:b",
        "system:serviceaccount:a",
        "system:serviceaccount::b",
        "system:serviceaccount:a:b:c",
    ] {
        assert_eq!(ServiceAccountRef::from_username(bad), None, "{bad:?}");
    }
    let config = AuthConfig {
        audience: DEFAULT_AUDIENCE.into(),
        allowed: AllowList::default(),
        cache_ttl: DEFAULT_CACHE_TTL,
    };
    assert!(config.validate().unwrap_err().contains("--grpc-allow"));
}
