//! Chat templates: the model's own Jinja template (GGUF `tokenizer.chat_template` or
//! `tokenizer_config.json`'s `chat_template`) rendered with minijinja, and the prompt/response
//! split used for scoring and training (case T3).

use crate::error::{ModelError, Result};
use serde::{Deserialize, Serialize};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The message text.
    pub content: String,
}

impl ChatMessage {
    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage {
            role: "user".into(),
            content: content.into(),
        }
    }
    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Self {
        ChatMessage {
            role: "assistant".into(),
            content: content.into(),
        }
    }
}

/// A compiled chat template plus the special-token strings templates refer to.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    bos_token: String,
    eos_token: String,
}

fn raise_exception(msg: String) -> std::result::Result<String, minijinja::Error> {
    Err(minijinja::Error::new(
        minijinja::ErrorKind::InvalidOperation,
        msg,
    ))
}

impl ChatTemplate {
    /// Wraps a Jinja template source. Errors: [`ModelError::Template`] if it does not compile.
    pub fn new(
        source: impl Into<String>,
        bos_token: impl Into<String>,
        eos_token: impl Into<String>,
    ) -> Result<Self> {
        let t = ChatTemplate {
            source: source.into(),
            bos_token: bos_token.into(),
            eos_token: eos_token.into(),
        };
        t.env()?;
        Ok(t)
    }

    /// The Jinja source (saved into checkpoints' `tokenizer_config.json`).
    pub fn source(&self) -> &str {
        &self.source
    }

    fn env(&self) -> Result<minijinja::Environment<'static>> {
        let mut env = minijinja::Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned("chat", self.source.clone())
            .map_err(|e| ModelError::Template(e.to_string()))?;
        Ok(env)
    }

    /// Renders `messages`; with `add_generation_prompt`, ends with the assistant header.
    /// Errors: [`ModelError::Template`].
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let env = self.env()?;
        let tmpl = env
            .get_template("chat")
            .map_err(|e| ModelError::Template(e.to_string()))?;
        tmpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token,
            eos_token => self.eos_token,
        })
        .map_err(|e| ModelError::Template(e.to_string()))
    }

    /// Splits one exchange into (prompt text, response text), templating the whole conversation
    /// once (case T3): `P = render([user], add_generation_prompt)`, `F = render([user, assistant])`;
    /// the response is F with P removed from its start (for ChatML: `content<|im_end|>\n`).
    /// Errors: [`ModelError::Template`] if F does not start with P (never guesses).
    pub fn split_exchange(&self, prompt: &str, response: &str) -> Result<(String, String)> {
        let p = self.render(&[ChatMessage::user(prompt)], true)?;
        let f = self.render(
            &[ChatMessage::user(prompt), ChatMessage::assistant(response)],
            false,
        )?;
        match f.strip_prefix(&p) {
            Some(rest) => Ok((p, rest.to_string())),
            None => Err(ModelError::Template(format!(
                "the rendered conversation does not start with the rendered prompt, so the response cannot be located (prompt {p:?}, conversation {f:?})"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMOL: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn split_exchange_case_t3() {
        let t = ChatTemplate::new(SMOL, "<|im_start|>", "<|im_end|>").unwrap();
        let (p, r) = t.split_exchange("Hi", "Yo").unwrap();
        assert_eq!(r, "Yo<|im_end|>\n");
        assert_eq!(p.matches("<|im_start|>system").count(), 1);
        assert!(p.ends_with("<|im_start|>assistant\n"));
        // A template whose generation prompt is not a prefix of the full conversation is refused.
        let odd = ChatTemplate::new("{% if add_generation_prompt %}A:{% else %}{% for m in messages %}{{ m.content }}|{% endfor %}{% endif %}", "", "").unwrap();
        assert!(matches!(
            odd.split_exchange("Hi", "Yo"),
            Err(ModelError::Template(_))
        ));
    }

    #[test]
    fn pycompat_and_raise_exception() {
        let t = ChatTemplate::new("{{ messages[0].content.strip() }}{% if messages|length > 1 %}{{ raise_exception('only one') }}{% endif %}", "", "").unwrap();
        assert_eq!(t.render(&[ChatMessage::user("  x ")], false).unwrap(), "x");
        let err = t
            .render(&[ChatMessage::user("a"), ChatMessage::user("b")], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("only one"), "{err}");
    }
}
