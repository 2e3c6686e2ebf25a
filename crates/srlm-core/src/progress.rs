//! Progress of long stages, reported by the code that does the work and shown by whoever
//! installed a [`Sink`] (the `srlm` binary: bars on a terminal, periodic log lines otherwise).
//!
//! A stage is opened with [`stage`] (sampling from a model, judging responses, a DPO run, an
//! evaluation) and closed when its [`Stage`] guard drops; the code that opened it advances it.
//! Code deeper down that does the work without knowing the stage — the batched sampler, an
//! inference-server client — calls [`advance_samples`], which advances the innermost open stage
//! only when that stage counts samples ([`StageInfo::counts_samples`]); so a judge's own
//! sampling never inflates a "responses judged" count.
//!
//! Without a sink nothing is shown (library use, tests); the wall time of each [`StageKind`] is
//! added up either way ([`totals`]) for a run's end-of-run summary. Only outermost stages are
//! timed: a stage opened inside another (judging inside an evaluation) is part of its time. The registry is
//! process-wide (one progress display per process, like `tracing`'s global dispatcher), because
//! the sampler's worker threads report into a stage opened by the caller's thread.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// What a stage spends its time on; [`totals`] adds up wall time per kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StageKind {
    /// Sampling responses to training prompts (K per prompt, any model).
    Sampling,
    /// Judging sampled responses.
    Judging,
    /// DPO training (M_{i+1} and temporary models such as M_f).
    Training,
    /// Greedy answers to the held-out prompts and their judging.
    Evaluation,
    /// Diagnostics (hidden states of chosen and rejected responses).
    Diagnostics,
}

impl StageKind {
    /// Every kind, in the order a summary lists them.
    pub const ALL: [StageKind; 5] = [
        StageKind::Sampling,
        StageKind::Judging,
        StageKind::Training,
        StageKind::Evaluation,
        StageKind::Diagnostics,
    ];

    /// A short lower-case name (`sampling`, `judging`, `DPO`, `evaluation`, `diagnostics`).
    pub fn name(self) -> &'static str {
        match self {
            StageKind::Sampling => "sampling",
            StageKind::Judging => "judging",
            StageKind::Training => "DPO",
            StageKind::Evaluation => "evaluation",
            StageKind::Diagnostics => "diagnostics",
        }
    }
}

/// What a display needs to know about a stage when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageInfo {
    /// Its kind.
    pub kind: StageKind,
    /// A label for people, e.g. `iteration 1: sampling from current (M1)`.
    pub label: String,
    /// Units of work it will do (0 when unknown).
    pub total: u64,
    /// The unit, plural (`samples`, `responses`, `steps`, `pairs`).
    pub unit: &'static str,
    /// Whether [`advance_samples`] (the sampler's finished rows) advances it.
    pub counts_samples: bool,
}

/// Identifies an open stage to a [`Sink`].
pub type StageId = u64;

/// A progress display. Every method is called with the registry unlocked, possibly from
/// several threads.
pub trait Sink: Send + Sync {
    /// A stage opened.
    fn start(&self, id: StageId, info: &StageInfo);
    /// `n` more units of the stage are done.
    fn advance(&self, id: StageId, n: u64);
    /// A short status text for the stage (e.g. DPO's loss and margin).
    fn message(&self, id: StageId, text: &str);
    /// The stage ended after `elapsed` with `done` units done.
    fn finish(&self, id: StageId, done: u64, elapsed: Duration);
    /// A line for the log (without the `srlm: ` prefix); shown above any bars.
    fn note(&self, text: &str);
}

#[derive(Default)]
struct Registry {
    sink: Option<Arc<dyn Sink>>,
    next_id: StageId,
    /// Open stages, innermost last: id, counts_samples, units done.
    open: Vec<(StageId, bool, u64)>,
    totals: BTreeMap<StageKind, Duration>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    sink: None,
    next_id: 0,
    open: Vec::new(),
    totals: BTreeMap::new(),
});

fn registry() -> MutexGuard<'static, Registry> {
    // A panic while the lock was held leaves plain counters behind: still usable.
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Installs the process's progress display (replacing any earlier one).
pub fn set_sink(sink: Arc<dyn Sink>) {
    registry().sink = Some(sink);
}

/// Removes the progress display; stages are still timed.
pub fn clear_sink() {
    registry().sink = None;
}

/// An open stage; it ends (and its time is added to [`totals`]) when dropped.
#[must_use = "a stage ends when its guard drops"]
pub struct Stage {
    id: StageId,
    kind: StageKind,
    start: Instant,
    outermost: bool,
}

/// Opens a stage of `total` `unit`s. See [`StageInfo`].
pub fn stage(kind: StageKind, label: impl Into<String>, total: u64, unit: &'static str) -> Stage {
    open(StageInfo {
        kind,
        label: label.into(),
        total,
        unit,
        counts_samples: false,
    })
}

/// Opens a stage that the sampler's finished rows advance ([`advance_samples`]).
pub fn sampling_stage(kind: StageKind, label: impl Into<String>, total: u64) -> Stage {
    open(StageInfo {
        kind,
        label: label.into(),
        total,
        unit: "samples",
        counts_samples: true,
    })
}

fn open(info: StageInfo) -> Stage {
    let (id, outermost, sink) = {
        let mut r = registry();
        r.next_id += 1;
        let id = r.next_id;
        let outermost = r.open.is_empty();
        r.open.push((id, info.counts_samples, 0));
        (id, outermost, r.sink.clone())
    };
    if let Some(s) = sink {
        s.start(id, &info);
    }
    Stage {
        id,
        kind: info.kind,
        start: Instant::now(),
        outermost,
    }
}

fn advance_id(id: StageId, n: u64) {
    let sink = {
        let mut r = registry();
        if let Some(entry) = r.open.iter_mut().find(|e| e.0 == id) {
            entry.2 += n;
        }
        r.sink.clone()
    };
    if let Some(s) = sink {
        s.advance(id, n);
    }
}

impl Stage {
    /// `n` more units done.
    pub fn advance(&self, n: u64) {
        advance_id(self.id, n);
    }

    /// Sets the stage's status text.
    pub fn message(&self, text: &str) {
        let sink = registry().sink.clone();
        if let Some(s) = sink {
            s.message(self.id, text);
        }
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let elapsed = self.start.elapsed();
        let (done, sink) = {
            let mut r = registry();
            if self.outermost {
                *r.totals.entry(self.kind).or_default() += elapsed;
            }
            let done = match r.open.iter().position(|e| e.0 == self.id) {
                Some(i) => r.open.remove(i).2,
                None => 0,
            };
            (done, r.sink.clone())
        };
        if let Some(s) = sink {
            s.finish(self.id, done, elapsed);
        }
    }
}

/// `n` samples finished: advances the innermost open stage if it counts samples (see the
/// module docs), else nothing.
pub fn advance_samples(n: u64) {
    let target = {
        let r = registry();
        match r.open.last() {
            Some(&(id, true, _)) => Some(id),
            _ => None,
        }
    };
    if let Some(id) = target {
        advance_id(id, n);
    }
}

/// A line for the log: through the display when one is installed (so it does not tear a
/// bar), else on stderr as `srlm: TEXT`.
pub fn note(text: impl AsRef<str>) {
    let sink = registry().sink.clone();
    match sink {
        Some(s) => s.note(text.as_ref()),
        None => eprintln!("srlm: {}", text.as_ref()),
    }
}

/// Wall time spent in each kind of stage since the process started (stages that ended).
pub fn totals() -> BTreeMap<StageKind, Duration> {
    registry().totals.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Sink for Recorder {
        fn start(&self, id: StageId, info: &StageInfo) {
            let line = format!("start {id} {} {} {}", info.label, info.total, info.unit);
            self.0.lock().unwrap().push(line);
        }
        fn advance(&self, id: StageId, n: u64) {
            self.0.lock().unwrap().push(format!("advance {id} {n}"));
        }
        fn message(&self, id: StageId, text: &str) {
            self.0.lock().unwrap().push(format!("message {id} {text}"));
        }
        fn finish(&self, id: StageId, done: u64, _: Duration) {
            self.0.lock().unwrap().push(format!("finish {id} {done}"));
        }
        fn note(&self, text: &str) {
            self.0.lock().unwrap().push(format!("note {text}"));
        }
    }

    /// One test owns the process-wide registry (tests of one binary run in parallel).
    #[test]
    fn stages_route_advances_count_units_and_add_up_time() {
        let rec = Arc::new(Recorder::default());
        set_sink(rec.clone());
        let total = |k| totals().get(&k).copied().unwrap_or_default();
        let (sampling0, judging0) = (total(StageKind::Sampling), total(StageKind::Judging));
        {
            let sampling = sampling_stage(StageKind::Sampling, "sampling", 8);
            advance_samples(3);
            {
                // The judge's own sampling inside a judging stage is not counted.
                let judging = stage(StageKind::Judging, "judging", 2, "responses");
                advance_samples(5);
                judging.advance(2);
                judging.message("ok");
                std::thread::sleep(Duration::from_millis(5));
            }
            // Back in the sampling stage: counted again.
            advance_samples(5);
            drop(sampling);
        }
        advance_samples(1); // no open stage: nothing
        note("hello");
        clear_sink();
        let id = |line: &str| line.split(' ').nth(1).unwrap().to_string();
        let log = rec.0.lock().unwrap().clone();
        let (s, j) = (id(&log[0]), id(&log[2]));
        assert_eq!(
            log,
            vec![
                format!("start {s} sampling 8 samples"),
                format!("advance {s} 3"),
                format!("start {j} judging 2 responses"),
                format!("advance {j} 2"),
                format!("message {j} ok"),
                format!("finish {j} 2"),
                format!("advance {s} 5"),
                format!("finish {s} 8"),
                "note hello".to_string(),
            ]
        );
        // The sampling stage's time includes the judging stage nested in it, counted once.
        assert!(total(StageKind::Sampling) >= sampling0 + Duration::from_millis(5));
        assert_eq!(total(StageKind::Judging), judging0);
    }

    #[test]
    fn kinds_have_summary_names() {
        let names: Vec<&str> = StageKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(
            names,
            ["sampling", "judging", "DPO", "evaluation", "diagnostics"]
        );
    }
}
