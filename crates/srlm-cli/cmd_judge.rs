//! `srlm judge` (not built yet).

/// Arguments of this subcommand.
#[derive(clap::Args)]
pub struct JudgeArgs {}

/// Runs the subcommand.
pub fn run(_args: JudgeArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
