//! `srlm train` (not built yet).

/// Arguments of this subcommand.
#[derive(clap::Args)]
pub struct TrainDpoArgs {}

/// Runs the subcommand.
pub fn run(_args: TrainDpoArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
