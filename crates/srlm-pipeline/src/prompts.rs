//! Prompt pools: IFEval's prompts (fetched from PyPI), srlm/TRL JSONL, IFEval records and
//! AlpacaEval JSON, with errors naming file, line and field; and the deterministic split into
//! a held-out set plus one disjoint chunk per iteration (Wang et al. 2025, Sec. 4.1).

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::Value;
use srlm_core::PromptRecord;
use std::path::Path;

/// Errors of reading a prompt pool.
#[derive(Debug, thiserror::Error)]
pub enum PromptsError {
    /// Reading failed.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
    /// A record is malformed.
    #[error("{path}:{line}: {message}")]
    Record {
        /// The file.
        path: String,
        /// 1-based line (JSONL) or element index + 1 (JSON array).
        line: usize,
        /// What is wrong, naming the field.
        message: String,
    },
    /// The pool is too small for the requested split.
    #[error("{0}")]
    TooSmall(String),
}

/// Reads a pool: `ifeval`, `gsm8k`, `arc-challenge` (built in, fetched from PyPI) or a file.
pub fn load_pool(source: &str) -> Result<Vec<PromptRecord>, PromptsError> {
    if let Some(set) = crate::ood::OodSet::from_name(source) {
        return set.load();
    }
    let path = if source == "ifeval" {
        srlm_assets::fetch_asset(&srlm_assets::IFEVAL_PROMPTS).map_err(|e| PromptsError::Io {
            path: "ifeval".into(),
            message: e.to_string(),
        })?
    } else {
        std::path::PathBuf::from(source)
    };
    read_prompts(&path)
}

/// Reads a JSONL file (one object per line) or a JSON array file.
pub fn read_prompts(path: &Path) -> Result<Vec<PromptRecord>, PromptsError> {
    let p = path.display().to_string();
    let text = srlm_core::read_text(path).map_err(|e| match e {
        srlm_core::JsonlError::Parse { line, message, .. } => PromptsError::Record {
            path: p.clone(),
            line,
            message,
        },
        srlm_core::JsonlError::Io { error, .. } => PromptsError::Io {
            path: p.clone(),
            message: error.to_string(),
        },
    })?;
    let trimmed = text.trim_start();
    let mut records = Vec::new();
    if trimmed.starts_with('[') {
        let arr: Vec<Value> = serde_json::from_str(trimmed).map_err(|e| PromptsError::Record {
            path: p.clone(),
            line: e.line(),
            message: e.to_string(),
        })?;
        for (i, v) in arr.into_iter().enumerate() {
            records.push(record(v, i + 1).map_err(|message| PromptsError::Record {
                path: p.clone(),
                line: i + 1,
                message,
            })?);
        }
    } else {
        for (line, text) in srlm_core::jsonl_lines(&text) {
            let err = |message| PromptsError::Record {
                path: p.clone(),
                line,
                message,
            };
            let v: Value = serde_json::from_str(text).map_err(|e| err(e.to_string()))?;
            records.push(record(v, line).map_err(err)?);
        }
    }
    if records.is_empty() {
        return Err(PromptsError::TooSmall(format!("{p}: no prompts")));
    }
    let mut seen = std::collections::HashSet::new();
    for r in &records {
        if !seen.insert(r.id.clone()) {
            return Err(PromptsError::TooSmall(format!(
                "{p}: duplicate prompt id `{}`",
                r.id
            )));
        }
    }
    Ok(records)
}

fn record(v: Value, line: usize) -> Result<PromptRecord, String> {
    let Value::Object(mut obj) = v else {
        return Err("expected a JSON object".into());
    };
    let prompt = match obj.remove("prompt").or_else(|| obj.remove("instruction")) {
        Some(Value::String(s)) if !s.trim().is_empty() => s,
        Some(Value::String(_)) => return Err("field `prompt` is empty".into()),
        Some(_) => return Err("field `prompt` must be a string".into()),
        None => return Err("missing field `prompt` (or `instruction`)".into()),
    };
    let id = match obj.remove("id").or_else(|| obj.remove("key")) {
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err("field `id` must be a string or number".into()),
        None => format!("line{line}"),
    };
    let reference = match obj
        .remove("reference")
        .or_else(|| obj.remove("chosen"))
        .or_else(|| obj.remove("output"))
    {
        Some(Value::String(s)) => Some(s),
        Some(Value::Null) | None => None,
        Some(_) => return Err("field `reference` must be a string".into()),
    };
    if let Some(ids) = obj.get("instruction_id_list") {
        let n = ids
            .as_array()
            .ok_or("field `instruction_id_list` must be an array")?
            .len();
        let k = obj.get("kwargs").and_then(Value::as_array).map(Vec::len);
        if k.is_some_and(|k| k != n) {
            return Err(format!(
                "field `kwargs` has {} entries, `instruction_id_list` {n}",
                k.unwrap()
            ));
        }
    }
    let metadata = if obj.is_empty() {
        Value::Null
    } else {
        Value::Object(obj)
    };
    Ok(PromptRecord {
        id,
        prompt,
        reference,
        metadata,
    })
}

/// The split of a pool: held-out prompts and one chunk per iteration (disjoint).
#[derive(Debug, Clone)]
pub struct Split {
    /// Held-out evaluation prompts.
    pub eval: Vec<PromptRecord>,
    /// `chunks[i]` = prompts of iteration i+1.
    pub chunks: Vec<Vec<PromptRecord>>,
}

/// Shuffles the pool with `seed` and cuts `eval` held-out prompts, then `iterations` chunks of
/// `per_iteration`. Errors: [`PromptsError::TooSmall`] when the pool cannot supply them.
pub fn split(
    mut pool: Vec<PromptRecord>,
    seed: u64,
    eval: usize,
    per_iteration: usize,
    iterations: usize,
) -> Result<Split, PromptsError> {
    let need = eval + per_iteration * iterations;
    if pool.len() < need {
        return Err(PromptsError::TooSmall(format!(
            "the prompt pool has {} prompts; {eval} held-out + {iterations} × {per_iteration} per iteration need {need}",
            pool.len()
        )));
    }
    pool.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let rest = pool.split_off(eval);
    let chunks = rest
        .chunks(per_iteration)
        .take(iterations)
        .map(<[PromptRecord]>::to_vec)
        .collect();
    Ok(Split { eval: pool, chunks })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.jsonl");
        std::fs::write(&a, "{\"key\": 7, \"prompt\": \"Hi\", \"instruction_id_list\": [\"x\"], \"kwargs\": [{}]}\n\n{\"prompt\": \"Yo\", \"chosen\": \"ok\"}\n").unwrap();
        let r = read_prompts(&a).unwrap();
        assert_eq!(
            (
                r[0].id.as_str(),
                r[1].id.as_str(),
                r[1].reference.as_deref()
            ),
            ("7", "line3", Some("ok"))
        );
        assert_eq!(r[0].metadata["instruction_id_list"][0], "x");
        let b = dir.path().join("b.json");
        std::fs::write(
            &b,
            r#"[{"instruction": "Q1", "output": "A1"}, {"instruction": 5}]"#,
        )
        .unwrap();
        assert_eq!(
            read_prompts(&b).unwrap_err().to_string(),
            format!("{}:2: field `prompt` must be a string", b.display())
        );
        let c = dir.path().join("c.jsonl");
        std::fs::write(&c, "{\"prompt\": \"a\"}\n{\"text\": \"b\"}\n").unwrap();
        assert_eq!(
            read_prompts(&c).unwrap_err().to_string(),
            format!(
                "{}:2: missing field `prompt` (or `instruction`)",
                c.display()
            )
        );
    }

    #[test]
    fn split_is_disjoint_and_seeded() {
        let pool: Vec<PromptRecord> = (0..20)
            .map(|i| PromptRecord {
                id: i.to_string(),
                prompt: format!("p{i}"),
                reference: None,
                metadata: Value::Null,
            })
            .collect();
        let s = split(pool.clone(), 3, 4, 5, 3).unwrap();
        let mut ids: Vec<String> = s
            .eval
            .iter()
            .chain(s.chunks.iter().flatten())
            .map(|p| p.id.clone())
            .collect();
        assert_eq!(ids.len(), 19);
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 19);
        assert_eq!(
            split(pool.clone(), 3, 4, 5, 3).unwrap().chunks[2][0].id,
            s.chunks[2][0].id
        );
        assert!(split(pool, 3, 10, 5, 3)
            .unwrap_err()
            .to_string()
            .contains("need 25"));
    }
}
