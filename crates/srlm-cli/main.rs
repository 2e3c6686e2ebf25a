//! The `srlm` command line: one subcommand per stage, each in its own module.
//!
//! | subcommand | module | what it does |
//! |---|---|---|
//! | `run`, `config` | [`cmd_run`] | the main job: iterate a strategy plugin; the config schema |
//! | `eval` | [`cmd_eval`] | score a model's greedy answers with a judge; win rate against baseline outputs |
//! | `fetch` | [`cmd_fetch`] | fetch the default model and evaluation data |
//! | `tokenize`, `logits`, `generate` | [`cmd_model`] | the model backend alone (compare with llama.cpp) |
//! | `judge` | [`cmd_judge`] | score responses with a judge |
//! | `train-dpo` | [`cmd_train`] | DPO on a preference-pair file |
//! | `plugins` | [`cmd_plugins`] | list, describe and check strategy plugins |
//! | `report`, `compare` | [`cmd_report`] | re-render a run's report; compare runs in one table |

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc malloc: sampling allocates KV-cache tensors of a growing size every
/// step, which glibc's heap does not reuse (RSS grew to 12 GB for 24 prompts × 96 tokens);
/// mimalloc keeps it flat. `main` also tells it to keep freed memory
/// ([`srlm_model::init_process`]).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `println!` for the commands' output: a reader that went away (`srlm … | head`) ends the
/// process quietly with exit code 0 instead of a panic ([`write_stdout`]).
macro_rules! out {
    () => {
        $crate::write_stdout("\n")
    };
    ($($arg:tt)*) => {
        $crate::write_stdout(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// Writes `text` to stdout. A closed pipe (the reader exited, as `head` does) exits the process
/// with code 0 and no message, as `cat` and `grep` do; any other write error exits with 1.
pub(crate) fn write_stdout(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to stdout: {e}");
        std::process::exit(1);
    }
}

mod bundled;
mod cmd_eval;
mod cmd_fetch;
mod cmd_judge;
mod cmd_model;
mod cmd_plugins;
mod cmd_report;
mod cmd_run;
mod cmd_train;
mod dry_run;
mod engine_args;
mod progress;

/// Train language models that reward themselves (Self-Rewarding, Temporal Self-Rewarding).
#[derive(Parser)]
#[command(name = "srlm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fetch the default model and evaluation data into the cache (as first use would).
    Fetch(cmd_fetch::FetchArgs),
    /// Run self-rewarding iterations with a strategy plugin (the main job).
    Run(cmd_run::RunArgs),
    /// Print the run config's JSON Schema or the built-in default.
    #[command(subcommand)]
    Config(cmd_run::ConfigCommand),
    /// Score a model's greedy answers on a prompt set with a judge (win rate against baseline outputs).
    Eval(cmd_eval::EvalArgs),
    /// Print the token ids of a text (no BOS added, special tokens parsed).
    Tokenize(cmd_model::TokenizeArgs),
    /// Print the top logits at the last position of a (chat-rendered) prompt.
    Logits(cmd_model::LogitsArgs),
    /// Sample K responses to a prompt.
    Generate(cmd_model::GenerateArgs),
    /// Write a model (a checkpoint srlm trained, or any model reference) as a GGUF for
    /// llama.cpp / Ollama, or as an HF checkpoint (a LoRA adapter merged into its base).
    Export(cmd_model::ExportArgs),
    /// Score responses in a JSONL file with a judge.
    Judge(cmd_judge::JudgeArgs),
    /// Train a model with DPO on preference pairs (TRL's JSONL format).
    TrainDpo(cmd_train::TrainDpoArgs),
    /// List, describe and check strategy plugins.
    #[command(subcommand)]
    Plugins(cmd_plugins::PluginsCommand),
    /// Re-render a run folder's report.md and plots; print the report's path.
    Report(cmd_report::ReportArgs),
    /// Compare run folders in one table (held-out score, score gap, hidden cosine, compute).
    Compare(cmd_report::CompareArgs),
}

fn main() -> std::process::ExitCode {
    srlm_model::init_process();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SRLM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => cmd_run::run(a),
        Command::Config(c) => cmd_run::config(c),
        Command::Eval(a) => cmd_eval::run(a),
        Command::Fetch(a) => cmd_fetch::run(a),
        Command::Tokenize(a) => cmd_model::tokenize(a),
        Command::Logits(a) => cmd_model::logits(a),
        Command::Generate(a) => cmd_model::generate(a),
        Command::Export(a) => cmd_model::export(a),
        Command::Judge(a) => cmd_judge::run(a),
        Command::TrainDpo(a) => cmd_train::run(a),
        Command::Plugins(c) => cmd_plugins::run(c),
        Command::Report(a) => cmd_report::report(a),
        Command::Compare(a) => cmd_report::compare(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line. Each library error either shows its cause in its
/// own message or exposes it as a source, never both, so every cause appears once. A captured
/// backtrace (candle appends one to its errors under `RUST_BACKTRACE=1`) is left out.
fn one_line(e: &anyhow::Error) -> String {
    e.chain()
        .map(|c| without_backtrace(&c.to_string()))
        .collect::<Vec<_>>()
        .join(": ")
        .replace('\n', " ")
}

/// `text` up to the first line of a printed backtrace (`stack backtrace:` or `   0: frame`).
fn without_backtrace(text: &str) -> String {
    let frame = is_frame_line;
    let mut kept = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("stack backtrace:") || frame(line) {
            break;
        }
        kept.push(line);
    }
    kept.join("\n").trim_end().to_string()
}

/// Whether `line` is a backtrace frame line: spaces, a frame number, a colon.
fn is_frame_line(line: &str) -> bool {
    let t = line.trim_start();
    line.len() > t.len()
        && t.split_once(": ")
            .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn backtraces_are_cut_from_error_lines() {
        let e = anyhow::anyhow!(
            "shape mismatch in matmul\n   0: candle_core::error::Error::bt\n             at src/error.rs:1\n   1: main"
        )
        .context("loading model `x`");
        assert_eq!(
            super::one_line(&e),
            "loading model `x`: shape mismatch in matmul"
        );
        let e = anyhow::anyhow!("first\nsecond line");
        assert_eq!(super::one_line(&e), "first second line");
    }
}
