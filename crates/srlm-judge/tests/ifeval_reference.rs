//! Agreement with Google's reference IFEval checker on `tests/fixtures/ifeval-reference-verdicts.jsonl`
//! (924 judged responses, per-instruction strict and loose verdicts; see `tests/fixtures/README.md`).
//!
//! Every verdict must agree except:
//! - language-dependent ones (`language:response_language`, and `change_case:english_capital` /
//!   `english_lowercase`, whose reference also asks `langdetect` whether the text is English):
//!   srlm ports `langdetect` with the fixture's seed (0) and CPython's random number generator,
//!   which reproduces them, but they hang on floating-point details of the reference's Python
//!   (`sum()`, libm), so they are counted apart, printed and held to [`LANGUAGE_LOWER_BOUND`]
//!   (now all 209; `whatlang`, before, agreed on 192/209 strict and 190/209 loose);
//! - the named exceptions in [`KNOWN_DIFFERENCES`], each with its reason.
//!
//! IFEval's four standard accuracies ([`IfevalAccuracy`]) over the fixture are checked
//! against the numbers Google's `print_report` gives on the reference verdicts
//! ([`REFERENCE_ACCURACY`]).

use srlm_judge::ifeval::{evaluate, parse_instructions, IfevalAccuracy, InstructionResult};
use std::path::PathBuf;

/// (record key, instruction id, reason): verdicts where srlm deliberately differs.
const KNOWN_DIFFERENCES: &[(u64, &str, &str)] = &[(
    1122,
    "keywords:letter_frequency",
    "kwargs letter is '#': the reference replaces any non-letter by a *random* letter \
     (LetterFrequencyChecker.build_description), so its verdicts are noise (it even says strict \
     true / loose false on the same text); srlm counts '#' literally",
)];

fn fixture() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/ifeval-reference-verdicts.jsonl");
    assert!(
        p.is_file(),
        "IFEval reference fixture {} missing",
        p.display()
    );
    p
}

fn language_dependent(id: &str) -> bool {
    matches!(
        id,
        "language:response_language"
            | "change_case:english_capital"
            | "change_case:english_lowercase"
    )
}

#[derive(Default)]
struct Tally {
    total: usize,
    agree: usize,
}

impl Tally {
    fn add(&mut self, ok: bool) {
        self.total += 1;
        self.agree += usize::from(ok);
    }
    fn rate(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            self.agree as f64 / self.total as f64
        }
    }
}

#[test]
fn agrees_with_reference_verdicts() {
    let text = std::fs::read_to_string(fixture()).unwrap();
    let (mut strict, mut loose, mut lang_strict, mut lang_loose, mut known) = (
        Tally::default(),
        Tally::default(),
        Tally::default(),
        Tally::default(),
        0usize,
    );
    let mut unexpected = Vec::new();
    let mut lang_misses = Vec::new();
    let mut records = 0;
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        records += 1;
        let rec: serde_json::Value = serde_json::from_str(line).unwrap();
        let at = format!("fixture:{}", n + 1);
        let instructions = parse_instructions(&rec, &at).unwrap();
        let response = rec["response"].as_str().unwrap();
        let results = evaluate(response, &instructions).unwrap_or_else(|e| panic!("{at}: {e}"));
        let key = rec["key"].as_u64().unwrap();
        let variant = rec["variant"].as_str().unwrap();
        for (i, r) in results.iter().enumerate() {
            let want_s = rec["strict"][i].as_bool().unwrap();
            let want_l = rec["loose"][i].as_bool().unwrap();
            if language_dependent(&r.id) {
                lang_strict.add(r.strict == want_s);
                lang_loose.add(r.loose == want_l);
                if r.strict != want_s || r.loose != want_l {
                    lang_misses.push(format!(
                        "key {key} {variant} {}: ours {}/{} ref {want_s}/{want_l}",
                        r.id, r.strict, r.loose
                    ));
                }
                continue;
            }
            if KNOWN_DIFFERENCES
                .iter()
                .any(|(k, id, _)| *k == key && *id == r.id)
            {
                known += 1;
                continue;
            }
            strict.add(r.strict == want_s);
            loose.add(r.loose == want_l);
            if r.strict != want_s || r.loose != want_l {
                unexpected.push(format!(
                    "{at} key {key} variant {variant} {}: ours strict {} loose {}, reference strict {want_s} loose {want_l}\n  response: {:?}",
                    r.id, r.strict, r.loose, response.chars().take(300).collect::<String>()
                ));
            }
        }
    }
    println!("IFEval reference fixture: {records} records");
    println!(
        "  non-language verdicts: strict {}/{} ({:.2}%), loose {}/{} ({:.2}%), {known} named exceptions skipped",
        strict.agree, strict.total, 100.0 * strict.rate(), loose.agree, loose.total, 100.0 * loose.rate()
    );
    println!(
        "  language-dependent verdicts (langdetect port vs langdetect): strict {}/{} ({:.2}%), loose {}/{} ({:.2}%)",
        lang_strict.agree, lang_strict.total, 100.0 * lang_strict.rate(), lang_loose.agree, lang_loose.total, 100.0 * lang_loose.rate()
    );
    for m in &lang_misses {
        println!("    language difference: {m}");
    }
    assert_eq!(records, 924);
    assert!(
        unexpected.is_empty(),
        "{} unexpected disagreements:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
    assert!(
        lang_strict.rate() >= LANGUAGE_LOWER_BOUND && lang_loose.rate() >= LANGUAGE_LOWER_BOUND
    );
}

/// Lower bound on the agreement of language-dependent verdicts (srlm's `langdetect` port vs
/// `langdetect`): the measured 209/209 strict and loose, so any change fails. (`whatlang`, used
/// before, reached 192/209 = 91.87% strict and 190/209 = 90.91% loose: it has no Swahili and
/// misjudged short English.) The port is deterministic; only a libm whose `sin`/`cos`/`log`
/// round differently from glibc's could move a borderline verdict.
const LANGUAGE_LOWER_BOUND: f64 = 1.0;

/// IFEval's standard accuracies of the reference verdicts, as Google's
/// `evaluation_lib.print_report` computes them (prompt-level: responses following all their
/// instructions / responses; instruction-level: instructions followed / instructions), on the
/// fixture without record key 1122 (its `letter_frequency` verdicts are random, see
/// [`KNOWN_DIFFERENCES`]): (selection, responses, instructions, prompts followed strict,
/// loose, instructions followed strict, loose). `sampled` are the model's own answers.
const REFERENCE_ACCURACY: [(&str, usize, usize, usize, usize, usize, usize); 2] = [
    ("all", 913, 1353, 145, 162, 323, 341),
    ("sampled", 83, 123, 15, 16, 32, 33),
];

#[test]
fn standard_accuracies_match_the_reference() {
    let text = std::fs::read_to_string(fixture()).unwrap();
    let mut ours: Vec<(String, Vec<InstructionResult>)> = Vec::new();
    let mut reference: Vec<(String, Vec<InstructionResult>)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let rec: serde_json::Value = serde_json::from_str(line).unwrap();
        if rec["key"] == 1122 {
            continue;
        }
        let variant = rec["variant"].as_str().unwrap().to_string();
        let instructions = parse_instructions(&rec, &format!("fixture:{}", n + 1)).unwrap();
        let results = evaluate(rec["response"].as_str().unwrap(), &instructions).unwrap();
        let google: Vec<InstructionResult> = results
            .iter()
            .enumerate()
            .map(|(i, r)| InstructionResult {
                id: r.id.clone(),
                strict: rec["strict"][i].as_bool().unwrap(),
                loose: rec["loose"][i].as_bool().unwrap(),
            })
            .collect();
        ours.push((variant.clone(), results));
        reference.push((variant, google));
    }
    for (selection, p, n, ps, pl, is, il) in REFERENCE_ACCURACY {
        let pick = |rows: &[(String, Vec<InstructionResult>)]| {
            let picked: Vec<&[InstructionResult]> = rows
                .iter()
                .filter(|(v, _)| selection == "all" || v == selection)
                .map(|(_, r)| r.as_slice())
                .collect();
            IfevalAccuracy::from_results(picked).unwrap()
        };
        let (a, g) = (pick(&ours), pick(&reference));
        // The pinned numbers are the reference's own, and srlm's checker reproduces them.
        for (who, x) in [("reference", &g), ("srlm", &a)] {
            assert_eq!(
                (
                    x.prompts,
                    x.instructions,
                    x.prompts_followed_strict,
                    x.prompts_followed_loose,
                    x.instructions_followed_strict,
                    x.instructions_followed_loose
                ),
                (p, n, ps, pl, is, il),
                "{who} on {selection}"
            );
        }
        assert_eq!(a, g, "{selection}");
        assert_eq!(a.prompt_level_strict_acc, ps as f64 / p as f64);
        assert_eq!(a.inst_level_loose_acc, il as f64 / n as f64);
        println!(
            "{selection}: prompt-level strict {:.4} loose {:.4}, instruction-level strict {:.4} loose {:.4}",
            a.prompt_level_strict_acc, a.prompt_level_loose_acc, a.inst_level_strict_acc, a.inst_level_loose_acc
        );
    }
}
