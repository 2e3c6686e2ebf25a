//! Judge health: is the judge producing usable, spread-out scores, and do two judges agree?
//!
//! Motivation (issue 3): SmolLM2-135M-Instruct wrote a parseable `Score:` line in 0 of 12
//! samples and gave expected scores of 2.47–2.64 to right and wrong answers alike. Such a
//! judge must be visible at a glance: parse-failure rate, histogram, spread, agreement.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;

/// Summary of one batch of scores on the 0–5 scale.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeHealth {
    /// Items judged.
    pub count: usize,
    /// Items without a score (parse failures, over-long prompts, …).
    pub no_score: usize,
    /// `no_score / count` (0 for an empty batch).
    pub no_score_rate: f64,
    /// Scores per unit bin: bin k (k = 0…5) counts scores that round (half up) to k, so the
    /// whole-number scores of sampled judges land in their own bin.
    pub histogram: [usize; 6],
    /// Mean of the scores present, if any.
    pub mean: Option<f64>,
    /// Population standard deviation of the scores present, if any.
    pub std: Option<f64>,
    /// Smallest score present.
    pub min: Option<f64>,
    /// Largest score present.
    pub max: Option<f64>,
    /// Expected-mode judgments whose score lacks a digit's probability: a server returned
    /// only its top log-probs and a digit 0–5 was not among them (it counted as probability
    /// 0; see [`digits_missing`]). 0 in-process, where every logit is known.
    #[serde(default)]
    pub digits_missing: usize,
}

/// How many of the digits 0–5 an expected-mode judgment's `details` say were missing from
/// the server's top log-probs (the LLM judge's `digits_missing` field; 0 when absent).
pub fn digits_missing(details: &serde_json::Value) -> u64 {
    details
        .get("digits_missing")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

impl JudgeHealth {
    /// Summarises a batch of scores (`None` = no score). Scores outside [0, 5] are clamped
    /// into the end bins of the histogram but enter mean, std, min and max as they are.
    pub fn from_scores(scores: &[Option<f64>]) -> Self {
        let present: Vec<f64> = scores.iter().flatten().copied().collect();
        let count = scores.len();
        let no_score = count - present.len();
        let mut histogram = [0usize; 6];
        for s in &present {
            let bin = (s + 0.5).floor().clamp(0.0, 5.0) as usize;
            histogram[bin] += 1;
        }
        let n = present.len() as f64;
        let mean = (!present.is_empty()).then(|| present.iter().sum::<f64>() / n);
        let std = mean.map(|m| (present.iter().map(|s| (s - m).powi(2)).sum::<f64>() / n).sqrt());
        let min = present.iter().copied().reduce(f64::min);
        let max = present.iter().copied().reduce(f64::max);
        let no_score_rate = if count == 0 {
            0.0
        } else {
            no_score as f64 / count as f64
        };
        JudgeHealth {
            count,
            no_score,
            no_score_rate,
            histogram,
            mean,
            std,
            min,
            max,
            digits_missing: 0,
        }
    }

    /// [`JudgeHealth::from_scores`] of verdicts `(score, details)`, also counting the
    /// judgments with digits missing from a server's top log-probs.
    pub fn from_verdicts<'a>(
        verdicts: impl IntoIterator<Item = (Option<f64>, &'a serde_json::Value)>,
    ) -> Self {
        let (scores, missing): (Vec<Option<f64>>, Vec<bool>) = verdicts
            .into_iter()
            .map(|(s, d)| (s, digits_missing(d) > 0))
            .unzip();
        JudgeHealth {
            digits_missing: missing.iter().filter(|&&m| m).count(),
            ..Self::from_scores(&scores)
        }
    }
}

impl fmt::Display for JudgeHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
        writeln!(f, "judged      {}", self.count)?;
        writeln!(
            f,
            "no score    {} ({:.1}%)",
            self.no_score,
            100.0 * self.no_score_rate
        )?;
        writeln!(f, "mean ± std  {} ± {}", o(self.mean), o(self.std))?;
        writeln!(f, "min / max   {} / {}", o(self.min), o(self.max))?;
        if self.digits_missing > 0 {
            writeln!(
                f,
                "digits missing from the server's top log-probs in {} judgments (counted as probability 0; raise engine.top_logprobs)",
                self.digits_missing
            )?;
        }
        let scored: usize = self.histogram.iter().sum();
        write!(f, "histogram")?;
        for (k, &c) in self.histogram.iter().enumerate() {
            let bar = if scored == 0 {
                0
            } else {
                (c * 30).div_ceil(scored)
            };
            write!(f, "\n  {k}  {c:>6}  {}", "#".repeat(bar))?;
        }
        Ok(())
    }
}

/// How often two judges order response pairs the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairwiseAgreement {
    /// Pairs given.
    pub pairs: usize,
    /// Pairs where both judges scored both responses.
    pub compared: usize,
    /// Compared pairs ordered the same way (both ties count as the same order).
    pub agree: usize,
    /// `agree / compared`, `None` when nothing could be compared.
    pub rate: Option<f64>,
}

impl fmt::Display for PairwiseAgreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rate {
            Some(r) => write!(
                f,
                "pairwise agreement {:.1}% ({} of {} pairs compared, {} given)",
                100.0 * r,
                self.agree,
                self.compared,
                self.pairs
            ),
            None => write!(
                f,
                "pairwise agreement - (0 of {} pairs comparable)",
                self.pairs
            ),
        }
    }
}

/// Fraction of response pairs that judges A and B order the same way: for a pair (i, j),
/// both say i > j, both say i < j, or both tie. Pairs where either judge lacks a score for
/// either response are skipped (counted in `pairs`, not in `compared`).
///
/// `pairs` index into both score slices; build them with [`same_prompt_pairs`] to compare
/// responses to the same prompt (as preference pairs are built).
///
/// # Panics
/// If a pair indexes outside either slice.
pub fn pairwise_agreement(
    a: &[Option<f64>],
    b: &[Option<f64>],
    pairs: &[(usize, usize)],
) -> PairwiseAgreement {
    let mut compared = 0;
    let mut agree = 0;
    for &(i, j) in pairs {
        if let (Some(ai), Some(aj), Some(bi), Some(bj)) = (a[i], a[j], b[i], b[j]) {
            compared += 1;
            if ai.partial_cmp(&aj) == bi.partial_cmp(&bj) {
                agree += 1;
            }
        }
    }
    PairwiseAgreement {
        pairs: pairs.len(),
        compared,
        agree,
        rate: (compared > 0).then(|| agree as f64 / compared as f64),
    }
}

/// Every unordered pair (i, j), i < j, of items with the same prompt, in input order.
pub fn same_prompt_pairs<S: AsRef<str>>(prompts: &[S]) -> Vec<(usize, usize)> {
    let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
    let mut order = Vec::new();
    for (i, p) in prompts.iter().enumerate() {
        let e = groups.entry(p.as_ref()).or_default();
        if e.is_empty() {
            order.push(p.as_ref());
        }
        e.push(i);
    }
    let mut out = Vec::new();
    for p in order {
        let g = &groups[p];
        for x in 0..g.len() {
            for y in x + 1..g.len() {
                out.push((g[x], g[y]));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_of_a_batch() {
        let h = JudgeHealth::from_scores(&[Some(1.0), None, Some(3.0), Some(5.0), Some(2.5), None]);
        assert_eq!(h.count, 6);
        assert_eq!(h.no_score, 2);
        assert!((h.no_score_rate - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(h.histogram, [0, 1, 0, 2, 0, 1]);
        assert_eq!(h.mean, Some(2.875));
        // deviations -1.875, 0.125, 2.125, -0.375: squares sum 8.1875, /4 = 2.046875
        assert!((h.std.unwrap() - 2.046875f64.sqrt()).abs() < 1e-12);
        assert_eq!((h.min, h.max), (Some(1.0), Some(5.0)));
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(json["no_score"], 2);
        let text = h.to_string();
        assert!(text.contains("no score    2 (33.3%)"), "{text}");
    }

    #[test]
    fn judgments_with_digits_missing_are_counted() {
        let (full, two, none) = (
            serde_json::json!({"mode": "expected"}),
            serde_json::json!({"mode": "expected", "digits_missing": 2}),
            serde_json::json!(null),
        );
        let h = JudgeHealth::from_verdicts([
            (Some(2.0), &full),
            (Some(4.5), &two),
            (None, &none),
            (Some(1.0), &two),
        ]);
        assert_eq!(h.digits_missing, 2);
        assert_eq!((h.count, h.no_score), (4, 1));
        assert_eq!(h.mean, Some(2.5));
        assert!(h
            .to_string()
            .contains("digits missing from the server's top log-probs in 2 judgments"));
        assert_eq!(digits_missing(&two), 2);
        assert_eq!(JudgeHealth::from_scores(&[Some(1.0)]).digits_missing, 0);
        assert!(!JudgeHealth::from_scores(&[Some(1.0)])
            .to_string()
            .contains("digits"));
    }

    #[test]
    fn health_of_nothing() {
        let h = JudgeHealth::from_scores(&[None, None]);
        assert_eq!((h.count, h.no_score, h.no_score_rate), (2, 2, 1.0));
        assert_eq!((h.mean, h.std, h.min, h.max), (None, None, None, None));
        assert_eq!(JudgeHealth::from_scores(&[]).no_score_rate, 0.0);
    }

    #[test]
    fn agreement() {
        fn check(
            a: &[Option<f64>],
            b: &[Option<f64>],
            pairs: &[(usize, usize)],
            expected: (usize, usize, Option<f64>),
        ) {
            let r = pairwise_agreement(a, b, pairs);
            assert_eq!(
                (r.compared, r.agree, r.rate),
                expected,
                "{a:?} {b:?} {pairs:?}"
            );
        }
        let a = [Some(1.0), Some(2.0), Some(3.0), None];
        check(
            &a,
            &[Some(0.0), Some(5.0), Some(4.0), Some(1.0)],
            &[(0, 1), (1, 2), (0, 2), (2, 3)],
            (3, 2, Some(2.0 / 3.0)),
        );
        check(
            &[Some(1.0), Some(1.0)],
            &[Some(2.0), Some(2.0)],
            &[(0, 1)],
            (1, 1, Some(1.0)),
        );
        check(
            &[Some(1.0), Some(1.0)],
            &[Some(2.0), Some(3.0)],
            &[(0, 1)],
            (1, 0, Some(0.0)),
        );
        check(&a, &a, &[(0, 3)], (0, 0, None));
    }

    #[test]
    fn pairs_by_prompt() {
        assert_eq!(
            same_prompt_pairs(&["a", "b", "a", "a", "b"]),
            vec![(0, 2), (0, 3), (2, 3), (1, 4)]
        );
        assert!(same_prompt_pairs::<&str>(&[]).is_empty());
    }
}
