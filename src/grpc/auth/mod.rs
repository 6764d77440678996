//! Who may call the IPAM: [`Authenticator`] checks the `authorization: Bearer <token>` metadata
//! of every `ipam` call. The token is a Kubernetes ServiceAccount token minted for
//! [`AuthConfig::audience`] (a projected token with that `audience`); the TokenReview API says
//! whose it is and whether it is valid for that audience, and [`AllowList`] says whether that
//! ServiceAccount may call. An admitted token is remembered by its SHA-256 for
//! [`AuthConfig::cache_ttl`] ([`cache::ReviewCache`]), so a call costs a hash and a lookup.
//!
//! Outcomes ([`AuthError`], mapped to gRPC codes in `status.rs`): no or malformed metadata, or a
//! token the API refuses → `UNAUTHENTICATED`; a valid token of a ServiceAccount not allowed →
//! `PERMISSION_DENIED`; the TokenReview API failing → `UNAVAILABLE` (never admitted).

pub mod cache;
pub mod review;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::metadata::MetadataMap;

use cache::ReviewCache;
pub use review::{KubeTokenReviewer, ReviewError, Reviewed, TokenReviewer};

/// The audience IPAM tokens are minted for, unless configured otherwise.
pub const DEFAULT_AUDIENCE: &str = "isthmus-ipam";
/// How long an admitted token is trusted without a new review, unless configured otherwise.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);
/// Most admitted tokens remembered at once.
pub const CACHE_CAPACITY: usize = 4096;

/// A ServiceAccount, `namespace/name`; as an allow-list entry the name may be `*` (every
/// ServiceAccount of the namespace).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceAccountRef {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ServiceAccountRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl ServiceAccountRef {
    /// The ServiceAccount a Kubernetes username names (`system:serviceaccount:<ns>:<name>`).
    pub fn from_username(username: &str) -> Option<Self> {
        let rest = username.strip_prefix("system:serviceaccount:")?;
        let (namespace, name) = rest.split_once(':')?;
        (!namespace.is_empty() && !name.is_empty() && !name.contains(':')).then(|| {
            ServiceAccountRef {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            }
        })
    }
}

/// Why an allow-list entry was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not namespace/name or namespace/* (DNS labels)")]
pub struct BadEntry(String);

impl std::str::FromStr for ServiceAccountRef {
    type Err = BadEntry;

    fn from_str(s: &str) -> Result<Self, BadEntry> {
        let bad = || BadEntry(s.to_owned());
        let (namespace, name) = s.split_once('/').ok_or_else(bad)?;
        let label = |x: &str| {
            !x.is_empty()
                && x.len() <= 253
                && x.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        };
        if !label(namespace) || !(name == "*" || label(name)) {
            return Err(bad());
        }
        Ok(ServiceAccountRef {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }
}

/// The ServiceAccounts that may call the IPAM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList(BTreeSet<ServiceAccountRef>);

impl AllowList {
    pub fn new(entries: impl IntoIterator<Item = ServiceAccountRef>) -> Self {
        AllowList(entries.into_iter().collect())
    }

    /// Whether `account` is listed, by name or by its namespace's `*`.
    pub fn permits(&self, account: &ServiceAccountRef) -> bool {
        self.0.contains(account)
            || self.0.contains(&ServiceAccountRef {
                namespace: account.namespace.clone(),
                name: "*".to_owned(),
            })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries, for logs.
    pub fn describe(&self) -> String {
        let names: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        names.join(", ")
    }
}

/// How callers are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// The audience tokens must be minted for.
    pub audience: String,
    pub allowed: AllowList,
    /// How long an admitted token is trusted without a new review (zero: reviewed every call).
    pub cache_ttl: Duration,
}

impl AuthConfig {
    /// Checks what can be checked without I/O.
    pub fn validate(&self) -> Result<(), String> {
        if self.audience.trim().is_empty() {
            return Err("the gRPC token audience is empty".to_owned());
        }
        if self.allowed.is_empty() {
            return Err(
                "no ServiceAccount may call the gRPC IPAM: give at least one --grpc-allow NAMESPACE/NAME"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

/// Why a call was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token: send `authorization: Bearer <ServiceAccount token>`")]
    Missing,
    #[error("the authorization metadata is not `Bearer <token>`")]
    Malformed,
    #[error("the token was refused: {0}")]
    Refused(String),
    #[error("{0} may not call the IPAM")]
    NotAllowed(String),
    #[error("cannot check the token now: {0}")]
    Unavailable(#[from] ReviewError),
}

/// Checks the callers of the IPAM.
#[derive(Debug, Clone)]
pub struct Authenticator {
    reviewer: Arc<dyn TokenReviewer>,
    config: Arc<AuthConfig>,
    cache: Arc<Mutex<ReviewCache<ServiceAccountRef>>>,
}

impl Authenticator {
    pub fn new(reviewer: Arc<dyn TokenReviewer>, config: AuthConfig) -> Self {
        let cache = ReviewCache::new(config.cache_ttl, CACHE_CAPACITY);
        Authenticator {
            reviewer,
            config: Arc::new(config),
            cache: Arc::new(Mutex::new(cache)),
        }
    }

    /// The ServiceAccount calling with `metadata`, if it may call.
    pub async fn check(&self, metadata: &MetadataMap) -> Result<ServiceAccountRef, AuthError> {
        let token = bearer(metadata)?;
        let key = cache::digest(token);
        if let Some(caller) = self.lock().get(&key, Instant::now()) {
            return Ok(caller);
        }
        let audience = self.config.audience.as_str();
        let username = match self.reviewer.review(token, audience).await? {
            Reviewed::Refused(reason) => return Err(AuthError::Refused(reason)),
            // an API that does not confirm our audience did not check it
            Reviewed::Authenticated { audiences, .. }
                if !audiences.iter().any(|a| a == audience) =>
            {
                return Err(AuthError::Refused(format!(
                    "the token is not valid for audience {audience:?}"
                )));
            }
            Reviewed::Authenticated { username, .. } => username,
        };
        let caller = ServiceAccountRef::from_username(&username)
            .filter(|sa| self.config.allowed.permits(sa))
            .ok_or(AuthError::NotAllowed(username))?;
        self.lock().insert(key, caller.clone(), Instant::now());
        Ok(caller)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReviewCache<ServiceAccountRef>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The token of `authorization: Bearer <token>` (scheme in any case).
fn bearer(metadata: &MetadataMap) -> Result<&str, AuthError> {
    let value = metadata.get("authorization").ok_or(AuthError::Missing)?;
    let text = value.to_str().map_err(|_| AuthError::Malformed)?.trim();
    let (scheme, token) = text.split_once(' ').ok_or(AuthError::Malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

#[cfg(test)]
mod tests;
