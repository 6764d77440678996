//! `isthmus lab`: several clusters in network namespaces on this machine, every component of every
//! cluster in one process, each cluster with its own in-memory API (design brief §7).

use clap::Subcommand;

/// `isthmus lab …`
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build the clusters, peer them and print the connectivity matrix.
    Up,
}

/// Runs a lab command.
pub async fn main(_command: LabCommand) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
