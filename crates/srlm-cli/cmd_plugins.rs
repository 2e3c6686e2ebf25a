//! `srlm plugins` (not built yet).

/// The `plugins` subcommands.
#[derive(clap::Subcommand)]
pub enum PluginsCommand {
    /// List the plugins found on the search path.
    List,
}

/// Runs the subcommand.
pub fn run(_cmd: PluginsCommand) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
