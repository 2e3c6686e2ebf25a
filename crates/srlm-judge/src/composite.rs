//! Composite judges: a weighted sum of judges, for ablations such as `0.5*ifeval+0.5*self`.

use crate::judge::check_len;
use crate::{Judge, JudgeError, JudgeItem, Verdict};
use serde_json::json;

/// One term of a judge specification: a weight and a judge name.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecTerm {
    /// Weight (≥ 0).
    pub weight: f64,
    /// Judge name as written: `ifeval`, `self`, `model:PATH`, ….
    pub name: String,
}

/// Parses a judge specification: terms joined by `+`, each `WEIGHT*NAME` or `NAME`
/// (weight 1). Examples: `ifeval`, `0.5*ifeval+0.5*self`, `0.3*ifeval + 0.7*model:judge.gguf`.
/// Names may not contain `+` or `*` (paths with them cannot be used here).
///
/// # Errors
/// [`JudgeError::Spec`] for an empty spec or term, a weight that is not a finite number ≥ 0,
/// or a repeated name.
pub fn parse_spec(spec: &str) -> Result<Vec<SpecTerm>, JudgeError> {
    let err = |m: String| JudgeError::Spec {
        spec: spec.to_string(),
        message: m,
    };
    if spec.trim().is_empty() {
        return Err(err("empty judge specification".into()));
    }
    let mut terms: Vec<SpecTerm> = Vec::new();
    for raw in spec.split('+') {
        let raw = raw.trim();
        let (weight, name) = match raw.split_once('*') {
            Some((w, n)) => {
                let w: f64 = w
                    .trim()
                    .parse()
                    .map_err(|_| err(format!("weight {:?} is not a number", w.trim())))?;
                (w, n.trim())
            }
            None => (1.0, raw),
        };
        if name.is_empty() || name.contains('*') {
            return Err(err(format!("term {raw:?} is not WEIGHT*NAME or NAME")));
        }
        if !weight.is_finite() || weight < 0.0 {
            return Err(err(format!(
                "weight {weight} of {name:?} must be a finite number >= 0"
            )));
        }
        if terms.iter().any(|t| t.name == name) {
            return Err(err(format!("judge {name:?} appears twice")));
        }
        terms.push(SpecTerm {
            weight,
            name: name.to_string(),
        });
    }
    Ok(terms)
}

/// A weighted sum of judges: score = Σ wᵢ·sᵢ.
///
/// The weights must sum to 1 (within 1e-6) so the composite stays on the 0–5 scale. **If any
/// part has no score for an item, the composite has no score for it** (a partial sum would
/// silently change the weighting); the parts' verdicts are kept in the details either way:
/// `{"judge": "composite", "parts": [{"name", "weight", "score", "details"}…]}`.
pub struct CompositeJudge<'a> {
    parts: Vec<(f64, Box<dyn Judge + 'a>)>,
}

impl<'a> CompositeJudge<'a> {
    /// A composite of `(weight, judge)` parts.
    ///
    /// # Errors
    /// [`JudgeError::Spec`] when there are no parts, a weight is negative or not finite, or
    /// the weights do not sum to 1.
    pub fn new(parts: Vec<(f64, Box<dyn Judge + 'a>)>) -> Result<Self, JudgeError> {
        let spec = parts
            .iter()
            .map(|(w, j)| format!("{w}*{}", j.name()))
            .collect::<Vec<_>>()
            .join("+");
        let err = |m: &str| JudgeError::Spec {
            spec: spec.clone(),
            message: m.to_string(),
        };
        if parts.is_empty() {
            return Err(err("a composite needs at least one judge"));
        }
        if parts.iter().any(|(w, _)| !w.is_finite() || *w < 0.0) {
            return Err(err("weights must be finite numbers >= 0"));
        }
        let sum: f64 = parts.iter().map(|(w, _)| w).sum();
        if (sum - 1.0).abs() > 1e-6 {
            return Err(err(&format!(
                "weights sum to {sum}, not 1 (the composite must stay on the 0-5 scale)"
            )));
        }
        Ok(CompositeJudge { parts })
    }

    /// Builds the composite of a [`parse_spec`] specification, resolving each name with
    /// `resolve` (which builds e.g. the IFEval judge for `ifeval`).
    ///
    /// # Errors
    /// Those of [`parse_spec`], of `resolve`, and of [`CompositeJudge::new`].
    pub fn from_spec(
        spec: &str,
        mut resolve: impl FnMut(&str) -> Result<Box<dyn Judge + 'a>, JudgeError>,
    ) -> Result<Self, JudgeError> {
        let parts = parse_spec(spec)?
            .into_iter()
            .map(|t| Ok((t.weight, resolve(&t.name)?)))
            .collect::<Result<Vec<_>, JudgeError>>()?;
        CompositeJudge::new(parts)
    }
}

impl Judge for CompositeJudge<'_> {
    fn name(&self) -> String {
        self.parts
            .iter()
            .map(|(w, j)| format!("{w}*{}", j.name()))
            .collect::<Vec<_>>()
            .join("+")
    }

    fn judge_batch(&self, items: &[JudgeItem]) -> Result<Vec<Verdict>, JudgeError> {
        let mut per_part = Vec::with_capacity(self.parts.len());
        for (_, judge) in &self.parts {
            let v = judge.judge_batch(items)?;
            check_len(&judge.name(), items.len(), v.len())?;
            per_part.push(v);
        }
        Ok((0..items.len())
            .map(|i| {
                let mut score = Some(0.0);
                let mut parts = Vec::new();
                for ((w, judge), verdicts) in self.parts.iter().zip(&per_part) {
                    let v = &verdicts[i];
                    score = score.zip(v.score).map(|(acc, s)| acc + w * s);
                    parts.push(json!({"name": judge.name(), "weight": w, "score": v.score, "details": v.details}));
                }
                Verdict { score, details: json!({"judge": "composite", "parts": parts}) }
            })
            .collect())
    }
}
