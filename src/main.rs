//! `isthmus`: the one binary. Everything it does is in the library (`isthmus::cli`): parsing and
//! validating every option before anything binds or touches the disk, then the subcommand.

/// mimalloc: the gRPC path allocates per request; glibc's malloc cost ~6% of the IPAM server's CPU
/// in a profile of `isthmus bench ipam` (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    isthmus::cli::main()
}
