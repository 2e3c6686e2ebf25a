//! my-selector: best vs worst of K, only when their scores differ by at least `min_gap`.

use srlm_strategy::prelude::*;

options! {
    /// Options of `my-selector` (each has a default; unknown keys are errors).
    pub struct Options {
        /// Samples per prompt (K).
        #[schemars(range(min = 2))]
        pub k: u32 = 4,
        /// Smallest score gap worth a pair.
        pub min_gap: f64 = 1.0,
    }
}

/// The selector.
pub struct MySelector(Options);

impl StrategyPlugin for MySelector {
    const NAME: &'static str = "my-selector";
    const DESCRIPTION: &'static str = "Best vs worst of K when the gap is at least min_gap.";
    type Options = Options;

    fn new(options: Options) -> Result<Self, StrategyError> {
        Ok(MySelector(options))
    }

    fn run_iteration(&mut self, it: &mut Iteration<'_>) -> Result<Vec<Pair>, StrategyError> {
        let groups = it.sample_and_judge(it.prompt_ids(), Source::Current, self.0.k)?;
        // Best vs worst of each prompt's scored samples (none if fewer than two, or a tie).
        let pairs: Vec<Pair> = groups
            .iter()
            .filter_map(best_vs_worst)
            .filter(|bw| bw.gap() >= self.0.min_gap)
            .map(|bw| bw.pair())
            .collect();
        it.record_metric("my_selector/pairs", pairs.len() as f64);
        Ok(pairs)
    }
}

srlm_strategy::export_strategy!(MySelector);

#[cfg(test)]
mod tests {
    use super::*;
    use srlm_strategy::testing::{FakeHost, prompt};

    #[test]
    fn best_vs_worst_when_the_gap_is_wide_enough() {
        let mut fake = FakeHost::new();
        fake.script("a", Source::Current, &[Some(1.0), Some(4.5), None, Some(2.0)]);
        fake.script("b", Source::Current, &[Some(3.0), Some(3.5), Some(3.0), None]);
        let prompts = [prompt("a", "q"), prompt("b", "q")];
        let pairs = fake.run(&mut MySelector(Options::default()), &prompts).unwrap();
        assert_eq!(pairs.len(), 1, "b's gap of 0.5 is below min_gap");
        let p = &pairs[0];
        assert_eq!(p.chosen_sample_id.as_deref(), Some("a/current/1"));
        assert_eq!(p.rejected_sample_id.as_deref(), Some("a/current/0"));
        assert_eq!((p.chosen_score, p.rejected_score), (Some(4.5), Some(1.0)));
        assert_eq!(fake.metric("my_selector/pairs"), Some(1.0));
    }
}
