//! Strategy plugin `temporal`: Temporal Self-Rewarding (Wang et al. 2025, arXiv 2508.06026,
//! Sec. 3), with the paper's past-only and future-only ablations as options.
//!
//! - Phase 1, Anchored Rejection: K responses from M_i (R_i) and K from M0 (R_0), all judged.
//!   chosen = best of R_i; rejected = worst of R_0 if min(s_0) < min(s_i), else worst of R_i.
//!   Pairs with s_chosen > s_rejected form D1.
//! - Phase 2, Future-Guided Chosen: M_f = DPO(M_i, D1) via the host's `train_temporary`; K
//!   responses from M_f, judged; where the best of them beats the current chosen, it becomes
//!   the chosen (rejected stays); pairs with s_chosen > s_rejected form D2, which is returned.
//!
//! Phase 2 re-examines every phase-1 candidate, including those the phase-1 filter dropped
//! (an upgraded chosen can make them valid), which is why the paper filters again.
//! `anchored_rejection = false` takes the rejected as Self-Rewarding does (worst of R_i; the
//! *future-only* ablation); `future_guided_chosen = false` returns D1 (the *past-only*
//! ablation). Unscored samples are never picked.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use srlm_strategy::{
    sdk::{best, record_metric, sample_and_judge, worst, Scored, StrategyPlugin},
    FfiPair, FfiPairSide, FfiPrompt, FfiSource, HostMut, IterationInfo, StrategyError,
};

/// Options of `temporal`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Options {
    /// Responses sampled per prompt from each model (K; the paper uses 7).
    #[schemars(range(min = 1))]
    pub k: u32,
    /// Phase 1: take the rejected from the initial model M0 when it scores lower than the
    /// worst of M_i (off: rejected = worst of M_i, as in Self-Rewarding).
    pub anchored_rejection: bool,
    /// Phase 2: train a temporary future model on D1 and let its best response replace the
    /// chosen when it scores higher (off: return D1, the past-only ablation).
    pub future_guided_chosen: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            k: 4,
            anchored_rejection: true,
            future_guided_chosen: true,
        }
    }
}

/// The Temporal Self-Rewarding pair selector.
#[derive(Debug)]
pub struct Temporal {
    options: Options,
}

/// A pair under construction.
struct Candidate {
    prompt_id: String,
    chosen: FfiPairSide,
    rejected: FfiPairSide,
    notes: Vec<&'static str>,
}

impl Candidate {
    fn valid(&self) -> bool {
        // Both sides are always scored here; `Option` compares as the scores do.
        self.chosen.score.into_option() > self.rejected.score.into_option()
    }

    fn pair(&self) -> FfiPair {
        FfiPair {
            prompt_id: self.prompt_id.as_str().into(),
            chosen: self.chosen.clone(),
            rejected: self.rejected.clone(),
            note: self.notes.join("+").into(),
        }
    }
}

fn group<'a>(groups: &'a HashMap<String, Vec<Scored>>, id: &str) -> &'a [Scored] {
    groups.get(id).map(Vec::as_slice).unwrap_or_default()
}

impl StrategyPlugin for Temporal {
    const NAME: &'static str = "temporal";
    const DESCRIPTION: &'static str =
        "Temporal Self-Rewarding (Wang et al. 2025, arXiv 2508.06026, Sec. 3): \
        Anchored Rejection (rejected from M0 when it scores below the worst of M_i) and \
        Future-Guided Chosen (chosen upgraded by a temporary model trained on the phase-1 pairs); \
        switch either off for the paper's past-only / future-only ablations.";
    type Options = Options;

    fn new(options: Options) -> Result<Self, StrategyError> {
        if options.k < 1 {
            return Err(StrategyError::invalid_options("k must be at least 1"));
        }
        Ok(Temporal { options })
    }

    fn run_iteration(
        &mut self,
        _ctx: &IterationInfo,
        prompts: &[FfiPrompt],
        host: &mut HostMut<'_>,
    ) -> Result<Vec<FfiPair>, StrategyError> {
        let k = self.options.k;
        let ids: Vec<_> = prompts.iter().map(|p| p.id.clone()).collect();
        let current = sample_and_judge(host, &ids, FfiSource::Current, k)?;
        let initial = if self.options.anchored_rejection {
            sample_and_judge(host, &ids, FfiSource::Initial, k)?
        } else {
            HashMap::new()
        };

        // Phase 1: Anchored Rejection.
        let (mut candidates, mut unscored, mut anchored) = (Vec::new(), 0u32, 0u32);
        for p in prompts {
            let r_i = group(&current, p.id.as_str());
            let (Some(chosen), Some(worst_i)) = (best(r_i), worst(r_i)) else {
                unscored += 1;
                continue;
            };
            let mut notes = Vec::new();
            let rejected = match worst(group(&initial, p.id.as_str())) {
                Some(worst_0) if worst_0.score < worst_i.score => {
                    notes.push("anchored");
                    worst_0
                }
                _ => worst_i,
            };
            candidates.push(Candidate {
                prompt_id: p.id.to_string(),
                chosen: chosen.side(),
                rejected: rejected.side(),
                notes,
            });
        }
        anchored += candidates
            .iter()
            .filter(|c| c.notes.contains(&"anchored"))
            .count() as u32;
        let d1: Vec<FfiPair> = candidates
            .iter()
            .filter(|c| c.valid())
            .map(Candidate::pair)
            .collect();
        record_metric(host, "temporal/candidates", candidates.len() as f64);
        record_metric(host, "temporal/dropped_unscored", f64::from(unscored));
        record_metric(host, "temporal/anchored_rejections", f64::from(anchored));
        record_metric(host, "temporal/pairs_d1", d1.len() as f64);
        if !self.options.future_guided_chosen {
            return Ok(d1);
        }
        if d1.is_empty() {
            // Nothing to train M_f on: no upgrade is possible, so D2 = D1 = {}.
            record_metric(host, "temporal/future_upgrades", 0.0);
            record_metric(host, "temporal/pairs_d2", 0.0);
            return Ok(d1);
        }

        // Phase 2: Future-Guided Chosen.
        let handle = host
            .train_temporary(FfiSource::Current, d1.into())
            .into_result()?;
        let candidate_ids: Vec<_> = candidates
            .iter()
            .map(|c| c.prompt_id.as_str().into())
            .collect();
        let future = sample_and_judge(host, &candidate_ids, FfiSource::Temporary(handle), k)?;
        let mut upgrades = 0u32;
        for c in &mut candidates {
            if let Some(best_f) = best(group(&future, &c.prompt_id)) {
                if best_f.score > c.chosen.score.into_option() {
                    c.chosen = best_f.side();
                    c.notes.push("future-upgraded");
                    upgrades += 1;
                }
            }
        }
        let d2: Vec<FfiPair> = candidates
            .iter()
            .filter(|c| c.valid())
            .map(Candidate::pair)
            .collect();
        record_metric(host, "temporal/future_upgrades", f64::from(upgrades));
        record_metric(host, "temporal/pairs_d2", d2.len() as f64);
        Ok(d2)
    }
}

srlm_strategy::export_strategy!(Temporal);

#[cfg(test)]
mod tests {
    use super::*;
    use srlm_strategy::{testing::FakeHost, testing::HostCall};

    const CTX: IterationInfo = IterationInfo {
        iteration: 0,
        total_iterations: 2,
        seed: 1,
    };
    const CUR: FfiSource = FfiSource::Current;
    const INIT: FfiSource = FfiSource::Initial;
    const FUT: FfiSource = FfiSource::Temporary(0);

    type Script<'a> = &'a [(&'a str, FfiSource, &'a [Option<f64>])];

    fn run(options: Options, script: Script<'_>) -> (Vec<FfiPair>, FakeHost) {
        let mut fake = FakeHost::new();
        let mut ids: Vec<&str> = Vec::new();
        for (id, source, scores) in script {
            fake.script(id, *source, scores);
            if !ids.contains(id) {
                ids.push(id);
            }
        }
        let prompts: Vec<FfiPrompt> = ids.iter().map(|id| FfiPrompt::new(id, "q")).collect();
        let mut s = Temporal::new(options).unwrap();
        let pairs = s.run_iteration(&CTX, &prompts, &mut fake.host()).unwrap();
        (pairs, fake)
    }

    /// (prompt, chosen id, rejected id, chosen score, rejected score, note)
    type Row = (String, String, String, f64, f64, String);

    fn summary(pairs: &[FfiPair]) -> Vec<Row> {
        pairs
            .iter()
            .map(|p| {
                (
                    p.prompt_id.to_string(),
                    p.chosen.sample_id.to_string(),
                    p.rejected.sample_id.to_string(),
                    p.chosen.score.unwrap(),
                    p.rejected.score.unwrap(),
                    p.note.to_string(),
                )
            })
            .collect()
    }

    fn row(
        p: &str,
        c: &str,
        r: &str,
        sc: f64,
        sr: f64,
        note: &str,
    ) -> (String, String, String, f64, f64, String) {
        (p.into(), c.into(), r.into(), sc, sr, note.into())
    }

    fn opts(anchored_rejection: bool, future_guided_chosen: bool) -> Options {
        Options {
            k: 3,
            anchored_rejection,
            future_guided_chosen,
        }
    }

    #[test]
    fn past_only_anchored_rejection_rules() {
        let (pairs, fake) = run(
            opts(true, false),
            &[
                // min(s_0)=1 < min(s_i)=2: rejected from M0.
                ("a", CUR, &[Some(2.0), Some(4.0), Some(3.0)]),
                ("a", INIT, &[Some(1.0), Some(5.0), None]),
                // min(s_0)=2 == min(s_i)=2: not strictly lower, rejected from M_i.
                ("b", CUR, &[Some(2.0), Some(4.0), Some(2.0)]),
                ("b", INIT, &[Some(2.0), Some(3.0), Some(2.0)]),
                // All of R_i tie and R_0 is no lower: s_chosen == s_rejected, dropped.
                ("c", CUR, &[Some(3.0), Some(3.0), Some(3.0)]),
                ("c", INIT, &[Some(4.0), Some(3.0), Some(5.0)]),
                // All of R_i tie but R_0 is lower: anchoring rescues the prompt.
                ("d", CUR, &[Some(3.0), Some(3.0), Some(3.0)]),
                ("d", INIT, &[None, Some(0.5), Some(1.0)]),
                // R_i unscored: no chosen, prompt skipped even though R_0 is scored.
                ("e", CUR, &[None, None, None]),
                ("e", INIT, &[Some(1.0), Some(0.0), Some(1.0)]),
                // R_0 unscored: min(s_0) undefined, rejected from R_i.
                ("f", CUR, &[None, Some(1.0), Some(4.0)]),
                ("f", INIT, &[None, None, None]),
            ],
        );
        assert_eq!(
            summary(&pairs),
            vec![
                row("a", "a/current/1", "a/initial/0", 4.0, 1.0, "anchored"),
                row("b", "b/current/1", "b/current/0", 4.0, 2.0, ""),
                row("d", "d/current/0", "d/initial/1", 3.0, 0.5, "anchored"),
                row("f", "f/current/2", "f/current/1", 4.0, 1.0, ""),
            ]
        );
        assert_eq!(pairs[0].rejected.source, INIT);
        assert_eq!(pairs[0].chosen.source, CUR);
        assert!(fake.trained().is_empty(), "past-only never trains M_f");
        assert_eq!(fake.metric("temporal/pairs_d1"), Some(4.0));
        assert_eq!(fake.metric("temporal/candidates"), Some(5.0));
        assert_eq!(fake.metric("temporal/anchored_rejections"), Some(2.0));
        assert_eq!(fake.metric("temporal/dropped_unscored"), Some(1.0));
        assert_eq!(fake.metric("temporal/pairs_d2"), None);
    }

    #[test]
    fn full_tsr_trains_on_d1_upgrades_chosen_and_refilters() {
        let (pairs, fake) = run(
            opts(true, true),
            &[
                // In D1 (4 > 1); M_f's best 5 > 4: upgraded.
                ("a", CUR, &[Some(2.0), Some(4.0), Some(3.0)]),
                ("a", INIT, &[Some(1.0), Some(5.0), Some(2.0)]),
                ("a", FUT, &[Some(3.0), Some(5.0), None]),
                // Tie in phase 1 (3 == 3), not in D1; M_f's 4 > 3 rescues it in D2.
                ("b", CUR, &[Some(3.0), Some(3.0), Some(3.0)]),
                ("b", INIT, &[Some(3.0), Some(4.0), Some(3.0)]),
                ("b", FUT, &[Some(4.0), Some(1.0), Some(2.0)]),
                // In D1; M_f only equals the chosen (4 == 4): no upgrade.
                ("c", CUR, &[Some(4.0), Some(1.0), Some(2.0)]),
                ("c", INIT, &[Some(2.0), Some(2.0), Some(2.0)]),
                ("c", FUT, &[Some(4.0), None, Some(0.0)]),
                // Tie in phase 1 and M_f no better: dropped from D2 too.
                ("d", CUR, &[Some(2.0), Some(2.0), Some(2.0)]),
                ("d", INIT, &[Some(2.0), Some(2.0), Some(2.0)]),
                ("d", FUT, &[Some(2.0), None, None]),
            ],
        );
        assert_eq!(
            summary(&pairs),
            vec![
                row(
                    "a",
                    "a/temporary:0/1",
                    "a/initial/0",
                    5.0,
                    1.0,
                    "anchored+future-upgraded"
                ),
                row(
                    "b",
                    "b/temporary:0/0",
                    "b/current/0",
                    4.0,
                    3.0,
                    "future-upgraded"
                ),
                row("c", "c/current/0", "c/current/1", 4.0, 1.0, ""),
            ]
        );
        assert_eq!(pairs[0].chosen.source, FfiSource::Temporary(0));
        // M_f is trained from M_i on exactly D1 (a and c), before it is sampled.
        let trained = fake.trained();
        assert_eq!(trained.len(), 1);
        let d1: Vec<&str> = trained[0].iter().map(|p| p.prompt_id.as_str()).collect();
        assert_eq!(d1, ["a", "c"]);
        assert_eq!(trained[0][0].chosen.sample_id.as_str(), "a/current/1");
        let train_at = fake
            .calls()
            .iter()
            .position(|c| matches!(c, HostCall::TrainTemporary { source: CUR, .. }));
        let future_at = fake
            .calls()
            .iter()
            .position(|c| matches!(c, HostCall::Sample { source: FUT, .. }));
        assert!(train_at.unwrap() < future_at.unwrap());
        assert_eq!(fake.metric("temporal/pairs_d1"), Some(2.0));
        assert_eq!(fake.metric("temporal/future_upgrades"), Some(2.0));
        assert_eq!(fake.metric("temporal/pairs_d2"), Some(3.0));
    }

    #[test]
    fn future_only_takes_rejected_as_self_rewarding_and_never_samples_m0() {
        let (pairs, fake) = run(
            opts(false, true),
            &[
                ("a", CUR, &[Some(2.0), Some(4.0), Some(3.0)]),
                ("a", FUT, &[Some(4.5), None, None]),
            ],
        );
        assert_eq!(
            summary(&pairs),
            vec![row(
                "a",
                "a/temporary:0/0",
                "a/current/0",
                4.5,
                2.0,
                "future-upgraded"
            )]
        );
        assert!(!fake
            .calls()
            .iter()
            .any(|c| matches!(c, HostCall::Sample { source: INIT, .. })));
    }

    #[test]
    fn empty_d1_skips_training() {
        let (pairs, fake) = run(
            opts(true, true),
            &[
                ("a", CUR, &[Some(3.0), Some(3.0), Some(3.0)]),
                ("a", INIT, &[Some(3.0); 3]),
            ],
        );
        assert!(pairs.is_empty());
        assert!(fake.trained().is_empty());
        assert_eq!(fake.metric("temporal/pairs_d2"), Some(0.0));
    }

    #[test]
    fn defaults_match_the_paper_switches() {
        let resolved = srlm_strategy::sdk::parse_options::<Options>("{}").unwrap();
        assert_eq!(
            resolved,
            Options {
                k: 4,
                anchored_rejection: true,
                future_guided_chosen: true
            }
        );
        let schema = srlm_strategy::sdk::options_schema_of::<Temporal>();
        assert!(schema.contains("anchored_rejection") && schema.contains("future_guided_chosen"));
    }
}
