//! FFI-safe records that cross the plugin boundary, and their conversions to and from the
//! `srlm-core` records the rest of srlm uses.
//!
//! Only `RString`, `RVec`, `ROption` and `#[derive(StableAbi)]` structs appear here; free-form
//! JSON (prompt metadata, judge details) crosses as JSON text in an `RString`.

use std::fmt;

use abi_stable::{
    std_types::{ROption, RString},
    StableAbi,
};
use srlm_core::{Judgment, ModelSource, PairProvenance, PreferencePair, PromptRecord, Sample};

/// Which model a sample comes from (FFI twin of [`srlm_core::ModelSource`]).
///
/// Wang et al. 2025 (arXiv 2508.06026), Sec. 3: `Initial` is M0, `Current` is M_i,
/// `Temporary(h)` the model returned by [`Host::train_temporary`](crate::Host::train_temporary)
/// with handle `h` (the "future" model M_f). `Reference` marks a reference answer taken from
/// the prompt record (SPIN's chosen side); it cannot be sampled.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FfiSource {
    /// The initial model M0.
    Initial,
    /// The current model M_i.
    Current,
    /// A temporary model trained during this iteration, by handle.
    Temporary(u32),
    /// The reference answer carried by the prompt record (not a model).
    Reference,
}

impl fmt::Display for FfiSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&ModelSource::from(*self), f)
    }
}

impl From<ModelSource> for FfiSource {
    fn from(s: ModelSource) -> Self {
        match s {
            ModelSource::Initial => FfiSource::Initial,
            ModelSource::Current => FfiSource::Current,
            ModelSource::Temporary(h) => FfiSource::Temporary(h),
            ModelSource::Reference => FfiSource::Reference,
        }
    }
}

impl From<FfiSource> for ModelSource {
    fn from(s: FfiSource) -> Self {
        match s {
            FfiSource::Initial => ModelSource::Initial,
            FfiSource::Current => ModelSource::Current,
            FfiSource::Temporary(h) => ModelSource::Temporary(h),
            FfiSource::Reference => ModelSource::Reference,
        }
    }
}

/// Where one iteration stands, passed to [`Strategy::run_iteration`](crate::Strategy::run_iteration).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct IterationInfo {
    /// 0-based iteration number i (the iteration turns M_i into M_{i+1}).
    pub iteration: u32,
    /// Total iterations planned for the run.
    pub total_iterations: u32,
    /// The run's seed (the host already seeds sampling; plugins may use it for their own
    /// randomness so that the same seed gives the same pairs).
    pub seed: u64,
}

/// One prompt of the iteration's chunk (FFI twin of [`srlm_core::PromptRecord`]).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct FfiPrompt {
    /// The prompt's id, unique in its pool.
    pub id: RString,
    /// The user turn as plain text.
    pub prompt: RString,
    /// The reference answer, when the data has one (SPIN's chosen side).
    pub reference: ROption<RString>,
    /// The record's other fields as JSON text (`null` when none).
    pub metadata_json: RString,
}

impl From<&PromptRecord> for FfiPrompt {
    fn from(p: &PromptRecord) -> Self {
        FfiPrompt {
            id: p.id.as_str().into(),
            prompt: p.prompt.as_str().into(),
            reference: p.reference.as_deref().map(RString::from).into(),
            metadata_json: p.metadata.to_string().into(),
        }
    }
}

impl FfiPrompt {
    /// A prompt with just an id and a text (handy in tests).
    pub fn new(id: &str, prompt: &str) -> Self {
        FfiPrompt {
            id: id.into(),
            prompt: prompt.into(),
            reference: ROption::RNone,
            metadata_json: "null".into(),
        }
    }

    /// The same prompt with a reference answer.
    pub fn with_reference(mut self, reference: &str) -> Self {
        self.reference = ROption::RSome(reference.into());
        self
    }

    /// Back to a [`PromptRecord`]; metadata that is not valid JSON becomes a JSON string.
    pub fn to_record(&self) -> PromptRecord {
        PromptRecord {
            id: self.id.to_string(),
            prompt: self.prompt.to_string(),
            reference: self.reference.as_ref().map(|r| r.to_string()).into_option(),
            metadata: serde_json::from_str(&self.metadata_json)
                .unwrap_or_else(|_| serde_json::Value::String(self.metadata_json.to_string())),
        }
    }
}

/// One sampled response (FFI twin of [`srlm_core::Sample`], without token ids).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct FfiSample {
    /// Unique within the iteration; the handle plugins pass to [`Host::judge`](crate::Host::judge).
    pub id: RString,
    /// The prompt it answers.
    pub prompt_id: RString,
    /// The model that wrote it.
    pub source: FfiSource,
    /// The response text.
    pub text: RString,
    /// How many tokens were generated.
    pub token_count: u32,
}

impl From<&Sample> for FfiSample {
    fn from(s: &Sample) -> Self {
        FfiSample {
            id: s.id.as_str().into(),
            prompt_id: s.prompt_id.as_str().into(),
            source: s.source.into(),
            text: s.text.as_str().into(),
            token_count: u32::try_from(s.token_ids.len()).unwrap_or(u32::MAX),
        }
    }
}

/// A judge's verdict on one sample (FFI twin of [`srlm_core::Judgment`]).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct FfiJudgment {
    /// The sample judged.
    pub sample_id: RString,
    /// Score on the 0–5 scale, or none when the judge gave no usable score.
    pub score: ROption<f64>,
    /// Judge-specific details as JSON text.
    pub details_json: RString,
}

impl From<&Judgment> for FfiJudgment {
    fn from(j: &Judgment) -> Self {
        FfiJudgment {
            sample_id: j.sample_id.as_str().into(),
            score: j.score.into(),
            details_json: j.details.to_string().into(),
        }
    }
}

impl FfiJudgment {
    /// Back to a [`Judgment`]; details that are not valid JSON become a JSON string.
    pub fn to_judgment(&self) -> Judgment {
        Judgment {
            sample_id: self.sample_id.to_string(),
            score: self.score.into_option(),
            details: serde_json::from_str(&self.details_json)
                .unwrap_or_else(|_| serde_json::Value::String(self.details_json.to_string())),
        }
    }
}

/// One side of a preference pair as it crosses the ABI: which sample, and the source and score
/// the plugin claims for it.
///
/// Only `sample_id`, and `source == Reference` (the side is the prompt's reference answer),
/// are read by srlm: the host takes each sample's source and score from its own records
/// ([`FfiPair::to_preference_pair`]). The SDK fills `source` and `score` from what the
/// iteration served and judged, so hosts older than that rule get the right values too.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct FfiPairSide {
    /// The sample's id ([`FfiSample::id`]); for a [`FfiSource::Reference`] side, any label
    /// (the host takes the text from the prompt's reference answer).
    pub sample_id: RString,
    /// The model that wrote it, as the plugin claims (ignored by the host, except
    /// `Reference`).
    pub source: FfiSource,
    /// Its judge score, as the plugin claims (ignored by the host).
    pub score: ROption<f64>,
}

/// A preference pair as a plugin returns it: ids and a note, no texts (the host owns the
/// texts, sources and scores, and turns the pair into a [`PreferencePair`] with
/// [`FfiPair::to_preference_pair`]).
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq)]
pub struct FfiPair {
    /// The prompt both sides answer.
    pub prompt_id: RString,
    /// The preferred response.
    pub chosen: FfiPairSide,
    /// The dispreferred response.
    pub rejected: FfiPairSide,
    /// A free-form note from the strategy (e.g. `"anchored"`, `"future-upgraded"`).
    pub note: RString,
}

/// Why [`FfiPair::to_preference_pair`] could not build a pair.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PairError {
    /// The pair names a prompt other than the one given.
    #[error("pair is for prompt `{pair}` but was resolved against prompt `{given}`")]
    PromptMismatch {
        /// The pair's prompt id.
        pair: String,
        /// The prompt record's id.
        given: String,
    },
    /// A side names a sample the host did not serve this iteration.
    #[error("pair for prompt `{prompt_id}` names unknown sample `{sample_id}`")]
    UnknownSample {
        /// The prompt.
        prompt_id: String,
        /// The unknown sample id.
        sample_id: String,
    },
    /// A side names a sample the host served for another prompt.
    #[error(
        "pair for prompt `{prompt_id}` names sample `{sample_id}`, which answers prompt `{answers}`"
    )]
    OtherPrompt {
        /// The pair's prompt.
        prompt_id: String,
        /// The sample id.
        sample_id: String,
        /// The prompt the sample answers.
        answers: String,
    },
    /// Both sides are the same response.
    #[error("pair for prompt `{0}` has the same response on both sides")]
    SameResponse(String),
    /// Two different samples with the same text (whitespace at the ends aside): nothing to
    /// prefer.
    #[error("pair for prompt `{prompt_id}`: chosen `{chosen}` and rejected `{rejected}` have the same text")]
    SameText {
        /// The prompt.
        prompt_id: String,
        /// The chosen side (sample id or `reference`).
        chosen: String,
        /// The rejected side.
        rejected: String,
    },
    /// The judge scored the chosen side below the rejected one.
    #[error("pair for prompt `{prompt_id}`: chosen `{chosen}` scored {chosen_score} by the judge, below rejected `{rejected}` ({rejected_score})")]
    ChosenBelowRejected {
        /// The prompt.
        prompt_id: String,
        /// The chosen sample id.
        chosen: String,
        /// The rejected sample id.
        rejected: String,
        /// The judge's score of the chosen side.
        chosen_score: f64,
        /// The judge's score of the rejected side.
        rejected_score: f64,
    },
    /// A side is the reference answer but the prompt has none.
    #[error("pair for prompt `{0}` uses the reference answer, but the prompt has none")]
    NoReference(String),
}

impl FfiPair {
    /// Builds the TRL-format [`PreferencePair`] (texts, token ids, scores, provenance) from
    /// the host's own records: what the plugin contributes is the prompt id, which sample
    /// each side is (or that it is the reference answer) and the note.
    ///
    /// - `sample(id)` finds a sample the host served this iteration; a side naming a sample
    ///   it did not serve, or one it served for another prompt, is an error.
    /// - `judgment(sample_id)` finds the host's judgment of a sample; a side's score is that
    ///   judgment's score (none when the sample was not judged or got no usable score).
    /// - A side's source is the sample's [`Sample::source`]. A side the plugin marks
    ///   [`FfiSource::Reference`] takes `prompt.reference`, no score, no sample id.
    ///
    /// The sources and scores the plugin put in the record are ignored.
    ///
    /// # Errors
    /// [`PairError`] when the prompt id differs, a sample id is unknown or answers another
    /// prompt, both sides are the same response or the same text (ends trimmed), the judge
    /// scored the chosen side below the rejected one, or a reference answer is missing.
    pub fn to_preference_pair<'a>(
        &self,
        prompt: &PromptRecord,
        sample: impl Fn(&str) -> Option<&'a Sample>,
        judgment: impl Fn(&str) -> Option<&'a Judgment>,
        strategy: &str,
    ) -> Result<PreferencePair, PairError> {
        if self.prompt_id.as_str() != prompt.id {
            return Err(PairError::PromptMismatch {
                pair: self.prompt_id.to_string(),
                given: prompt.id.clone(),
            });
        }
        let is_reference = |s: &FfiPairSide| s.source == FfiSource::Reference;
        let same = match (is_reference(&self.chosen), is_reference(&self.rejected)) {
            (true, true) => true,
            (false, false) => self.chosen.sample_id == self.rejected.sample_id,
            _ => false,
        };
        if same {
            return Err(PairError::SameResponse(prompt.id.clone()));
        }
        let side = |s: &FfiPairSide| -> Result<Resolved, PairError> {
            if is_reference(s) {
                let text = prompt
                    .reference
                    .clone()
                    .ok_or_else(|| PairError::NoReference(prompt.id.clone()))?;
                return Ok(Resolved {
                    text,
                    token_ids: None,
                    sample_id: None,
                    source: ModelSource::Reference,
                    score: None,
                });
            }
            let id = s.sample_id.as_str();
            let found = sample(id).ok_or_else(|| PairError::UnknownSample {
                prompt_id: prompt.id.clone(),
                sample_id: id.to_string(),
            })?;
            if found.prompt_id != prompt.id {
                return Err(PairError::OtherPrompt {
                    prompt_id: prompt.id.clone(),
                    sample_id: id.to_string(),
                    answers: found.prompt_id.clone(),
                });
            }
            Ok(Resolved {
                text: found.text.clone(),
                token_ids: (!found.token_ids.is_empty()).then(|| found.token_ids.clone()),
                sample_id: Some(found.id.clone()),
                source: found.source,
                score: judgment(id).and_then(|j| j.score).filter(|x| x.is_finite()),
            })
        };
        let chosen = side(&self.chosen)?;
        let rejected = side(&self.rejected)?;
        let name = |r: &Resolved| r.sample_id.clone().unwrap_or_else(|| "reference".into());
        if chosen.text.trim() == rejected.text.trim() {
            return Err(PairError::SameText {
                prompt_id: prompt.id.clone(),
                chosen: name(&chosen),
                rejected: name(&rejected),
            });
        }
        if let (Some(c), Some(r)) = (chosen.score, rejected.score) {
            if c < r {
                return Err(PairError::ChosenBelowRejected {
                    prompt_id: prompt.id.clone(),
                    chosen: name(&chosen),
                    rejected: name(&rejected),
                    chosen_score: c,
                    rejected_score: r,
                });
            }
        }
        Ok(PreferencePair {
            prompt_id: prompt.id.clone(),
            prompt: prompt.prompt.clone(),
            chosen: chosen.text,
            rejected: rejected.text,
            chosen_score: chosen.score,
            rejected_score: rejected.score,
            chosen_sample_id: chosen.sample_id,
            rejected_sample_id: rejected.sample_id,
            chosen_token_ids: chosen.token_ids,
            rejected_token_ids: rejected.token_ids,
            provenance: Some(PairProvenance {
                chosen_source: chosen.source,
                rejected_source: rejected.source,
                strategy: strategy.to_string(),
                note: self.note.to_string(),
            }),
        })
    }
}

/// One side of a pair, resolved from the host's records.
struct Resolved {
    text: String,
    token_ids: Option<Vec<u32>>,
    sample_id: Option<String>,
    source: ModelSource,
    score: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: &str, text: &str, source: ModelSource) -> Sample {
        Sample {
            id: id.into(),
            prompt_id: "p1".into(),
            source,
            text: text.into(),
            token_ids: vec![1, 2, 3],
            logprob: -1.0,
        }
    }

    #[test]
    fn sources_round_trip() {
        for s in [
            ModelSource::Initial,
            ModelSource::Current,
            ModelSource::Temporary(7),
            ModelSource::Reference,
        ] {
            assert_eq!(ModelSource::from(FfiSource::from(s)), s);
        }
        assert_eq!(FfiSource::Temporary(2).to_string(), "temporary:2");
    }

    #[test]
    fn prompt_and_judgment_round_trip() {
        let p = PromptRecord {
            id: "p1".into(),
            prompt: "hi".into(),
            reference: Some("hello".into()),
            metadata: serde_json::json!({"kwargs": [1]}),
        };
        assert_eq!(FfiPrompt::from(&p).to_record(), p);
        let j = Judgment {
            sample_id: "s".into(),
            score: Some(3.5),
            details: serde_json::json!({"raw": ["Score: 3"]}),
        };
        assert_eq!(FfiJudgment::from(&j).to_judgment(), j);
        let s = sample("p1/current/0", "x", ModelSource::Current);
        let f = FfiSample::from(&s);
        assert_eq!((f.token_count, f.source), (3, FfiSource::Current));
    }

    fn side(id: &str, source: FfiSource, score: Option<f64>) -> FfiPairSide {
        FfiPairSide {
            sample_id: id.into(),
            source,
            score: score.into(),
        }
    }

    #[test]
    fn pair_resolves_texts_reference_and_provenance() {
        let prompt = PromptRecord {
            id: "p1".into(),
            prompt: "q".into(),
            reference: Some("gold".into()),
            metadata: serde_json::Value::Null,
        };
        let s = sample("p1/current/0", "bad", ModelSource::Current);
        let j = Judgment {
            sample_id: s.id.clone(),
            score: Some(1.0),
            details: serde_json::Value::Null,
        };
        // The plugin's claimed score and source are ignored; the reference side's too.
        let pair = FfiPair {
            prompt_id: "p1".into(),
            chosen: side("p1/reference", FfiSource::Reference, Some(9.0)),
            rejected: side("p1/current/0", FfiSource::Initial, Some(4.0)),
            note: "spin".into(),
        };
        let lookup = |id: &str| (id == s.id).then_some(&s);
        let judged = |id: &str| (id == j.sample_id).then_some(&j);
        let pp = pair
            .to_preference_pair(&prompt, lookup, judged, "spin")
            .unwrap();
        assert_eq!((pp.chosen.as_str(), pp.rejected.as_str()), ("gold", "bad"));
        assert_eq!((pp.chosen_score, pp.rejected_score), (None, Some(1.0)));
        assert_eq!(pp.chosen_sample_id, None);
        assert_eq!(pp.rejected_sample_id.as_deref(), Some("p1/current/0"));
        assert_eq!(pp.rejected_token_ids, Some(vec![1, 2, 3]));
        let prov = pp.provenance.unwrap();
        assert_eq!(prov.chosen_source, ModelSource::Reference);
        assert_eq!(prov.rejected_source, ModelSource::Current);
        assert_eq!(prov.strategy, "spin");
        assert_eq!(prov.note, "spin");

        // Not judged: no score, whatever the plugin claims.
        let none = |_: &str| None;
        let pp = pair
            .to_preference_pair(&prompt, lookup, none, "spin")
            .unwrap();
        assert_eq!(pp.rejected_score, None);

        let mut unknown = pair.clone();
        unknown.rejected.sample_id = "nope".into();
        assert_eq!(
            unknown.to_preference_pair(&prompt, lookup, judged, "spin"),
            Err(PairError::UnknownSample {
                prompt_id: "p1".into(),
                sample_id: "nope".into()
            })
        );
        let no_ref = PromptRecord {
            reference: None,
            ..prompt.clone()
        };
        assert_eq!(
            pair.to_preference_pair(&no_ref, lookup, judged, "spin"),
            Err(PairError::NoReference("p1".into()))
        );
        let mut same = pair.clone();
        same.chosen = same.rejected.clone();
        assert_eq!(
            same.to_preference_pair(&prompt, lookup, judged, "spin"),
            Err(PairError::SameResponse("p1".into()))
        );
        let other = Sample {
            prompt_id: "p2".into(),
            ..sample("p2/current/0", "x", ModelSource::Current)
        };
        let mut cross = pair.clone();
        cross.chosen = side("p2/current/0", FfiSource::Current, Some(5.0));
        let both = |id: &str| [&s, &other].into_iter().find(|x| x.id == id);
        let e = cross
            .to_preference_pair(&prompt, both, judged, "spin")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "pair for prompt `p1` names sample `p2/current/0`, which answers prompt `p2`"
        );
    }

    #[test]
    fn pairs_without_a_preference_are_refused() {
        let prompt = PromptRecord {
            id: "p1".into(),
            prompt: "q".into(),
            reference: Some("  same text\n".into()),
            metadata: serde_json::Value::Null,
        };
        let a = sample("p1/current/0", "same text", ModelSource::Current);
        let b = sample("p1/current/1", "same text  ", ModelSource::Current);
        let c = sample("p1/current/2", "other", ModelSource::Current);
        let scores = [
            (a.id.clone(), 4.0),
            (b.id.clone(), 1.0),
            (c.id.clone(), 2.0),
        ];
        let judgments: Vec<Judgment> = scores
            .iter()
            .map(|(id, s)| Judgment {
                sample_id: id.clone(),
                score: Some(*s),
                details: serde_json::Value::Null,
            })
            .collect();
        let lookup = |id: &str| [&a, &b, &c].into_iter().find(|x| x.id == id);
        let judged = |id: &str| judgments.iter().find(|j| j.sample_id == id);
        let pair = |chosen: (&str, FfiSource), rejected: (&str, FfiSource)| FfiPair {
            prompt_id: "p1".into(),
            chosen: side(chosen.0, chosen.1, Some(5.0)),
            rejected: side(rejected.0, rejected.1, Some(0.0)),
            note: "".into(),
        };
        let cur = FfiSource::Current;
        // Two samples with one text (trailing whitespace aside), and the reference with it.
        let e = pair(("p1/current/0", cur), ("p1/current/1", cur))
            .to_preference_pair(&prompt, lookup, judged, "x")
            .unwrap_err();
        assert!(matches!(e, PairError::SameText { .. }), "{e}");
        let e = pair(
            ("p1/reference", FfiSource::Reference),
            ("p1/current/0", cur),
        )
        .to_preference_pair(&prompt, lookup, judged, "x")
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "pair for prompt `p1`: chosen `reference` and rejected `p1/current/0` have the same text"
        );
        // Chosen below rejected by the judge's scores (the plugin's 5.0 and 0.0 are ignored).
        let e = pair(("p1/current/2", cur), ("p1/current/0", cur))
            .to_preference_pair(&prompt, lookup, judged, "x")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "pair for prompt `p1`: chosen `p1/current/2` scored 2 by the judge, below rejected `p1/current/0` (4)"
        );
        // The right way round is kept.
        let pp = pair(("p1/current/0", cur), ("p1/current/2", cur))
            .to_preference_pair(&prompt, lookup, judged, "x")
            .unwrap();
        assert_eq!((pp.chosen_score, pp.rejected_score), (Some(4.0), Some(2.0)));
    }
}
