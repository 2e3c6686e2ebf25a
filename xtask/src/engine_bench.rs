//! `cargo xtask bench-engine [--config FILE] [--out DIR]`: the main job (default config, or
//! `FILE`) run twice side by side on this machine — sampling and judging in-process, then on
//! `llama-server` (`-c engine.kind=server`, 2 threads) — with wall time and the peak resident
//! memory of srlm alone and of srlm plus every process it started (the servers), sampled from
//! `/proc` every 200 ms. Prints a markdown table for `docs/benchmarks.md`, with the load
//! average at the start (benchmark on a quiet machine). Each run gets a fresh folder under
//! `DIR` (default `runs/bench-engine`), named by engine and start time.

use anyhow::{Context, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// `pid` and all its descendants.
fn tree(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …: comm may hold spaces, so split after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|x| x.1) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|v| v.parse().ok()) {
            children.entry(ppid).or_default().push(p);
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend(c);
        }
        i += 1;
    }
    out
}

struct Measured {
    wall: f64,
    peak_srlm_kib: u64,
    peak_tree_kib: u64,
    summary: String,
}

fn measure(srlm: &Path, args: &[String]) -> Result<Measured> {
    let t0 = Instant::now();
    let mut child = Command::new(srlm)
        .args(args)
        .current_dir(crate::root())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {} {args:?}", srlm.display()))?;
    let pid = child.id();
    let (mut peak_srlm, mut peak_tree) = (0, 0);
    loop {
        if let Some(status) = child.try_wait()? {
            anyhow::ensure!(status.success(), "srlm {args:?} failed: {status}");
            break;
        }
        peak_srlm = peak_srlm.max(rss_kib(pid));
        peak_tree = peak_tree.max(tree(pid).into_iter().map(rss_kib).sum());
        std::thread::sleep(Duration::from_millis(200));
    }
    let wall = t0.elapsed().as_secs_f64();
    let mut summary = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("piped"), &mut summary)?;
    Ok(Measured {
        wall,
        peak_srlm_kib: peak_srlm,
        peak_tree_kib: peak_tree,
        summary,
    })
}

/// Runs the task.
pub fn run(args: &[String]) -> Result<()> {
    let mut config: Option<String> = None;
    let mut out = PathBuf::from("runs/bench-engine");
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" => config = it.next().cloned(),
            "--out" => out = it.next().map(PathBuf::from).context("--out needs a folder")?,
            other => anyhow::bail!("unknown argument {other:?}; usage: cargo xtask bench-engine [--config FILE] [--out DIR]"),
        }
    }
    let srlm = crate::srlm_binary()?;
    crate::run(Command::new("bash").arg("scripts/install-llama-server.sh"))?;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    println!("load average at start: {}", load.trim());
    let mut rows = Vec::new();
    for (label, extra) in [
        ("in-process", vec![]),
        (
            "llama-server",
            vec![
                "-c".to_string(),
                "engine.kind=server".into(),
                "-c".into(),
                "engine.threads=2".into(),
            ],
        ),
    ] {
        let dir = out.join(format!("{label}-{stamp}"));
        let mut a = vec!["run".to_string()];
        if let Some(c) = &config {
            a.extend(["--config".into(), c.clone()]);
        }
        a.extend(extra);
        a.extend(["--out".into(), dir.display().to_string()]);
        println!("running: srlm {}", a.join(" "));
        let m = measure(&srlm, &a)?;
        print!("{}", m.summary);
        rows.push((label, m, dir));
    }
    println!("\n| engine | wall | peak RSS, srlm | peak RSS, srlm + servers | summary |");
    println!("|---|---|---|---|---|");
    for (label, m, dir) in &rows {
        let score = m
            .summary
            .lines()
            .find(|l| l.starts_with("held-out"))
            .unwrap_or("")
            .to_string();
        let pairs = m
            .summary
            .lines()
            .find(|l| l.starts_with("pairs kept"))
            .unwrap_or("")
            .to_string();
        println!(
            "| {label} | {:.1} s | {:.2} GB | {:.2} GB | {score}; {pairs} ({}) |",
            m.wall,
            m.peak_srlm_kib as f64 * 1024.0 / 1e9,
            m.peak_tree_kib as f64 * 1024.0 / 1e9,
            dir.display()
        );
    }
    Ok(())
}
