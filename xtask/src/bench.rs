//! `cargo xtask bench [--quick | --config FILE] [--seeds N] [--out DIR]`: the strategy
//! comparison (`--config configs/study-cpu.toml`: the CPU study's setting, docs/study.md).
//!
//! `--seeds N` runs every strategy under seeds 1..=N (folders `<strategy>-seed<k>`), and the
//! comparison adds, per strategy, the seed-by-seed paired difference to self-rewarding, pooled
//! over seeds (srlm_pipeline::compare).
//!
//! Builds the release `srlm`, then runs the same config (model, prompts, seed, K) under five
//! settings, one run folder each under `DIR`:
//!
//! | folder | command-line strategy |
//! |---|---|
//! | `self-rewarding` | `--strategy self-rewarding` |
//! | `temporal` | `--strategy temporal` |
//! | `temporal-past-only` | `--strategy temporal --set future_guided_chosen=false` |
//! | `temporal-future-only` | `--strategy temporal --set anchored_rejection=false` |
//! | `self-rewarding-4-iterations` | `--strategy self-rewarding -c iterations=4` (the paper's comparable-compute baseline for 2 TSR iterations) |
//!
//! with `--config configs/bench.toml` (`configs/bench-quick.toml` with `--quick`), and ends
//! with `srlm compare <the five folders> --out DIR`, which prints the table and writes
//! `DIR/comparison.md` and `DIR/plots/`. `DIR` defaults to `runs/bench` (`runs/bench-quick`).
//! A run folder that already holds a `config.json` is continued with `srlm run --resume`
//! (finished work is replayed from its cache), so an interrupted bench picks up where it
//! stopped; delete `DIR` to start over.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// One strategy run of the bench.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchRun {
    /// The run folder's name under the bench folder.
    pub label: &'static str,
    /// `--strategy`.
    pub strategy: &'static str,
    /// `--set key=value` options.
    pub set: &'static [&'static str],
    /// `-c key=value` config overrides.
    pub config: &'static [&'static str],
}

/// The strategies compared, in table order. The last is the paper's "comparable compute"
/// baseline (Wang et al. 2025, Sec. 4.2: 2 TSR iterations against about 4–5 of
/// Self-Rewarding): Self-Rewarding with 4 iterations (a fresh chunk of prompts each), twice
/// `configs/bench.toml`'s 2 (four times `--quick`'s 1; with `--config`, 4 whatever it says).
pub const RUNS: [BenchRun; 5] = [
    BenchRun {
        label: "self-rewarding",
        strategy: "self-rewarding",
        set: &[],
        config: &[],
    },
    BenchRun {
        label: "temporal",
        strategy: "temporal",
        set: &[],
        config: &[],
    },
    BenchRun {
        label: "temporal-past-only",
        strategy: "temporal",
        set: &["future_guided_chosen=false"],
        config: &[],
    },
    BenchRun {
        label: "temporal-future-only",
        strategy: "temporal",
        set: &["anchored_rejection=false"],
        config: &[],
    },
    BenchRun {
        label: "self-rewarding-4-iterations",
        strategy: "self-rewarding",
        set: &[],
        config: &["iterations=4"],
    },
];

/// Parsed `bench` arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchArgs {
    /// `--quick`: the small config.
    pub quick: bool,
    /// `--out DIR`, if given.
    pub out: Option<PathBuf>,
    /// `--seeds N`: every strategy under seeds 1..=N (default 1: the config's seed only).
    pub seeds: u64,
    /// `--config FILE`: another config (e.g. `configs/study-cpu.toml`), relative to the
    /// workspace root.
    pub config: Option<String>,
}

const USAGE: &str = "usage: cargo xtask bench [--quick | --config FILE] [--seeds N] [--out DIR]";

/// Parses `[--quick] [--out DIR]` (also `--out=DIR`).
pub fn parse_args(args: &[String]) -> Result<BenchArgs> {
    let mut parsed = BenchArgs {
        quick: false,
        out: None,
        seeds: 1,
        config: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => parsed.quick = true,
            "--out" => {
                let dir = it
                    .next()
                    .with_context(|| format!("--out needs a folder; {USAGE}"))?;
                parsed.out = Some(PathBuf::from(dir));
            }
            "--seeds" => {
                let n = it
                    .next()
                    .with_context(|| format!("--seeds needs a count; {USAGE}"))?;
                parsed.seeds = n
                    .parse()
                    .ok()
                    .filter(|&n: &u64| n >= 1)
                    .with_context(|| format!("--seeds `{n}`: expected a whole number ≥ 1"))?;
            }
            "--config" => {
                let file = it
                    .next()
                    .with_context(|| format!("--config needs a file; {USAGE}"))?;
                parsed.config = Some(file.clone());
            }
            "-h" | "--help" => bail!("{USAGE}"),
            other => match other.strip_prefix("--out=") {
                Some(dir) => parsed.out = Some(PathBuf::from(dir)),
                None => bail!("unknown argument `{other}`; {USAGE}"),
            },
        }
    }
    Ok(parsed)
}

/// The config file, relative to the workspace root.
pub fn config_file(quick: bool) -> &'static str {
    if quick {
        "configs/bench-quick.toml"
    } else {
        "configs/bench.toml"
    }
}

/// The arguments of `srlm` for one run into `dir`: a fresh run (with `-c seed=N` when the
/// bench runs several seeds), or `--resume` when `dir` already holds a run (`config.json`).
pub fn run_args(
    run: &BenchRun,
    config: &str,
    dir: &Path,
    resume: bool,
    seed: Option<u64>,
) -> Vec<String> {
    if resume {
        return vec!["run".into(), "--resume".into(), dir.display().to_string()];
    }
    let mut args: Vec<String> = vec![
        "run".into(),
        "--config".into(),
        config.into(),
        "--strategy".into(),
        run.strategy.into(),
    ];
    for s in run.set {
        args.push("--set".into());
        args.push((*s).into());
    }
    for c in run.config {
        args.push("-c".into());
        args.push((*c).into());
    }
    if let Some(seed) = seed {
        args.push("-c".into());
        args.push(format!("seed={seed}"));
    }
    args.push("--out".into());
    args.push(dir.display().to_string());
    args
}

/// Runs the benchmark task.
pub fn run(args: &[String]) -> Result<()> {
    let args = parse_args(args)?;
    let root = crate::root();
    let config = args
        .config
        .as_deref()
        .unwrap_or_else(|| config_file(args.quick));
    if !root.join(config).is_file() {
        bail!(
            "{} is missing: the bench config",
            root.join(config).display()
        );
    }
    // A folder the user named is relative to where the command was typed; the default one
    // is under the workspace root. Commands themselves run in the workspace root.
    let out = match args.out {
        Some(dir) => std::env::current_dir()?.join(dir),
        None => root.join(match (&args.config, args.quick) {
            (Some(c), _) => format!(
                "runs/bench-{}",
                Path::new(c)
                    .file_stem()
                    .map_or("config".into(), |s| s.to_string_lossy())
            ),
            (None, true) => "runs/bench-quick".into(),
            (None, false) => "runs/bench".into(),
        }),
    };
    let srlm = crate::srlm_binary()?;
    let started = Instant::now();
    let mut dirs = Vec::new();
    let seeds: Vec<Option<u64>> = if args.seeds == 1 {
        vec![None]
    } else {
        (1..=args.seeds).map(Some).collect()
    };
    // Seed-major order: every strategy of seed 1 first, so an interrupted bench already has a
    // complete comparison for the first seeds.
    for (seed, r) in seeds.iter().flat_map(|s| RUNS.iter().map(move |r| (*s, r))) {
        let name = match seed {
            Some(s) => format!("{}-seed{s}", r.label),
            None => r.label.to_string(),
        };
        let dir = out.join(&name);
        // The one place xtask knows the run folder's layout (srlm_pipeline::run_dir::RunDir
        // owns it; xtask stays on anyhow alone): `RunDir::exists` is this test. A flag such as
        // `srlm run --continue --out DIR` (resume when DIR holds a run, else start) would let
        // srlm decide and remove it.
        let resume = dir.join("config.json").is_file();
        if resume {
            eprintln!(
                "bench: {name}: continuing {} (delete it to start over)",
                dir.display()
            );
        }
        eprintln!("bench: {name} ({config})");
        let t = Instant::now();
        // M0's samples, judgments and evaluation are the same in every strategy of a seed:
        // computed once, through a cache the runs share.
        crate::run(
            Command::new(&srlm)
                .args(run_args(r, config, &dir, resume, seed))
                .arg("--shared-cache")
                .arg(out.join("shared-cache")),
        )?;
        eprintln!("bench: {name} done in {:.0} s", t.elapsed().as_secs_f64());
        dirs.push(dir);
    }
    let mut compare = Command::new(&srlm);
    compare
        .arg("compare")
        .args(&dirs)
        .arg("--out")
        .arg(&out)
        .arg("--overwrite");
    crate::run(&mut compare)?;
    eprintln!(
        "bench: all runs in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_arguments() {
        let p = |a: &[&str]| parse_args(&strings(a));
        assert_eq!(
            p(&[]).unwrap(),
            BenchArgs {
                quick: false,
                out: None,
                seeds: 1,
                config: None
            }
        );
        assert_eq!(
            p(&["--quick", "--out", "x/y"]).unwrap(),
            BenchArgs {
                quick: true,
                out: Some("x/y".into()),
                seeds: 1,
                config: None
            }
        );
        assert_eq!(p(&["--out=z"]).unwrap().out, Some(PathBuf::from("z")));
        assert_eq!(p(&["--seeds", "3"]).unwrap().seeds, 3);
        assert_eq!(
            p(&["--config", "configs/study-cpu.toml"])
                .unwrap()
                .config
                .as_deref(),
            Some("configs/study-cpu.toml")
        );
        assert!(p(&["--seeds", "0"]).is_err());
        assert!(p(&["--out"])
            .unwrap_err()
            .to_string()
            .starts_with("--out needs a folder"));
        assert!(p(&["--fast"])
            .unwrap_err()
            .to_string()
            .starts_with("unknown argument `--fast`"));
    }

    #[test]
    fn the_runs_differ_only_in_strategy_flags_and_iterations() {
        let dir = Path::new("/b");
        let args: Vec<String> = RUNS
            .iter()
            .map(|r| run_args(r, config_file(false), &dir.join(r.label), false, None).join(" "))
            .collect();
        assert_eq!(
            args,
            [
                "run --config configs/bench.toml --strategy self-rewarding --out /b/self-rewarding",
                "run --config configs/bench.toml --strategy temporal --out /b/temporal",
                "run --config configs/bench.toml --strategy temporal --set future_guided_chosen=false --out /b/temporal-past-only",
                "run --config configs/bench.toml --strategy temporal --set anchored_rejection=false --out /b/temporal-future-only",
                "run --config configs/bench.toml --strategy self-rewarding -c iterations=4 --out /b/self-rewarding-4-iterations",
            ]
        );
        assert_eq!(
            run_args(&RUNS[0], config_file(true), dir, false, None)[2],
            "configs/bench-quick.toml"
        );
        assert_eq!(
            run_args(&RUNS[2], "c", dir, true, None).join(" "),
            "run --resume /b"
        );
        assert_eq!(
            run_args(&RUNS[1], "c", dir, false, Some(2)).join(" "),
            "run --config c --strategy temporal -c seed=2 --out /b"
        );
    }
}
