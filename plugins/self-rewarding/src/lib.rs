//! Strategy plugin `self-rewarding`: Self-Rewarding Language Models (Yuan et al. 2024,
//! arXiv 2401.10020, Sec. 2.3 "Instruction following training", AI Feedback Training).
//!
//! Per prompt: sample K responses from the current model M_i, let M_i judge each; chosen =
//! the highest score, rejected = the lowest; the prompt is dropped when the two scores are
//! equal. Unscored samples (the judge gave no usable score) are never picked.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use srlm_strategy::{
    sdk::{best, record_metric, sample_and_judge, StrategyPlugin},
    FfiPair, FfiPrompt, FfiSource, HostMut, IterationInfo, StrategyError,
};

/// Options of `self-rewarding`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// Responses sampled per prompt (K); Yuan et al. use 4.
    #[schemars(range(min = 2))]
    pub k: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options { k: 4 }
    }
}

/// The Self-Rewarding pair selector.
#[derive(Debug)]
pub struct SelfRewarding {
    options: Options,
}

impl StrategyPlugin for SelfRewarding {
    const NAME: &'static str = "self-rewarding";
    const DESCRIPTION: &'static str =
        "Self-Rewarding (Yuan et al. 2024, arXiv 2401.10020, Sec. 2.3): \
        sample K responses from M_i, M_i judges them; chosen = highest score, rejected = lowest; \
        a prompt whose two scores are equal is dropped.";
    type Options = Options;

    fn new(options: Options) -> Result<Self, StrategyError> {
        if options.k < 2 {
            return Err(StrategyError::invalid_options("k must be at least 2"));
        }
        Ok(SelfRewarding { options })
    }

    fn run_iteration(
        &mut self,
        _ctx: &IterationInfo,
        prompts: &[FfiPrompt],
        host: &mut HostMut<'_>,
    ) -> Result<Vec<FfiPair>, StrategyError> {
        let ids: Vec<_> = prompts.iter().map(|p| p.id.clone()).collect();
        let groups = sample_and_judge(host, &ids, FfiSource::Current, self.options.k)?;
        let (mut pairs, mut ties, mut unscored) = (Vec::new(), 0u32, 0u32);
        for p in prompts {
            let group = groups
                .get(p.id.as_str())
                .map(Vec::as_slice)
                .unwrap_or_default();
            let scored = group.iter().filter(|s| s.score.is_some()).count();
            let (Some(chosen), Some(rejected)) = (best(group), srlm_strategy::sdk::worst(group))
            else {
                unscored += 1;
                continue;
            };
            if scored < 2 {
                unscored += 1;
            } else if chosen.score > rejected.score {
                pairs.push(FfiPair {
                    prompt_id: p.id.clone(),
                    chosen: chosen.side(),
                    rejected: rejected.side(),
                    note: "".into(),
                });
            } else {
                ties += 1;
            }
        }
        record_metric(host, "self_rewarding/pairs", pairs.len() as f64);
        record_metric(host, "self_rewarding/dropped_ties", f64::from(ties));
        record_metric(host, "self_rewarding/dropped_unscored", f64::from(unscored));
        Ok(pairs)
    }
}

srlm_strategy::export_strategy!(SelfRewarding);

#[cfg(test)]
mod tests {
    use super::*;
    use srlm_strategy::{sdk, testing::FakeHost};

    const CTX: IterationInfo = IterationInfo {
        iteration: 0,
        total_iterations: 2,
        seed: 1,
    };

    fn run(k: u32, script: &[(&str, &[Option<f64>])]) -> (Vec<FfiPair>, FakeHost) {
        let mut fake = FakeHost::new();
        let prompts: Vec<FfiPrompt> = script
            .iter()
            .map(|(id, _)| FfiPrompt::new(id, "q"))
            .collect();
        for (id, scores) in script {
            fake.script(id, FfiSource::Current, scores);
        }
        let mut s = SelfRewarding::new(Options { k }).unwrap();
        let pairs = s.run_iteration(&CTX, &prompts, &mut fake.host()).unwrap();
        (pairs, fake)
    }

    /// (prompt, chosen id, rejected id, chosen score, rejected score)
    type Row = (String, String, String, Option<f64>, Option<f64>);

    fn summary(pairs: &[FfiPair]) -> Vec<Row> {
        pairs
            .iter()
            .map(|p| {
                (
                    p.prompt_id.to_string(),
                    p.chosen.sample_id.to_string(),
                    p.rejected.sample_id.to_string(),
                    p.chosen.score.into_option(),
                    p.rejected.score.into_option(),
                )
            })
            .collect()
    }

    #[test]
    fn highest_vs_lowest_ties_dropped_unscored_never_picked() {
        let (pairs, fake) = run(
            4,
            &[
                ("a", &[Some(2.0), Some(5.0), Some(1.0), Some(3.0)]),
                ("tie", &[Some(3.0), Some(3.0), Some(3.0), Some(3.0)]),
                ("none", &[None, None, Some(1.0), None]),
                ("gaps", &[None, Some(4.0), None, Some(0.0)]),
                ("dup", &[Some(4.0), Some(1.0), Some(4.0), Some(1.0)]),
            ],
        );
        assert_eq!(
            summary(&pairs),
            vec![
                (
                    "a".into(),
                    "a/current/1".into(),
                    "a/current/2".into(),
                    Some(5.0),
                    Some(1.0)
                ),
                (
                    "gaps".into(),
                    "gaps/current/1".into(),
                    "gaps/current/3".into(),
                    Some(4.0),
                    Some(0.0)
                ),
                (
                    "dup".into(),
                    "dup/current/0".into(),
                    "dup/current/1".into(),
                    Some(4.0),
                    Some(1.0)
                ),
            ]
        );
        assert!(pairs
            .iter()
            .all(|p| p.chosen.source == FfiSource::Current
                && p.rejected.source == FfiSource::Current));
        assert_eq!(fake.metric("self_rewarding/pairs"), Some(3.0));
        assert_eq!(fake.metric("self_rewarding/dropped_ties"), Some(1.0));
        assert_eq!(fake.metric("self_rewarding/dropped_unscored"), Some(1.0));
        assert_eq!(fake.trained().len(), 0);
    }

    #[test]
    fn samples_k_from_current_only() {
        let (_, fake) = run(2, &[("a", &[Some(1.0), Some(2.0), Some(9.0)])]);
        assert_eq!(
            fake.calls()[0],
            srlm_strategy::testing::HostCall::Sample {
                prompt_ids: vec!["a".into()],
                source: FfiSource::Current,
                k: 2
            }
        );
    }

    #[test]
    fn options_defaults_and_k_bound_through_the_abi() {
        let m = sdk::root_module::<SelfRewarding>("0.0.0");
        let resolved = (m.resolve_options())("{}".into()).unwrap();
        assert_eq!(resolved.as_str(), r#"{"k":4}"#);
        let err = sdk::instantiate::<SelfRewarding>(r#"{"k":1}"#)
            .err()
            .unwrap();
        assert_eq!(err, StrategyError::invalid_options("k must be at least 2"));
        let err = sdk::instantiate::<SelfRewarding>(r#"{"kk":3}"#)
            .err()
            .unwrap();
        assert!(err.to_string().contains("unknown field `kk`"), "{err}");
        assert!(sdk::options_schema_of::<SelfRewarding>().contains("\"minimum\": 2"));
    }
}
