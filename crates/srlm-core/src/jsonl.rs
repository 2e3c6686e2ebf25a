//! JSONL reading with file/line/field errors, and atomic writes (temporary file, then rename).

use serde::{de::DeserializeOwned, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Errors of [`read_jsonl`] and the atomic writers.
#[derive(Debug, thiserror::Error)]
pub enum JsonlError {
    /// The file could not be opened, read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
    /// A line is not valid JSON or does not fit the record type; `message` names the field.
    #[error("{path}:{line}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong (serde's message, which names the missing or mistyped field).
        message: String,
    },
}

/// The records of a JSONL text: every non-blank line with its 1-based line number. The one
/// loop over JSONL lines; readers with their own per-record checks use it directly.
pub fn jsonl_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i + 1, l))
}

/// Reads one record per non-empty line. Errors name the file, the 1-based line and the field.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, JsonlError> {
    let text = std::fs::read_to_string(path).map_err(|error| JsonlError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    jsonl_lines(&text)
        .map(|(line, record)| {
            serde_json::from_str(record).map_err(|e| JsonlError::Parse {
                path: path.to_path_buf(),
                line,
                message: e.to_string(),
            })
        })
        .collect()
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, fsync, rename.
/// A reader never sees a half-written file; a crash leaves at most a stray `.tmp` file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), JsonlError> {
    let io = |error| JsonlError::Io {
        path: path.to_path_buf(),
        error,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)
}

/// Serialises `records` one per line and writes them with [`write_atomic`].
pub fn write_jsonl_atomic<T: Serialize>(path: &Path, records: &[T]) -> Result<(), JsonlError> {
    let mut buf = Vec::new();
    for r in records {
        serde_json::to_writer(&mut buf, r).expect("records serialise to JSON");
        buf.push(b'\n');
    }
    write_atomic(path, &buf)
}

#[cfg(test)]
mod tests {
    #[test]
    fn jsonl_lines_skips_blank_lines_and_counts_from_one() {
        let got: Vec<(usize, &str)> = super::jsonl_lines("{}\n\n  \n{\"a\":1}\n").collect();
        assert_eq!(got, vec![(1, "{}"), (4, "{\"a\":1}")]);
    }

    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Rec {
        prompt: String,
    }

    #[test]
    fn parse_error_names_file_line_and_field() {
        let dir = std::env::temp_dir().join(format!("srlm-core-jsonl-{}", std::process::id()));
        let p = dir.join("bad.jsonl");
        write_atomic(&p, b"{\"prompt\":\"a\"}\n\n{\"promt\":\"b\"}\n").unwrap();
        let err = read_jsonl::<Rec>(&p).unwrap_err().to_string();
        assert!(err.contains("bad.jsonl:3:"), "{err}");
        assert!(err.contains("missing field `prompt`"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
