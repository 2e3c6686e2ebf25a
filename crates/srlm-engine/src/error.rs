//! [`EngineError`]: every failure of a server or a request, one line naming the URL, the HTTP
//! status and the server's own message, or the server's command and log.

use std::path::PathBuf;

/// What went wrong talking to (or starting) an inference server.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Nothing answered at the URL (connection refused, reset, DNS, timeout), after retries.
    #[error("{method} {url}: {message} (is the server running and listening there?)")]
    Connect {
        /// GET or POST.
        method: &'static str,
        /// The URL.
        url: String,
        /// The transport error.
        message: String,
    },
    /// The server answered with an HTTP error status.
    #[error("{method} {url}: HTTP {status}: {message}")]
    Status {
        /// GET or POST.
        method: &'static str,
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The server's message (its `error.message`, else the start of the body).
        message: String,
    },
    /// The answer is not what the OpenAI API specifies.
    #[error("{url}: malformed answer: {message}")]
    Malformed {
        /// The URL.
        url: String,
        /// What is wrong, and the start of the body.
        message: String,
    },
    /// A server srlm started exited (at start or mid-run).
    #[error("server `{command}` exited ({status}); its log {log}: {tail}")]
    Exited {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The log's last lines.
        tail: String,
    },
    /// A server srlm started did not become healthy in time.
    #[error("server `{command}` did not answer {url} within {seconds} s; its log {log}: {tail}")]
    StartTimeout {
        /// The command line.
        command: String,
        /// The health URL polled.
        url: String,
        /// The limit.
        seconds: u64,
        /// Its log file.
        log: PathBuf,
        /// The log's last lines.
        tail: String,
    },
    /// The server command could not be started.
    #[error("cannot start `{command}`: {message}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        message: String,
    },
    /// One prompt cannot be served (cannot be encoded, too long for the context).
    #[error("prompt {index}: {message}")]
    Prompt {
        /// Its index in the call.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// A configuration that cannot work (a placeholder with no value, a URL server asked for
    /// another model, …).
    #[error("{0}")]
    Config(String),
    /// A file the engine writes or reads.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        error: std::io::Error,
    },
}

/// Up to the last `n` lines of a log file, joined by " | " (empty when unreadable).
pub fn log_tail(path: &std::path::Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(n);
    let tail = lines[start..].join(" | ");
    if tail.is_empty() {
        "(empty)".into()
    } else {
        tail
    }
}
