//! Output safety: srlm never removes or replaces anything it did not create.
//!
//! Every folder srlm writes as a whole (a checkpoint, a run folder) carries a marker file,
//! [`MARKER`] (`srlm.json`: `{"srlm_output": kind, "srlm_version": …}`). Before a command does
//! any work it claims its output location:
//!
//! - [`claim_dir`]: a missing or empty folder is free; a folder holding an srlm output of the
//!   same kind may be replaced only when the user said so (`--overwrite`); a regular file, a
//!   non-empty folder without the marker, or another kind of srlm output is refused;
//! - [`claim_file`]: a missing file is free; an existing one is replaced only with
//!   `--overwrite`, never when it is one of the command's own inputs, and never when it is a
//!   folder.
//!
//! Both check that the location is writable (a probe file is created and removed in the folder
//! that will hold the output) so a command fails in its first second, not after minutes of
//! work. [`is_srlm_output`] answers whether a folder may be replaced by srlm at all; writers that
//! replace folders (checkpoints) ask it again right before they do.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The marker file's name inside an srlm output folder.
pub const MARKER: &str = "srlm.json";

/// What a marker file says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// The kind of output: `"checkpoint"`, `"run"`.
    pub srlm_output: String,
    /// The srlm version that wrote it.
    pub srlm_version: String,
}

impl Marker {
    /// A marker for an output of `kind` written by this srlm.
    pub fn new(kind: &str) -> Self {
        Marker {
            srlm_output: kind.to_string(),
            srlm_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// The marker's JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("marker serialises") + "\n"
    }
}

/// Why an output location cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A file stands where a folder is to be written.
    #[error("{}: is a file; srlm writes a folder ({kind}) there and never replaces a file it did not create: choose another location", path.display())]
    FileInTheWay {
        /// The location.
        path: PathBuf,
        /// What was to be written.
        kind: String,
    },
    /// A folder stands where a file is to be written.
    #[error("{}: is a folder; expected a file name", path.display())]
    FolderInTheWay {
        /// The location.
        path: PathBuf,
    },
    /// A non-empty folder that srlm did not create.
    #[error("{}: folder is not empty and was not written by srlm (no {MARKER}); srlm never removes or replaces what it did not create: choose a new or empty folder", path.display())]
    NotOurs {
        /// The folder.
        path: PathBuf,
    },
    /// An srlm output of another kind.
    #[error("{}: holds an srlm {found} output, not a {kind}: choose another location", path.display())]
    OtherKind {
        /// The folder.
        path: PathBuf,
        /// The kind found.
        found: String,
        /// The kind to be written.
        kind: String,
    },
    /// An earlier output, replaced only on request.
    #[error("{}: already exists (an earlier srlm {kind}); pass --overwrite to replace it", path.display())]
    Exists {
        /// The location.
        path: PathBuf,
        /// The kind of output.
        kind: String,
    },
    /// The output would replace one of the command's inputs.
    #[error("{}: is also an input of this command ({what}); write the output elsewhere", path.display())]
    IsInput {
        /// The location.
        path: PathBuf,
        /// Which input.
        what: String,
    },
    /// The location cannot be written.
    #[error("{}: cannot write here: {error}", path.display())]
    NotWritable {
        /// The folder that was probed.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },
}

/// What a folder is, as far as srlm's outputs go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirState {
    /// Nothing there.
    Missing,
    /// An empty folder.
    Empty,
    /// An srlm output with this marker.
    Ours(Marker),
    /// A regular file (or something else that is not a folder).
    NotADir,
    /// A non-empty folder without a readable marker.
    Foreign,
    /// A folder that cannot be listed (the reason).
    Unreadable(String),
}

/// What is at `dir`.
pub fn dir_state(dir: &Path) -> DirState {
    let Ok(meta) = std::fs::metadata(dir) else {
        return if dir.symlink_metadata().is_ok() {
            DirState::NotADir // a dangling link
        } else {
            DirState::Missing
        };
    };
    if !meta.is_dir() {
        return DirState::NotADir;
    }
    let marker = std::fs::read_to_string(dir.join(MARKER))
        .ok()
        .and_then(|t| serde_json::from_str::<Marker>(&t).ok());
    if let Some(m) = marker {
        return DirState::Ours(m);
    }
    match std::fs::read_dir(dir).map(|mut entries| entries.next().is_none()) {
        Ok(true) => DirState::Empty,
        Ok(false) => DirState::Foreign,
        Err(e) => DirState::Unreadable(e.to_string()),
    }
}

/// Whether `dir` is an srlm output of `kind` (so srlm may replace it).
pub fn is_srlm_output(dir: &Path, kind: &str) -> bool {
    matches!(dir_state(dir), DirState::Ours(m) if m.srlm_output == kind)
}

/// Claims folder `dir` for an output of `kind` (see the module doc). Returns whether an earlier
/// srlm output is there (to be replaced).
///
/// # Errors
/// [`OutputError::FileInTheWay`], [`OutputError::NotOurs`], [`OutputError::OtherKind`],
/// [`OutputError::Exists`] (without `overwrite`), [`OutputError::NotWritable`].
pub fn claim_dir(dir: &Path, kind: &str, overwrite: bool) -> Result<bool, OutputError> {
    let path = dir.to_path_buf();
    let replacing = match dir_state(dir) {
        DirState::Missing | DirState::Empty => false,
        DirState::NotADir => {
            return Err(OutputError::FileInTheWay {
                path,
                kind: kind.into(),
            })
        }
        DirState::Foreign => return Err(OutputError::NotOurs { path }),
        DirState::Unreadable(reason) => {
            return Err(OutputError::NotWritable {
                path,
                error: std::io::Error::other(reason),
            })
        }
        DirState::Ours(m) if m.srlm_output != kind => {
            return Err(OutputError::OtherKind {
                path,
                found: m.srlm_output,
                kind: kind.into(),
            })
        }
        DirState::Ours(_) if !overwrite => {
            return Err(OutputError::Exists {
                path,
                kind: kind.into(),
            })
        }
        DirState::Ours(_) => true,
    };
    probe_writable(&parent_of(dir))?;
    Ok(replacing)
}

/// Claims file `path` for an output; `inputs` are the command's input files (named in the error
/// when one of them is `path`). Returns whether a file is there (to be replaced).
///
/// # Errors
/// [`OutputError::FolderInTheWay`], [`OutputError::IsInput`], [`OutputError::Exists`]
/// (without `overwrite`), [`OutputError::NotWritable`].
pub fn claim_file(
    path: &Path,
    inputs: &[(&str, &Path)],
    overwrite: bool,
) -> Result<bool, OutputError> {
    let at = path.to_path_buf();
    if path.is_dir() {
        return Err(OutputError::FolderInTheWay { path: at });
    }
    for (what, input) in inputs {
        if same_file(path, input) {
            return Err(OutputError::IsInput {
                path: at,
                what: what.to_string(),
            });
        }
    }
    let exists = path.symlink_metadata().is_ok();
    if exists && !overwrite {
        return Err(OutputError::Exists {
            path: at,
            kind: "output file".into(),
        });
    }
    probe_writable(&parent_of(path))?;
    Ok(exists)
}

/// Writes the marker of `kind` into `dir` (atomically).
///
/// # Errors
/// [`crate::JsonlError::Io`] naming the marker file.
pub fn write_marker(dir: &Path, kind: &str) -> Result<(), crate::JsonlError> {
    crate::write_atomic(&dir.join(MARKER), Marker::new(kind).to_json().as_bytes())
}

/// Whether `a` and `b` name the same existing file (or the same path when neither exists).
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Whether `inner` is `outer` or lies inside it (after resolving links where they exist).
pub fn is_within(inner: &Path, outer: &Path) -> bool {
    // A path that does not exist yet (an output about to be written) resolves through its
    // folder, so `DIR/new.gguf` is seen inside `DIR` however either is spelled.
    let resolve = |p: &Path| {
        p.canonicalize()
            .ok()
            .or_else(|| {
                let parent = p.parent().filter(|d| !d.as_os_str().is_empty());
                let dir = parent.unwrap_or(Path::new(".")).canonicalize().ok()?;
                Some(dir.join(p.file_name()?))
            })
            .unwrap_or_else(|| p.to_path_buf())
    };
    resolve(inner).starts_with(resolve(outer))
}

/// Whether a process with this id runs: on Linux, `/proc/<pid>` exists; elsewhere assumed
/// (so nothing of a possibly live process is ever removed). What srlm asks before it removes a
/// dead writer's temporaries or names the holder of a run folder's lock.
pub fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

/// The folder that holds `path` (`.` for a bare name).
fn parent_of(path: &Path) -> PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// Creates `dir` (and its parents) and a probe file in it, then removes the probe.
fn probe_writable(dir: &Path) -> Result<(), OutputError> {
    let err = |error| OutputError::NotWritable {
        path: dir.to_path_buf(),
        error,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let probe = dir.join(format!(".srlm-probe-{}", std::process::id()));
    // `create_new`: never truncates (and then removes) a file that happens to have this name.
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(e)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("srlm-output-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn folders_are_claimed_only_when_free_or_ours() {
        let root = tmp("dirs");
        // Missing and empty folders are free.
        assert!(!claim_dir(&root.join("new/deeper"), "checkpoint", false).unwrap());
        std::fs::create_dir(root.join("empty")).unwrap();
        assert!(!claim_dir(&root.join("empty"), "checkpoint", false).unwrap());
        // A user's folder is refused, with or without --overwrite, and left as it was.
        let user = root.join("user");
        std::fs::create_dir(&user).unwrap();
        std::fs::write(user.join("notes.txt"), "mine").unwrap();
        for overwrite in [false, true] {
            let e = claim_dir(&user, "checkpoint", overwrite).unwrap_err();
            assert!(matches!(e, OutputError::NotOurs { .. }), "{e}");
            assert!(e.to_string().contains("not written by srlm"), "{e}");
        }
        assert_eq!(
            std::fs::read_to_string(user.join("notes.txt")).unwrap(),
            "mine"
        );
        // A file is refused.
        std::fs::write(root.join("file"), "x").unwrap();
        let e = claim_dir(&root.join("file"), "checkpoint", true).unwrap_err();
        assert!(matches!(e, OutputError::FileInTheWay { .. }), "{e}");
        // An earlier srlm output: only with --overwrite, and only of the same kind.
        let ours = root.join("ours");
        std::fs::create_dir(&ours).unwrap();
        write_marker(&ours, "checkpoint").unwrap();
        let e = claim_dir(&ours, "checkpoint", false).unwrap_err();
        assert!(e.to_string().contains("--overwrite"), "{e}");
        assert!(claim_dir(&ours, "checkpoint", true).unwrap());
        let e = claim_dir(&ours, "run", true).unwrap_err();
        assert!(matches!(e, OutputError::OtherKind { .. }), "{e}");
        assert!(is_srlm_output(&ours, "checkpoint"));
        assert!(!is_srlm_output(&user, "checkpoint"));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn files_are_not_replaced_without_overwrite_and_never_an_input() {
        let root = tmp("files");
        let input = root.join("pairs.jsonl");
        std::fs::write(&input, "{}\n").unwrap();
        let out = root.join("out.jsonl");
        assert!(!claim_file(&out, &[("--input", &input)], false).unwrap());
        std::fs::write(&out, "earlier").unwrap();
        assert!(matches!(
            claim_file(&out, &[], false).unwrap_err(),
            OutputError::Exists { .. }
        ));
        assert!(claim_file(&out, &[], true).unwrap());
        // The input itself, also spelled differently.
        let other_spelling = root.join(".").join("pairs.jsonl");
        let e = claim_file(&other_spelling, &[("--input", &input)], true).unwrap_err();
        assert!(e.to_string().contains("also an input"), "{e}");
        assert!(matches!(
            claim_file(&root, &[], true).unwrap_err(),
            OutputError::FolderInTheWay { .. }
        ));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn an_unwritable_location_fails_before_any_work() {
        // A folder cannot be made under a regular file (for root too, unlike permissions).
        let root = tmp("ro");
        std::fs::write(root.join("plain"), "x").unwrap();
        let e = claim_dir(&root.join("plain/ck"), "checkpoint", false).unwrap_err();
        assert!(matches!(e, OutputError::NotWritable { .. }), "{e}");
        let e = claim_file(&root.join("plain/f.jsonl"), &[], false).unwrap_err();
        assert!(e.to_string().contains("cannot write here"), "{e}");
        std::fs::remove_dir_all(root).unwrap();
    }
}
