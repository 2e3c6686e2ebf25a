//! The per-iteration metrics of a run: one [`IterationMetrics`] per line of `metrics.jsonl`,
//! written by the loop ([`crate::run`]) and read back by the report, `srlm compare` and tests.
//! [`Metric`] names every standard value, so readers ask for `Metric::ScoreGap`, never for a
//! string key that could be misspelt.
//!
//! Line 0 is M0's evaluation (only `iteration`, `eval/*` and `compute/wall_seconds`); line i
//! adds the iteration's [`TrainingMetrics`] and the strategy plugin's own metrics
//! (`<plugin>/<name>`, e.g. `temporal/future_upgrades`).
//!
//! The held-out evaluation's `eval/ifeval/*` keys are IFEval's own four accuracies (Zhou et
//! al. 2023; lm-evaluation-harness's names), present only when held-out prompts are IFEval
//! records, whatever the judge (see [`EvalMetrics`]).
//!
//! Units: judge scores and held-out scores are judge points on the 0–5 scale; the hidden-state
//! cosine is unitless in [-1, 1]; DPO rewards are beta-scaled log-probability ratios (nats);
//! rates and accuracies are fractions in [0, 1]; tokens are counts; wall time is seconds.
//!
//! The serialised form is a JSON object with sorted keys (serde_json's map), so the file is
//! byte-identical to what srlm wrote before these types existed. Reading is lenient: a
//! missing key or `null` is "no value", and non-finite values written by other tools
//! (`"NaN"`, `"inf"`, `"-inf"`, `"Infinity"`, `"-Infinity"`) are read as such.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IterationMetrics {
    /// 0 for M0's evaluation, i for iteration i (which trained M_i from M_{i-1}).
    pub iteration: u32,
    /// What iteration i did (none on line 0).
    #[serde(flatten)]
    pub training: Option<TrainingMetrics>,
    /// Held-out evaluation of the model this line ends with (M_i).
    #[serde(flatten)]
    pub eval: EvalMetrics,
    /// Wall time of this line's stages (seconds; replayed stages count their original time).
    #[serde(
        rename = "compute/wall_seconds",
        default,
        deserialize_with = "lenient::opt_f64"
    )]
    pub wall_seconds: Option<f64>,
    /// The strategy plugin's own metrics (`<plugin>/<name>`), and on reading any key this
    /// type does not know. A non-finite value is written as `null`.
    #[serde(flatten, deserialize_with = "lenient::strategy_only")]
    pub strategy: BTreeMap<String, StrategyValue>,
}

/// A plugin metric's value: a number, or none (`null`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StrategyValue(#[serde(deserialize_with = "lenient::opt_f64")] pub Option<f64>);

/// The key of [`TrainingMetrics::not_computed`] in `metrics.jsonl`.
pub const NOT_COMPUTED_KEY: &str = "diagnostics/not_computed";

/// A diagnostic an iteration did not compute, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotComputed {
    /// Its key in the line (`hidden_cosine`).
    pub metric: String,
    /// Why (a config setting, or the memory it would need).
    pub reason: String,
}

/// The training part of iteration i's line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingMetrics {
    /// Prompts in the iteration's chunk.
    pub prompts: usize,
    /// Prompts of the chunk skipped because they do not fit the model's context with
    /// `sampling.max_new_tokens` (named in the run's log; not in `prompts`).
    #[serde(
        rename = "prompts/skipped_too_long",
        default,
        skip_serializing_if = "is_zero"
    )]
    pub prompts_skipped: usize,
    /// Pairs the plugin returned with the same text on both sides, dropped by the host.
    #[serde(
        rename = "pairs/dropped_same_text",
        default,
        skip_serializing_if = "is_zero"
    )]
    pub pairs_dropped_same_text: usize,
    /// Preference pairs kept.
    pub pairs: usize,
    /// The pairs the strategy returned, when `max_pairs_per_iteration` kept fewer (absent
    /// otherwise).
    #[serde(
        rename = "pairs/before_subsampling",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub pairs_before_subsampling: Option<usize>,
    /// pairs / prompts.
    #[serde(deserialize_with = "lenient::f64")]
    pub pairs_per_prompt: f64,
    /// Mean judge score of the chosen responses (0–5).
    #[serde(
        rename = "score/chosen_mean",
        default,
        deserialize_with = "lenient::opt_f64"
    )]
    pub chosen_score: Option<f64>,
    /// Mean judge score of the rejected responses (0–5).
    #[serde(
        rename = "score/rejected_mean",
        default,
        deserialize_with = "lenient::opt_f64"
    )]
    pub rejected_score: Option<f64>,
    /// chosen mean − rejected mean (Wang et al. 2025, Sec. 2: shrinks under SR).
    #[serde(rename = "score/gap", default, deserialize_with = "lenient::opt_f64")]
    pub score_gap: Option<f64>,
    /// Mean cosine of the chosen and rejected responses' mean last-layer hidden states under
    /// M_{i-1} (Wang et al. 2025, Sec. 2: rises under SR).
    #[serde(default, deserialize_with = "lenient::opt_f64")]
    pub hidden_cosine: Option<f64>,
    /// Diagnostics of this iteration that were not computed, each with the reason (their
    /// values are `null`, never made up).
    #[serde(
        rename = "diagnostics/not_computed",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub not_computed: Vec<NotComputed>,
    /// DPO: mean over steps of TRL's metrics (none when no pairs were kept).
    #[serde(flatten)]
    pub dpo: DpoMeans,
    /// Fraction of judgments without a score (0–1).
    #[serde(
        rename = "judge/parse_failure_rate",
        default,
        deserialize_with = "lenient::opt_f64"
    )]
    pub judge_parse_failure_rate: Option<f64>,
    /// Mean score of every scored judgment (0–5).
    #[serde(rename = "judge/mean", default, deserialize_with = "lenient::opt_f64")]
    pub judge_mean: Option<f64>,
    /// Fraction of expected-mode judgments (0–1) whose score lacks a digit's probability
    /// because a server's top log-probs did not list it (counted as probability 0;
    /// `engine.top_logprobs` raises the list); absent without expected-mode judgments.
    #[serde(
        rename = "judge/digits_missing_rate",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_f64"
    )]
    pub judge_digits_missing_rate: Option<f64>,
    /// Spearman's rank correlation (−1…1) between the run's judge and `diagnostics.second_judge` over the iteration's samples both scored; absent without a second judge.
    #[serde(
        rename = "judge/second_agreement",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_f64"
    )]
    pub judge_second_agreement: Option<f64>,
    /// The second judge's fraction of samples without a score (0–1).
    #[serde(
        rename = "judge/second_parse_failure_rate",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_f64"
    )]
    pub judge_second_parse_failure_rate: Option<f64>,
    /// Reward-hacking diagnostic: fraction of the iteration's samples (all models) with text
    /// that speaks to the grader (score claims, judge-addressed text, fake markers; srlm-judge's
    /// `injection::findings`), 0–1; none without samples.
    #[serde(
        rename = "hacking/samples",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_f64"
    )]
    pub hacking_samples: Option<f64>,
    /// The same for the chosen responses of the kept pairs (what DPO reinforces), 0–1.
    #[serde(
        rename = "hacking/chosen",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_f64"
    )]
    pub hacking_chosen: Option<f64>,
    /// Mean length of the iteration's samples (all models), in generated tokens; none without samples.
    #[serde(
        rename = "length/samples_mean",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_f64"
    )]
    pub length_samples: Option<f64>,
    /// Mean length of the kept pairs' chosen responses (tokens): longer chosen than rejected is how DPO learns length (Park et al. 2024, arXiv 2403.19159).
    #[serde(
        rename = "length/chosen_mean",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_f64"
    )]
    pub length_chosen: Option<f64>,
    /// Mean length of the kept pairs' rejected responses (tokens).
    #[serde(
        rename = "length/rejected_mean",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_f64"
    )]
    pub length_rejected: Option<f64>,
    /// Fraction of the iteration's samples that loop (more than half of their word trigrams repeat; srlm-judge's `degeneration`), 0–1.
    #[serde(
        rename = "degenerate/samples",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_f64"
    )]
    pub degenerate_samples: Option<f64>,
    /// The same for the kept pairs' chosen responses, 0–1.
    #[serde(
        rename = "degenerate/chosen",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_f64"
    )]
    pub degenerate_chosen: Option<f64>,
    /// Tokens generated by sampling (all models: M_i, M0, temporary).
    #[serde(rename = "compute/tokens_sampled")]
    pub tokens_sampled: u64,
    /// Response tokens the judge scored.
    #[serde(rename = "compute/tokens_judged")]
    pub tokens_judged: u64,
    /// Tokens in DPO forward+backward passes (temporary models and M_i).
    #[serde(rename = "compute/tokens_trained")]
    pub tokens_trained: u64,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Means over the DPO steps of M_{i} = DPO(M_{i-1}, pairs), TRL's metric names under `dpo/`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DpoMeans {
    /// `loss`.
    #[serde(rename = "dpo/loss", default, deserialize_with = "lenient::opt_f64")]
    pub loss: Option<f64>,
    /// `rewards/chosen` (nats).
    #[serde(
        rename = "dpo/rewards/chosen",
        default,
        deserialize_with = "lenient::opt_f64"
    )]
    pub rewards_chosen: Option<f64>,
    /// `rewards/rejected` (nats).
    #[serde(
        rename = "dpo/rewards/rejected",
        default,
        deserialize_with = "lenient::opt_f64"
    )]
    pub rewards_rejected: Option<f64>,
    /// `rewards/margins` (nats).
    #[serde(
        rename = "dpo/rewards/margins",
        default,
        deserialize_with = "lenient::opt_f64"
    )]
    pub rewards_margins: Option<f64>,
    /// `rewards/accuracies` (fraction).
    #[serde(
        rename = "dpo/rewards/accuracies",
        default,
        deserialize_with = "lenient::opt_f64"
    )]
    pub rewards_accuracies: Option<f64>,
    /// `grad_norm` (before clipping).
    #[serde(
        rename = "dpo/grad_norm",
        default,
        deserialize_with = "lenient::opt_f64"
    )]
    pub grad_norm: Option<f64>,
    /// Optimizer steps.
    #[serde(rename = "dpo/steps", default)]
    pub steps: Option<u64>,
    /// `loss` averaged over the last epoch's steps: where training ended, next to the running mean over all steps (none with fewer than 2 epochs).
    #[serde(
        rename = "dpo/last_epoch/loss",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_f64"
    )]
    pub last_epoch_loss: Option<f64>,
    /// `rewards/margins` over the last epoch (nats).
    #[serde(
        rename = "dpo/last_epoch/rewards/margins",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_f64"
    )]
    pub last_epoch_margins: Option<f64>,
    /// `rewards/accuracies` over the last epoch (fraction).
    #[serde(
        rename = "dpo/last_epoch/rewards/accuracies",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_f64"
    )]
    pub last_epoch_accuracies: Option<f64>,
    /// Mean `logps/chosen` of the last epoch minus that of the first, on the same pairs (nats per response; none with one epoch). Negative with `rejected_change` also negative: the policy lowers both sides, the failure DPO-Positive addresses (Pal et al. 2024, arXiv 2402.13228, Sec. 3).
    #[serde(
        rename = "dpo/logps/chosen_change",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_f64"
    )]
    pub logps_chosen_change: Option<f64>,
    /// The same for `logps/rejected` (nats per response).
    #[serde(
        rename = "dpo/logps/rejected_change",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_f64"
    )]
    pub logps_rejected_change: Option<f64>,
}

/// Held-out evaluation of one model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// Mean judge score (0–5) of the answers the judge scored; none when it scored none.
    #[serde(rename = "eval/score", default, deserialize_with = "lenient::opt_f64")]
    pub score: Option<f64>,
    /// Held-out prompts answered.
    #[serde(rename = "eval/n", default)]
    pub n: usize,
    /// Fraction of answers without a score (0–1); none without prompts.
    #[serde(
        rename = "eval/parse_failure_rate",
        default,
        deserialize_with = "lenient::opt_f64"
    )]
    pub no_score_rate: Option<f64>,
    /// Fraction of the held-out answers that loop (srlm-judge's `degeneration`), 0–1; a rule judge scores such answers like any other.
    #[serde(
        rename = "eval/degenerate_rate",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_f64"
    )]
    pub degenerate: Option<f64>,
    /// Perplexity of the held-out answers under M0 (the initial model), token-weighted over
    /// all answers: `exp(−Σ log p / Σ tokens)` with each answer as the chat template renders
    /// it (end-of-turn token included) after its prompt ([`crate::eval::perplexity`]). The
    /// other half of the degeneration check: a model that drifts into text M0 finds unlikely
    /// (loops, broken words) raises it while a rule judge may score it as before. Iteration 0
    /// is M0's own greedy answers, the baseline. Unitless, ≥ 1; absent in runs made before
    /// srlm computed it, and when M0 is not held in-process: it is computed whenever the
    /// hidden-state diagnostic is (`diagnostics.hidden_states`).
    #[serde(
        rename = "eval/perplexity_under_m0",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_f64"
    )]
    pub perplexity_under_m0: Option<f64>,
    /// IFEval's standard accuracies over the held-out prompts that are IFEval records
    /// (`srlm_judge::IfevalAccuracy`, fractions 0–1, whatever the judge); every `ifeval_*`
    /// field is absent when no held-out prompt has IFEval instructions.
    #[serde(flatten)]
    pub ifeval: IfevalEvalMetrics,
    /// Accuracy on the out-of-distribution sets of `eval.ood` (absent when not evaluated).
    #[serde(flatten)]
    pub ood: OodEvalMetrics,
}

/// Accuracy of greedy answers on the out-of-distribution sets ([`crate::ood`]): the fraction
/// of prompts whose final answer the `answer` judge found right (0–1), and the prompts
/// answered. Each key is absent when its set was not evaluated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OodEvalMetrics {
    /// GSM8K: fraction of problems with the right final number.
    #[serde(
        rename = "eval/gsm8k/accuracy",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_f64"
    )]
    pub gsm8k: Option<f64>,
    /// GSM8K problems answered.
    #[serde(
        rename = "eval/gsm8k/n",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub gsm8k_n: Option<usize>,
    /// ARC-Challenge: fraction of questions with the right letter.
    #[serde(
        rename = "eval/arc_challenge/accuracy",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_f64"
    )]
    pub arc_challenge: Option<f64>,
    /// ARC-Challenge questions answered.
    #[serde(
        rename = "eval/arc_challenge/n",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub arc_challenge_n: Option<usize>,
}

impl OodEvalMetrics {
    /// Records `set`'s accuracy over `n` prompts.
    pub fn set(&mut self, set: crate::ood::OodSet, accuracy: Option<f64>, n: usize) {
        match set {
            crate::ood::OodSet::Gsm8k => (self.gsm8k, self.gsm8k_n) = (accuracy, Some(n)),
            crate::ood::OodSet::ArcChallenge => {
                (self.arc_challenge, self.arc_challenge_n) = (accuracy, Some(n))
            }
        }
    }
}

/// IFEval's own metrics of a held-out evaluation (Zhou et al. 2023, arXiv 2311.07911,
/// Sec. 3), under lm-evaluation-harness's names (`prompt_level_strict_acc`, …) after
/// `eval/ifeval/`, so they read against published numbers. Prompt-level: the fraction of
/// answers that follow every instruction of their prompt; instruction-level: the fraction of
/// all instructions followed. Strict checks the answer as written, loose also accepts any of
/// IFEval's 8 loose variants (first/last line removed, `*` removed). Each is absent (not
/// written) when no held-out prompt has IFEval instructions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct IfevalEvalMetrics {
    /// Held-out prompts with IFEval instructions (those the four fractions are over).
    #[serde(
        rename = "eval/ifeval/n",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub n: Option<usize>,
    /// Prompt-level strict accuracy (fraction 0–1).
    #[serde(
        rename = "eval/ifeval/prompt_level_strict_acc",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_f64"
    )]
    pub prompt_strict: Option<f64>,
    /// Instruction-level strict accuracy (fraction 0–1).
    #[serde(
        rename = "eval/ifeval/inst_level_strict_acc",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_f64"
    )]
    pub inst_strict: Option<f64>,
    /// Prompt-level loose accuracy (fraction 0–1).
    #[serde(
        rename = "eval/ifeval/prompt_level_loose_acc",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_f64"
    )]
    pub prompt_loose: Option<f64>,
    /// Instruction-level loose accuracy (fraction 0–1).
    #[serde(
        rename = "eval/ifeval/inst_level_loose_acc",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient::opt_f64"
    )]
    pub inst_loose: Option<f64>,
}

impl From<Option<&srlm_judge::IfevalAccuracy>> for IfevalEvalMetrics {
    fn from(a: Option<&srlm_judge::IfevalAccuracy>) -> Self {
        IfevalEvalMetrics {
            n: a.map(|a| a.prompts),
            prompt_strict: a.map(|a| a.prompt_level_strict_acc),
            inst_strict: a.map(|a| a.inst_level_strict_acc),
            prompt_loose: a.map(|a| a.prompt_level_loose_acc),
            inst_loose: a.map(|a| a.inst_level_loose_acc),
        }
    }
}

/// Every standard metric of a line, by the name it has in `metrics.jsonl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)] // each variant is documented by its key (see `Metric::key`)
pub enum Metric {
    Iteration,
    Prompts,
    PromptsSkipped,
    PairsDroppedSameText,
    Pairs,
    PairsBeforeSubsampling,
    PairsPerPrompt,
    ChosenScore,
    RejectedScore,
    ScoreGap,
    HiddenCosine,
    DpoLoss,
    DpoRewardsChosen,
    DpoRewardsRejected,
    DpoRewardsMargins,
    DpoRewardsAccuracies,
    DpoGradNorm,
    DpoSteps,
    DpoLastEpochLoss,
    DpoLastEpochMargins,
    DpoLastEpochAccuracies,
    DpoLogpsChosenChange,
    DpoLogpsRejectedChange,
    JudgeParseFailureRate,
    JudgeMean,
    JudgeDigitsMissingRate,
    JudgeSecondAgreement,
    JudgeSecondParseFailureRate,
    HackingSamples,
    HackingChosen,
    LengthSamples,
    LengthChosen,
    LengthRejected,
    DegenerateSamples,
    DegenerateChosen,
    TokensSampled,
    TokensJudged,
    TokensTrained,
    EvalScore,
    EvalN,
    EvalNoScoreRate,
    EvalDegenerate,
    EvalPerplexityUnderM0,
    EvalIfevalN,
    EvalIfevalPromptStrict,
    EvalIfevalInstStrict,
    EvalIfevalPromptLoose,
    EvalIfevalInstLoose,
    EvalGsm8kAccuracy,
    EvalGsm8kN,
    EvalArcChallengeAccuracy,
    EvalArcChallengeN,
    WallSeconds,
}

impl Metric {
    /// Every metric, in the order of the fields above.
    pub const ALL: [Metric; 53] = [
        Metric::Iteration,
        Metric::Prompts,
        Metric::PromptsSkipped,
        Metric::PairsDroppedSameText,
        Metric::Pairs,
        Metric::PairsBeforeSubsampling,
        Metric::PairsPerPrompt,
        Metric::ChosenScore,
        Metric::RejectedScore,
        Metric::ScoreGap,
        Metric::HiddenCosine,
        Metric::DpoLoss,
        Metric::DpoRewardsChosen,
        Metric::DpoRewardsRejected,
        Metric::DpoRewardsMargins,
        Metric::DpoRewardsAccuracies,
        Metric::DpoGradNorm,
        Metric::DpoSteps,
        Metric::DpoLastEpochLoss,
        Metric::DpoLastEpochMargins,
        Metric::DpoLastEpochAccuracies,
        Metric::DpoLogpsChosenChange,
        Metric::DpoLogpsRejectedChange,
        Metric::JudgeParseFailureRate,
        Metric::JudgeMean,
        Metric::JudgeDigitsMissingRate,
        Metric::JudgeSecondAgreement,
        Metric::JudgeSecondParseFailureRate,
        Metric::HackingSamples,
        Metric::HackingChosen,
        Metric::LengthSamples,
        Metric::LengthChosen,
        Metric::LengthRejected,
        Metric::DegenerateSamples,
        Metric::DegenerateChosen,
        Metric::TokensSampled,
        Metric::TokensJudged,
        Metric::TokensTrained,
        Metric::EvalScore,
        Metric::EvalN,
        Metric::EvalNoScoreRate,
        Metric::EvalDegenerate,
        Metric::EvalPerplexityUnderM0,
        Metric::EvalIfevalN,
        Metric::EvalIfevalPromptStrict,
        Metric::EvalIfevalInstStrict,
        Metric::EvalIfevalPromptLoose,
        Metric::EvalIfevalInstLoose,
        Metric::EvalGsm8kAccuracy,
        Metric::EvalGsm8kN,
        Metric::EvalArcChallengeAccuracy,
        Metric::EvalArcChallengeN,
        Metric::WallSeconds,
    ];

    /// The key in `metrics.jsonl`.
    pub fn key(self) -> &'static str {
        match self {
            Metric::Iteration => "iteration",
            Metric::Prompts => "prompts",
            Metric::PromptsSkipped => "prompts/skipped_too_long",
            Metric::PairsDroppedSameText => "pairs/dropped_same_text",
            Metric::Pairs => "pairs",
            Metric::PairsBeforeSubsampling => "pairs/before_subsampling",
            Metric::PairsPerPrompt => "pairs_per_prompt",
            Metric::ChosenScore => "score/chosen_mean",
            Metric::RejectedScore => "score/rejected_mean",
            Metric::ScoreGap => "score/gap",
            Metric::HiddenCosine => "hidden_cosine",
            Metric::DpoLoss => "dpo/loss",
            Metric::DpoRewardsChosen => "dpo/rewards/chosen",
            Metric::DpoRewardsRejected => "dpo/rewards/rejected",
            Metric::DpoRewardsMargins => "dpo/rewards/margins",
            Metric::DpoRewardsAccuracies => "dpo/rewards/accuracies",
            Metric::DpoGradNorm => "dpo/grad_norm",
            Metric::DpoSteps => "dpo/steps",
            Metric::DpoLastEpochLoss => "dpo/last_epoch/loss",
            Metric::DpoLastEpochMargins => "dpo/last_epoch/rewards/margins",
            Metric::DpoLastEpochAccuracies => "dpo/last_epoch/rewards/accuracies",
            Metric::DpoLogpsChosenChange => "dpo/logps/chosen_change",
            Metric::DpoLogpsRejectedChange => "dpo/logps/rejected_change",
            Metric::JudgeParseFailureRate => "judge/parse_failure_rate",
            Metric::JudgeMean => "judge/mean",
            Metric::JudgeDigitsMissingRate => "judge/digits_missing_rate",
            Metric::JudgeSecondAgreement => "judge/second_agreement",
            Metric::JudgeSecondParseFailureRate => "judge/second_parse_failure_rate",
            Metric::HackingSamples => "hacking/samples",
            Metric::HackingChosen => "hacking/chosen",
            Metric::LengthSamples => "length/samples_mean",
            Metric::LengthChosen => "length/chosen_mean",
            Metric::LengthRejected => "length/rejected_mean",
            Metric::DegenerateSamples => "degenerate/samples",
            Metric::DegenerateChosen => "degenerate/chosen",
            Metric::TokensSampled => "compute/tokens_sampled",
            Metric::TokensJudged => "compute/tokens_judged",
            Metric::TokensTrained => "compute/tokens_trained",
            Metric::EvalScore => "eval/score",
            Metric::EvalN => "eval/n",
            Metric::EvalNoScoreRate => "eval/parse_failure_rate",
            Metric::EvalDegenerate => "eval/degenerate_rate",
            Metric::EvalPerplexityUnderM0 => "eval/perplexity_under_m0",
            Metric::EvalIfevalN => "eval/ifeval/n",
            Metric::EvalIfevalPromptStrict => "eval/ifeval/prompt_level_strict_acc",
            Metric::EvalIfevalInstStrict => "eval/ifeval/inst_level_strict_acc",
            Metric::EvalIfevalPromptLoose => "eval/ifeval/prompt_level_loose_acc",
            Metric::EvalIfevalInstLoose => "eval/ifeval/inst_level_loose_acc",
            Metric::EvalGsm8kAccuracy => "eval/gsm8k/accuracy",
            Metric::EvalGsm8kN => "eval/gsm8k/n",
            Metric::EvalArcChallengeAccuracy => "eval/arc_challenge/accuracy",
            Metric::EvalArcChallengeN => "eval/arc_challenge/n",
            Metric::WallSeconds => "compute/wall_seconds",
        }
    }

    /// The metric whose key is `key`, if it is a standard one.
    pub fn from_key(key: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.key() == key)
    }
}

impl IterationMetrics {
    /// The value of a standard metric (none when absent; counts as numbers).
    pub fn get(&self, m: Metric) -> Option<f64> {
        let t = self.training.as_ref();
        let d = t.map(|t| &t.dpo);
        match m {
            Metric::Iteration => Some(f64::from(self.iteration)),
            Metric::Prompts => t.map(|t| t.prompts as f64),
            Metric::PromptsSkipped => t
                .filter(|t| t.prompts_skipped > 0)
                .map(|t| t.prompts_skipped as f64),
            Metric::PairsDroppedSameText => t
                .filter(|t| t.pairs_dropped_same_text > 0)
                .map(|t| t.pairs_dropped_same_text as f64),
            Metric::Pairs => t.map(|t| t.pairs as f64),
            Metric::PairsBeforeSubsampling => {
                t.and_then(|t| t.pairs_before_subsampling).map(|n| n as f64)
            }
            Metric::PairsPerPrompt => t.map(|t| t.pairs_per_prompt),
            Metric::ChosenScore => t.and_then(|t| t.chosen_score),
            Metric::RejectedScore => t.and_then(|t| t.rejected_score),
            Metric::ScoreGap => t.and_then(|t| t.score_gap),
            Metric::HiddenCosine => t.and_then(|t| t.hidden_cosine),
            Metric::DpoLoss => d.and_then(|d| d.loss),
            Metric::DpoRewardsChosen => d.and_then(|d| d.rewards_chosen),
            Metric::DpoRewardsRejected => d.and_then(|d| d.rewards_rejected),
            Metric::DpoRewardsMargins => d.and_then(|d| d.rewards_margins),
            Metric::DpoRewardsAccuracies => d.and_then(|d| d.rewards_accuracies),
            Metric::DpoGradNorm => d.and_then(|d| d.grad_norm),
            Metric::DpoSteps => d.and_then(|d| d.steps).map(|s| s as f64),
            Metric::DpoLastEpochLoss => d.and_then(|d| d.last_epoch_loss),
            Metric::DpoLastEpochMargins => d.and_then(|d| d.last_epoch_margins),
            Metric::DpoLastEpochAccuracies => d.and_then(|d| d.last_epoch_accuracies),
            Metric::DpoLogpsChosenChange => d.and_then(|d| d.logps_chosen_change),
            Metric::DpoLogpsRejectedChange => d.and_then(|d| d.logps_rejected_change),
            Metric::JudgeParseFailureRate => t.and_then(|t| t.judge_parse_failure_rate),
            Metric::JudgeMean => t.and_then(|t| t.judge_mean),
            Metric::JudgeDigitsMissingRate => t.and_then(|t| t.judge_digits_missing_rate),
            Metric::JudgeSecondAgreement => t.and_then(|t| t.judge_second_agreement),
            Metric::JudgeSecondParseFailureRate => {
                t.and_then(|t| t.judge_second_parse_failure_rate)
            }
            Metric::HackingSamples => t.and_then(|t| t.hacking_samples),
            Metric::HackingChosen => t.and_then(|t| t.hacking_chosen),
            Metric::LengthSamples => t.and_then(|t| t.length_samples),
            Metric::LengthChosen => t.and_then(|t| t.length_chosen),
            Metric::LengthRejected => t.and_then(|t| t.length_rejected),
            Metric::DegenerateSamples => t.and_then(|t| t.degenerate_samples),
            Metric::DegenerateChosen => t.and_then(|t| t.degenerate_chosen),
            Metric::TokensSampled => t.map(|t| t.tokens_sampled as f64),
            Metric::TokensJudged => t.map(|t| t.tokens_judged as f64),
            Metric::TokensTrained => t.map(|t| t.tokens_trained as f64),
            Metric::EvalScore => self.eval.score,
            Metric::EvalN => Some(self.eval.n as f64),
            Metric::EvalNoScoreRate => self.eval.no_score_rate,
            Metric::EvalDegenerate => self.eval.degenerate,
            Metric::EvalPerplexityUnderM0 => self.eval.perplexity_under_m0,
            Metric::EvalIfevalN => self.eval.ifeval.n.map(|n| n as f64),
            Metric::EvalIfevalPromptStrict => self.eval.ifeval.prompt_strict,
            Metric::EvalIfevalInstStrict => self.eval.ifeval.inst_strict,
            Metric::EvalIfevalPromptLoose => self.eval.ifeval.prompt_loose,
            Metric::EvalIfevalInstLoose => self.eval.ifeval.inst_loose,
            Metric::EvalGsm8kAccuracy => self.eval.ood.gsm8k,
            Metric::EvalGsm8kN => self.eval.ood.gsm8k_n.map(|n| n as f64),
            Metric::EvalArcChallengeAccuracy => self.eval.ood.arc_challenge,
            Metric::EvalArcChallengeN => self.eval.ood.arc_challenge_n.map(|n| n as f64),
            Metric::WallSeconds => self.wall_seconds,
        }
    }

    /// The line as the JSON object written to `metrics.jsonl` (sorted keys). Plugin metrics
    /// never replace a standard key: one that collides is dropped.
    pub fn to_json(&self) -> serde_json::Value {
        let mut clean = self.clone();
        clean.strategy.retain(|k, _| Metric::from_key(k).is_none());
        serde_json::to_value(&clean).expect("metrics serialise")
    }
}

/// Lenient number readers for metrics files (see the module doc).
pub(crate) mod lenient {
    use super::*;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        N(f64),
        S(String),
    }

    fn non_finite(s: &str) -> Option<f64> {
        match s.trim() {
            "NaN" | "nan" => Some(f64::NAN),
            "inf" | "+inf" | "Infinity" | "+Infinity" => Some(f64::INFINITY),
            "-inf" | "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        }
    }

    /// A number, `null`, or a non-finite string.
    pub fn opt_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        match Option::<Num>::deserialize(d)? {
            None => Ok(None),
            Some(Num::N(x)) => Ok(Some(x)),
            Some(Num::S(s)) => non_finite(&s).map(Some).ok_or_else(|| {
                serde::de::Error::custom(format!("expected a number or null, got \"{s}\""))
            }),
        }
    }

    /// The keys left after the typed fields: those that are not standard metrics (serde hands
    /// a flattened map every key, also those a flattened struct took).
    pub fn strategy_only<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<String, StrategyValue>, D::Error> {
        let all = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
        all.into_iter()
            .filter(|(k, _)| Metric::from_key(k).is_none() && k != super::NOT_COMPUTED_KEY)
            .map(|(k, v)| {
                StrategyValue::deserialize(v)
                    .map(|s| (k, s))
                    .map_err(serde::de::Error::custom)
            })
            .collect()
    }

    /// A number or a non-finite string (not null).
    pub fn f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        opt_f64(d)?.ok_or_else(|| serde::de::Error::custom("expected a number, got null"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two kinds of line exactly as srlm wrote them before this type (keys sorted, nulls
    /// kept on iteration lines), read and written back byte for byte.
    #[test]
    fn round_trips_lines_byte_for_byte() {
        let lines = [
            r#"{"compute/wall_seconds":12.5,"eval/n":24,"eval/parse_failure_rate":0.0,"eval/score":1.0416666666666667,"iteration":0}"#,
            r#"{"compute/tokens_judged":5000,"compute/tokens_sampled":6000,"compute/tokens_trained":7000,"compute/wall_seconds":99.25,"dpo/grad_norm":3.5,"dpo/loss":0.69,"dpo/rewards/accuracies":0.8,"dpo/rewards/chosen":0.1,"dpo/rewards/margins":0.97,"dpo/rewards/rejected":-0.87,"dpo/steps":4,"eval/n":24,"eval/parse_failure_rate":0.0,"eval/score":0.729,"hidden_cosine":0.91,"iteration":1,"judge/mean":2.5,"judge/parse_failure_rate":0.0,"pairs":9,"pairs_per_prompt":0.5625,"prompts":16,"score/chosen_mean":4.0,"score/gap":2.5,"score/rejected_mean":1.5,"temporal/future_upgrades":3.0}"#,
            r#"{"compute/tokens_judged":0,"compute/tokens_sampled":10,"compute/tokens_trained":0,"compute/wall_seconds":1.0,"dpo/grad_norm":null,"dpo/loss":null,"dpo/rewards/accuracies":null,"dpo/rewards/chosen":null,"dpo/rewards/margins":null,"dpo/rewards/rejected":null,"dpo/steps":null,"eval/n":0,"eval/parse_failure_rate":null,"eval/score":null,"hidden_cosine":null,"iteration":2,"judge/mean":null,"judge/parse_failure_rate":null,"pairs":0,"pairs_per_prompt":0.0,"prompts":4,"score/chosen_mean":null,"score/gap":null,"score/rejected_mean":null}"#,
            // M0 on IFEval prompts: IFEval's own accuracies next to the 0–5 score.
            r#"{"compute/wall_seconds":12.5,"eval/ifeval/inst_level_loose_acc":0.8,"eval/ifeval/inst_level_strict_acc":0.6,"eval/ifeval/n":3,"eval/ifeval/prompt_level_loose_acc":0.6666666666666666,"eval/ifeval/prompt_level_strict_acc":0.3333333333333333,"eval/n":3,"eval/parse_failure_rate":0.0,"eval/score":2.5,"iteration":0}"#,
        ];
        for line in lines {
            let m: IterationMetrics = serde_json::from_str(line).unwrap();
            assert_eq!(m.to_json().to_string(), line);
        }
        let ifeval: IterationMetrics = serde_json::from_str(lines[3]).unwrap();
        assert_eq!(
            (
                ifeval.get(Metric::EvalIfevalN),
                ifeval.get(Metric::EvalIfevalPromptStrict),
                ifeval.get(Metric::EvalIfevalInstStrict),
                ifeval.get(Metric::EvalIfevalPromptLoose),
                ifeval.get(Metric::EvalIfevalInstLoose),
            ),
            (
                Some(3.0),
                Some(1.0 / 3.0),
                Some(0.6),
                Some(2.0 / 3.0),
                Some(0.8)
            )
        );
        assert!(ifeval.strategy.is_empty(), "{:?}", ifeval.strategy);
        // Without IFEval prompts the keys are absent, not null.
        let m0: IterationMetrics = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(m0.eval.ifeval, IfevalEvalMetrics::default());
        assert_eq!(m0.get(Metric::EvalIfevalPromptStrict), None);
        let m: IterationMetrics = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(m.get(Metric::ScoreGap), Some(2.5));
        assert_eq!(m.get(Metric::DpoSteps), Some(4.0));
        assert_eq!(m.get(Metric::Pairs), Some(9.0));
        assert_eq!(
            m.strategy["temporal/future_upgrades"],
            StrategyValue(Some(3.0))
        );
        assert_eq!(m.strategy.len(), 1, "standard keys are not plugin metrics");
        let m0: IterationMetrics = serde_json::from_str(lines[0]).unwrap();
        assert_eq!((m0.training.is_none(), m0.get(Metric::Pairs)), (true, None));
    }

    #[test]
    fn keys_are_the_serialised_names_and_plugins_cannot_shadow_them() {
        let m = IterationMetrics {
            iteration: 3,
            // The keys left out when empty, set so that every key appears.
            training: Some(TrainingMetrics {
                prompts_skipped: 1,
                pairs_dropped_same_text: 1,
                pairs_before_subsampling: Some(12),
                hacking_samples: Some(0.5),
                hacking_chosen: Some(0.25),
                judge_digits_missing_rate: Some(0.125),
                judge_second_agreement: Some(0.3),
                judge_second_parse_failure_rate: Some(0.5),
                length_samples: Some(40.0),
                length_chosen: Some(50.0),
                length_rejected: Some(30.0),
                degenerate_samples: Some(0.1),
                degenerate_chosen: Some(0.0),
                dpo: DpoMeans {
                    last_epoch_loss: Some(0.5),
                    last_epoch_margins: Some(0.4),
                    last_epoch_accuracies: Some(0.75),
                    logps_chosen_change: Some(-1.0),
                    logps_rejected_change: Some(-3.0),
                    ..DpoMeans::default()
                },
                ..TrainingMetrics::default()
            }),
            eval: EvalMetrics {
                degenerate: Some(0.0),
                perplexity_under_m0: Some(3.5),
                ood: OodEvalMetrics {
                    gsm8k: Some(0.02),
                    gsm8k_n: Some(100),
                    arc_challenge: Some(0.25),
                    arc_challenge_n: Some(100),
                },
                ifeval: IfevalEvalMetrics {
                    n: Some(3),
                    prompt_strict: Some(1.0 / 3.0),
                    inst_strict: Some(0.6),
                    prompt_loose: Some(2.0 / 3.0),
                    inst_loose: Some(0.8),
                },
                ..EvalMetrics::default()
            },
            strategy: [("pairs".to_string(), StrategyValue(Some(99.0)))].into(),
            ..Default::default()
        };
        let v = m.to_json();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        for metric in Metric::ALL {
            assert!(keys.iter().any(|k| *k == metric.key()), "{}", metric.key());
            assert_eq!(Metric::from_key(metric.key()), Some(metric));
        }
        assert_eq!(keys.len(), Metric::ALL.len());
        assert_eq!(v["pairs"], 0);
    }

    #[test]
    fn lenient_reading() {
        let m: IterationMetrics = serde_json::from_str(
            r#"{"iteration":1,"prompts":2,"pairs":1,"pairs_per_prompt":0.5,"score/gap":"NaN","hidden_cosine":"-inf","compute/tokens_sampled":1,"compute/tokens_judged":1,"compute/tokens_trained":1,"x/y":"inf"}"#,
        )
        .unwrap();
        assert!(m.get(Metric::ScoreGap).unwrap().is_nan());
        assert_eq!(m.get(Metric::HiddenCosine), Some(f64::NEG_INFINITY));
        assert_eq!(m.strategy["x/y"], StrategyValue(Some(f64::INFINITY)));
        let err =
            serde_json::from_str::<IterationMetrics>(r#"{"iteration":1,"eval/score":"high"}"#)
                .unwrap_err();
        assert!(err.to_string().contains("\"high\""), "{err}");
    }
}
