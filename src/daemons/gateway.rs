//! `isthmus gateway`: the command line of the gateway daemon and its wiring.

use clap::Args as ClapArgs;

/// Command-line options.
#[derive(Debug, ClapArgs)]
pub struct Args {}

/// Runs the daemon as the command line asks.
pub async fn main(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
