//! [`LanguageModel`]: a [`Llama`] with its tokenizer, chat template and stop tokens — what the
//! rest of srlm loads, samples from, scores with and trains.

use crate::chat::{ChatMessage, ChatTemplate};
use crate::error::{io_err, ModelError, Result};
use crate::llama::Llama;
use crate::resolve::{resolve_model, ModelFiles, DEFAULT_MODEL};
use crate::text::ModelText;
use crate::tokenizer::Tokenizer;
use crate::weights::{load_gguf, load_hf_dir};
use candle_core::Device;
use std::path::Path;

/// The model reference of [`LanguageModel::tiny_random`].
pub const TINY_RANDOM: &str = "tiny-random";

/// A loaded causal LM ready for sampling, scoring and training.
pub struct LanguageModel {
    /// The network (weights in a `VarMap`, trainable).
    pub model: Llama,
    /// Text ⇄ ids.
    pub tokenizer: Tokenizer,
    /// The model's own chat template.
    pub template: ChatTemplate,
    /// Token ids that end a response (EOS and the template's end-of-turn token).
    pub stop_ids: Vec<u32>,
    /// Id used to pad batches (never trained on: masks come from lengths, case T2).
    pub pad_id: u32,
    /// Where it was loaded from (for logs and run configs).
    pub origin: String,
    /// For a LoRA model: the reference of the model its adapter applies to (PEFT's
    /// `base_model_name_or_path`, written into the adapter's config).
    pub base_model: Option<String>,
}

/// The device srlm runs on: CUDA device 0 when built with `--features cuda` and one is usable,
/// else the CPU. A CUDA build that finds no usable device says so once (a `tracing` warning
/// naming CUDA's error) and runs on the CPU.
pub fn default_device() -> Device {
    #[cfg(feature = "cuda")]
    match Device::new_cuda(0) {
        Ok(d) => return d,
        Err(e) => {
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                // candle appends a backtrace under RUST_BACKTRACE: the first line is the error.
                let e = e.to_string();
                let e = e.lines().next().unwrap_or_default();
                tracing::warn!(
                    "built with CUDA, but no CUDA device is usable ({e}); running on the CPU"
                )
            });
        }
    }
    Device::Cpu
}

/// How a LoRA run keeps its frozen base (the weights every model of the run shares) in memory.
/// Measured on the default model in docs/benchmarks.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrozenBase {
    /// The f32 model's numbers, bit for bit: a GGUF file's projections stay in their quantized
    /// blocks ([`LanguageModel::with_quantized_base`]; 3× less base memory for the default
    /// model), other weights and other models' (HF folders, non-CPU devices) stay f32.
    Exact,
    /// Weights in bf16 ([`LanguageModel::with_base_dtype`]): half the f32 memory, on any
    /// device; response log-probs move by up to ~0.12 nats on the default model.
    Bf16,
}

impl LanguageModel {
    /// This model as a frozen LoRA base in `form` (its weights are shared where kept as they
    /// are). Errors as [`LanguageModel::with_quantized_base`] and
    /// [`LanguageModel::with_base_dtype`].
    pub fn frozen_base(&self, form: FrozenBase) -> Result<Self> {
        let gguf = matches!(
            crate::resolve::resolve_model(&self.origin),
            Ok(crate::resolve::ModelFiles::Gguf(_))
        );
        match form {
            FrozenBase::Exact if gguf && self.model.device().is_cpu() => self.with_quantized_base(),
            FrozenBase::Exact => self.with_base_dtype(candle_core::DType::F32),
            FrozenBase::Bf16 => self.with_base_dtype(candle_core::DType::BF16),
        }
    }

    /// Loads a model reference (see [`resolve_model`]): `default`, a `.gguf` file or an
    /// HF-style directory (`config.json`, `*.safetensors`, `tokenizer.json`,
    /// `tokenizer_config.json` with `chat_template`).
    ///
    /// Errors: every [`ModelError`] of fetching, reading and validating the files.
    pub fn load(reference: &str, device: &Device) -> Result<Self> {
        if reference == TINY_RANDOM {
            return Self::tiny_random(device);
        }
        let path = Path::new(reference);
        if crate::lora::is_adapter_dir(path) {
            let info = crate::lora::read_adapter_config(path)?;
            let base = info.base_model.ok_or_else(|| {
                ModelError::Weights(format!(
                    "{}: names no `base_model_name_or_path`, so the model the adapter applies to is unknown",
                    path.join(crate::lora::ADAPTER_CONFIG).display()
                ))
            })?;
            let base_path = Path::new(&base);
            if crate::lora::is_adapter_dir(base_path) {
                // One adapter per model: a chain (or an adapter naming itself) is refused.
                return Err(ModelError::Weights(format!(
                    "{}: its base `{base}` is itself a LoRA adapter; an adapter applies to a full model (merge the base first: srlm export BASE --hf DIR --merge)",
                    path.join(crate::lora::ADAPTER_CONFIG).display()
                )));
            }
            let base = Self::load(&base, device)?;
            return base.load_adapter(path);
        }
        match resolve_model(reference)? {
            ModelFiles::Gguf(path) => {
                let g = load_gguf(&path, device)?;
                let text = ModelText::from_gguf_metadata(&g.metadata, g.config.clone(), &path)?;
                let model = Llama::from_tensors(g.config, g.tensors, device)?;
                Ok(Self::with_text(model, text, path.display().to_string()))
            }
            ModelFiles::HfDir(dir) => {
                let (config, tensors) = load_hf_dir(&dir, device)?;
                let text = ModelText::from_hf_dir(&dir, Some(config.clone()))?;
                let model = Llama::from_tensors(config, tensors, device)?;
                Ok(Self::with_text(model, text, dir.display().to_string()))
            }
        }
    }

    /// A model from its network and its text parts (tokenizer, template, stop ids).
    pub fn with_text(model: Llama, text: ModelText, origin: String) -> Self {
        LanguageModel {
            model,
            tokenizer: text.tokenizer,
            template: text.template,
            stop_ids: text.stop_ids,
            pad_id: text.pad_id,
            origin,
            base_model: None,
        }
    }

    /// A LoRA model on this model (see [`Llama::with_lora`]): the weights are shared and
    /// frozen, a new adapter (B = 0) is drawn from `seed`; the text parts are copied.
    ///
    /// Errors: [`ModelError::InvalidInput`] when this model already has an adapter.
    pub fn with_lora(&self, config: &crate::LoraConfig, seed: u64) -> Result<Self> {
        // The base as an absolute path where it is one, so the adapter finds it from any
        // working directory.
        let base = std::fs::canonicalize(&self.origin)
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| self.origin.clone());
        Ok(self.sibling(
            self.model.with_lora(config, seed)?,
            self.origin.clone(),
            Some(base),
        ))
    }

    /// The same model with its base frozen and stored in `dtype` (f32 or bf16; see
    /// [`Llama::with_base_dtype`]): the base of LoRA models that keeps half the memory in bf16.
    /// Same origin (the weights it came from); the text parts are copied.
    ///
    /// Errors: [`ModelError::InvalidInput`] for a LoRA model or another dtype.
    pub fn with_base_dtype(&self, dtype: candle_core::DType) -> Result<Self> {
        Ok(self.sibling(
            self.model.with_base_dtype(dtype)?,
            self.origin.clone(),
            self.base_model.clone(),
        ))
    }

    /// The same model with its projections kept frozen in the blocks of the GGUF file it was
    /// loaded from ([`Llama::with_quantized_base`]; Q4_1 for the default model: 6.4× less
    /// memory than f32, the same numbers). The base of LoRA models on the CPU.
    ///
    /// Errors: [`ModelError::InvalidInput`] when this model was not loaded from a GGUF file,
    /// has an adapter, or is not on the CPU; [`ModelError::Weights`] when the file's blocks are
    /// not this model's weights (it changed since loading).
    pub fn with_quantized_base(&self) -> Result<Self> {
        let path = match crate::resolve::resolve_model(&self.origin) {
            Ok(crate::resolve::ModelFiles::Gguf(p)) => p,
            _ => {
                return Err(ModelError::InvalidInput(format!(
                    "a quantized base is read from a GGUF file; `{}` is not one (use a bf16 base)",
                    self.origin
                )))
            }
        };
        let quantized = crate::weights::load_gguf_projections(&path)?;
        // The blocks must be the weights this model holds: the file may have changed.
        let name = "model.layers.0.self_attn.q_proj.weight";
        let mine = self.model.projection_weight(0, crate::LoraTarget::QProj)?;
        let theirs = quantized
            .get(name)
            .ok_or_else(|| ModelError::Weights(format!("{}: no `{name}`", path.display())))?
            .dequantize()?;
        let same = (mine - theirs)?.abs()?.max_all()?.to_scalar::<f32>()? == 0.0;
        if !same {
            return Err(ModelError::Weights(format!(
                "{}: its blocks are not the weights of the loaded model `{}` (changed on disk?)",
                path.display(),
                self.origin
            )));
        }
        Ok(self.sibling(
            self.model.with_quantized_base(quantized)?,
            self.origin.clone(),
            self.base_model.clone(),
        ))
    }

    /// The PEFT adapter in `dir` (`adapter_config.json`, `adapter_model.safetensors`) applied
    /// to this model, whose weights are shared, not copied (this model's own adapter, if any,
    /// is not kept). The caller chooses the base; the adapter's `base_model_name_or_path` is
    /// kept as the new model's [`LanguageModel::base_model`].
    ///
    /// Errors: [`ModelError::Io`], [`ModelError::Weights`] for a config srlm cannot apply or
    /// tensors that do not fit this base (names and shapes), [`ModelError::Corrupt`].
    pub fn load_adapter(&self, dir: &Path) -> Result<Self> {
        let info = crate::lora::read_adapter_config(dir)?;
        let file = dir.join(crate::lora::ADAPTER_WEIGHTS);
        let tensors = candle_core::safetensors::load(&file, self.model.device()).map_err(|e| {
            ModelError::Corrupt {
                path: file.clone(),
                format: "safetensors",
                message: e.to_string(),
            }
        })?;
        let tensors = tensors
            .into_iter()
            .map(
                |(name, t)| match name.strip_prefix(crate::lora::PEFT_PREFIX) {
                    Some(n) => Ok((n.to_string(), t)),
                    None => Err(ModelError::Weights(format!(
                        "{}: tensor `{name}` lacks PEFT's `{}` prefix",
                        file.display(),
                        crate::lora::PEFT_PREFIX
                    ))),
                },
            )
            .collect::<Result<std::collections::HashMap<_, _>>>()?;
        let model = self
            .model
            .with_adapter(&info.config, tensors)
            .map_err(|e| ModelError::Weights(format!("{}: {e}", file.display())))?;
        Ok(self.sibling(
            model,
            dir.display().to_string(),
            info.base_model.or_else(|| Some(self.origin.clone())),
        ))
    }

    /// `model` with this model's text parts (tokenizer, template, stop ids, padding).
    fn sibling(&self, model: Llama, origin: String, base_model: Option<String>) -> LanguageModel {
        LanguageModel {
            model,
            tokenizer: self.tokenizer.clone(),
            template: self.template.clone(),
            stop_ids: self.stop_ids.clone(),
            pad_id: self.pad_id,
            origin,
            base_model,
        }
    }

    /// The text parts (tokenizer, template, stop ids, config) without the weights.
    pub fn text(&self) -> ModelText {
        ModelText {
            tokenizer: self.tokenizer.clone(),
            template: self.template.clone(),
            stop_ids: self.stop_ids.clone(),
            pad_id: self.pad_id,
            config: self.model.config().clone(),
        }
    }

    /// A 2-layer, 64-wide Llama with random weights (seed 0) and the default model's real
    /// tokenizer and chat template: for fast plumbing tests of the whole loop, never for results.
    /// Needs the default model's GGUF (fetched on first use) for its tokenizer metadata only.
    pub fn tiny_random(device: &Device) -> Result<Self> {
        let path = srlm_assets::fetch_asset(&DEFAULT_MODEL)?;
        let mut f = std::fs::File::open(&path).map_err(io_err(&path))?;
        let ct = candle_core::quantized::gguf_file::Content::read(&mut f).map_err(|e| {
            ModelError::Corrupt {
                path: path.clone(),
                format: "GGUF",
                message: e.to_string(),
            }
        })?;
        let tokenizer = Tokenizer::from_gguf(&ct.metadata)?;
        let source = crate::config::meta_str(&ct, "tokenizer.chat_template")?;
        let template = ChatTemplate::new(source, "<|im_start|>", "<|im_end|>")?;
        let cfg = crate::config::LlamaConfig {
            architecture: crate::config::Architecture::Llama,
            vocab_size: tokenizer.vocab_size(),
            hidden_size: 64,
            intermediate_size: 128,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            head_dim: 16,
            rms_norm_eps: 1e-5,
            rope_theta: 10000.0,
            max_position_embeddings: 2048,
            tie_word_embeddings: true,
            attention_bias: false,
            bos_token_id: Some(1),
            eos_token_id: Some(2),
            rope_scaling: None,
        };
        let model = Llama::random(cfg, 0, device)?;
        Ok(Self::from_parts(
            model,
            tokenizer,
            template,
            TINY_RANDOM.to_string(),
        ))
    }

    /// Assembles a model; stop ids are the config's EOS plus `<|im_end|>`, `<|endoftext|>`,
    /// `<|eot_id|>` and `</s>` where the vocabulary has them.
    pub fn from_parts(
        model: Llama,
        tokenizer: Tokenizer,
        template: ChatTemplate,
        origin: String,
    ) -> Self {
        let text = ModelText::new(tokenizer, template, model.config().clone());
        Self::with_text(model, text, origin)
    }

    /// A model with the same tokenizer, template and config shape but its own copy of the
    /// weights (a LoRA model: its own copy of the adapter, the frozen base shared).
    pub fn deep_copy(&self) -> Result<Self> {
        Ok(self.sibling(
            self.model.deep_copy()?,
            self.origin.clone(),
            self.base_model.clone(),
        ))
    }

    /// The chat-rendered text of one user turn with the generation prompt (the assistant header).
    pub fn render_user_turn(&self, prompt: &str) -> Result<String> {
        self.template.render(&[ChatMessage::user(prompt)], true)
    }

    /// Token ids of one chat-rendered user turn, ready for sampling.
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>> {
        self.tokenizer.encode(&self.render_user_turn(prompt)?)
    }

    /// (prompt ids, response ids) of one exchange, for scoring and DPO: the conversation is
    /// templated once and split (case T3), prompt and response are encoded separately and never
    /// re-tokenized joined (case T4). The response ids end with the template's end-of-turn text
    /// (`<|im_end|>\n` for ChatML), so EOS is trained (case T2).
    pub fn encode_exchange(&self, prompt: &str, response: &str) -> Result<(Vec<u32>, Vec<u32>)> {
        let (p, r) = self.template.split_exchange(prompt, response)?;
        Ok((self.tokenizer.encode(&p)?, self.tokenizer.encode(&r)?))
    }

    /// Response ids for a response given as sampled token ids: the ids as sampled, with the
    /// end-of-turn suffix of the template appended when the sample did not end with it.
    pub fn response_ids_from_sample(&self, prompt: &str, sampled: &[u32]) -> Result<Vec<u32>> {
        crate::text::response_ids_from_sample(
            &self.tokenizer,
            &self.template,
            &self.stop_ids,
            prompt,
            sampled,
        )
    }

    /// The model's context length in tokens.
    pub fn context_length(&self) -> usize {
        self.model.config().max_position_embeddings
    }

    /// SHA-256 over the trainable weights (names, shapes and f32 bytes, in name order): a
    /// model snapshot's identity for tests; for a LoRA model, its adapter's.
    pub fn snapshot_hash(&self) -> Result<String> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for (name, var) in self.model.named_vars() {
            h.update(name.as_bytes());
            h.update(format!("{:?}", var.dims()).as_bytes());
            let v = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            for x in v {
                h.update(x.to_le_bytes());
            }
        }
        Ok(hex::encode(h.finalize()))
    }

    /// Writes the model as an HF-loadable checkpoint; see [`crate::checkpoint::save_checkpoint`].
    pub fn save(&self, dir: &Path) -> Result<()> {
        crate::checkpoint::save_checkpoint(self, dir, crate::SaveDtype::F32)
    }

    /// Like [`LanguageModel::save`], with the weights stored as `dtype` (training and sampling
    /// stay f32; a bf16/f16 checkpoint loads back as f32).
    pub fn save_as(&self, dir: &Path, dtype: crate::SaveDtype) -> Result<()> {
        crate::checkpoint::save_checkpoint(self, dir, dtype)
    }
}
