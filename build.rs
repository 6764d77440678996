//! Compiles `proto/*.proto` with `protox` (a pure-Rust protobuf compiler, so no system `protoc`)
//! into tonic client/server code, and writes the encoded descriptor set used by gRPC reflection.
//! In release builds it also has the linker compress the binary's debug sections (zlib, which
//! the standard library's backtrace symbolizer reads), which keeps the binary under 60 MB.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    if std::env::var("PROFILE").as_deref() == Ok("release") {
        println!("cargo:rustc-link-arg-bins=-Wl,--compress-debug-sections=zlib");
    }
    let fds = protox::compile(["ipam.proto"], ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("ipam_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
