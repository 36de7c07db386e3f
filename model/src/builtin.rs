//! The built-in models: generated in code, identical on every machine.
//!
//! `builtin:tiny` has a byte-level vocabulary: token id `b` (0..=255) is the
//! byte `b`, followed by the special tokens below. Its chat template is ChatML.

/// Name after `builtin:`.
pub const TINY: &str = "tiny";

/// Special tokens of the builtin vocabulary, in id order after the 256 bytes.
pub const SPECIAL_TOKENS: [&str; 3] = ["<|im_start|>", "<|im_end|>", "<|endoftext|>"];
pub const IM_START_ID: u32 = 256;
pub const IM_END_ID: u32 = 257;
pub const ENDOFTEXT_ID: u32 = 258;
/// Bytes plus specials.
pub const VOCAB_SIZE: usize = 259;

/// The builtin model has no BOS; ChatML turns end with `<|im_end|>`, which is also EOS.
pub const BOS_TOKEN: Option<&str> = None;
pub const EOS_TOKEN: &str = "<|im_end|>";
pub const PAD_TOKEN: &str = "<|endoftext|>";

/// ChatML, as `templates/chatml.jinja`.
pub const CHAT_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Shapes of `builtin:tiny`, in Hugging Face `config.json` terms (model_type llama).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TinyConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub vocab_size: usize,
    pub max_position_embeddings: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    pub tie_word_embeddings: bool,
}

pub const TINY_CONFIG: TinyConfig = TinyConfig {
    hidden_size: 128,
    intermediate_size: 256,
    num_hidden_layers: 4,
    num_attention_heads: 4,
    num_key_value_heads: 2,
    vocab_size: VOCAB_SIZE,
    max_position_embeddings: 4096,
    rope_theta: 10000.0,
    rms_norm_eps: 1e-5,
    tie_word_embeddings: true,
};

/// Bump when the generated weights or vocabulary change: it enters cache keys
/// in place of a file hash.
pub const TINY_VERSION: u32 = 1;
