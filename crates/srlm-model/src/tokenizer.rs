//! The tokenizer: HF `tokenizer.json`, or rebuilt from GGUF metadata with the `tokenizers`
//! crate (byte-level BPE: vocabulary, merges, token types, pre-tokenizer by `tokenizer.ggml.pre`).
//!
//! srlm never adds special tokens when encoding: a chat-rendered text already carries the
//! template's own start and end tokens (case T1), and special tokens written in the text, such
//! as `<|im_start|>`, are parsed as one id (case C4).

use crate::error::{ModelError, Result};
use candle_core::quantized::gguf_file;
use std::collections::HashMap;
use std::path::Path;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior};

/// A text ⇄ token-id codec.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

fn tok_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Tokenizer(e.to_string())
}

/// GPT-2's pre-tokenizer regex, as llama.cpp and HF use it.
const GPT2_REGEX: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// Llama 3's pre-tokenizer regex (numbers in groups of up to three digits).
const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's pre-tokenizer regex (single digits).
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

impl Tokenizer {
    /// Loads an HF `tokenizer.json`. Errors: [`ModelError::Tokenizer`].
    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| ModelError::Tokenizer(format!("{}: {e}", path.display())))?;
        Ok(Tokenizer { inner })
    }

    /// Rebuilds the tokenizer from GGUF metadata (`tokenizer.ggml.*`). Supports byte-level BPE
    /// (`tokenizer.ggml.model = gpt2`) with the pre-tokenizers `smollm`, `gpt2`/`default`,
    /// `llama-bpe`/`llama3`/`smaug-bpe` and `qwen2`. Tokens of type control (3) or user-defined
    /// (4) become special added tokens, matched whole in any text.
    /// Errors: [`ModelError::Tokenizer`] for another tokenizer model or missing keys.
    pub fn from_gguf(meta: &HashMap<String, gguf_file::Value>) -> Result<Self> {
        let get = |k: &str| {
            meta.get(k)
                .ok_or_else(|| tok_err(format!("GGUF metadata `{k}` is missing")))
        };
        let model = get("tokenizer.ggml.model")?
            .to_string()
            .map_err(tok_err)?
            .clone();
        if model != "gpt2" {
            return Err(tok_err(format!("GGUF tokenizer model `{model}` is not supported (only byte-level BPE, `gpt2`); use an HF directory with tokenizer.json")));
        }
        let strings = |k: &str| -> Result<Vec<String>> {
            get(k)?
                .to_vec()
                .map_err(tok_err)?
                .iter()
                .map(|v| v.to_string().cloned().map_err(tok_err))
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges: Vec<(String, String)> = strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| tok_err(format!("bad merge `{m}`")))
            })
            .collect::<Result<_>>()?;
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(tok_err)?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        let pre = meta
            .get("tokenizer.ggml.pre")
            .and_then(|v| v.to_string().ok())
            .map(|s| s.as_str())
            .unwrap_or("default");
        let byte_level = |use_regex| ByteLevel::new(false, true, use_regex);
        let split = |re: &str| -> Result<PreTokenizerWrapper> {
            Ok(Split::new(
                SplitPattern::Regex(re.to_string()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(tok_err)?
            .into())
        };
        let pre_tok: PreTokenizerWrapper = match pre {
            // SmolLM/SmolLM2: digits split one by one, then GPT-2's byte-level regex.
            "smollm" => {
                Sequence::new(vec![Digits::new(true).into(), byte_level(true).into()]).into()
            }
            "llama-bpe" | "llama3" | "smaug-bpe" => {
                Sequence::new(vec![split(LLAMA3_REGEX)?, byte_level(false).into()]).into()
            }
            "qwen2" => Sequence::new(vec![split(QWEN2_REGEX)?, byte_level(false).into()]).into(),
            "gpt2" | "default" => {
                Sequence::new(vec![split(GPT2_REGEX)?, byte_level(false).into()]).into()
            }
            other => {
                return Err(tok_err(format!(
                "GGUF pre-tokenizer `{other}` is not supported (smollm, gpt2, llama-bpe, qwen2)"
            )))
            }
        };
        inner.with_pre_tokenizer(Some(pre_tok));
        inner.with_decoder(Some(tokenizers::decoders::byte_level::ByteLevel::default()));
        if let Some(gguf_file::Value::Array(types)) = meta.get("tokenizer.ggml.token_type") {
            let specials: Vec<AddedToken> = types
                .iter()
                .enumerate()
                .filter(|(_, t)| {
                    matches!(
                        t,
                        gguf_file::Value::I32(3 | 4) | gguf_file::Value::U32(3 | 4)
                    )
                })
                .map(|(i, _)| AddedToken::from(tokens[i].clone(), true))
                .collect();
            inner.add_special_tokens(&specials);
        }
        Ok(Tokenizer { inner })
    }

    /// Token ids of `text`, no BOS/EOS added, special tokens in the text parsed as one id.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .inner
            .encode_fast(text, false)
            .map_err(tok_err)?
            .get_ids()
            .to_vec())
    }

    /// Text of `ids`; with `skip_special`, special tokens (e.g. `<|im_end|>`) are left out.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner.decode(ids, skip_special).map_err(tok_err)
    }

    /// The id of a token string, if it is in the vocabulary (special tokens included).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token string of an id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Writes an HF `tokenizer.json`. Errors: [`ModelError::Tokenizer`].
    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner.save(path, false).map_err(tok_err)
    }
}
