//! `srlm fetch`: fetch the default model and evaluation data ahead of time (what first use
//! would do), and print where they are.

use srlm_assets::{
    fetch_asset, ALPACA_EVAL_BASELINE, ARC_CHALLENGE_TEST, GSM8K_TEST, IFEVAL_PROMPTS,
};
use srlm_model::DEFAULT_MODEL;

/// Arguments of `srlm fetch`.
#[derive(clap::Args)]
pub struct FetchArgs {}

/// Fetches every built-in asset (model, IFEval prompts, AlpacaEval baseline, GSM8K and
/// ARC-Challenge test sets) into the cache.
pub fn run(_a: FetchArgs) -> anyhow::Result<()> {
    for asset in [
        DEFAULT_MODEL,
        IFEVAL_PROMPTS,
        ALPACA_EVAL_BASELINE,
        GSM8K_TEST,
        ARC_CHALLENGE_TEST,
    ] {
        let p = fetch_asset(&asset)?;
        out!("{}\t{}", asset.member, p.display());
    }
    Ok(())
}
