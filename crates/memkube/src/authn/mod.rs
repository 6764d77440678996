//! Authentication: who a request is from. A request with `Authorization: Bearer <token>` is
//! the admin (the instance's admin token) or a ServiceAccount (a token it issued that is still
//! valid: not expired, issued for the API server's audience, its ServiceAccount, and for
//! legacy tokens its Secret, still there with the same uid); any other token is 401. A request without a bearer token is the admin when
//! it comes from an in-process client ([`crate::MemKube::client`]), and over the network
//! either the admin or 401, as [`crate::Config::anonymous_is_admin`] says.
//!
//! Submodules: `user` (identities), `tokens` (the token registry), `legacy` (the legacy
//! ServiceAccount token controller), `token_request` (TokenRequest), `review`
//! (SelfSubjectReview and TokenReview).

pub(crate) mod legacy;
pub(crate) mod review;
pub(crate) mod token_request;
pub(crate) mod tokens;
mod user;

use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use http::HeaderMap;
use http::request::Parts;
use serde_json::Value;

pub use user::UserInfo;

use crate::Shared;
use crate::error::ApiError;
use crate::store::State;
use crate::tls::ClusterCa;
use tokens::{IssuedToken, Lookup, Tokens};

/// Marks a request that arrived over the network (set by the HTTP server); requests without
/// it come from an in-process client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FromNetwork;

/// Authentication state of one instance: its tokens and its certificate authority.
#[derive(Debug, Default)]
pub(crate) struct AuthState {
    tokens: Mutex<Tokens>,
    ca: Mutex<Option<Arc<ClusterCa>>>,
}

impl AuthState {
    /// The token registry (a panic while holding the lock does not make it unusable).
    pub(crate) fn tokens(&self) -> MutexGuard<'_, Tokens> {
        self.tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The instance's CA, generated on first use.
    pub(crate) fn ca(&self) -> crate::Result<Arc<ClusterCa>> {
        let mut ca = self.ca.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ca) = ca.as_ref() {
            return Ok(ca.clone());
        }
        let fresh = Arc::new(ClusterCa::generate()?);
        *ca = Some(fresh.clone());
        Ok(fresh)
    }
}

/// The bearer token of a request, as the API server's bearer-token authenticator reads it
/// (`Bearer` in any case, then the token; an empty token counts as none).
pub(crate) fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let mut parts = value.trim().splitn(3, ' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_string())
}

/// Authenticates a request (401 `Unauthorized` for a bad token, or for no token over the
/// network when anonymous requests are not admin).
pub(crate) fn authenticate(
    shared: &Shared,
    parts: &Parts,
    now: DateTime<Utc>,
) -> Result<UserInfo, ApiError> {
    if let Some(token) = bearer_token(&parts.headers) {
        let api = [review::AUDIENCE.to_string()];
        return user_for_token(shared, &token, now, &api)
            .map(|(user, _)| user)
            .ok_or(ApiError::Unauthorized);
    }
    let from_network = parts.extensions.get::<FromNetwork>().is_some();
    if !from_network || shared.config.anonymous_is_admin {
        Ok(UserInfo::admin())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// The identity a token stands for and the audiences of `wanted` it is valid for, if it is
/// valid now for at least one of them (the admin token is for the API server only, as a real
/// server's audience-agnostic tokens are).
pub(crate) fn user_for_token(
    shared: &Shared,
    token: &str,
    now: DateTime<Utc>,
    wanted: &[String],
) -> Option<(UserInfo, Vec<String>)> {
    let found = shared.auth.tokens().lookup(token);
    match found {
        Lookup::Admin => {
            let api = review::AUDIENCE.to_string();
            wanted
                .contains(&api)
                .then(|| (UserInfo::admin(), vec![api]))
        }
        Lookup::Unknown => None,
        Lookup::Issued(issued) => {
            let audiences = issued.audiences_in(wanted);
            let expired = issued.expires.is_some_and(|e| e <= now);
            let valid =
                !expired && !audiences.is_empty() && still_backed(&shared.lock(), &issued, token);
            let a = &issued.account;
            valid.then(|| {
                let user = UserInfo::service_account(&a.namespace, &a.name, &a.uid);
                (user, audiences)
            })
        }
    }
}

/// Whether the objects behind an issued token still exist as they were: the ServiceAccount
/// (same uid, not being deleted) and, for a legacy token, its Secret (same uid, not being
/// deleted, still holding this token).
fn still_backed(state: &State, issued: &IssuedToken, token: &str) -> bool {
    let ns = issued.account.namespace.as_str();
    let live = |plural: &str, name: &str| {
        let ty = state.registry.lookup("", "v1", plural)?;
        state.get(ty, Some(ns), name).ok()
    };
    let current = |obj: &Value, uid: &str| {
        crate::meta::meta_str(obj, "uid") == Some(uid)
            && obj.pointer("/metadata/deletionTimestamp").is_none()
    };
    let account = &issued.account;
    let account_ok =
        live("serviceaccounts", &account.name).is_some_and(|sa| current(&sa, &account.uid));
    let secret_ok = issued.secret.as_ref().is_none_or(|s| {
        live("secrets", &s.name).is_some_and(|obj| {
            current(&obj, &s.uid) && legacy::secret_token(&obj).as_deref() == Some(token)
        })
    });
    account_ok && secret_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn bearer_tokens_are_read_as_the_api_server_reads_them() {
        assert_eq!(bearer_token(&headers("Bearer abc")).as_deref(), Some("abc"));
        assert_eq!(bearer_token(&headers("bearer abc")).as_deref(), Some("abc"));
        assert_eq!(
            bearer_token(&headers("Bearer abc def")).as_deref(),
            Some("abc")
        );
        assert_eq!(bearer_token(&headers("Basic YTpi")), None);
        assert_eq!(bearer_token(&headers("Bearer")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }
}
