//! `pipe merge RUN_HASH|ADAPTER_DIR --out DIR`: a full Hugging Face model folder
//! with the adapter folded in (W + scale * B A), for serving without peft.

use std::path::{Path, PathBuf};

use pipe_pipeline::cache::Cache;
use pipe_pipeline::cli::{GlobalArgs, find_cache};
use pipe_pipeline::error::Error;
use pipe_pipeline::record;
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// A run hash (or prefix) whose train stage made the adapter, or an adapter folder
    /// (adapter_config.json + adapter_model.safetensors).
    pub source: String,
    /// Where to write the model folder.
    #[arg(long)]
    pub out: PathBuf,
    /// The base model (default: the run's, or the adapter's `base_model_name_or_path`).
    #[arg(long)]
    pub model: Option<String>,
    /// The train stage, when the run has several.
    #[arg(long)]
    pub stage: Option<String>,
}

/// The adapter folder, the base model reference and the folder it resolves against.
fn locate(global: &GlobalArgs, args: &MergeArgs) -> Result<(PathBuf, String, PathBuf), Error> {
    let as_dir = Path::new(&args.source);
    if as_dir.join("adapter_config.json").is_file() {
        let config_path = as_dir.join("adapter_config.json");
        let config: Value =
            serde_json::from_str(&super::read_text(&config_path, "adapter config")?)
                .map_err(|e| Error::usage(format!("{}: not JSON: {e}", config_path.display())))?;
        let model = match &args.model {
            Some(m) => m.clone(),
            None => config
                .get("base_model_name_or_path")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| {
                    Error::usage(format!("{} names no base model", config_path.display()))
                        .with_hint("pass `--model` (a folder, a .gguf, a hub id or builtin:tiny)")
                })?,
        };
        let cwd = std::env::current_dir().map_err(|e| Error::io("cannot read", ".", e))?;
        return Ok((as_dir.to_owned(), model, cwd));
    }
    if as_dir.is_dir() {
        return Err(
            Error::usage(format!("{} has no adapter_config.json", as_dir.display()))
                .with_hint("give a PEFT adapter folder or a run hash from `pipe runs`"),
        );
    }
    let cache = Cache::new(find_cache(&global.cache_dir)?);
    let run = record::find(&cache, &args.source)?;
    let stage = super::pick_stage(&run, "train", args.stage.as_deref())?;
    let adapter = Path::new(&stage.out_dir).join("adapter");
    if !adapter.join("adapter_config.json").is_file() {
        return Err(Error::usage(format!(
            "the adapter of stage `{}` is no longer in the cache ({})",
            stage.name,
            adapter.display()
        ))
        .with_hint("`pipe run` the recipe again, or `pipe reproduce` the run"));
    }
    let model = match &args.model {
        Some(m) => m.clone(),
        None => stage
            .parts
            .params
            .get("model")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                Error::usage("the run's train stage records no model; pass `--model`")
            })?,
    };
    Ok((adapter, model, PathBuf::from(&run.recipe_dir)))
}

pub fn run(global: &GlobalArgs, args: &MergeArgs) -> Result<i32, Error> {
    let (adapter, reference, base) = locate(global, args)?;
    let model = super::resolve_model(&reference, &base)?;
    let written = pipe_train::merge::merge_to_hf(&model, &adapter, &args.out)
        .map_err(|e| Error::usage(e.to_string()))?;
    println!(
        "merged {} into {} -> {} ({})",
        adapter.display(),
        reference,
        args.out.display(),
        written.join(", ")
    );
    if !written.iter().any(|f| f == "tokenizer.json") {
        eprintln!(
            "note: the base model has no Hugging Face tokenizer files to copy; add them before serving"
        );
    }
    Ok(0)
}
