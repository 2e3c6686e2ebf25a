//! Standalone evaluation (`srlm eval`): greedy answers of a model on a prompt set, scored by a
//! judge, with the judge's health and — when the prompts carry reference (baseline) outputs —
//! a pairwise win rate against them.
//!
//! Prompt sets: `ifeval` (IFEval's 541 prompts), `alpaca-eval` (AlpacaEval 2.0's 805
//! instructions with GPT-4 Turbo's outputs, `gpt4_1106_preview`, as the baseline), or a file
//! that [`read_prompts`] reads (srlm/TRL JSONL, IFEval records, AlpacaEval JSON arrays of
//! `{"instruction", "output"}`; the baseline output is `reference`, `chosen` or `output`).
//!
//! **The win rate is a score-based pairwise comparison under srlm's judge**, not AlpacaEval's
//! length-controlled win rate with a GPT-4 annotator: for each prompt the judge scores the
//! model's answer and the baseline answer independently on its 0–5 scale; the model wins (1)
//! when its score is higher, ties (½) when equal, loses (0) when lower. Pairs in which either
//! side got no score are excluded from the rate and counted.
//!
//! **IFEval's own metrics**: whenever a prompt is an IFEval record (`instruction_id_list` in
//! its metadata), its answer is also checked by IFEval's rules, whatever the judge
//! ([`EvalRow::ifeval_instructions`]), and the report carries IFEval's four standard
//! accuracies over those prompts ([`EvalReport::ifeval`]: prompt- and instruction-level,
//! strict and loose, as Zhou et al. 2023 and lm-evaluation-harness report them), so a result
//! reads against published ones next to the judge's 0–5 score.

use crate::ports::{BackendError, Generator, ModelRef};
use crate::prompts::{load_pool, read_prompts, PromptsError};
use serde::{Deserialize, Serialize};
use srlm_core::progress::StageKind;
use srlm_core::{PromptRecord, SamplingConfig};
use srlm_judge::{IfevalAccuracy, InstructionResult, Judge, JudgeHealth, JudgeItem};

/// Name of the built-in AlpacaEval 2.0 prompt set (with GPT-4 Turbo baseline outputs).
pub const ALPACA_EVAL: &str = "alpaca-eval";

/// Errors of an evaluation: one line each, naming the prompt, file or judge concerned.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The prompt set could not be read (names file, line and field).
    #[error(transparent)]
    Prompts(#[from] PromptsError),
    /// Encoding or generating failed (names the prompt id).
    #[error("prompt `{id}`: {message}")]
    Model {
        /// The prompt's id.
        id: String,
        /// The model's error.
        message: String,
    },
    /// The judge could not be built or failed (names the judge spec).
    #[error("judge `{spec}`: {message}")]
    Judge {
        /// The judge spec.
        spec: String,
        /// The judge's error (names the item where it can).
        message: String,
    },
    /// `--baseline` was asked for but no prompt carries a baseline output.
    #[error("{0}: no baseline outputs (fields `reference`, `chosen` or `output`); drop --baseline or use a file that has them")]
    NoBaseline(String),
    /// Nothing to evaluate.
    #[error("no prompts to evaluate")]
    Empty,
    /// A prompt's IFEval instructions could not be checked (an unknown instruction id or
    /// malformed kwargs, naming the prompt and field; or `langdetect`'s profiles missing).
    #[error("IFEval check: {0}")]
    Ifeval(String),
}

/// How to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    /// New tokens per greedy answer (tokens).
    pub max_new_tokens: usize,
    /// Prompts per generation and judge call (a memory bound; results do not depend on it).
    pub batch_size: usize,
    /// Compare with the baseline outputs even if only some prompts carry one. Without it the
    /// comparison still runs whenever any prompt carries a baseline output.
    pub baseline: bool,
    /// What the progress display calls this evaluation (e.g. `evaluating M1`); answers and
    /// judging are reported through [`srlm_core::progress`].
    pub label: String,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            max_new_tokens: 96,
            batch_size: 8,
            baseline: false,
            label: "evaluating".into(),
        }
    }
}

/// One evaluated prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRow {
    /// The prompt's id.
    pub prompt_id: String,
    /// The prompt (user turn).
    pub prompt: String,
    /// The model's greedy answer.
    pub response: String,
    /// The judge's score of the answer (0–5), none when the judge gave none.
    pub score: Option<f64>,
    /// The judge's details for the answer.
    pub details: serde_json::Value,
    /// The baseline's answer, if the prompt has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    /// The judge's score of the baseline answer (0–5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_score: Option<f64>,
    /// The pairwise outcome: 1 win, 0.5 tie, 0 loss; none when excluded or not compared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<f64>,
    /// IFEval's verdicts on the answer, whatever the judge, when the prompt is an IFEval
    /// record (absent otherwise, and in rows written before srlm kept them): one
    /// `{"id", "strict", "loose"}` per instruction, in the prompt's `instruction_id_list`
    /// order. `id` is the IFEval instruction id (e.g. `punctuation:no_comma`); `strict` is
    /// true when the answer as written follows it; `loose` when at least one of IFEval's 8
    /// loose variants of the answer does (first line, last line or both removed, `*` removed:
    /// [`srlm_judge::ifeval::loose_variants`]). A blank answer follows nothing.
    /// [`ifeval_accuracy`] aggregates them into IFEval's four standard accuracies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifeval_instructions: Option<Vec<InstructionResult>>,
}

/// The pairwise comparison against the baseline answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WinRate {
    /// Pairs given (prompts with a baseline answer).
    pub pairs: usize,
    /// Pairs where the model's answer scored higher.
    pub wins: usize,
    /// Pairs with equal scores.
    pub ties: usize,
    /// Pairs where the baseline's answer scored higher.
    pub losses: usize,
    /// Pairs left out because either side got no score.
    pub excluded: usize,
    /// `(wins + ties / 2) / (wins + ties + losses)` (fraction, 0–1); none when nothing was
    /// compared.
    pub rate: Option<f64>,
}

/// What an evaluation reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// The judge's name.
    pub judge: String,
    /// Prompts evaluated.
    pub n: usize,
    /// Mean score (0–5) of the answers the judge scored; none when it scored none.
    pub mean: Option<f64>,
    /// Fraction of answers without a score (0–1).
    pub no_score_rate: f64,
    /// The judge's health on the model's answers.
    pub health: JudgeHealth,
    /// The comparison with the baseline answers, when there are any.
    pub win_rate: Option<WinRate>,
    /// IFEval's four standard accuracies over the prompts that are IFEval records
    /// ([`ifeval_accuracy`]); none when no prompt has IFEval instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ifeval: Option<IfevalAccuracy>,
    /// Every prompt's answer and scores, in prompt order.
    pub rows: Vec<EvalRow>,
}

/// The pairwise outcome of two scores: 1 when `model > baseline`, 0.5 when equal, 0 when
/// lower; none when either is missing.
pub fn outcome(model: Option<f64>, baseline: Option<f64>) -> Option<f64> {
    let (m, b) = (model?, baseline?);
    Some(if m > b {
        1.0
    } else if m == b {
        0.5
    } else {
        0.0
    })
}

/// The win rate of paired scores `(model, baseline)` (each 0–5 or none).
pub fn win_rate(pairs: &[(Option<f64>, Option<f64>)]) -> WinRate {
    let mut w = WinRate {
        pairs: pairs.len(),
        wins: 0,
        ties: 0,
        losses: 0,
        excluded: 0,
        rate: None,
    };
    for &(m, b) in pairs {
        match (m, b) {
            (Some(m), Some(b)) if m > b => w.wins += 1,
            (Some(m), Some(b)) if m == b => w.ties += 1,
            (Some(_), Some(_)) => w.losses += 1,
            _ => w.excluded += 1,
        }
    }
    let compared = w.wins + w.ties + w.losses;
    if compared > 0 {
        w.rate = Some((w.wins as f64 + 0.5 * w.ties as f64) / compared as f64);
    }
    w
}

/// IFEval's verdicts on `response` when `prompt` is an IFEval record (see
/// [`EvalRow::ifeval_instructions`]); none otherwise.
fn ifeval_verdicts(
    prompt: &PromptRecord,
    response: &str,
) -> Result<Option<Vec<InstructionResult>>, EvalError> {
    srlm_judge::ifeval::check_record(
        &prompt.metadata,
        response,
        &format!("prompt `{}`", prompt.id),
    )
    .map_err(|e| EvalError::Ifeval(e.to_string()))
}

/// Fills in [`EvalRow::ifeval_instructions`] where it is missing (rows written before srlm
/// kept it), `rows[i]` being the answer to `prompts[i]`; rows whose prompt id differs are
/// left alone.
///
/// # Errors
/// [`EvalError::Ifeval`] naming the prompt.
pub fn add_ifeval_verdicts(
    rows: &mut [EvalRow],
    prompts: &[PromptRecord],
) -> Result<(), EvalError> {
    for (row, p) in rows.iter_mut().zip(prompts) {
        if row.ifeval_instructions.is_none() && row.prompt_id == p.id {
            row.ifeval_instructions = ifeval_verdicts(p, &row.response)?;
        }
    }
    Ok(())
}

/// Token-weighted perplexity of responses from their log-probabilities under one model:
/// `exp(−Σ sum / Σ tokens)` over all of them (the corpus perplexity lm-evaluation-harness
/// and Hugging Face's perplexity guide compute, not a mean of per-response perplexities,
/// which short responses would dominate). Unitless, ≥ 1 for log-probs ≤ 0; none when no
/// token was scored or a log-prob is not finite.
pub fn perplexity(logps: &[crate::ports::ResponseLogp]) -> Option<f64> {
    let tokens: usize = logps.iter().map(|l| l.tokens).sum();
    let sum: f64 = logps.iter().map(|l| l.sum).sum();
    (tokens > 0 && sum.is_finite()).then(|| (-sum / tokens as f64).exp())
}

/// IFEval's four standard accuracies over the rows that carry IFEval verdicts; none when no
/// row has an instruction.
pub fn ifeval_accuracy(rows: &[EvalRow]) -> Option<IfevalAccuracy> {
    IfevalAccuracy::from_results(rows.iter().filter_map(|r| r.ifeval_instructions.as_deref()))
}

/// Reads a prompt set: [`ALPACA_EVAL`] (fetched once into srlm's cache), `ifeval`, or a file
/// (see [`read_prompts`]). Errors: [`PromptsError`] naming file, line and field.
pub fn load_eval_prompts(source: &str) -> Result<Vec<PromptRecord>, PromptsError> {
    if source == ALPACA_EVAL {
        let path = srlm_assets::fetch_asset(&srlm_assets::ALPACA_EVAL_BASELINE).map_err(|e| {
            PromptsError::Io {
                path: ALPACA_EVAL.into(),
                message: e.to_string(),
            }
        })?;
        return read_prompts(&path);
    }
    load_pool(source)
}

/// Greedy answers of `model` to `prompts` (at most `opts.max_new_tokens` tokens each), scored
/// by `judge` (built by [`crate::judges::build_judge`]), with the judge's health; when
/// prompts carry a baseline output (`reference`) or `opts.baseline` is set, the baseline
/// answers are scored by the same judge and compared pairwise ([`win_rate`]). Answers to
/// IFEval records are also checked by IFEval's rules ([`EvalRow::ifeval_instructions`],
/// [`EvalReport::ifeval`]).
///
/// Errors: [`EvalError::Empty`], [`EvalError::NoBaseline`] (`opts.baseline` without any
/// baseline output), [`EvalError::Model`] naming the prompt (e.g. a prompt longer than the
/// context), [`EvalError::Judge`] naming the judge (and the item where the judge does),
/// [`EvalError::Ifeval`] naming the prompt.
pub fn evaluate_model(
    backend: &dyn Generator,
    model: &ModelRef,
    prompts: &[PromptRecord],
    judge: &dyn Judge,
    opts: &EvalOptions,
) -> Result<EvalReport, EvalError> {
    if prompts.is_empty() {
        return Err(EvalError::Empty);
    }
    let with_baseline = prompts.iter().any(|p| p.reference.is_some());
    if opts.baseline && !with_baseline {
        return Err(EvalError::NoBaseline(format!("{} prompts", prompts.len())));
    }
    let judge_err = |e: srlm_judge::JudgeError| EvalError::Judge {
        spec: judge.name(),
        message: e.to_string(),
    };
    let cfg = SamplingConfig {
        k: 1,
        temperature: 0.0,
        top_p: 1.0,
        top_k: 0,
        max_new_tokens: opts.max_new_tokens,
        seed: 0,
    };
    // The answers advance the stage as the sampler finishes them; judging is a stage inside it
    // (so a judge's own sampling is not counted as answers).
    let _stage = srlm_core::progress::sampling_stage(
        StageKind::Evaluation,
        format!("{}: answering", opts.label),
        prompts.len() as u64,
    );
    let mut rows = Vec::with_capacity(prompts.len());
    for chunk in prompts.chunks(opts.batch_size.max(1)) {
        let texts: Vec<&str> = chunk.iter().map(|p| p.prompt.as_str()).collect();
        let gens = backend.sample(model, &texts, &cfg).map_err(|e| match e {
            BackendError::Prompt { index, message } => EvalError::Model {
                id: chunk[index].id.clone(),
                message,
            },
            other => EvalError::Model {
                id: chunk[0].id.clone(),
                message: other.to_string(),
            },
        })?;
        let item = |p: &PromptRecord, response: &str, origin: String| {
            JudgeItem::new(p.prompt.clone(), response.to_string())
                .with_metadata(p.metadata.clone())
                .with_origin(origin)
        };
        let answers: Vec<String> = gens
            .iter()
            .map(|g| g.first().map(|x| x.text.clone()).unwrap_or_default())
            .collect();
        let items: Vec<JudgeItem> = chunk
            .iter()
            .zip(&answers)
            .map(|(p, a)| item(p, a, p.id.clone()))
            .collect();
        let judging = srlm_core::progress::stage(
            StageKind::Evaluation,
            format!("{}: judging", opts.label),
            items.len() as u64,
            "responses",
        );
        let verdicts = judge.judge_batch(&items).map_err(judge_err)?;
        // The baseline answers of the prompts that have one, judged in the same call style.
        let base: Vec<(usize, JudgeItem)> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                p.reference
                    .as_ref()
                    .map(|r| (i, item(p, r, format!("{} (baseline)", p.id))))
            })
            .collect();
        let mut base_scores: Vec<Option<f64>> = vec![None; chunk.len()];
        if !base.is_empty() {
            let items: Vec<JudgeItem> = base.iter().map(|(_, it)| it.clone()).collect();
            for ((i, _), v) in base
                .iter()
                .zip(judge.judge_batch(&items).map_err(judge_err)?)
            {
                base_scores[*i] = v.score;
            }
        }
        for (((p, a), v), bs) in chunk.iter().zip(answers).zip(verdicts).zip(base_scores) {
            let has = p.reference.is_some();
            let ifeval_instructions = ifeval_verdicts(p, &a)?;
            rows.push(EvalRow {
                prompt_id: p.id.clone(),
                prompt: p.prompt.clone(),
                response: a,
                score: v.score,
                details: v.details,
                baseline: p.reference.clone(),
                baseline_score: bs,
                outcome: if has { outcome(v.score, bs) } else { None },
                ifeval_instructions,
            });
        }
        judging.advance(chunk.len() as u64);
    }
    let health = JudgeHealth::from_verdicts(rows.iter().map(|r| (r.score, &r.details)));
    let win = with_baseline.then(|| {
        let pairs: Vec<(Option<f64>, Option<f64>)> = rows
            .iter()
            .filter(|r| r.baseline.is_some())
            .map(|r| (r.score, r.baseline_score))
            .collect();
        win_rate(&pairs)
    });
    Ok(EvalReport {
        judge: judge.name(),
        n: rows.len(),
        mean: health.mean,
        no_score_rate: health.no_score_rate,
        health,
        win_rate: win,
        ifeval: ifeval_accuracy(&rows),
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::candle::CandleBackend;
    use srlm_model::Device;

    #[test]
    fn perplexity_is_token_weighted() {
        use crate::ports::ResponseLogp;
        // 3 tokens at ln(1/2) each and 1 token at ln(1/8): Σ log p = −6 ln 2 over 4 tokens,
        // perplexity exp(1.5 ln 2) = 2^1.5 (the mean of the two responses' perplexities,
        // (2 + 8) / 2 = 5, would let the short one dominate).
        let ln2 = std::f64::consts::LN_2;
        let logps = [
            ResponseLogp {
                sum: -3.0 * ln2,
                tokens: 3,
            },
            ResponseLogp {
                sum: -3.0 * ln2,
                tokens: 1,
            },
        ];
        let ppl = perplexity(&logps).unwrap();
        assert!((ppl - 2f64.powf(1.5)).abs() < 1e-12, "{ppl}");
        assert_eq!(perplexity(&[]), None);
        let bad = ResponseLogp {
            sum: f64::NEG_INFINITY,
            tokens: 1,
        };
        assert_eq!(perplexity(&[bad]), None);
    }

    /// The backend's log-probs and the perplexity built from them, on the default model,
    /// against PyTorch's (tests/fixtures/smollm2-torch-logps.json: transformers + torch,
    /// float32, the 8 responses of 4 prompts, each with its end-of-turn tokens).
    #[test]
    fn perplexity_under_the_default_model_matches_pytorch() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/smollm2-torch-logps.json");
        let f: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut exchanges = Vec::new();
        let mut torch = Vec::new();
        for p in f["pairs"].as_array().unwrap() {
            for side in ["chosen", "rejected"] {
                exchanges.push((p["prompt"].as_str().unwrap(), p[side].as_str().unwrap()));
                torch.push(crate::ports::ResponseLogp {
                    sum: p[format!("logps/{side}")].as_f64().unwrap(),
                    tokens: p[format!("{side}_ids")].as_array().unwrap().len(),
                });
            }
        }
        let backend = CandleBackend::new(Device::Cpu);
        let m0 = ModelRef::new("m0", "default");
        backend.load(&m0).unwrap();
        let got = backend.response_logps(&m0, &exchanges).unwrap();
        assert_eq!(got.len(), 8);
        for (g, t) in got.iter().zip(&torch) {
            assert_eq!(g.tokens, t.tokens);
            assert!((g.sum - t.sum).abs() < 0.05, "{} vs torch {}", g.sum, t.sum);
        }
        let (ppl, want) = (perplexity(&got).unwrap(), perplexity(&torch).unwrap());
        assert!((ppl / want - 1.0).abs() < 0.01, "{ppl} vs torch {want}");
        // A response the context cannot hold is an error naming its index.
        let long = "word ".repeat(20_000);
        let err = backend
            .response_logps(&m0, &[("Say hi.", "Hi!"), ("Say hi.", long.as_str())])
            .unwrap_err();
        assert!(
            matches!(&err, BackendError::Prompt { index: 1, message } if message.contains("more than the context")),
            "{err}"
        );
    }

    #[test]
    fn win_rate_arithmetic() {
        let pairs = [
            (Some(5.0), Some(2.5)), // win
            (Some(2.5), Some(2.5)), // tie
            (Some(0.0), Some(5.0)), // loss
            (Some(4.0), Some(1.0)), // win
            (None, Some(3.0)),      // excluded
            (Some(3.0), None),      // excluded
        ];
        let w = win_rate(&pairs);
        assert_eq!(
            (w.pairs, w.wins, w.ties, w.losses, w.excluded),
            (6, 2, 1, 1, 2)
        );
        // (2 + 0.5) / 4
        assert_eq!(w.rate, Some(0.625));
        assert_eq!(win_rate(&[(None, None)]).rate, None);
        assert_eq!(win_rate(&[]).rate, None);
        assert_eq!(
            (
                outcome(Some(1.0), Some(1.0)),
                outcome(Some(0.0), Some(0.1)),
                outcome(None, Some(1.0))
            ),
            (Some(0.5), Some(0.0), None)
        );
    }

    /// A judge that gives every answer 1 point and knows nothing of IFEval.
    struct OnePoint;

    impl Judge for OnePoint {
        fn name(&self) -> String {
            "one-point".into()
        }
        fn judge_batch(
            &self,
            items: &[JudgeItem],
        ) -> Result<Vec<srlm_judge::Verdict>, srlm_judge::JudgeError> {
            Ok(items
                .iter()
                .map(|_| srlm_judge::Verdict {
                    score: Some(1.0),
                    details: serde_json::Value::Null,
                })
                .collect())
        }
    }

    /// IFEval's verdicts and accuracies come with any judge, for the IFEval prompts only.
    /// FakeBackend's answers (`r123 r123`) have no comma and no quotes, so by hand: prompt a
    /// follows no_comma but not quotation, b follows no_comma, d follows nothing of its one
    /// quotation, c is no IFEval record: prompt-level 1/3, instruction-level 2/4, strict and
    /// loose alike.
    #[test]
    fn ifeval_accuracies_with_any_judge() {
        let rec = |id: &str, ids: &[&str]| PromptRecord {
            id: id.into(),
            prompt: format!("Prompt {id}."),
            reference: None,
            metadata: if ids.is_empty() {
                serde_json::json!({"dataset": "other"})
            } else {
                serde_json::json!({"instruction_id_list": ids, "kwargs": vec![serde_json::json!({}); ids.len()]})
            },
        };
        let prompts = [
            rec("a", &["punctuation:no_comma", "startend:quotation"]),
            rec("b", &["punctuation:no_comma"]),
            rec("c", &[]),
            rec("d", &["startend:quotation"]),
        ];
        let backend = crate::testing::FakeBackend::new();
        let model = ModelRef::new("m", "fake");
        backend.load(&model).unwrap();
        let r = evaluate_model(
            &backend,
            &model,
            &prompts,
            &OnePoint,
            &EvalOptions::default(),
        )
        .unwrap();
        let verdicts: Vec<Option<Vec<(bool, bool)>>> = r
            .rows
            .iter()
            .map(|row| {
                row.ifeval_instructions
                    .as_ref()
                    .map(|v| v.iter().map(|x| (x.strict, x.loose)).collect())
            })
            .collect();
        assert_eq!(
            verdicts,
            [
                Some(vec![(true, true), (false, false)]),
                Some(vec![(true, true)]),
                None,
                Some(vec![(false, false)]),
            ]
        );
        let a = r.ifeval.clone().unwrap();
        assert_eq!((a.prompts, a.instructions), (3, 4));
        assert_eq!(
            (
                a.prompt_level_strict_acc,
                a.inst_level_strict_acc,
                a.prompt_level_loose_acc,
                a.inst_level_loose_acc
            ),
            (1.0 / 3.0, 0.5, 1.0 / 3.0, 0.5)
        );
        assert_eq!(r.mean, Some(1.0));
        // The row's field, as written to eval/M<i>.jsonl; absent for the non-IFEval prompt.
        let line = serde_json::to_value(&r.rows[1]).unwrap();
        assert_eq!(
            line["ifeval_instructions"],
            serde_json::json!([{"id": "punctuation:no_comma", "strict": true, "loose": true}])
        );
        assert!(serde_json::to_value(&r.rows[2])
            .unwrap()
            .get("ifeval_instructions")
            .is_none());
        // Rows written before srlm kept the verdicts read back without them and get them
        // from the prompts; a row of another prompt is left alone.
        let mut old: Vec<EvalRow> = r
            .rows
            .iter()
            .map(|row| {
                let mut v = serde_json::to_value(row).unwrap();
                v.as_object_mut().unwrap().remove("ifeval_instructions");
                serde_json::from_value(v).unwrap()
            })
            .collect();
        assert_eq!(ifeval_accuracy(&old), None);
        old[3].prompt_id = "x".into();
        add_ifeval_verdicts(&mut old, &prompts).unwrap();
        assert_eq!(old[..3], r.rows[..3]);
        assert_eq!(old[3].ifeval_instructions, None);
        // No IFEval prompt: no accuracies; a bad instruction id: an error naming the prompt.
        let plain = evaluate_model(
            &backend,
            &model,
            &prompts[2..3],
            &OnePoint,
            &EvalOptions::default(),
        )
        .unwrap();
        assert_eq!(plain.ifeval, None);
        assert!(serde_json::to_value(&plain)
            .unwrap()
            .get("ifeval")
            .is_none());
        let bad = [rec("e", &["keywords:nope"])];
        let err = evaluate_model(&backend, &model, &bad, &OnePoint, &EvalOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("IFEval check: prompt `e`: field `instruction_id_list[0]`"),
            "{err}"
        );
    }

    #[test]
    fn alpaca_eval_reader() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.json");
        std::fs::write(
            &f,
            r#"[{"dataset": "koala", "instruction": "Name a color.", "output": "Blue.", "generator": "gpt4_1106_preview"},
                {"dataset": "oasst", "instruction": "Say hi.", "output": "Hi!", "generator": "gpt4_1106_preview"}]"#,
        )
        .unwrap();
        let p = load_eval_prompts(f.to_str().unwrap()).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            (
                p[0].id.as_str(),
                p[0].prompt.as_str(),
                p[0].reference.as_deref()
            ),
            ("line1", "Name a color.", Some("Blue."))
        );
        assert_eq!(
            (p[1].prompt.as_str(), p[1].reference.as_deref()),
            ("Say hi.", Some("Hi!"))
        );
        assert_eq!(p[1].metadata["dataset"], "oasst");
        std::fs::write(
            &f,
            r#"[{"instruction": "ok", "output": "x"}, {"output": "y"}]"#,
        )
        .unwrap();
        assert_eq!(
            load_eval_prompts(f.to_str().unwrap())
                .unwrap_err()
                .to_string(),
            format!(
                "{}:2: missing field `prompt` (or `instruction`)",
                f.display()
            )
        );
    }

    /// The built-in AlpacaEval set: 805 instructions, each with GPT-4 Turbo's output.
    #[test]
    fn alpaca_eval_builtin() {
        let p = load_eval_prompts(ALPACA_EVAL).unwrap();
        assert_eq!(p.len(), 805);
        assert!(p
            .iter()
            .all(|r| r.reference.as_deref().is_some_and(|s| !s.is_empty())));
        assert_eq!(p[0].metadata["generator"], "gpt4_1106_preview");
    }

    #[test]
    fn tiny_random_model_with_the_ifeval_judge() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.jsonl");
        let mut s = String::new();
        let refs = [
            "all lowercase and no commas",
            "Has Capitals, And Commas",
            "short one",
        ];
        for i in 0..6u8 {
            let mut r = serde_json::json!({
                "key": i, "prompt": format!("Write note {i}. Use no commas, lowercase only."),
                "instruction_id_list": ["punctuation:no_comma", "change_case:english_lowercase"], "kwargs": [{}, {}],
            });
            if i < 3 {
                r["reference"] = serde_json::json!(refs[i as usize]);
            }
            s += &format!("{r}\n");
        }
        std::fs::write(&f, s).unwrap();
        let prompts = read_prompts(&f).unwrap();
        let backend = CandleBackend::new(Device::Cpu);
        let model = ModelRef::new("tiny", "tiny-random");
        backend.load(&model).unwrap();
        let judge = srlm_judge::IfevalJudge::new();
        let opts = EvalOptions {
            max_new_tokens: 6,
            batch_size: 4,
            ..Default::default()
        };
        let r = evaluate_model(&backend, &model, &prompts, &judge, &opts).unwrap();
        assert_eq!((r.n, r.rows.len(), r.judge.as_str()), (6, 6, "ifeval"));
        assert_eq!(r.no_score_rate, 0.0);
        // Every score is 0, 2.5 or 5 (two instructions), and the mean is theirs.
        for row in &r.rows {
            assert!([0.0, 2.5, 5.0].contains(&row.score.unwrap()), "{row:?}");
        }
        let mean = r.rows.iter().map(|x| x.score.unwrap()).sum::<f64>() / 6.0;
        assert_eq!(r.mean, Some(mean));
        // IFEval's verdicts in each row are the ifeval judge's own.
        for row in &r.rows {
            assert_eq!(
                serde_json::to_value(&row.ifeval_instructions).unwrap(),
                row.details["instructions"],
                "{row:?}"
            );
        }
        let a = r.ifeval.clone().unwrap();
        assert_eq!((a.prompts, a.instructions), (6, 12));
        // Two instructions per prompt: instruction-level strict = mean score / 5.
        assert!(
            (a.inst_level_strict_acc - mean / 5.0).abs() < 1e-12,
            "{a:?}"
        );
        // Baselines: the ifeval judge scores them 5 (follows both), 0 (follows neither), 5.
        let base: Vec<Option<f64>> = r.rows.iter().map(|x| x.baseline_score).collect();
        assert_eq!(
            base,
            vec![Some(5.0), Some(0.0), Some(5.0), None, None, None]
        );
        let w = r.win_rate.clone().unwrap();
        assert_eq!((w.pairs, w.excluded, w.wins + w.ties + w.losses), (3, 0, 3));
        let expect = win_rate(
            &r.rows[..3]
                .iter()
                .map(|x| (x.score, x.baseline_score))
                .collect::<Vec<_>>(),
        );
        assert_eq!(w, expect);
        // Greedy: the same answers again, whatever the batch size.
        let again = evaluate_model(
            &backend,
            &model,
            &prompts,
            &judge,
            &EvalOptions {
                batch_size: 1,
                ..opts.clone()
            },
        )
        .unwrap();
        assert_eq!(again.rows, r.rows);
        // --baseline without any baseline output, and an unknown judge, are one-line errors.
        let plain: Vec<PromptRecord> = prompts[3..].to_vec();
        let err = evaluate_model(
            &backend,
            &model,
            &plain,
            &judge,
            &EvalOptions {
                baseline: true,
                ..opts.clone()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("no baseline outputs"), "{err}");
        let none = evaluate_model(&backend, &model, &plain, &judge, &opts).unwrap();
        assert_eq!(none.win_rate, None);
        let err = "bogus"
            .parse::<srlm_judge::JudgeSpec>()
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("judge spec `bogus`: ") && err.contains("unknown judge"),
            "{err}"
        );
    }
}
