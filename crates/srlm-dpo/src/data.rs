//! Reading preference pairs in TRL's JSONL format into [`srlm_core::PreferencePair`]s.
//!
//! Accepted per line (a JSON object):
//! - *standard*: `prompt`, `chosen`, `rejected` as plain strings;
//! - *conversational*: `prompt` a list of messages `[{"role", "content"}]` and `chosen` /
//!   `rejected` lists holding the assistant turn(s);
//! - *implicit prompt* (no `prompt` field): `chosen` / `rejected` are whole conversations that
//!   share their prompt turns and end with the assistant's answer;
//! - srlm's own [`PreferencePair`] record (recognised by `prompt_id`), with scores, sample ids,
//!   token ids and provenance kept.
//!
//! Messages are normalised to srlm's vocabulary: the prompt is the content of the **last user
//! turn** (earlier turns and system messages are dropped), the response the content of the
//! **last assistant turn**. Content may be a string or a list of `{"type": "text", "text"}`
//! parts. The pair id is the record's `prompt_id`, else `id`, else `line-N`.

use crate::error::{DpoError, Result};
use serde_json::Value;
use srlm_core::PreferencePair;
use std::path::Path;

/// Reads a JSONL file of preference pairs (formats above). Errors name the file, the
/// 1-based line and the field.
pub fn read_preference_pairs(path: &Path) -> Result<Vec<PreferencePair>> {
    let text = srlm_core::read_text(path).map_err(|e| match e {
        srlm_core::JsonlError::Parse { line, message, .. } => DpoError::Data {
            path: path.to_path_buf(),
            line,
            field: "line".into(),
            message,
        },
        srlm_core::JsonlError::Io { error, .. } => DpoError::Io {
            path: path.to_path_buf(),
            source: error,
        },
    })?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |field: &str, message: String| DpoError::Data {
            path: path.to_path_buf(),
            line: i + 1,
            field: field.to_string(),
            message,
        };
        let v: Value = serde_json::from_str(line).map_err(|e| err("line", e.to_string()))?;
        let obj = v
            .as_object()
            .ok_or_else(|| err("line", "expected a JSON object".into()))?;
        if obj.contains_key("prompt_id") {
            let pair: PreferencePair =
                serde_json::from_value(v.clone()).map_err(|e| err("prompt_id", e.to_string()))?;
            out.push(pair);
            continue;
        }
        let id = match obj.get("id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => format!("line-{}", i + 1),
        };
        let prompt = match obj.get("prompt") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(msgs)) => last_turn(msgs, "user").map_err(|m| err("prompt", m))?,
            Some(_) => {
                return Err(err(
                    "prompt",
                    "expected a string or a list of messages".into(),
                ))
            }
            None => match obj.get("chosen") {
                Some(Value::Array(msgs)) => last_turn(msgs, "user").map_err(|m| {
                    err(
                        "prompt",
                        format!("missing, and no user turn in `chosen`: {m}"),
                    )
                })?,
                _ => return Err(err("prompt", "missing field".into())),
            },
        };
        let response = |field: &str| -> Result<String> {
            match obj.get(field) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(Value::Array(msgs)) => last_turn(msgs, "assistant").map_err(|m| err(field, m)),
                Some(_) => Err(err(field, "expected a string or a list of messages".into())),
                None => Err(err(field, "missing field".into())),
            }
        };
        let chosen = response("chosen")?;
        let rejected = response("rejected")?;
        out.push(PreferencePair::from_texts(id, prompt, chosen, rejected));
    }
    Ok(out)
}

/// Content of the last message with `role` in `msgs`.
fn last_turn(msgs: &[Value], role: &str) -> std::result::Result<String, String> {
    for (k, m) in msgs.iter().enumerate().rev() {
        let obj = m
            .as_object()
            .ok_or(format!("message {k} is not an object"))?;
        let r = obj
            .get("role")
            .and_then(Value::as_str)
            .ok_or(format!("message {k} has no `role`"))?;
        if r != role {
            continue;
        }
        return match obj.get("content") {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Array(parts)) => {
                let mut text = String::new();
                for p in parts {
                    if let Some(t) = p.get("text").and_then(Value::as_str) {
                        text.push_str(t);
                    }
                }
                Ok(text)
            }
            _ => Err(format!("message {k} has no string `content`")),
        };
    }
    Err(format!("no `{role}` message"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(lines: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pairs.jsonl");
        std::fs::write(&p, lines.join("\n")).unwrap();
        (d, p)
    }

    #[test]
    fn reads_all_formats() {
        let (_d, p) = write(&[
            r#"{"prompt":"Say hi.","chosen":"Hi!","rejected":"No."}"#,
            "",
            r#"{"id":"c","prompt":[{"role":"system","content":"Be brief."},{"role":"user","content":"Old"},{"role":"assistant","content":"x"},{"role":"user","content":"Name a color."}],"chosen":[{"role":"assistant","content":"Blue."}],"rejected":[{"role":"assistant","content":[{"type":"text","text":"Ta"},{"type":"text","text":"ble."}]}]}"#,
            r#"{"chosen":[{"role":"user","content":"Q?"},{"role":"assistant","content":"A."}],"rejected":[{"role":"user","content":"Q?"},{"role":"assistant","content":"B."}]}"#,
            r#"{"prompt_id":"p7","prompt":"P","chosen":"C","rejected":"R","chosen_token_ids":[1,2]}"#,
        ]);
        let pairs = read_preference_pairs(&p).unwrap();
        assert_eq!(pairs.len(), 4);
        assert_eq!(
            pairs[0],
            PreferencePair::from_texts("line-1", "Say hi.", "Hi!", "No.")
        );
        assert_eq!(
            pairs[1],
            PreferencePair::from_texts("c", "Name a color.", "Blue.", "Table.")
        );
        assert_eq!(
            pairs[2],
            PreferencePair::from_texts("line-4", "Q?", "A.", "B.")
        );
        assert_eq!(pairs[3].prompt_id, "p7");
        assert_eq!(pairs[3].chosen_token_ids, Some(vec![1, 2]));
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"prompt":"a","chosen":"b"}"#,
                ":2: `rejected`: missing field",
            ),
            (
                r#"{"prompt":"a","chosen":3,"rejected":"c"}"#,
                ":2: `chosen`: expected a string",
            ),
            (
                r#"{"prompt":[{"role":"system","content":"s"}],"chosen":"b","rejected":"c"}"#,
                ":2: `prompt`: no `user` message",
            ),
            (
                r#"{"prompt":"a","chosen":[{"role":"user","content":"b"}],"rejected":"c"}"#,
                ":2: `chosen`: no `assistant` message",
            ),
            (r#"{"prompt":"a", "#, ":2: `line`:"),
            (
                r#"{"chosen":"b","rejected":"c"}"#,
                ":2: `prompt`: missing field",
            ),
        ];
        for (line, want) in cases {
            let (_d, p) = write(&[r#"{"prompt":"ok","chosen":"x","rejected":"y"}"#, line]);
            let e = read_preference_pairs(&p).unwrap_err().to_string();
            assert!(e.contains("pairs.jsonl") && e.contains(want), "{line}: {e}");
        }
    }
}
