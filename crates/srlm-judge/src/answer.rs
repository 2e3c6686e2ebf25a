//! The `answer` rule judge: exact match of a response's final answer with the record's
//! reference answer, for out-of-distribution sets with one right answer — GSM8K-style math
//! (a number) and ARC-style multiple choice (a letter). Score 5 when the answer matches, 0
//! when it does not or none can be found (a wrong or missing answer is a measured 0, not a
//! missing score).
//!
//! Records carry, in [`JudgeItem::metadata`]: `answer` (the reference, a string or number)
//! and `answer_format`, `"number"` or `"choice"` (with `labels`, the allowed letters).
//!
//! Extraction follows lm-evaluation-harness's GSM8K filters (Gao et al., `gsm8k-cot`:
//! "strict-match" reads `The answer is N` / `#### N`, "flexible-extract" the last number):
//! the number right after the last `answer is`, `answer:` or `####` that has one, else the
//! last number in the response. Numbers are compared by value after removing thousands
//! separators and a leading `$` (`2,125` = `2125.0`). A choice is the letter after the last
//! `answer is` / `answer:` (upper case, optionally in parentheses or bold), else a letter that
//! opens the response marked as a letter (`C`, `C.`, `(C)`, `C)`, `C:`); a letter elsewhere in
//! the text, one followed by a lower-case word ("A planet …", "the answer is a rock"), and a
//! response that lists two or more of the options (an echo of the question) are not read as
//! an answer.

use regex::Regex;
use serde_json::{json, Value};
use std::sync::LazyLock;

use crate::{Judge, JudgeError, JudgeItem, Verdict};

/// What a record's answer is.
#[derive(Debug, Clone, PartialEq)]
enum Expected {
    Number(f64),
    Choice { answer: String, labels: Vec<String> },
}

static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"-?\$?\d[\d,]*(?:\.\d+)?").expect("regex"));
/// A cue and the number right after it (spaces, `:`, `*` allowed between).
static NUMBER_AFTER_CUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i:answer\s*(?:is|:)|####)[\s:*]*(-?\$?\d[\d,]*(?:\.\d+)?)").expect("regex")
});
/// A cue and the option letter right after it: upper case (`a` is a word) or any case in
/// parentheses, optionally bold.
static CHOICE_AFTER_CUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i:answer\s*(?:is|:))[\s*]*(?i:option\s*)?(?:\(([A-Za-z])\)|([A-Z]))\**(?:[\s.,;:)]|$)",
    )
    .expect("regex")
});
/// A line that starts like an option of a list (`B. …`, `(C) …`).
static OPTION_LINE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)^\s*\(?([A-Z])[.)]").expect("regex"));
static CHOICE_FIRST: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\s*(?:\(([A-Z])\)|([A-Z])(?:[.):,]|\s*$))").expect("regex"));

/// A number's value with thousands separators and a leading `$` removed.
fn number_value(text: &str) -> Option<f64> {
    text.replace([',', '$'], "")
        .trim_end_matches('.')
        .parse()
        .ok()
}

/// The response's final number (see the module doc), as written.
pub fn extract_number(response: &str) -> Option<String> {
    if let Some(c) = NUMBER_AFTER_CUE.captures_iter(response).last() {
        return Some(c[1].to_string());
    }
    NUMBER
        .find_iter(response)
        .last()
        .map(|m| m.as_str().to_string())
}

/// The response's chosen letter among `labels` (see the module doc), upper-cased.
pub fn extract_choice(response: &str, labels: &[String]) -> Option<String> {
    let known = |c: &str| {
        let c = c.to_uppercase();
        labels.contains(&c).then_some(c)
    };
    // A letter followed by a lower-case word starts a sentence ("A rock"), it is no choice.
    let cued = CHOICE_AFTER_CUE.captures_iter(response).filter(|c| {
        let whole = c.get(0).expect("match");
        let rest = response[whole.end()..].trim_start_matches(' ');
        !(whole.as_str().ends_with(' ') && rest.starts_with(char::is_lowercase))
    });
    let letter = |c: &regex::Captures<'_>| {
        c.get(1)
            .or_else(|| c.get(2))
            .map(|m| m.as_str().to_string())
    };
    if let Some(c) = cued.last().and_then(|c| letter(&c)).and_then(|l| known(&l)) {
        return Some(c);
    }
    // An echoed list of the options ("A. …\nB. …") chooses nothing.
    let mut listed: Vec<&str> = OPTION_LINE
        .captures_iter(response)
        .filter_map(|c| c.get(1).map(|m| m.as_str()))
        .filter(|l| labels.iter().any(|x| x == l))
        .collect();
    listed.sort_unstable();
    listed.dedup();
    if listed.len() > 1 {
        return None;
    }
    CHOICE_FIRST
        .captures(response)
        .and_then(|c| c.get(1).or_else(|| c.get(2)))
        .and_then(|m| known(m.as_str()))
}

fn expected(item: &JudgeItem, index: usize) -> Result<Expected, JudgeError> {
    let at = item.at(index);
    let err = |field: &str, message: &str| JudgeError::Record {
        at: at.clone(),
        field: field.into(),
        message: message.into(),
    };
    let m = &item.metadata;
    let answer = match m.get("answer") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(err("answer", "must be a non-empty string or a number")),
        None => {
            return Err(err(
                "answer",
                "missing (the `answer` judge needs the reference answer and `answer_format`)",
            ))
        }
    };
    match m.get("answer_format").and_then(Value::as_str) {
        Some("number") => number_value(&answer)
            .map(Expected::Number)
            .ok_or_else(|| err("answer", &format!("`{answer}` is not a number"))),
        Some("choice") => {
            let labels: Vec<String> = match m.get("labels") {
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|l| l.as_str().map(|s| s.trim().to_uppercase()))
                    .collect::<Option<_>>()
                    .ok_or_else(|| err("labels", "must be a list of letters"))?,
                _ => return Err(err("labels", "missing (a choice record lists its letters)")),
            };
            if labels.is_empty() || labels.iter().any(|l| l.chars().count() != 1) {
                return Err(err("labels", "must be single letters"));
            }
            let answer = answer.to_uppercase();
            if !labels.contains(&answer) {
                return Err(err(
                    "answer",
                    &format!("`{answer}` is not one of the labels"),
                ));
            }
            Ok(Expected::Choice { answer, labels })
        }
        Some(other) => Err(err(
            "answer_format",
            &format!("unknown format `{other}` (expected `number` or `choice`)"),
        )),
        None => Err(err("answer_format", "missing (`number` or `choice`)")),
    }
}

/// The `answer` judge (see the module doc). Details per item: `{"judge": "answer",
/// "expected", "extracted", "correct"}`.
#[derive(Debug, Clone, Default)]
pub struct AnswerJudge {
    _private: (),
}

impl AnswerJudge {
    /// The answer judge.
    pub fn new() -> Self {
        AnswerJudge::default()
    }

    /// Judges one item; `index` names it in errors when it has no origin.
    ///
    /// # Errors
    /// [`JudgeError::Record`] naming the field when `answer`, `answer_format` or `labels` is
    /// missing or malformed.
    pub fn judge_item(&self, item: &JudgeItem, index: usize) -> Result<Verdict, JudgeError> {
        let (extracted, correct, expected) = match expected(item, index)? {
            Expected::Number(want) => {
                let got = extract_number(&item.response);
                let ok = got
                    .as_deref()
                    .and_then(number_value)
                    .is_some_and(|v| (v - want).abs() <= 1e-9 * want.abs().max(1.0));
                (got, ok, json!(want))
            }
            Expected::Choice { answer, labels } => {
                let got = extract_choice(&item.response, &labels);
                let ok = got.as_deref() == Some(answer.as_str());
                (got, ok, json!(answer))
            }
        };
        Ok(Verdict {
            score: Some(if correct { 5.0 } else { 0.0 }),
            details: json!({
                "judge": "answer", "expected": expected, "extracted": extracted, "correct": correct,
            }),
        })
    }
}

impl Judge for AnswerJudge {
    fn name(&self) -> String {
        "answer".to_string()
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
mod tests {
    use super::*;

    fn item(response: &str, metadata: Value) -> JudgeItem {
        JudgeItem {
            metadata,
            ..JudgeItem::new("q", response)
        }
    }

    fn score(response: &str, metadata: Value) -> (Option<f64>, Value) {
        let v = AnswerJudge::new()
            .judge_item(&item(response, metadata), 0)
            .unwrap();
        (v.score, v.details["extracted"].clone())
    }

    #[test]
    fn numbers_are_read_after_the_last_cue_else_the_last_number() {
        let m = json!({"answer": "2,125", "answer_format": "number"});
        assert_eq!(
            score("So 2000 + 125 = 2125.", m.clone()),
            (Some(5.0), json!("2125"))
        );
        assert_eq!(
            score("The answer is $2,125.00 in total, not 7", m.clone()),
            (Some(5.0), json!("$2,125.00"))
        );
        assert_eq!(
            score("#### 2125\nThat was 3 steps", m.clone()),
            (Some(5.0), json!("2125"))
        );
        assert_eq!(score("It is 2124.", m.clone()), (Some(0.0), json!("2124")));
        // A cue without a number right after it: the last number.
        assert_eq!(
            score("The answer is 16 - 3 - 4 = 9, so 9 x 2 = 2125", m.clone()),
            (Some(0.0), json!("16"))
        );
        assert_eq!(
            score("To find the answer we add: 2000 + 125 = 2125.", m.clone()),
            (Some(5.0), json!("2125"))
        );
        assert_eq!(score("I do not know.", m.clone()), (Some(0.0), Value::Null));
        let neg = json!({"answer": -3, "answer_format": "number"});
        assert_eq!(score("Answer: -3", neg), (Some(5.0), json!("-3")));
    }

    #[test]
    fn choices_are_read_after_a_cue_or_at_the_start_only() {
        let m = json!({"answer": "C", "answer_format": "choice", "labels": ["A", "B", "C", "D"]});
        for right in [
            "C",
            "C. Planetary days",
            "(C) days",
            "The answer is (c).",
            "Answer: C",
        ] {
            assert_eq!(score(right, m.clone()).0, Some(5.0), "{right}");
        }
        assert_eq!(score("B) years", m.clone()), (Some(0.0), json!("B")));
        // "A" as a word is not an answer; E is not a label.
        assert_eq!(
            score("A planet rotates; C is likely.", m.clone()),
            (Some(0.0), Value::Null)
        );
        assert_eq!(
            score("Days get shorter, so C.", m.clone()),
            (Some(0.0), Value::Null)
        );
        assert_eq!(
            score("The answer is E", m.clone()),
            (Some(0.0), Value::Null)
        );
        // "a" is a word; bold is allowed; an echoed option list chooses nothing.
        assert_eq!(
            score("The answer is a rock.", m.clone()),
            (Some(0.0), Value::Null)
        );
        assert_eq!(score("The answer is **C**.", m.clone()).0, Some(5.0));
        let echo =
            "A. Planetary density will decrease.\nB. Years get longer.\nC. Days get shorter.";
        assert_eq!(score(echo, m.clone()), (Some(0.0), Value::Null));
        assert_eq!(
            score("C. Days get shorter.\nBecause it spins faster.", m).0,
            Some(5.0)
        );
    }

    #[test]
    fn bad_records_name_the_field() {
        let e = |m: Value| {
            AnswerJudge::new()
                .judge_item(&item("x", m), 3)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            e(json!({})),
            "item 3: field `answer`: missing (the `answer` judge needs the reference answer and `answer_format`)"
        );
        assert_eq!(
            e(json!({"answer": "x1", "answer_format": "number"})),
            "item 3: field `answer`: `x1` is not a number"
        );
        assert_eq!(
            e(json!({"answer": "E", "answer_format": "choice", "labels": ["A", "B"]})),
            "item 3: field `answer`: `E` is not one of the labels"
        );
        assert_eq!(
            e(json!({"answer": "1", "answer_format": "words"})),
            "item 3: field `answer_format`: unknown format `words` (expected `number` or `choice`)"
        );
    }
}
