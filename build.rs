//! Compiles `proto/*.proto` with `protox` (a pure-Rust protobuf compiler, so no system `protoc`)
//! into tonic client/server code, and writes the encoded descriptor set used by gRPC reflection.
//! In release builds it also has the linker compress the binary's debug sections (zlib, which
//! the standard library's backtrace symbolizer reads), which keeps the binary under 60 MB.
//! It also tells the crate which Cargo profile builds it (`ISTHMUS_BUILD_PROFILE`), so that
//! benchmarks can say whether their figures come from a `release` build.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rustc-env=ISTHMUS_BUILD_PROFILE={}", build_profile()?);
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

/// The Cargo profile of this build: the directory under `target/` (or `target/<triple>/`) that
/// holds `build/<crate>-<hash>/out`. Cargo's own `PROFILE` says only `release` or `debug`, also
/// for a custom profile such as `lab`.
fn build_profile() -> Result<String, Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let profile = out
        .ancestors()
        .nth(3)
        .and_then(|dir| dir.file_name())
        .and_then(|name| name.to_str())
        .ok_or_else(|| format!("no profile directory above OUT_DIR {}", out.display()))?;
    Ok(profile.to_owned())
}
