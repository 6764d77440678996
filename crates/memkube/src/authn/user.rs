//! Who a request is from (pure): [`UserInfo`], with the identities memkube authenticates: the
//! instance's admin and ServiceAccounts, named and grouped as a real API server names them.

use serde_json::{Value, json};

/// The admin's user name.
pub const ADMIN_USER: &str = "memkube-admin";
/// The group every authenticated identity is in.
pub const AUTHENTICATED: &str = "system:authenticated";
/// The group whose members may do everything, whatever RBAC says.
pub const MASTERS: &str = "system:masters";

/// An authenticated identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// User name, e.g. `system:serviceaccount:isthmus:gateway`.
    pub name: String,
    /// The ServiceAccount's uid for ServiceAccounts, else "".
    pub uid: String,
    /// Groups, e.g. `system:serviceaccounts`, `system:authenticated`.
    pub groups: Vec<String>,
}

impl UserInfo {
    /// The instance's admin: in `system:masters`.
    pub fn admin() -> Self {
        Self {
            name: ADMIN_USER.into(),
            uid: String::new(),
            groups: vec![MASTERS.into(), AUTHENTICATED.into()],
        }
    }

    /// A ServiceAccount, as its tokens authenticate.
    pub fn service_account(namespace: &str, name: &str, uid: &str) -> Self {
        Self {
            name: format!("system:serviceaccount:{namespace}:{name}"),
            uid: uid.into(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                AUTHENTICATED.into(),
            ],
        }
    }

    /// An identity described by a SubjectAccessReview (user, groups, uid as given).
    pub fn described(name: &str, uid: &str, groups: Vec<String>) -> Self {
        Self {
            name: name.into(),
            uid: uid.into(),
            groups,
        }
    }

    /// Whether the user is in `system:masters`.
    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == MASTERS)
    }

    /// The `userInfo` object of SelfSubjectReview and TokenReview statuses.
    pub fn to_json(&self) -> Value {
        let mut info = json!({"username": self.name, "groups": self.groups});
        if !self.uid.is_empty() {
            info["uid"] = json!(self.uid);
        }
        info
    }
}
