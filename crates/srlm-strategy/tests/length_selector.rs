//! A length- and text-aware selector tested on `FakeHost` with scripted texts and token
//! counts (`docs/plugins.md` shows this file): best vs worst score, ties broken by length.

use srlm_strategy::prelude::*;
use srlm_strategy::testing::{prompt, FakeHost};

options! {
    /// Options of `concise`.
    pub struct Options {
        /// Samples per prompt (K).
        pub k: u32 = 4,
    }
}

/// Chosen = the best score, the fewest tokens among equals; rejected = the worst score, the
/// most tokens among equals. Blank responses are never picked.
pub struct Concise(Options);

impl StrategyPlugin for Concise {
    const NAME: &'static str = "concise";
    const DESCRIPTION: &'static str = "Best vs worst of K, score ties broken by length.";
    type Options = Options;

    fn new(options: Options) -> Result<Self, StrategyError> {
        Ok(Concise(options))
    }

    fn run_iteration(&mut self, it: &mut Iteration<'_>) -> Result<Vec<Pair>, StrategyError> {
        let groups = it.sample_and_judge(it.prompt_ids(), Source::Current, self.0.k)?;
        let mut pairs = Vec::new();
        for (prompt_id, group) in groups.prompt_ids().zip(groups.iter()) {
            // (score, token count, sample) of the scored, non-blank samples.
            let usable: Vec<(f64, u32, &Scored)> = group
                .iter()
                .filter(|s| !s.sample.text.trim().is_empty())
                .filter_map(|s| Some((s.score?, s.sample.token_count, s)))
                .collect();
            // min_by / max_by keep the first of equals: ties go to the earliest sample.
            let chosen = usable
                .iter()
                .min_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let rejected = usable
                .iter()
                .min_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)));
            if let (Some(c), Some(r)) = (chosen, rejected) {
                if c.2.id() != r.2.id() && (c.0, c.1) != (r.0, r.1) {
                    pairs.push(Pair::new(prompt_id, c.2, r.2));
                }
            }
        }
        it.record_metric("concise/pairs", pairs.len() as f64);
        Ok(pairs)
    }
}

#[test]
fn score_ties_go_to_the_shorter_response() {
    let mut fake = FakeHost::new();
    // Table: (text, token_count, score) per sample, in order.
    fake.script_samples(
        "a",
        Source::Current,
        [
            ("Paris.", 2, Some(5.0)),
            (
                "The capital of France is Paris, on the Seine.",
                12,
                Some(5.0),
            ),
            ("   ", 1, Some(5.0)),
            (
                "I believe it is Lyon, the capital of France.",
                11,
                Some(1.0),
            ),
        ],
    );
    // Closure: sample i of `b` has 1 + i tokens; other prompts keep the default (3 tokens).
    fake.respond_with(|p, source, i| match p {
        "b" => (format!("b{}", " and more".repeat(i)), 1 + i as u32),
        _ => FakeHost::default_response(p, source, i),
    });
    fake.script("b", Source::Current, &[Some(3.0); 4]);
    fake.script(
        "c",
        Source::Current,
        &[Some(4.0), Some(4.0), None, Some(4.0)],
    );

    let prompts = [prompt("a", "q"), prompt("b", "q"), prompt("c", "q")];
    let pairs = fake
        .run(&mut Concise(Options::default()), &prompts)
        .unwrap();

    let got: Vec<_> = pairs
        .iter()
        .map(|p| (p.chosen.as_str(), p.rejected.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("Paris.", "I believe it is Lyon, the capital of France."),
            ("b", "b and more and more and more"),
        ],
        "c: equal scores and lengths give no pair"
    );
    assert_eq!(pairs[0].chosen_sample_id.as_deref(), Some("a/current/0"));
    assert_eq!(
        (pairs[1].chosen_score, pairs[1].rejected_score),
        (Some(3.0), Some(3.0))
    );
    assert_eq!(fake.metric("concise/pairs"), Some(2.0));
}
