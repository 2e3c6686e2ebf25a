//! The `srlm` command line: one subcommand per stage, each in its own module.
//!
//! | subcommand | module | what it does |
//! |---|---|---|
//! | `fetch` | [`cmd_fetch`] | fetch the default model and evaluation data |
//! | `tokenize`, `logits`, `generate` | [`cmd_model`] | the model backend alone (compare with llama.cpp) |
//! | `judge` | [`cmd_judge`] | score responses with a judge |
//! | `train-dpo` | [`cmd_train`] | DPO on a preference-pair file |
//! | `plugins` | [`cmd_plugins`] | list, describe and check strategy plugins |

use clap::{Parser, Subcommand};

mod cmd_fetch;
mod cmd_judge;
mod cmd_model;
mod cmd_plugins;
mod cmd_train;

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
    /// Print the token ids of a text (no BOS added, special tokens parsed).
    Tokenize(cmd_model::TokenizeArgs),
    /// Print the top logits at the last position of a (chat-rendered) prompt.
    Logits(cmd_model::LogitsArgs),
    /// Sample K responses to a prompt.
    Generate(cmd_model::GenerateArgs),
    /// Score responses in a JSONL file with a judge.
    Judge(cmd_judge::JudgeArgs),
    /// Train a model with DPO on preference pairs (TRL's JSONL format).
    TrainDpo(cmd_train::TrainDpoArgs),
    /// List, describe and check strategy plugins.
    #[command(subcommand)]
    Plugins(cmd_plugins::PluginsCommand),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SRLM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Fetch(a) => cmd_fetch::run(a),
        Command::Tokenize(a) => cmd_model::tokenize(a),
        Command::Logits(a) => cmd_model::logits(a),
        Command::Generate(a) => cmd_model::generate(a),
        Command::Judge(a) => cmd_judge::run(a),
        Command::TrainDpo(a) => cmd_train::run(a),
        Command::Plugins(c) => cmd_plugins::run(c),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
