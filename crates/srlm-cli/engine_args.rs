//! `--engine …` flags of the one-off commands (`srlm generate`, `srlm judge`): sample and judge
//! through an inference server instead of in-process, with the same engine settings a run's
//! `[engine]` section takes.

use srlm_engine::{EngineConfig, EngineKind};
use srlm_pipeline::candle::CandleBackend;
use srlm_pipeline::ports::Backend;
use srlm_pipeline::served::ServedBackend;

/// Where `generate` / `judge` sample.
#[derive(clap::Args, Debug, Clone)]
pub struct EngineArgs {
    /// `in-process` (candle), `server` (srlm starts `--engine-command` for the model and stops
    /// it at exit) or `url` (a server you run, `--engine-url`).
    #[arg(long, default_value = "in-process", value_parser = parse_kind)]
    pub engine: EngineKind,
    /// `--engine url`: the OpenAI API base, e.g. http://127.0.0.1:8080/v1.
    #[arg(long)]
    pub engine_url: Option<String>,
    /// `--engine server`: the command template (default: llama-server's; see `srlm config
    /// default`, section [engine]).
    #[arg(long)]
    pub engine_command: Option<String>,
    /// Ask for K samples as K requests (for servers that refuse `n > 1`).
    #[arg(long)]
    pub engine_no_n: bool,
}

fn parse_kind(s: &str) -> Result<EngineKind, String> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| format!("`{s}`: expected in-process, server or url"))
}

impl EngineArgs {
    /// The engine section these flags stand for.
    ///
    /// # Errors
    /// A message naming the flag.
    pub fn config(&self) -> anyhow::Result<EngineConfig> {
        let mut c = EngineConfig {
            kind: self.engine,
            use_n: !self.engine_no_n,
            ..EngineConfig::default()
        };
        if let Some(u) = &self.engine_url {
            c.url = u.clone();
        }
        if let Some(cmd) = &self.engine_command {
            c.command = cmd.clone();
        }
        anyhow::ensure!(
            c.kind != EngineKind::Url || self.engine_url.is_some(),
            "--engine url needs --engine-url"
        );
        c.validate().map_err(anyhow::Error::msg)?;
        Ok(c)
    }

    /// A backend for `model`: in-process, or on a server (logs in a temporary folder that is
    /// kept, and named, only when something fails).
    pub fn backend(
        &self,
        model: &str,
    ) -> anyhow::Result<(Box<dyn Backend>, Option<tempfile::TempDir>)> {
        let cfg = self.config()?;
        let device = srlm_model::default_device();
        if cfg.kind == EngineKind::InProcess {
            return Ok((Box::new(CandleBackend::new(device)), None));
        }
        let logs = tempfile::Builder::new().prefix("srlm-engine-").tempdir()?;
        let b = ServedBackend::new(cfg, device, logs.path(), model, None)?;
        Ok((Box::new(b), Some(logs)))
    }
}
