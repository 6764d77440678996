//! Response representations (pure), chosen from the `Accept` header: whole objects,
//! `PartialObjectMetadata` (`as=PartialObjectMetadata[List]`, used by metadata watchers), or
//! server-side-printed `Table`s (`as=Table`, used by kubectl).

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::resource::ResourceType;
use crate::store::present;
use crate::table::{IncludeObject, table};

/// How objects are rendered in a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The objects themselves.
    Object,
    /// `meta.k8s.io/v1` `PartialObjectMetadata`.
    Metadata,
    /// `meta.k8s.io/v1` `Table`.
    Table(IncludeObject),
}

impl Format {
    /// Picks the representation from `Accept` (first supported choice wins) and `includeObject`.
    pub fn from_accept(accept: &str, include_object: Option<&str>) -> Self {
        for choice in accept.split(',') {
            if choice.contains("as=Table") {
                return Self::Table(IncludeObject::parse(include_object));
            }
            if choice.contains("as=PartialObjectMetadata") {
                return Self::Metadata;
            }
            if choice.trim_start().starts_with("application/json") || choice.contains("*/*") {
                return Self::Object;
            }
        }
        Self::Object
    }

    /// One object (GET, watch events).
    pub fn one(self, ty: &ResourceType, version: &str, obj: &Value, now: DateTime<Utc>) -> Value {
        let obj = present(ty, version, obj);
        match self {
            Self::Object => obj,
            Self::Metadata => metadata_only(&obj),
            Self::Table(include) => table(ty, version, &[obj], include, None, now),
        }
    }

    /// A list (LIST, deletecollection) with the given list `metadata`.
    pub fn list(
        self,
        ty: &ResourceType,
        version: &str,
        items: &[&Value],
        meta: Value,
        now: DateTime<Utc>,
    ) -> Value {
        let objs: Vec<Value> = items.iter().map(|o| present(ty, version, o)).collect();
        match self {
            Self::Object => json!({
                "kind": format!("{}List", ty.kind), "apiVersion": ty.api_version(version),
                "metadata": meta, "items": objs,
            }),
            Self::Metadata => json!({
                "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                "metadata": meta, "items": objs.iter().map(metadata_only).collect::<Vec<_>>(),
            }),
            Self::Table(include) => {
                let mut t = table(ty, version, &objs, include, None, now);
                t["metadata"] = meta;
                t
            }
        }
    }
}

fn metadata_only(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_pick_formats() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(
            Format::from_accept(kubectl, None),
            Format::Table(IncludeObject::Metadata)
        );
        assert_eq!(
            Format::from_accept(kubectl, Some("Object")),
            Format::Table(IncludeObject::Object)
        );
        let meta = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
        assert_eq!(Format::from_accept(meta, None), Format::Metadata);
        assert_eq!(
            Format::from_accept("application/json", None),
            Format::Object
        );
        assert_eq!(Format::from_accept("", None), Format::Object);
    }

    #[test]
    fn metadata_lists_strip_bodies() {
        let ty = crate::builtin::builtin_types().remove(2);
        let obj = json!({"metadata": {"name": "s"}, "data": {"k": "v"}});
        let list = Format::Metadata.list(
            &ty,
            "v1",
            &[&obj],
            json!({"resourceVersion": "3"}),
            Utc::now(),
        );
        assert_eq!(list["kind"], "PartialObjectMetadataList");
        assert_eq!(
            list["items"][0],
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": {"name": "s"}})
        );
        let one = Format::Object.one(&ty, "v1", &obj, Utc::now());
        assert_eq!(
            (one["kind"].as_str(), one["apiVersion"].as_str()),
            (Some("Secret"), Some("v1"))
        );
    }
}
