//! `srlm tokenize`, `srlm logits`, `srlm generate` (not built yet).

/// Arguments of `srlm tokenize`.
#[derive(clap::Args)]
pub struct TokenizeArgs {}
/// Arguments of `srlm logits`.
#[derive(clap::Args)]
pub struct LogitsArgs {}
/// Arguments of `srlm generate`.
#[derive(clap::Args)]
pub struct GenerateArgs {}

/// `srlm tokenize`.
pub fn tokenize(_a: TokenizeArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
/// `srlm logits`.
pub fn logits(_a: LogitsArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
/// `srlm generate`.
pub fn generate(_a: GenerateArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
