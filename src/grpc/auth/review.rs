//! [`TokenReviewer`]: asks who a bearer token is for one audience, and [`KubeTokenReviewer`],
//! which asks the Kubernetes TokenReview API (`create` on `tokenreviews.authentication.k8s.io`).
//! An answer is either an identity the API vouches for, with the audiences it confirmed, or a
//! refusal; an API that cannot be asked is an error, never a refusal or an admission.

use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::Api;
use kube::api::PostParams;

/// What the reviewer said of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reviewed {
    /// Valid: the user it authenticates, and the audiences of the request it is valid for.
    Authenticated {
        username: String,
        audiences: Vec<String>,
    },
    /// Not valid (unknown, expired, revoked, or for another audience), with the reason given.
    Refused(String),
}

/// Why a token could not be reviewed.
#[derive(Debug, thiserror::Error)]
#[error("TokenReview failed: {0}")]
pub struct ReviewError(pub String);

/// Asks who a token is, for `audience`.
pub trait TokenReviewer: Send + Sync + std::fmt::Debug {
    fn review<'a>(
        &'a self,
        token: &'a str,
        audience: &'a str,
    ) -> BoxFuture<'a, Result<Reviewed, ReviewError>>;
}

/// Reviews tokens through the TokenReview API of the client's cluster.
#[derive(Clone)]
pub struct KubeTokenReviewer {
    api: Api<TokenReview>,
}

impl std::fmt::Debug for KubeTokenReviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KubeTokenReviewer")
    }
}

impl KubeTokenReviewer {
    pub fn new(client: kube::Client) -> Self {
        KubeTokenReviewer {
            api: Api::all(client),
        }
    }
}

impl TokenReviewer for KubeTokenReviewer {
    fn review<'a>(
        &'a self,
        token: &'a str,
        audience: &'a str,
    ) -> BoxFuture<'a, Result<Reviewed, ReviewError>> {
        Box::pin(async move {
            let request = TokenReview {
                spec: TokenReviewSpec {
                    token: token.to_owned(),
                    audiences: Some(vec![audience.to_owned()]),
                },
                ..TokenReview::default()
            };
            let answer = self
                .api
                .create(&PostParams::default(), &request)
                .await
                .map_err(|e| ReviewError(e.to_string()))?;
            Ok(reviewed(answer))
        })
    }
}

/// The verdict a TokenReview's status carries.
fn reviewed(answer: TokenReview) -> Reviewed {
    let status = answer.status.unwrap_or_default();
    let username = status.user.and_then(|u| u.username).unwrap_or_default();
    if status.authenticated == Some(true) && !username.is_empty() {
        Reviewed::Authenticated {
            username,
            audiences: status.audiences.unwrap_or_default(),
        }
    } else {
        Reviewed::Refused(
            status
                .error
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "the token is not valid".to_owned()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::authentication::v1::{TokenReviewStatus, UserInfo};

    fn answer(authenticated: Option<bool>, user: Option<&str>) -> TokenReview {
        TokenReview {
            status: Some(TokenReviewStatus {
                authenticated,
                user: user.map(|u| UserInfo {
                    username: Some(u.to_owned()),
                    ..UserInfo::default()
                }),
                audiences: Some(vec!["isthmus-ipam".into()]),
                error: None,
            }),
            ..TokenReview::default()
        }
    }

    #[test]
    fn only_an_authenticated_named_user_is_an_identity() {
        assert_eq!(
            reviewed(answer(Some(true), Some("system:serviceaccount:a:b"))),
            Reviewed::Authenticated {
                username: "system:serviceaccount:a:b".into(),
                audiences: vec!["isthmus-ipam".into()],
            }
        );
        for (authenticated, user) in [
            (None, Some("x")),
            (Some(false), Some("x")),
            (Some(true), None),
        ] {
            assert!(matches!(
                reviewed(answer(authenticated, user)),
                Reviewed::Refused(_)
            ));
        }
        assert!(matches!(
            reviewed(TokenReview::default()),
            Reviewed::Refused(_)
        ));
    }
}
