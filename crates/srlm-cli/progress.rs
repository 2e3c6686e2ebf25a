//! The progress display of the `srlm` binary, a [`srlm_core::progress::Sink`]: on a terminal
//! one indicatif `MultiProgress` with a bar per open stage (count, rate, ETA, status text);
//! otherwise (output to a file, `nohup`, CI, `tee`) plain lines on stderr, one per open stage
//! every `SRLM_PROGRESS_SECS` seconds (default 30) and one when a stage ends.
//!
//! `SRLM_PROGRESS=bars|lines|off` overrides the choice.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use srlm_core::progress::{self, Sink, StageId, StageInfo, StageKind};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Seconds between progress lines when stderr is not a terminal.
const DEFAULT_LINE_SECS: f64 = 30.0;

/// Installs the display the environment asks for (see the module docs).
pub fn install() {
    let mode = std::env::var("SRLM_PROGRESS").unwrap_or_default();
    let terminal = std::io::stderr().is_terminal();
    match mode.as_str() {
        "off" => {}
        "bars" => progress::set_sink(Arc::new(Bars::new())),
        "lines" => progress::set_sink(Lines::start(line_interval(), Box::new(std::io::stderr()))),
        _ if terminal => progress::set_sink(Arc::new(Bars::new())),
        _ => progress::set_sink(Lines::start(line_interval(), Box::new(std::io::stderr()))),
    }
}

fn line_interval() -> Duration {
    let secs = std::env::var("SRLM_PROGRESS_SECS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(DEFAULT_LINE_SECS);
    Duration::from_secs_f64(secs)
}

/// `12.3 s`, `4 min 05 s`, `1 h 02 min`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1} s")
    } else if s < 3600.0 {
        format!("{} min {:02} s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!(
            "{} h {:02} min",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    }
}

/// The line printed when a stage ends: `LABEL: 64 samples in 71.2 s (0.90 samples/s)`.
fn done_line(info: &StageInfo, done: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 && done > 0 {
        format!(" ({:.2} {}/s)", done as f64 / secs, info.unit)
    } else {
        String::new()
    };
    format!(
        "{}: {done} {} in {}{rate}",
        info.label,
        info.unit,
        human_duration(elapsed)
    )
}

/// The periodic line of an open stage: `LABEL: 40/64 samples (62%), 0.85 samples/s, ETA 28.2 s`.
fn status_line(info: &StageInfo, done: u64, elapsed: Duration, message: &str) -> String {
    let secs = elapsed.as_secs_f64();
    let mut line = if info.total > 0 {
        format!(
            "{}: {done}/{} {} ({:.0}%)",
            info.label,
            info.total,
            info.unit,
            100.0 * done as f64 / info.total as f64
        )
    } else {
        format!("{}: {done} {}", info.label, info.unit)
    };
    if done > 0 && secs > 0.0 {
        let rate = done as f64 / secs;
        line.push_str(&format!(", {rate:.2} {}/s", info.unit));
        if info.total > done {
            let eta = Duration::from_secs_f64((info.total - done) as f64 / rate);
            line.push_str(&format!(", ETA {}", human_duration(eta)));
        }
    } else {
        line.push_str(&format!(", {} so far", human_duration(elapsed)));
    }
    if !message.is_empty() {
        line.push_str(&format!(" · {message}"));
    }
    line
}

/// Bars on a terminal.
struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<StageId, (ProgressBar, StageInfo)>>,
}

impl Bars {
    fn new() -> Self {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        }
    }
}

impl Sink for Bars {
    fn start(&self, id: StageId, info: &StageInfo) {
        let bar = self.multi.add(ProgressBar::new(info.total));
        let template = format!(
            "{{prefix}} [{{bar:28.cyan/blue}}] {{pos}}/{{len}} {} · {{per_sec}} · ETA {{eta}} {{msg}}",
            info.unit
        );
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(info.label.clone());
        bar.enable_steady_tick(Duration::from_millis(500));
        self.bars
            .lock()
            .expect("bars")
            .insert(id, (bar, info.clone()));
    }

    fn advance(&self, id: StageId, n: u64) {
        if let Some((bar, _)) = self.bars.lock().expect("bars").get(&id) {
            bar.inc(n);
        }
    }

    fn message(&self, id: StageId, text: &str) {
        if let Some((bar, _)) = self.bars.lock().expect("bars").get(&id) {
            bar.set_message(text.to_string());
        }
    }

    fn finish(&self, id: StageId, done: u64, elapsed: Duration) {
        let entry = self.bars.lock().expect("bars").remove(&id);
        if let Some((bar, info)) = entry {
            bar.finish_and_clear();
            self.multi.remove(&bar);
            let _ = self
                .multi
                .println(format!("srlm: {}", done_line(&info, done, elapsed)));
        }
    }

    fn note(&self, text: &str) {
        let _ = self.multi.println(format!("srlm: {text}"));
    }
}

/// One open stage in line mode.
struct LineStage {
    info: StageInfo,
    done: u64,
    start: Instant,
    printed: Instant,
    message: String,
}

/// Plain lines when stderr is not a terminal.
struct Lines {
    every: Duration,
    open: Mutex<HashMap<StageId, LineStage>>,
    out: Mutex<Box<dyn std::io::Write + Send>>,
}

impl Lines {
    /// The sink and its ticker thread (which prints the open stages' status every `every`, so
    /// a stage with slow units still shows up in the log).
    fn start(every: Duration, out: Box<dyn std::io::Write + Send>) -> Arc<Self> {
        let this = Arc::new(Lines {
            every,
            open: Mutex::new(HashMap::new()),
            out: Mutex::new(out),
        });
        let weak = Arc::downgrade(&this);
        let tick = every.clamp(Duration::from_millis(50), Duration::from_secs(1));
        std::thread::spawn(move || loop {
            std::thread::sleep(tick);
            match weak.upgrade() {
                Some(lines) => lines.print_due(),
                None => return,
            }
        });
        this
    }

    fn print_due(&self) {
        let now = Instant::now();
        let mut open = self.open.lock().expect("stages");
        let mut due: Vec<(&StageId, &mut LineStage)> = open
            .iter_mut()
            .filter(|(_, s)| now.duration_since(s.printed) >= self.every)
            .collect();
        due.sort_by_key(|(id, _)| **id);
        for (_, s) in due {
            s.printed = now;
            self.line(&status_line(
                &s.info,
                s.done,
                now.duration_since(s.start),
                &s.message,
            ));
        }
    }

    /// Writes `srlm: TEXT` (a failed write to the log is not worth stopping a run for).
    fn line(&self, text: &str) {
        let mut out = self.out.lock().expect("log");
        let _ = writeln!(out, "srlm: {text}");
        let _ = out.flush();
    }
}

impl Sink for Lines {
    fn start(&self, id: StageId, info: &StageInfo) {
        let now = Instant::now();
        self.open.lock().expect("stages").insert(
            id,
            LineStage {
                info: info.clone(),
                done: 0,
                start: now,
                printed: now,
                message: String::new(),
            },
        );
    }

    fn advance(&self, id: StageId, n: u64) {
        if let Some(s) = self.open.lock().expect("stages").get_mut(&id) {
            s.done += n;
        }
    }

    fn message(&self, id: StageId, text: &str) {
        if let Some(s) = self.open.lock().expect("stages").get_mut(&id) {
            s.message = text.to_string();
        }
    }

    fn finish(&self, id: StageId, done: u64, elapsed: Duration) {
        let entry = self.open.lock().expect("stages").remove(&id);
        if let Some(s) = entry {
            self.line(&done_line(&s.info, done, elapsed));
        }
    }

    fn note(&self, text: &str) {
        self.line(text);
    }
}

/// `sampling 2 min 01 s · judging 0.4 s · …` for the stages that ran in this process, and
/// `other` (loading models, writing files) up to `total`.
pub fn stage_times(total: Duration) -> String {
    let totals = progress::totals();
    let mut parts = Vec::new();
    let mut sum = Duration::ZERO;
    for kind in StageKind::ALL {
        if let Some(d) = totals.get(&kind) {
            sum += *d;
            parts.push(format!("{} {}", kind.name(), human_duration(*d)));
        }
    }
    parts.push(format!(
        "other {}",
        human_duration(total.saturating_sub(sum))
    ));
    parts.join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(total: u64) -> StageInfo {
        StageInfo {
            kind: StageKind::Sampling,
            label: "iteration 1: sampling 16 prompts × K=4 from current".into(),
            total,
            unit: "samples",
            counts_samples: true,
        }
    }

    #[test]
    fn status_lines_give_count_share_rate_and_eta() {
        assert_eq!(
            status_line(&info(64), 16, Duration::from_secs(20), ""),
            "iteration 1: sampling 16 prompts × K=4 from current: 16/64 samples (25%), \
             0.80 samples/s, ETA 1 min 00 s"
        );
        assert_eq!(
            status_line(&info(64), 0, Duration::from_secs(5), "loss 0.69"),
            "iteration 1: sampling 16 prompts × K=4 from current: 0/64 samples (0%), \
             5.0 s so far · loss 0.69"
        );
        assert_eq!(
            done_line(&info(64), 64, Duration::from_secs(80)),
            "iteration 1: sampling 16 prompts × K=4 from current: 64 samples in 1 min 20 s \
             (0.80 samples/s)"
        );
    }

    /// A writer the test reads back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn line_mode_prints_open_stages_periodically_and_each_end() {
        let buf = Shared::default();
        let lines = Lines::start(Duration::from_millis(100), Box::new(buf.clone()));
        lines.start(1, &info(64));
        lines.advance(1, 16);
        lines.note("loading model `default`");
        // Long enough for at least two periodic lines, whatever the scheduling.
        std::thread::sleep(Duration::from_millis(450));
        lines.advance(1, 48);
        lines.finish(1, 64, Duration::from_secs(80));
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let all: Vec<&str> = text.lines().collect();
        assert_eq!(all[0], "srlm: loading model `default`");
        let periodic = all
            .iter()
            .filter(|l| {
                l.starts_with(
                    "srlm: iteration 1: sampling 16 prompts × K=4 from current: 16/64 samples (25%), ",
                ) && l.contains("samples/s, ETA ")
            })
            .count();
        assert!((2..=5).contains(&periodic), "{text}");
        assert_eq!(
            *all.last().unwrap(),
            "srlm: iteration 1: sampling 16 prompts × K=4 from current: 64 samples in 1 min 20 s \
             (0.80 samples/s)"
        );
        // A finished stage prints nothing more.
        let n = all.len();
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(
            String::from_utf8(buf.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .count(),
            n
        );
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human_duration(Duration::from_millis(1234)), "1.2 s");
        assert_eq!(human_duration(Duration::from_secs(245)), "4 min 05 s");
        assert_eq!(human_duration(Duration::from_secs(3720)), "1 h 02 min");
    }
}
