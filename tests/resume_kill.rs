//! Resume after SIGKILL: `srlm run` on a tiny random model is killed (`Child::kill`, SIGKILL
//! on Unix) at several stages — after its first cached sample, while iteration 1's temporary
//! model is being trained, once iteration 1's pairs are written, once its checkpoint folder
//! appears, once iteration 2's pairs are written — and then `srlm run --resume DIR` finishes
//! it. The resumed folder's `iter_*/{pairs,samples,judgments}.jsonl` and `metrics.jsonl`
//! (minus `compute/wall_seconds`) must equal those of an uninterrupted run with the same
//! config, and no `cache/` entry may be unreadable.
//!
//! The strategy plugins are built by the test itself (`support/bundled_plugins.rs`, the same
//! build as `build.rs`'s) and passed with `--plugin-dir`.

#[path = "support/bundled_plugins.rs"]
mod bundled_plugins;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_srlm"))
}

fn plugin_dir() -> &'static Path {
    bundled_plugins::dir(Path::new(env!("CARGO_MANIFEST_DIR")))
}

/// Ten IFEval-style prompts whose instructions (no commas, lowercase) a random model passes or
/// fails by chance, so the judge's scores vary and pairs get kept; and the run's config.
fn setup(dir: &Path) -> PathBuf {
    let prompts = dir.join("prompts.jsonl");
    let mut s = String::new();
    for i in 0..10 {
        s += &serde_json::json!({
            "key": i, "prompt": format!("Write a short note number {i}. Do not use commas."),
            "instruction_id_list": ["punctuation:no_comma", "change_case:english_lowercase"], "kwargs": [{}, {}],
            "reference": format!("note {i}")
        })
        .to_string();
        s.push('\n');
    }
    std::fs::write(&prompts, s).unwrap();
    let config = dir.join("config.toml");
    let toml = format!(
        r#"model = "tiny-random"
strategy = "temporal"
iterations = 2
seed = 1

[prompts]
source = {:?}
per_iteration = 4
eval = 2

[sampling]
k = 3
max_new_tokens = 6

[eval]
max_new_tokens = 6

[dpo]
learning_rate = 1e-3
max_length = 128
max_prompt_length = 96
"#,
        prompts.display().to_string()
    );
    std::fs::write(&config, toml).unwrap();
    config
}

fn spawn(args: &[&std::ffi::OsStr], log: &Path) -> Child {
    Command::new(bin())
        .args(args)
        .arg("--plugin-dir")
        .arg(plugin_dir())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn start(config: &Path, out: &Path, log: &Path) -> Child {
    spawn(
        &[
            "run".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
        ],
        log,
    )
}

fn resume(out: &Path, log: &Path) {
    let status = spawn(&["run".as_ref(), "--resume".as_ref(), out.as_os_str()], log)
        .wait()
        .unwrap();
    assert!(
        status.success(),
        "resume of {} failed:\n{}",
        out.display(),
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Whether `dir` holds an entry whose name starts with `prefix` (temporary `.…tmp` files start
/// with a dot, so they never match).
fn has_entry(dir: &Path, prefix: &str) -> bool {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with(prefix))
        })
        .unwrap_or(false)
}

/// Polls the run until `reached` holds, then SIGKILLs it. Returns whether the kill interrupted
/// the run (false when it had already exited on its own).
fn kill_when(mut child: Child, out: &Path, reached: &dyn Fn(&Path) -> bool) -> bool {
    let t = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(
                status.success(),
                "the run exited with {status} before the kill point"
            );
            return false;
        }
        if reached(out) {
            child.kill().unwrap();
            let status = child.wait().unwrap();
            assert!(!status.success());
            return true;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "kill point never reached"
        );
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn metrics(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("compute/wall_seconds");
            v
        })
        .collect()
}

fn assert_same_run(full: &Path, resumed: &Path, what: &str) {
    let m = metrics(full);
    assert_eq!(m.len(), 3, "M0 + 2 iterations");
    assert_eq!(m, metrics(resumed), "{what}: metrics.jsonl");
    for it in ["iter_1", "iter_2"] {
        for f in ["pairs.jsonl", "samples.jsonl", "judgments.jsonl"] {
            let a = std::fs::read_to_string(full.join(it).join(f)).unwrap();
            let b = std::fs::read_to_string(resumed.join(it).join(f))
                .unwrap_or_else(|e| panic!("{what}: {it}/{f}: {e}"));
            assert_eq!(a, b, "{what}: {it}/{f}");
        }
    }
    // No cache entry is half-written: every `*.json` entry parses.
    for e in std::fs::read_dir(resumed.join("cache")).unwrap().flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && name.ends_with(".json") {
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(
                serde_json::from_str::<Value>(&text).is_ok(),
                "{what}: unreadable cache entry {name}"
            );
        }
    }
}

#[test]
fn sigkill_at_every_stage_then_resume_equals_an_uninterrupted_run() {
    let t0 = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let config = setup(tmp.path());
    let full = tmp.path().join("full");
    let status = start(&config, &full, &tmp.path().join("full.log"))
        .wait()
        .unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(tmp.path().join("full.log")).unwrap()
    );
    let pairs: usize = metrics(&full)[1..]
        .iter()
        .map(|m| m["pairs"].as_u64().unwrap() as usize)
        .sum();
    assert!(
        pairs > 0,
        "the uninterrupted run keeps pairs, so training stages run"
    );

    type Point = (&'static str, fn(&Path) -> bool);
    let points: [Point; 5] = [
        ("first cached sample", |d| {
            has_entry(&d.join("cache"), "sample-")
        }),
        ("first trained model in the cache", |d| {
            has_entry(&d.join("cache"), "model-")
        }),
        ("iter_1/pairs.jsonl", |d| {
            d.join("iter_1/pairs.jsonl").is_file()
        }),
        ("iter_1/checkpoint", |d| {
            d.join("iter_1/checkpoint").exists()
        }),
        ("iter_2/pairs.jsonl", |d| {
            d.join("iter_2/pairs.jsonl").is_file()
        }),
    ];
    let mut interrupted = Vec::new();
    for (n, (what, reached)) in points.iter().enumerate() {
        let out = tmp.path().join(format!("killed_{n}"));
        let child = start(&config, &out, &tmp.path().join(format!("killed_{n}.log")));
        let killed = kill_when(child, &out, reached);
        if !killed {
            // The run finished before the kill point: resuming must still reproduce it.
            eprintln!("note: the run finished before the kill point `{what}`");
        }
        interrupted.push(killed);
        resume(&out, &tmp.path().join(format!("resumed_{n}.log")));
        assert_same_run(&full, &out, what);
    }
    // Killed twice: at the first sample, then the resumed run at iteration 1's checkpoint.
    let out = tmp.path().join("killed_twice");
    let killed = kill_when(
        start(&config, &out, &tmp.path().join("twice.log")),
        &out,
        &points[0].1,
    );
    let child = spawn(
        &["run".as_ref(), "--resume".as_ref(), out.as_os_str()],
        &tmp.path().join("twice_1.log"),
    );
    let killed_again = kill_when(child, &out, &|d: &Path| {
        d.join("iter_1/checkpoint").exists()
    });
    resume(&out, &tmp.path().join("twice_2.log"));
    assert_same_run(&full, &out, "killed twice");
    eprintln!(
        "kill points interrupted: {interrupted:?}, twice: {killed}/{killed_again}; {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert!(
        interrupted.iter().filter(|k| **k).count() >= 3,
        "most kill points interrupt a running process: {interrupted:?}"
    );
}
