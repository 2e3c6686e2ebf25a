//! When `langdetect`'s profiles cannot be read, the IFEval judge fails with an error that names
//! the package, its version and the cache folder, instead of panicking or calling every answer
//! "undecidable". Its own test binary: it points `SRLM_CACHE` at a broken cache before the
//! first detection of the process.

use serde_json::json;
use srlm_judge::ifeval::LANGDETECT_DATA;
use srlm_judge::{Judge, JudgeError, JudgeItem};

#[test]
fn unreadable_profiles_are_a_judge_error_naming_package_version_and_cache() {
    let cache = std::env::temp_dir().join(format!("srlm-broken-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    // A cache folder that looks fetched (so no download is tried) but lacks the profiles.
    let data = cache.join(LANGDETECT_DATA.cache_subdir);
    std::fs::create_dir_all(data.join("langdetect/profiles")).unwrap();
    // The only test of this binary, run before any detection: no other thread reads the
    // environment.
    std::env::set_var("SRLM_CACHE", &cache);

    let judge = srlm_judge::ifeval::IfevalJudge::new();
    let language = JudgeItem::new("Answer in German.", "Guten Morgen").with_metadata(json!({
        "instruction_id_list": ["language:response_language"], "kwargs": [{"language": "de"}]
    }));
    let lowercase = JudgeItem::new("Lowercase only.", "a cat").with_metadata(json!({
        "instruction_id_list": ["change_case:english_lowercase"], "kwargs": [{}]
    }));
    let no_comma = JudgeItem::new("No commas.", "a cat").with_metadata(json!({
        "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]
    }));
    for item in [&language, &lowercase] {
        let err = judge.judge_one(item).unwrap_err();
        assert!(matches!(err, JudgeError::Data(_)), "{err:?}");
        let message = err.to_string();
        for part in [
            "langdetect 1.0.9",
            "langdetect==1.0.9",
            &data.display().to_string(),
            "langdetect/profiles/af",
        ] {
            assert!(message.contains(part), "{message:?} lacks {part:?}");
        }
    }
    // Instructions that need no language detection are judged as before.
    assert_eq!(judge.judge_one(&no_comma).unwrap().score, Some(5.0));
    std::fs::remove_dir_all(&cache).unwrap();
}
