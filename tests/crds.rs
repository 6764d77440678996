//! `crds/` must be exactly what `isthmus crdgen` generates from the API types, and every schema
//! must be one the API server accepts (structural: no `$ref`, types everywhere).

use std::path::Path;

#[test]
fn committed_crds_match_the_api_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
    let drift = isthmus::crdgen::drift(&dir).unwrap();
    assert!(
        drift.is_empty(),
        "crds/ drifted from crates/api; run `isthmus crdgen`: {drift:?}"
    );
}

#[test]
fn schemas_are_structural() {
    for f in isthmus::crdgen::generate().unwrap() {
        assert!(!f.yaml.contains("$ref"), "{} has a $ref", f.name);
        assert!(!f.yaml.contains("nullable: null"), "{}", f.name);
        let doc: serde_yaml::Value = serde_yaml::from_str(&f.yaml).unwrap();
        let version = &doc["spec"]["versions"][0];
        assert_eq!(version["name"], "v1alpha1", "{}", f.name);
        assert!(version["schema"]["openAPIV3Schema"]["properties"]["spec"].is_mapping());
    }
}
