//! Resource types the API serves: [`ResourceType`] (what discovery, routing, validation and table
//! printing need to know about one kind) and [`Registry`], the set of them, built from the
//! built-in table and from registered CustomResourceDefinitions.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, CustomResourceDefinitionVersion,
};
use serde_json::Value;

use crate::error::{Error, Result};

/// Identifies a stored resource: objects are kept per (group, plural), whatever version is used.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TypeKey {
    /// API group ("" for core).
    pub group: String,
    /// Plural resource name.
    pub plural: String,
}

/// A CRD `additionalPrinterColumns` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrinterColumn {
    /// Column header.
    pub name: String,
    /// OpenAPI type: string, integer, number, boolean, date.
    pub type_: String,
    /// OpenAPI format, may be empty.
    pub format: String,
    /// Column description.
    pub description: String,
    /// JSONPath (subset) into the object.
    pub json_path: String,
    /// 0 = shown by default; higher only with `-o wide`.
    pub priority: i32,
}

/// Everything memkube knows about one kind.
#[derive(Debug, Clone)]
pub struct ResourceType {
    /// API group ("" for core).
    pub group: String,
    /// Served versions; the first is the preferred (storage) version.
    pub versions: Vec<String>,
    /// Kind, e.g. `Secret`.
    pub kind: String,
    /// Plural resource name, e.g. `secrets`.
    pub plural: String,
    /// Singular name, e.g. `secret`.
    pub singular: String,
    /// kubectl short names.
    pub short_names: Vec<String>,
    /// kubectl categories (e.g. `all`).
    pub categories: Vec<String>,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Whether `/status` is a subresource (writes to the main resource then ignore `status`).
    pub status_subresource: bool,
    /// Whether this is a custom resource (schema validation, resourceVersion required on update).
    pub custom: bool,
    /// `openAPIV3Schema` per version (custom resources only); shared, as every request
    /// carries a copy of its type.
    pub schemas: BTreeMap<String, Arc<Value>>,
    /// Printer columns per version (custom resources only).
    pub printer_columns: BTreeMap<String, Vec<PrinterColumn>>,
}

impl ResourceType {
    /// The storage key of this type.
    pub fn key(&self) -> TypeKey {
        TypeKey {
            group: self.group.clone(),
            plural: self.plural.clone(),
        }
    }

    /// `apiVersion` string for a version of this type.
    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    /// The preferred version.
    pub fn preferred_version(&self) -> &str {
        &self.versions[0]
    }

    /// Whether a version is served.
    pub fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }

    /// Builds a type from a CustomResourceDefinition.
    pub fn from_crd(crd: &CustomResourceDefinition) -> Result<Self> {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let invalid = |reason: &str| Error::InvalidCrd {
            name: name.clone(),
            reason: reason.into(),
        };
        let spec = &crd.spec;
        let mut served: Vec<_> = spec.versions.iter().filter(|v| v.served).collect();
        if served.is_empty() {
            return Err(invalid("no served version"));
        }
        served.sort_by_key(|v| !v.storage);
        let names = &spec.names;
        if names.plural.is_empty() || names.kind.is_empty() || spec.group.is_empty() {
            return Err(invalid("group, names.plural and names.kind are required"));
        }
        let namespaced = match spec.scope.as_str() {
            "Namespaced" => true,
            "Cluster" => false,
            other => return Err(invalid(&format!("unknown scope {other:?}"))),
        };
        let mut ty = Self {
            group: spec.group.clone(),
            versions: served.iter().map(|v| v.name.clone()).collect(),
            kind: names.kind.clone(),
            plural: names.plural.clone(),
            singular: names
                .singular
                .clone()
                .unwrap_or_else(|| names.kind.to_lowercase()),
            short_names: names.short_names.clone().unwrap_or_default(),
            categories: names.categories.clone().unwrap_or_default(),
            namespaced,
            status_subresource: false,
            custom: true,
            schemas: BTreeMap::new(),
            printer_columns: BTreeMap::new(),
        };
        for v in served {
            ty.add_version(v).map_err(|e| invalid(&e))?;
        }
        Ok(ty)
    }

    /// Records one served CRD version's schema, printer columns and status subresource.
    fn add_version(&mut self, v: &CustomResourceDefinitionVersion) -> Result<(), String> {
        if let Some(schema) = v
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.as_ref())
        {
            let value = serde_json::to_value(schema).map_err(|e| e.to_string())?;
            self.schemas.insert(v.name.clone(), Arc::new(value));
        }
        let columns = v
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| PrinterColumn {
                name: c.name.clone(),
                type_: c.type_.clone(),
                format: c.format.clone().unwrap_or_default(),
                description: c.description.clone().unwrap_or_default(),
                json_path: c.json_path.clone(),
                priority: c.priority.unwrap_or(0),
            });
        self.printer_columns
            .insert(v.name.clone(), columns.collect());
        self.status_subresource |= v.subresources.as_ref().is_some_and(|s| s.status.is_some());
        Ok(())
    }
}

/// The set of served types.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    types: BTreeMap<TypeKey, ResourceType>,
}

impl Registry {
    /// A registry holding the built-in types.
    pub fn with_builtins() -> Self {
        let mut registry = Self::default();
        for ty in crate::builtin::builtin_types() {
            registry.insert(ty);
        }
        registry
    }

    /// Adds or replaces a type.
    pub fn insert(&mut self, ty: ResourceType) {
        self.types.insert(ty.key(), ty);
    }

    /// Removes a type.
    pub fn remove(&mut self, key: &TypeKey) {
        self.types.remove(key);
    }

    /// Looks a type up by group, version and plural.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        let key = TypeKey {
            group: group.into(),
            plural: plural.into(),
        };
        self.types.get(&key).filter(|t| t.serves(version))
    }

    /// Looks a type up by its storage key.
    pub fn get(&self, key: &TypeKey) -> Option<&ResourceType> {
        self.types.get(key)
    }

    /// All types, ordered by group then plural.
    pub fn all(&self) -> impl Iterator<Item = &ResourceType> {
        self.types.values()
    }

    /// Served (group, version) pairs, groups in order, preferred version first within a group.
    pub fn group_versions(&self) -> BTreeMap<String, Vec<String>> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for ty in self.types.values() {
            let versions = out.entry(ty.group.clone()).or_default();
            for v in &ty.versions {
                if !versions.contains(v) {
                    versions.push(v.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(scope: &str) -> CustomResourceDefinition {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "widgets.example.io"},
            "spec": {
                "group": "example.io",
                "names": {"kind": "Widget", "plural": "widgets", "shortNames": ["wd"]},
                "scope": scope,
                "versions": [
                    {"name": "v1beta1", "served": true, "storage": false},
                    {"name": "v1", "served": true, "storage": true,
                     "subresources": {"status": {}},
                     "additionalPrinterColumns": [{"name": "Port", "type": "integer", "jsonPath": ".spec.port"}],
                     "schema": {"openAPIV3Schema": {"type": "object"}}},
                    {"name": "v0", "served": false, "storage": false}
                ]
            }
        }))
        .unwrap()
    }

    #[test]
    fn crd_becomes_type_with_storage_version_preferred() {
        let ty = ResourceType::from_crd(&crd("Namespaced")).unwrap();
        assert_eq!(ty.versions, vec!["v1", "v1beta1"]);
        assert!(ty.namespaced && ty.status_subresource && ty.custom);
        assert_eq!(ty.singular, "widget");
        assert_eq!(ty.printer_columns["v1"][0].json_path, ".spec.port");
        assert!(ty.schemas.contains_key("v1"));
        assert!(!ty.serves("v0"));
    }

    #[test]
    fn unknown_scope_is_rejected() {
        assert!(matches!(
            ResourceType::from_crd(&crd("Galaxy")),
            Err(Error::InvalidCrd { .. })
        ));
    }

    #[test]
    fn registry_lookup_by_group_version_plural() {
        let mut registry = Registry::with_builtins();
        registry.insert(ResourceType::from_crd(&crd("Cluster")).unwrap());
        assert!(registry.lookup("example.io", "v1", "widgets").is_some());
        assert!(
            registry
                .lookup("example.io", "v1beta1", "widgets")
                .is_some()
        );
        assert!(registry.lookup("example.io", "v2", "widgets").is_none());
        assert!(!registry.lookup("", "v1", "nodes").unwrap().namespaced);
        registry.remove(&TypeKey {
            group: "example.io".into(),
            plural: "widgets".into(),
        });
        assert!(registry.lookup("example.io", "v1", "widgets").is_none());
    }
}
