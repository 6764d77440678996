//! CustomResourceDefinition objects written through the API register (or replace) the type
//! they define; deleting one unregisters the type and drops its objects.

use serde_json::Value;

use super::State;
use crate::error::{ApiError, Cause, Subject};
use crate::resource::{ResourceType, TypeKey};

fn is_crd_type(ty: &ResourceType) -> bool {
    ty.group == "apiextensions.k8s.io" && ty.plural == "customresourcedefinitions"
}

fn parse(obj: &Value) -> Result<ResourceType, String> {
    let crd = serde_json::from_value(obj.clone()).map_err(|e| e.to_string())?;
    ResourceType::from_crd(&crd).map_err(|e| e.to_string())
}

impl State {
    /// 422 if a CRD object does not define a usable type.
    pub(super) fn check_crd_object(&self, ty: &ResourceType, obj: &Value) -> Result<(), ApiError> {
        if !is_crd_type(ty) {
            return Ok(());
        }
        parse(obj).map(drop).map_err(|message| {
            let name = crate::meta::meta_str(obj, "name")
                .unwrap_or_default()
                .to_string();
            let subject = Subject {
                group: ty.group.clone(),
                kind: ty.kind.clone(),
                name,
            };
            let cause = Cause {
                reason: "FieldValueInvalid".into(),
                field: "spec".into(),
                message,
            };
            ApiError::Invalid {
                subject,
                causes: vec![cause],
            }
        })
    }

    /// Registers the type a stored CRD object defines.
    pub(super) fn after_crd_write(&mut self, ty: &ResourceType, obj: &Value) {
        if is_crd_type(ty)
            && let Ok(defined) = parse(obj)
        {
            self.registry.insert(defined);
        }
    }

    /// Unregisters the type of a removed CRD object and drops its objects.
    pub(super) fn after_crd_removed(&mut self, obj: &Value) {
        if let Ok(defined) = parse(obj) {
            let key: TypeKey = defined.key();
            self.registry.remove(&key);
            for obj in self
                .objects
                .remove(&key)
                .into_iter()
                .flat_map(|o| o.into_values())
            {
                self.count_owners(&obj, false);
            }
        }
    }
}
