//! A Hugging Face model folder: tokenizer.json + tokenizer_config.json (+ generation_config.json).

use pipe_model::ResolvedModel;
use pipe_tokenize::*;

#[test]
fn hf_folder_reads_bos_eos_and_add_bos() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The builtin byte-level tokenizer, saved as a tokenizer.json.
    let tiny = load_tokenizer(&ResolvedModel::Builtin {
        name: "tiny".into(),
    })
    .unwrap();
    tiny.tokenizer
        .save(d.join("tokenizer.json"), false)
        .unwrap();
    std::fs::write(d.join("config.json"), r#"{"model_type": "llama"}"#).unwrap();
    std::fs::write(d.join("model.safetensors"), b"").unwrap();
    std::fs::write(
        d.join("tokenizer_config.json"),
        r#"{"bos_token": "<|im_start|>", "eos_token": {"content": "<|im_end|>"},
            "pad_token": "<|endoftext|>", "add_bos_token": true, "chat_template": "{{ messages }}"}"#,
    )
    .unwrap();
    std::fs::write(
        d.join("generation_config.json"),
        r#"{"eos_token_id": [257, 258]}"#,
    )
    .unwrap();
    let model = pipe_model::resolve(d.to_str().unwrap(), std::path::Path::new("/")).unwrap();
    let tok = load_tokenizer(&model).unwrap();
    assert_eq!(
        (tok.bos_id, tok.eos_id, tok.pad_id),
        (Some(256), Some(257), Some(258))
    );
    assert!(tok.add_bos);
    assert_eq!(tok.stop_ids, vec![257, 258]);
    assert_eq!(tok.meta.chat_template.as_deref(), Some("{{ messages }}"));
    assert_eq!(tok.meta.model_type.as_deref(), Some("llama"));
    assert_eq!(tok.encode("hi"), vec![256, b'h' as u32, b'i' as u32]);
    assert_eq!(
        tok.encode("<|im_start|>hi"),
        vec![256, b'h' as u32, b'i' as u32]
    );
}

#[test]
fn hf_folder_without_tokenizer_json_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), "{}").unwrap();
    std::fs::write(dir.path().join("model.safetensors"), b"").unwrap();
    let model =
        pipe_model::resolve(dir.path().to_str().unwrap(), std::path::Path::new("/")).unwrap();
    let msg = load_tokenizer(&model).unwrap_err().to_string();
    assert!(
        msg.contains("tokenizer.json") && msg.contains("save_pretrained"),
        "{msg}"
    );
}
