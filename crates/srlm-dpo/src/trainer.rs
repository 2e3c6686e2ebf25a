//! The DPO training loop: reference log-probs, concatenated forward, accumulation, clipping,
//! AdamW, metrics, and the non-finite guard.
//!
//! One optimizer step = `gradient_accumulation_steps` micro-batches of
//! `per_device_train_batch_size` pairs. Each micro-batch runs chosen and rejected rows through
//! the policy as one right-padded batch ([`PairBatch`]), computes the batch-mean loss, scales it
//! by its share of the step's pairs and back-propagates; the gradients of the trainable vars
//! are summed by hand, their global L2 norm is measured, clipped to `max_grad_norm`, and
//! [`crate::FusedAdamW`] (candle-nn's AdamW update, fused and in place on the CPU) applies them at
//! the scheduled learning rate.

use crate::batch::{sequence_logps, truncate_pairs, FilterStats, PairBatch, TokenizedPair};
use crate::config::DpoConfig;
use crate::error::{config_err, DpoError, Result};
use crate::loss::{dpo_logits, preference_loss, rpo_nll};
use crate::metrics::{MetricsWriter, StepMetrics};
use crate::model::{save_checkpoint_checked, PolicyModel};
use crate::optim::FusedAdamW;
use crate::schedule::{lr_at, warmup_len};
use candle_core::{Device, Tensor, Var};
use candle_nn::ParamsAdamW;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Instant;

/// Reference log-probs of one pair: responses' summed log-probs in nats, detached.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RefLogps {
    /// `log π_ref(y_w | x)`, summed over the chosen response tokens.
    pub chosen: f32,
    /// `log π_ref(y_l | x)`, summed over the rejected response tokens.
    pub rejected: f32,
}

/// Reference log-probs of every pair of `batch` under `model`, detached (no graph is kept and no
/// gradient can reach `model`'s weights). One entry per pair, in batch order.
pub fn reference_logps(model: &dyn PolicyModel, batch: &PairBatch) -> Result<Vec<RefLogps>> {
    let b = batch.pairs();
    let s = sequence_logps(model, batch)?.detach().to_vec1::<f32>()?;
    Ok((0..b)
        .map(|i| RefLogps {
            chosen: s[i],
            rejected: s[b + i],
        })
        .collect())
}

/// The loss of one micro-batch and the per-pair quantities its metrics need.
#[derive(Debug)]
pub struct BatchLoss {
    /// Scalar f32: batch-mean preference loss (+ `rpo_alpha`·NLL), differentiable w.r.t. the
    /// policy's trainable vars.
    pub loss: Tensor,
    /// Per-pair `β·(log π(y_w|x) − log π_ref(y_w|x))`, nats (per-token means for `ipo`).
    pub chosen_rewards: Vec<f32>,
    /// Per-pair `β·(log π(y_l|x) − log π_ref(y_l|x))`, nats.
    pub rejected_rewards: Vec<f32>,
    /// Per-pair policy log-prob of the chosen response (sum; mean for `ipo`), nats.
    pub policy_chosen: Vec<f32>,
    /// Per-pair policy log-prob of the rejected response (sum; mean for `ipo`), nats.
    pub policy_rejected: Vec<f32>,
}

/// Computes the DPO loss of one micro-batch (TRL's `concatenated_forward` + `dpo_loss`).
///
/// `reference` holds one [`RefLogps`] per pair of `batch` (summed log-probs). For `ipo` both
/// policy and reference sums are divided by the response lengths first (case D3).
pub fn dpo_batch_loss(
    policy: &dyn PolicyModel,
    batch: &PairBatch,
    reference: &[RefLogps],
    config: &DpoConfig,
) -> Result<BatchLoss> {
    let b = batch.pairs();
    assert_eq!(reference.len(), b, "one reference entry per pair");
    let sums = sequence_logps(policy, batch)?; // [2B]
    let ref_flat: Vec<f32> = reference
        .iter()
        .map(|r| r.chosen)
        .chain(reference.iter().map(|r| r.rejected))
        .collect();
    let ref_sums = Tensor::from_vec(ref_flat, 2 * b, sums.device())?;
    let (pol, refv) = if config.loss_type.uses_mean_logps() {
        (
            sums.div(&batch.response_lens)?,
            ref_sums.div(&batch.response_lens)?,
        )
    } else {
        (sums.clone(), ref_sums)
    };
    let (pc, pr) = (pol.narrow(0, 0, b)?, pol.narrow(0, b, b)?);
    let (rc, rr) = (refv.narrow(0, 0, b)?, refv.narrow(0, b, b)?);
    let h = dpo_logits(&pc, &pr, &rc, &rr)?;
    let mut loss =
        preference_loss(config.loss_type, &h, config.beta, config.label_smoothing)?.mean_all()?;
    if let Some(alpha) = config.rpo_alpha.filter(|a| *a > 0.0) {
        let nll = rpo_nll(
            &sums.narrow(0, 0, b)?,
            &batch.response_lens.narrow(0, 0, b)?,
        )?;
        loss = (loss + (nll * alpha)?)?;
    }
    let host = |t: &Tensor| t.detach().to_vec1::<f32>();
    let reward = |p: &Tensor, r: &Tensor| -> candle_core::Result<Vec<f32>> {
        host(&((p - r)? * config.beta)?)
    };
    Ok(BatchLoss {
        loss,
        chosen_rewards: reward(&pc, &rc)?,
        rejected_rewards: reward(&pr, &rr)?,
        policy_chosen: host(&pc)?,
        policy_rejected: host(&pr)?,
    })
}

/// Global L2 norm `sqrt(Σ_v Σ g_v²)` of a set of gradients (any shapes, float dtypes), as f64.
pub fn global_grad_norm<'a>(grads: impl IntoIterator<Item = &'a Tensor>) -> Result<f64> {
    let mut sq = 0f64;
    for g in grads {
        sq += crate::optim::sum_sq_f64(g)?;
    }
    Ok(sq.sqrt())
}

/// What a training run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TrainSummary {
    /// Optimizer steps taken.
    pub steps: u64,
    /// Epochs completed, fractional.
    pub epochs: f64,
    /// Truncation and filtering of the input pairs.
    pub filter: FilterStats,
    /// Real tokens through the policy's forward + backward passes (prompt + response, both
    /// rows of every pair, every time it was used).
    pub tokens_trained: u64,
    /// Real tokens through reference forward passes (precomputation or per-step reference).
    pub reference_tokens: u64,
    /// Wall time of the whole call, seconds (reference precomputation and checkpoint included).
    pub wall_time_s: f64,
    /// Metrics of the last step.
    pub final_metrics: StepMetrics,
    /// Metrics of every step, in order.
    pub history: Vec<StepMetrics>,
    /// The checkpoint folder, when one was written.
    pub checkpoint: Option<PathBuf>,
}

/// Callback run after every optimizer step.
pub type StepCallback<'a> = Box<dyn FnMut(&StepMetrics) + 'a>;

/// Builder and entry point of a DPO run.
///
/// ```no_run
/// # fn demo(policy: &dyn srlm_dpo::PolicyModel, pairs: &[srlm_dpo::TokenizedPair]) -> Result<(), srlm_dpo::DpoError> {
/// let summary = srlm_dpo::DpoTrainer::new(srlm_dpo::DpoConfig::default())?
///     .with_metrics(srlm_dpo::MetricsWriter::append("run/dpo.jsonl".as_ref())?)
///     .with_progress(true)
///     .with_checkpoint_dir("run/ck")
///     .train(policy, pairs)?;
/// println!("{} steps, final margin {}", summary.steps, summary.final_metrics.rewards_margins);
/// # Ok(()) }
/// ```
pub struct DpoTrainer<'a> {
    config: DpoConfig,
    reference: Option<&'a dyn PolicyModel>,
    metrics: Option<MetricsWriter>,
    progress: bool,
    checkpoint_dir: Option<PathBuf>,
    on_step: Option<StepCallback<'a>>,
}

impl<'a> DpoTrainer<'a> {
    /// A trainer with `config` (validated here; the error names the field).
    pub fn new(config: DpoConfig) -> Result<Self> {
        config.validate()?;
        if config.use_peft && config.lora_dropout > 0.0 {
            return Err(crate::error::config_err(
                "lora_dropout",
                "srlm's own trainer trains LoRA adapters without dropout: set it to 0, or train with an external trainer (trainer.backend = \"trl\", or `srlm train-dpo --backend trl`)",
            ));
        }
        Ok(DpoTrainer {
            config,
            reference: None,
            metrics: None,
            progress: false,
            checkpoint_dir: None,
            on_step: None,
        })
    }

    /// A separate frozen reference model (M_i). Required when `precompute_ref_log_probs` is
    /// false; with precomputation it replaces the initial policy as the source of reference
    /// log-probs. Only its `token_logps` is called, and its output is detached.
    pub fn with_reference(mut self, reference: &'a dyn PolicyModel) -> Self {
        self.reference = Some(reference);
        self
    }

    /// Appends one [`StepMetrics`] line per optimizer step to this writer.
    pub fn with_metrics(mut self, writer: MetricsWriter) -> Self {
        self.metrics = Some(writer);
        self
    }

    /// Reports the run as a progress stage ([`srlm_core::progress`]: steps, with loss, margin
    /// and accuracy as its status), shown by the process's progress display if it has one.
    pub fn with_progress(mut self, on: bool) -> Self {
        self.progress = on;
        self
    }

    /// Writes a checkpoint of the trained policy here at the end (only if all weights are finite).
    pub fn with_checkpoint_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.checkpoint_dir = Some(dir.into());
        self
    }

    /// Calls `f` after every optimizer step.
    pub fn on_step(mut self, f: impl FnMut(&StepMetrics) + 'a) -> Self {
        self.on_step = Some(Box::new(f));
        self
    }

    /// The configuration in use.
    pub fn config(&self) -> &DpoConfig {
        &self.config
    }

    /// Trains `policy` in place on `pairs` and returns what happened.
    ///
    /// Pairs are truncated and filtered first ([`truncate_pairs`]); an empty result is
    /// [`DpoError::EmptyDataset`]. A NaN/inf loss or gradient stops with
    /// [`DpoError::NonFinite`] before the offending update; no checkpoint is written then.
    pub fn train(
        mut self,
        policy: &dyn PolicyModel,
        pairs: &[TokenizedPair],
    ) -> Result<TrainSummary> {
        let start = Instant::now();
        let mut run = Run::prepare(self.config.clone(), policy, self.reference, pairs)?;
        let stage = self.progress.then(|| {
            srlm_core::progress::stage(
                srlm_core::progress::StageKind::Training,
                format!("DPO on {} pairs", run.data.len()),
                run.total_steps,
                "steps",
            )
        });
        for step in 1..=run.total_steps {
            let metrics = run.step(step)?;
            tracing::debug!(
                step,
                loss = metrics.loss,
                margin = metrics.rewards_margins,
                "dpo step"
            );
            if let Some(w) = self.metrics.as_mut() {
                w.write(&metrics)?;
            }
            if let Some(f) = self.on_step.as_mut() {
                f(&metrics);
            }
            if let Some(stage) = &stage {
                stage.message(&format!(
                    "loss {:.4} margin {:+.3} acc {:.2} {:.0} tok/s",
                    metrics.loss,
                    metrics.rewards_margins,
                    metrics.rewards_accuracies,
                    metrics.tokens_per_second
                ));
                stage.advance(1);
            }
            run.history.push(metrics);
        }
        drop(stage);
        run.summarize(self.checkpoint_dir, start)
    }
}

/// Reference log-probs of every pair of `data` under `model` (detached), computed in batches of
/// `bs` pairs, and the real tokens that took. A non-finite value stops with
/// [`DpoError::NonFinite`] at step 0.
fn precompute_reference(
    model: &dyn PolicyModel,
    data: &[TokenizedPair],
    bs: usize,
    device: &Device,
) -> Result<(Vec<RefLogps>, u64)> {
    let mut reference_tokens = 0u64;
    let mut all = Vec::with_capacity(data.len());
    for chunk in data.chunks(bs) {
        let refs: Vec<&TokenizedPair> = chunk.iter().collect();
        let batch = PairBatch::new(&refs, device)?;
        let r = reference_logps(model, &batch)?;
        if r.iter()
            .any(|x| !x.chosen.is_finite() || !x.rejected.is_finite())
        {
            return Err(DpoError::NonFinite {
                step: 0,
                what: "reference log-probs",
                pair_ids: batch.pair_ids.clone(),
            });
        }
        reference_tokens += batch.tokens as u64;
        all.extend(r);
    }
    Ok((all, reference_tokens))
}

/// Switches gradient checkpointing off again when a run ends (it is on for one `train` call
/// only).
struct CheckpointingGuard<'a>(&'a dyn PolicyModel, bool);

impl Drop for CheckpointingGuard<'_> {
    fn drop(&mut self) {
        if self.1 {
            self.0.set_gradient_checkpointing(false);
        }
    }
}

/// One `train` call in progress: what [`Run::prepare`] checked and set up (the filtered pairs,
/// reference log-probs, schedule, optimizer, shuffled order), and the state each [`Run::step`]
/// advances.
struct Run<'a> {
    cfg: DpoConfig,
    policy: &'a dyn PolicyModel,
    reference: Option<&'a dyn PolicyModel>,
    data: Vec<TokenizedPair>,
    filter: FilterStats,
    vars: Vec<Var>,
    device: Device,
    /// Restores "no checkpointing" when the run is dropped.
    _checkpointing: CheckpointingGuard<'a>,
    /// Precomputed reference log-probs, one per pair of `data`.
    ref_cache: Option<Vec<RefLogps>>,
    micro_per_epoch: usize,
    total_steps: u64,
    warmup: u64,
    opt: FusedAdamW,
    rng: rand_chacha::ChaCha8Rng,
    order: Vec<usize>,
    /// Next micro-batch within the epoch.
    cursor: usize,
    micro_done: u64,
    tokens_trained: u64,
    reference_tokens: u64,
    history: Vec<StepMetrics>,
}

impl<'a> Run<'a> {
    /// Checks the call, filters the pairs, switches gradient checkpointing on, computes the
    /// reference log-probs (when precomputed), and builds the schedule and the optimizer.
    fn prepare(
        cfg: DpoConfig,
        policy: &'a dyn PolicyModel,
        reference: Option<&'a dyn PolicyModel>,
        pairs: &[TokenizedPair],
    ) -> Result<Self> {
        if !cfg.precompute_ref_log_probs && reference.is_none() {
            return Err(config_err(
                "precompute_ref_log_probs",
                "is false, so a frozen reference model is needed (DpoTrainer::with_reference)",
            ));
        }
        let (data, filter) = truncate_pairs(pairs, cfg.max_length, cfg.max_prompt_length);
        if data.is_empty() {
            return Err(DpoError::EmptyDataset {
                total: filter.total,
                dropped_empty_response: filter.dropped_empty_response,
                dropped_empty_prompt: filter.dropped_empty_prompt,
                dropped_identical: filter.dropped_identical,
            });
        }
        let vars: Vec<Var> = policy.trainable_vars();
        if vars.is_empty() {
            return Err(config_err(
                "trainable_vars",
                "the policy has no trainable variables",
            ));
        }
        let device = policy.device();
        // Checkpointing is switched on for this call only (the guard restores "off").
        let checkpointing = CheckpointingGuard(
            policy,
            cfg.gradient_checkpointing && {
                let ok = policy.set_gradient_checkpointing(true);
                if !ok {
                    tracing::warn!(
                        "gradient_checkpointing is on but this model does not support it; \
                         training without it"
                    );
                }
                ok
            },
        );
        let bs = cfg.per_device_train_batch_size;
        let ga = cfg.gradient_accumulation_steps;
        let n = data.len();

        // Reference log-probs, once, before any update (detached).
        let mut reference_tokens = 0u64;
        let ref_cache: Option<Vec<RefLogps>> = if cfg.precompute_ref_log_probs {
            let model = reference.unwrap_or(policy);
            let (all, tokens) = precompute_reference(model, &data, bs, &device)?;
            reference_tokens = tokens;
            Some(all)
        } else {
            None
        };

        let micro_per_epoch = n.div_ceil(bs);
        let steps_per_epoch = micro_per_epoch.div_ceil(ga) as u64;
        let total_steps = cfg
            .max_steps
            .unwrap_or(steps_per_epoch * u64::from(cfg.num_train_epochs));
        let warmup = warmup_len(cfg.warmup_steps, cfg.warmup_ratio, total_steps);
        let opt = FusedAdamW::new(
            vars.clone(),
            ParamsAdamW {
                lr: cfg.learning_rate,
                beta1: cfg.adam_beta1,
                beta2: cfg.adam_beta2,
                eps: cfg.adam_epsilon,
                weight_decay: cfg.weight_decay,
            },
        )?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut rng);
        Ok(Run {
            cfg,
            policy,
            reference,
            data,
            filter,
            vars,
            device,
            _checkpointing: checkpointing,
            ref_cache,
            micro_per_epoch,
            total_steps,
            warmup,
            opt,
            rng,
            order,
            cursor: 0,
            micro_done: 0,
            tokens_trained: 0,
            reference_tokens,
            history: Vec::with_capacity(total_steps as usize),
        })
    }

    /// Optimizer step `step` (from 1): the next `gradient_accumulation_steps` micro-batches
    /// (reshuffling at an epoch's end), their summed gradients clipped, one AdamW update at the
    /// scheduled learning rate. Returns the step's metrics.
    fn step(&mut self, step: u64) -> Result<StepMetrics> {
        let cfg = &self.cfg;
        let policy = self.policy;
        let vars = &self.vars;
        let data = &self.data;
        let bs = cfg.per_device_train_batch_size;
        let ga = cfg.gradient_accumulation_steps;
        let n = data.len();
        let micro_per_epoch = self.micro_per_epoch;

        let step_start = Instant::now();
        if self.cursor >= micro_per_epoch {
            self.order.shuffle(&mut self.rng);
            self.cursor = 0;
        }
        let mut group: Vec<&[usize]> = Vec::with_capacity(ga);
        while group.len() < ga && self.cursor < micro_per_epoch {
            group.push(&self.order[self.cursor * bs..((self.cursor + 1) * bs).min(n)]);
            self.cursor += 1;
        }
        let group_pairs: usize = group.iter().map(|g| g.len()).sum();
        let group_ids = || -> Vec<String> {
            group
                .iter()
                .flat_map(|g| g.iter().map(|&i| data[i].id.clone()))
                .collect()
        };

        let mut acc: Vec<Option<Tensor>> = vec![None; vars.len()];
        let (mut loss_sum, mut tokens) = (0f64, 0u64);
        let (mut rc, mut rr, mut acc_n, mut lc, mut lr_) = (0f64, 0f64, 0usize, 0f64, 0f64);
        for idxs in &group {
            let refs: Vec<&TokenizedPair> = idxs.iter().map(|&i| &data[i]).collect();
            let batch = PairBatch::new(&refs, &self.device)?;
            let reference = match (&self.ref_cache, self.reference) {
                (Some(cache), _) => idxs.iter().map(|&i| cache[i]).collect(),
                (None, Some(model)) => {
                    self.reference_tokens += batch.tokens as u64;
                    reference_logps(model, &batch)?
                }
                (None, None) => unreachable!("checked in Run::prepare"),
            };
            let out = dpo_batch_loss(policy, &batch, &reference, cfg)?;
            let value = out
                .loss
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
            if !value.is_finite() {
                return Err(DpoError::NonFinite {
                    step,
                    what: "loss",
                    pair_ids: batch.pair_ids,
                });
            }
            let share = idxs.len() as f64 / group_pairs as f64;
            loss_sum += value * share;
            let grads = policy.backward(&(out.loss * share)?)?;
            for (slot, v) in acc.iter_mut().zip(vars) {
                if let Some(g) = grads.get(v.as_tensor()) {
                    *slot = Some(match slot.take() {
                        Some(a) => (a + g)?.detach(),
                        None => g.detach(),
                    });
                }
            }
            tokens += batch.tokens as u64;
            for i in 0..batch.pairs() {
                let (c, r) = (out.chosen_rewards[i] as f64, out.rejected_rewards[i] as f64);
                rc += c;
                rr += r;
                acc_n += usize::from(c > r);
                lc += out.policy_chosen[i] as f64;
                lr_ += out.policy_rejected[i] as f64;
            }
        }
        self.micro_done += group.len() as u64;

        let grad_norm = global_grad_norm(acc.iter().flatten())?;
        if !grad_norm.is_finite() {
            return Err(DpoError::NonFinite {
                step,
                what: "gradient",
                pair_ids: group_ids(),
            });
        }
        // A zero gradient is right only when the loss is 0 too (hinge with every pair beyond
        // the margin); with a loss left it means the model no longer responds to its weights.
        if grad_norm == 0.0 && loss_sum > 1e-6 {
            return Err(DpoError::Diverged {
                step,
                loss: loss_sum,
                learning_rate: cfg.learning_rate,
            });
        }
        let clip = cfg
            .max_grad_norm
            .map_or(1.0, |m| (m / (grad_norm + 1e-6)).min(1.0));
        let lr = lr_at(
            cfg.lr_scheduler_type,
            cfg.learning_rate,
            step - 1,
            self.total_steps,
            self.warmup,
        );
        self.opt.step(&acc, clip, lr)?;
        drop(acc);
        self.tokens_trained += tokens;

        let m = group_pairs as f64;
        let secs = step_start.elapsed().as_secs_f64();
        Ok(StepMetrics {
            step,
            epoch: self.micro_done as f64 / micro_per_epoch as f64,
            loss: loss_sum,
            rewards_chosen: rc / m,
            rewards_rejected: rr / m,
            rewards_margins: (rc - rr) / m,
            rewards_accuracies: acc_n as f64 / m,
            logps_chosen: lc / m,
            logps_rejected: lr_ / m,
            grad_norm,
            learning_rate: lr,
            tokens,
            tokens_per_second: if secs > 0.0 {
                tokens as f64 / secs
            } else {
                0.0
            },
        })
    }

    /// Ends the run: the checkpoint (when `checkpoint_dir` is set; only with finite weights)
    /// and the [`TrainSummary`], its wall time counted from `start`.
    fn summarize(self, checkpoint_dir: Option<PathBuf>, start: Instant) -> Result<TrainSummary> {
        let checkpoint = match checkpoint_dir {
            Some(dir) => {
                save_checkpoint_checked(self.policy, &dir, self.total_steps)?;
                Some(dir)
            }
            None => None,
        };
        Ok(TrainSummary {
            steps: self.total_steps,
            epochs: self.micro_done as f64 / self.micro_per_epoch as f64,
            filter: self.filter,
            tokens_trained: self.tokens_trained,
            reference_tokens: self.reference_tokens,
            wall_time_s: start.elapsed().as_secs_f64(),
            final_metrics: self.history.last().cloned().expect("at least one step"),
            history: self.history,
            checkpoint,
        })
    }
}

/// Convenience entry point: `DpoTrainer::new(config)?` (+ `with_reference` when given)
/// `.train(policy, pairs)`, without metrics file, progress bar or checkpoint.
pub fn train_dpo(
    policy: &dyn PolicyModel,
    reference: Option<&dyn PolicyModel>,
    pairs: &[TokenizedPair],
    config: DpoConfig,
) -> Result<TrainSummary> {
    let mut t = DpoTrainer::new(config)?;
    if let Some(r) = reference {
        t = t.with_reference(r);
    }
    t.train(policy, pairs)
}
