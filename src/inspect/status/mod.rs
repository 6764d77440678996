//! `isthmus status`: one cluster as an operator wants to see it at 3 a.m. — how many peers are
//! connected, and for each its state (or why it has no tunnel), handshake age, RTT, bytes, both
//! NAT views and NatMapping entries; the local networks and how full the ExternalCIDR and pools
//! are. Everything comes from one LIST of each of the five isthmus kinds.
//!
//! Layers: `fetch` (I/O) → `input::Fetched` → `build` (pure) → `report::StatusReport` →
//! `table` or JSON. Only `fetch` and [`main`] touch the network or the terminal.

pub mod build;
pub mod error;
pub mod fetch;
#[cfg(test)]
mod fixtures;
pub mod human;
pub mod input;
pub mod peers;
pub mod report;
pub mod table;
pub mod usage;

use std::io::Write as _;

use clap::{Args, ValueEnum};
use k8s_openapi::jiff::Timestamp;

pub use build::{Source, build};
pub use error::StatusError;
pub use report::StatusReport;

use crate::inspect::target::{Target, TargetArgs, connect};

/// Namespace of every isthmus object unless told otherwise.
pub const DEFAULT_NAMESPACE: &str = "isthmus";

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned tables for people.
    Table,
    /// The report as JSON (documented in docs/status.md).
    Json,
}

/// `isthmus status …`
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Namespace of the isthmus objects.
    #[arg(short, long, default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Reads the cluster and builds the report. Fails only when the API cannot be read, the CRDs
/// are missing or the namespace holds no isthmus object; peers being down is in the report.
pub async fn collect(target: &Target, namespace: &str) -> Result<StatusReport, StatusError> {
    let fetched = fetch::fetch(&target.client, namespace, &target.server).await?;
    if fetched.namespace_is_empty() {
        return Err(StatusError::NotInstalled {
            namespace: namespace.to_owned(),
            foreign_clusters: fetched.foreign_clusters.len(),
        });
    }
    let source = Source {
        server: target.server.clone(),
        namespace: namespace.to_owned(),
        // Whole seconds: ages are shown in seconds, and the report reads better.
        now: Timestamp::from_second(Timestamp::now().as_second())
            .unwrap_or_else(|_| Timestamp::now()),
    };
    Ok(build(&fetched, &source))
}

/// The report in the chosen format, ending with a newline.
pub fn render(report: &StatusReport, output: Output) -> Result<String, StatusError> {
    Ok(match output {
        Output::Table => table::render(report),
        Output::Json => serde_json::to_string_pretty(report)? + "\n",
    })
}

/// Runs `isthmus status`.
pub async fn main(args: StatusArgs) -> Result<(), StatusError> {
    let target = connect(&args.target).await?;
    let report = collect(&target, &args.namespace).await?;
    let text = render(&report, args.output)?;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        // A closed pipe (`| head`) is the reader's choice, not a failure.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}
