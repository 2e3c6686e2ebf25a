//! Test plugin `test-panicky`: a valid plugin whose constructor fails or panics on request
//! and whose `run_iteration` panics, to test that panics and constructor errors reach the
//! host as errors.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use srlm_strategy::{
    sdk::StrategyPlugin, FfiPair, FfiPrompt, HostMut, IterationInfo, StrategyError,
};

/// Options.
#[derive(Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// Return an error from the constructor.
    pub fail_in_new: bool,
    /// Panic in the constructor.
    pub panic_in_new: bool,
}

/// The strategy.
pub struct Panicky;

impl StrategyPlugin for Panicky {
    const NAME: &'static str = "test-panicky";
    const DESCRIPTION: &'static str = "Loader test plugin: panics in run_iteration.";
    type Options = Options;

    fn new(options: Options) -> Result<Self, StrategyError> {
        if options.panic_in_new {
            panic!("panicky: asked to panic in new");
        }
        if options.fail_in_new {
            return Err(StrategyError::invalid_options("panicky: asked to fail in new"));
        }
        Ok(Panicky)
    }

    fn run_iteration(
        &mut self,
        ctx: &IterationInfo,
        _prompts: &[FfiPrompt],
        _host: &mut HostMut<'_>,
    ) -> Result<Vec<FfiPair>, StrategyError> {
        panic!("panicky: iteration {} exploded", ctx.iteration);
    }
}

srlm_strategy::export_strategy!(Panicky);
