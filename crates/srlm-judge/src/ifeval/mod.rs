//! The IFEval rule judge (Zhou et al. 2023, "Instruction-Following Evaluation for Large
//! Language Models", arXiv 2311.07911).
//!
//! A record carries `instruction_id_list` and `kwargs` (IFEval's format) in its metadata; each
//! instruction is checked *strictly* (on the response as written) and *loosely* (Sec. 2.2: on
//! any of 8 variants — the response, without its first line, without its last line, without
//! both, and each of these with every `*` removed). The score is 5 × the fraction of
//! instructions followed strictly, so it lives on the same 0–5 scale as LLM judges.

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
