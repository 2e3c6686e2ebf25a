//! [`ModelText`]: a model's tokenizer, chat template, stop tokens and context length, read
//! without its weights (GGUF metadata, or an HF folder's `config.json`, `tokenizer.json` and
//! `tokenizer_config.json`). It is what renders and encodes prompts — in-process for
//! [`crate::LanguageModel`], and for a client of an inference server, which must send the exact
//! text and ids srlm would use in-process.

use crate::chat::{ChatMessage, ChatTemplate};
use crate::config::{HfConfig, LlamaConfig};
use crate::error::{io_err, ModelError, Result};
use crate::resolve::{resolve_model, ModelFiles};
use crate::tokenizer::Tokenizer;
use candle_core::quantized::gguf_file;
use std::path::Path;

/// Everything about a model that is text, not weights.
#[derive(Clone)]
pub struct ModelText {
    /// Text ⇄ ids.
    pub tokenizer: Tokenizer,
    /// The model's own chat template.
    pub template: ChatTemplate,
    /// Token ids that end a response (EOS and the template's end-of-turn token).
    pub stop_ids: Vec<u32>,
    /// Id used to pad batches.
    pub pad_id: u32,
    /// The architecture and sizes (from the metadata; no weights read).
    pub config: LlamaConfig,
}

impl ModelText {
    /// Reads a model reference's text parts (see [`resolve_model`]); for a GGUF only the
    /// header is read, for an HF folder only its JSON files, for a LoRA adapter folder its
    /// base's.
    ///
    /// Errors: [`ModelError::Io`], [`ModelError::Corrupt`], [`ModelError::Tokenizer`],
    /// [`ModelError::Template`], [`ModelError::UnsupportedArchitecture`].
    pub fn load(reference: &str) -> Result<Self> {
        if reference == crate::TINY_RANDOM {
            let m = crate::LanguageModel::tiny_random(&candle_core::Device::Cpu)?;
            return Ok(m.text());
        }
        let path = std::path::Path::new(reference);
        if crate::lora::is_adapter_dir(path) {
            // A LoRA adapter reads and writes text as its base does.
            let base = crate::lora::adapter_base(path).ok_or_else(|| {
                ModelError::Weights(format!(
                    "{}: names no `base_model_name_or_path`, so the model the adapter applies to is unknown",
                    path.join(crate::lora::ADAPTER_CONFIG).display()
                ))
            })?;
            if crate::lora::is_adapter_dir(std::path::Path::new(&base)) {
                return Err(ModelError::Weights(format!(
                    "{}: its base `{base}` is itself a LoRA adapter; an adapter applies to a full model",
                    path.join(crate::lora::ADAPTER_CONFIG).display()
                )));
            }
            return Self::load(&base);
        }
        match resolve_model(reference)? {
            ModelFiles::Gguf(path) => {
                let mut file = std::fs::File::open(&path).map_err(io_err(&path))?;
                let content =
                    gguf_file::Content::read(&mut file).map_err(|e| ModelError::Corrupt {
                        path: path.clone(),
                        format: "GGUF",
                        message: e.to_string(),
                    })?;
                let has_output = content.tensor_infos.contains_key("output.weight");
                let config = LlamaConfig::from_gguf(&content, has_output)?;
                Self::from_gguf_metadata(&content.metadata, config, &path)
            }
            ModelFiles::HfDir(dir) => Self::from_hf_dir(&dir, None),
        }
    }

    /// From parsed GGUF metadata and the config read from it.
    pub(crate) fn from_gguf_metadata(
        metadata: &std::collections::HashMap<String, gguf_file::Value>,
        config: LlamaConfig,
        path: &Path,
    ) -> Result<Self> {
        let tokenizer = Tokenizer::from_gguf(metadata)?;
        let source = match metadata.get("tokenizer.chat_template") {
            Some(gguf_file::Value::String(s)) => s.clone(),
            _ => {
                return Err(ModelError::Template(format!(
                    "{}: GGUF has no tokenizer.chat_template",
                    path.display()
                )))
            }
        };
        let name = |id: Option<u32>| {
            id.and_then(|i| tokenizer.id_to_token(i))
                .unwrap_or_default()
        };
        let template =
            ChatTemplate::new(source, name(config.bos_token_id), name(config.eos_token_id))?;
        Ok(Self::new(tokenizer, template, config))
    }

    /// From an HF folder's JSON files; `config` when the caller already has it.
    pub(crate) fn from_hf_dir(dir: &Path, config: Option<LlamaConfig>) -> Result<Self> {
        let config = match config {
            Some(c) => c,
            None => {
                let cfg_path = dir.join("config.json");
                let text = std::fs::read_to_string(&cfg_path).map_err(io_err(&cfg_path))?;
                let hf: HfConfig =
                    serde_json::from_str(&text).map_err(|e| ModelError::Corrupt {
                        path: cfg_path.clone(),
                        format: "config.json",
                        message: e.to_string(),
                    })?;
                hf.to_runtime()?
            }
        };
        let tokenizer = Tokenizer::from_file(&dir.join("tokenizer.json"))?;
        let tc_path = dir.join("tokenizer_config.json");
        let tc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&tc_path).map_err(io_err(&tc_path))?)
                .map_err(|e| ModelError::Corrupt {
                    path: tc_path.clone(),
                    format: "tokenizer_config.json",
                    message: e.to_string(),
                })?;
        // transformers ≥ 4.43 may save the template as `chat_template.jinja` next to the
        // tokenizer instead (transformers 5 always does, e.g. in a checkpoint TRL wrote).
        let jinja_path = dir.join("chat_template.jinja");
        let jinja = std::fs::read_to_string(&jinja_path).ok();
        let source = match tc["chat_template"].as_str() {
            Some(s) => s,
            None => jinja.as_deref().ok_or_else(|| {
                ModelError::Template(format!(
                    "{}: no `chat_template` string, and no {} next to it",
                    tc_path.display(),
                    jinja_path.display()
                ))
            })?,
        };
        let tok = |k: &str| match &tc[k] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(o) => o
                .get("content")
                .and_then(|c| c.as_str())
                .unwrap_or_default()
                .to_string(),
            _ => String::new(),
        };
        let template = ChatTemplate::new(source, tok("bos_token"), tok("eos_token"))?;
        Ok(Self::new(tokenizer, template, config))
    }

    /// Assembles the parts; stop ids are the config's EOS plus `<|im_end|>`, `<|endoftext|>`,
    /// `<|eot_id|>` and `</s>` where the vocabulary has them.
    pub fn new(tokenizer: Tokenizer, template: ChatTemplate, config: LlamaConfig) -> Self {
        let mut stop_ids: Vec<u32> = config.eos_token_id.into_iter().collect();
        for t in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "</s>"] {
            if let Some(id) = tokenizer.token_id(t) {
                if !stop_ids.contains(&id) {
                    stop_ids.push(id);
                }
            }
        }
        let pad_id = config
            .eos_token_id
            .or_else(|| stop_ids.first().copied())
            .unwrap_or(0);
        ModelText {
            tokenizer,
            template,
            stop_ids,
            pad_id,
            config,
        }
    }

    /// The chat-rendered text of one user turn with the generation prompt (the assistant header).
    pub fn render_user_turn(&self, prompt: &str) -> Result<String> {
        self.template.render(&[ChatMessage::user(prompt)], true)
    }

    /// Token ids of one chat-rendered user turn, ready for sampling.
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>> {
        self.tokenizer.encode(&self.render_user_turn(prompt)?)
    }

    /// The texts of the stop tokens (what a server's `stop` list gets).
    pub fn stop_texts(&self) -> Vec<String> {
        self.stop_ids
            .iter()
            .filter_map(|&id| self.tokenizer.id_to_token(id))
            .collect()
    }

    /// The model's context length in tokens.
    pub fn context_length(&self) -> usize {
        self.config.max_position_embeddings
    }

    /// The chat-templated exchange split into prompt and response ids (cases T3/T4: the
    /// conversation is rendered once, both parts encoded separately).
    pub fn encode_exchange(&self, prompt: &str, response: &str) -> Result<(Vec<u32>, Vec<u32>)> {
        let (p, r) = self.template.split_exchange(prompt, response)?;
        Ok((self.tokenizer.encode(&p)?, self.tokenizer.encode(&r)?))
    }

    /// Response ids for a response given as sampled token ids: the ids as sampled, with the
    /// end-of-turn suffix of the template appended when the sample did not end with it.
    pub fn response_ids_from_sample(&self, prompt: &str, sampled: &[u32]) -> Result<Vec<u32>> {
        response_ids_from_sample(
            &self.tokenizer,
            &self.template,
            &self.stop_ids,
            prompt,
            sampled,
        )
    }
}

/// [`ModelText::response_ids_from_sample`] on the parts (shared with `LanguageModel`).
pub(crate) fn response_ids_from_sample(
    tokenizer: &Tokenizer,
    template: &ChatTemplate,
    stop_ids: &[u32],
    prompt: &str,
    sampled: &[u32],
) -> Result<Vec<u32>> {
    let (_, suffix) = template.split_exchange(prompt, "")?;
    let suffix_ids = tokenizer.encode(&suffix)?;
    let mut ids = sampled.to_vec();
    if let Some(&last) = ids.last() {
        if stop_ids.contains(&last) {
            ids.pop();
        }
    }
    ids.extend(suffix_ids);
    Ok(ids)
}
