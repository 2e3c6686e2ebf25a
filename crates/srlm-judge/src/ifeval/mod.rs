//! The IFEval rule judge (Zhou et al. 2023, "Instruction-Following Evaluation for Large
//! Language Models", arXiv 2311.07911).
//!
//! A record carries `instruction_id_list` and `kwargs` (IFEval's format) in its metadata; each
//! instruction is checked *strictly* (on the response as written) and *loosely* (Sec. 2.2: on
//! any of 8 variants — the response, without its first line, without its last line, without
//! both, and each of these with every `*` removed). The score is 5 × the fraction of
//! instructions followed strictly, so it lives on the same 0–5 scale as LLM judges.
//!
//! [`IfevalAccuracy`] aggregates the verdicts of many responses into IFEval's own four
//! numbers (prompt- and instruction-level accuracy, strict and loose), the ones papers report.

mod instructions;
mod lang;
mod text;

pub use instructions::{Instruction, Pattern, Relation, INSTRUCTION_IDS};
pub use lang::{detect_language, LANGDETECT_DATA};
pub use text::{
    count_sections, count_sentences, count_words, py_islower, py_isupper, split_sentences,
    word_tokens,
};

use crate::{Judge, JudgeError, JudgeItem, Verdict};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The strict and loose verdicts on one instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstructionResult {
    /// The IFEval instruction id, e.g. `change_case:english_lowercase`.
    pub id: String,
    /// Followed by the response as written.
    pub strict: bool,
    /// Followed by at least one of the 8 loose variants.
    pub loose: bool,
}

/// The 8 response variants of IFEval's loose accuracy (Zhou et al. 2023, Sec. 2.2), in the
/// reference's order: the response, it with `*` removed, without the first line, without the
/// last line, without both, and the last three with `*` removed. Lines are split at `\n`; the
/// shortened variants are trimmed.
pub fn loose_variants(response: &str) -> [String; 8] {
    let lines: Vec<&str> = response.split('\n').collect();
    let n = lines.len();
    let join = |a: usize, b: usize| {
        if a < b {
            lines[a..b].join("\n").trim().to_string()
        } else {
            String::new()
        }
    };
    let first = join(1, n);
    let last = join(0, n.saturating_sub(1));
    let both = join(1, n.saturating_sub(1));
    let nostar = |s: &str| s.replace('*', "");
    [
        response.to_string(),
        nostar(response),
        first.clone(),
        last.clone(),
        both.clone(),
        nostar(&first),
        nostar(&last),
        nostar(&both),
    ]
}

/// IFEval's four standard accuracies over a set of responses, as Google's reference computes
/// them (`evaluation_lib.print_report`, run once on the strict and once on the loose verdicts):
///
/// - prompt-level accuracy: the fraction of responses that follow *every* one of their
///   instructions;
/// - instruction-level accuracy: the fraction of all instructions, pooled over the responses,
///   that are followed (a micro average: a prompt with 3 instructions weighs 3).
///
/// "Strict" uses [`InstructionResult::strict`], "loose" [`InstructionResult::loose`]. The
/// field names after the counts are those of lm-evaluation-harness's `ifeval` task (and the
/// Open LLM Leaderboard), so the numbers read against published ones. Fractions are in [0, 1].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IfevalAccuracy {
    /// Responses counted (those with at least one instruction).
    pub prompts: usize,
    /// Instructions counted, over all those responses.
    pub instructions: usize,
    /// Responses that follow all their instructions strictly.
    pub prompts_followed_strict: usize,
    /// Responses that follow all their instructions loosely.
    pub prompts_followed_loose: usize,
    /// Instructions followed strictly.
    pub instructions_followed_strict: usize,
    /// Instructions followed loosely.
    pub instructions_followed_loose: usize,
    /// `prompts_followed_strict / prompts`.
    pub prompt_level_strict_acc: f64,
    /// `instructions_followed_strict / instructions`.
    pub inst_level_strict_acc: f64,
    /// `prompts_followed_loose / prompts`.
    pub prompt_level_loose_acc: f64,
    /// `instructions_followed_loose / instructions`.
    pub inst_level_loose_acc: f64,
}

impl IfevalAccuracy {
    /// Aggregates the per-instruction verdicts of each response ([`evaluate`]'s output, one
    /// slice per response). A response without instructions is left out (Google's reference
    /// would count it as followed, `all([])`, but IFEval has no such prompt and srlm's judge
    /// gives it no score); none when no response has an instruction.
    pub fn from_results<'a, I>(responses: I) -> Option<IfevalAccuracy>
    where
        I: IntoIterator<Item = &'a [InstructionResult]>,
    {
        let (mut p, mut n, mut ps, mut pl, mut is, mut il) = (0, 0, 0, 0, 0, 0);
        for results in responses {
            if results.is_empty() {
                continue;
            }
            let strict = results.iter().filter(|r| r.strict).count();
            let loose = results.iter().filter(|r| r.loose).count();
            p += 1;
            n += results.len();
            ps += usize::from(strict == results.len());
            pl += usize::from(loose == results.len());
            is += strict;
            il += loose;
        }
        (p > 0).then(|| IfevalAccuracy {
            prompts: p,
            instructions: n,
            prompts_followed_strict: ps,
            prompts_followed_loose: pl,
            instructions_followed_strict: is,
            instructions_followed_loose: il,
            prompt_level_strict_acc: ps as f64 / p as f64,
            inst_level_strict_acc: is as f64 / n as f64,
            prompt_level_loose_acc: pl as f64 / p as f64,
            inst_level_loose_acc: il as f64 / n as f64,
        })
    }
}

/// Checks every instruction of one record strictly and loosely.
///
/// A blank response (empty or whitespace) follows nothing, as in the reference evaluation
/// (`response.strip() and check_following(response)`); the same holds for blank loose
/// variants.
///
/// # Errors
/// [`JudgeError::Data`] when a language-dependent instruction cannot get `langdetect`'s
/// profiles (see [`detect_language`]).
pub fn evaluate(
    response: &str,
    instructions: &[(String, Instruction)],
) -> Result<Vec<InstructionResult>, JudgeError> {
    let variants = loose_variants(response);
    instructions
        .iter()
        .map(|(id, ins)| {
            let follows = |r: &str| Ok::<_, JudgeError>(!r.trim().is_empty() && ins.check(r)?);
            let strict = follows(response)?;
            let mut loose = strict;
            for v in &variants {
                if loose {
                    break;
                }
                loose = follows(v)?;
            }
            Ok(InstructionResult {
                id: id.clone(),
                strict,
                loose,
            })
        })
        .collect()
}

/// Reads `instruction_id_list` and `kwargs` from a record's metadata and parses them.
///
/// # Errors
/// [`JudgeError::Record`] naming `at` and the field: a missing or mistyped
/// `instruction_id_list`/`kwargs`, lists of different lengths, an unknown instruction id, or
/// malformed kwargs (see [`Instruction::parse`]).
pub fn parse_instructions(
    metadata: &Value,
    at: &str,
) -> Result<Vec<(String, Instruction)>, JudgeError> {
    let ids = metadata.get("instruction_id_list").ok_or_else(|| {
        JudgeError::record(
            at,
            "instruction_id_list",
            "missing (the ifeval judge needs IFEval records)",
        )
    })?;
    let ids: Vec<&str> = ids
        .as_array()
        .and_then(|a| a.iter().map(Value::as_str).collect::<Option<Vec<_>>>())
        .ok_or_else(|| {
            JudgeError::record(
                at,
                "instruction_id_list",
                format!("expected a list of strings, got {ids}"),
            )
        })?;
    let empty = Vec::new();
    let kwargs = match metadata.get("kwargs") {
        None | Some(Value::Null) => &empty,
        Some(Value::Array(a)) => a,
        Some(other) => {
            return Err(JudgeError::record(
                at,
                "kwargs",
                format!("expected a list of objects, got {other}"),
            ))
        }
    };
    if !kwargs.is_empty() && kwargs.len() != ids.len() {
        return Err(JudgeError::record(
            at,
            "kwargs",
            format!(
                "has {} entries but instruction_id_list has {}",
                kwargs.len(),
                ids.len()
            ),
        ));
    }
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let kw = kwargs.get(i).unwrap_or(&Value::Null);
            Instruction::parse(id, kw, at, i).map(|ins| (id.to_string(), ins))
        })
        .collect()
}

/// The strict and loose verdicts of `response` on the instructions in `metadata`, when it is
/// an IFEval record; none when `metadata` has no `instruction_id_list` (or it is `null`).
/// `at` names the record in errors.
///
/// # Errors
/// See [`parse_instructions`] and [`evaluate`].
pub fn check_record(
    metadata: &Value,
    response: &str,
    at: &str,
) -> Result<Option<Vec<InstructionResult>>, JudgeError> {
    if metadata
        .get("instruction_id_list")
        .is_none_or(Value::is_null)
    {
        return Ok(None);
    }
    let instructions = parse_instructions(metadata, at)?;
    evaluate(response, &instructions).map(Some)
}

/// The IFEval rule judge: score = 5 × (instructions followed strictly) / (instructions).
///
/// Construct with [`IfevalJudge::new`] (or `IfevalJudge::default()`). Items must carry IFEval's
/// `instruction_id_list` and `kwargs` in [`JudgeItem::metadata`]. Details per item:
/// `{"judge": "ifeval", "instructions": [{"id", "strict", "loose"}…], "strict_fraction",
/// "loose_fraction", "loose_score", "follow_all_strict", "follow_all_loose"}`.
/// A record with an empty instruction list gets no score (there is nothing to follow).
/// An empty response is judged (every instruction unfollowed: score 0).
#[derive(Debug, Clone, Default)]
pub struct IfevalJudge {
    _private: (),
}

impl IfevalJudge {
    /// The IFEval judge.
    pub fn new() -> Self {
        IfevalJudge::default()
    }

    /// Judges one item; `index` names it in errors when it has no origin.
    ///
    /// # Errors
    /// See [`parse_instructions`] and [`evaluate`].
    pub fn judge_item(&self, item: &JudgeItem, index: usize) -> Result<Verdict, JudgeError> {
        let at = item.at(index);
        let instructions = parse_instructions(&item.metadata, &at)?;
        let results = evaluate(&item.response, &instructions)?;
        let n = results.len();
        let strict = results.iter().filter(|r| r.strict).count();
        let loose = results.iter().filter(|r| r.loose).count();
        let frac = |k: usize| {
            if n == 0 {
                None
            } else {
                Some(k as f64 / n as f64)
            }
        };
        let details = json!({
            "judge": "ifeval",
            "instructions": results,
            "strict_fraction": frac(strict),
            "loose_fraction": frac(loose),
            "loose_score": frac(loose).map(|f| 5.0 * f),
            "follow_all_strict": n > 0 && strict == n,
            "follow_all_loose": n > 0 && loose == n,
        });
        Ok(Verdict {
            score: frac(strict).map(|f| 5.0 * f),
            details,
        })
    }
}

impl Judge for IfevalJudge {
    fn name(&self) -> String {
        "ifeval".to_string()
    }

    fn judge_batch(&self, items: &[JudgeItem]) -> Result<Vec<Verdict>, JudgeError> {
        items
            .iter()
            .enumerate()
            .map(|(i, it)| self.judge_item(it, i))
            .collect()
    }
}

#[cfg(test)]
mod tests;
