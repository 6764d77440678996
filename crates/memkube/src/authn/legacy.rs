//! The legacy ServiceAccount token controller, as kube-controller-manager runs it: a Secret of
//! type `kubernetes.io/service-account-token` annotated `kubernetes.io/service-account.name`
//! gets `data.token`, `data.namespace` and `data.ca.crt` (the instance CA) and the
//! ServiceAccount's uid annotation; a token Secret whose ServiceAccount does not exist (or has
//! another uid: it was deleted and recreated) is deleted. It runs synchronously after every
//! write to Secrets or ServiceAccounts, so a client sees the token on its next read, as it
//! would a moment later on a real cluster.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use k8s_openapi::ByteString;
use serde_json::{Value, json};

use super::tokens::{AccountRef, SecretRef, random_token};
use crate::Shared;
use crate::meta::meta_str;
use crate::resource::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{DeleteOptions, State, WriteCtx};

/// The Secret type the controller fills in.
pub const TOKEN_SECRET_TYPE: &str = "kubernetes.io/service-account-token";
/// The annotation naming the ServiceAccount.
pub const NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
/// The annotation the controller sets to the ServiceAccount's uid.
pub const UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";

/// The field manager of the controller's writes.
const MANAGER: &str = "kube-controller-manager";

/// The token a Secret holds (`data.token`, base64-decoded), if any.
pub fn secret_token(secret: &Value) -> Option<String> {
    let data = secret.pointer("/data/token")?.clone();
    let bytes = serde_json::from_value::<ByteString>(data).ok()?.0;
    String::from_utf8(bytes).ok().filter(|t| !t.is_empty())
}

fn encoded(bytes: &[u8]) -> Value {
    serde_json::to_value(ByteString(bytes.to_vec())).unwrap_or_default()
}

fn annotation<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// What the controller does with one token Secret (pure).
#[derive(Debug, Clone, PartialEq)]
enum Action {
    /// Delete it: its ServiceAccount is gone.
    Delete,
    /// Store this updated Secret; `token` is set when a new token was generated.
    Update {
        secret: Value,
        token: Option<String>,
        account: AccountRef,
    },
}

/// Decides for one token Secret, given its ServiceAccount (if it exists) and the CA PEM.
fn decide(secret: &Value, account: Option<&Value>, ca_pem: Option<&str>) -> Option<Action> {
    let Some(sa) = account else {
        return Some(Action::Delete);
    };
    let sa_uid = meta_str(sa, "uid").unwrap_or_default();
    let wanted_uid = annotation(secret, UID_ANNOTATION);
    if !wanted_uid.is_empty() && wanted_uid != sa_uid {
        return Some(Action::Delete);
    }
    let ns = meta_str(secret, "namespace").unwrap_or_default();
    let has = |key: &str| {
        secret
            .pointer(&format!("/data/{key}"))
            .and_then(Value::as_str)
            .is_some_and(|v| !v.is_empty())
    };
    let ca_data = ca_pem.map(|pem| encoded(pem.as_bytes()));
    let needs_ca = ca_data
        .as_ref()
        .is_some_and(|ca| secret.pointer("/data/ca.crt") != Some(ca));
    let needs_token = secret_token(secret).is_none();
    if !needs_ca && !needs_token && has("namespace") && wanted_uid == sa_uid {
        return None;
    }
    let mut updated = secret.clone();
    if !updated.get("data").is_some_and(Value::is_object) {
        updated["data"] = json!({});
    }
    if let Some(ca) = ca_data {
        updated["data"]["ca.crt"] = ca;
    }
    if !has("namespace") {
        updated["data"]["namespace"] = encoded(ns.as_bytes());
    }
    let token = needs_token.then(random_token);
    if let Some(t) = &token {
        updated["data"]["token"] = encoded(t.as_bytes());
    }
    let annotations = crate::meta::metadata_mut(&mut updated)
        .entry("annotations")
        .or_insert_with(|| json!({}));
    annotations[UID_ANNOTATION] = json!(sa_uid);
    let account = AccountRef {
        namespace: ns.to_string(),
        name: annotation(secret, NAME_ANNOTATION).to_string(),
        uid: sa_uid.to_string(),
    };
    Some(Action::Update {
        secret: updated,
        token,
        account,
    })
}

fn core_type(state: &State, plural: &str) -> Option<ResourceType> {
    state.registry.lookup("", "v1", plural).cloned()
}

/// Every Secret of the token type that names a ServiceAccount.
fn token_secrets(state: &State, secrets: &ResourceType) -> Vec<Arc<Value>> {
    let (everything, any) = (LabelSelector::default(), FieldSelector::default());
    let (all, _) = state.list(secrets, None, &everything, &any);
    all.into_iter()
        .filter(|s| s.get("type").and_then(Value::as_str) == Some(TOKEN_SECRET_TYPE))
        .filter(|s| !annotation(s, NAME_ANNOTATION).is_empty())
        .collect()
}

/// Runs the controller over every token Secret of the instance. The CA is made only when
/// there is a token Secret.
pub(crate) fn sync(shared: &Shared, now: DateTime<Utc>) {
    let has_work = {
        let state = shared.lock();
        core_type(&state, "secrets").is_some_and(|ty| !token_secrets(&state, &ty).is_empty())
    };
    if !has_work {
        return;
    }
    let ca_pem = match shared.auth.ca() {
        Ok(ca) => Some(ca.cert_pem().to_string()),
        Err(e) => {
            tracing::warn!(error = %e, "memkube token controller: no CA for ca.crt");
            None
        }
    };
    let mut registered = Vec::new();
    {
        let mut state = shared.lock();
        let (Some(secrets), Some(accounts)) = (
            core_type(&state, "secrets"),
            core_type(&state, "serviceaccounts"),
        ) else {
            return;
        };
        for secret in token_secrets(&state, &secrets) {
            let ns = meta_str(&secret, "namespace").unwrap_or_default();
            let sa_name = annotation(&secret, NAME_ANNOTATION);
            let sa = state.get(&accounts, Some(ns), sa_name).ok();
            let action = decide(&secret, sa.as_deref(), ca_pem.as_deref());
            if let Some(done) = apply(&mut state, &secrets, &secret, action, now) {
                registered.push(done);
            }
        }
    }
    let mut tokens = shared.auth.tokens();
    for (token, account, secret) in registered {
        tokens.register_legacy(&token, account, secret);
    }
}

/// Applies one decision; returns the token to register when a new one was stored.
fn apply(
    state: &mut State,
    secrets: &ResourceType,
    secret: &Value,
    action: Option<Action>,
    now: DateTime<Utc>,
) -> Option<(String, AccountRef, SecretRef)> {
    let ns = meta_str(secret, "namespace").unwrap_or_default();
    let name = meta_str(secret, "name").unwrap_or_default();
    let uid = meta_str(secret, "uid").unwrap_or_default();
    match action? {
        Action::Delete => {
            let opts = DeleteOptions {
                uid: Some(uid.to_string()),
                now: crate::meta::timestamp(now),
                ..DeleteOptions::default()
            };
            if let Err(e) = state.delete(secrets, Some(ns), name, &opts) {
                tracing::debug!(error = %e, secret = name, "memkube token controller: delete failed");
            }
            None
        }
        Action::Update {
            secret: updated,
            token,
            account,
        } => {
            let ctx = WriteCtx::new(MANAGER, now);
            if let Err(e) = state.replace(secrets, Some(ns), name, updated, &ctx) {
                tracing::debug!(error = %e, secret = name, "memkube token controller: update failed");
                return None;
            }
            let secret_ref = SecretRef {
                name: name.to_string(),
                uid: uid.to_string(),
            };
            token.map(|t| (t, account, secret_ref))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(uid_annotation: Option<&str>) -> Value {
        let mut s = json!({
            "metadata": {"name": "s", "namespace": "ns", "uid": "su",
                         "annotations": {NAME_ANNOTATION: "sa"}},
            "type": TOKEN_SECRET_TYPE,
        });
        if let Some(u) = uid_annotation {
            s["metadata"]["annotations"][UID_ANNOTATION] = json!(u);
        }
        s
    }

    fn account() -> Value {
        json!({"metadata": {"name": "sa", "namespace": "ns", "uid": "au"}})
    }

    #[test]
    fn a_secret_without_its_service_account_is_deleted() {
        assert_eq!(
            decide(&secret(None), None, Some("CA")),
            Some(Action::Delete)
        );
        assert_eq!(
            decide(&secret(Some("old")), Some(&account()), Some("CA")),
            Some(Action::Delete)
        );
    }

    #[test]
    fn a_new_token_secret_is_filled_in_once() {
        let Some(Action::Update {
            secret: filled,
            token: Some(token),
            account: a,
        }) = decide(&secret(None), Some(&account()), Some("CA"))
        else {
            panic!("expected an update with a token");
        };
        assert_eq!(secret_token(&filled).as_deref(), Some(token.as_str()));
        assert_eq!(filled["data"]["namespace"], encoded(b"ns"));
        assert_eq!(filled["data"]["ca.crt"], encoded(b"CA"));
        assert_eq!(filled["metadata"]["annotations"][UID_ANNOTATION], "au");
        assert_eq!(
            (a.namespace.as_str(), a.name.as_str(), a.uid.as_str()),
            ("ns", "sa", "au")
        );
        assert_eq!(decide(&filled, Some(&account()), Some("CA")), None);
    }
}
