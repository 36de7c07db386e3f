//! Chat-template rendering compatible with Hugging Face transformers (minijinja).
