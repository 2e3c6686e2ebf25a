//! srlm-pipeline: runs self-rewarding iterations with any strategy plugin.
//!
//! - [`run::run`] drives M0 → … → Mn: for each iteration it hands a chunk of prompts to the
//!   strategy plugin with a [`host::RunHost`] behind the ABI callbacks (sample with
//!   srlm-model, judge with srlm-judge, train temporary models with srlm-dpo), trains
//!   M_{i+1} = DPO(M_i, pairs) with M_i as reference, evaluates on held-out prompts, and writes
//!   the run folder.
//! - [`store::Store`] memoises every stage under a hash of its inputs: `--resume` replays a
//!   crashed run for free, whatever the plugin.
//! - [`config::RunConfig`] is the TOML configuration; [`prompts`] reads prompt pools.
//!
//! Design choice: resuming is not a special code path. A resumed run executes the same loop
//! from the start and every finished stage is answered from the cache, so an uninterrupted
//! run and a resumed one produce the same pairs and metrics by construction.

#![deny(missing_docs)]

pub mod compare;
pub mod config;
pub mod eval;
pub mod host;
pub mod judges;
pub mod prompts;
pub mod report;
pub mod run;
pub mod store;
