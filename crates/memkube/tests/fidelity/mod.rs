//! Behaviours of a real kube-apiserver (v1.36, etcd 3.6) that memkube reproduces, written as
//! `async fn case(client: kube::Client, ns: &str)` bodies that use nothing but the client, so
//! the same bodies can run against a real API server: install the CRDs of `crds/` and of
//! [`crd_fixtures`], create the namespace, and call them. Here `on_memkube!` runs each one
//! against a fresh memkube prepared the same way.

pub mod deletion;
pub mod events;
pub mod meta;
pub mod raw;
pub mod reads;
pub mod sizes;
pub mod ssa;
pub mod watches;
pub mod writes;

use isthmus_memkube::MemKube;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{Client, CustomResourceExt};

/// The namespace the cases run in on memkube.
pub const NS: &str = "fidelity";

/// The CRDs every case may use: the test fixtures' `Widget` and `Gadget`, and the project's
/// own from `crds/`.
pub fn crd_fixtures() -> Vec<CustomResourceDefinition> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../crds");
    let mut crds = vec![crate::common::Widget::crd(), crate::common::Gadget::crd()];
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("crds/ exists")
        .map(|e| e.expect("readable").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path).expect("readable CRD");
        crds.push(serde_yaml::from_str(&text).expect("a CRD"));
    }
    crds
}

/// A fresh memkube with the fixture CRDs and the namespace [`NS`], and a client.
pub fn memkube() -> (MemKube, Client) {
    let kube = MemKube::new();
    for crd in crd_fixtures() {
        kube.register_crd(&crd).expect("fixture CRD registers");
    }
    kube.create_namespace(NS).expect("namespace");
    let client = kube.client();
    (kube, client)
}

/// Runs cases (`module::case`) against memkube, one test each.
#[macro_export]
macro_rules! on_memkube {
    ($($module:ident :: $case:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $case() {
            let (_kube, client) = $crate::fidelity::memkube();
            $crate::fidelity::$module::$case(client, $crate::fidelity::NS).await;
        }
    )*};
}

/// Every portable case, named once: `fidelity_cases!(m)` is `m!(module::case, …)`. memkube's
/// tests and the real-API tier (`real_api.rs`) both take the list from here.
#[macro_export]
macro_rules! fidelity_cases {
    ($m:ident) => {
        $m! {
            sizes::request_body_over_3_mib_is_413,
            sizes::object_over_the_etcd_limit_is_500_without_reason,
            sizes::non_apply_writes_drop_managed_fields_when_too_large,
            sizes::nat_mapping_applied_holds_at_most_32671_entries,
            writes::strategic_merge_patch_of_a_custom_resource_is_415,
            writes::apply_of_an_undeclared_field_is_500,
            writes::ipv4_format_is_validated,
            writes::create_with_a_resource_version_is_500,
            writes::lease_update_needs_a_resource_version,
            writes::integral_floats_are_stored_as_integers,
            meta::invalid_labels_annotations_and_finalizers_are_422,
            meta::empty_metadata_collections_are_not_stored,
            reads::unsupported_field_selectors_are_400,
            reads::paginated_lists_are_one_snapshot,
            reads::a_future_resource_version_is_504_after_a_wait,
            deletion::deletion_with_a_finalizer_bumps_generation,
            deletion::final_deleted_event_carries_the_last_stored_object,
            watches::bookmarks_mark_the_end_of_initial_events_only,
            watches::too_old_resource_version_is_per_type,
            events::events_v1_requires_the_reporting_fields,
            events::recorder_events_pass,
            ssa::managers_apply_their_own_finalizers_and_owner_references,
        }
    };
}

/// Every case, against memkube.
mod on_memkube {
    crate::fidelity_cases!(on_memkube);
}
