//! srlm-pipeline: runs self-rewarding iterations with any strategy plugin.
//!
//! - [`run::run`] drives M0 → … → Mn: for each iteration it hands a chunk of prompts to the
//!   strategy plugin with a [`host::RunHost`] behind the ABI callbacks, trains
//!   M_{i+1} = DPO(M_i, pairs) with M_i as reference, evaluates on held-out prompts, and writes
//!   the run folder ([`run_dir::RunDir`], the one owner of its layout) and one
//!   [`metrics::IterationMetrics`] per iteration.
//! - [`ports`]: the backend ports the loop and the host use, [`ports::Generator`] (sampling,
//!   hidden states, judge models) and [`ports::Trainer`] (DPO); [`candle::CandleBackend`]
//!   implements both in-process, [`testing::FakeBackend`] without model files.
//! - [`store::Store`] memoises every stage under a hash of its inputs: `--resume` replays a
//!   crashed run for free, whatever the plugin.
//! - [`config::RunConfig`] is the TOML configuration; [`prompts`] reads prompt pools;
//!   [`judges`] builds judges from specs over a backend; [`eval`] scores greedy answers;
//!   [`ood`] names the out-of-distribution sets (GSM8K, ARC-Challenge) every M_i is scored on;
//!   [`report`] / [`compare`] render run folders.
//!
//! Design choice: resuming is not a special code path. A resumed run executes the same loop
//! from the start and every finished stage is answered from the cache, so an uninterrupted
//! run and a resumed one produce the same pairs and metrics by construction.

#![deny(missing_docs)]

pub mod candle;
pub mod compare;
pub mod config;
pub mod eval;
pub mod external;
pub mod host;
pub mod judges;
pub mod metrics;
pub mod ood;
pub mod ports;
pub mod prompts;
pub mod report;
pub mod run;
pub mod run_dir;
pub mod served;
pub mod stats;
pub mod store;
pub mod testing;
