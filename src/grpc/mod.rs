//! The IPAM gRPC edge: the generated protocol types (`ipam`, no proto package), the server that
//! exposes a [`isthmus_ipam_store::DurableIpam`], who may call it (`auth`), the client side's
//! bearer token (`client`), and the one mapping from errors to gRPC codes.

pub mod auth;
pub mod client;
mod server;
mod status;

pub use server::{IpamGrpc, bind, serve};
pub use status::{auth_status, to_status};

/// Protocol types generated from `proto/ipam.proto` (no proto package, hence the `_` module).
#[allow(missing_debug_implementations, clippy::all)]
pub mod pb {
    tonic::include_proto!("_");
}

/// The encoded descriptor set of `proto/`, served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ipam_descriptor.bin"));
