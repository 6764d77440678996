//! Shared fixtures for the integration tests: two small kube-derive CRDs (a namespaced
//! `Widget` and a cluster-scoped `Gadget`, both with a status subresource) and a MemKube with
//! them registered.
#![allow(dead_code)]

use std::collections::BTreeMap;

use isthmus_memkube::{Config, MemKube};
use kube::{Api, Client, CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How a widget runs.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema, Default)]
pub enum Mode {
    /// Fast.
    #[default]
    Fast,
    /// Slow.
    Slow,
}

/// A namespaced test resource.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[kube(
    group = "example.io",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus",
    shortname = "wd",
    printcolumn(name = "Port", type_ = "integer", json_path = ".spec.port"),
    printcolumn(name = "Ready", type_ = "boolean", json_path = ".status.ready")
)]
pub struct WidgetSpec {
    /// A port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i64,
    /// Mode.
    #[serde(default)]
    pub mode: Mode,
    /// Optional colour, lowercase letters only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[a-z]+$"))]
    pub colour: Option<String>,
    /// Free-form tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// Widget status.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct WidgetStatus {
    /// Reconciled.
    pub ready: bool,
    /// Generation seen by the controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A cluster-scoped test resource.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[kube(
    group = "example.io",
    version = "v1",
    kind = "Gadget",
    status = "GadgetStatus"
)]
pub struct GadgetSpec {
    /// Size.
    pub size: u32,
}

/// Gadget status.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema, Default)]
pub struct GadgetStatus {
    /// Phase.
    pub phase: String,
}

/// A MemKube with Widget and Gadget registered.
pub fn memkube_with(config: Config) -> MemKube {
    let kube = MemKube::with_config(config);
    kube.register_crd(&Widget::crd()).expect("widget crd");
    kube.register_crd(&Gadget::crd()).expect("gadget crd");
    kube
}

/// A MemKube with Widget and Gadget registered, and a client for it.
pub fn setup() -> (MemKube, Client) {
    let kube = memkube_with(Config::default());
    let client = kube.client();
    (kube, client)
}

/// A widget named `name` with port `port`.
pub fn widget(name: &str, port: i64) -> Widget {
    Widget::new(
        name,
        WidgetSpec {
            port,
            ..Default::default()
        },
    )
}

/// Widgets in `default`.
pub fn widgets(client: &Client) -> Api<Widget> {
    Api::namespaced(client.clone(), "default")
}

/// The API status code of a kube error (panics on other errors).
pub fn code(err: kube::Error) -> u16 {
    match err {
        kube::Error::Api(status) => status.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// The API status of a kube error (panics on other errors).
pub fn status(err: kube::Error) -> Box<kube::core::Status> {
    match err {
        kube::Error::Api(status) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}
