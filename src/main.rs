//! `isthmus`: the one binary. Parses the command line, validates every option before anything
//! binds or touches the disk, then runs the chosen subcommand. `anyhow` lives only here.

mod cli;

/// mimalloc: the gRPC path allocates per request; glibc's malloc cost ~6% of the IPAM server's CPU
/// in a profile of `isthmus bench ipam` (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    // A report prints what went wrong itself; client logs would only repeat it.
    let quiet = matches!(cli.command, cli::Command::Status(_));
    init_tracing(cli.log_format, quiet);
    // The IPAM load generator runs on one thread: it then takes at most one core from the
    // server it measures on a 2-core machine, and avoids cross-thread wake-ups per request.
    let mut builder = match &cli.command {
        cli::Command::Bench(cli::BenchCommand::Ipam(_)) => {
            tokio::runtime::Builder::new_current_thread()
        }
        _ => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            if let Some(n) = cli.worker_threads {
                b.worker_threads(n.max(1));
            }
            b
        }
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli.command)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: cli::LogFormat, quiet: bool) {
    let default = if quiet { "off" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // defguard logs interface configuration, private key included, below info: capped always,
    // whatever RUST_LOG says.
    let filter = match isthmus_dataplane::LOG_DIRECTIVE.parse() {
        Ok(cap) => filter.add_directive(cap),
        Err(_) => filter,
    };
    // gotatun logs every UAPI connection (each status read) at info.
    let filter = if std::env::var_os("RUST_LOG").is_none() {
        match "gotatun=warn".parse() {
            Ok(quiet) => filter.add_directive(quiet),
            Err(_) => filter,
        }
    } else {
        filter
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        cli::LogFormat::Text => builder.init(),
        cli::LogFormat::Json => builder.json().init(),
    }
}
