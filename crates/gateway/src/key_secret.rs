//! The gateway's WireGuard key in a Secret: data `privateKey` and `publicKey`, each the base64
//! text of the key. Created on first start and read by the gateway alone: the public key is
//! published for the network-manager in a ConfigMap (`public_key`), so that nothing else needs
//! to read this Secret. The private key never reaches a log, a resource spec or a status.

use std::collections::BTreeMap;

use isthmus_dataplane::PrivateKey;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};

use crate::error::{Error, Result};

/// Secret data key of the private key.
pub const PRIVATE_KEY: &str = "privateKey";
/// Secret data key of the public key.
pub const PUBLIC_KEY: &str = "publicKey";

fn text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

fn parse(name: &str, secret: &Secret) -> Result<PrivateKey> {
    let private = text(secret, PRIVATE_KEY)
        .ok_or_else(|| Error::KeySecret(name.into(), format!("no {PRIVATE_KEY} in data")))?;
    PrivateKey::parse(&private)
        .map_err(|_| Error::KeySecret(name.into(), format!("{PRIVATE_KEY} is not a WireGuard key")))
}

/// Loads the key from Secret `name` in `namespace`, creating the Secret with a fresh key when
/// it does not exist, and repairing a missing or wrong `publicKey`.
pub async fn load_or_create_key(client: Client, namespace: &str, name: &str) -> Result<PrivateKey> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    for _ in 0..3 {
        if let Some(secret) = api.get_opt(name).await? {
            let key = parse(name, &secret)?;
            let public = key.public_key().to_string();
            if text(&secret, PUBLIC_KEY).as_deref() != Some(public.as_str()) {
                let data = BTreeMap::from([(PUBLIC_KEY, ByteString(public.into_bytes()))]);
                let patch = serde_json::json!({ "data": data });
                api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                tracing::info!(secret = %name, "publicKey of the gateway Secret repaired");
            }
            return Ok(key);
        }
        let key = PrivateKey::generate();
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                ..ObjectMeta::default()
            },
            type_: Some("Opaque".into()),
            data: Some(BTreeMap::from([
                (
                    PRIVATE_KEY.to_owned(),
                    ByteString(key.expose_base64().into_bytes()),
                ),
                (
                    PUBLIC_KEY.to_owned(),
                    ByteString(key.public_key().to_string().into_bytes()),
                ),
            ])),
            ..Secret::default()
        };
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => {
                tracing::info!(secret = %name, public_key = %key.public_key(), "gateway key created");
                return Ok(key);
            }
            // Another replica created it first: read theirs.
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(Error::KeySecret(
        name.into(),
        "created and deleted concurrently; giving up".into(),
    ))
}
