//! The instance's bearer tokens: the admin token (random, fixed for the instance's life) and
//! every ServiceAccount token issued, by TokenRequest (with an expiry) or by the legacy token
//! controller into a Secret. Tokens are opaque random strings, not JWTs; what a token stands
//! for lives here, and whether it is still valid (its ServiceAccount, or Secret, still exists
//! with the same uid) is checked against the store when it is used.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use ring::rand::{SecureRandom, SystemRandom};

/// The ServiceAccount a token authenticates as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRef {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The uid the ServiceAccount had when the token was issued.
    pub uid: String,
}

/// The Secret a legacy token was written into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// Secret name (same namespace as the ServiceAccount).
    pub name: String,
    /// The Secret's uid.
    pub uid: String,
}

/// What an issued token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The ServiceAccount.
    pub account: AccountRef,
    /// Expiry (TokenRequest tokens); legacy tokens never expire.
    pub expires: Option<DateTime<Utc>>,
    /// The Secret holding it (legacy tokens): valid only while that Secret exists.
    pub secret: Option<SecretRef>,
    /// The audiences it is valid for (TokenRequest's `spec.audiences`, the API server's own
    /// by default; legacy tokens are for the API server only).
    pub audiences: Vec<String>,
}

impl IssuedToken {
    /// Whether the token is valid for any of `wanted`: the audiences it shares with them.
    pub fn audiences_in(&self, wanted: &[String]) -> Vec<String> {
        wanted
            .iter()
            .filter(|a| self.audiences.contains(a))
            .cloned()
            .collect()
    }
}

/// What a presented token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The admin token.
    Admin,
    /// A ServiceAccount token.
    Issued(IssuedToken),
    /// Nothing memkube issued.
    Unknown,
}

/// Every token of one instance.
#[derive(Debug)]
pub struct Tokens {
    admin: String,
    issued: HashMap<String, IssuedToken>,
}

impl Default for Tokens {
    fn default() -> Self {
        Self::new()
    }
}

impl Tokens {
    /// A registry with a fresh random admin token.
    pub fn new() -> Self {
        Self {
            admin: random_token(),
            issued: HashMap::new(),
        }
    }

    /// The admin token.
    pub fn admin(&self) -> &str {
        &self.admin
    }

    /// Issues a token for `account`, valid for `audiences`, that expires at `expires`; expired
    /// tokens issued earlier are forgotten.
    pub fn issue(
        &mut self,
        account: AccountRef,
        audiences: Vec<String>,
        expires: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> String {
        self.issued.retain(|_, t| t.expires.is_none_or(|e| e > now));
        let token = random_token();
        let issued = IssuedToken {
            account,
            expires: Some(expires),
            secret: None,
            audiences,
        };
        self.issued.insert(token.clone(), issued);
        token
    }

    /// Records a token the legacy token controller wrote into a Secret.
    pub fn register_legacy(&mut self, token: &str, account: AccountRef, secret: SecretRef) {
        let issued = IssuedToken {
            account,
            expires: None,
            secret: Some(secret),
            audiences: vec![super::review::AUDIENCE.to_string()],
        };
        self.issued.insert(token.to_string(), issued);
    }

    /// What `token` is.
    pub fn lookup(&self, token: &str) -> Lookup {
        if token == self.admin {
            return Lookup::Admin;
        }
        self.issued
            .get(token)
            .cloned()
            .map_or(Lookup::Unknown, Lookup::Issued)
    }

    /// Makes every issued token with an expiry expire at `now` (a test hook).
    pub fn expire_all(&mut self, now: DateTime<Utc>) {
        for t in self.issued.values_mut() {
            if t.expires.is_some() {
                t.expires = Some(now);
            }
        }
    }
}

/// 32 random bytes from the system's secure generator, hex-encoded.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        tracing::warn!("the system random generator failed; memkube tokens fall back to fastrand");
        bytes.iter_mut().for_each(|b| *b = fastrand::u8(..));
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> AccountRef {
        AccountRef {
            namespace: "ns".into(),
            name: "sa".into(),
            uid: "u".into(),
        }
    }

    #[test]
    fn tokens_are_random_and_looked_up() {
        let mut tokens = Tokens::new();
        assert_eq!(tokens.admin().len(), 64);
        assert_ne!(Tokens::new().admin(), tokens.admin());
        let now = Utc::now();
        let t = tokens.issue(account(), vec![], now + chrono::Duration::hours(1), now);
        assert_ne!(t, tokens.admin());
        assert!(matches!(tokens.lookup(&t), Lookup::Issued(i) if i.account == account()));
        assert_eq!(tokens.lookup(tokens.admin()), Lookup::Admin);
        assert_eq!(tokens.lookup("nope"), Lookup::Unknown);
    }

    #[test]
    fn expired_tokens_are_forgotten_at_the_next_issue() {
        let mut tokens = Tokens::new();
        let now = Utc::now();
        let old = tokens.issue(account(), vec![], now + chrono::Duration::seconds(1), now);
        tokens.expire_all(now);
        assert!(matches!(tokens.lookup(&old), Lookup::Issued(i) if i.expires == Some(now)));
        tokens.issue(
            account(),
            vec![],
            now + chrono::Duration::hours(1),
            now + chrono::Duration::seconds(5),
        );
        assert_eq!(tokens.lookup(&old), Lookup::Unknown);
    }
}
