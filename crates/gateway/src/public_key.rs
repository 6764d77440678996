//! The gateway's WireGuard public key, published in a ConfigMap (data `publicKey`) for the
//! network-manager, which advertises it to peers. Kept apart from the key Secret so that the
//! network-manager needs no access to any Secret holding a private key: it may read this one
//! ConfigMap and nothing of the gateway's Secret.

use std::collections::BTreeMap;

use isthmus_dataplane::PrivateKey;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Api, Client};

use crate::error::Result;

/// Data key of the public key (the same as in the key Secret and in NetworkConfigs).
pub const PUBLIC_KEY: &str = "publicKey";
/// Field manager of the ConfigMap.
const FIELD_MANAGER: &str = "isthmus-gateway";

/// The ConfigMap `name` in `namespace` publishing `key`'s public half (pure).
pub fn public_key_config_map(namespace: &str, name: &str, key: &PrivateKey) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                "isthmus-gateway".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            PUBLIC_KEY.to_owned(),
            key.public_key().to_string(),
        )])),
        ..ConfigMap::default()
    }
}

/// Writes (server-side applies) the ConfigMap publishing `key`'s public half.
pub async fn publish_public_key(
    client: Client,
    namespace: &str,
    name: &str,
    key: &PrivateKey,
) -> Result<()> {
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    let cm = public_key_config_map(namespace, name, key);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(name, &params, &Patch::Apply(&cm)).await?;
    tracing::info!(config_map = %name, public_key = %key.public_key(), "gateway public key published");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_public_key_is_published() {
        let key = PrivateKey::generate();
        let cm = public_key_config_map("isthmus", "isthmus-gateway-pubkey", &key);
        let data = cm.data.unwrap();
        assert_eq!(data.len(), 1);
        assert_eq!(data[PUBLIC_KEY], key.public_key().to_string());
        assert_ne!(data[PUBLIC_KEY], key.expose_base64());
    }
}
