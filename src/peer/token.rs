//! Tokens for the peer ServiceAccount: [`TokenSource`] mints one, [`TokenRequests`] through the
//! Kubernetes TokenRequest API (`POST …/serviceaccounts/<name>/token`), for [`TOKEN_LIFETIME`].
//! Tests that run against an API without TokenRequest inject another source. A [`Token`] never
//! shows its value in `Debug` output and has no `Display`: it reaches only the Secret it is
//! written into.

use std::fmt;
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;
use kube::api::PostParams;

use crate::peer::error::request_error;

/// How long a peer token is asked to live: one year. The API server may grant less (its
/// `--service-account-max-token-expiration`); the granted expiry is reported. Running `isthmus
/// peer` again mints a fresh one.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

/// A bearer token; its value is only reachable through [`Token::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(value: String) -> Self {
        Token(value)
    }

    /// The value, to be written into a kubeconfig and nowhere else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// A token and when it expires, as the API answered (RFC 3339).
#[derive(Debug, Clone)]
pub struct Minted {
    pub token: Token,
    pub expires: Option<String>,
}

/// Mints tokens of a ServiceAccount.
pub trait TokenSource: Send + Sync + fmt::Debug {
    /// A token of ServiceAccount `namespace/account`, valid for about `lifetime`; the error is
    /// one line.
    fn mint<'a>(
        &'a self,
        client: &'a kube::Client,
        namespace: &'a str,
        account: &'a str,
        lifetime: Duration,
    ) -> BoxFuture<'a, Result<Minted, String>>;
}

/// The Kubernetes TokenRequest API.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenRequests;

impl TokenSource for TokenRequests {
    fn mint<'a>(
        &'a self,
        client: &'a kube::Client,
        namespace: &'a str,
        account: &'a str,
        lifetime: Duration,
    ) -> BoxFuture<'a, Result<Minted, String>> {
        Box::pin(async move {
            let api: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
            let request = TokenRequest {
                spec: Some(TokenRequestSpec {
                    expiration_seconds: Some(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX)),
                    ..TokenRequestSpec::default()
                }),
                ..TokenRequest::default()
            };
            let answer = api
                .create_token_request(account, &PostParams::default(), &request)
                .await
                .map_err(|e| match &e {
                    kube::Error::Api(s) if s.code == 404 => format!(
                        "the API does not serve TokenRequest (POST serviceaccounts/{account}/token: {})",
                        request_error(&e)
                    ),
                    _ => request_error(&e),
                })?;
            let status = answer.status.unwrap_or_default();
            let token = status
                .token
                .filter(|t| !t.is_empty())
                .ok_or("the API answered without a token")?;
            Ok(Minted {
                token: Token::new(token),
                expires: status.expiration_timestamp.map(|t| t.0.to_string()),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_does_not_show_itself() {
        let t = Token::new("s3cr3t".into());
        let minted = Minted {
            token: t.clone(),
            expires: None,
        };
        assert!(!format!("{t:?} {minted:?}").contains("s3cr3t"));
        assert_eq!(t.expose(), "s3cr3t");
    }
}
