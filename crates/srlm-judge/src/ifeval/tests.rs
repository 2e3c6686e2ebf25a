//! Hand-written records with known verdicts for every IFEval instruction type.

use super::*;
use crate::{Judge, JudgeItem};
use serde_json::json;

/// Checks one instruction on one response: expected (strict, loose).
fn check(id: &str, kwargs: serde_json::Value, response: &str, expected: (bool, bool)) {
    let meta = json!({"instruction_id_list": [id], "kwargs": [kwargs]});
    let ins = parse_instructions(&meta, "test").unwrap_or_else(|e| panic!("{id}: {e}"));
    let r = &evaluate(response, &ins).unwrap_or_else(|e| panic!("{e}"))[0];
    assert_eq!((r.strict, r.loose), expected, "{id} on {response:?}");
}

#[test]
fn keywords() {
    let id = "keywords:existence";
    check(
        id,
        json!({"keywords": ["cat", "Dog"]}),
        "A dog chased the CATS.",
        (true, true),
    );
    check(
        id,
        json!({"keywords": ["cat", "bird"]}),
        "A dog chased the cats.",
        (false, false),
    );
    let id = "keywords:frequency";
    // substring matches count, as in the reference (re.findall)
    check(
        id,
        json!({"keyword": "the", "frequency": 3, "relation": "at least"}),
        "The theme of the day",
        (true, true),
    );
    check(
        id,
        json!({"keyword": "the", "frequency": 3, "relation": "less than"}),
        "The theme of the day",
        (false, false),
    );
    check(
        id,
        json!({"keyword": "cat", "frequency": 2, "relation": "less than"}),
        "one cat",
        (true, true),
    );
    let id = "keywords:forbidden_words";
    check(
        id,
        json!({"forbidden_words": ["bad", "ugly"]}),
        "A badge is fine.",
        (true, true),
    );
    check(
        id,
        json!({"forbidden_words": ["bad", "ugly"]}),
        "That was Bad.",
        (false, false),
    );
    let id = "keywords:letter_frequency";
    check(
        id,
        json!({"letter": "q", "let_frequency": 2, "let_relation": "at least"}),
        "Quick quiz",
        (true, true),
    );
    check(
        id,
        json!({"letter": "q", "let_frequency": 2, "let_relation": "less than"}),
        "Quick quiz",
        (false, false),
    );
    // a non-letter is counted literally (the reference draws a random letter instead)
    check(
        id,
        json!({"letter": "#", "let_frequency": 2, "let_relation": "at least"}),
        "#a #b",
        (true, true),
    );
}

#[test]
fn language() {
    let id = "language:response_language";
    check(
        id,
        json!({"language": "de"}),
        "Der schnelle braune Fuchs springt über den faulen Hund, und der Bauer schaut zu.",
        (true, true),
    );
    check(
        id,
        json!({"language": "de"}),
        "The quick brown fox jumps over the lazy dog while the farmer watches.",
        (false, false),
    );
    // nothing to detect counts as followed (the reference's LangDetectException branch)
    check(id, json!({"language": "de"}), "12345 !!!", (true, true));
}

#[test]
fn length_constraints() {
    let id = "length_constraints:number_words";
    check(
        id,
        json!({"num_words": 5, "relation": "at least"}),
        "It's 5 o'clock.",
        (true, true),
    );
    check(
        id,
        json!({"num_words": 5, "relation": "less than"}),
        "It's 5 o'clock.",
        (false, false),
    );
    check(
        id,
        json!({"num_words": 3, "relation": "less than"}),
        "Cats run.",
        (true, true),
    );
    let id = "length_constraints:number_sentences";
    check(
        id,
        json!({"num_sentences": 2, "relation": "at least"}),
        "One. Two.",
        (true, true),
    );
    check(
        id,
        json!({"num_sentences": 2, "relation": "less than"}),
        "One. Two.",
        (false, false),
    );
    let id = "length_constraints:number_paragraphs";
    check(
        id,
        json!({"num_paragraphs": 2}),
        "First part.\n***\nSecond part.",
        (true, true),
    );
    check(
        id,
        json!({"num_paragraphs": 2}),
        "First.\n***\n\n***\nSecond.",
        (false, false),
    );
    check(
        id,
        json!({"num_paragraphs": 3}),
        "First part.\n***\nSecond part.",
        (false, false),
    );
    let id = "length_constraints:nth_paragraph_first_word";
    let kw = json!({"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "Then"});
    check(
        id,
        kw.clone(),
        "Start here.\n\n\"Then, we go.",
        (true, true),
    );
    check(id, kw.clone(), "Start here.\n\nAfter that.", (false, false));
    // 3 paragraphs: strict fails; loose drops the last line and then has 2.
    check(id, kw, "Start here.\n\nThen.\n\nMore.", (false, true));
}

#[test]
fn the_loose_variants() {
    // The reference's order: as is, without '*', then first/last/both lines removed (trimmed),
    // then those three without '*'.
    assert_eq!(
        loose_variants("a\n*b*\nc"),
        [
            "a\n*b*\nc".to_string(),
            "a\nb\nc".into(),
            "*b*\nc".into(),
            "a\n*b*".into(),
            "*b*".into(),
            "b\nc".into(),
            "a\nb".into(),
            "b".into(),
        ]
    );
    // Loose accepts a response whose first line is chatter.
    check(
        "startend:quotation",
        json!({}),
        "Sure! Here it is:\n\"quoted\"",
        (false, true),
    );
}

#[test]
fn detectable_content() {
    let id = "detectable_content:number_placeholders";
    check(
        id,
        json!({"num_placeholders": 2}),
        "Dear [name], at [address].",
        (true, true),
    );
    check(
        id,
        json!({"num_placeholders": 2}),
        "Dear [name].",
        (false, false),
    );
    let id = "detectable_content:postscript";
    check(
        id,
        json!({"postscript_marker": "P.P.S"}),
        "Hi.\n\nP.P.S. bye",
        (true, true),
    );
    check(
        id,
        json!({"postscript_marker": "P.S."}),
        "Hi.\n\np. s. bye",
        (true, true),
    );
    check(
        id,
        json!({"postscript_marker": "P.S."}),
        "Hi. No postscript.",
        (false, false),
    );
    check(
        id,
        json!({"postscript_marker": "Note:"}),
        "Hi.\nnote: later",
        (true, true),
    );
}

#[test]
fn detectable_format() {
    let id = "detectable_format:number_bullet_lists";
    check(
        id,
        json!({"num_bullets": 2}),
        "* one\n- two\nthree",
        (true, true),
    );
    check(
        id,
        json!({"num_bullets": 2}),
        "* one\n** bold line\nthree",
        (false, false),
    );
    let id = "detectable_format:constrained_response";
    check(id, json!({}), "My answer is yes.", (true, true));
    check(id, json!({}), "Yes.", (false, false));
    let id = "detectable_format:number_highlighted_sections";
    check(
        id,
        json!({"num_highlights": 2}),
        "*one* and **two**",
        (true, true),
    );
    check(
        id,
        json!({"num_highlights": 2}),
        "*one* and * *",
        (false, false),
    );
    let id = "detectable_format:multiple_sections";
    check(
        id,
        json!({"section_spliter": "Section", "num_sections": 2}),
        "Section 1\nA\nSection 2\nB",
        (true, true),
    );
    check(
        id,
        json!({"section_spliter": "SECTION", "num_sections": 2}),
        "SECTION 1\nA\nSECTION X\nB",
        (false, false),
    );
    // case I2: a punctuation divider splits literally
    check(
        id,
        json!({"section_spliter": "* * *", "num_sections": 2}),
        "A b.\n* * *\nC d.",
        (true, true),
    );
    check(
        id,
        json!({"section_spliter": "* * *", "num_sections": 3}),
        "A b.\n* * *\nC d.",
        (false, false),
    );
    let id = "detectable_format:json_format";
    check(id, json!({}), "```json\n{\"a\": 1}\n```", (true, true));
    check(id, json!({}), "{\"a\": 1} trailing", (false, false));
    let id = "detectable_format:title";
    check(id, json!({}), "<<My Title>>\nBody", (true, true));
    check(id, json!({}), "<< >>\nBody", (false, false));
}

#[test]
fn combination_and_startend() {
    let id = "combination:two_responses";
    check(
        id,
        json!({}),
        "First answer.\n******\nSecond answer.",
        (true, true),
    );
    check(id, json!({}), "Same.\n******\nSame.", (false, false));
    check(id, json!({}), "One\n******\n\n******\nTwo", (false, false));
    let id = "combination:repeat_prompt";
    let kw = json!({"prompt_to_repeat": "Write a poem about cats."});
    check(
        id,
        kw.clone(),
        "write a poem about cats. Cats are soft.",
        (true, true),
    );
    check(id, kw, "Here is a poem about cats.", (false, false));
    let id = "startend:end_checker";
    check(
        id,
        json!({"end_phrase": "Any other questions?"}),
        "Done. any other questions?\"",
        (true, true),
    );
    check(
        id,
        json!({"end_phrase": "Any other questions?"}),
        "Any other questions? Bye.",
        (false, false),
    );
    let id = "startend:quotation";
    check(id, json!({}), "  \"All quoted.\"  ", (true, true));
    check(id, json!({}), "\"", (false, false));
}

#[test]
fn change_case_and_punctuation() {
    let id = "change_case:english_lowercase";
    check(
        id,
        json!({}),
        "a cat is a small furry animal that people keep as a pet.",
        (true, true),
    );
    check(
        id,
        json!({}),
        "A Cat is a small furry animal that people keep as a pet.",
        (false, false),
    );
    let id = "change_case:english_capital";
    check(
        id,
        json!({}),
        "CATS ARE THE BEST PETS IN THE WORLD.",
        (true, true),
    );
    // langdetect sees only the first letter of an all-capital word, and (seed 0) calls this
    // one Hungarian: Google's checker says not followed, and so does srlm.
    check(
        id,
        json!({}),
        "A CAT IS A SMALL FURRY ANIMAL THAT PEOPLE KEEP AS A PET.",
        (false, false),
    );
    check(
        id,
        json!({}),
        "A CAT IS a small furry animal.",
        (false, false),
    );
    let id = "change_case:capital_word_frequency";
    let kw = |n: usize, rel: &str| json!({"capital_frequency": n, "capital_relation": rel});
    check(id, kw(3, "at least"), "I DON'T like THIS.", (true, true)); // I, DO, N'T, THIS
    check(id, kw(3, "less than"), "I DON'T like THIS.", (false, false));
    let id = "punctuation:no_comma";
    check(id, json!({}), "No commas here.", (true, true));
    check(id, json!({}), "One, two.", (false, false));
}

#[test]
fn every_instruction_id_is_covered_above() {
    // Parsing every id with plausible kwargs proves the registry is complete.
    let kwargs = |id: &str| match id {
        "keywords:existence" => json!({"keywords": ["a"]}),
        "keywords:frequency" => json!({"keyword": "a", "frequency": 1, "relation": "at least"}),
        "keywords:forbidden_words" => json!({"forbidden_words": ["a"]}),
        "keywords:letter_frequency" => {
            json!({"letter": "a", "let_frequency": 1, "let_relation": "at least"})
        }
        "language:response_language" => json!({"language": "en"}),
        "length_constraints:number_sentences" => {
            json!({"num_sentences": 1, "relation": "at least"})
        }
        "length_constraints:number_paragraphs" => json!({"num_paragraphs": 1}),
        "length_constraints:number_words" => json!({"num_words": 1, "relation": "at least"}),
        "length_constraints:nth_paragraph_first_word" => {
            json!({"num_paragraphs": 1, "nth_paragraph": 1, "first_word": "a"})
        }
        "detectable_content:number_placeholders" => json!({"num_placeholders": 1}),
        "detectable_content:postscript" => json!({"postscript_marker": "P.S."}),
        "detectable_format:number_bullet_lists" => json!({"num_bullets": 1}),
        "detectable_format:number_highlighted_sections" => json!({"num_highlights": 1}),
        "detectable_format:multiple_sections" => {
            json!({"section_spliter": "Section", "num_sections": 1})
        }
        "combination:repeat_prompt" => json!({"prompt_to_repeat": "a"}),
        "startend:end_checker" => json!({"end_phrase": "a"}),
        "change_case:capital_word_frequency" => {
            json!({"capital_frequency": 1, "capital_relation": "at least"})
        }
        _ => json!({}),
    };
    for id in INSTRUCTION_IDS {
        Instruction::parse(id, &kwargs(id), "test", 0).unwrap_or_else(|e| panic!("{id}: {e}"));
    }
}

fn record(response: &str) -> JudgeItem {
    JudgeItem::new("Answer in lowercase only. What is a cat?", response).with_metadata(json!({
        "instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}]
    }))
}

#[test]
fn acceptance_lowercase_scores_5_and_0() {
    let v = IfevalJudge::new()
        .judge_batch(&[
            record("a cat is a small furry animal."),
            record("A Cat is a small furry animal."),
        ])
        .unwrap();
    assert_eq!(v[0].score, Some(5.0));
    assert_eq!(v[1].score, Some(0.0));
    assert_eq!(
        v[0].details["instructions"][0],
        json!({"id": "change_case:english_lowercase", "strict": true, "loose": true})
    );
}

#[test]
fn score_is_five_times_strict_fraction() {
    let item = JudgeItem::new("p", "no commas here but Capitals").with_metadata(json!({
        "instruction_id_list": ["punctuation:no_comma", "change_case:english_lowercase", "startend:quotation", "keywords:existence"],
        "kwargs": [{}, {}, {}, {"keywords": ["here"]}]
    }));
    let v = IfevalJudge::new().judge_one(&item).unwrap();
    assert_eq!(v.score, Some(2.5));
    assert_eq!(v.details["strict_fraction"], json!(0.5));
    assert_eq!(v.details["follow_all_strict"], json!(false));
}

#[test]
fn empty_response_is_judged_not_a_crash() {
    for response in ["", "   \n "] {
        let v = IfevalJudge::new().judge_one(&record(response)).unwrap();
        assert_eq!(v.score, Some(0.0), "{response:?}");
        assert_eq!(v.details["loose_fraction"], json!(0.0));
    }
    // Blank responses follow nothing, not even "no commas".
    check("punctuation:no_comma", json!({}), "", (false, false));
}

#[test]
fn empty_instruction_list_gets_no_score() {
    let item =
        JudgeItem::new("p", "r").with_metadata(json!({"instruction_id_list": [], "kwargs": []}));
    assert_eq!(IfevalJudge::new().judge_one(&item).unwrap().score, None);
}

#[test]
fn errors_name_origin_and_field() {
    fn check_err(meta: serde_json::Value, expected: &str) {
        let item = JudgeItem::new("p", "r")
            .with_metadata(meta)
            .with_origin("in.jsonl:7");
        let err = IfevalJudge::new().judge_one(&item).unwrap_err().to_string();
        assert!(
            err.contains(expected),
            "got {err:?}, expected it to contain {expected:?}"
        );
    }
    check_err(json!({"instruction_id_list": ["keywords:nope"], "kwargs": [{}]}), "in.jsonl:7: field `instruction_id_list[0]`: unknown IFEval instruction id \"keywords:nope\"");
    check_err(
        json!({"instruction_id_list": ["punctuation:no_comma", "length_constraints:number_words"], "kwargs": [{}, {"relation": "at least"}]}),
        "in.jsonl:7: field `kwargs[1].num_words`: missing",
    );
    check_err(
        json!({"instruction_id_list": ["length_constraints:number_words"], "kwargs": [{"num_words": "ten", "relation": "at least"}]}),
        "field `kwargs[0].num_words`: expected a non-negative integer",
    );
    check_err(
        json!({"instruction_id_list": ["length_constraints:number_words"], "kwargs": [{"num_words": 10, "relation": "at most"}]}),
        "field `kwargs[0].relation`: expected \"less than\" or \"at least\"",
    );
    check_err(
        json!({"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{"extra": 1}]}),
        "field `kwargs[0].extra`: unknown argument",
    );
    check_err(
        json!({"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}, {}]}),
        "field `kwargs`: has 2 entries",
    );
    check_err(
        json!({"kwargs": []}),
        "field `instruction_id_list`: missing",
    );
    // Without an origin, the batch index names the item.
    let item = JudgeItem::new("p", "r").with_metadata(json!({"instruction_id_list": [7]}));
    let err = IfevalJudge::new()
        .judge_batch(&[record("a"), item])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("item 1: field `instruction_id_list`"),
        "{err}"
    );
    // Hugging Face's copy lists unused keys as null: ignored.
    let meta =
        json!({"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{"num_words": null}]});
    assert!(parse_instructions(&meta, "x").is_ok());
}

fn verdicts(pairs: &[(bool, bool)]) -> Vec<InstructionResult> {
    pairs
        .iter()
        .map(|&(strict, loose)| InstructionResult {
            id: "punctuation:no_comma".into(),
            strict,
            loose,
        })
        .collect()
}

/// Three prompts, five instructions (and one prompt without any, left out), computed by hand:
/// prompt 1 follows both strictly; prompt 2 follows one of two strictly and both loosely;
/// prompt 3 follows nothing. Prompt-level strict 1/3, loose 2/3; instruction-level strict
/// (2 + 1 + 0)/5 = 3/5, loose (2 + 2 + 0)/5 = 4/5. (srlm's 0–5 score averages per-prompt
/// fractions instead: 5 × (1 + 1/2 + 0)/3 = 2.5, i.e. 1/2, not 3/5.)
#[test]
fn standard_accuracies_by_hand() {
    let rows = [
        verdicts(&[(true, true), (true, true)]),
        verdicts(&[(false, true), (true, true)]),
        verdicts(&[(false, false)]),
        verdicts(&[]),
    ];
    let a = IfevalAccuracy::from_results(rows.iter().map(Vec::as_slice)).unwrap();
    assert_eq!(
        (
            a.prompts,
            a.instructions,
            a.prompts_followed_strict,
            a.prompts_followed_loose,
            a.instructions_followed_strict,
            a.instructions_followed_loose
        ),
        (3, 5, 1, 2, 3, 4)
    );
    assert_eq!(a.prompt_level_strict_acc, 1.0 / 3.0);
    assert_eq!(a.inst_level_strict_acc, 3.0 / 5.0);
    assert_eq!(a.prompt_level_loose_acc, 2.0 / 3.0);
    assert_eq!(a.inst_level_loose_acc, 4.0 / 5.0);
    let empty: [&[InstructionResult]; 1] = [&[]];
    assert_eq!(IfevalAccuracy::from_results(empty), None);
    assert_eq!(
        IfevalAccuracy::from_results(Vec::<&[InstructionResult]>::new()),
        None
    );
}

#[test]
fn check_record_only_for_ifeval_records() {
    let meta = json!({"instruction_id_list": ["punctuation:no_comma", "startend:quotation"], "kwargs": [{}, {}]});
    let r = check_record(&meta, "no commas here", "p1")
        .unwrap()
        .unwrap();
    assert_eq!(
        r.iter().map(|x| (x.strict, x.loose)).collect::<Vec<_>>(),
        [(true, true), (false, false)]
    );
    for meta in [
        json!({}),
        json!({"instruction_id_list": null}),
        json!({"dataset": "x"}),
    ] {
        assert_eq!(check_record(&meta, "text", "p").unwrap(), None, "{meta}");
    }
    let err = check_record(
        &json!({"instruction_id_list": ["keywords:nope"]}),
        "text",
        "held-out prompt `7`",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("held-out prompt `7`") && err.contains("keywords:nope"),
        "{err}"
    );
}
