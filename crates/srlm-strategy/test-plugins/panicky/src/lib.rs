//! Test plugin `test-panicky`: a valid plugin whose constructor fails or panics on request
//! and whose `run_iteration` panics, to test that panics and constructor errors reach the
//! host as errors.

use srlm_strategy::prelude::*;

options! {
    /// Options.
    #[derive(Debug)]
    pub struct Options {
        /// Return an error from the constructor.
        pub fail_in_new: bool = false,
        /// Panic in the constructor.
        pub panic_in_new: bool = false,
    }
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
            return Err(StrategyError::invalid_options(
                "panicky: asked to fail in new",
            ));
        }
        Ok(Panicky)
    }

    fn run_iteration(&mut self, it: &mut Iteration<'_>) -> Result<Vec<Pair>, StrategyError> {
        panic!("panicky: iteration {} exploded", it.number());
    }
}

srlm_strategy::export_strategy!(Panicky);
