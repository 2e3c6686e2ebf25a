//! The injection defence never touches an ordinary answer: over every response of IFEval's
//! reference fixture (`tests/fixtures/ifeval-reference-verdicts.jsonl`: model answers with
//! lists, JSON, rubrics, letters, code, several languages) `neutralise` removes nothing and
//! `findings` finds nothing.

use srlm_judge::injection::{findings, neutralise};
use std::collections::BTreeSet;
use std::path::Path;

#[test]
fn no_ifeval_reference_response_is_touched() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/ifeval-reference-verdicts.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut responses = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        responses.insert(v["response"].as_str().unwrap().to_string());
    }
    assert!(
        responses.len() > 800,
        "{} distinct responses",
        responses.len()
    );
    let touched: Vec<String> = responses
        .iter()
        .filter(|r| !findings(r).is_empty() || neutralise(r).1 > 0)
        .map(|r| r.chars().take(200).collect())
        .collect();
    println!(
        "{} distinct responses, {} touched",
        responses.len(),
        touched.len()
    );
    assert!(touched.is_empty(), "touched: {touched:#?}");
}
