//! Running the trainer's command: placeholders filled in, stdout and stderr into a log file, the
//! child stopped when srlm dies (Linux parent-death signal), progress read from the step log
//! while it runs.

use crate::error::{io_at, TrainerError};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Values of the command template's placeholders.
#[derive(Debug, Clone)]
pub struct CommandVars {
    /// `{python}`.
    pub python: String,
    /// `{launcher}`.
    pub launcher: String,
    /// `{num_processes}`.
    pub num_processes: usize,
    /// `{accelerate_args}`: zero or more words.
    pub accelerate_args: Vec<String>,
    /// `{args}`: the trainer's flags.
    pub args: Vec<String>,
}

/// The argv of `template` with every placeholder filled in. `{args}` and `{accelerate_args}`
/// must stand alone as words; they expand to their words (possibly none).
///
/// # Errors
/// [`TrainerError::Config`] for unbalanced quotes, an empty template or an unknown
/// placeholder.
pub fn render_command(template: &str, vars: &CommandVars) -> Result<Vec<String>, TrainerError> {
    let words = shlex::split(template).ok_or_else(|| {
        TrainerError::Config(format!("trainer.command {template:?}: unbalanced quotes"))
    })?;
    if words.is_empty() {
        return Err(TrainerError::Config("trainer.command is empty".into()));
    }
    let mut argv = Vec::new();
    for w in words {
        match w.as_str() {
            "{args}" => argv.extend(vars.args.iter().cloned()),
            "{accelerate_args}" => argv.extend(vars.accelerate_args.iter().cloned()),
            _ => {
                let filled = w
                    .replace("{python}", &vars.python)
                    .replace("{launcher}", &vars.launcher)
                    .replace("{num_processes}", &vars.num_processes.to_string());
                if let Some(start) = filled.find('{') {
                    if let Some(len) = filled[start..].find('}') {
                        return Err(TrainerError::Config(format!(
                            "trainer.command: unknown placeholder {} (known: {{python}}, {{launcher}}, {{num_processes}}, {{accelerate_args}}, {{args}})",
                            &filled[start..=start + len]
                        )));
                    }
                }
                argv.push(filled);
            }
        }
    }
    Ok(argv)
}

/// `argv` as one shell-quoted line (the run folder's `command.txt`, errors, the dry run).
pub fn command_line(argv: &[String]) -> String {
    shlex::try_join(argv.iter().map(String::as_str)).unwrap_or_else(|_| argv.join(" "))
}

/// The last `n` non-empty lines of a log, one per line.
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(n)..].join("\n");
    if tail.is_empty() {
        "(empty)".into()
    } else {
        tail
    }
}

/// Runs `argv` to completion with stdout and stderr appended to `log`, calling `tick` about
/// twice a second while it runs.
///
/// # Errors
/// [`TrainerError::Spawn`] (program missing), [`TrainerError::Failed`] (non-zero exit, with
/// the log's last lines), [`TrainerError::Io`].
pub fn run(argv: &[String], log: &Path, mut tick: impl FnMut()) -> Result<(), TrainerError> {
    let command = command_line(argv);
    let io = io_at(log);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(&io)?;
    use std::io::Write;
    writeln!(&file, "=== srlm runs: {command}").map_err(&io)?;
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(file.try_clone().map_err(&io)?)
        .stderr(file)
        // Python's output unbuffered, so the log is current when a step hangs or dies.
        .env("PYTHONUNBUFFERED", "1");
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; it only sets this child's parent-death signal,
        // so a killed srlm does not leave a trainer running on the GPUs.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().map_err(|e| TrainerError::Spawn {
        command: command.clone(),
        message: if e.kind() == std::io::ErrorKind::NotFound {
            format!("`{}` not found", argv[0])
        } else {
            e.to_string()
        },
    })?;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(&io)? {
            break status;
        }
        tick();
        std::thread::sleep(Duration::from_millis(500));
    };
    tick();
    if status.success() {
        Ok(())
    } else {
        Err(TrainerError::Failed {
            status: status.to_string(),
            log: log.to_path_buf(),
            tail: log_tail(log, 15),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> CommandVars {
        CommandVars {
            python: "/venv/bin/python".into(),
            launcher: "/run/trl_dpo.py".into(),
            num_processes: 8,
            accelerate_args: vec!["--config_file".into(), "zero3.yaml".into()],
            args: vec!["--beta".into(), "0.1".into()],
        }
    }

    #[test]
    fn list_placeholders_expand_to_words_and_others_fill_in() {
        let argv = render_command(
            "{python} -m accelerate.commands.launch {accelerate_args} --num_processes {num_processes} {launcher} {args}",
            &vars(),
        )
        .unwrap();
        assert_eq!(
            argv,
            [
                "/venv/bin/python",
                "-m",
                "accelerate.commands.launch",
                "--config_file",
                "zero3.yaml",
                "--num_processes",
                "8",
                "/run/trl_dpo.py",
                "--beta",
                "0.1"
            ]
        );
        let none = CommandVars {
            accelerate_args: vec![],
            ..vars()
        };
        let argv = render_command("{python} {accelerate_args} {launcher}", &none).unwrap();
        assert_eq!(argv, ["/venv/bin/python", "/run/trl_dpo.py"]);
    }

    #[test]
    fn bad_templates_are_named() {
        let e = render_command("{python} {model}", &vars()).unwrap_err();
        assert!(e.to_string().contains("unknown placeholder {model}"), "{e}");
        let e = render_command("python 'x", &vars()).unwrap_err();
        assert!(e.to_string().contains("unbalanced quotes"), "{e}");
    }

    #[test]
    fn a_failing_command_shows_its_log_tail_and_a_missing_one_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("trainer.log");
        let argv: Vec<String> = [
            "sh",
            "-c",
            "echo step 1; echo 'ValueError: bad flag' >&2; exit 3",
        ]
        .map(String::from)
        .into();
        let e = run(&argv, &log, || {}).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("exit status: 3"), "{msg}");
        assert!(msg.contains("ValueError: bad flag"), "{msg}");
        assert!(msg.contains("trainer.log"), "{msg}");
        let argv = vec!["/nonexistent/python3".to_string()];
        let e = run(&argv, &log, || {}).unwrap_err();
        assert!(
            e.to_string().contains("`/nonexistent/python3` not found"),
            "{e}"
        );
    }
}
