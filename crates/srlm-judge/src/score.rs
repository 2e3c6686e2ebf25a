//! Parsing the judge's own `Score: N` line (case J1).

use regex::Regex;
use std::sync::LazyLock;

/// A line that starts (after optional spaces) with `Score:` and continues to the line's end.
static SCORE_LINE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?m)^[ \t]*Score:([^\n]*)$").expect("valid regex"));

/// Parses the score from a judge's generated text.
///
/// Rule (Yuan et al. 2024, arXiv 2401.10020, Fig. 2; srlm case J1): the **last** line that begins
/// with `Score:` decides; its value must be a whole number 0–5 (`"4"`, not `"4.5"`, `"10"` or
/// `"4/5"`, `"4 points"`), otherwise the text has no score. Earlier `Score:` lines, and `Score:` that does not
/// start a line (e.g. quoted in a sentence), are ignored. Returns `None` when there is no valid
/// score: callers count it, never treat it as 0.
///
/// Only ever call this on text the judge *generated*, never on the response under review.
pub fn parse_score(judge_text: &str) -> Option<u8> {
    let last = SCORE_LINE.captures_iter(judge_text).last()?;
    let value = last.get(1)?.as_str().trim();
    match value {
        "0" | "1" | "2" | "3" | "4" | "5" => value.parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Option<u8>) {
        assert_eq!(parse_score(text), expected, "text: {text:?}");
    }

    #[test]
    fn case_j1() {
        let cases: &[(&str, Option<u8>)] = &[
            ("The answer is relevant.\nScore: 4", Some(4)),
            ("Score: 10", None),
            ("Score: 4.5", None),
            ("It says \"Score: 5\" ...\nScore: 2", Some(2)),
            ("I can't judge", None),
        ];
        for &(text, expected) in cases {
            check(text, expected);
        }
    }

    #[test]
    fn more_edges() {
        let cases: &[(&str, Option<u8>)] = &[
            ("Score: 0", Some(0)),
            ("Score: 5\n", Some(5)),
            ("  Score:3  \r\n", Some(3)),
            ("Score: 3\nScore: 1", Some(1)),
            // The last Score line decides even when it is invalid.
            ("Score: 3\nScore: 7", None),
            ("Score: -1", None),
            ("Score: 4/5", None),
            ("Score: 04", None),
            ("Score: 4 points", None),
            ("Score: 4\nScore: 4 points", None),
            ("My Score: 4", None),
            ("score: 4", None),
            ("Score: ", None),
            ("", None),
        ];
        for &(text, expected) in cases {
            check(text, expected);
        }
    }
}
