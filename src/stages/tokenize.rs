//! Registers the `tokenize` stage kind (pipe-tokenize): rendered conversations
//! to `tokens.arrow` per table (`train`, and `validation` when the input has it).

use std::path::PathBuf;

use pipe_pipeline::stage::{
    InputSpec, PlanEnv, Registry, RunContext, Stage, StageError, StagePlan, StageReport,
};
use pipe_tokenize::{
    Example, TOKENIZE_CODE_VERSION, TOKENS_FILE, TokenizeOptions, TokenizeParams, load_tokenizer,
    tokenize_to_file,
};
use serde_json::Value;

pub fn register(registry: &mut Registry) {
    registry.add(Tokenize);
}

struct Tokenize;

/// The tables tokenize writes, by the name of the rendered table they come from:
/// `train` and `validation` keep their names; a single other table (render's
/// `rows`, or an explicitly selected `split.test`) becomes `train`.
fn table_names(available: &[(String, bool)]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for want in ["train", "validation"] {
        if available.iter().any(|(n, _)| n == want) {
            out.push((want.to_owned(), want.to_owned()));
        }
    }
    if out.is_empty() {
        // Prefer an explicitly selected output, else the first one.
        if let Some((name, _)) = available
            .iter()
            .find(|(_, selected)| *selected)
            .or(available.first())
        {
            out.push((name.clone(), "train".to_owned()));
        }
    }
    out
}

fn spec_names(inputs: &[InputSpec]) -> Vec<(String, bool)> {
    inputs
        .iter()
        .flat_map(|i| match &i.output {
            Some(o) => vec![(o.clone(), true)],
            None => i.outputs.iter().map(|o| (o.clone(), false)).collect(),
        })
        .collect()
}

fn model_error(e: pipe_model::ModelError) -> StageError {
    let hint = e.hint();
    let mut err = StageError::input(e.to_string()).with_key("model");
    if let Some(h) = hint {
        err = err.with_hint(h);
    }
    err
}

fn tokenize_error(e: pipe_tokenize::TokenizeError) -> StageError {
    let hint = e.hint();
    let mut err = StageError::failed(e.to_string());
    if let Some(h) = hint {
        err = err.with_hint(h);
    }
    err
}

impl Stage for Tokenize {
    fn kind(&self) -> &'static str {
        "tokenize"
    }

    fn code_version(&self) -> u32 {
        TOKENIZE_CODE_VERSION
    }

    fn about(&self) -> &'static str {
        "rendered conversations -> token ids with prompt-masked labels, optionally packed (tokens.arrow)"
    }

    fn params_schema(&self) -> Value {
        pipe_tokenize::params_schema()
    }

    fn plan(&self, params: &Value, env: &PlanEnv<'_>) -> Result<StagePlan, StageError> {
        let mut p: TokenizeParams = crate::stages::parse_params(params)?;
        let reference = p
            .model
            .clone()
            .or_else(|| env.model.map(str::to_owned))
            .ok_or_else(|| {
                StageError::params("no model to take the tokenizer from")
                    .with_key("model")
                    .with_hint("set `model:` at the top of the recipe, or in this stage")
            })?;
        let model = pipe_model::resolve(&reference, env.recipe_dir).map_err(model_error)?;
        if p.max_len < 2 {
            return Err(StageError::params(format!(
                "`max_len` must be at least 2, got {}",
                p.max_len
            ))
            .with_key("max_len"));
        }
        let outputs: Vec<String> = table_names(&spec_names(env.inputs))
            .into_iter()
            .map(|(_, out)| out)
            .collect();
        if outputs.is_empty() {
            return Err(StageError::params(
                "tokenize needs a rendered table: `from: <render stage>`",
            )
            .with_key("from"));
        }
        p.model = Some(reference);
        Ok(StagePlan {
            params: serde_json::to_value(&p).expect("params serialize"),
            outputs,
            files: model.files(),
        })
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<StageReport, StageError> {
        let p: TokenizeParams = crate::stages::parse_params(ctx.params)?;
        let reference = p.model.as_deref().expect("plan resolved the model");
        let model = pipe_model::resolve(reference, ctx.recipe_dir).map_err(model_error)?;
        let tok = load_tokenizer(&model).map_err(tokenize_error)?;
        let options = TokenizeOptions::from(&p);

        let available: Vec<(String, bool, PathBuf)> = ctx
            .inputs
            .iter()
            .flat_map(|i| {
                i.order
                    .iter()
                    .map(|o| (o.clone(), i.output.is_some(), i.dirs[o].clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let names: Vec<(String, bool)> =
            available.iter().map(|(n, s, _)| (n.clone(), *s)).collect();
        let mut report = StageReport::default();
        let mut summaries = Vec::new();
        for (input_name, output_name) in table_names(&names) {
            let dir = &available
                .iter()
                .find(|(n, _, _)| *n == input_name)
                .expect("name came from the inputs")
                .2;
            let path = dir.join(pipe_rows::RENDERED_FILE);
            let rows = pipe_rows::read_rendered(&path).map_err(|e| {
                StageError::input(format!("{}: {e}", path.display()))
                    .with_hint("tokenize reads the output of a `render` stage")
            })?;
            ctx.progress.set_total(rows.len() as u64, "rows");
            let out_dir = ctx.output_dir(&output_name);
            std::fs::create_dir_all(&out_dir).map_err(|e| {
                StageError::failed(format!("cannot create {}: {e}", out_dir.display()))
            })?;
            let examples = rows.iter().map(|r| Example {
                text: &r.rendered,
                spans: &r.spans,
            });
            let mut done = 0;
            let stats = pipe_tokenize::with_threads(ctx.threads, || {
                tokenize_to_file(&tok, examples, &options, &out_dir.join(TOKENS_FILE), |n| {
                    ctx.progress.inc(n - done);
                    done = n;
                })
            })
            .map_err(tokenize_error)?;
            summaries.push(format!("{output_name}: {}", stats.summary()));
            report.stats.insert(
                output_name.clone(),
                serde_json::to_value(&stats).expect("stats serialize"),
            );
        }
        report.stats.insert(
            "tokenizer".into(),
            serde_json::json!({
                "vocab_size": tok.vocab_size(),
                "bos_id": tok.bos_id,
                "eos_id": tok.eos_id,
                "stop_ids": tok.stop_ids,
                "add_bos": tok.add_bos,
            }),
        );
        report.summary = summaries.join("; ");
        Ok(report)
    }
}
