//! Writing a [`Plan`]: first, in each cluster, the other's namespace, ServiceAccount, Roles and
//! RoleBindings ([`PeerSpace`]); then both tokens are minted, each for the holder's own
//! ServiceAccount in the reached cluster; then in each cluster the Secret and then the
//! ForeignCluster that names it. Everything is server-side applied with field manager
//! `isthmus-peer` (forced: `peer` owns these objects). A write that fails rolls
//! back what this run created, and only that: objects that existed before (an earlier `peer`)
//! are kept, so a failed refresh never tears down a working peering.

use isthmus_api::ForeignCluster;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role as RbacRole, RoleBinding};
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::peer::access::{PEER_ACCOUNT, PeerSpace};
use crate::peer::error::{PeerError, Result, request_error};
use crate::peer::plan::{self, Direction, FIELD_MANAGER, Plan};
use crate::peer::side::{Connection, Role};
use crate::peer::token::{Minted, TOKEN_LIFETIME, TokenSource};

/// What `apply` did.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// Per direction: the cluster reached, and when its token expires.
    pub expiries: Vec<(String, Option<String>)>,
    /// `kind namespace/name in cluster`, for objects created (not updated) by this run.
    pub created: Vec<String>,
}

/// An object this run created, to roll back.
#[derive(Debug, Clone)]
struct Created {
    role: Role,
    kind: &'static str,
    namespace: Option<String>,
    name: String,
}

fn pick<'a>(role: Role, local: &'a Connection, remote: &'a Connection) -> &'a Connection {
    match role {
        Role::Local => local,
        Role::Remote => remote,
    }
}

/// Makes both peer namespaces, mints both tokens, then writes every object of `plan`.
pub async fn apply(
    plan: &Plan,
    local: &Connection,
    remote: &Connection,
    tokens: &dyn TokenSource,
) -> Result<Applied> {
    let mut created = Vec::new();
    for space in &plan.spaces {
        let conn = pick(space.side, local, remote);
        if let Err(failure) = write_space(conn, space, &mut created).await {
            let undone = rollback(&created, local, remote).await;
            return Err(PeerError::Apply {
                message: format!("{failure}; {undone}"),
            });
        }
    }
    let mut minted = Vec::new();
    for d in &plan.directions {
        let conn = pick(d.reached.role, local, remote);
        let m = tokens
            .mint(
                &conn.client,
                &d.token_namespace,
                PEER_ACCOUNT,
                TOKEN_LIFETIME,
            )
            .await;
        match m {
            Ok(m) => minted.push(m),
            Err(message) => {
                let undone = rollback(&created, local, remote).await;
                return Err(PeerError::Token {
                    side: conn.label.clone(),
                    namespace: d.token_namespace.clone(),
                    account: PEER_ACCOUNT.to_owned(),
                    message: format!("{message}; {undone}"),
                });
            }
        }
    }
    for (d, m) in plan.directions.iter().zip(&minted) {
        let conn = pick(d.holder, local, remote);
        if let Err(failure) = write(conn, d, m, &mut created).await {
            let undone = rollback(&created, local, remote).await;
            return Err(PeerError::Apply {
                message: format!("{failure}; {undone}"),
            });
        }
    }
    Ok(Applied {
        expiries: plan
            .directions
            .iter()
            .zip(minted)
            .map(|(d, m)| (d.reached.cluster_id.to_string(), m.expires))
            .collect(),
        created: created
            .iter()
            .map(|c| {
                let conn = pick(c.role, local, remote);
                let ns = c
                    .namespace
                    .as_deref()
                    .map(|n| format!("{n}/"))
                    .unwrap_or_default();
                format!("{} {ns}{} in {}", c.kind, c.name, conn.label)
            })
            .collect(),
    })
}

/// A peer's namespace, its ServiceAccount, then the Roles and their bindings; a failure as one
/// line.
async fn write_space(
    conn: &Connection,
    space: &PeerSpace,
    created: &mut Vec<Created>,
) -> std::result::Result<(), String> {
    let ns = &space.namespace;
    let fail = |kind: &str, name: &str, e: String| {
        format!("{}: writing {kind} {ns}/{name}: {e}", conn.label)
    };
    let namespaces: Api<Namespace> = Api::all(conn.client.clone());
    let found = namespaces
        .get_opt(ns)
        .await
        .map_err(|e| fail("Namespace", ns, request_error(&e)))?;
    if let Some(existing) = &found
        && !crate::peer::preflight::is_peer_namespace_of(
            &existing.metadata,
            &space.release_namespace,
        )
    {
        return Err(fail(
            "Namespace",
            ns,
            "it exists and was not made by isthmus peer for this peer; remove it or rename it"
                .into(),
        ));
    }
    if ssa(&namespaces, ns, &space.namespace())
        .await
        .map_err(|e| fail("Namespace", ns, e))?
    {
        created.push(Created {
            role: space.side,
            kind: "Namespace",
            namespace: None,
            name: ns.clone(),
        });
    }
    let sas: Api<ServiceAccount> = Api::namespaced(conn.client.clone(), ns);
    ssa(&sas, PEER_ACCOUNT, &space.service_account())
        .await
        .map_err(|e| fail("ServiceAccount", PEER_ACCOUNT, e))?;
    let roles: Api<RbacRole> = Api::namespaced(conn.client.clone(), ns);
    let bindings: Api<RoleBinding> = Api::namespaced(conn.client.clone(), ns);
    for (role, binding) in space.roles() {
        let name = role.metadata.name.clone().unwrap_or_default();
        ssa(&roles, &name, &role)
            .await
            .map_err(|e| fail("Role", &name, e))?;
        ssa(&bindings, &name, &binding)
            .await
            .map_err(|e| fail("RoleBinding", &name, e))?;
    }
    Ok(())
}

/// The Secret, then the ForeignCluster, of one direction; a failure as one line.
async fn write(
    conn: &Connection,
    d: &Direction,
    minted: &Minted,
    created: &mut Vec<Created>,
) -> std::result::Result<(), String> {
    let fail =
        |kind: &str, name: &str, e: String| format!("{}: writing {kind} {name}: {e}", conn.label);
    let secrets: Api<Secret> = Api::namespaced(conn.client.clone(), &d.namespace);
    let secret = plan::secret(d, minted);
    if ssa(&secrets, &d.secret_name, &secret)
        .await
        .map_err(|e| fail("Secret", &d.secret_name, e))?
    {
        created.push(Created {
            role: d.holder,
            kind: "Secret",
            namespace: Some(d.namespace.clone()),
            name: d.secret_name.clone(),
        });
    }
    let fcs: Api<ForeignCluster> = Api::all(conn.client.clone());
    let name = d.reached.cluster_id.as_str();
    if ssa(&fcs, name, &d.foreign_cluster)
        .await
        .map_err(|e| fail("ForeignCluster", name, e))?
    {
        created.push(Created {
            role: d.holder,
            kind: "ForeignCluster",
            namespace: None,
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Server-side applies `obj` as `name`; whether it was created (it did not exist before).
async fn ssa<K>(api: &Api<K>, name: &str, obj: &K) -> std::result::Result<bool, String>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let existed = api
        .get_metadata_opt(name)
        .await
        .map_err(|e| request_error(&e))?
        .is_some();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(name, &params, &Patch::Apply(obj))
        .await
        .map_err(|e| request_error(&e))?;
    Ok(!existed)
}

/// Deletes what this run created, newest first, trying each; one line saying what happened.
/// A ForeignCluster the network-manager already holds (its deletion is pending) is being
/// unpeered, which needs its kubeconfig Secret: that Secret is kept.
async fn rollback(created: &[Created], local: &Connection, remote: &Connection) -> String {
    if created.is_empty() {
        return "nothing had been created, nothing was changed".to_owned();
    }
    let (mut undone, mut kept, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    let mut unpeering: Vec<Role> = Vec::new();
    for c in created.iter().rev() {
        let conn = pick(c.role, local, remote);
        let dp = DeleteParams::default();
        let what = format!("{} {}", c.kind, c.name);
        let result = match (c.kind, &c.namespace) {
            ("Secret" | "Namespace", _) if unpeering.contains(&c.role) => {
                kept.push(what);
                continue;
            }
            ("Namespace", None) => Api::<Namespace>::all(conn.client.clone())
                .delete(&c.name, &dp)
                .await
                .map(|_| true),
            ("Secret", Some(ns)) => Api::<Secret>::namespaced(conn.client.clone(), ns)
                .delete(&c.name, &dp)
                .await
                .map(|_| true),
            _ => Api::<ForeignCluster>::all(conn.client.clone())
                .delete(&c.name, &dp)
                .await
                .map(|gone| gone.is_right()),
        };
        match result {
            Ok(true) => undone.push(what),
            Ok(false) => {
                unpeering.push(c.role);
                undone.push(format!("{what} (unpeering)"));
            }
            Err(e) => failed.push(format!("{what} ({})", request_error(&e))),
        }
    }
    let mut out = format!("removed what this run had created ({})", undone.join(", "));
    if !kept.is_empty() {
        out.push_str(&format!(
            "; kept {} until the network-manager has unpeered (`isthmus unpeer` finishes it)",
            kept.join(", ")
        ));
    }
    if !failed.is_empty() {
        out.push_str(&format!(
            "; could not remove {} (delete by hand or run `isthmus unpeer`)",
            failed.join(", ")
        ));
    }
    out
}
