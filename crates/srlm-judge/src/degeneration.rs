//! Degeneration check: does a response repeat itself? A rule judge such as `ifeval` scores
//! fluent and broken text alike ("A: | A: | A: …" follows "no commas"), so a run can collapse
//! into loops without its judge noticing; this check is the report's guard against that
//! (Holtzman et al. 2020, arXiv 1904.09751, Sec. 4, measure degeneration by repetition; the
//! repeated-n-gram share here follows Welleck et al. 2020, arXiv 1908.04319, Sec. 6's
//! `seq-rep-n`).
//!
//! Units: words are whitespace-separated, case-folded; a share is a fraction in [0, 1].

use std::collections::HashSet;

/// The n of the n-grams [`repeated_ngram_share`] counts (word trigrams).
pub const NGRAM: usize = 3;
/// A response whose repeated-trigram share exceeds this is degenerate.
pub const DEGENERATE_ABOVE: f64 = 0.5;

/// `seq-rep-n` of Welleck et al.: 1 − (distinct word n-grams) / (word n-grams), the share of a
/// response's n-grams that repeat an earlier one; none when it has no n-gram (fewer than `n`
/// words).
pub fn repeated_ngram_share(text: &str, n: usize) -> Option<f64> {
    let words: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
    if n == 0 || words.len() < n {
        return None;
    }
    let grams: Vec<&[String]> = words.windows(n).collect();
    let distinct: HashSet<&[String]> = grams.iter().copied().collect();
    Some(1.0 - distinct.len() as f64 / grams.len() as f64)
}

/// Characters of text without spaces from which a loop inside one "word" is checked.
const CHAR_CHECK_FROM: usize = 24;

/// Whether more than half of the response's word trigrams repeat an earlier one. A response
/// with fewer than 3 words is checked on its characters instead (4-grams of the text without
/// whitespace, from 24 characters: "!!!!!!…", "abababab…"); a shorter one is not degenerate.
pub fn is_degenerate(text: &str) -> bool {
    match repeated_ngram_share(text, NGRAM) {
        Some(s) => s > DEGENERATE_ABOVE,
        None => {
            let chars: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
            if chars.len() < CHAR_CHECK_FROM {
                return false;
            }
            let grams: Vec<&[char]> = chars.windows(4).collect();
            let distinct: HashSet<&[char]> = grams.iter().copied().collect();
            1.0 - distinct.len() as f64 / grams.len() as f64 > DEGENERATE_ABOVE
        }
    }
}

/// The fraction of `texts` that are degenerate ([`is_degenerate`]); none for no texts.
pub fn degenerate_share<'t>(texts: impl IntoIterator<Item = &'t str>) -> Option<f64> {
    let (mut n, mut hits) = (0usize, 0usize);
    for t in texts {
        n += 1;
        hits += usize::from(is_degenerate(t));
    }
    (n > 0).then(|| hits as f64 / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_counted_by_hand() {
        // 8 words, 6 trigrams: (a b c) (b c a) (c a b) (a b c) (b c a) (c a b): 3 distinct.
        assert_eq!(repeated_ngram_share("a b c a b c a b", 3), Some(0.5));
        assert_eq!(repeated_ngram_share("the cat sat on the mat", 3), Some(0.0));
        // Case-folded: "A: |" and "a: |" are the same words.
        let loop_text = "A: | A: | a: | A: | A: |";
        // 10 words, 8 trigrams, 2 distinct ("a: | a:", "| a: |"): 1 − 2/8.
        assert_eq!(repeated_ngram_share(loop_text, 3), Some(0.75));
        assert!(is_degenerate(loop_text));
        assert_eq!(repeated_ngram_share("too short", 3), None);
        assert!(!is_degenerate("too short"));
        assert!(
            !is_degenerate("a b c a b c a b"),
            "exactly one half is not above it"
        );
        // One long "word" is checked on its characters.
        assert!(is_degenerate(&"!".repeat(40)));
        assert!(is_degenerate(&"ab".repeat(20)));
        assert!(!is_degenerate("Supercalifragilisticexpialidocious"));
        assert!(!is_degenerate("!!!!!!"));
    }

    #[test]
    fn the_share_of_degenerate_texts() {
        let texts = [
            "A: | A: | A: | A: | A: |",
            "Paris is the capital of France.",
            "ok",
        ];
        assert_eq!(degenerate_share(texts), Some(1.0 / 3.0));
        assert_eq!(degenerate_share([]), None);
    }
}
