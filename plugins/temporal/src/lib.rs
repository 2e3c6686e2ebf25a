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

use srlm_strategy::prelude::*;

options! {
    /// Options of `temporal`.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Options {
        /// Responses sampled per prompt from each model (K, at least 1; the paper uses 7). Unset:
        /// the run's `sampling.k` (`srlm run` fills it in; 4 elsewhere).
        #[schemars(range(min = 1))]
        pub k: Option<u32> = None,
        /// Phase 1: take the rejected from the initial model M0 when it scores lower than the
        /// worst of M_i (off: rejected = worst of M_i, as in Self-Rewarding).
        pub anchored_rejection: bool = true,
        /// Phase 2: train a temporary future model on D1 and let its best response replace the
        /// chosen when it scores higher (off: return D1, the past-only ablation).
        pub future_guided_chosen: bool = true,
    }
}

/// K when neither the options nor the run give one.
const DEFAULT_K: u32 = 4;

/// The Temporal Self-Rewarding pair selector.
#[derive(Debug)]
pub struct Temporal {
    options: Options,
}

/// A pair under construction: sample ids with their scores.
struct Candidate {
    prompt_id: String,
    chosen: (String, Option<f64>),
    rejected: (String, Option<f64>),
    notes: Vec<&'static str>,
}

impl Candidate {
    fn new(prompt_id: &str, chosen: &Scored, rejected: &Scored) -> Self {
        Candidate {
            prompt_id: prompt_id.to_string(),
            chosen: (chosen.sample.id.clone(), chosen.score),
            rejected: (rejected.sample.id.clone(), rejected.score),
            notes: Vec::new(),
        }
    }

    fn valid(&self) -> bool {
        // Both sides are always scored here; `Option` compares as the scores do.
        self.chosen.1 > self.rejected.1
    }

    fn pair(&self) -> Pair {
        Pair::new(&self.prompt_id, &self.chosen.0, &self.rejected.0).with_note(self.notes.join("+"))
    }
}

/// The pairs of the candidates that are valid (s_chosen > s_rejected).
fn valid_pairs(candidates: &[Candidate]) -> Vec<Pair> {
    candidates
        .iter()
        .filter(|c| c.valid())
        .map(Candidate::pair)
        .collect()
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
        if options.k.unwrap_or(DEFAULT_K) < 1 {
            return Err(StrategyError::invalid_options("k must be at least 1"));
        }
        Ok(Temporal { options })
    }

    fn run_iteration(&mut self, it: &mut Iteration<'_>) -> Result<Vec<Pair>, StrategyError> {
        let k = self.options.k.unwrap_or(DEFAULT_K);
        let current = it.sample_and_judge(it.prompt_ids(), Source::Current, k)?;
        let initial = if self.options.anchored_rejection {
            it.sample_and_judge(it.prompt_ids(), Source::Initial, k)?
        } else {
            Groups::default()
        };

        // Phase 1: Anchored Rejection.
        let (mut candidates, mut unscored, mut anchor_could_act) = (Vec::new(), 0u32, 0u32);
        for prompt_id in current.prompt_ids() {
            let r_i = current.get(prompt_id);
            let (Some(chosen), Some(worst_i)) = (best(r_i), worst(r_i)) else {
                unscored += 1;
                continue;
            };
            // Anchoring can only act where M_i's worst is above the judge's floor (a worse
            // response from M0 can exist) and M0 has a scored response.
            let worst_0 = worst(initial.get(prompt_id));
            if worst_0.is_some() && worst_i.score > Some(SCORE_FLOOR) {
                anchor_could_act += 1;
            }
            let candidate = match worst_0 {
                Some(worst_0) if worst_0.score < worst_i.score => {
                    let mut c = Candidate::new(prompt_id, chosen, worst_0);
                    c.notes.push("anchored");
                    c
                }
                _ => Candidate::new(prompt_id, chosen, worst_i),
            };
            candidates.push(candidate);
        }
        let anchored = candidates
            .iter()
            .filter(|c| c.notes.contains(&"anchored"))
            .count();
        let d1 = valid_pairs(&candidates);
        it.record_metric("temporal/candidates", candidates.len() as f64);
        it.record_metric("temporal/dropped_unscored", f64::from(unscored));
        it.record_metric("temporal/anchored_rejections", anchored as f64);
        it.record_metric("temporal/pairs_d1", d1.len() as f64);
        if self.options.anchored_rejection {
            it.record_component("anchored_rejection", anchor_could_act, anchored as u32);
        }
        // Future-Guided Chosen can only act where the chosen is below the judge's ceiling (and
        // only once M_f exists, i.e. D1 is not empty).
        let future_could_act = if d1.is_empty() {
            0
        } else {
            candidates
                .iter()
                .filter(|c| c.chosen.1 < Some(SCORE_CEILING))
                .count() as u32
        };
        if !self.options.future_guided_chosen {
            return Ok(d1);
        }
        if d1.is_empty() {
            // Nothing to train M_f on: no upgrade is possible, so D2 = D1 = {}.
            it.record_metric("temporal/future_upgrades", 0.0);
            it.record_metric("temporal/pairs_d2", 0.0);
            it.record_component("future_guided_chosen", 0, 0);
            return Ok(d1);
        }

        // Phase 2: Future-Guided Chosen.
        let future = it.train_temporary(Source::Current, &d1)?;
        let ids: Vec<&str> = candidates.iter().map(|c| c.prompt_id.as_str()).collect();
        let r_f = it.sample_and_judge(ids, future, k)?;
        let mut upgrades = 0u32;
        for c in &mut candidates {
            if let Some(best_f) = best(r_f.get(&c.prompt_id)) {
                if best_f.score > c.chosen.1 {
                    c.chosen = (best_f.sample.id.clone(), best_f.score);
                    c.notes.push("future-upgraded");
                    upgrades += 1;
                }
            }
        }
        let d2 = valid_pairs(&candidates);
        it.record_metric("temporal/future_upgrades", f64::from(upgrades));
        it.record_component("future_guided_chosen", future_could_act, upgrades);
        it.record_metric("temporal/pairs_d2", d2.len() as f64);
        Ok(d2)
    }
}

srlm_strategy::export_strategy!(Temporal);

#[cfg(test)]
mod tests {
    use super::*;
    use srlm_strategy::testing::{prompt, FakeHost, HostCall, PreferencePair};

    const CUR: Source = Source::Current;
    const INIT: Source = Source::Initial;
    const FUT: Source = Source::Temporary(0);

    type Script<'a> = &'a [(&'a str, Source, &'a [Option<f64>])];

    fn run(options: Options, script: Script<'_>) -> (Vec<PreferencePair>, FakeHost) {
        let mut fake = FakeHost::new();
        let mut ids: Vec<&str> = Vec::new();
        for (id, source, scores) in script {
            fake.script(id, *source, scores);
            if !ids.contains(id) {
                ids.push(id);
            }
        }
        let prompts: Vec<_> = ids.iter().map(|id| prompt(id, "q")).collect();
        let mut s = Temporal::new(options).unwrap();
        let pairs = fake.run(&mut s, &prompts).unwrap();
        (pairs, fake)
    }

    /// (name, could act, acted) of every component the run recorded.
    fn components(fake: &FakeHost) -> Vec<(String, u32, u32)> {
        fake.components()
            .into_iter()
            .map(|c| (c.name, c.could_act, c.acted))
            .collect()
    }

    /// (prompt, chosen id, rejected id, chosen score, rejected score, note)
    type Row = (String, String, String, f64, f64, String);

    fn summary(pairs: &[PreferencePair]) -> Vec<Row> {
        pairs
            .iter()
            .map(|p| {
                (
                    p.prompt_id.clone(),
                    p.chosen_sample_id.clone().unwrap(),
                    p.rejected_sample_id.clone().unwrap(),
                    p.chosen_score.unwrap(),
                    p.rejected_score.unwrap(),
                    p.provenance.as_ref().unwrap().note.clone(),
                )
            })
            .collect()
    }

    fn sources(p: &PreferencePair) -> (Source, Source) {
        let prov = p.provenance.as_ref().unwrap();
        (prov.chosen_source, prov.rejected_source)
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
            k: Some(3),
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
        assert_eq!(sources(&pairs[0]), (CUR, INIT));
        assert!(fake.trained().is_empty(), "past-only never trains M_f");
        assert_eq!(fake.metric("temporal/pairs_d1"), Some(4.0));
        assert_eq!(fake.metric("temporal/candidates"), Some(5.0));
        assert_eq!(fake.metric("temporal/anchored_rejections"), Some(2.0));
        assert_eq!(fake.metric("temporal/dropped_unscored"), Some(1.0));
        assert_eq!(fake.metric("temporal/pairs_d2"), None);
        // Anchoring could act on a–d (M_i's worst above 0, M0 scored), not e (no chosen) or f
        // (M0 unscored); it acted on a and d. Future-Guided Chosen is off: not recorded.
        assert_eq!(components(&fake), vec![("anchored_rejection".into(), 4, 2)]);
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
        assert_eq!(sources(&pairs[0]), (FUT, INIT));
        // M_f is trained from M_i on exactly D1 (a and c), before it is sampled.
        let trained = fake.trained();
        assert_eq!(trained.len(), 1);
        assert_eq!(
            trained[0],
            [
                Pair::new("a", "a/current/1", "a/initial/0").with_note("anchored"),
                Pair::new("c", "c/current/0", "c/current/1"),
            ]
        );
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
        // Anchoring could act on all four (worst of M_i 2, 3, 1, 2 > 0) and acted on a; every
        // chosen (4, 3, 4, 2) is below 5, so the future model could upgrade all four: a and b.
        assert_eq!(
            components(&fake),
            vec![
                ("anchored_rejection".into(), 4, 1),
                ("future_guided_chosen".into(), 4, 2)
            ]
        );
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
        assert_eq!(
            components(&fake),
            vec![("future_guided_chosen".into(), 1, 1)]
        );
    }

    #[test]
    fn a_chosen_at_the_ceiling_and_a_worst_at_the_floor_leave_no_room_to_act() {
        let (_, fake) = run(
            opts(true, true),
            &[
                // Worst of M_i at the floor: no M0 response can be worse. Chosen 5: no upgrade.
                ("a", CUR, &[Some(0.0), Some(5.0), Some(0.0)]),
                ("a", INIT, &[Some(0.0); 3]),
                ("a", FUT, &[Some(5.0); 3]),
                // Room on both sides, and neither acts.
                ("b", CUR, &[Some(1.0), Some(3.0), Some(2.0)]),
                ("b", INIT, &[Some(2.0); 3]),
                ("b", FUT, &[Some(3.0), Some(0.0), Some(1.0)]),
            ],
        );
        assert_eq!(
            components(&fake),
            vec![
                ("anchored_rejection".into(), 1, 0),
                ("future_guided_chosen".into(), 1, 0)
            ]
        );
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
        // No M_f without D1: the future component could not act.
        assert_eq!(
            components(&fake),
            vec![
                ("anchored_rejection".into(), 1, 0),
                ("future_guided_chosen".into(), 0, 0)
            ]
        );
    }

    #[test]
    fn defaults_match_the_paper_switches() {
        let resolved = srlm_strategy::sdk::parse_options::<Options>("{}").unwrap();
        assert_eq!(
            resolved,
            Options {
                k: None,
                anchored_rejection: true,
                future_guided_chosen: true
            }
        );
        let schema = srlm_strategy::sdk::options_schema_of::<Temporal>();
        assert!(schema.contains("anchored_rejection") && schema.contains("future_guided_chosen"));
        assert!(
            schema.contains("\"k\"") && schema.contains("\"default\": null"),
            "k declared without a default (the run's K): {schema}"
        );
    }
}
