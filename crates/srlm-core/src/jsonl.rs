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

/// Reads a UTF-8 text file: a leading byte-order mark is dropped; invalid UTF-8 is an error
/// naming the file, the 1-based line and the byte column.
///
/// # Errors
/// [`JsonlError::Io`], [`JsonlError::Parse`] for invalid UTF-8.
pub fn read_text(path: &Path) -> Result<String, JsonlError> {
    let bytes = std::fs::read(path).map_err(|error| JsonlError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    match std::str::from_utf8(body) {
        Ok(text) => Ok(text.to_string()),
        Err(e) => {
            let before = &body[..e.valid_up_to()];
            let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
            let column = 1 + before.iter().rev().take_while(|&&b| b != b'\n').count();
            Err(JsonlError::Parse {
                path: path.to_path_buf(),
                line,
                message: format!("byte column {column}: not valid UTF-8"),
            })
        }
    }
}

/// Reads one record per non-empty line. Errors name the file, the 1-based line and the field.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, JsonlError> {
    let text = read_text(path)?;
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
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    // A failed write (a full disk) leaves no temporary file behind.
    if let Err(error) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(error));
    }
    Ok(())
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
