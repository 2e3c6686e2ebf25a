//! Judge specifications, parsed once: `ifeval`, `self`, `model:PATH` and weighted sums such as
//! `0.5*ifeval+0.5*self` ([`JudgeSpec`]), the LLM judge's settings ([`JudgeSettings`]), and
//! the one factory that turns a spec into a judge ([`build_judge`]).
//!
//! Every srlm command that takes a judge (`srlm run`, `srlm judge`, `srlm eval`) parses its
//! spec here and builds the judge here; only the model behind `self` and `model:PATH` differs,
//! which the caller supplies as a [`JudgeModel`].

use std::fmt;
use std::str::FromStr;

use crate::composite::parse_spec;
use crate::{CompositeJudge, IfevalJudge, Judge, JudgeError, JudgeMode, JudgeModel, LlmJudge};

/// One judge a spec names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JudgeName {
    /// `ifeval`: the IFEval rule judge (needs IFEval records).
    Ifeval,
    /// `answer`: exact match of the final answer with the record's reference (math numbers,
    /// multiple-choice letters; [`crate::AnswerJudge`]).
    Answer,
    /// `self`: the model being trained (M_i) judges (LLM-as-a-Judge, Yuan et al. 2024).
    Current,
    /// `model:PATH`: a fixed judge model (a model reference srlm-model loads).
    Model(String),
}

impl JudgeName {
    fn parse(spec: &str, name: &str) -> Result<Self, JudgeError> {
        match name {
            "ifeval" => Ok(JudgeName::Ifeval),
            "answer" => Ok(JudgeName::Answer),
            "self" => Ok(JudgeName::Current),
            n => match n.strip_prefix("model:") {
                Some(path) if !path.trim().is_empty() => Ok(JudgeName::Model(path.to_string())),
                _ => Err(JudgeError::Spec {
                    spec: spec.to_string(),
                    message: format!(
                        "unknown judge `{name}` (expected ifeval, answer, self, model:PATH, or a weighted sum like 0.5*ifeval+0.5*self)"
                    ),
                }),
            },
        }
    }
}

impl fmt::Display for JudgeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JudgeName::Ifeval => f.write_str("ifeval"),
            JudgeName::Answer => f.write_str("answer"),
            JudgeName::Current => f.write_str("self"),
            JudgeName::Model(p) => write!(f, "model:{p}"),
        }
    }
}

/// A parsed judge specification: one judge, or a weighted sum of judges (weights ≥ 0 summing
/// to 1). It keeps the text as given, which is what it serialises to, so configs and cache
/// keys written before it existed read back unchanged.
///
/// ```
/// use srlm_judge::{JudgeName, JudgeSpec};
/// let s: JudgeSpec = "0.5*ifeval + 0.5*model:judge.gguf".parse().unwrap();
/// assert!(s.is_composite() && s.uses(&JudgeName::Ifeval) && !s.uses(&JudgeName::Current));
/// assert_eq!(s.external_models().collect::<Vec<_>>(), ["judge.gguf"]);
/// assert!("ifevl".parse::<JudgeSpec>().unwrap_err().to_string().contains("unknown judge `ifevl`"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct JudgeSpec {
    text: String,
    composite: bool,
    terms: Vec<(f64, JudgeName)>,
}

impl JudgeSpec {
    /// Parses a spec: a name (`ifeval`, `self`, `model:PATH`) or terms joined by `+`, each
    /// `WEIGHT*NAME` or `NAME` (see [`crate::parse_spec`]).
    ///
    /// # Errors
    /// [`JudgeError::Spec`] naming the spec and the bad part: an unknown name, a weight that is
    /// not a finite number ≥ 0, an empty term, a repeated name.
    pub fn parse(text: &str) -> Result<Self, JudgeError> {
        let trimmed = text.trim();
        let composite = trimmed.contains('+') || trimmed.contains('*');
        let terms = if composite {
            parse_spec(trimmed)?
                .into_iter()
                .map(|t| Ok((t.weight, JudgeName::parse(text, &t.name)?)))
                .collect::<Result<Vec<_>, JudgeError>>()?
        } else {
            if trimmed.is_empty() {
                return Err(JudgeError::Spec {
                    spec: text.to_string(),
                    message: "empty judge specification".into(),
                });
            }
            vec![(1.0, JudgeName::parse(text, trimmed)?)]
        };
        Ok(JudgeSpec {
            text: text.to_string(),
            composite,
            terms,
        })
    }

    /// The spec as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The weighted judges, in the order written.
    pub fn terms(&self) -> &[(f64, JudgeName)] {
        &self.terms
    }

    /// Whether it was written as a weighted sum (even of one term, like `1*self`).
    pub fn is_composite(&self) -> bool {
        self.composite
    }

    /// Whether `name` is one of its judges.
    pub fn uses(&self, name: &JudgeName) -> bool {
        self.terms.iter().any(|(_, n)| n == name)
    }

    /// Whether any of its judges is a model (`self` or `model:PATH`), so that its settings
    /// ([`JudgeSettings`]) matter.
    pub fn uses_a_model(&self) -> bool {
        self.terms
            .iter()
            .any(|(_, n)| !matches!(n, JudgeName::Ifeval))
    }

    /// The `model:PATH` references it names, in order.
    pub fn external_models(&self) -> impl Iterator<Item = &str> {
        self.terms.iter().filter_map(|(_, n)| match n {
            JudgeName::Model(p) => Some(p.as_str()),
            _ => None,
        })
    }
}

impl FromStr for JudgeSpec {
    type Err = JudgeError;
    fn from_str(s: &str) -> Result<Self, JudgeError> {
        JudgeSpec::parse(s)
    }
}

impl fmt::Display for JudgeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for JudgeSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for JudgeSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        JudgeSpec::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for JudgeSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "JudgeSpec".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "`ifeval`, `self`, `model:PATH`, or a weighted sum such as `0.5*ifeval+0.5*self` (weights sum to 1)"
        })
    }
}

/// How LLM judges (`self`, `model:PATH`) score; rule judges ignore it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JudgeSettings {
    /// `sampled` (n samples, parse `Score: N`, average) or `expected`.
    pub mode: JudgeMode,
    /// Samples per item in sampled mode (Yuan et al. 2024: 3).
    pub samples: usize,
    /// A minijinja template (variables `prompt`, `response`) replacing the built-in rubric:
    /// its text, already read.
    pub template: Option<String>,
    /// Judge responses as they are, injected score claims and text addressed to the grader
    /// included (default false: they are removed first, see [`crate::injection`]). Only for
    /// measuring the defence.
    pub keep_injections: bool,
}

/// Builds the judge a spec names. `model_for` supplies the model behind each `self` /
/// `model:PATH` term (called once per such term); the IFEval judge needs none. A spec written
/// as a weighted sum becomes a [`CompositeJudge`], a single name that judge itself.
///
/// # Errors
/// Those of `model_for`, a template that does not parse ([`JudgeError::Template`]), weights
/// that do not sum to 1 ([`JudgeError::Spec`]).
pub fn build_judge<'a>(
    spec: &JudgeSpec,
    settings: &JudgeSettings,
    mut model_for: impl FnMut(&JudgeName) -> Result<Box<dyn JudgeModel + 'a>, JudgeError>,
) -> Result<Box<dyn Judge + 'a>, JudgeError> {
    let mut one = |name: &JudgeName| -> Result<Box<dyn Judge + 'a>, JudgeError> {
        match name {
            JudgeName::Ifeval => return Ok(Box::new(IfevalJudge::new())),
            JudgeName::Answer => return Ok(Box::new(crate::AnswerJudge::new())),
            JudgeName::Current | JudgeName::Model(_) => {}
        }
        let mut j = LlmJudge::new(model_for(name)?)
            .mode(settings.mode)
            .samples(settings.samples)
            .neutralise(!settings.keep_injections);
        if let Some(t) = &settings.template {
            j = j.template(t.clone())?;
        }
        Ok(Box::new(j))
    };
    if spec.is_composite() {
        let parts = spec
            .terms()
            .iter()
            .map(|(w, n)| Ok((*w, one(n)?)))
            .collect::<Result<Vec<_>, JudgeError>>()?;
        Ok(Box::new(CompositeJudge::new(parts)?))
    } else {
        one(&spec.terms()[0].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(spec: &str, expect: Result<&[(f64, JudgeName)], &str>) {
        match (JudgeSpec::parse(spec), expect) {
            (Ok(s), Ok(terms)) => assert_eq!(s.terms(), terms, "{spec}"),
            (Err(e), Err(msg)) => assert!(e.to_string().contains(msg), "{spec}: {e}"),
            (got, want) => panic!("{spec}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parses_names_and_sums() {
        use JudgeName::*;
        check("ifeval", Ok(&[(1.0, Ifeval)]));
        check(" self ", Ok(&[(1.0, Current)]));
        check("model:a/b.gguf", Ok(&[(1.0, Model("a/b.gguf".into()))]));
        check("0.5*ifeval+0.5*self", Ok(&[(0.5, Ifeval), (0.5, Current)]));
        check("1*self", Ok(&[(1.0, Current)]));
        check("ifevl", Err("unknown judge `ifevl`"));
        check("model:", Err("unknown judge `model:`"));
        check("", Err("empty judge specification"));
        check("0.5*ifeval+0.5*bogus", Err("unknown judge `bogus`"));
        check("x*ifeval", Err("weight \"x\" is not a number"));
        check("0.5*self+0.5*self", Err("appears twice"));
    }

    #[test]
    fn serialises_as_given_and_reads_back() {
        let s = JudgeSpec::parse("0.5*ifeval + 0.5*self").unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, "\"0.5*ifeval + 0.5*self\"");
        assert_eq!(serde_json::from_str::<JudgeSpec>(&json).unwrap(), s);
        let err = serde_json::from_str::<JudgeSpec>("\"nope\"").unwrap_err();
        assert!(err.to_string().contains("unknown judge `nope`"), "{err}");
        assert!(s.is_composite() && !JudgeSpec::parse("self").unwrap().is_composite());
        assert!(s.uses_a_model() && !JudgeSpec::parse("ifeval").unwrap().uses_a_model());
    }

    #[test]
    fn builds_rule_judges_without_a_model_and_checks_weights() {
        let none = |_: &JudgeName| -> Result<Box<dyn JudgeModel>, JudgeError> {
            panic!("no model needed")
        };
        let j = build_judge(&"ifeval".parse().unwrap(), &JudgeSettings::default(), none).unwrap();
        assert_eq!(j.name(), "ifeval");
        let err = build_judge(
            &"0.5*ifeval+0.4*ifeval"
                .parse::<JudgeSpec>()
                .unwrap_or_else(|_| JudgeSpec::parse("0.5*ifeval").unwrap()),
            &JudgeSettings::default(),
            none,
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("sum"), "{err}");
    }
}
