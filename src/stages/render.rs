//! Registers the `render` stage kind (pipe-render): canonical rows to chat-template
//! text with the trained spans, one `rendered.parquet` table per input table
//! (`train`/`test`/`validation` from a split, else `rows`).
//!
//! Planning resolves everything that decides the bytes: the template file is
//! hashed through `StagePlan::files` (the model's files for `template: model`),
//! and the BOS/EOS texts actually used are written into the canonical params.

use std::path::{Path, PathBuf};

use pipe_pipeline::stage::{
    InputSpec, PlanEnv, Registry, RunContext, Stage, StageError, StagePlan, StageReport,
};
use pipe_render::{
    ChatTemplate, Date, ModelTemplate, RENDER_CODE_VERSION, RenderError, RenderOptions,
    RenderParams, TemplateConfig, TemplateSource, lint_template, project_templates_dir,
    render_rows, resolve_template, template_default_tokens,
};
use pipe_rows::{RENDERED_FILE, ROWS_FILE, read_rows, write_rendered};
use serde_json::{Map, Value, json};

use super::parse_params;

pub fn register(registry: &mut Registry) {
    registry.add(Render);
}

struct Render;

/// The tables of one input reference: a selected output, every table of a
/// split, else the upstream's primary table (`rows`).
fn input_tables(input: &InputSpec) -> Vec<String> {
    match &input.output {
        Some(o) => vec![o.clone()],
        None if input.kind == "split" => input.outputs.clone(),
        None => input.outputs.first().cloned().into_iter().collect(),
    }
}

fn render_error(err: RenderError) -> StageError {
    match err {
        RenderError::BadDate { .. } => StageError::params(err.to_string()).with_key("date"),
        RenderError::UnknownTemplate { .. } | RenderError::Syntax { .. } => {
            StageError::params(err.to_string()).with_key("template")
        }
        RenderError::Read { .. } => StageError::input(err.to_string()).with_key("template"),
        RenderError::PrefixMismatch { .. } => StageError::failed(err.to_string())
            .with_hint("`on_prefix_mismatch: last_turn` trains only the final answer of such rows"),
        RenderError::Raised { .. } | RenderError::Row { .. } if err.raised_message().is_some() => {
            StageError::failed(err.to_string()).with_hint(
                "the chat template itself rejects this conversation; pick a template that supports it (e.g. one with a system role) or change the data/params",
            )
        }
        other => StageError::failed(other.to_string()),
    }
}

/// The model's template and tokens, when the stage or the recipe names a model.
fn model_template(
    params: &RenderParams,
    env_model: Option<&str>,
    recipe_dir: &Path,
) -> Result<Option<(ModelTemplate, pipe_model::ResolvedModel)>, StageError> {
    let Some(reference) = params.model.as_deref().or(env_model) else {
        return Ok(None);
    };
    let model = pipe_model::resolve(reference, recipe_dir).map_err(|e| {
        let hint = e.hint();
        let mut err = StageError::input(e.to_string()).with_key("model");
        if let Some(h) = hint {
            err = err.with_hint(h);
        }
        err
    })?;
    let template = template_of_model(&model)
        .map_err(|e| StageError::input(e.to_string()).with_key("model"))?;
    Ok(Some((template, model)))
}

/// What a model says about chat formatting: its own template and BOS/EOS texts.
pub fn template_of_model(
    model: &pipe_model::ResolvedModel,
) -> Result<ModelTemplate, pipe_model::ModelError> {
    let meta = pipe_model::metadata(model)?;
    Ok(ModelTemplate {
        chat_template: meta.chat_template,
        bos_token: meta.bos_token,
        eos_token: meta.eos_token,
    })
}

/// The files that define the model's own template (not its weights).
fn model_template_files(model: &pipe_model::ResolvedModel) -> Vec<PathBuf> {
    match model {
        pipe_model::ResolvedModel::Builtin { .. } => vec![],
        pipe_model::ResolvedModel::HfFolder {
            tokenizer_config, ..
        } => tokenizer_config.iter().cloned().collect(),
        pipe_model::ResolvedModel::Gguf { path } => vec![path.clone()],
    }
}

/// The template a render stage uses, from its planned (canonical) params: the
/// token texts are already resolved there, and for `template: model` the
/// model reference is recorded in them.
pub fn planned_template(p: &RenderParams, recipe_dir: &Path) -> Result<ChatTemplate, StageError> {
    let model = if p.template == "model" {
        model_template(p, None, recipe_dir)?.map(|(m, _)| m)
    } else {
        None
    };
    build_template(p, recipe_dir, model.as_ref())
}

/// The template of canonical params, given the model's own template when
/// `template: model` (already read by the caller).
fn build_template(
    p: &RenderParams,
    recipe_dir: &Path,
    model: Option<&ModelTemplate>,
) -> Result<ChatTemplate, StageError> {
    let resolved = resolve_template(&p.template, recipe_dir, &project_templates_dir(), model)
        .map_err(render_error)?;
    let config = TemplateConfig {
        bos_token: p.bos.clone().unwrap_or_default(),
        eos_token: p.eos.clone().unwrap_or_default(),
        date: Date::parse(&p.date).map_err(render_error)?,
    };
    ChatTemplate::new(resolved.name.clone(), &resolved.source, config).map_err(render_error)
}

impl Stage for Render {
    fn kind(&self) -> &'static str {
        "render"
    }

    fn code_version(&self) -> u32 {
        RENDER_CODE_VERSION
    }

    fn about(&self) -> &'static str {
        "apply a chat template (transformers-compatible) to rows: text, trained spans, prompt and reference"
    }

    fn params_schema(&self) -> Value {
        super::schema::<RenderParams>()
    }

    fn plan(&self, params: &Value, env: &PlanEnv<'_>) -> Result<StagePlan, StageError> {
        let mut p: RenderParams = parse_params(params)?;
        p.validate()
            .map_err(|(key, message)| StageError::params(message).with_key(key))?;
        if env.inputs.is_empty() {
            return Err(StageError::params(format!(
                "stage `{}` needs `from:` a stage that yields rows (ingest, dedup, filter, split)",
                env.stage_name
            ))
            .with_key("from"));
        }
        let mut outputs: Vec<String> = Vec::new();
        for input in env.inputs {
            for table in input_tables(input) {
                if outputs.contains(&table) {
                    return Err(StageError::params(format!(
                        "two inputs both give a `{table}` table; render writes one table per name"
                    ))
                    .with_key("from"));
                }
                outputs.push(table);
            }
        }
        let source = TemplateSource::parse(&p.template, env.recipe_dir, &project_templates_dir())
            .map_err(render_error)?;
        // The model is only consulted when it decides something: its template,
        // or token texts the params leave open.
        let model = if source == TemplateSource::Model || p.bos.is_none() || p.eos.is_none() {
            model_template(&p, env.model, env.recipe_dir)?
        } else {
            None
        };
        let mut files: Vec<PathBuf> = source.file().map(Path::to_path_buf).into_iter().collect();
        if source == TemplateSource::Model {
            match &model {
                Some((m, resolved)) if m.chat_template.is_some() => {
                    files.extend(model_template_files(resolved));
                    // Run sees only the params: record which model the template comes from.
                    p.model = p.model.clone().or(env.model.map(str::to_owned));
                }
                _ => {
                    return Err(StageError::params(
                        "`template: model` but the model has no chat template (or no `model:` is set)",
                    )
                    .with_key("template")
                    .with_hint("name a project template (chatml, llama3, ...) or a .jinja file"));
                }
            }
        }
        // Resolve the token texts now so that they are part of the cache key.
        let (default_bos, default_eos) = match &source {
            TemplateSource::Project { name, .. } => template_default_tokens(name),
            _ => (None, None),
        };
        // A known model's tokens are the truth (a model without BOS has none);
        // the template's usual tokens only stand in when no model is named.
        let model_tokens = model.as_ref().map(|(m, _)| m);
        if p.bos.is_none() {
            p.bos = match model_tokens {
                Some(m) => m.bos_token.clone(),
                None => default_bos.map(str::to_owned),
            };
        }
        if p.eos.is_none() {
            p.eos = match model_tokens {
                Some(m) => m.eos_token.clone(),
                None => default_eos.map(str::to_owned),
            };
        }
        // Compile the template now, so that `pipe validate` reports a syntax
        // error with the template's place instead of the run failing later.
        build_template(&p, env.recipe_dir, model.as_ref().map(|(m, _)| m))?;
        let params = serde_json::to_value(&p)
            .map_err(|e| StageError::failed(format!("cannot serialize params: {e}")))?;
        Ok(StagePlan {
            params,
            outputs,
            files,
        })
    }

    fn run(&self, ctx: &RunContext<'_>) -> Result<StageReport, StageError> {
        let p: RenderParams = parse_params(ctx.params)?;
        let template = planned_template(&p, ctx.recipe_dir)?;
        let options = RenderOptions {
            system: p.system.clone(),
            prompt: p.prompt.clone(),
            on_prefix_mismatch: p.on_prefix_mismatch,
        };

        let mut stats = Map::new();
        let mut summary = Vec::new();
        let mut total = pipe_render::RenderStats::default();
        for input in &ctx.inputs {
            // As in `input_tables`: a selected output, every split table, else the primary.
            let names: Vec<&String> = if input.output.is_some() || input.kind == "split" {
                input.order.iter().collect()
            } else {
                input.order.first().into_iter().collect()
            };
            let tables: Vec<(String, PathBuf)> = names
                .into_iter()
                .filter_map(|name| input.dirs.get(name).map(|d| (name.clone(), d.clone())))
                .collect();
            for (name, dir) in tables {
                let rows = read_rows(&dir.join(ROWS_FILE)).map_err(|e| {
                    StageError::input(format!(
                        "stage `{}` (from `{}`): {e}",
                        ctx.stage_name, input.stage
                    ))
                })?;
                let (rendered, s) =
                    render_rows(&template, &rows, &options).map_err(render_error)?;
                let out_dir = ctx.output_dir(&name);
                std::fs::create_dir_all(&out_dir).map_err(|e| {
                    StageError::failed(format!("cannot create {}: {e}", out_dir.display()))
                })?;
                write_rendered(&out_dir.join(RENDERED_FILE), &rendered)
                    .map_err(|e| StageError::failed(e.to_string()))?;
                summary.push(format!("{name} {}", rendered.len()));
                stats.insert(
                    name.clone(),
                    serde_json::to_value(&s).unwrap_or(Value::Null),
                );
                total.rows += s.rows;
                total.system_added += s.system_added;
                total.classification_rows += s.classification_rows;
                total.last_turn_only += s.last_turn_only;
            }
        }
        let warnings = lint_template(&template, None);
        stats.insert("template".into(), json!(template.name()));
        stats.insert("date".into(), json!(p.date));
        stats.insert("system_prompt".into(), json!(p.system));
        stats.insert("system_added".into(), json!(total.system_added));
        stats.insert(
            "lint".into(),
            serde_json::to_value(&warnings).unwrap_or(Value::Null),
        );
        let mut line = format!(
            "{} rows rendered with `{}` ({})",
            total.rows,
            template.name(),
            summary.join(", ")
        );
        if total.system_added > 0 {
            line.push_str(&format!(
                "; system prompt added to {} rows",
                total.system_added
            ));
        }
        if total.last_turn_only > 0 {
            line.push_str(&format!(
                "; {} rows trained on the last turn only",
                total.last_turn_only
            ));
        }
        if !warnings.is_empty() {
            let codes: Vec<&str> = warnings.iter().map(|w| w.code).collect();
            line.push_str(&format!("; template warnings: {}", codes.join(", ")));
        }
        Ok(StageReport {
            summary: line,
            stats,
            ..StageReport::default()
        })
    }
}
