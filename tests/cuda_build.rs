//! The CUDA build (`--features cuda`) compiles and links here, on a machine with no GPU and no
//! system CUDA, and the binary it makes runs.
//!
//! `scripts/build-cuda.sh` installs CUDA 13.4's toolkit from PyPI's wheels into srlm's cache
//! (`scripts/install-cuda-toolkit.sh`: nvcc, cuBLAS, NVRTC, cuRAND and a link-only driver stub;
//! about 650 MB, reused by later runs) and builds `srlm` with candle's CUDA backend and kernels
//! into `<target>/cuda` (about 11 minutes from scratch on 2 cores; incremental later). The test
//! then checks that:
//! - the binary links the CUDA libraries (ELF `NEEDED`: the driver's `libcuda.so.1`, the
//!   runtime, cuBLAS, cuRAND), so the CUDA path is compiled in, not feature-gated away;
//! - started with the toolkit's libraries and the driver stub (every driver call answers
//!   CUDA_ERROR_NO_DEVICE), it warns that no CUDA device is usable, runs on the CPU, and samples
//!   exactly what the CPU build samples (same token ids, same log-probs) from the default model.
//!
//! What this cannot check without a GPU: the CUDA kernels' numbers and speed. `docs/gpu.md` says
//! what was run on a GPU and what was not.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The target folder this test binary was built into (`<target>/<profile>/deps/<test>`).
fn outer_target() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors().nth(3).expect("<target>").to_path_buf()
}

fn script_stdout(cmd: &mut Command) -> String {
    let o = cmd.output().expect("bash runs");
    assert!(
        o.status.success(),
        "{cmd:?} failed ({}):\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn needed_libraries(binary: &Path) -> Vec<String> {
    let out = script_stdout(Command::new("readelf").arg("-d").arg(binary));
    out.lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next().map(str::to_string))
        .collect()
}

fn sample(binary: &Path, env: &[(&str, String)]) -> (Vec<Value>, String) {
    let mut c = Command::new(binary);
    c.current_dir(root())
        .args([
            "generate",
            "--prompt",
            "Name three primary colours.",
            "-k",
            "2",
            "--seed",
            "7",
            "--max-new-tokens",
            "12",
            "--json",
        ])
        .env("SRLM_PROGRESS", "lines");
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().expect("srlm runs");
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{c:?} failed ({}):\n{stderr}", o.status);
    let samples = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (samples, stderr)
}

#[test]
fn the_cuda_build_compiles_links_and_falls_back_to_the_cpu_without_a_gpu() {
    let toolkit = PathBuf::from(script_stdout(
        Command::new("bash").arg(root().join("scripts/install-cuda-toolkit.sh")),
    ));
    assert!(toolkit.join("bin/nvcc").is_file(), "{}", toolkit.display());
    let binary = PathBuf::from(script_stdout(
        Command::new("bash")
            .arg(root().join("scripts/build-cuda.sh"))
            .env("SRLM_CUDA_TARGET", outer_target().join("cuda"))
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS"),
    ));
    assert!(binary.is_file(), "{} missing", binary.display());

    let needed = needed_libraries(&binary);
    for lib in [
        "libcuda.so.1",
        "libcudart.so.13",
        "libcublas.so.13",
        "libcurand.so.10",
    ] {
        assert!(needed.iter().any(|n| n == lib), "{lib} not in {needed:?}");
    }
    // The CPU build links no CUDA library.
    let cpu = PathBuf::from(env!("CARGO_BIN_EXE_srlm"));
    let cpu_needed = needed_libraries(&cpu);
    assert!(
        !cpu_needed
            .iter()
            .any(|n| n.starts_with("libcu") || n.starts_with("libnv")),
        "{cpu_needed:?}"
    );

    let lib_path = format!(
        "{}:{}",
        toolkit.join("lib").display(),
        toolkit.join("lib/stubs").display()
    );
    let (on_cuda_build, stderr) = sample(&binary, &[("LD_LIBRARY_PATH", lib_path)]);
    assert!(
        stderr.contains("built with CUDA, but no CUDA device is usable")
            && stderr.contains("running on the CPU"),
        "{stderr}"
    );
    let (on_cpu_build, _) = sample(&cpu, &[]);
    assert_eq!(on_cuda_build.len(), 2);
    for (a, b) in on_cuda_build.iter().zip(&on_cpu_build) {
        assert_eq!(a["token_ids"], b["token_ids"]);
        assert_eq!(a["logprob"], b["logprob"]);
        assert!(!a["token_ids"].as_array().unwrap().is_empty());
    }
}
